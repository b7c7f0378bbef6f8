//! Tune presence thresholds for your traffic: simulate a grid of candidate policies on a
//! scenario, print the table with the Pareto front marked, recommend one, and write the
//! trade-off plot.
//!
//! ```text
//! cargo run --release --bin tune -- --scenario mobile
//! cargo run --release --bin tune -- --config crates/presence-tracker-sim/scenarios/my-traffic.json --out target/tune
//! cargo run --release --bin tune -- --scenario all --default-only
//! cargo run --release --bin tune -- --scenario mixed --print-config > my-traffic.json
//! cargo run --release --bin tune -- --peers
//! ```
//!
//! Options:
//!
//! ```text
//! --scenario NAME    office, mobile, flaky-network, restart-storm, mixed, or all (default mixed)
//! --config FILE      a scenario in JSON (see presence_tracker_sim::Scenario::from_json)
//! --users N          users (default: the scenario's, 1000 for the named ones, 500 with --peers)
//! --hours H          virtual hours (default: the scenario's, 24 for the named ones)
//! --seed S           seed (default: the scenario's, 1 for the named ones)
//! --grid G           standard (36 candidates, the default), full (108, the leave grace too) or
//!                    hysteresis (72: TTL 120-480 s, heartbeat 5 or 10 s, dwell 0, 15 s, 45 s, TTL;
//!                    the default with --peers)
//! --dwell LIST       the grid's dwells, comma-separated seconds or `ttl` (e.g. 0,30,ttl)
//! --default-only     only the default policy: one summary row per scenario, and where its flaps
//!                    come from (with --dwell, the default with each dwell)
//! --peers            against the peers: per scenario (all of them unless --scenario or --config),
//!                    a table of every peer model, our default, the grid's recommendation and our
//!                    fewest flaps within issue 13's bounds, with the goal checked, then the goal
//!                    across scenarios; written to DIR/peers.md with the plot DIR/peers-SCENARIO.svg
//! --ticking T        deadline, or a tick interval in ms (default: the scenario's, 1000)
//! --threads N        simulation threads (default: all cores)
//! --max-false-offline PCT   recommendation budget, % of present time (default 0.1)
//! --max-flaps F             recommendation budget, flaps per user-hour (default 0.05)
//! --out DIR          where the SVG plots go (default $CARGO_TARGET_DIR/tune, else target/tune)
//! --print-config     print the (first) scenario as JSON and exit
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use presence_tracker_sim::{
    flap_table, goal_table, run_many, summary_table, Budget, Candidate, Comparison, Grid, Peer,
    Scenario, Study, Ticking,
};

/// Users per named scenario against the peers, unless `--users` says otherwise.
const PEERS_USERS: u32 = 500;

const USAGE: &str = "usage: tune [--scenario NAME|all] [--config FILE] [--users N] [--hours H] \
[--seed S] [--grid standard|full|hysteresis] [--dwell S,S,..|ttl] [--default-only] [--peers] [--ticking deadline|MS] \
[--threads N] [--max-false-offline PCT] [--max-flaps F] [--out DIR] [--print-config]";

#[derive(Debug)]
struct Options {
    scenarios: Vec<Scenario>,
    /// `None`: standard, or hysteresis against the peers.
    grid: Option<String>,
    threads: usize,
    budget: Budget,
    out: PathBuf,
    print_config: bool,
    peers: bool,
    /// Replaces the grid's dwells.
    dwell: Option<Vec<Duration>>,
}

fn parse() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut scenario = None;
    let mut config = None;
    let (mut users, mut hours, mut seed, mut ticking) = (None, None, None, None);
    let mut options = Options {
        scenarios: Vec::new(),
        grid: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        budget: Budget::default(),
        out: default_out(std::env::var_os("CARGO_TARGET_DIR")),
        print_config: false,
        peers: false,
        dwell: None,
    };
    while let Some(flag) = args.next() {
        if flag == "--print-config" {
            options.print_config = true;
            continue;
        }
        if flag == "--default-only" {
            options.grid = Some("default-only".to_string());
            continue;
        }
        if flag == "--peers" {
            options.peers = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_string());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |what: &str| -> Result<f64, String> {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{what} must be a non-negative number, got {value:?}"))
        };
        match flag.as_str() {
            "--scenario" => scenario = Some(value.clone()),
            "--config" => config = Some(value.clone()),
            "--users" => {
                users = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| format!("--users: not a count: {value:?}"))?,
                )
            }
            "--hours" => hours = Some(number("--hours")?),
            "--seed" => {
                seed = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| format!("--seed: not an integer: {value:?}"))?,
                )
            }
            "--grid" => options.grid = Some(value.clone()),
            "--dwell" => options.dwell = Some(dwells(&value)?),
            "--ticking" => {
                ticking = Some(if value == "deadline" {
                    Ticking::Deadline
                } else {
                    Ticking::EveryMs(value.parse::<u64>().map_err(|_| {
                        format!("--ticking: deadline or milliseconds, got {value:?}")
                    })?)
                })
            }
            "--threads" => {
                options.threads = value
                    .parse::<usize>()
                    .map_err(|_| format!("--threads: not a count: {value:?}"))?
                    .max(1)
            }
            "--max-false-offline" => {
                options.budget.max_false_offline_share = number("--max-false-offline")? / 100.0
            }
            "--max-flaps" => options.budget.max_flaps_per_user_hour = number("--max-flaps")?,
            "--out" => options.out = PathBuf::from(&value),
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    let named = config.is_none();
    let mut scenarios = match config {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
            vec![Scenario::from_json(&text).map_err(|e| format!("{path}: {e}"))?]
        }
        None => {
            // Against the peers, every scenario unless told; else mixed.
            let default = if options.peers { "all" } else { "mixed" };
            let scenario = scenario.as_deref().unwrap_or(default);
            if scenario == "all" {
                Scenario::NAMES
                    .iter()
                    .map(|name| Scenario::named(name))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?
            } else {
                vec![Scenario::named(scenario).map_err(|e| e.to_string())?]
            }
        }
    };
    if options.peers && named && users.is_none() {
        // Bounded: about a minute of CPU per scenario (42 runs) at this size.
        users = Some(PEERS_USERS);
    }
    for s in &mut scenarios {
        if let Some(users) = users {
            s.users = users;
        }
        if let Some(hours) = hours {
            s.hours = hours;
        }
        if let Some(seed) = seed {
            s.seed = seed;
        }
        if let Some(ticking) = ticking {
            s.ticking = ticking;
        }
        s.validate().map_err(|e| e.to_string())?;
    }
    options.scenarios = scenarios;
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    if options.print_config {
        if let Some(s) = options.scenarios.first() {
            println!("{}", s.to_json());
        }
        return ExitCode::SUCCESS;
    }
    let named = options.grid.as_deref();
    let named = named.unwrap_or(if options.peers {
        "hysteresis"
    } else {
        "standard"
    });
    let mut grid = match named {
        "standard" => Grid::default(),
        "full" => Grid::full(),
        "hysteresis" => Grid::hysteresis(),
        "default-only" => Grid {
            ttl: vec![Candidate::default().ttl],
            disconnect_grace: vec![0.5],
            heartbeat: vec![Candidate::default().heartbeat],
            ..Grid::default()
        },
        other => {
            eprintln!("unknown grid {other:?}: standard, full or hysteresis\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(dwell) = &options.dwell {
        grid.dwell.clone_from(dwell);
    }
    let candidates = grid.candidates();
    match run_all(&options, &candidates) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run_all(options: &Options, candidates: &[Candidate]) -> Result<(), String> {
    if options.peers {
        return against_peers(options, candidates);
    }
    if options.grid.as_deref() == Some("default-only") {
        // A candidate or a few: a summary row each per scenario, the scenarios run in parallel.
        let started = Instant::now();
        let mut reports = Vec::new();
        for chunk in options.scenarios.chunks(options.threads) {
            let results: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|s| scope.spawn(move || run_many(s, candidates, 1)))
                    .collect();
                handles.into_iter().map(|h| h.join()).collect()
            });
            for result in results {
                let mut batch = result
                    .map_err(|_| "a simulation thread panicked".to_string())?
                    .map_err(|e| e.to_string())?;
                reports.append(&mut batch);
            }
        }
        let s = options.scenarios.first();
        let labels: Vec<String> = candidates.iter().map(Candidate::label).collect();
        println!(
            "{} with heartbeats every {:?} (background {:?}); {} users, {} h, seed {} per scenario; {:.1} s wall on {} threads\n",
            labels.join(", "),
            candidates[0].heartbeat,
            candidates[0].background_heartbeat,
            s.map_or(0, |s| s.users),
            s.map_or(0.0, |s| s.hours),
            s.map_or(0, |s| s.seed),
            started.elapsed().as_secs_f64(),
            options.threads.min(options.scenarios.len()),
        );
        // Reports come per scenario, the candidates in order: one table per candidate.
        for (k, candidate) in candidates.iter().enumerate() {
            if candidates.len() > 1 {
                println!("{}:\n", candidate.label());
            }
            let rows: Vec<_> = reports
                .iter()
                .skip(k)
                .step_by(candidates.len())
                .cloned()
                .collect();
            print!("{}", summary_table(&rows));
            println!();
        }
        println!("Where the flaps come from:\n");
        print!("{}", flap_table(&reports));
        println!();
        for r in &reports {
            println!(
                "{}: {:.0} session-hours and {} simulation events in {:.2} s: {:.0} session-hours per wall second",
                r.scenario,
                r.metrics.session_hours,
                r.cost.sim_events,
                r.cost.wall.as_secs_f64(),
                r.session_hours_per_second()
            );
        }
        return Ok(());
    }
    std::fs::create_dir_all(&options.out).map_err(|e| format!("{}: {e}", options.out.display()))?;
    for scenario in &options.scenarios {
        let study = Study::run(scenario, candidates, options.budget, options.threads)
            .map_err(|e| e.to_string())?;
        print!("{}", study.table());
        println!("{}", study.recommendation());
        let path = options
            .out
            .join(format!("tradeoff-{}.svg", file_name(&scenario.name)));
        std::fs::write(&path, study.svg()).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("plot: {}\n", path.display());
    }
    Ok(())
}

/// Every peer, our default and the grid's recommendation, per scenario: the tables on stdout
/// and in `peers.md`, a plot per scenario.
fn against_peers(options: &Options, candidates: &[Candidate]) -> Result<(), String> {
    std::fs::create_dir_all(&options.out).map_err(|e| format!("{}: {e}", options.out.display()))?;
    let started = Instant::now();
    let mut markdown = String::new();
    let mut comparisons = Vec::new();
    for scenario in &options.scenarios {
        let comparison = Comparison::run(
            scenario,
            candidates,
            &Peer::ALL,
            options.budget,
            options.threads,
        )
        .map_err(|e| e.to_string())?;
        let table = comparison.table();
        println!("{table}");
        markdown.push_str(&table);
        markdown.push('\n');
        let path = options
            .out
            .join(format!("peers-{}.svg", file_name(&scenario.name)));
        std::fs::write(&path, comparison.svg()).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("plot: {}\n", path.display());
        comparisons.push(comparison);
    }
    let goals = goal_table(&comparisons);
    println!("{goals}");
    markdown.push_str(&goals);
    let path = options.out.join("peers.md");
    std::fs::write(&path, markdown).map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "tables: {} ({:.1} s wall on {} threads)",
        path.display(),
        started.elapsed().as_secs_f64(),
        options.threads
    );
    Ok(())
}

/// Dwells from `0,15,ttl`: seconds, or `ttl` for the candidate's TTL.
fn dwells(list: &str) -> Result<Vec<Duration>, String> {
    list.split(',')
        .map(|item| match item.trim() {
            "ttl" => Ok(Duration::MAX),
            secs => secs
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("--dwell: seconds or ttl, got {secs:?}")),
        })
        .collect()
}

/// A name safe in a file name.
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where the plots go without `--out`: `tune` under the target directory Cargo was told to use
/// (`CARGO_TARGET_DIR`, as the user set it), else under `./target`.
fn default_out(target_dir: Option<std::ffi::OsString>) -> PathBuf {
    target_dir
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("tune")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plots_go_under_the_target_directory_cargo_uses() {
        assert_eq!(default_out(None), PathBuf::from("target/tune"));
        assert_eq!(
            default_out(Some("/tmp/build".into())),
            PathBuf::from("/tmp/build/tune")
        );
        assert_eq!(default_out(Some("".into())), PathBuf::from("target/tune"));
    }
}
