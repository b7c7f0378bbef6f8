//! Question 3: what does a tick cost at 10^6 sessions, and what does each due transition add?
//!
//! Compares, at 10^6 sessions (u64 ids, one session per user, default policy):
//! - `tracker`: `PresenceTracker::tick` (its `ManualClock` set to the tick's time);
//! - `full_scan` (the hand-written alternative): one pass over a `hashbrown::HashMap` of every
//!   session, deriving each presence from its age and recording the ones that changed;
//!
//! in four situations, each armed outside the timed region:
//! - `due_0_idle`, nothing due and nothing to look at: every session is heartbeated at `h`, one
//!   untimed tick pops the deadlines that made early, then ticks run at 1 ms steps until just
//!   before `h + 15 s` (runs of consecutive ticks are timed together), and again;
//! - `due_0_steady`, nothing due in a live system: every session heartbeats every 10 s (a slice
//!   of them before each tick, untimed) and the server ticks every 100 ms; no session ever
//!   changes, but deadlines the heartbeats made early come up;
//! - `due_0.1pct` / `due_1pct`, k = 1,000 / 10,000 due: the sessions form `m = 10^6 / k` cohorts
//!   of k (random members) whose last heartbeats are `15 s / m` apart; each tick is placed so that
//!   exactly one cohort has crossed the active threshold (checked: the tick must report k session
//!   transitions), and that cohort is heartbeated again, untimed, after the tick.
//!
//! The cost per due transition is `(median with k due - median idle) / k`; the report script
//! computes it from these medians.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use presence_tracker::{Activity, Timestamp};

#[allow(dead_code)]
mod support;
use support::{shuffled, Tracker, ACTIVE};

const SESSIONS: usize = 1_000_000;
/// The default policy's thresholds in ms (active, idle, away, ttl), for the hand-written scan.
const THRESHOLDS: [u64; 4] = [15_000, 60_000, 180_000, 240_000];
/// The steady state: a tick every 100 ms, each session heartbeating every 10 s.
const STEADY_TICK_MS: u64 = 100;
const STEADY_STEPS_PER_CYCLE: usize = 100;

/// What a tick benchmark drives: the tracker or the hand-written scan.
trait Ticker {
    type Out;
    fn heartbeat(&mut self, session: usize, now: u64);
    fn tick(&mut self, now: u64) -> Self::Out;
    /// Session transitions in a tick's output.
    fn transitions(out: &Self::Out) -> usize;
}

struct TrackerTicker {
    tracker: Tracker<u64>,
    ids: Vec<u64>,
}

impl Ticker for TrackerTicker {
    type Out = presence_tracker::Transitions<u64, u64>;
    fn heartbeat(&mut self, session: usize, now: u64) {
        // Setting the clock is a relaxed store; the scan baseline stores `now` the same way.
        self.tracker.clock().set(Timestamp::from_millis(now));
        if let Err(e) = self.tracker.heartbeat(&self.ids[session], Activity::Active) {
            panic!("setup: heartbeat failed: {e}");
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

/// The hand-written alternative: every session in one map, every tick looks at all of them.
struct FullScan {
    sessions: hashbrown::HashMap<u64, ScanRecord>,
    ids: Vec<u64>,
}

struct ScanRecord {
    last_seen: u64,
    /// Cap from the reported activity (4 = none).
    cap: u8,
    published: u8,
}

impl FullScan {
    fn by_age(age: u64) -> u8 {
        // 4 active, 3 idle, 2 away, 1 stale, 0 offline.
        THRESHOLDS.iter().filter(|&&t| age < t).count() as u8
    }
}

impl Ticker for FullScan {
    type Out = Vec<(u64, u8, u8)>;
    fn heartbeat(&mut self, session: usize, now: u64) {
        if let Some(r) = self.sessions.get_mut(&self.ids[session]) {
            r.last_seen = now;
            r.published = ACTIVE.min(r.cap);
        }
    }
    fn tick(&mut self, now: u64) -> Self::Out {
        let mut changed = Vec::new();
        self.sessions.retain(|&id, r| {
            let derived = Self::by_age(now.saturating_sub(r.last_seen)).min(r.cap);
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

/// Nothing due, idle: runs of consecutive ticks 1 ms apart. Just before the first sessions would
/// become due, every session is heartbeated and one untimed tick at the old deadline pops the
/// deadlines those heartbeats made early, so that the timed ticks find nothing to do at all.
///
/// `now` is the time of the last tick, `armed_at` that of the last heartbeat of every session; both
/// outlive one call, as criterion calls a benchmark's routine many times.
fn bench_idle<T: Ticker>(
    b: &mut criterion::Bencher<'_>,
    t: &mut T,
    now: &mut u64,
    armed_at: &mut u64,
) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        let mut done = 0;
        while done < iters {
            let window_end = *armed_at + THRESHOLDS[0] - 2;
            if *now >= window_end {
                for s in 0..SESSIONS {
                    t.heartbeat(s, *now);
                }
                // The deadlines armed by the previous round fall due now, but find every
                // session heard from since.
                let stale_deadline = *armed_at + THRESHOLDS[0];
                *armed_at = *now;
                *now = stale_deadline;
                let out = t.tick(*now);
                assert_eq!(T::transitions(&out), 0, "a re-arming tick moved sessions");
                continue;
            }
            let run = (window_end - *now).min(iters - done);
            let mut moved = 0;
            let start = Instant::now();
            for _ in 0..run {
                *now += 1;
                let out = t.tick(*now);
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

/// Nothing due, steady state: every session heartbeats every 10 s (a slice of them, untimed,
/// before each tick) and the server ticks every 100 ms; no session ever reaches the active
/// threshold, so no tick has a transition to report, but each finds the deadlines that the
/// heartbeats have made early.
fn bench_steady<T: Ticker>(
    b: &mut criterion::Bencher<'_>,
    t: &mut T,
    order: &[usize],
    t0: u64,
    step: &mut u64,
) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let now = steady_step(t, order, t0, step);
            let start = Instant::now();
            let out = t.tick(now);
            total += start.elapsed();
            assert_eq!(T::transitions(&out), 0, "a steady tick moved sessions");
        }
        total
    });
}

/// Heartbeats the next slice of the steady state and returns the time of its tick.
fn steady_step<T: Ticker>(t: &mut T, order: &[usize], t0: u64, step: &mut u64) -> u64 {
    let per_tick = SESSIONS / STEADY_STEPS_PER_CYCLE;
    *step += 1;
    let now = t0 + *step * STEADY_TICK_MS;
    let slice = (*step as usize % STEADY_STEPS_PER_CYCLE) * per_tick;
    for &s in &order[slice..slice + per_tick] {
        t.heartbeat(s, now);
    }
    now
}

/// Runs the steady state, untimed, for 30 virtual seconds: past the active threshold, so that the
/// deadlines armed before it started have all come up once and the ticks see their usual load.
fn steady_warm_up<T: Ticker>(t: &mut T, order: &[usize], t0: u64, step: &mut u64) {
    for _ in 0..300 {
        let now = steady_step(t, order, t0, step);
        let out = t.tick(now);
        assert_eq!(T::transitions(&out), 0, "a steady tick moved sessions");
    }
}

/// k due: cohort `step % m` crosses the active threshold just before each tick.
fn bench_k_due<T: Ticker>(
    b: &mut criterion::Bencher<'_>,
    t: &mut T,
    cohorts: &[Vec<usize>],
    clock: &mut KDueClock,
) {
    let k = cohorts[0].len();
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let now = clock.tick_time();
            let start = Instant::now();
            let out = t.tick(now);
            total += start.elapsed();
            assert_eq!(T::transitions(&out), k, "tick at step {} moved", clock.step);
            drop(out);
            for &s in &cohorts[(clock.step % cohorts.len() as u64) as usize] {
                t.heartbeat(s, now);
            }
            clock.step += 1;
        }
        total
    });
}

/// The virtual times of the k-due scheme: cohort j is first seen at `t0 + j * delta`; the tick of
/// step s runs at `t0 + (m + s) * delta + delta / 2`, when exactly cohort `s % m` is due.
struct KDueClock {
    t0: u64,
    m: u64,
    delta: u64,
    step: u64,
}

impl KDueClock {
    fn new(t0: u64, m: usize) -> Self {
        let m = m as u64;
        KDueClock {
            t0,
            m,
            delta: THRESHOLDS[0] / m,
            step: 0,
        }
    }
    fn connect_time(&self, cohort: usize) -> u64 {
        self.t0 + cohort as u64 * self.delta
    }
    fn tick_time(&self) -> u64 {
        self.t0 + (self.m + self.step) * self.delta + self.delta / 2
    }
}

fn tick(c: &mut Criterion) {
    support::record_run("tick");
    let mut group = c.benchmark_group("tick_1e6");
    let t0 = support::t0();
    let ids: Vec<u64> = (0..SESSIONS as u64).map(support::mix).collect();
    let order = shuffled(SESSIONS, 7);

    // Nothing due.
    group.throughput(Throughput::Elements(1));
    {
        let mut scan = full_scan(&ids, |_| t0);
        let (mut now, mut armed_at) = (t0, t0);
        group.bench_function(BenchmarkId::new("full_scan", "due_0_idle"), |b| {
            bench_idle(b, &mut scan, &mut now, &mut armed_at)
        });
        for s in 0..SESSIONS {
            scan.heartbeat(s, now);
        }
        let mut step = 0;
        steady_warm_up(&mut scan, &order, now, &mut step);
        group.bench_function(BenchmarkId::new("full_scan", "due_0_steady"), |b| {
            bench_steady(b, &mut scan, &order, now, &mut step)
        });
    }
    {
        let tracker = support::tracker_with(&ids, support::at(t0, 0));
        let mut t = TrackerTicker {
            tracker,
            ids: ids.clone(),
        };
        let (mut now, mut armed_at) = (t0, t0);
        group.bench_function(BenchmarkId::new("tracker", "due_0_idle"), |b| {
            bench_idle(b, &mut t, &mut now, &mut armed_at)
        });
        // The steady state starts with every session just heard from.
        for s in 0..SESSIONS {
            t.heartbeat(s, now);
        }
        let mut step = 0;
        steady_warm_up(&mut t, &order, now, &mut step);
        group.bench_function(BenchmarkId::new("tracker", "due_0_steady"), |b| {
            bench_steady(b, &mut t, &order, now, &mut step)
        });
    }

    for (k, label) in [(1_000, "due_0.1pct"), (10_000, "due_1pct")] {
        let m = SESSIONS / k;
        let cohorts: Vec<Vec<usize>> = order.chunks(k).map(<[usize]>::to_vec).collect();
        let mut cohort_of = vec![0; SESSIONS];
        for (j, c) in cohorts.iter().enumerate() {
            for &s in c {
                cohort_of[s] = j;
            }
        }
        group.throughput(Throughput::Elements(k as u64));
        {
            let mut clock = KDueClock::new(t0, m);
            let mut scan = full_scan(&ids, |s| clock.connect_time(cohort_of[s]));
            group.bench_function(BenchmarkId::new("full_scan", label), |b| {
                bench_k_due(b, &mut scan, &cohorts, &mut clock)
            });
        }
        {
            let mut clock = KDueClock::new(t0, m);
            let tracker: Tracker<u64> = presence_tracker::PresenceTracker::with_clock(
                presence_tracker::Policy::default(),
                presence_tracker::ManualClock::starting_at(support::at(t0, 0)),
            );
            for (j, c) in cohorts.iter().enumerate() {
                tracker
                    .clock()
                    .set(Timestamp::from_millis(clock.connect_time(j)));
                for &s in c {
                    if let Err(e) = tracker.connect(ids[s], ids[s], s as u64, Activity::Active) {
                        panic!("setup: connect failed: {e}");
                    }
                }
            }
            let mut t = TrackerTicker {
                tracker,
                ids: ids.clone(),
            };
            group.bench_function(BenchmarkId::new("tracker", label), |b| {
                bench_k_due(b, &mut t, &cohorts, &mut clock)
            });
        }
    }
    group.finish();
}

fn full_scan(ids: &[u64], seen_at: impl Fn(usize) -> u64) -> FullScan {
    let sessions = ids
        .iter()
        .enumerate()
        .map(|(s, &id)| {
            (
                id,
                ScanRecord {
                    last_seen: seen_at(s),
                    cap: ACTIVE,
                    published: ACTIVE,
                },
            )
        })
        .collect();
    FullScan {
        sessions,
        ids: ids.to_vec(),
    }
}

criterion_group!(benches, tick);
criterion_main!(benches);
