//! The dwell in the simulator: what it changes and what it leaves alone, where flaps come
//! from, and issue 13's goal as the comparison checks it.

use std::time::Duration;

use presence_tracker::{Activity, Presence};
use presence_tracker_sim::{
    replay, run, Budget, Candidate, Comparison, Grid, Metrics, Peer, Population, Scenario, Signal,
};

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn dwell(secs: u64) -> Candidate {
    let mut candidate = Candidate {
        dwell: s(secs),
        ..Candidate::default()
    };
    candidate.name = candidate.label();
    candidate
}

fn metrics(scenario: &Scenario, candidate: &Candidate) -> Metrics {
    run(scenario, candidate)
        .expect("valid scenario and candidate")
        .metrics
}

fn named(name: &str, users: u32, hours: f64) -> Scenario {
    Scenario::named(name)
        .expect("a named scenario")
        .with_users(users)
        .with_hours(hours)
}

#[test]
fn a_dwell_removes_flaps_and_leaves_departures_and_false_offline_alone() {
    let scenario = named("flaky-network", 150, 6.0);
    let runs: Vec<Metrics> = [0, 15, 45, 240]
        .map(|d| metrics(&scenario, &dwell(d)))
        .to_vec();
    let plain = &runs[0];
    assert!(plain.flaps > 100, "{plain:?}");
    for (m, d) in runs.iter().zip([0, 15, 45, 240]) {
        // Offline is published at the same instants: the same latencies, the same false
        // offline, the same flaps to or from offline.
        assert_eq!(m.latency, plain.latency, "dwell {d}");
        assert_eq!(
            m.false_offline_share, plain.false_offline_share,
            "dwell {d}"
        );
        assert_eq!(m.false_offline_episodes, plain.false_offline_episodes);
        assert_eq!(m.tracker_errors, 0);
        // Only what a viewer sees first of a departure comes later.
        assert!(m.first_sign.p50 >= plain.first_sign.p50, "dwell {d}");
    }
    for pair in runs.windows(2) {
        assert!(
            pair[1].flaps <= pair[0].flaps,
            "{} then {}",
            pair[0].flaps,
            pair[1].flaps
        );
        assert!(pair[1].user_events <= pair[0].user_events);
    }
    // 15 s takes most: one lost heartbeat (a 20 s silence) no longer shows.
    assert!(
        runs[1].flaps * 3 < plain.flaps,
        "{} of {}",
        runs[1].flaps,
        plain.flaps
    );
    // The TTL leaves only flaps to or from offline (and a tab of a user whose other tab is
    // still there expiring first).
    let held = &runs[3];
    let not_offline = held.flaps - held.offline_flaps;
    assert!(not_offline * 5 <= held.flaps, "{held:?}");
}

#[test]
fn a_twenty_second_drop_shows_nothing_with_a_fifteen_second_dwell() {
    // A tab heartbeating every 10 s whose network drops from 5 s to 25 s (two heartbeats lost,
    // the connection survives).
    let mut signals = vec![(
        s(0),
        Signal::Connect {
            session: 0,
            conn: 1,
            activity: Activity::Active,
        },
    )];
    signals.extend(Signal::heartbeats(0, Activity::Active, s(10), s(11), s(10)));
    signals.extend(Signal::heartbeats(
        0,
        Activity::Active,
        s(30),
        s(120),
        s(10),
    ));
    let plain = replay(&dwell(0), &signals, s(120)).expect("valid");
    assert_eq!(
        plain,
        [
            (s(0), Presence::Active),
            (s(25), Presence::Idle),
            (s(30), Presence::Active)
        ]
    );
    let held = replay(&dwell(15), &signals, s(120)).expect("valid");
    assert_eq!(held, [(s(0), Presence::Active)]);
    // Gone at 40 s without a close: away at once when the dwell runs out, offline at the
    // grace after the ping timeout as without a dwell.
    let mut gone = signals[..2].to_vec();
    gone.push((
        s(60),
        Signal::Lost {
            session: 0,
            conn: 1,
        },
    ));
    let plain = replay(&dwell(0), &gone, s(300)).expect("valid");
    let held = replay(&dwell(60), &gone, s(300)).expect("valid");
    assert_eq!(plain.last(), Some(&(s(180), Presence::Offline)));
    assert_eq!(
        held,
        [
            (s(0), Presence::Active),
            (s(85), Presence::Away),
            (s(180), Presence::Offline)
        ]
    );
}

#[test]
fn flaps_are_attributed_to_what_caused_them() {
    // Lost heartbeats only.
    let mut lossy = Population::preset("steady").expect("preset");
    lossy.network.drop = 0.05;
    let scenario = Scenario::new("lossy")
        .with_users(100)
        .with_hours(4.0)
        .with_population(lossy);
    let m = metrics(&scenario, &Candidate::default());
    assert!(m.flaps > 20, "{m:?}");
    assert_eq!(m.flap_sources.heartbeat, m.flaps, "{:?}", m.flap_sources);
    let top = m.flap_kinds[0];
    assert_eq!(
        (top.expected, top.from, top.to),
        (Presence::Active, Presence::Active, Presence::Idle)
    );
    assert_eq!(m.flap_kinds.iter().map(|k| k.count).sum::<u64>(), m.flaps);
    // Phones: mostly suspended apps shown offline.
    let m = metrics(&named("mobile", 100, 4.0), &dwell(240));
    assert!(
        m.flap_sources.suspended * 2 > m.flaps,
        "{:?} of {}",
        m.flap_sources,
        m.flaps
    );
    let sources = m.flap_sources;
    let total = sources.restart
        + sources.partition
        + sources.suspended
        + sources.hidden_tab
        + sources.heartbeat;
    assert_eq!(total, m.flaps);
}

#[test]
fn the_grid_and_the_goal_are_reproducible_by_seed_and_keep_their_bounds() {
    let scenario = named("flaky-network", 60, 3.0).with_seed(5);
    let grid: Vec<Candidate> = Grid::hysteresis()
        .candidates()
        .into_iter()
        .filter(|c| c.heartbeat == s(10) && c.ttl == s(480))
        .collect();
    assert_eq!(grid.len(), 12);
    let peers = [Peer::PubNub, Peer::Ably];
    let a = Comparison::run(&scenario, &grid, &peers, Budget::default(), 2).expect("valid");
    let b = Comparison::run(&scenario, &grid, &peers, Budget::default(), 1).expect("valid");
    let metrics = |c: &Comparison| -> Vec<Metrics> {
        c.study
            .reports
            .iter()
            .chain(&c.peers)
            .chain(&c.matched)
            .map(|r| r.metrics.clone())
            .collect()
    };
    assert_eq!(metrics(&a), metrics(&b));
    let goal = a.goal().expect("peers ran");
    let other = b.goal().expect("peers ran");
    // Everything but the wall-clock cost of the runs.
    let ours = |g: &presence_tracker_sim::Goal| {
        g.ours
            .as_ref()
            .map(|r| (r.candidate.clone(), r.metrics.clone()))
    };
    assert_eq!(
        (goal.peer_flaps, goal.peer_p95, goal.met, ours(&goal)),
        (other.peer_flaps, other.peer_p95, other.met, ours(&other))
    );
    let fewest = |r: &presence_tracker_sim::Report| r.metrics.flaps_per_user_hour;
    let best_peer = a.peers.iter().map(fewest).fold(f64::INFINITY, f64::min);
    assert_eq!(goal.peer_flaps, best_peer);
    if let Some(ours) = &goal.ours {
        assert!(goal.admits(ours));
        assert_eq!(goal.met, fewest(ours) <= goal.peer_flaps / 10.0);
        // No admitted candidate of the grid has fewer flaps.
        for r in a.study.reports.iter().filter(|r| goal.admits(r)) {
            assert!(fewest(r) >= fewest(ours));
        }
    }
    if let Some(matched) = &a.matched {
        assert!(goal.admits(matched));
        assert!(matched.candidate.disconnect_grace <= matched.candidate.ttl);
    }
    assert!(a.table().contains("goal: at most"));
}
