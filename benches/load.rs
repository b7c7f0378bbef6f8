//! The load generator: one presence server node under N real connections, beside a peer.
//!
//! ```text
//! cargo build --release --all-features --example websocket --example socketio
//! cargo run --release -p presence-benches --example load -- \
//!     --server websocket --server peer --clients 5000 --subscribe all --rounds 2 --json load.json
//! ```
//!
//! It starts each server under test itself, as a child process on a free port of 127.0.0.1:
//! `websocket` and `socketio` are the release example binaries (`--examples-dir`, default
//! `target/release/examples`); `peer` is `benches/load/seed-peer.mjs`, the seed's minimal
//! pattern in Node.js (a map of last-seen times, a 1 s sweep deriving presence by age, every
//! change broadcast to every client; it runs `npm ci` there first if `ws` is not installed).
//! Given several `--server`s, the servers take turns under the same load in each of `--rounds`
//! rounds, so each ratio ours/peer compares runs minutes apart at most.
//!
//! # The clients
//!
//! N clients (`--clients`), client `i` user `u{i}` with session `s{i}`, signed in through
//! `POST /api/login`. Each connects from 127.0.0.2, 127.0.0.3, ... (`--per-address` clients a
//! source address, so N may pass the ephemeral port range), says hello with its token, and
//! heartbeats every `--heartbeat-ms`, staggered. On Socket.IO the client is hand-rolled
//! Engine.IO v4 / Socket.IO v5 over a WebSocket (the hello is the handshake's auth; it answers
//! Engine.IO's pings). `--subscribe K` names the K users after the client's own in the hello's
//! `users` (a server that does not know the field ignores it and sends everyone: the client
//! keeps only its K, and `users_outside_subscription` counts the rest); `--subscribe all`
//! sends no `users` (the server's every-user feed). Each client keeps the users it is sent by
//! the protocol's resync rule (a state replaces, updates apply; a gap or another epoch asks for
//! a state again, except on a subscribed feed, `"scope":"users"`, whose versions skip).
//!
//! # Phases and figures
//!
//! Each phase prints one JSON object per line (`--json FILE` writes them all as one document):
//!
//! - `ramp`: the clients connect, at most `--ramp-concurrency` at a time (a permit is held from
//!   the connect to the first state). The server's RSS before and after, and per connection;
//!   bytes received by all clients until every client holds every subscribed user; the first
//!   state's size (median, max); the time until every client had a state (`connect_ms`) and
//!   until every client held the truth (`settle_ms`).
//! - `steady`: `--steady-s` seconds of heartbeats. The server's CPU time (utime + stime from
//!   /proc) per heartbeat sent, which includes its transport pings (one per
//!   `--ping-interval-ms` per connection on ours; the peer sends none), and RSS per connection.
//! - `departures`: `--departures` clients, spread evenly, drop their TCP connection without a
//!   close frame. Over the remaining clients: bytes and messages received per client per
//!   departure, and the time until every one of them holds exactly the alive users it
//!   subscribed to.
//! - `storm`: the server is killed (SIGKILL) and started again on the same port; every
//!   remaining client reconnects by itself after a random wait in `--backoff-ms` (again and
//!   again until it gets in; when the server says when to come back, a `503` with `Retry-After`
//!   or a `busy` refusal with `retry_after_ms`, after that wait plus up to as much again at
//!   random, as the browser client does: counted as `busy`) and says hello again. Bytes received by all clients until every
//!   one holds the truth again (from a state of its new connection), the time from the kill
//!   until then, and the server's peak RSS during the storm (sampled every 50 ms) over its RSS
//!   at the end of the steady phase.
//!
//! Then, per round, one `ratios` line for each of our servers against the peer (ours / peer,
//! each figure), and at the end a `summary` line per server with each ratio's median over the
//! rounds.
//!
//! # Thresholds and bounds
//!
//! Ours and the peer are given the same presence thresholds, short so the run is short, with
//! the heartbeat period below the active threshold so a live client stays active on both:
//! heartbeats every 5 s; active < 10 s, idle < 12 s, away < 14 s, offline after 16 s
//! (`--active-ms` ... `--ttl-ms`); ours also a lost-connection grace of 3 s, a clean-close grace
//! of 1 s and transport pings every 5 s with 5 s to answer. Ours sees a vanished client's TCP
//! connection close and drops it after the grace; the peer, which keeps no connections in its
//! presence, sees it go offline by age (idle, away, stale, then offline at the TTL).
//!
//! Every wait is bounded: the ramp and the storm by `--settle-timeout-s` (default 300), the
//! departures by the TTL plus 30 s; a server start by 20 s. A client that never holds the
//! truth within its bound, a server that dies, or a phase that cannot run is a failed check:
//! it is printed, the run goes on to the next turn, and the process exits with status 1 at
//! the end. Everything talks to 127.0.0.x only. The process raises its own descriptor limit
//! (soft to hard) first; the servers inherit it.

#[path = "load/client.rs"]
mod client;
#[path = "load/held.rs"]
mod held;
#[path = "load/http.rs"]
mod http;
#[path = "load/report.rs"]
mod report;
#[path = "load/run.rs"]
mod run;
#[path = "load/server.rs"]
mod server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::unistd::{sysconf, SysconfVar};

use run::{Plan, Tokens};
use server::{Kind, Launch};

/// The load generator's flags.
#[derive(Debug, Parser)]
#[command(
    name = "load",
    about = "Measures a presence server node under N connections"
)]
struct Args {
    /// A server under test; given several times, they take turns in each round.
    #[arg(long = "server", value_enum, required = true)]
    servers: Vec<Kind>,
    /// How many clients (one user and one session each).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// How many users each client subscribes to in its hello (`all`: no `users` field).
    #[arg(long, default_value = "50", value_parser = parse_subscribe)]
    subscribe: Subscribe,
    /// The heartbeat period of each client, in ms (below --active-ms).
    #[arg(long, default_value_t = 5000)]
    heartbeat_ms: u64,
    /// How long the steady phase lasts, in seconds.
    #[arg(long, default_value_t = 20)]
    steady_s: u64,
    /// How many clients vanish in the departures phase.
    #[arg(long, default_value_t = 100)]
    departures: usize,
    /// How many rounds (each runs every --server once, in the order given).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// How many clients connect at once in the ramp.
    #[arg(long, default_value_t = 200)]
    ramp_concurrency: usize,
    /// How many clients share one source address (127.0.0.2, then .3, ...).
    #[arg(long, default_value_t = 5000)]
    per_address: usize,
    /// The reconnect wait's bounds in ms, `MIN-MAX`: each wait is drawn between them.
    #[arg(long, default_value = "100-1000", value_parser = parse_range)]
    backoff_ms: (u64, u64),
    /// The bound of the ramp and of the storm, in seconds.
    #[arg(long, default_value_t = 300)]
    settle_timeout_s: u64,
    /// Writes every phase's figures to this file as one JSON document.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where our example binaries are (default: target/release/examples of this workspace).
    #[arg(long)]
    examples_dir: Option<PathBuf>,
    /// The Node.js binary that runs the peer.
    #[arg(long, default_value = "node")]
    node: String,
    /// The load generator's own runtime threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Age below which a session is active, in ms (ours and the peer).
    #[arg(long, default_value_t = 10_000)]
    active_ms: u64,
    /// Age below which a session is idle, in ms.
    #[arg(long, default_value_t = 12_000)]
    idle_ms: u64,
    /// Age below which a session is away, in ms.
    #[arg(long, default_value_t = 14_000)]
    away_ms: u64,
    /// Age after which a session is offline, in ms.
    #[arg(long, default_value_t = 16_000)]
    ttl_ms: u64,
    /// Our servers' grace after a lost connection, in ms.
    #[arg(long, default_value_t = 3000)]
    disconnect_grace_ms: u64,
    /// Our servers' grace after a clean close, in ms.
    #[arg(long, default_value_t = 1000)]
    leave_grace_ms: u64,
    /// Our servers' transport ping interval, in ms.
    #[arg(long, default_value_t = 5000)]
    ping_interval_ms: u64,
    /// Our servers' transport ping timeout, in ms.
    #[arg(long, default_value_t = 5000)]
    ping_timeout_ms: u64,
    /// Every client joins one room, `hall`, in its hello, and is sent it this way: `members`
    /// (the default view: the member list, or the counts once the room is big), `window` (a
    /// watch of its first 50 members and the counts) or `occupancy` (a watch of the counts).
    /// Ours only: the peer has no rooms.
    #[arg(long, value_enum)]
    room: Option<RoomView>,
    /// Our servers' bound above which a room is big (their --big-room; default theirs, 1,000).
    #[arg(long)]
    big_room: Option<usize>,
}

/// `--room`: how each client is sent the room it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RoomView {
    Members,
    Window,
    Occupancy,
}

/// `--subscribe`: K users, or all.
#[derive(Clone, Copy, Debug)]
enum Subscribe {
    All,
    Users(usize),
}

fn parse_subscribe(s: &str) -> Result<Subscribe, String> {
    if s == "all" {
        return Ok(Subscribe::All);
    }
    s.parse()
        .map(Subscribe::Users)
        .map_err(|_| format!("{s:?} is neither a number of users nor `all`"))
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (min, max) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not MIN-MAX"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| format!("{v:?} is not a number"))
    };
    let (min, max) = (parse(min)?, parse(max)?);
    if min > max {
        return Err(format!("{min} > {max}"));
    }
    Ok((min, max))
}

/// Raises the soft descriptor limit to the hard one; the limit now in force.
fn raise_nofile() -> Result<u64, String> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit: {e}"))?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|e| format!("setrlimit: {e}"))?;
    }
    Ok(hard)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match start(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::from(2)
        }
    }
}

/// Checks the flags, and runs. `Ok(false)`: a check failed.
fn start(args: Args) -> Result<bool, String> {
    let n = args.clients;
    if n < 2 {
        return Err("--clients: at least 2".into());
    }
    let subscribe = match args.subscribe {
        Subscribe::All => None,
        Subscribe::Users(k) if k >= 1 && k < n => Some(k),
        Subscribe::Users(k) => {
            return Err(format!(
                "--subscribe {k}: between 1 and --clients - 1, or all"
            ))
        }
    };
    if args.departures >= n {
        return Err("--departures: fewer than --clients".into());
    }
    if args.heartbeat_ms == 0 || args.heartbeat_ms >= args.active_ms {
        return Err(format!(
            "--heartbeat-ms {} must be above 0 and below --active-ms {}: a live client would not stay active",
            args.heartbeat_ms, args.active_ms
        ));
    }
    if !(args.active_ms < args.idle_ms && args.idle_ms < args.away_ms && args.away_ms < args.ttl_ms)
    {
        return Err("thresholds: --active-ms < --idle-ms < --away-ms < --ttl-ms".into());
    }
    let limit = raise_nofile()?;
    // The client sockets, the runtime's own descriptors, and a margin for reconnects.
    if (n as u64) + 200 > limit {
        return Err(format!(
            "{n} clients need more descriptors than the limit, {limit} (ulimit -Hn)"
        ));
    }
    let clock_ticks = sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(100);
    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let plan = Plan {
        clients: n,
        subscribe,
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        steady: Duration::from_secs(args.steady_s),
        departures: args.departures,
        ramp_concurrency: args.ramp_concurrency,
        per_address: args.per_address,
        backoff_ms: args.backoff_ms,
        ramp_bound: Duration::from_secs(args.settle_timeout_s),
        departures_bound: Duration::from_millis(args.ttl_ms) + Duration::from_secs(30),
        storm_bound: Duration::from_secs(args.settle_timeout_s),
        clock_ticks,
        room: args.room,
    };
    runtime.block_on(run_all(&args, &plan, threads, limit))
}

async fn run_all(args: &Args, plan: &Plan, threads: usize, limit: u64) -> Result<bool, String> {
    let examples_dir = args.examples_dir.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
            .join("release/examples")
    });
    if args.servers.contains(&Kind::Peer) {
        server::ensure_peer_deps().await?;
    }
    let flags: Vec<(String, u64)> = [
        ("active-ms", args.active_ms),
        ("idle-ms", args.idle_ms),
        ("away-ms", args.away_ms),
        ("ttl-ms", args.ttl_ms),
        ("disconnect-grace-ms", args.disconnect_grace_ms),
        ("leave-grace-ms", args.leave_grace_ms),
        ("ping-interval-ms", args.ping_interval_ms),
        ("ping-timeout-ms", args.ping_timeout_ms),
    ]
    .into_iter()
    .chain(args.big_room.map(|n| ("big-room", n as u64)))
    .map(|(f, v)| (f.to_string(), v))
    .collect();
    let header = report::header(
        args.servers.iter().map(|k| k.name()).collect(),
        plan,
        match plan.subscribe {
            Some(k) => format!("{k} users"),
            None => "all".into(),
        },
        args.heartbeat_ms,
        args.rounds,
        &flags,
        &examples_dir,
        threads,
        limit,
    );
    println!("{header}");
    let mut lines = vec![header];
    let mut failures = Vec::new();
    let mut tokens = Tokens::new();
    for round in 1..=args.rounds {
        let mut turns = Vec::new();
        for &kind in &args.servers {
            let launch = Launch {
                kind,
                examples_dir: examples_dir.clone(),
                node: args.node.clone(),
                flags: flags.clone(),
                args: Vec::new(),
                env: Vec::new(),
            };
            match run::turn(&launch, plan, round, &mut tokens).await {
                Ok(turn) => {
                    failures.extend(turn.failures);
                    lines.extend(turn.phases.iter().cloned());
                    turns.push((kind, turn.phases));
                }
                Err(e) => {
                    let line = format!("round {round} {}: {e}", kind.name());
                    eprintln!("load: FAIL {line}");
                    failures.push(line);
                }
            }
        }
        for line in report::ratios(round, &turns) {
            println!("{line}");
            lines.push(line);
        }
    }
    for line in report::summary(&lines) {
        println!("{line}");
        lines.push(line);
    }
    let checks = serde_json::json!({ "phase": "checks", "failures": failures });
    println!("{checks}");
    lines.push(checks);
    if let Some(path) = &args.json {
        let document = serde_json::to_string_pretty(&lines).map_err(|e| e.to_string())?;
        std::fs::write(path, document + "\n")
            .map_err(|e| format!("--json {}: {e}", path.display()))?;
    }
    Ok(failures.is_empty())
}
