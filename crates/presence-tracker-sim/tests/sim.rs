//! The simulator: reproducible from its seed, and right where the answer is known.

use std::time::Duration;

use presence_tracker_sim::{
    pareto_front, run, Budget, Candidate, Exodus, Metrics, Population, Restart, Scenario, Study,
    Ticking,
};

fn named(name: &str, users: u32, hours: f64, seed: u64) -> Scenario {
    Scenario::named(name)
        .expect("a named scenario")
        .with_users(users)
        .with_hours(hours)
        .with_seed(seed)
}

fn metrics(scenario: &Scenario, candidate: &Candidate) -> Metrics {
    run(scenario, candidate)
        .expect("valid scenario and candidate")
        .metrics
}

/// A candidate with the given TTL and disconnect grace, the lower thresholds fixed below every
/// TTL used here.
fn with_ttl(ttl: u64, grace: u64) -> Candidate {
    Candidate {
        name: format!("ttl {ttl}"),
        idle: Duration::from_secs(30),
        away: Duration::from_secs(90),
        ttl: Duration::from_secs(ttl),
        disconnect_grace: Duration::from_secs(grace),
        ..Candidate::default()
    }
}

#[test]
fn the_same_seed_gives_the_same_numbers_and_another_seed_others() {
    let candidate = Candidate::default();
    let a = metrics(&named("mixed", 80, 3.0, 11), &candidate);
    let b = metrics(&named("mixed", 80, 3.0, 11), &candidate);
    let c = metrics(&named("mixed", 80, 3.0, 12), &candidate);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.user_events > 0 && a.heartbeats_delivered > 0);
    assert_eq!(a.tracker_errors, 0);
}

#[test]
fn deadline_ticking_is_reproducible_too() {
    let scenario = named("restart-storm", 60, 2.0, 3).with_ticking(Ticking::Deadline);
    let a = metrics(&scenario, &Candidate::default());
    assert_eq!(a, metrics(&scenario, &Candidate::default()));
    assert_eq!(a.tracker_errors, 0);
}

#[test]
fn a_population_that_never_misbehaves_is_never_shown_offline_and_never_flaps() {
    // Foreground tabs on a perfect network, going idle and back, reloading pages, closing
    // cleanly: nothing for the tracker to get wrong.
    let mut steady = Population::preset("steady").expect("preset");
    steady.reloads_per_hour = 4.0;
    for seed in 1..=3 {
        let scenario = Scenario::new("steady")
            .with_users(100)
            .with_hours(6.0)
            .with_seed(seed)
            .with_population(steady.clone());
        let m = metrics(&scenario, &Candidate::default());
        assert!(m.open_user_hours > 50.0, "{m:?}");
        assert!(m.latency.clean.count > 10, "users left: {m:?}");
        assert!(m.truth_changes > 100, "users went idle and back: {m:?}");
        assert_eq!(m.false_offline_share, 0.0, "{m:?}");
        assert_eq!(m.false_offline_episodes, 0, "{m:?}");
        assert_eq!(m.flaps, 0, "{m:?}");
        // Clean departures are shown within the leave grace and a tick.
        assert!(m.latency.clean.max <= Duration::from_secs(6), "{m:?}");
    }
}

#[test]
fn the_same_population_on_a_lossy_network_does_flap() {
    // The test above can fail: one lost heartbeat in 20 is enough.
    let mut lossy = Population::preset("steady").expect("preset");
    lossy.network.drop = 0.05;
    let scenario = Scenario::new("lossy")
        .with_users(100)
        .with_hours(6.0)
        .with_population(lossy);
    assert!(metrics(&scenario, &Candidate::default()).flaps > 0);
}

#[test]
fn a_reconnect_storm_with_late_disconnects_flaps_nothing() {
    let scenario = Scenario::new("storm")
        .with_users(100)
        .with_hours(3.0)
        .with_population(Population::preset("steady").expect("preset"))
        .with_restart(Restart {
            at_minutes: 10.0,
            repeat_minutes: 20.0,
            spread_seconds: 5.0,
            late_disconnect_seconds: 30.0,
        });
    // Heartbeats every 5 s: a reconnect within 5 s keeps the age under the 15 s active window.
    let candidate = Candidate {
        heartbeat: Duration::from_secs(5),
        ..Candidate::default()
    };
    let m = metrics(&scenario, &candidate);
    assert!(m.open_user_hours > 50.0);
    assert_eq!((m.false_offline_episodes, m.flaps), (0, 0), "{m:?}");
    assert_eq!(m.tracker_errors, 0);
}

#[test]
fn everyone_leaving_at_once_is_offline_within_the_ttl_and_one_tick() {
    for (close_frame, ticking, slack) in [
        (false, Ticking::EveryMs(1000), Duration::from_secs(1)),
        (true, Ticking::EveryMs(1000), Duration::from_secs(1)),
        (false, Ticking::Deadline, Duration::ZERO),
    ] {
        for ttl in [120, 240] {
            let scenario = named("mixed", 150, 1.5, 5)
                .with_exodus(Exodus {
                    at_minutes: 60.0,
                    close_frame,
                })
                .with_ticking(ticking);
            let candidate = with_ttl(ttl, ttl / 2);
            let m = metrics(&scenario, &candidate);
            let what = format!("close frame {close_frame}, {ticking:?}, ttl {ttl}: {m:?}");
            assert!(m.latency.all.count > 20, "{what}");
            assert_eq!(m.open_at_end, 0, "{what}");
            assert_eq!(m.shown_online_at_end, 0, "{what}");
            assert!(m.latency.all.max <= candidate.ttl + slack, "{what}");
            if close_frame {
                // Those that could send their close frame went within the leave grace.
                assert!(m.latency.clean.count > 0, "{what}");
                assert!(
                    m.latency.clean.max <= candidate.leave_grace + slack,
                    "{what}"
                );
            }
        }
    }
}

#[test]
fn a_shorter_ttl_never_detects_lost_departures_later_nor_shows_less_false_offline() {
    for name in ["mobile", "flaky-network"] {
        for seed in 1..=3 {
            let scenario = named(name, 100, 4.0, seed);
            let runs: Vec<(u64, Metrics)> = [120, 180, 240, 360]
                .into_iter()
                .map(|ttl| (ttl, metrics(&scenario, &with_ttl(ttl, ttl))))
                .collect();
            for pair in runs.windows(2) {
                let ((short, s), (long, l)) = (&pair[0], &pair[1]);
                let what = format!("{name} seed {seed}: ttl {short} against {long}");
                assert_eq!(s.latency.lost.count, l.latency.lost.count, "{what}");
                assert!(s.latency.lost.p50 <= l.latency.lost.p50, "{what}");
                assert!(s.latency.lost.p95 <= l.latency.lost.p95, "{what}");
                assert!(s.latency.lost.p99 <= l.latency.lost.p99, "{what}");
                assert!(s.latency.lost.max <= l.latency.lost.max, "{what}");
                assert!(s.false_offline_share >= l.false_offline_share, "{what}");
                assert!(s.hidden_offline_share >= l.hidden_offline_share, "{what}");
            }
            // And the property is not vacuous: the extremes differ.
            let (first, last) = (&runs[0].1, &runs[runs.len() - 1].1);
            assert!(first.latency.lost.count > 5, "{name} seed {seed}");
            assert!(
                first.latency.lost.p50 < last.latency.lost.p50,
                "{name} seed {seed}"
            );
            assert!(
                first.false_offline_share > last.false_offline_share,
                "{name} seed {seed}"
            );
        }
    }
}

#[test]
fn a_heartbeat_close_to_the_active_window_flaps_more() {
    let scenario = named("office", 100, 4.0, 2);
    let flaps = |secs: u64| {
        let candidate = Candidate {
            heartbeat: Duration::from_secs(secs),
            ..Candidate::default()
        };
        metrics(&scenario, &candidate).flaps_per_user_hour
    };
    let (fast, slow) = (flaps(5), flaps(14));
    assert!(fast * 3.0 < slow, "5 s: {fast}, 14 s: {slow}");
}

#[test]
fn a_study_marks_the_front_the_default_and_a_recommendation() {
    let scenario = named("office", 40, 2.0, 1);
    let candidates = vec![
        Candidate::default(),
        with_ttl(120, 60),
        with_ttl(360, 360),
        Candidate {
            name: "slow heartbeat".into(),
            heartbeat: Duration::from_secs(14),
            ..Candidate::default()
        },
    ];
    let study = Study::run(&scenario, &candidates, Budget::default(), 2).expect("runs");
    assert_eq!(study.reports.len(), 4);
    assert_eq!(study.default_index(), Some(0));
    let points: Vec<[f64; 3]> = study
        .reports
        .iter()
        .map(presence_tracker_sim::objectives)
        .collect();
    assert_eq!(study.front, pareto_front(&points));
    let recommended = study.recommended.expect("a recommendation");
    assert!(study.front[recommended]);
    // The reports come back in the candidates' order, equal to single runs.
    for (report, candidate) in study.reports.iter().zip(&candidates) {
        assert_eq!(report.candidate, *candidate);
        assert_eq!(report.metrics, metrics(&scenario, candidate));
    }

    let table = study.table();
    assert_eq!(
        table.lines().filter(|l| l.contains(" | ")).count(),
        5,
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains('D')),
        "{table}"
    );

    let svg = study.svg();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<title>").count(), 4, "one point per candidate");
    assert!(svg.contains(">default</text>") && svg.contains(">recommended</text>"));
}

#[test]
fn invalid_input_is_refused_before_anything_runs() {
    let scenario = named("office", 10, 1.0, 1);
    let bad = Candidate {
        leave_grace: Duration::from_secs(600),
        ..Candidate::default()
    };
    assert!(run(&scenario, &bad).is_err());
    assert!(run(&scenario.clone().with_users(0), &Candidate::default()).is_err());
    assert!(Study::run(
        &scenario,
        &[Candidate::default(), bad],
        Budget::default(),
        2
    )
    .is_err());
    assert!(Scenario::named("lan-party").is_err());
}

#[test]
fn the_example_traffic_files_load_and_run() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("scenarios/ exists") {
        let path = entry.expect("a directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let scenario = Scenario::from_json(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .with_users(20)
            .with_hours(1.0);
        let m = metrics(&scenario, &Candidate::default());
        assert_eq!(m.tracker_errors, 0, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 2, "found {seen} scenario files");
}
