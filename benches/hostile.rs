//! The hostile-client suite: each attack of issue 27 against a release example server, with the
//! server's RSS and CPU before, during and after, and an honest client's delivery latency
//! through it, each checked against a bound stated here.
//!
//! ```text
//! cargo build --release --all-features --example websocket --example socketio
//! cargo run --release -p presence-benches --example hostile -- --json hostile.json          # short
//! cargo run --release -p presence-benches --example hostile -- --long --json hostile.json   # the issue's scale
//! ```
//!
//! Every server is a child process on a free port of 127.0.0.1, with
//! `MALLOC_MMAP_THRESHOLD_=131072` in its environment unless `--glibc-default` (glibc then
//! maps each buffer over 128 KiB on its own and unmaps it when it is freed, so that the RSS
//! after an attack shows what the server still holds; with glibc's dynamic threshold, a peak
//! of big buffers freed once stays in the heap: the RSS keeps the peak, and a second round
//! reuses it), started with `--dev`,
//! `--all-users off` (each connection sent the users it subscribes to: a public endpoint's
//! configuration; watchers stay on, as the demo has them, so that the anonymous attacks run) and
//! pings every 5 s with a 5 s timeout (so its write timeout is 5 s) in the short variant, the
//! defaults (25 s / 20 s) in the long one. For each attack and server:
//!
//! 1. the setup (300 members of the room `doc` with 2 KB of metadata each, where the attack
//!    needs them), then a probe: an honest member of `doc` changes its metadata every 200 ms
//!    and an honest watcher of `doc` times each change's arrival;
//! 2. 3 s of the probe alone (the baseline), then `--rounds` (2) rounds of the attack, each for its
//!    duration, then its settle time (the server's timeouts), then its connections closed;
//! 3. a JSON line: per round the RSS before, its peak (sampled every 100 ms), after, the
//!    server's CPU share during the attack (of one core) and what the attack got; the probe's
//!    p50 / p95 / max latency before and during; and each bound with whether it held:
//!    - the RSS peak at most 64 MiB above the RSS before the first round;
//!    - the RSS after the last round at most 8 MiB a round above the RSS after the first
//!      (what an attack takes is given back or reused, not kept: the allocator may keep freed
//!      pages, so the RSS after one round says little);
//!    - the probe's p95 during the attacks at most 500 ms, and no change of it lost.
//!
//!    The run fails if a bound did not hold.
//!
//! # The attacks
//!
//! - `slow-readers`: watchers of `doc` (300 members) that ask for the room again as fast as the
//!   rate allows and never read (issue: 18 of them took a server from 15 to 1,546 MiB).
//! - `big-frames`: connections that announce a 56 MiB WebSocket frame and trickle it
//!   (issue: 16 of them, 5 → 1,031 MiB on Socket.IO).
//! - `watch-many`: anonymous connections watching 32 rooms each (issue: 300 of them, 5 → 434
//!   MiB).
//! - `signal-flood`: signed-in connections flipping their activity as fast as they can
//!   (issue: 200 of them, ~71k accepted a second, 67 % of a core).
//! - `silent`: TCP connections that send nothing, and slowloris requests that send a header
//!   byte every second (issue: open for ever); an honest request in the middle of them.
//! - `polling-handshakes` (Socket.IO): Engine.IO polling handshakes never polled (issue: 20,000
//!   in 4.7 s, 372 MiB for 45 s).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::unistd::{sysconf, SysconfVar};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[path = "load/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "load/server.rs"]
mod server;

use server::{free_port, Kind, Launch, Server};

#[derive(Parser, Debug)]
#[command(about = "Attacks a presence server as issue 27 did, and checks the bounds it states")]
struct Args {
    /// The servers attacked (each in turn).
    #[arg(long, value_enum, default_values_t = [Kind::Websocket, Kind::Socketio])]
    server: Vec<Kind>,
    /// The attacks (default: all).
    #[arg(long, value_enum)]
    attack: Vec<Attack>,
    /// The issue's scale and the servers' default timeouts, instead of the short variant.
    #[arg(long)]
    long: bool,
    /// How many rounds of each attack (at least 2): the RSS kept is the growth after the first
    /// round, per round after it.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Runs the servers with glibc's default allocation thresholds instead of
    /// `MALLOC_MMAP_THRESHOLD_=131072` (see the module docs).
    #[arg(long)]
    glibc_default: bool,
    /// Where the example binaries are.
    #[arg(long, default_value = "target/release/examples")]
    examples_dir: PathBuf,
    /// Writes every line as one JSON document here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Attack {
    SlowReaders,
    BigFrames,
    WatchMany,
    SignalFlood,
    Silent,
    PollingHandshakes,
}

impl Attack {
    const ALL: [Attack; 6] = [
        Attack::SlowReaders,
        Attack::BigFrames,
        Attack::WatchMany,
        Attack::SignalFlood,
        Attack::Silent,
        Attack::PollingHandshakes,
    ];

    fn name(self) -> &'static str {
        match self {
            Attack::SlowReaders => "slow-readers",
            Attack::BigFrames => "big-frames",
            Attack::WatchMany => "watch-many",
            Attack::SignalFlood => "signal-flood",
            Attack::Silent => "silent",
            Attack::PollingHandshakes => "polling-handshakes",
        }
    }
}

/// The members of `doc`, and the size of each one's metadata.
const MEMBERS: usize = 300;
const MEMBER_META: usize = 2000;
/// How often the probe's member changes its metadata.
const PROBE_EVERY: Duration = Duration::from_millis(200);

/// The bounds every attack is held to.
const MAX_RSS_GROWTH: u64 = 64 << 20;
const MAX_RSS_KEPT: u64 = 8 << 20;
const MAX_PROBE_P95: Duration = Duration::from_millis(500);

/// One attack's scale.
struct Scale {
    attackers: usize,
    duration: Duration,
    settle: Duration,
}

fn scale(attack: Attack, long: bool) -> Scale {
    let (short, long_n) = match attack {
        Attack::SlowReaders => (18, 18),
        Attack::BigFrames => (16, 16),
        Attack::WatchMany => (300, 300),
        Attack::SignalFlood => (200, 200),
        Attack::Silent => (1000, 2000),
        Attack::PollingHandshakes => (5000, 20_000),
    };
    if long {
        Scale {
            attackers: long_n,
            duration: Duration::from_secs(30),
            settle: Duration::from_secs(45),
        }
    } else {
        Scale {
            attackers: short,
            duration: Duration::from_secs(8),
            settle: Duration::from_secs(12),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients: the WebSocket route's JSON, or Engine.IO v4 / Socket.IO v5 over a WebSocket.

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connection: its writes go through a task (so a reader and a writer may share it), its
/// reads are the caller's.
struct Conn {
    kind: Kind,
    tx: mpsc::UnboundedSender<Message>,
    rx: futures_util::stream::SplitStream<Ws>,
}

/// Connects and says hello (`hello` without its `type`: the Socket.IO handshake's auth).
async fn connect(kind: Kind, addr: SocketAddr, hello: Value) -> Result<Conn, String> {
    let url = match kind {
        Kind::Socketio => format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"),
        _ => format!("ws://{addr}/ws"),
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match kind {
        Kind::Socketio => {
            // The Engine.IO open packet, then the namespace's connect with the hello as auth.
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
                other => return Err(format!("no open packet: {other:?}")),
            }
            ws.send(Message::text(format!("40{hello}")))
                .await
                .map_err(|e| format!("send: {e}"))?;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) if t.starts_with("40") => break,
                    Some(Ok(Message::Text(t))) if t.starts_with("44") => {
                        return Err(format!("refused: {t}"))
                    }
                    Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                        let _ = ws.send(Message::text("3")).await;
                    }
                    Some(Ok(_)) => {}
                    other => return Err(format!("no connect: {other:?}")),
                }
            }
        }
        _ => {
            let mut hello = hello;
            hello["type"] = json!("hello");
            ws.send(Message::text(hello.to_string()))
                .await
                .map_err(|e| format!("send: {e}"))?;
        }
    }
    let (mut sink, rx) = ws.split();
    let (tx, mut outbox) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(m) = outbox.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    Ok(Conn { kind, tx, rx })
}

/// A client message as the transport carries it.
fn encode(kind: Kind, message: &Value) -> Message {
    match kind {
        Kind::Socketio => {
            let mut payload = message.clone();
            let event = payload["type"].as_str().unwrap_or_default().to_string();
            if let Some(fields) = payload.as_object_mut() {
                fields.remove("type");
            }
            if event == "resync" || event == "leave" {
                Message::text(format!("42[{}]", json!(event)))
            } else {
                Message::text(format!("42[{},{payload}]", json!(event)))
            }
        }
        _ => Message::text(message.to_string()),
    }
}

impl Conn {
    /// Sends a client message; `false` once the connection is gone.
    fn send(&self, message: &Value) -> bool {
        self.tx.send(encode(self.kind, message)).is_ok()
    }

    /// Writes a frame that asks nothing of the server (a WebSocket ping; on Socket.IO an
    /// Engine.IO pong), so that a connection the server closed is found closed.
    fn poke(&self) {
        let frame = match self.kind {
            Kind::Socketio => Message::text("3"),
            _ => Message::Ping(Vec::new().into()),
        };
        let _ = self.tx.send(frame);
    }

    /// Whether the connection is gone (its writer stopped: the server closed it).
    fn closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// The next server message (`refused` events as `{"type":"refused",..}`), answering
    /// Engine.IO's pings on the way; `None` once closed.
    async fn next(&mut self) -> Option<Value> {
        loop {
            let text = match self.rx.next().await? {
                Ok(Message::Text(t)) => t,
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            };
            match self.kind {
                Kind::Socketio => {
                    if text.as_str() == "2" {
                        let _ = self.tx.send(Message::text("3"));
                        continue;
                    }
                    let Some(body) = text.strip_prefix("42") else {
                        continue;
                    };
                    let Ok(Value::Array(mut parts)) = serde_json::from_str::<Value>(body) else {
                        continue;
                    };
                    if parts.len() < 2 {
                        continue;
                    }
                    let mut payload = parts.swap_remove(1);
                    if parts[0] == "refused" {
                        payload["type"] = json!("refused");
                    }
                    return Some(payload);
                }
                _ => {
                    if let Ok(v) = serde_json::from_str(&text) {
                        return Some(v);
                    }
                }
            }
        }
    }

    /// Reads and drops everything from now on (answering pings), in a task, until the
    /// [`Drained`] is dropped: then the connection closes.
    fn drain(mut self) -> Drained {
        let tx = self.tx.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = self.next().await {
                if m["type"] == "room_state" {
                    DRAINED_ROOM_STATES.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Drained { tx, task }
    }
}

/// A connection read by a task that drops what it reads: closed when this is dropped (the
/// task holds its reading half and its writer's sender).
struct Drained {
    tx: mpsc::UnboundedSender<Message>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Drained {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn member_hello(token: &str, session: &str, room: &str, meta: Value) -> Value {
    json!({
        "protocol": 1,
        "token": token,
        "session": session,
        "rooms": [{"room": room, "meta": meta}],
    })
}

fn watcher_hello() -> Value {
    json!({"protocol": 1})
}

// ---------------------------------------------------------------------------------------------
// The probe: an honest member changing its metadata in `doc`, an honest watcher timing it.

#[derive(Default)]
struct ProbeLog {
    /// When each change was sent (by its number).
    sent: Vec<Instant>,
    /// Each change's latency, with when it arrived.
    latencies: Vec<(Instant, Duration)>,
}

struct Probe {
    log: Arc<Mutex<ProbeLog>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The member's connection, open while the probe runs.
    _member: Drained,
}

impl Probe {
    async fn start(kind: Kind, addr: SocketAddr, token: &str) -> Result<Probe, String> {
        let log = Arc::new(Mutex::new(ProbeLog::default()));
        let mut watcher = connect(kind, addr, watcher_hello()).await?;
        watcher.send(&json!({"type": "watch", "room": "doc"}));
        let mut member = connect(
            kind,
            addr,
            member_hello(token, "probe-tab", "doc", json!({"n": -1})),
        )
        .await?;
        // How room states show the member's session: the handle its welcome gives (or its id,
        // where the server shows ids and sends no welcome).
        let shown = match tokio::time::timeout(Duration::from_secs(5), member.next()).await {
            Ok(Some(m)) if m["type"] == "welcome" => m["session"].clone(),
            _ => json!("probe-tab"),
        };
        let reading = {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut seen = -1i64;
                while let Some(m) = watcher.next().await {
                    let now = Instant::now();
                    if !matches!(m["type"].as_str(), Some("room_state" | "room_updates")) {
                        continue;
                    }
                    for member in m["members"].as_array().into_iter().flatten() {
                        for session in member["sessions"].as_array().into_iter().flatten() {
                            if session["session"] != shown {
                                continue;
                            }
                            let n = session["meta"]["n"].as_i64().unwrap_or(-1);
                            if n > seen {
                                seen = n;
                                let mut log = lock(&log);
                                let sent = usize::try_from(n)
                                    .ok()
                                    .and_then(|n| log.sent.get(n).copied());
                                if let Some(sent) = sent {
                                    log.latencies.push((now, now - sent));
                                }
                            }
                        }
                    }
                }
            })
        };
        let kind_ = member.kind;
        let member = member.drain();
        let tx = member.tx.clone();
        let writing = {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(PROBE_EVERY);
                for n in 0u64.. {
                    tick.tick().await;
                    lock(&log).sent.push(Instant::now());
                    let update = json!({"type": "update", "room": "doc", "meta": {"n": n}});
                    if tx.send(encode(kind_, &update)).is_err() {
                        return;
                    }
                }
            })
        };
        Ok(Probe {
            log,
            tasks: vec![reading, writing],
            _member: member,
        })
    }

    /// The latencies of the changes that arrived within `from..to`, sorted.
    fn latencies(&self, from: Instant, to: Instant) -> Vec<Duration> {
        let log = lock(&self.log);
        let mut got: Vec<Duration> = log
            .latencies
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, l)| *l)
            .collect();
        got.sort();
        got
    }

    /// How many changes sent within `from..to` never arrived.
    fn lost(&self, from: Instant, to: Instant) -> usize {
        let log = lock(&self.log);
        let sent = log.sent.iter().filter(|t| **t >= from && **t < to).count();
        let got = log
            .latencies
            .iter()
            .filter(|(at, l)| *at - *l >= from && *at - *l < to)
            .count();
        sent.saturating_sub(got)
    }

    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied()
}

fn ms(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| {
        json!((d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0)
    })
}

// ---------------------------------------------------------------------------------------------
// The server's RSS, sampled.

struct Sampler {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let peak = Arc::new(AtomicU64::new(0));
        let task = {
            let peak = Arc::clone(&peak);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    if let Ok(rss) = rss(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                }
            })
        };
        Sampler { peak, task }
    }

    fn stop(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed)
    }
}

fn rss(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

// ---------------------------------------------------------------------------------------------
// The attacks. Each runs for `scale.duration` and returns what it got, as JSON; what it holds
// open is dropped when the settle time is over.

/// What an attack leaves running until the settle time is over.
type Held = Vec<Box<dyn std::any::Any + Send>>;

async fn slow_readers(
    kind: Kind,
    addr: SocketAddr,
    scale: &Scale,
) -> Result<(Value, Held), String> {
    let mut attackers = Vec::new();
    for _ in 0..scale.attackers {
        let c = connect(kind, addr, watcher_hello()).await?;
        c.send(&json!({"type": "watch", "room": "doc"}));
        attackers.push(c);
    }
    // As fast as the server's rate allows (20 a second by default), never reading; on
    // Socket.IO answering pings blindly, so that only the server's write bound can close them.
    let deadline = Instant::now() + scale.duration;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut sent = 0u64;
    let mut last_pong = Instant::now();
    while Instant::now() < deadline {
        tick.tick().await;
        for c in &attackers {
            if c.send(&json!({"type": "room_resync", "room": "doc"})) {
                sent += 1;
            }
            if kind == Kind::Socketio && last_pong.elapsed() > Duration::from_secs(2) {
                let _ = c.tx.send(Message::text("3"));
            }
        }
        if last_pong.elapsed() > Duration::from_secs(2) {
            last_pong = Instant::now();
        }
    }
    let closed = attackers.iter().filter(|c| c.closed()).count();
    let got = json!({"resyncs_sent": sent, "closed_by_server_during": closed});
    let held: Held = attackers
        .into_iter()
        .map(|c| Box::new(c) as Box<dyn std::any::Any + Send>)
        .collect();
    Ok((got, held))
}

async fn big_frames(kind: Kind, addr: SocketAddr, scale: &Scale) -> Result<(Value, Held), String> {
    let path = match kind {
        Kind::Socketio => "/socket.io/?EIO=4&transport=websocket",
        _ => "/ws",
    };
    // How long each connection stayed open from its announcement, and the bytes trickled.
    let open_for = Arc::new(Mutex::new(Vec::new()));
    let sent_total = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + scale.duration;
    let mut tasks = Vec::new();
    for _ in 0..scale.attackers {
        let (open_for, sent_total) = (Arc::clone(&open_for), Arc::clone(&sent_total));
        tasks.push(tokio::spawn(async move {
            // Again and again until the attack is over: each connection announces a masked
            // text frame of 56 MiB, then trickles it, 64 KiB every 100 ms, until closed.
            while Instant::now() < deadline {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let request = format!(
                    "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                );
                if s.write_all(request.as_bytes()).await.is_err() {
                    continue;
                }
                // The 101 and, on Socket.IO, the open packet.
                let mut buf = vec![0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
                let len: u64 = 56 << 20;
                let mut header = vec![0x81u8, 0x80 | 127];
                header.extend_from_slice(&len.to_be_bytes());
                header.extend_from_slice(&[1, 2, 3, 4]);
                let start = Instant::now();
                let chunk = vec![b'a'; 64 << 10];
                let mut ok = s.write_all(&header).await.is_ok();
                while ok && Instant::now() < deadline {
                    let read =
                        tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await;
                    if let Ok(Ok(0) | Err(_)) = read {
                        break;
                    }
                    ok = s.write_all(&chunk).await.is_ok();
                    if ok {
                        sent_total.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }
                }
                lock(&open_for).push(start.elapsed());
                // Then again, 100 ms later: holding big frames open, not a connection flood
                // (which `--admit-per-s` is for).
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let open_for = lock(&open_for).clone();
    let got = json!({
        "connections_made": open_for.len(),
        "longest_open_ms": ms(open_for.iter().max().copied()),
        "median_open_ms": ms(percentile(&{ let mut v = open_for.clone(); v.sort(); v }, 0.5)),
        "bytes_trickled": sent_total.load(Ordering::Relaxed),
    });
    Ok((got, Vec::new()))
}

async fn watch_many(kind: Kind, addr: SocketAddr, scale: &Scale) -> Result<(Value, Held), String> {
    let mut held: Held = Vec::new();
    let mut refused = 0usize;
    for i in 0..scale.attackers {
        let mut c = connect(kind, addr, watcher_hello()).await?;
        for j in 0..32 {
            c.send(&json!({"type": "watch", "room": format!("w{i}-{j}")}));
        }
        // Read what the watches brought (states of empty rooms) for a moment, then keep reading.
        let _ = tokio::time::timeout(Duration::from_millis(5), async {
            while let Some(m) = c.next().await {
                if m["type"] == "refused" {
                    refused += 1;
                }
            }
        })
        .await;
        held.push(Box::new(c.drain()));
    }
    tokio::time::sleep(scale.duration).await;
    let got =
        json!({"connections": scale.attackers, "rooms_watched_each": 32, "refusals_seen": refused});
    Ok((got, held))
}

/// Room states the drained connections (the setup's members) were sent: each a copy of the
/// room the server made for them, and a write buffer of its size each keeps.
static DRAINED_ROOM_STATES: AtomicU64 = AtomicU64::new(0);

/// Numbers the flood's sessions.
static FLOOD_SESSIONS: AtomicUsize = AtomicUsize::new(0);

async fn signal_flood(
    kind: Kind,
    addr: SocketAddr,
    scale: &Scale,
    tokens: &[String],
) -> Result<(Value, Held), String> {
    let refusals = Arc::new(AtomicUsize::new(0));
    let mut conns = Vec::new();
    for token in tokens.iter().take(scale.attackers) {
        // A new session each time: the last round's are still in their grace.
        let n = FLOOD_SESSIONS.fetch_add(1, Ordering::Relaxed);
        let hello = json!({"protocol": 1, "token": token, "session": format!("flood-{n}")});
        let mut c = connect(kind, addr, hello).await?;
        let tx = c.tx.clone();
        let refusals = Arc::clone(&refusals);
        tokio::spawn(async move {
            while let Some(m) = c.next().await {
                if m["type"] == "refused" {
                    refusals.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        conns.push(tx);
    }
    let deadline = Instant::now() + scale.duration;
    let mut sent = 0u64;
    let flips = [
        encode(kind, &json!({"type": "heartbeat", "activity": "idle"})),
        encode(kind, &json!({"type": "heartbeat", "activity": "active"})),
    ];
    while Instant::now() < deadline {
        // Each connection is handed a burst of flips, then the writers catch up.
        for tx in &conns {
            for flip in flips.iter().cycle().take(50) {
                if tx.send(flip.clone()).is_ok() {
                    sent += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = scale.duration.as_secs_f64();
    let got = json!({
        "connections": conns.len(),
        "flips_sent_per_s": (sent as f64 / seconds).round(),
        "refusals_received": refusals.load(Ordering::Relaxed),
    });
    Ok((got, Vec::new()))
}

async fn silent(_kind: Kind, addr: SocketAddr, scale: &Scale) -> Result<(Value, Held), String> {
    let closed_after = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let slowloris = scale.attackers / 20;
    for i in 0..scale.attackers {
        // 200 every 100 ms: a connect flood past the listen backlog (1,024) would leave
        // connections the client thinks open in the server's SYN queue, accepted late.
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let closed_after = Arc::clone(&closed_after);
        let limit = scale.duration + scale.settle;
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return;
            };
            let start = Instant::now();
            let mut buf = [0u8; 1024];
            if i < slowloris {
                // A header byte a second, never the end of the headers.
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
                while start.elapsed() < limit {
                    match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                        Ok(Ok(0) | Err(_)) => break,
                        Ok(Ok(_)) => {} // a 408, say: the close follows
                        Err(_) => {
                            if s.write_all(b"X").await.is_err() {
                                break;
                            }
                        }
                    }
                }
            } else {
                while start.elapsed() < limit {
                    match tokio::time::timeout(limit, s.read(&mut buf)).await {
                        Ok(Ok(0) | Err(_)) | Err(_) => break,
                        Ok(Ok(_)) => {}
                    }
                }
            }
            if start.elapsed() < limit {
                lock(&closed_after).push(start.elapsed());
            }
        }));
    }
    // An honest request in the middle of it.
    tokio::time::sleep(scale.duration / 2).await;
    let honest_start = Instant::now();
    let honest = http_get(addr, "/").await;
    let honest_ms = honest_start.elapsed();
    tokio::time::sleep(scale.duration / 2).await;
    let got = json!({
        "silent": scale.attackers - slowloris,
        "slowloris": slowloris,
        "honest_request": honest.map(|status| status.to_string()).unwrap_or_else(|e| e),
        "honest_request_ms": ms(Some(honest_ms)),
    });
    let held: Held = vec![Box::new(Closing {
        closed_after,
        tasks,
        total: scale.attackers,
    })];
    Ok((got, held))
}

/// The silent attack's connections, counted once the settle time is over.
struct Closing {
    closed_after: Arc<Mutex<Vec<Duration>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    total: usize,
}

async fn http_get(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not HTTP: {head:?}"))
}

async fn polling_handshakes(
    _kind: Kind,
    addr: SocketAddr,
    scale: &Scale,
) -> Result<(Value, Held), String> {
    // Over 8 kept-alive connections, each GET opens an Engine.IO session that is never polled.
    let opened = Arc::new(AtomicUsize::new(0));
    let per = scale.attackers.div_ceil(8);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let opened = Arc::clone(&opened);
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return;
            };
            let mut buf = vec![0u8; 4096];
            for _ in 0..per {
                let request = format!(
                    "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {addr}\r\n\r\n"
                );
                if s.write_all(request.as_bytes()).await.is_err() {
                    return;
                }
                match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 && buf[..n].windows(3).any(|w| w == b"sid") => {
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => return,
                }
            }
        }));
    }
    let start = Instant::now();
    for task in tasks {
        let _ = task.await;
    }
    let took = start.elapsed();
    tokio::time::sleep(scale.duration.saturating_sub(took)).await;
    let got =
        json!({"sessions_opened": opened.load(Ordering::Relaxed), "opening_ms": ms(Some(took))});
    Ok((got, Vec::new()))
}

// ---------------------------------------------------------------------------------------------
// One attack against one server.

/// What one round of an attack measured.
struct Round {
    rss_before: u64,
    peak: u64,
    rss_after: u64,
    cpu_share: f64,
    window: (Instant, Instant),
    got: Value,
    closed_by_end: Value,
    /// Room states the setup's members were sent during the round.
    members_sent_room_states: u64,
}

async fn round(
    attack: Attack,
    kind: Kind,
    server: &Server,
    scale: &Scale,
    flood_tokens: &[String],
    clock_ticks: u64,
) -> Result<Round, String> {
    let addr = server.addr();
    let rss_before = server.rss()?;
    let cpu_before = server.cpu_us(clock_ticks)?;
    let states_before = DRAINED_ROOM_STATES.load(Ordering::Relaxed);
    let sampler = Sampler::start(server.pid);
    let start = Instant::now();
    let (got, held) = match attack {
        Attack::SlowReaders => slow_readers(kind, addr, scale).await?,
        Attack::BigFrames => big_frames(kind, addr, scale).await?,
        Attack::WatchMany => watch_many(kind, addr, scale).await?,
        Attack::SignalFlood => signal_flood(kind, addr, scale, flood_tokens).await?,
        Attack::Silent => silent(kind, addr, scale).await?,
        Attack::PollingHandshakes => polling_handshakes(kind, addr, scale).await?,
    };
    let end = Instant::now();
    let cpu = server.cpu_us(clock_ticks)?.saturating_sub(cpu_before);
    tokio::time::sleep(scale.settle).await;
    // A connection whose client sends nothing learns it was closed only when it writes: two
    // harmless frames, apart, each connection (the second fails once the first met a reset).
    for _ in 0..2 {
        for h in &held {
            if let Some(c) = h.downcast_ref::<Conn>() {
                c.poke();
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // What the server closed by the end of the settle time.
    let mut closed_by_end = Value::Null;
    for h in &held {
        if let Some(c) = h.downcast_ref::<Conn>() {
            let n = closed_by_end.as_u64().unwrap_or(0) + u64::from(c.closed());
            closed_by_end = json!(n);
        }
        if let Some(c) = h.downcast_ref::<Closing>() {
            let closed = lock(&c.closed_after).clone();
            closed_by_end = json!({"closed": closed.len(), "of": c.total,
                "latest_ms": ms(closed.iter().max().copied())});
            for t in &c.tasks {
                t.abort();
            }
        }
    }
    // The attack's connections go; what they held is given back (or not: a leak).
    drop(held);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = sampler.stop();
    let rss_after = server.rss()?;
    let members_sent_room_states = DRAINED_ROOM_STATES.load(Ordering::Relaxed) - states_before;
    Ok(Round {
        members_sent_room_states,
        rss_before,
        peak,
        rss_after,
        cpu_share: cpu as f64 / (end - start).as_micros().max(1) as f64,
        window: (start, end),
        got,
        closed_by_end,
    })
}

async fn run_one(
    attack: Attack,
    kind: Kind,
    args: &Args,
    clock_ticks: u64,
) -> Result<Value, String> {
    let scale = scale(attack, args.long);
    let mut flags: Vec<(String, u64)> = Vec::new();
    if !args.long {
        flags.push(("ping-interval-ms".into(), 5000));
        flags.push(("ping-timeout-ms".into(), 5000));
    }
    // A public endpoint's configuration: each connection is sent the users it subscribes to
    // (the demo's every-user feed costs every connection every user's change). Watchers stay
    // on, as the demo has them, so that the anonymous attacks can run.
    let launch = Launch {
        kind,
        examples_dir: args.examples_dir.clone(),
        node: "node".into(),
        flags,
        args: vec!["--all-users".into(), "off".into()],
        env: if args.glibc_default {
            Vec::new()
        } else {
            // Freed big buffers go back to the system at once: the RSS is what the server
            // holds, not the high-water mark glibc keeps of a peak (its dynamic threshold
            // puts buffers freed once into the heap, which it rarely gives back).
            vec![("MALLOC_MMAP_THRESHOLD_".into(), "131072".into())]
        },
    };
    let port = free_port()?;
    let server = Server::start(&launch, port).await?;
    let addr = server.addr();
    // Setup: the members of `doc`, honest and reading.
    let needs_members = matches!(attack, Attack::SlowReaders);
    let n_tokens = 1
        + if needs_members { MEMBERS } else { 0 }
        + if attack == Attack::SignalFlood {
            args.rounds.max(2) * scale.attackers
        } else {
            0
        };
    let tokens = http::login_all(addr, n_tokens).await?;
    let mut members = Vec::new();
    if needs_members {
        let pad = "x".repeat(MEMBER_META);
        for (i, token) in tokens.iter().enumerate().skip(1).take(MEMBERS) {
            let hello = member_hello(token, &format!("m{i}"), "doc", json!({"pad": pad}));
            members.push(connect(kind, addr, hello).await?.drain());
        }
    }
    let probe = Probe::start(kind, addr, &tokens[0]).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let baseline = (Instant::now() - Duration::from_secs(2), Instant::now());
    // Rounds after the first show whether what the first took is given back or reused.
    let flood: Vec<String> = tokens.iter().skip(1).cloned().collect();
    let n_rounds = args.rounds.max(2);
    let per_round = flood.len() / n_rounds;
    let mut rounds = Vec::with_capacity(n_rounds);
    for i in 0..n_rounds {
        let tokens = &flood[i * per_round..(i + 1) * per_round];
        rounds.push(round(attack, kind, &server, &scale, tokens, clock_ticks).await?);
    }
    let before = probe.latencies(baseline.0, baseline.1);
    let mut during = Vec::new();
    let mut lost = 0;
    for r in &rounds {
        during.extend(probe.latencies(r.window.0, r.window.1));
        lost += probe.lost(r.window.0, r.window.1 - Duration::from_secs(1));
    }
    during.sort();
    probe.stop();
    drop(members);
    server.stop().await;

    let (first, last) = (&rounds[0], &rounds[n_rounds - 1]);
    let peak = rounds.iter().map(|r| r.peak).max().unwrap_or(0);
    let growth = peak.saturating_sub(first.rss_before);
    let kept = last.rss_after.saturating_sub(first.rss_after) / (n_rounds as u64 - 1);
    let p95 = percentile(&during, 0.95);
    let bounds = json!([
        {"bound": "rss peak - before <= 64 MiB", "held": growth <= MAX_RSS_GROWTH},
        {"bound": "rss kept per round after the first <= 8 MiB", "held": kept <= MAX_RSS_KEPT},
        {"bound": "probe p95 during <= 500 ms", "held": p95.is_some_and(|p| p <= MAX_PROBE_P95)},
        {"bound": "probe changes lost during = 0", "held": lost == 0},
    ]);
    let round_json = |r: &Round| {
        json!({
            "rss_before_mib": mib(r.rss_before),
            "rss_peak_mib": mib(r.peak),
            "rss_after_mib": mib(r.rss_after),
            "cpu_share": (r.cpu_share * 1000.0).round() / 1000.0,
            "got": r.got,
            "closed_by_end_of_settle": r.closed_by_end,
            "members_sent_room_states": r.members_sent_room_states,
        })
    };
    Ok(json!({
        "attack": attack.name(),
        "server": kind.name(),
        "scale": {"attackers": scale.attackers, "duration_s": scale.duration.as_secs(), "settle_s": scale.settle.as_secs()},
        "rss_growth_mib": mib(growth),
        "rss_kept_mib": mib(kept),
        "probe_before": {"p50_ms": ms(percentile(&before, 0.5)), "p95_ms": ms(percentile(&before, 0.95)), "n": before.len()},
        "probe_during": {"p50_ms": ms(percentile(&during, 0.5)), "p95_ms": ms(p95), "max_ms": ms(during.last().copied()), "n": during.len(), "lost": lost},
        "rounds": rounds.iter().map(round_json).collect::<Vec<_>>(),
        "bounds": bounds,
    }))
}

fn mib(bytes: u64) -> f64 {
    (bytes as f64 / (1 << 20) as f64 * 10.0).round() / 10.0
}

fn raise_descriptor_limit() -> Result<u64, String> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit: {e}"))?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|e| format!("setrlimit: {e}"))?;
    }
    Ok(hard)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let attacks: Vec<Attack> = if args.attack.is_empty() {
        Attack::ALL.to_vec()
    } else {
        args.attack.clone()
    };
    if let Err(e) = raise_descriptor_limit() {
        eprintln!("hostile: {e}");
        return ExitCode::FAILURE;
    }
    let clock_ticks = sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(100);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hostile: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut lines = Vec::new();
    let mut failed = false;
    for attack in attacks {
        for &kind in &args.server {
            if kind == Kind::Peer || (attack == Attack::PollingHandshakes && kind != Kind::Socketio)
            {
                continue;
            }
            let line = runtime.block_on(run_one(attack, kind, &args, clock_ticks));
            match line {
                Ok(line) => {
                    let held = line["bounds"]
                        .as_array()
                        .is_some_and(|b| b.iter().all(|b| b["held"] == true));
                    failed |= !held;
                    println!("{line}");
                    lines.push(line);
                }
                Err(e) => {
                    eprintln!("hostile: {} against {}: {e}", attack.name(), kind.name());
                    failed = true;
                }
            }
        }
    }
    if let Some(path) = &args.json {
        let doc = json!({"hostile": lines, "long": args.long, "rounds": args.rounds.max(2),
            "malloc_mmap_threshold": if args.glibc_default { Value::Null } else { json!(131072) }});
        if let Err(e) = std::fs::write(path, doc.to_string()) {
            eprintln!("hostile: {}: {e}", path.display());
            failed = true;
        }
    }
    if failed {
        eprintln!("hostile: a bound did not hold, or an attack could not run");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
