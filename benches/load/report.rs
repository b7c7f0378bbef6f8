//! The run's header line, the ratios ours / peer of each round, and their medians.

use std::path::Path;
use std::time::SystemTime;

use serde_json::{json, Map, Value};

use super::run::Plan;
use super::server::Kind;

/// The figures compared with the peer: (phase, field).
const COMPARED: &[(&str, &str)] = &[
    ("ramp", "rss_per_connection_bytes"),
    ("ramp", "first_state_bytes_median"),
    ("ramp", "bytes_per_client"),
    ("ramp", "connect_ms"),
    ("ramp", "settle_ms"),
    ("steady", "cpu_us_per_heartbeat"),
    ("steady", "rss_per_connection_bytes"),
    ("departures", "bytes_per_client_per_departure"),
    ("departures", "messages_per_client_per_departure"),
    ("departures", "truth_ms"),
    ("storm", "bytes_per_client"),
    ("storm", "truth_ms"),
    ("storm", "peak_over_steady"),
];

/// The first line: what runs, when, where.
#[allow(clippy::too_many_arguments)]
pub(crate) fn header(
    servers: Vec<&str>,
    plan: &Plan,
    subscribe: String,
    heartbeat_ms: u64,
    rounds: usize,
    flags: &[(String, u64)],
    examples_dir: &Path,
    threads: usize,
    nofile: u64,
) -> Value {
    let thresholds: Map<String, Value> = flags
        .iter()
        .map(|(f, v)| (f.clone(), Value::from(*v)))
        .collect();
    json!({
        "phase": "run",
        "when_utc": now_utc(),
        "servers": servers,
        "rounds": rounds,
        "clients": plan.clients,
        "subscribe": subscribe,
        "heartbeat_ms": heartbeat_ms,
        "steady_s": plan.steady.as_secs_f64(),
        "departures": plan.departures,
        "thresholds": thresholds,
        "examples_dir": examples_dir.display().to_string(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu_model(),
        "load_threads": threads,
        "nofile": nofile,
    })
}

/// `ratios` lines of one round: each of our servers' figures over the peer's.
pub(crate) fn ratios(round: usize, turns: &[(Kind, Vec<Value>)]) -> Vec<Value> {
    let Some((_, peer)) = turns.iter().find(|(k, _)| *k == Kind::Peer) else {
        return Vec::new();
    };
    turns
        .iter()
        .filter(|(k, _)| *k != Kind::Peer)
        .map(|(kind, ours)| {
            let mut line =
                json!({ "phase": "ratios", "round": round, "ours": kind.name(), "peer": "peer" });
            if let Some(o) = line.as_object_mut() {
                for (phase, field) in COMPARED {
                    let ratio = match (figure(ours, phase, field), figure(peer, phase, field)) {
                        (Some(a), Some(b)) if b != 0.0 => Value::from(round3(a / b)),
                        _ => Value::Null,
                    };
                    o.insert(format!("{phase}.{field}"), ratio);
                }
            }
            line
        })
        .collect()
}

/// `summary` lines: each ratio's median, min and max over the rounds, per server.
pub(crate) fn summary(lines: &[Value]) -> Vec<Value> {
    let ratios: Vec<&Value> = lines.iter().filter(|l| l["phase"] == "ratios").collect();
    let mut servers: Vec<&str> = ratios.iter().filter_map(|l| l["ours"].as_str()).collect();
    servers.dedup();
    servers
        .into_iter()
        .map(|server| {
            let mut line = json!({ "phase": "summary", "ours": server, "peer": "peer" });
            if let Some(o) = line.as_object_mut() {
                for (phase, field) in COMPARED {
                    let key = format!("{phase}.{field}");
                    let mut values: Vec<f64> = ratios
                        .iter()
                        .filter(|l| l["ours"] == server)
                        .filter_map(|l| l[&key].as_f64())
                        .collect();
                    values.sort_by(f64::total_cmp);
                    let summary = match (values.first(), values.last()) {
                        (Some(min), Some(max)) => json!({
                            "median": values[values.len() / 2],
                            "min": min,
                            "max": max,
                            "rounds": values.len(),
                        }),
                        _ => Value::Null,
                    };
                    o.insert(key, summary);
                }
            }
            line
        })
        .collect()
}

fn figure(phases: &[Value], phase: &str, field: &str) -> Option<f64> {
    phases.iter().find(|p| p["phase"] == phase)?[field].as_f64()
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default()
}

/// The time now in RFC 3339 form (the core's `Timestamp` display: `2026-12-07T18:10:29.123Z`).
fn now_utc() -> String {
    presence_tracker::Timestamp::from_system_time(SystemTime::now()).to_string()
}
