//! Question 11 of the benchmarks: what several nodes cost in Redis, and how fast a transition on
//! one node reaches another.
//!
//! A bounded measurement (not criterion: Redis keeps real time), on a redis-server it starts
//! itself (a free port on 127.0.0.1, `--save '' --appendonly no`, stopped by pid at the end),
//! with two nodes in this process: hubs over a `ManualClock` tracker each (time stands still,
//! so nothing decays unless a signal says so), made nodes of one cluster by
//! `Hub::with_cluster` with the default `ClusterConfig` (lease 10 s, reap interval 1 s).
//!
//! 1. **Redis bytes per user and per session** (`INFO memory` `used_memory` deltas, and
//!    `MEMORY USAGE` of one user's keys):
//!    `--sessions` users come online with one session each on node A; then each gets a second
//!    session on node B; then each of those sessions joins one of 100 rooms.
//! 2. **Redis commands per 1,000 heartbeats in steady state**: those sessions on A heartbeat
//!    every 5 s (the browser client's default), none changing anything, for a window; the
//!    same window without heartbeats is the baseline (leases and cleanup polls only). Counted
//!    by node A (`Stats::commands`: each script call one) and by Redis (`INFO commandstats`:
//!    both nodes, the commands their scripts call included).
//! 3. **Convergence latency**: a transition on node A until node B's hub hands the cluster's
//!    transition to a subscriber (`Subscription::recv`, no linger), one at a time, `--samples`
//!    times each: a new user's connect (a claim), a presence change (a put), a room join (node
//!    B subscribed to the room), a metadata update. The same connect on a hub alone, to its
//!    own subscriber, is the baseline of the same run.
//!
//! ```text
//! cargo run --release -p presence-benches --example cluster                   # a report
//! cargo run --release -p presence-benches --example cluster -- --json         # JSON for bench-report.py
//! cargo run --release -p presence-benches --example cluster -- --sessions 1000 --samples 50 --window-ms 2000
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use presence_tracker::{Activity, ManualClock, Policy, Presence, PresenceTracker};
use presence_tracker_server::cluster::{ClusterConfig, ClusterNode};
use presence_tracker_server::{Delivery, Hub, HubConfig, RoomDelivery, Subscription};

// The server crate's tests' redis-server harness (a free port on 127.0.0.1, `--save ''
// --appendonly no`, stopped by pid when dropped); this measurement does not restart it.
#[allow(dead_code, unreachable_pub)]
#[path = "../crates/presence-tracker-server/tests/support/redis.rs"]
mod redis_server;
use redis_server::RedisServer;

type TestHub = Hub<String, String, ManualClock, String, String>;
type Node = ClusterNode<String, String, String, String>;

/// How many rooms the sessions of part 1 spread over.
const ROOMS: usize = 100;
/// How long a wait for a node may take before the run fails.
const WITHIN: Duration = Duration::from_secs(60);

struct Args {
    sessions: usize,
    samples: usize,
    window: Duration,
    json: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        sessions: 10_000,
        samples: 500,
        window: Duration::from_secs(10),
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{name} takes a positive number"))
        };
        match arg.as_str() {
            "--json" => a.json = true,
            "--sessions" => a.sessions = number("--sessions")? as usize,
            "--samples" => a.samples = number("--samples")? as usize,
            "--window-ms" => a.window = Duration::from_millis(number("--window-ms")?),
            other => {
                return Err(format!(
                    "unknown argument {other:?} (--json, --sessions N, --samples N, --window-ms MS)"
                ))
            }
        }
    }
    Ok(a)
}

/// What this measurement reads of the redis-server (the tests' throwaway server: a free port,
/// no persistence, killed when dropped).
trait Info {
    fn info(&self, section: &str, field: &str) -> Result<u64, String>;
    fn commands(&self) -> Result<u64, String>;
    fn version(&self) -> String;
}

impl Info for RedisServer {
    /// A numeric field of `INFO <section>`.
    fn info(&self, section: &str, field: &str) -> Result<u64, String> {
        let text = self
            .cli(&["INFO", section])
            .ok_or_else(|| format!("INFO {section}"))?;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("INFO {section} has no {field}"))
    }

    /// Commands Redis processed so far, `INFO` itself left out.
    fn commands(&self) -> Result<u64, String> {
        let text = self
            .cli(&["INFO", "commandstats"])
            .ok_or("INFO commandstats")?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
            .filter_map(|l| {
                l.split(',')
                    .next()?
                    .split("calls=")
                    .nth(1)?
                    .parse::<u64>()
                    .ok()
            })
            .sum())
    }

    fn version(&self) -> String {
        self.cli(&["INFO", "server"])
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("redis_version:")
                        .map(|v| v.trim().to_string())
                })
            })
            .unwrap_or_else(|| "?".into())
    }
}

/// A node: a hub on a frozen clock, made a node of the cluster.
struct HubNode {
    hub: TestHub,
    clock: ManualClock,
    cluster: Node,
}

impl HubNode {
    async fn start(redis: &RedisServer) -> Result<HubNode, String> {
        let cluster: Node = ClusterNode::start(ClusterConfig::new(redis.url()))
            .await
            .map_err(|e| e.to_string())?;
        let clock = ManualClock::new();
        let tracker = PresenceTracker::with_clock(Policy::default(), clock.clone());
        let hub = Hub::with_cluster(
            tracker,
            HubConfig::default().backlog(1 << 16),
            cluster.clone(),
        );
        Ok(HubNode {
            hub,
            clock,
            cluster,
        })
    }

    async fn flush(&self) -> Result<(), String> {
        self.cluster.flush(WITHIN).await.map_err(|e| e.to_string())
    }
}

/// Polls `cond` every 10 ms until it holds, for at most [`WITHIN`].
async fn until(what: &str, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + WITHIN;
    while !cond() {
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {WITHIN:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Waits for the subscriber's delivery that shows `user` at `presence`; how long it took.
async fn delivered(
    feed: &mut Subscription<String, String, ManualClock, String, String>,
    user: &str,
    presence: Presence,
    since: Instant,
) -> Result<Duration, String> {
    loop {
        let delivery = tokio::time::timeout(WITHIN, feed.recv())
            .await
            .map_err(|_| format!("{user} {presence:?}: no delivery within {WITHIN:?}"))?
            .ok_or("the hub is gone")?;
        let shown = match &delivery {
            Delivery::State(s) => s
                .users
                .iter()
                .any(|u| u.user == user && u.presence == presence),
            Delivery::Updates(b) => b.users().any(|u| u.user == user && u.presence == presence),
        };
        if shown {
            return Ok(since.elapsed());
        }
    }
}

/// p50, p99 and max in microseconds.
fn quantiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let at = |q: f64| {
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    (at(0.5), at(0.99), at(1.0))
}

struct Latency {
    op: &'static str,
    samples: usize,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

impl Latency {
    fn of(op: &'static str, v: Vec<Duration>) -> Latency {
        let samples = v.len();
        let (p50_us, p99_us, max_us) = quantiles(v);
        Latency {
            op,
            samples,
            p50_us,
            p99_us,
            max_us,
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("cluster: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let args = args()?;
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let redis = RedisServer::start();
    let a = HubNode::start(&redis).await?;
    let b = HubNode::start(&redis).await?;
    let n = args.sessions;

    // 1. Bytes: users with one session on A, a second session on B, a room each.
    let dataset = || redis.info("memory", "used_memory");
    let empty = dataset()?;
    for i in 0..n {
        a.hub
            .connect(format!("u{i}"), format!("a{i}"), "c", Activity::Active)
            .map_err(|e| e.to_string())?;
    }
    a.flush().await?;
    until("node B showing every user", || {
        b.hub.state().users.len() == n
    })
    .await?;
    let users = dataset()?;
    for i in 0..n {
        b.hub
            .connect(format!("u{i}"), format!("b{i}"), "c", Activity::Active)
            .map_err(|e| e.to_string())?;
    }
    b.flush().await?;
    until("node A showing 2 sessions of every user", || {
        a.hub.state().users.iter().all(|u| u.sessions == 2)
    })
    .await?;
    let sessions = dataset()?;
    for i in 0..n {
        b.hub
            .rooms()
            .join(
                &format!("b{i}"),
                format!("room-{}", i % ROOMS),
                format!("{{\"n\":{i}}}"),
            )
            .map_err(|e| e.to_string())?;
    }
    b.flush().await?;
    let rooms = dataset()?;
    let per = |after: u64, before: u64| (after as f64 - before as f64) / n as f64;
    let per_user = per(users, empty);
    let per_session = per(sessions, users);
    let per_membership = per(rooms, sessions);
    // One user's keys, for the breakdown (`MEMORY USAGE`, every element counted).
    let usage = |key: &str| -> u64 {
        redis
            .cli(&["MEMORY", "USAGE", key, "SAMPLES", "0"])
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    };
    let sample_keys = [
        ("user hash", "pt:{u:u1}"),
        ("its sessions (2)", "pt:{u:u1}:s"),
        ("owner record of a session", "pt:{s:a1}"),
        ("its room entry (1 session)", "pt:{r:room-1}:u:u1"),
    ];
    let samples: Vec<(&str, u64)> = sample_keys
        .iter()
        .map(|(what, key)| (*what, usage(key)))
        .collect();
    let members = usage("pt:{r:room-1}:m") as f64 / (n as f64 / ROOMS as f64).max(1.0);
    let node_sets: u64 = redis
        .cli(&["--scan", "--pattern", "pt:{n:*}:u"])
        .map(|t| t.lines().map(|k| usage(k.trim())).sum())
        .unwrap_or(0);
    let node_set_per_user = node_sets as f64 / (2 * n) as f64;

    // 2. Steady state: a window without heartbeats, then one with A's sessions every 5 s.
    let window = args.window;
    let (a0, r0, w0) = (
        a.cluster.stats().commands,
        redis.commands()?,
        a.cluster.stats().writes,
    );
    tokio::time::sleep(window).await;
    let (a1, r1) = (a.cluster.stats().commands, redis.commands()?);
    let ticks = (window.as_millis() / 100).max(1) as usize;
    let per_tick = n.div_ceil(50); // every session once per 5 s: 1/50 of them each 100 ms
    let mut heartbeats = 0u64;
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    let mut next = 0usize;
    for _ in 0..ticks {
        interval.tick().await;
        for _ in 0..per_tick {
            a.hub
                .heartbeat(&format!("a{next}"), Activity::Active)
                .map_err(|e| e.to_string())?;
            next = (next + 1) % n;
            heartbeats += 1;
        }
    }
    let (a2, r2, w2) = (
        a.cluster.stats().commands,
        redis.commands()?,
        a.cluster.stats().writes,
    );
    let idle_node = a1 - a0;
    let idle_redis = r1 - r0;
    let busy_node = a2 - a1;
    let busy_redis = r2 - r1;
    let thousands = heartbeats as f64 / 1000.0;

    // 3. Latency: one transition at a time on A, until B's subscriber has it.
    let mut feed = b.hub.subscribe();
    let _ = feed.recv().await; // its first state
    let k = args.samples;
    let mut connects = Vec::with_capacity(k);
    let mut puts = Vec::with_capacity(2 * k);
    for i in 0..k {
        let user = format!("lat{i}");
        let since = Instant::now();
        a.hub
            .connect(user.clone(), format!("lat-tab{i}"), "c", Activity::Active)
            .map_err(|e| e.to_string())?;
        connects.push(delivered(&mut feed, &user, Presence::Active, since).await?);
    }
    for i in 0..k {
        let (user, tab) = (format!("lat{i}"), format!("lat-tab{i}"));
        let since = Instant::now();
        a.hub
            .heartbeat(&tab, Activity::Background)
            .map_err(|e| e.to_string())?;
        puts.push(delivered(&mut feed, &user, Presence::Away, since).await?);
        let since = Instant::now();
        a.hub
            .heartbeat(&tab, Activity::Active)
            .map_err(|e| e.to_string())?;
        puts.push(delivered(&mut feed, &user, Presence::Active, since).await?);
    }
    let mut joins = Vec::with_capacity(k);
    let mut updates = Vec::with_capacity(k);
    for i in 0..k {
        let (room, tab) = (format!("lat-room{i}"), format!("lat-tab{i}"));
        let mut doc = b
            .hub
            .rooms()
            .subscribe(room.clone())
            .map_err(|e| e.to_string())?;
        let _ = doc.recv().await; // its (empty) state
        let since = Instant::now();
        a.hub
            .rooms()
            .join(&tab, room.clone(), "§1".into())
            .map_err(|e| e.to_string())?;
        loop {
            let d = tokio::time::timeout(WITHIN, doc.recv())
                .await
                .map_err(|_| "no room delivery")?
                .ok_or("the hub is gone")?;
            let has = match &d {
                RoomDelivery::State(s) => !s.members.is_empty(),
                RoomDelivery::Updates(_) => true,
            };
            if has {
                joins.push(since.elapsed());
                break;
            }
        }
        a.clock.advance(Duration::from_millis(60)); // past the metadata interval
        let since = Instant::now();
        a.hub
            .rooms()
            .update(&tab, room.as_str(), "§2".into())
            .map_err(|e| e.to_string())?;
        let d = tokio::time::timeout(WITHIN, doc.recv())
            .await
            .map_err(|_| "no room update")?
            .ok_or("the hub is gone")?;
        if let RoomDelivery::Updates(_) = d {
            updates.push(since.elapsed());
        } else {
            return Err("a metadata update came as a state".into());
        }
    }
    // The baseline: the same connect on a hub alone, to its own subscriber.
    let alone: TestHub = Hub::new(
        PresenceTracker::with_clock(Policy::default(), ManualClock::new()),
        HubConfig::default(),
    );
    let mut own = alone.subscribe();
    let _ = own.recv().await;
    let mut local = Vec::with_capacity(k);
    for i in 0..k {
        let user = format!("solo{i}");
        let since = Instant::now();
        alone
            .connect(user.clone(), format!("solo-tab{i}"), "c", Activity::Active)
            .map_err(|e| e.to_string())?;
        local.push(delivered(&mut own, &user, Presence::Active, since).await?);
    }
    let latencies = [
        Latency::of("connect (claim) on A, to B's subscriber", connects),
        Latency::of("presence change (put) on A, to B's subscriber", puts),
        Latency::of("room join on A, to B's room subscriber", joins),
        Latency::of("metadata update on A, to B's room subscriber", updates),
        Latency::of("baseline: connect on a hub alone, to its subscriber", local),
    ];
    let lease_per_s = idle_node as f64 / window.as_secs_f64();

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let version = redis.version();
    if args.json {
        let lat: Vec<String> = latencies
            .iter()
            .map(|l| {
                format!(
                    "{{\"op\":\"{}\",\"samples\":{},\"p50_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1}}}",
                    l.op, l.samples, l.p50_us, l.p99_us, l.max_us
                )
            })
            .collect();
        let keys = samples
            .iter()
            .map(|(what, b)| format!("{{\"key\":\"{what}\",\"bytes\":{b}}}"))
            .collect::<Vec<_>>()
            .join(",");
        let (window_ms, writes, latency) = (window.as_millis(), w2 - w0, lat.join(","));
        println!(
            "{{\"unix_time\":{started},\"cpu\":\"{cpu}\",\"cores\":{cores},\"redis_version\":\"{version}\",\
             \"sessions\":{n},\"rooms\":{ROOMS},\"window_ms\":{window_ms},\
             \"bytes\":{{\"per_user_with_one_session\":{per_user:.1},\"per_added_session\":{per_session:.1},\"per_room_membership\":{per_membership:.1},\
             \"keys\":[{keys}],\"room_members_hash_per_member\":{members:.1},\"node_user_sets_per_user_and_node\":{node_set_per_user:.1}}},\
             \"steady\":{{\"heartbeats\":{heartbeats},\"writes\":{writes},\"node_commands_idle\":{idle_node},\"node_commands_heartbeating\":{busy_node},\
             \"redis_commands_idle\":{idle_redis},\"redis_commands_heartbeating\":{busy_redis}}},\
             \"latency\":[{latency}]}}"
        );
    } else {
        println!("redis {version} on 127.0.0.1, {cores} cores ({cpu}), two nodes, {n} users");
        println!();
        println!("Redis bytes (INFO memory used_memory deltas):");
        println!("  per user online with one session: {per_user:.0} B");
        println!("  per added session (a second tab, on the other node): {per_session:.0} B");
        println!("  per room membership ({ROOMS} rooms): {per_membership:.0} B");
        for (what, bytes) in &samples {
            println!("  MEMORY USAGE, {what}: {bytes} B");
        }
        println!("  MEMORY USAGE, a room's members hash, per member: {members:.0} B");
        println!(
            "  MEMORY USAGE, the nodes' user sets, per user and node: {node_set_per_user:.0} B"
        );
        println!();
        println!(
            "Steady state, {:?} windows: {heartbeats} heartbeats on node A ({} writes)",
            window,
            w2 - w0
        );
        println!(
            "  node A's commands: {idle_node} without heartbeats ({lease_per_s:.1}/s: leases, cleanup polls), {busy_node} with them: {:.3} per 1,000 heartbeats, {:.3} more than without",
            busy_node as f64 / thousands,
            (busy_node as f64 - idle_node as f64) / thousands
        );
        println!(
            "  Redis, both nodes: {idle_redis} without, {busy_redis} with: {:.3} per 1,000 heartbeats",
            busy_redis as f64 / thousands
        );
        println!();
        println!("Convergence, {k} samples each:");
        for l in &latencies {
            println!(
                "  {:<55} p50 {:>8.0} µs, p99 {:>8.0} µs, max {:>8.0} µs",
                l.op, l.p50_us, l.p99_us, l.max_us
            );
        }
    }
    a.cluster
        .clone()
        .shutdown()
        .await
        .map_err(|e| e.to_string())?;
    b.cluster
        .clone()
        .shutdown()
        .await
        .map_err(|e| e.to_string())?;
    drop((a, b));
    Ok(())
}
