//! The discrete-event simulation: clients, network and server in virtual time, driving a real
//! [`PresenceTracker`] on a [`ManualClock`], with the ground truth kept beside it.
//!
//! Everything that happens is an entry in one priority queue ordered by virtual time, so the
//! cost is per simulated event, never per session per virtual second. The world (when users
//! come and go, what they do, when the network fails) draws from one random stream per user,
//! and transport noise (timer jitter, dropped heartbeats, reconnect delays) from a second one:
//! candidates with the same heartbeat intervals see exactly the same users, and the tracker's
//! answers never feed back into what the users do.

mod attribution;
mod clients;
pub(crate) mod server;

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

use presence_tracker::{Activity, DisconnectKind};

use server::{dispatch, Refusal, Server, WithServer};

use super::metrics::flap_kinds;
use super::metrics::{Accounting, Truth};
use super::report::{Cost, FlapSources, Metrics, Report};
use super::rng::Rng;
use super::scenario::{Client, Population, Scenario, Span, Ticking};
use super::{Candidate, ScenarioError};

/// Simulates one candidate on one scenario and measures it.
///
/// Deterministic: the same scenario (seed included) and candidate give the same
/// [`Report::metrics`]; only [`Report::cost`] (wall-clock time) varies.
///
/// # Examples
///
/// ```
/// use presence_tracker_sim::{run, Candidate, Scenario};
///
/// let scenario = Scenario::named("office")?.with_users(20).with_hours(1.0);
/// let report = run(&scenario, &Candidate::default())?;
/// assert!(report.metrics.open_user_hours > 0.0);
/// assert_eq!(report.metrics.tracker_errors, 0);
/// # Ok::<(), presence_tracker_sim::ScenarioError>(())
/// ```
///
/// # Errors
///
/// [`ScenarioError::Invalid`] if the scenario does not validate, [`ScenarioError::Candidate`]
/// if the candidate's thresholds do not make a policy.
pub fn run(scenario: &Scenario, candidate: &Candidate) -> Result<Report, ScenarioError> {
    scenario.validate()?;
    let started = Instant::now();
    let (metrics, sim_events) = dispatch(
        candidate,
        Simulation {
            scenario,
            candidate,
        },
    )?;
    Ok(Report {
        scenario: scenario.name.clone(),
        candidate: candidate.clone(),
        metrics,
        cost: Cost {
            sim_events,
            wall: started.elapsed(),
        },
    })
}

/// Runs the world against a server: the metrics and the number of simulation events.
struct Simulation<'a> {
    scenario: &'a Scenario,
    candidate: &'a Candidate,
}

impl WithServer for Simulation<'_> {
    type Output = (Metrics, u64);

    fn with<S: Server>(self, server: S) -> (Metrics, u64) {
        let mut world = World::new(self.scenario, self.candidate, server);
        world.run();
        let sim_events = world.sim_events;
        (world.finish(self.scenario), sim_events)
    }
}

/// Something that happens at a virtual instant.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// The server ticks the tracker.
    Tick,
    /// A user starts a visit.
    Arrive { user: u32 },
    /// The focused session of visit `visit` changes phase.
    Phase { user: u32, visit: u32 },
    /// Visit `visit` ends as planned.
    VisitEnd { user: u32, visit: u32 },
    /// The focused session of visit `visit` reloads.
    Reload { user: u32, visit: u32 },
    /// The user's network fails.
    PartitionStart { user: u32 },
    /// The user's network is back.
    PartitionEnd { user: u32 },
    /// A session's heartbeat timer fires (if `gen` is still its timer's generation).
    Heartbeat { session: u32, gen: u32 },
    /// A session's client (re)connects.
    Connect { session: u32 },
    /// The server notices a silent connection (if `gen` is still pending).
    LossNotice { session: u32, gen: u32 },
    /// The lost disconnect of an old connection reaches the tracker.
    LateDisconnect { session: u32, conn: u32 },
    /// Restart `index` of the scenario.
    Restart { index: u32 },
    /// Everybody leaves.
    Exodus,
}

/// A queue entry: ordered by time, then by insertion, so runs are reproducible.
#[derive(Clone, Copy, Debug)]
struct Entry {
    at: u64,
    seq: u64,
    kind: Kind,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest entry must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A span in milliseconds, drawn as [`Span`] describes.
#[derive(Clone, Copy, Debug)]
struct Millis(Span);

impl Millis {
    fn new(span: Span, unit_ms: f64) -> Self {
        Millis(Span::new(span.lo * unit_ms, span.hi * unit_ms))
    }

    fn draw(&self, rng: &mut Rng) -> u64 {
        self.0.at(rng.unit()).max(0.0).round() as u64
    }

    fn mean(&self) -> f64 {
        self.0.mean()
    }
}

/// A population with its durations in milliseconds.
#[derive(Clone, Debug)]
struct Pop {
    client: Client,
    tabs: [u32; 2],
    visit: Millis,
    gap: Millis,
    active: Millis,
    idle: Millis,
    hidden: Millis,
    hide_share: f64,
    /// Mean time between reloads; 0 for none.
    reload_every: f64,
    reload: Millis,
    close_frame: f64,
    background_signal: f64,
    jitter: f64,
    throttle_after: u64,
    throttle: u64,
    drop: f64,
    /// Mean time between partitions; 0 for none.
    partition_every: f64,
    partition: Millis,
    ping_timeout: Millis,
    reconnect: Millis,
}

const SECOND: f64 = 1000.0;
const MINUTE: f64 = 60_000.0;
const HOUR: f64 = 3_600_000.0;

impl Pop {
    fn new(p: &Population) -> Self {
        let every = |per_hour: f64| if per_hour > 0.0 { HOUR / per_hour } else { 0.0 };
        Pop {
            client: p.client,
            tabs: p.tabs,
            visit: Millis::new(p.visit_minutes, MINUTE),
            gap: Millis::new(p.gap_minutes, MINUTE),
            active: Millis::new(p.active_minutes, MINUTE),
            idle: Millis::new(p.idle_minutes, MINUTE),
            hidden: Millis::new(p.hidden_minutes, MINUTE),
            hide_share: p.hide_share,
            reload_every: every(p.reloads_per_hour),
            reload: Millis::new(p.reload_seconds, SECOND),
            close_frame: p.close_frame,
            background_signal: p.background_signal,
            jitter: p.jitter,
            throttle_after: (p.throttle_after_minutes * MINUTE).round() as u64,
            throttle: ((p.throttle_seconds * SECOND).round() as u64).max(1),
            drop: p.network.drop,
            partition_every: every(p.network.partitions_per_hour),
            partition: Millis::new(p.network.partition_seconds, SECOND),
            ping_timeout: Millis::new(p.network.ping_timeout_seconds, SECOND),
            reconnect: Millis::new(p.network.reconnect_seconds, SECOND),
        }
    }
}

/// A simulated user.
#[derive(Debug)]
struct User {
    pop: usize,
    /// What the user does: arrivals, phases, departures, partitions.
    world: Rng,
    /// Transport noise: jitter, drops, reconnect delays.
    noise: Rng,
    /// The current (or last) visit's number.
    visit: u32,
    in_visit: bool,
    /// The current visit's sessions; the first is the focused one.
    sessions: Vec<u32>,
    planned_end: u64,
    partitioned: bool,
    /// When the user's last partition ended.
    partition_ended: Option<u64>,
    /// Scales the first visit: a user already online at the start is part-way through it.
    first_visit: f64,
}

/// A simulated session (a tab or an app), from its client's and the server's point of view.
#[derive(Debug)]
struct Session {
    user: u32,
    truth: Truth,
    opened_at: u64,
    hidden_since: u64,
    /// A phone app the OS suspended: no timers, no traffic.
    suspended: bool,
    /// The connection number; the connection id combines it with the session.
    conn: u32,
    /// Whether the server holds a live connection for it.
    conn_alive: bool,
    /// Whether a connect is scheduled.
    connecting: bool,
    /// Whether the last connection ended with a close frame (a reload in progress).
    closed_clean: bool,
    hb_gen: u32,
    loss_gen: u32,
    loss_pending: bool,
}

/// How a visit ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Close frames (the tab or app closed).
    Close,
    /// Nothing: a crash, a closed lid, the network gone.
    Lost,
    /// A phone app suspended for good, maybe after a last `background` heartbeat.
    Suspend,
}

struct World<'a, S> {
    server: S,
    /// Whether the client's keep-alive runs on page timers that a hidden tab throttles.
    timer_driven: bool,
    queue: BinaryHeap<Entry>,
    seq: u64,
    now: u64,
    end: u64,
    pops: Vec<Pop>,
    users: Vec<User>,
    sessions: Vec<Session>,
    books: Accounting,
    heartbeat: u64,
    background_heartbeat: u64,
    ticking: Ticking,
    /// Deadline ticking: the tick in the queue that counts.
    next_tick: u64,
    scenario: &'a Scenario,
    arrivals_closed: bool,
    sim_events: u64,
    session_ms: u64,
    heartbeats_sent: u64,
    heartbeats_delivered: u64,
    reregistrations: u64,
    tracker_errors: u64,
    /// When the server last restarted.
    restarted: Option<u64>,
    flap_sources: FlapSources,
}

impl<S> std::fmt::Debug for World<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("now", &self.now)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl<'a, S: Server> World<'a, S> {
    fn new(scenario: &'a Scenario, candidate: &Candidate, server: S) -> Self {
        let pops: Vec<Pop> = scenario.populations.iter().map(Pop::new).collect();
        let total_share: f64 = scenario.populations.iter().map(|p| p.share).sum();
        let n = scenario.users as usize;
        let mut world = World {
            timer_driven: server.timer_driven(),
            server,
            queue: BinaryHeap::with_capacity(n * 4),
            seq: 0,
            now: 0,
            end: (scenario.hours * HOUR).round() as u64,
            pops,
            users: Vec::with_capacity(n),
            sessions: Vec::new(),
            books: Accounting::new(n, (scenario.min_absence_minutes * MINUTE).round() as u64),
            heartbeat: (candidate.heartbeat.as_millis() as u64).max(1),
            background_heartbeat: (candidate.background_heartbeat.as_millis() as u64).max(1),
            ticking: scenario.ticking,
            next_tick: u64::MAX,
            scenario,
            arrivals_closed: false,
            sim_events: 0,
            session_ms: 0,
            heartbeats_sent: 0,
            heartbeats_delivered: 0,
            reregistrations: 0,
            tracker_errors: 0,
            restarted: None,
            flap_sources: FlapSources::default(),
        };
        for index in 0..n {
            // Stratified: population shares are met exactly, not on average.
            let position = (index as f64 + 0.5) / n as f64 * total_share;
            let mut acc = 0.0;
            let mut pop = scenario.populations.len() - 1;
            for (i, p) in scenario.populations.iter().enumerate() {
                acc += p.share;
                if position < acc {
                    pop = i;
                    break;
                }
            }
            let stream = (index as u64) << 1;
            world.users.push(User {
                pop,
                world: Rng::new(scenario.seed, stream),
                noise: Rng::new(scenario.seed, stream | 1),
                visit: 0,
                in_visit: false,
                sessions: Vec::new(),
                planned_end: 0,
                partitioned: false,
                partition_ended: None,
                first_visit: 1.0,
            });
            world.schedule_first(index);
        }
        for (index, restart) in scenario.restarts.iter().enumerate() {
            world.push(
                (restart.at_minutes * MINUTE).round() as u64,
                Kind::Restart {
                    index: index as u32,
                },
            );
        }
        if let Some(exodus) = &scenario.exodus {
            world.push((exodus.at_minutes * MINUTE).round() as u64, Kind::Exodus);
        }
        if let Ticking::EveryMs(every) = world.ticking {
            world.push(every, Kind::Tick);
        }
        world
    }

    /// The user's first arrival and first partition. A user is online at the start with the
    /// steady-state probability, part-way through a visit; the others arrive within one gap.
    fn schedule_first(&mut self, index: usize) {
        let pop = &self.pops[self.users[index].pop];
        let user = &mut self.users[index];
        let online = pop.visit.mean() / (pop.visit.mean() + pop.gap.mean());
        let arrive = if user.world.chance(online) {
            user.first_visit = user.world.unit();
            user.world.uniform(0.0, MINUTE)
        } else {
            user.world.unit() * pop.gap.draw(&mut user.world) as f64
        };
        let partition = (pop.partition_every > 0.0).then(|| user.world.exp(pop.partition_every));
        let user32 = index as u32;
        self.push(arrive as u64, Kind::Arrive { user: user32 });
        if let Some(at) = partition {
            self.push(at as u64, Kind::PartitionStart { user: user32 });
        }
    }

    fn push(&mut self, at: u64, kind: Kind) {
        self.seq += 1;
        self.queue.push(Entry {
            at,
            seq: self.seq,
            kind,
        });
    }

    fn run(&mut self) {
        while let Some(Entry { at, kind, .. }) = self.queue.pop() {
            if at > self.end {
                break;
            }
            self.now = at;
            self.sim_events += 1;
            match kind {
                Kind::Tick => self.on_tick(at),
                Kind::Arrive { user } => self.arrive(user as usize),
                Kind::Phase { user, visit } => self.on_phase(user as usize, visit),
                Kind::VisitEnd { user, visit } => self.on_visit_end(user as usize, visit),
                Kind::Reload { user, visit } => self.on_reload(user as usize, visit),
                Kind::PartitionStart { user } => self.on_partition_start(user as usize),
                Kind::PartitionEnd { user } => self.on_partition_end(user as usize),
                Kind::Heartbeat { session, gen } => self.on_heartbeat(session as usize, gen),
                Kind::Connect { session } => self.on_connect(session as usize),
                Kind::LossNotice { session, gen } => self.on_loss_notice(session as usize, gen),
                Kind::LateDisconnect { session, conn } => {
                    self.disconnect(session as usize, conn, DisconnectKind::Lost)
                }
                Kind::Restart { index } => self.on_restart(index as usize),
                Kind::Exodus => self.on_exodus(),
            }
            self.attribute_flaps();
        }
    }

    fn finish(self, scenario: &Scenario) -> Metrics {
        let end = self.end;
        let open_ms: u64 = self
            .sessions
            .iter()
            .filter(|s| s.truth != Truth::Gone)
            .map(|s| end.saturating_sub(s.opened_at))
            .sum();
        let session_ms = self.session_ms + open_ms;
        let totals = self.books.finish(end);
        let open_hours = totals.open_ms as f64 / HOUR;
        let per_open_hour = |n: u64| {
            if open_hours > 0.0 {
                n as f64 / open_hours
            } else {
                0.0
            }
        };
        let share = |part: u64, whole: u64| {
            if whole > 0 {
                part as f64 / whole as f64
            } else {
                0.0
            }
        };
        let per_second_per_1k = |n: u64| {
            n as f64 / (end as f64 / SECOND).max(1e-9) / (f64::from(scenario.users) / 1000.0)
        };
        Metrics {
            users: scenario.users,
            hours: end as f64 / HOUR,
            open_user_hours: open_hours,
            there_user_hours: totals.there_ms as f64 / HOUR,
            session_hours: session_ms as f64 / HOUR,
            false_offline_share: share(totals.there_offline_ms, totals.there_ms),
            hidden_offline_share: share(totals.hidden_offline_ms, totals.hidden_ms),
            false_offline_episodes: totals.episodes,
            false_offline_episodes_per_user_hour: per_open_hour(totals.episodes),
            flaps: totals.flaps,
            flaps_per_user_hour: per_open_hour(totals.flaps),
            flap_kinds: flap_kinds(&totals.flap_kinds),
            flap_sources: self.flap_sources,
            offline_flaps: totals.offline_flaps,
            offline_flaps_per_user_hour: per_open_hour(totals.offline_flaps),
            latency: totals.latency,
            first_sign: totals.first_sign,
            brief_absences: totals.brief_absences,
            user_events: totals.user_events,
            session_events: totals.session_events,
            truth_changes: totals.truth_changes,
            user_events_per_second_per_1k_users: per_second_per_1k(totals.user_events),
            truth_changes_per_second_per_1k_users: per_second_per_1k(totals.truth_changes),
            heartbeats_sent: self.heartbeats_sent,
            heartbeats_delivered: self.heartbeats_delivered,
            reregistrations: self.reregistrations,
            tracker_errors: self.tracker_errors,
            open_at_end: totals.open_at_end,
            shown_online_at_end: totals.shown_online_at_end,
        }
    }

    // # The server side: calls into the server and the books.

    /// Books a signal's result and, when ticking at deadlines, re-arms the tick.
    fn signal(&mut self, result: Result<(), Refusal>) {
        if result.is_err() {
            self.tracker_errors += 1;
        }
        self.rearm(self.now);
    }

    fn rearm(&mut self, earliest: u64) {
        if self.ticking != Ticking::Deadline {
            return;
        }
        if let Some(deadline) = self.server.next_deadline() {
            let at = deadline.max(earliest);
            if at < self.next_tick {
                self.next_tick = at;
                self.push(at, Kind::Tick);
            }
        }
    }

    fn on_tick(&mut self, at: u64) {
        match self.ticking {
            Ticking::EveryMs(every) => {
                self.server.tick(at, &mut self.books);
                self.push(at + every, Kind::Tick);
            }
            Ticking::Deadline => {
                if at != self.next_tick {
                    return; // superseded by an earlier one
                }
                self.next_tick = u64::MAX;
                self.server.tick(at, &mut self.books);
                // A deadline may be early, never late: never tick twice at one instant.
                self.rearm(at + 1);
            }
        }
    }

    /// The client's connect, carrying its activity (as a handshake payload would). Restarts the
    /// heartbeat timer.
    fn connect(&mut self, s: usize) {
        let session = &mut self.sessions[s];
        session.conn += 1;
        session.conn_alive = true;
        session.connecting = false;
        session.closed_clean = false;
        session.loss_pending = false;
        let (user, conn, activity) = (session.user, session.conn, activity(session.truth));
        let result = self
            .server
            .connect(self.now, user, s as u32, conn, activity, &mut self.books);
        self.signal(result);
        self.restart_timer(s);
    }

    /// The client emits a heartbeat, if it has a connection; the network may lose it.
    fn send_heartbeat(&mut self, s: usize, activity: Activity) {
        let session = &self.sessions[s];
        let u = session.user as usize;
        if !session.conn_alive || self.users[u].partitioned {
            return;
        }
        self.heartbeats_sent += 1;
        let drop = self.pops[self.users[u].pop].drop;
        if self.users[u].noise.chance(drop) {
            return;
        }
        self.heartbeats_delivered += 1;
        let (now, user) = (self.now, u as u32);
        match self
            .server
            .heartbeat(now, user, s as u32, activity, &mut self.books)
        {
            Ok(()) => self.rearm(now),
            Err(Refusal::UnknownSession) => {
                // Expired while its connection lived: the handler connects it again.
                self.reregistrations += 1;
                let conn = self.sessions[s].conn;
                let result =
                    self.server
                        .connect(now, user, s as u32, conn, activity, &mut self.books);
                self.signal(result);
            }
            Err(Refusal::Other) => self.tracker_errors += 1,
        }
    }

    /// A disconnect reaches the server. One for a session that already expired is answered
    /// with [`Refusal::UnknownSession`], which a server ignores.
    fn disconnect(&mut self, s: usize, conn: u32, kind: DisconnectKind) {
        let user = self.sessions[s].user;
        match self
            .server
            .disconnect(self.now, user, s as u32, conn, kind, &mut self.books)
        {
            Ok(()) | Err(Refusal::UnknownSession) => {}
            Err(Refusal::Other) => self.tracker_errors += 1,
        }
        self.rearm(self.now);
    }

    /// The user's ground truth may have changed: books it.
    fn refresh_truth(&mut self, u: usize, lost: bool) {
        let truth = self.users[u]
            .sessions
            .iter()
            .map(|&s| self.sessions[s as usize].truth)
            .max()
            .unwrap_or(Truth::Gone);
        self.books.on_truth(u, truth, self.now, lost);
    }
}

/// What a client in this class reports.
fn activity(truth: Truth) -> Activity {
    match truth {
        Truth::Active => Activity::Active,
        Truth::Idle => Activity::Idle,
        Truth::Hidden | Truth::Gone => Activity::Background,
    }
}
