//! One server's turn in a round: start it, connect the clients (ramp), heartbeat (steady), let
//! some clients vanish (departures), kill and restart the server (storm), stop. Each phase
//! returns its figures as a JSON object.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::client::{lock, Client, Identity, Mode, Setup, Stats, Transport};
use super::held::{Departures, Held};
use super::http::login_all;
use super::server::{free_port, Kind, Launch, Server};

/// How often the run looks at the clients and the server while it waits.
const POLL: Duration = Duration::from_millis(50);

/// What a turn needs besides the server.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) clients: usize,
    /// Users each client subscribes to (`clients`: all, and the hello names none).
    pub(crate) subscribe: Option<usize>,
    pub(crate) heartbeat: Duration,
    pub(crate) steady: Duration,
    pub(crate) departures: usize,
    pub(crate) ramp_concurrency: usize,
    pub(crate) per_address: usize,
    pub(crate) backoff_ms: (u64, u64),
    pub(crate) ramp_bound: Duration,
    pub(crate) departures_bound: Duration,
    pub(crate) storm_bound: Duration,
    pub(crate) clock_ticks: u64,
    /// Every client joins the room `hall`, sent it this way.
    pub(crate) room: Option<crate::RoomView>,
}

/// One server's turn: its phases' figures and the checks that failed.
#[derive(Debug, Default)]
pub(crate) struct Turn {
    pub(crate) phases: Vec<Value>,
    pub(crate) failures: Vec<String>,
}

/// Tokens per server kind: the examples sign with a fixed demo key, so a token stays good
/// across restarts and rounds.
pub(crate) type Tokens = HashMap<Kind, Arc<Vec<String>>>;

/// Runs one turn of `launch`'s server under `plan`'s load. `Err` only when the turn could not
/// start at all; checks that fail during it are in `Turn::failures`.
pub(crate) async fn turn(
    launch: &Launch,
    plan: &Plan,
    round: usize,
    tokens: &mut Tokens,
) -> Result<Turn, String> {
    let port = free_port()?;
    let server = Server::start(launch, port).await?;
    let tokens = match tokens.get(&launch.kind) {
        Some(t) => Arc::clone(t),
        None => {
            let t = Arc::new(login_all(server.addr(), plan.clients).await?);
            tokens.insert(launch.kind, Arc::clone(&t));
            t
        }
    };
    let mut t = TurnState {
        launch,
        plan,
        server: Some(server),
        clients: Vec::new(),
        setup: Arc::new(Setup {
            transport: match launch.kind {
                Kind::Socketio => Transport::SocketIo,
                Kind::Websocket | Kind::Peer => Transport::WebSocket,
            },
            server: std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            heartbeat: plan.heartbeat,
            backoff_ms: plan.backoff_ms,
            ramp: Arc::new(Semaphore::new(plan.ramp_concurrency.max(1))),
            heartbeats: AtomicU64::new(0),
            watch: plan.room.and_then(|view| {
                let watch = match view {
                    crate::RoomView::Members => return None,
                    crate::RoomView::Window => r#"{"room":"hall","view":"window","limit":50}"#,
                    crate::RoomView::Occupancy => r#"{"room":"hall","view":"occupancy"}"#,
                };
                Some(match launch.kind {
                    Kind::Socketio => format!(r#"42["watch",{watch}]"#),
                    Kind::Websocket | Kind::Peer => {
                        format!(r#"{{"type":"watch",{}"#, &watch[1..])
                    }
                })
            }),
        }),
        base: json!({ "round": round, "server": launch.kind.name() }),
        turn: Turn::default(),
        rss_start: 0,
        rss_steady: 0,
    };
    let result = t.phases(&tokens).await;
    if let Err(e) = result {
        t.turn
            .failures
            .push(format!("round {round} {}: {e}", launch.kind.name()));
    }
    for client in t.clients.drain(..) {
        client.stop().await;
    }
    if let Some(server) = t.server.take() {
        server.stop().await;
    }
    Ok(t.turn)
}

struct TurnState<'a> {
    launch: &'a Launch,
    plan: &'a Plan,
    server: Option<Server>,
    clients: Vec<Client>,
    setup: Arc<Setup>,
    /// Fields every phase's object starts with.
    base: Value,
    turn: Turn,
    rss_start: u64,
    rss_steady: u64,
}

/// The source address of client `i`: 127.0.0.2 for the first `per_address`, then .3, ...
fn source(i: usize, per_address: usize) -> IpAddr {
    let n = u32::try_from(2 + i / per_address.max(1)).unwrap_or(u32::MAX);
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 0)) + n))
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl TurnState<'_> {
    fn server(&mut self) -> Result<&mut Server, String> {
        self.server.as_mut().ok_or_else(|| "no server".to_string())
    }

    /// Fails if the server exited.
    fn alive(&mut self) -> Result<(), String> {
        let server = self.server()?;
        match server.exited() {
            Some(status) => Err(format!(
                "the server died ({status}): {}",
                server.output_tail()
            )),
            None => Ok(()),
        }
    }

    fn emit(&mut self, phase: &str, figures: Value) {
        let mut object = self.base.clone();
        if let (Some(o), Value::Object(f)) = (object.as_object_mut(), figures) {
            o.insert("phase".into(), phase.into());
            o.extend(f);
        }
        println!("{object}");
        self.turn.phases.push(object);
    }

    fn fail(&mut self, what: String) {
        let line = format!(
            "round {} {}: {what}",
            self.base["round"],
            self.launch.kind.name()
        );
        eprintln!("load: FAIL {line}");
        self.turn.failures.push(line);
    }

    /// Sums and resets the counters of `clients` (None: all).
    fn take_stats(&self, which: impl Fn(usize) -> bool) -> (Stats, usize) {
        let mut total = Stats::default();
        let mut count = 0;
        for (i, c) in self.clients.iter().enumerate() {
            if !which(i) {
                continue;
            }
            let mut s = lock(&c.shared);
            total.messages += s.stats.messages;
            total.bytes += s.stats.bytes;
            total.room_messages += s.stats.room_messages;
            total.room_bytes += s.stats.room_bytes;
            s.stats = Stats::default();
            count += 1;
        }
        (total, count)
    }

    /// Waits until `done` holds for every client `which` selects, or `bound` passes; samples
    /// the server's RSS meanwhile. The time taken (None: the bound passed) and the peak RSS.
    async fn wait_truth(
        &mut self,
        which: impl Fn(usize) -> bool,
        bound: Duration,
    ) -> Result<(Option<Duration>, u64, usize), String> {
        let start = Instant::now();
        let mut peak = 0;
        loop {
            self.alive()?;
            peak = peak.max(self.server()?.rss().unwrap_or(0));
            let missing = self
                .clients
                .iter()
                .enumerate()
                .filter(|(i, c)| which(*i) && !lock(&c.shared).held.is_true())
                .count();
            if missing == 0 {
                return Ok((Some(start.elapsed()), peak, 0));
            }
            if start.elapsed() >= bound {
                return Ok((None, peak, missing));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn phases(&mut self, tokens: &[String]) -> Result<(), String> {
        self.ramp(tokens).await?;
        self.steady().await?;
        let departures = self.departures().await?;
        self.storm(departures).await
    }

    async fn ramp(&mut self, tokens: &[String]) -> Result<(), String> {
        let plan = self.plan;
        let n = plan.clients;
        let clock = plan.clock_ticks;
        let (rss_before, cpu_before) = {
            let server = self.server()?;
            (server.rss()?, server.cpu_us(clock)?)
        };
        self.rss_start = rss_before;
        let k = plan.subscribe.unwrap_or(n);
        let start = Instant::now();
        for (i, token) in tokens.iter().enumerate().take(n) {
            let mut hello = serde_json::Map::new();
            if self.setup.transport == Transport::WebSocket {
                hello.insert("type".into(), "hello".into());
            }
            hello.insert("protocol".into(), 1.into());
            hello.insert("session".into(), format!("s{i}").into());
            hello.insert("activity".into(), "active".into());
            hello.insert("token".into(), token.as_str().into());
            if plan.room.is_some() {
                hello.insert("rooms".into(), json!([{"room": "hall"}]));
            }
            if plan.subscribe.is_some() {
                let users: Vec<Value> = (1..=k)
                    .map(|d| format!("u{}", (i + d) % n).into())
                    .collect();
                hello.insert("users".into(), users.into());
            }
            let identity = Identity {
                source: source(i, plan.per_address),
                hello: Value::Object(hello).to_string(),
            };
            self.clients.push(Client::spawn(
                Arc::clone(&self.setup),
                identity,
                Held::new(i, n, k),
            ));
        }
        // Connected: every client had its first state.
        let connect_deadline = start + plan.ramp_bound;
        let connected_in = loop {
            self.alive()?;
            let waiting = self
                .clients
                .iter()
                .filter(|c| lock(&c.shared).first_state_bytes.is_none())
                .count();
            if waiting == 0 {
                break Some(start.elapsed());
            }
            if Instant::now() >= connect_deadline {
                let example = self
                    .clients
                    .iter()
                    .find_map(|c| lock(&c.shared).last_error.clone());
                self.fail(format!(
                    "{waiting} of {n} clients had no state within {:?} (e.g. {example:?})",
                    plan.ramp_bound
                ));
                break None;
            }
            tokio::time::sleep(POLL).await;
        };
        let left = plan.ramp_bound.saturating_sub(start.elapsed());
        let (truth, _, missing) = self.wait_truth(|_| true, left).await?;
        if truth.is_none() {
            self.fail(format!(
                "ramp: {missing} clients did not hold every subscribed user within {:?}",
                plan.ramp_bound
            ));
        }
        let settled = start.elapsed();
        let (rss_after, cpu_after) = {
            let server = self.server()?;
            (server.rss()?, server.cpu_us(clock)?)
        };
        let mut first_states = Vec::with_capacity(n);
        let mut first_users = Vec::with_capacity(n);
        let mut connect_errors = 0;
        let mut outside = 0;
        for c in &self.clients {
            let s = lock(&c.shared);
            first_states.push(s.first_state_bytes.unwrap_or(0));
            first_users.push(s.held.last_state_users as u64);
            connect_errors += s.connect_errors;
            outside += s.held.outside;
        }
        let (stats, _) = self.take_stats(|_| true);
        let first_max = first_states.iter().copied().max().unwrap_or(0);
        self.emit(
            "ramp",
            json!({
                "clients": n,
                "rss_before_bytes": rss_before,
                "rss_after_bytes": rss_after,
                "rss_per_connection_bytes": rss_after.saturating_sub(rss_before) / n as u64,
                "connect_ms": connected_in.map(ms),
                "settle_ms": truth.map(|_| ms(settled)),
                "bytes_received": stats.bytes,
                "bytes_per_client": stats.bytes / n as u64,
                "messages_per_client": stats.messages as f64 / n as f64,
                "room_bytes_per_client": stats.room_bytes / n as u64,
                "room_messages_per_client": stats.room_messages as f64 / n as f64,
                "first_state_bytes_median": median(first_states),
                "first_state_bytes_max": first_max,
                "first_state_users_median": median(first_users),
                "users_outside_subscription": outside,
                "connect_errors": connect_errors,
                "server_cpu_ms": cpu_after.saturating_sub(cpu_before) / 1000,
            }),
        );
        if connected_in.is_none() {
            return Err("the ramp did not complete".into());
        }
        Ok(())
    }

    async fn steady(&mut self) -> Result<(), String> {
        let plan = self.plan;
        let n = plan.clients as u64;
        let clock = plan.clock_ticks;
        self.take_stats(|_| true);
        let beats_before = self.setup.heartbeats.load(Ordering::Relaxed);
        let cpu_before = self.server()?.cpu_us(clock)?;
        let start = Instant::now();
        while start.elapsed() < plan.steady {
            self.alive()?;
            tokio::time::sleep(POLL.max(Duration::from_millis(200))).await;
        }
        let cpu = self.server()?.cpu_us(clock)?.saturating_sub(cpu_before);
        let beats = self.setup.heartbeats.load(Ordering::Relaxed) - beats_before;
        let rss = self.server()?.rss()?;
        self.rss_steady = rss;
        let (stats, _) = self.take_stats(|_| true);
        let disconnected = self
            .clients
            .iter()
            .filter(|c| !lock(&c.shared).connected)
            .count();
        let untrue = self
            .clients
            .iter()
            .filter(|c| !lock(&c.shared).held.is_true())
            .count();
        if disconnected > 0 || untrue > 0 {
            self.fail(format!(
                "steady: {disconnected} clients disconnected, {untrue} not holding every subscribed user"
            ));
        }
        self.emit(
            "steady",
            json!({
                "seconds": plan.steady.as_secs_f64(),
                "heartbeats": beats,
                "server_cpu_us": cpu,
                "cpu_us_per_heartbeat": if beats == 0 { 0.0 } else { cpu as f64 / beats as f64 },
                "rss_bytes": rss,
                "rss_per_connection_bytes": rss.saturating_sub(self.rss_start) / n,
                "bytes_per_client": stats.bytes / n,
                "messages_per_client": stats.messages as f64 / n as f64,
            }),
        );
        Ok(())
    }

    async fn departures(&mut self) -> Result<Departures, String> {
        let plan = self.plan;
        let n = plan.clients;
        let clock = plan.clock_ticks;
        let departures = Departures::new(n, plan.departures);
        let d = departures.len();
        if d == 0 {
            return Ok(departures);
        }
        let remaining = n - d;
        let cpu_before = self.server()?.cpu_us(clock)?;
        // What every client expects changes first, then the departed vanish.
        for c in &self.clients {
            let mut s = lock(&c.shared);
            s.held.mark_departed(departures);
            s.stats = Stats::default();
        }
        for j in departures.iter() {
            self.clients[j].tell(Mode::Vanish);
        }
        let gaps_before: u64 = self.clients.iter().map(|c| lock(&c.shared).held.gaps).sum();
        let (truth, _, missing) = self
            .wait_truth(|i| !departures.contains(i), plan.departures_bound)
            .await?;
        let cpu = self.server()?.cpu_us(clock)?.saturating_sub(cpu_before);
        let (stats, _) = self.take_stats(|i| !departures.contains(i));
        let gaps: u64 = self.clients.iter().map(|c| lock(&c.shared).held.gaps).sum();
        let disconnected = self
            .clients
            .iter()
            .enumerate()
            .filter(|(i, c)| !departures.contains(*i) && !lock(&c.shared).connected)
            .count();
        if truth.is_none() {
            self.fail(format!(
                "departures: {missing} of {remaining} clients did not see the {d} departed go offline within {:?}",
                plan.departures_bound
            ));
        }
        if disconnected > 0 {
            self.fail(format!(
                "departures: {disconnected} remaining clients were disconnected"
            ));
        }
        let per = (remaining * d) as f64;
        self.emit(
            "departures",
            json!({
                "departed": d,
                "remaining": remaining,
                "truth_ms": truth.map(ms),
                "bound_ms": ms(plan.departures_bound),
                "bytes_received": stats.bytes,
                "bytes_per_client_per_departure": stats.bytes as f64 / per,
                "messages_per_client_per_departure": stats.messages as f64 / per,
                "room_bytes_per_client": stats.room_bytes as f64 / remaining as f64,
                "room_messages_per_client": stats.room_messages as f64 / remaining as f64,
                "gaps": gaps - gaps_before,
                "server_cpu_ms": cpu / 1000,
            }),
        );
        Ok(departures)
    }

    async fn storm(&mut self, departures: Departures) -> Result<(), String> {
        let plan = self.plan;
        let n = plan.clients;
        let remaining = (n - departures.len()) as u64;
        let server = self.server.take().ok_or("no server")?;
        let port = server.port;
        let start = Instant::now();
        server.kill().await?;
        // Nothing of the old server counts any more: every client waits for a new state.
        let before: Vec<(u32, u64, u64, u64)> = self
            .clients
            .iter()
            .map(|c| {
                let mut s = lock(&c.shared);
                s.held.await_state();
                s.stats = Stats::default();
                (s.connections, s.lost, s.connect_errors, s.busy)
            })
            .collect();
        let server = Server::start(self.launch, port).await?;
        let restarted_in = start.elapsed();
        let cpu_before = 0; // a new process
        self.server = Some(server);
        let (truth, peak, missing) = self
            .wait_truth(|i| !departures.contains(i), plan.storm_bound)
            .await?;
        let (stats, _) = self.take_stats(|i| !departures.contains(i));
        let (rss_after, cpu) = {
            let server = self.server()?;
            (server.rss()?, server.cpu_us(plan.clock_ticks)?)
        };
        // Reconnects beyond one per client: connections lost again during the storm, and why
        // (each such client's latest reason).
        let (mut reconnects, mut lost_again, mut connect_errors, mut busy) = (0, 0, 0, 0);
        let mut reasons: HashMap<String, u64> = HashMap::new();
        for (c, (connections, lost, errors, was_busy)) in self.clients.iter().zip(&before) {
            let s = lock(&c.shared);
            reconnects += u64::from(s.connections - connections);
            connect_errors += s.connect_errors - errors;
            busy += s.busy - was_busy;
            let again = (s.lost - lost).saturating_sub(1);
            lost_again += again;
            if again > 0 {
                let reason: String = s
                    .last_error
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(80)
                    .collect();
                *reasons.entry(reason).or_default() += 1;
            }
        }
        let mut reasons: Vec<(String, u64)> = reasons.into_iter().collect();
        reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
        reasons.truncate(3);
        if truth.is_none() {
            self.fail(format!(
                "storm: {missing} of {remaining} clients did not hold every subscribed survivor within {:?}",
                plan.storm_bound
            ));
        }
        self.emit(
            "storm",
            json!({
                "clients": remaining,
                "restart_ms": ms(restarted_in),
                "truth_ms": truth.map(|t| ms(t + restarted_in)),
                "bound_ms": ms(plan.storm_bound),
                "bytes_received": stats.bytes,
                "bytes_per_client": stats.bytes / remaining.max(1),
                "messages_per_client": stats.messages as f64 / remaining.max(1) as f64,
                "room_bytes_per_client": stats.room_bytes / remaining.max(1),
                "room_messages_per_client": stats.room_messages as f64 / remaining.max(1) as f64,
                "reconnects": reconnects,
                "lost_again": lost_again,
                "lost_again_reasons": reasons,
                "busy": busy,
                "connect_errors": connect_errors,
                "rss_steady_bytes": self.rss_steady,
                "rss_peak_bytes": peak,
                "rss_after_bytes": rss_after,
                "peak_over_steady": if self.rss_steady == 0 { 0.0 } else { peak as f64 / self.rss_steady as f64 },
                "server_cpu_ms": cpu.saturating_sub(cpu_before) / 1000,
            }),
        );
        Ok(())
    }
}
