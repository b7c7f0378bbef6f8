//! The peer models' known answers on hand-made traces, and the comparison's reproducibility.

use std::time::Duration;

use presence_tracker::{Activity, Presence};
use presence_tracker_sim::{replay, run, Budget, Candidate, Comparison, Peer, Scenario, Signal};

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn connect(session: u32, conn: u32) -> Signal {
    Signal::Connect {
        session,
        conn,
        activity: Activity::Active,
    }
}

/// The candidate for a peer, or our default.
fn candidate(peer: Option<Peer>) -> Candidate {
    peer.map_or_else(Candidate::default, Candidate::peer)
}

/// How often the candidate's client heartbeats in the foreground.
fn cadence(candidate: &Candidate) -> Duration {
    candidate.heartbeat
}

/// A client that connects at 0 and heartbeats at its cadence in `[from, to)`.
fn client(candidate: &Candidate, from: Duration, to: Duration) -> Vec<(Duration, Signal)> {
    let mut signals = vec![(s(0), connect(0, 1))];
    signals.extend(Signal::heartbeats(
        0,
        Activity::Active,
        from,
        to,
        cadence(candidate),
    ));
    signals
}

/// When the timeline first shows the user offline at or after `after`.
fn offline_at(timeline: &[(Duration, Presence)], after: Duration) -> Option<Duration> {
    timeline
        .iter()
        .find(|&&(at, p)| at >= after && p == Presence::Offline)
        .map(|&(at, _)| at)
}

fn name(peer: Option<Peer>) -> &'static str {
    peer.map_or("ours", Peer::name)
}

#[test]
fn a_page_reload_is_a_leave_and_a_join_except_for_synapse_and_ours() {
    for peer in Peer::ALL.map(Some).into_iter().chain([None]) {
        let c = candidate(peer);
        let every = cadence(&c);
        let mut signals = client(&c, every, s(60));
        signals.push((
            s(60),
            Signal::Close {
                session: 0,
                conn: 1,
            },
        ));
        signals.push((s(61), connect(0, 2)));
        signals.extend(Signal::heartbeats(
            0,
            Activity::Active,
            s(61) + every,
            s(240),
            every,
        ));
        let timeline = replay(&c, &signals, s(240)).expect("valid");
        let reloaded: Vec<(Duration, Presence)> = timeline
            .iter()
            .copied()
            .filter(|&(at, _)| at >= s(60) && at <= s(61))
            .collect();
        match peer {
            Some(Peer::Synapse) | None => {
                assert_eq!(
                    offline_at(&timeline, s(1)),
                    None,
                    "{}: {timeline:?}",
                    name(peer)
                )
            }
            Some(_) => assert_eq!(
                reloaded,
                [(s(60), Presence::Offline), (s(61), Presence::Stale)],
                "{}: {timeline:?}",
                name(peer)
            ),
        }
    }
}

#[test]
fn a_short_network_drop_shows_offline_only_on_yjs_when_a_renewal_is_lost() {
    for drop_secs in [10, 20] {
        for peer in Peer::ALL.map(Some).into_iter().chain([None]) {
            let c = candidate(peer);
            // Nothing gets through in [100 s, 100 s + drop); the connection survives.
            let mut signals = client(&c, cadence(&c), s(100));
            signals.extend(Signal::heartbeats(
                0,
                Activity::Active,
                s(100 + drop_secs),
                s(400),
                cadence(&c),
            ));
            let timeline = replay(&c, &signals, s(400)).expect("valid");
            assert_eq!(
                offline_at(&timeline, s(1)),
                None,
                "{} through a {drop_secs} s drop: {timeline:?}",
                name(peer)
            );
        }
    }
    // Yjs renews a state once it is 15 s old on a 3 s check, so renewals come 15 to 18 s
    // apart; with 18 s, a 20 s drop loses one and the gap reaches the 30 s timeout.
    let yjs = Candidate::peer(Peer::Yjs);
    let mut signals = vec![(s(0), connect(0, 1))];
    signals.extend(Signal::heartbeats(0, Activity::Active, s(18), s(95), s(18)));
    signals.extend(Signal::heartbeats(
        0,
        Activity::Active,
        s(126),
        s(200),
        s(18),
    ));
    let timeline = replay(&yjs, &signals, s(200)).expect("valid");
    assert_eq!(
        timeline,
        [
            (s(0), Presence::Stale),
            (s(120), Presence::Offline),
            (s(126), Presence::Stale)
        ]
    );
}

#[test]
fn a_frozen_phone_goes_offline_after_each_systems_own_timeout() {
    // The phone heartbeats until its last message at `last`, then freezes without a close
    // frame; the transport (Socket.IO's ping timeout) notices 30 s later.
    for peer in Peer::ALL.map(Some).into_iter().chain([None]) {
        let c = candidate(peer);
        let every = cadence(&c).as_secs();
        let last = 150 / every * every;
        let mut signals = client(&c, s(every), s(last + 1));
        signals.push((
            s(last + 30),
            Signal::Lost {
                session: 0,
                conn: 1,
            },
        ));
        let timeline = replay(&c, &signals, s(1000)).expect("valid");
        let after = match peer {
            Some(Peer::Naive) => 30,   // the transport's disconnect
            Some(Peer::Phoenix) => 60, // the socket's timeout
            Some(Peer::Ably) => 40,    // 25 s to lose the connection, 15 s remainPresentFor
            Some(Peer::Synapse) => 65, // the request runs 30 s, then 30 s, on a 5 s loop
            Some(Peer::PubNub) => 300, // presenceTimeout
            Some(Peer::Yjs) => 30,     // outdatedTimeout (150 s is on the 3 s grid)
            None => 150,               // the disconnect grace after the transport noticed
            Some(other) => panic!("no known answer for {other}"),
        };
        assert_eq!(
            offline_at(&timeline, s(1)),
            Some(s(last + after)),
            "{}: {timeline:?}",
            name(peer)
        );
    }
}

#[test]
fn a_clean_close_is_offline_at_once_except_on_synapse_and_within_our_leave_grace() {
    for peer in Peer::ALL.map(Some).into_iter().chain([None]) {
        let c = candidate(peer);
        let mut signals = client(&c, cadence(&c), s(100));
        signals.push((
            s(100),
            Signal::Close {
                session: 0,
                conn: 1,
            },
        ));
        let timeline = replay(&c, &signals, s(600)).expect("valid");
        let expected = match peer {
            // The last request (at 90 s) runs to 120 s, then 30 s, on a 5 s loop.
            Some(Peer::Synapse) => s(155),
            None => s(105),
            Some(_) => s(100),
        };
        assert_eq!(
            offline_at(&timeline, s(1)),
            Some(expected),
            "{}: {timeline:?}",
            name(peer)
        );
    }
}

#[test]
fn a_server_restart_flaps_phoenix_and_yjs_and_the_late_disconnect_fools_the_naive_server() {
    for peer in Peer::ALL.map(Some).into_iter().chain([None]) {
        let c = candidate(peer);
        let every = cadence(&c);
        let mut signals = client(&c, every, s(100));
        signals.push((s(100), Signal::Restart));
        signals.push((s(103), connect(0, 2)));
        signals.push((
            s(110),
            Signal::Lost {
                session: 0,
                conn: 1,
            },
        ));
        signals.extend(Signal::heartbeats(
            0,
            Activity::Active,
            s(103) + every,
            s(300),
            every,
        ));
        let timeline = replay(&c, &signals, s(300)).expect("valid");
        let after_start: Vec<(Duration, Presence)> = timeline
            .iter()
            .copied()
            .filter(|&(at, p)| at >= s(1) && (p == Presence::Offline || at <= s(110)))
            .filter(|&(_, p)| p == Presence::Offline || p == Presence::Stale)
            .collect();
        match peer {
            Some(Peer::Phoenix) | Some(Peer::Yjs) => assert_eq!(
                after_start,
                [(s(100), Presence::Offline), (s(103), Presence::Stale)],
                "{}: {timeline:?}",
                name(peer)
            ),
            Some(Peer::Naive) => {
                assert_eq!(after_start, [(s(110), Presence::Offline)], "{timeline:?}");
                assert_eq!(timeline.last(), Some(&(s(110), Presence::Offline)));
            }
            _ => assert_eq!(
                offline_at(&timeline, s(1)),
                None,
                "{}: {timeline:?}",
                name(peer)
            ),
        }
    }
}

#[test]
fn closing_one_of_two_tabs_shows_the_naive_server_offline_and_nobody_else() {
    for peer in Peer::ALL.map(Some).into_iter().chain([None]) {
        let c = candidate(peer);
        let every = cadence(&c);
        let mut signals = client(&c, every, s(400));
        signals.push((s(0), connect(1, 1)));
        signals.extend(Signal::heartbeats(
            1,
            Activity::Active,
            every,
            s(100),
            every,
        ));
        signals.push((
            s(100),
            Signal::Close {
                session: 1,
                conn: 1,
            },
        ));
        let timeline = replay(&c, &signals, s(400)).expect("valid");
        let expected = (peer == Some(Peer::Naive)).then_some(s(100));
        assert_eq!(
            offline_at(&timeline, s(1)),
            expected,
            "{}: {timeline:?}",
            name(peer)
        );
    }
}

#[test]
fn every_model_is_scored_on_the_same_users() {
    let scenario = Scenario::named("mixed")
        .expect("named")
        .with_users(60)
        .with_hours(3.0)
        .with_seed(4);
    let ours = run(&scenario, &Candidate::default()).expect("runs").metrics;
    assert!(ours.latency.all.count > 10);
    for peer in Peer::ALL {
        let m = run(&scenario, &Candidate::peer(peer))
            .expect("runs")
            .metrics;
        let what = format!("{peer}: {m:?}");
        assert_eq!(m.there_user_hours, ours.there_user_hours, "{what}");
        assert_eq!(m.open_user_hours, ours.open_user_hours, "{what}");
        assert_eq!(m.truth_changes, ours.truth_changes, "{what}");
        assert_eq!(m.latency.all.count, ours.latency.all.count, "{what}");
        assert_eq!(m.brief_absences, ours.brief_absences, "{what}");
        assert_eq!(m.tracker_errors, 0, "{what}");
        assert!(m.user_events > 0, "{what}");
        if peer == Peer::Naive {
            // Same heartbeat intervals as the default: exactly the same traffic.
            assert_eq!(m.heartbeats_delivered, ours.heartbeats_delivered);
            assert_eq!(m.latency.lost.count, ours.latency.lost.count);
        }
    }
}

#[test]
fn the_comparison_is_reproducible_by_seed() {
    let scenario = |seed| {
        Scenario::named("restart-storm")
            .expect("named")
            .with_users(60)
            .with_hours(3.0)
            .with_seed(seed)
    };
    let grid = [
        Candidate::default(),
        Candidate {
            heartbeat: s(5),
            ..Candidate::default()
        },
    ];
    let compare = |seed| {
        Comparison::run(&scenario(seed), &grid, &Peer::ALL, Budget::default(), 2).expect("runs")
    };
    // The table without its first line, which holds the wall-clock time.
    let body = |c: &Comparison| c.table().lines().skip(1).collect::<Vec<_>>().join("\n");
    let (a, b, other) = (compare(9), compare(9), compare(10));
    assert_eq!(body(&a), body(&b));
    assert_ne!(body(&a), body(&other));
    let rows = a.rows();
    assert_eq!(rows.len(), Peer::ALL.len() + 2);
    for ((name, r), (_, r2)) in rows.iter().zip(b.rows()) {
        assert_eq!(r.metrics, r2.metrics, "{name}");
    }
    assert!(rows[Peer::ALL.len()].0.starts_with("ours, default"));
    let svg = a.svg();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for peer in Peer::ALL {
        assert!(svg.contains(&format!(">{peer}<")), "{peer} labelled");
    }
}
