//! Question 3: what does a tick cost at 10^6 sessions, with nothing due (caches hot and cold), in a
//! steady state, and what does each due transition add?
//!
//! Compares, at 10^6 sessions (u64 ids, one session per user, default policy):
//! - `tracker`: `PresenceTracker::tick` (its `ManualClock` set to the tick's time);
//! - `full_scan` (the hand-written alternative with a map): one pass over a `hashbrown::HashMap`
//!   of every session, deriving each presence from its age, recording the ones that changed and
//!   dropping the offline ones (`retain`);
//! - `dense_scan` (the fastest scan): the same pass over a `Vec` of 16-byte packed records (id,
//!   last seen as u32 ms since an origin, activity cap, published presence), front to back, which
//!   the prefetcher streams; its heartbeats address records by index (a handle), untimed. Offline
//!   records would be swapped out; no session here goes offline.
//!
//! - `probe_floor` (steady state only): the least a tick that leaves heartbeats alone can do, one
//!   random read per re-check, of the sessions heard from 5 s before (see [`ProbeFloor`]);
//!
//! in five situations, each armed outside the timed region:
//! - `due_0_idle_hot`, nothing due and nothing to look at: every session is heartbeated at `h`,
//!   one untimed tick pops the deadlines that made early, then ticks run at 1 ms steps until just
//!   before `h + 15 s` (runs of consecutive ticks are timed together), and again;
//! - `due_0_idle_cold`, the same ticks (on the same structure), but each one alone, after the CPU
//!   caches were evicted by reading a buffer twice the size of the last-level cache (its size from
//!   sysfs; `iter_custom`, the eviction untimed): what a tick finds after other work, as a server's
//!   tick every 100 ms usually does;
//! - `due_0_steady`, nothing due in a live system: every session heartbeats every 10 s (a slice
//!   of them before each tick, untimed) and the server ticks every 100 ms; no session ever
//!   changes, but deadlines the heartbeats made early come up;
//! - `due_0.1pct` / `due_1pct`, k = 1,000 / 10,000 due: the sessions form `m = 10^6 / k` cohorts
//!   of k (random members) whose last heartbeats are `15 s / m` apart; each tick is placed so that
//!   exactly one cohort has crossed the active threshold (checked: the tick must report k session
//!   transitions), and that cohort is heartbeated again, untimed, after the tick.
//!
//! Interleaved rounds, as in question 1: each variant holds one structure per situation (the two
//! idle situations share one), set up once and kept; then [`ROUNDS`] rounds each run, for
//! each situation in turn, the three variants one after the other
//! (`<variant>/<situation>_r<round>`, backwards in even rounds). The report takes every ratio
//! within a round: the tracker ÷ each scan, and the cost per due transition as the marginal
//! slope `(t(1 %) - t(0.1 %)) / (10,000 - 1,000)` of the same round, which leaves out what a tick
//! costs whatever is due (dividing one tick's time by its transitions would spread that fixed
//! cost over them).

use std::{
    cell::RefCell,
    hint::black_box,
    rc::Rc,
    time::{Duration, Instant},
};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use presence_tracker::{Activity, Timestamp};

#[allow(dead_code)]
mod support;
use support::{shuffled, Evictor, Tracker, ACTIVE};

const SESSIONS: usize = 1_000_000;
/// The default policy's thresholds in ms (active, idle, away, ttl), for the hand-written scans.
const THRESHOLDS: [u64; 4] = [15_000, 60_000, 180_000, 240_000];
/// The steady state: a tick every 100 ms, each session heartbeating every 10 s.
const STEADY_TICK_MS: u64 = 100;
const STEADY_STEPS_PER_CYCLE: usize = 100;
/// The due situations: sessions due per tick, and the benchmark's name.
const DUE: [(usize, &str); 2] = [(1_000, "due_0.1pct"), (10_000, "due_1pct")];
/// Rounds: more than [`support::ROUNDS`], as a round of ticks takes well under a minute.
const ROUNDS: usize = 7;

/// What a tick benchmark drives: the tracker or a hand-written scan.
trait Ticker {
    type Out;
    /// Sessions `cohorts[j].1` (indices into `ids`) first seen at `cohorts[j].0`, in time order.
    fn build(ids: &Rc<Vec<u64>>, cohorts: &[(u64, &[usize])]) -> Self;
    fn heartbeat(&mut self, session: usize, now: u64);
    /// Every session heartbeats at `now`.
    fn heartbeat_all(&mut self, now: u64);
    fn tick(&mut self, now: u64) -> Self::Out;
    /// Session transitions in a tick's output.
    fn transitions(out: &Self::Out) -> usize;
}

struct TrackerTicker {
    tracker: Tracker<u64>,
    ids: Rc<Vec<u64>>,
}

impl Ticker for TrackerTicker {
    type Out = presence_tracker::Transitions<u64, u64>;
    fn build(ids: &Rc<Vec<u64>>, cohorts: &[(u64, &[usize])]) -> Self {
        let first = cohorts.first().map_or(0, |&(at, _)| at);
        let tracker: Tracker<u64> = presence_tracker::PresenceTracker::with_clock(
            presence_tracker::Policy::default(),
            presence_tracker::ManualClock::starting_at(Timestamp::from_millis(first)),
        );
        for &(at, sessions) in cohorts {
            tracker.clock().set(Timestamp::from_millis(at));
            for &s in sessions {
                if let Err(e) = tracker.connect(ids[s], ids[s], s as u64, Activity::Active) {
                    panic!("setup: connect failed: {e}");
                }
            }
        }
        TrackerTicker {
            tracker,
            ids: Rc::clone(ids),
        }
    }
    fn heartbeat(&mut self, session: usize, now: u64) {
        // Setting the clock is a relaxed store; the scan baselines store `now` the same way.
        self.tracker.clock().set(Timestamp::from_millis(now));
        if let Err(e) = self.tracker.heartbeat(&self.ids[session], Activity::Active) {
            panic!("setup: heartbeat failed: {e}");
        }
    }
    fn heartbeat_all(&mut self, now: u64) {
        self.tracker.clock().set(Timestamp::from_millis(now));
        for chunk in self.ids.chunks(1024) {
            let outcome = self
                .tracker
                .heartbeat_batch(chunk.iter().map(|id| (id, Activity::Active)));
            assert!(
                outcome.errors.is_empty(),
                "setup: heartbeat refused {:?}",
                outcome.errors
            );
        }
    }
    fn tick(&mut self, now: u64) -> Self::Out {
        self.tracker.clock().set(Timestamp::from_millis(now));
        self.tracker.tick()
    }
    fn transitions(out: &Self::Out) -> usize {
        out.sessions().count()
    }
}

/// 4 active, 3 idle, 2 away, 1 stale, 0 offline: the default policy's presence at `age` ms.
fn by_age(age: u64) -> u8 {
    THRESHOLDS.iter().filter(|&&t| age < t).count() as u8
}

/// The hand-written alternative with a map: every session in one map, every tick looks at all
/// of them.
struct FullScan {
    sessions: hashbrown::HashMap<u64, ScanRecord>,
    ids: Rc<Vec<u64>>,
}

struct ScanRecord {
    last_seen: u64,
    /// Cap from the reported activity (4 = none).
    cap: u8,
    published: u8,
}

impl Ticker for FullScan {
    type Out = Vec<(u64, u8, u8)>;
    fn build(ids: &Rc<Vec<u64>>, cohorts: &[(u64, &[usize])]) -> Self {
        let mut sessions = hashbrown::HashMap::with_capacity(ids.len());
        for &(at, members) in cohorts {
            for &s in members {
                sessions.insert(
                    ids[s],
                    ScanRecord {
                        last_seen: at,
                        cap: ACTIVE,
                        published: ACTIVE,
                    },
                );
            }
        }
        FullScan {
            sessions,
            ids: Rc::clone(ids),
        }
    }
    fn heartbeat(&mut self, session: usize, now: u64) {
        if let Some(r) = self.sessions.get_mut(&self.ids[session]) {
            r.last_seen = now;
            r.published = ACTIVE.min(r.cap);
        }
    }
    fn heartbeat_all(&mut self, now: u64) {
        for s in 0..self.ids.len() {
            self.heartbeat(s, now);
        }
    }
    fn tick(&mut self, now: u64) -> Self::Out {
        let mut changed = Vec::new();
        self.sessions.retain(|&id, r| {
            let derived = by_age(now.saturating_sub(r.last_seen)).min(r.cap);
            if derived != r.published {
                changed.push((id, r.published, derived));
                r.published = derived;
            }
            derived != 0
        });
        changed
    }
    fn transitions(out: &Self::Out) -> usize {
        out.len()
    }
}

/// The dense alternative: one packed record per session in a `Vec`, scanned front to back.
struct DenseScan {
    records: Vec<DenseRecord>,
    /// The time `last_seen` counts from, in ms.
    origin: u64,
}

/// 16 bytes: the id, and the rest packed into the second word.
#[derive(Clone, Copy)]
struct DenseRecord {
    id: u64,
    /// ms since [`DenseScan::origin`] (49 days of range: a server would rebase it).
    last_seen: u32,
    cap: u8,
    published: u8,
}

impl DenseScan {
    fn offset(&self, now: u64) -> u32 {
        u32::try_from(now.saturating_sub(self.origin)).unwrap_or(u32::MAX)
    }
}

impl Ticker for DenseScan {
    type Out = Vec<(u64, u8, u8)>;
    fn build(ids: &Rc<Vec<u64>>, cohorts: &[(u64, &[usize])]) -> Self {
        let origin = cohorts.first().map_or(0, |&(at, _)| at);
        let mut records = vec![
            DenseRecord {
                id: 0,
                last_seen: 0,
                cap: ACTIVE,
                published: 0,
            };
            ids.len()
        ];
        for &(at, members) in cohorts {
            for &s in members {
                records[s] = DenseRecord {
                    id: ids[s],
                    last_seen: u32::try_from(at - origin).unwrap_or(u32::MAX),
                    cap: ACTIVE,
                    published: ACTIVE,
                };
            }
        }
        DenseScan { records, origin }
    }
    fn heartbeat(&mut self, session: usize, now: u64) {
        let at = self.offset(now);
        let r = &mut self.records[session];
        r.last_seen = at;
        r.published = ACTIVE.min(r.cap);
    }
    fn heartbeat_all(&mut self, now: u64) {
        for s in 0..self.records.len() {
            self.heartbeat(s, now);
        }
    }
    fn tick(&mut self, now: u64) -> Self::Out {
        let now = self.offset(now);
        let mut changed = Vec::new();
        for r in &mut self.records {
            let derived = by_age(u64::from(now.saturating_sub(r.last_seen))).min(r.cap);
            if derived != r.published {
                changed.push((r.id, r.published, derived));
                r.published = derived;
            }
        }
        changed
    }
    fn transitions(out: &Self::Out) -> usize {
        out.len()
    }
}

/// The floor of a tick that leaves heartbeats alone (as the tracker's do): it must still read,
/// at random places, the state of the sessions heard from since their deadlines were armed, and
/// in the steady state about as many come up per tick as heartbeat in one (10^4). This one
/// keeps no deadlines: each tick reads once (one hash probe each, the least such a re-check
/// costs) the sessions that heartbeated [`FLOOR_DELAY`] ticks before, from a
/// `hashbrown::HashMap` of 40-byte entries (the size of the tracker's session entry): what the
/// tracker's re-checks find too, sessions last heard from 5 s ago, their entries long out of
/// the caches the newer heartbeats went through. Only the steady situation has it.
struct ProbeFloor {
    sessions: hashbrown::HashMap<u64, [u64; 4]>,
    ids: Rc<Vec<u64>>,
    /// The sessions heard from between two ticks, for the last [`FLOOR_DELAY`] ticks.
    heard: std::collections::VecDeque<Vec<usize>>,
}

/// How many ticks back the probe floor reads: 5 s at a tick every 100 ms, the age of the
/// session state the tracker's steady re-checks read (a deadline comes up 15 s after the
/// heartbeat it was armed from, 5 s after the next one).
const FLOOR_DELAY: usize = 50;

impl Ticker for ProbeFloor {
    type Out = Vec<(u64, u8, u8)>;
    fn build(ids: &Rc<Vec<u64>>, cohorts: &[(u64, &[usize])]) -> Self {
        let mut sessions = hashbrown::HashMap::with_capacity(ids.len());
        for &(at, members) in cohorts {
            for &s in members {
                // last seen, published presence, two words standing for the rest of an entry
                sessions.insert(ids[s], [at, u64::from(ACTIVE), 0, 0]);
            }
        }
        ProbeFloor {
            sessions,
            ids: Rc::clone(ids),
            heard: std::collections::VecDeque::from([Vec::new()]),
        }
    }
    fn heartbeat(&mut self, session: usize, now: u64) {
        if let Some(r) = self.sessions.get_mut(&self.ids[session]) {
            r[0] = now;
        }
        if let Some(latest) = self.heard.back_mut() {
            latest.push(session);
        }
    }
    fn heartbeat_all(&mut self, now: u64) {
        for s in 0..self.ids.len() {
            self.heartbeat(s, now);
        }
    }
    fn tick(&mut self, now: u64) -> Self::Out {
        let mut changed = Vec::new();
        self.heard.push_back(Vec::new());
        if self.heard.len() > FLOOR_DELAY + 1 {
            for s in self.heard.pop_front().unwrap_or_default() {
                let id = self.ids[s];
                if let Some(r) = self.sessions.get(&id) {
                    let derived = by_age(now.saturating_sub(r[0]));
                    if u64::from(derived) != r[1] {
                        changed.push((id, r[1] as u8, derived));
                    }
                }
            }
        }
        changed
    }
    fn transitions(out: &Self::Out) -> usize {
        out.len()
    }
}

/// Nothing due: ticks 1 ms apart. Just before the first sessions would become due, every
/// session is heartbeated and one untimed tick at the old deadline pops the deadlines those
/// heartbeats made early, so that the timed ticks find nothing to do at all.
struct Idle<T> {
    t: T,
    /// The time of the last tick.
    now: u64,
    /// The time of the last heartbeat of every session.
    armed_at: u64,
}

impl<T: Ticker> Idle<T> {
    /// The ticks left before the window ends, after re-arming if it has.
    fn window(&mut self) -> u64 {
        loop {
            let window_end = self.armed_at + THRESHOLDS[0] - 2;
            if self.now < window_end {
                return window_end - self.now;
            }
            self.t.heartbeat_all(self.now);
            // The deadlines armed by the previous round fall due now, but find every session
            // heard from since.
            let stale_deadline = self.armed_at + THRESHOLDS[0];
            self.armed_at = self.now;
            self.now = stale_deadline;
            let out = self.t.tick(self.now);
            assert_eq!(T::transitions(&out), 0, "a re-arming tick moved sessions");
        }
    }

    /// Runs of consecutive ticks, each run timed as a whole.
    fn hot(&mut self, b: &mut Bencher<'_>) {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let run = self.window().min(iters - done);
                let mut moved = 0;
                let start = Instant::now();
                for _ in 0..run {
                    self.now += 1;
                    let out = self.t.tick(self.now);
                    moved += T::transitions(&out);
                    black_box(out);
                }
                total += start.elapsed();
                assert_eq!(moved, 0, "a tick with nothing due moved sessions");
                done += run;
            }
            total
        });
    }

    /// One tick at a time, each after `evictor` has evicted the caches (untimed).
    fn cold(&mut self, b: &mut Bencher<'_>, evictor: &Evictor) {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                self.window();
                self.now += 1;
                evictor.evict();
                let start = Instant::now();
                let out = self.t.tick(self.now);
                total += start.elapsed();
                assert_eq!(
                    T::transitions(&out),
                    0,
                    "a tick with nothing due moved sessions"
                );
                drop(out);
            }
            total
        });
    }
}

/// Nothing due, steady state: every session heartbeats every 10 s (a slice of them, untimed,
/// before each tick) and the server ticks every 100 ms; no session ever reaches the active
/// threshold, so no tick has a transition to report, but each finds the deadlines that the
/// heartbeats have made early.
struct Steady<T> {
    t: T,
    order: Rc<Vec<usize>>,
    t0: u64,
    step: u64,
}

impl<T: Ticker> Steady<T> {
    /// Starts with every session just heard from at `t0`, then runs the steady state, untimed,
    /// for 30 virtual seconds: past the active threshold, so that the deadlines armed before it
    /// started have all come up once and the ticks see their usual load.
    fn new(mut t: T, order: Rc<Vec<usize>>, t0: u64) -> Self {
        t.heartbeat_all(t0);
        let mut steady = Steady {
            t,
            order,
            t0,
            step: 0,
        };
        for _ in 0..300 {
            let now = steady.next_step();
            let out = steady.t.tick(now);
            assert_eq!(T::transitions(&out), 0, "a steady tick moved sessions");
        }
        steady
    }

    /// Heartbeats the next slice of the steady state and returns the time of its tick.
    fn next_step(&mut self) -> u64 {
        let per_tick = SESSIONS / STEADY_STEPS_PER_CYCLE;
        self.step += 1;
        let now = self.t0 + self.step * STEADY_TICK_MS;
        let slice = (self.step as usize % STEADY_STEPS_PER_CYCLE) * per_tick;
        for i in slice..slice + per_tick {
            let s = self.order[i];
            self.t.heartbeat(s, now);
        }
        now
    }

    fn bench(&mut self, b: &mut Bencher<'_>) {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let now = self.next_step();
                let start = Instant::now();
                let out = self.t.tick(now);
                total += start.elapsed();
                assert_eq!(T::transitions(&out), 0, "a steady tick moved sessions");
            }
            total
        });
    }
}

/// k due: cohort `step % m` crosses the active threshold just before each tick. Cohort j is
/// first seen at `t0 + j * delta`; the tick of step s runs at `t0 + (m + s) * delta + delta / 2`,
/// when exactly cohort `s % m` is due.
struct KDue<T> {
    t: T,
    cohorts: Rc<Vec<Vec<usize>>>,
    t0: u64,
    delta: u64,
    step: u64,
}

impl<T: Ticker> KDue<T> {
    fn new(ids: &Rc<Vec<u64>>, cohorts: Rc<Vec<Vec<usize>>>, t0: u64) -> Self {
        let delta = THRESHOLDS[0] / cohorts.len() as u64;
        let seen: Vec<(u64, &[usize])> = cohorts
            .iter()
            .enumerate()
            .map(|(j, c)| (t0 + j as u64 * delta, c.as_slice()))
            .collect();
        let t = T::build(ids, &seen);
        KDue {
            t,
            cohorts,
            t0,
            delta,
            step: 0,
        }
    }

    fn bench(&mut self, b: &mut Bencher<'_>) {
        let m = self.cohorts.len() as u64;
        let k = self.cohorts[0].len();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let now = self.t0 + (m + self.step) * self.delta + self.delta / 2;
                let start = Instant::now();
                let out = self.t.tick(now);
                total += start.elapsed();
                assert_eq!(T::transitions(&out), k, "tick at step {} moved", self.step);
                drop(out);
                for &s in &self.cohorts[(self.step % m) as usize] {
                    self.t.heartbeat(s, now);
                }
                self.step += 1;
            }
            total
        });
    }
}

type Bencher<'a> = criterion::Bencher<'a, criterion::measurement::WallTime>;
type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// One situation of one variant, set up, run once per round.
struct Situation {
    name: &'static str,
    routine: Box<dyn FnMut(&mut Bencher<'_>)>,
}

/// The situations' criterion settings. Criterion sizes its samples by the time it measures, and
/// the idle ticks' set-up is untimed: a re-arm (10^6 heartbeats and a tick that re-checks every
/// user) comes every ~15,000 hot ticks, an eviction (a read of twice the last-level cache) before
/// every cold one, so their measurement times are short and their samples flat (criterion warns
/// that it cannot fit its samples in them: expected, it then takes one iteration per sample).
fn settings(group: &mut Group<'_>, situation: &str) {
    group.sampling_mode(SamplingMode::Flat);
    match situation {
        "due_0_idle_hot" => {
            group.sample_size(20);
            group.warm_up_time(Duration::from_millis(5));
            group.measurement_time(Duration::from_millis(10));
            group.throughput(Throughput::Elements(1));
        }
        "due_0_idle_cold" => {
            // One tick per sample: a measurement time shorter than a tick.
            group.sample_size(100);
            group.warm_up_time(Duration::from_micros(100));
            group.measurement_time(Duration::from_micros(50));
            group.throughput(Throughput::Elements(1));
        }
        "due_0_steady" => {
            group.sample_size(30);
            group.warm_up_time(Duration::from_millis(500));
            group.measurement_time(Duration::from_secs(2));
            group.throughput(Throughput::Elements(1));
        }
        due => {
            let k = DUE
                .iter()
                .find(|(_, name)| *name == due)
                .map_or(1, |(k, _)| *k);
            group.sample_size(30);
            group.warm_up_time(Duration::from_millis(500));
            group.measurement_time(Duration::from_secs(2));
            group.throughput(Throughput::Elements(k as u64));
        }
    }
}

/// The five situations of one variant, in the order they run in a round.
fn situations<T: Ticker + 'static>(
    ids: &Rc<Vec<u64>>,
    order: &Rc<Vec<usize>>,
    cohorts: &[Rc<Vec<Vec<usize>>>],
    t0: u64,
    evictor: &Rc<Evictor>,
) -> Vec<Situation> {
    let everyone: Vec<usize> = (0..ids.len()).collect();
    let idle = Rc::new(RefCell::new(Idle {
        t: T::build(ids, &[(t0, &everyone)]),
        now: t0,
        armed_at: t0,
    }));
    let hot = Rc::clone(&idle);
    let evictor = Rc::clone(evictor);
    let mut steady = Steady::new(T::build(ids, &[(t0, &everyone)]), Rc::clone(order), t0);
    let mut out = vec![
        Situation {
            name: "due_0_idle_hot",
            routine: Box::new(move |b| hot.borrow_mut().hot(b)),
        },
        Situation {
            name: "due_0_idle_cold",
            routine: Box::new(move |b| idle.borrow_mut().cold(b, &evictor)),
        },
        Situation {
            name: "due_0_steady",
            routine: Box::new(move |b| steady.bench(b)),
        },
    ];
    for ((_, name), cohorts) in DUE.iter().zip(cohorts) {
        let mut k_due = KDue::<T>::new(ids, Rc::clone(cohorts), t0);
        out.push(Situation {
            name,
            routine: Box::new(move |b| k_due.bench(b)),
        });
    }
    out
}

fn tick(c: &mut Criterion) {
    support::record_run("tick");
    let t0 = support::t0();
    let ids: Rc<Vec<u64>> = Rc::new((0..SESSIONS as u64).map(support::mix).collect());
    let order = Rc::new(shuffled(SESSIONS, 7));
    let cohorts: Vec<Rc<Vec<Vec<usize>>>> = DUE
        .iter()
        .map(|&(k, _)| Rc::new(order.chunks(k).map(<[usize]>::to_vec).collect()))
        .collect();
    let evictor = Rc::new(Evictor::new());
    println!(
        "tick_1e6: cold ticks follow a read of {} MiB (twice the last-level cache)",
        evictor.bytes() >> 20
    );
    let mut variants: Vec<(&str, Vec<Situation>)> = vec![
        (
            "tracker",
            situations::<TrackerTicker>(&ids, &order, &cohorts, t0, &evictor),
        ),
        (
            "full_scan",
            situations::<FullScan>(&ids, &order, &cohorts, t0, &evictor),
        ),
        (
            "dense_scan",
            situations::<DenseScan>(&ids, &order, &cohorts, t0, &evictor),
        ),
    ];
    let everyone: Vec<usize> = (0..ids.len()).collect();
    let mut floor = Steady::new(
        ProbeFloor::build(&ids, &[(t0, &everyone)]),
        Rc::clone(&order),
        t0,
    );
    variants.push((
        "probe_floor",
        vec![Situation {
            name: "due_0_steady",
            routine: Box::new(move |b| floor.bench(b)),
        }],
    ));
    let names: Vec<&str> = variants[0].1.iter().map(|s| s.name).collect();
    let mut group = c.benchmark_group("tick_1e6");
    for round in 1..=ROUNDS {
        for name in &names {
            for v in support::round_order(variants.len(), round) {
                let (function, situations) = &mut variants[v];
                let Some(situation) = situations.iter_mut().find(|s| s.name == *name) else {
                    continue; // the probe floor has only the steady situation
                };
                settings(&mut group, situation.name);
                group.bench_function(
                    BenchmarkId::new(*function, support::in_round(situation.name, round)),
                    |b| (situation.routine)(b),
                );
            }
        }
    }
    group.finish();
    support::record_end("tick");
}

criterion_group!(benches, tick);
criterion_main!(benches);
