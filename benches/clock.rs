//! Question 7: what does reading the clock add to a heartbeat?
//!
//! 10^4 sessions (u64 ids, cache-resident so the clock's share is visible), heartbeats in a random
//! order, batches of 1024. Compares:
//! - `tracker/heartbeat`: `heartbeat` on a tracker with `SystemClock` (reads the clock per call);
//! - `tracker/heartbeat_manual`: `heartbeat` on a tracker with a `ManualClock` (one atomic load per
//!   call), set from the system clock once per 1024 heartbeats: the time read once per batch, what
//!   the former `heartbeat_at` with a caller-provided `now` cost;
//! - `tracker/heartbeat_batch`: `heartbeat_batch`, the batch's 1024 heartbeats in one call, which
//!   reads the tracker's clock once;
//! - `tracker/heartbeat_coarse`: `heartbeat` on a tracker with a `CoarseClock` (one atomic load per
//!   call), refreshed once per 1024 heartbeats, as a server's interval task would every few ms;
//! - `instant_now`: `std::time::Instant::now()` alone;
//! - `system_clock_now`: `SystemClock::now()` alone (the tracker's own clock read).

use std::{hint::black_box, time::Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use presence_tracker::{
    Activity, Clock, CoarseClock, ManualClock, Policy, PresenceTracker, SystemClock, Timestamp,
};

#[allow(dead_code)]
mod support;
use support::{cyclic_window, ids_and_order};

const SESSIONS: usize = 10_000;
const BATCH: usize = 1024;

fn system_tracker(ids: &[u64]) -> PresenceTracker<u64, u64> {
    tracker_on(ids, SystemClock::new())
}

fn tracker_on<C: Clock>(ids: &[u64], clock: C) -> PresenceTracker<u64, u64, C> {
    let tracker = PresenceTracker::with_clock(Policy::default(), clock);
    for (i, &id) in ids.iter().enumerate() {
        if let Err(e) = tracker.connect(id, id, i as u64, Activity::Active) {
            panic!("setup: connect failed: {e}");
        }
    }
    tracker
}

fn clock(c: &mut Criterion) {
    support::record_run("clock");
    let (ids, order) = ids_and_order::<u64>(SESSIONS);
    let mut group = c.benchmark_group("clock_1e4");
    group.throughput(Throughput::Elements(BATCH as u64));

    {
        let tracker = system_tracker(&ids);
        let mut pos = 0;
        group.bench_function(BenchmarkId::new("tracker", "heartbeat"), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    let _ = black_box(tracker.heartbeat(black_box(&order[pos]), Activity::Active));
                    pos = (pos + 1) % SESSIONS;
                }
            })
        });
    }
    {
        // The time read once per batch and handed to the tracker: what passing `now` in cost,
        // before the 0.1 surface took the `*_at` calls away. A `ManualClock` set once per batch
        // from the system clock: each call then reads it with one atomic load.
        let manual = ManualClock::new();
        let tracker = tracker_on(&ids, manual.clone());
        let start = tracker.now();
        let started = Instant::now();
        let mut pos = 0;
        group.bench_function(BenchmarkId::new("tracker", "heartbeat_manual"), |b| {
            b.iter(|| {
                manual.set(Timestamp::from_millis(
                    start.as_millis() + started.elapsed().as_millis() as u64,
                ));
                for _ in 0..BATCH {
                    let _ = black_box(tracker.heartbeat(black_box(&order[pos]), Activity::Active));
                    pos = (pos + 1) % SESSIONS;
                }
            })
        });
    }
    {
        let tracker = system_tracker(&ids);
        // Every heartbeat must hit a live session and change nothing (checked once, untimed).
        let (head, tail) = cyclic_window(&order, 0, BATCH);
        let outcome =
            tracker.heartbeat_batch(head.iter().chain(tail).map(|k| (k, Activity::Active)));
        assert!(
            outcome.events.is_empty() && outcome.errors.is_empty(),
            "setup: heartbeat batch gave {outcome:?}"
        );
        let mut pos = 0;
        group.bench_function(BenchmarkId::new("tracker", "heartbeat_batch"), |b| {
            b.iter(|| {
                let (head, tail) = cyclic_window(&order, pos, BATCH);
                let _ = black_box(
                    tracker.heartbeat_batch(
                        black_box(head)
                            .iter()
                            .chain(black_box(tail))
                            .map(|k| (k, Activity::Active)),
                    ),
                );
                pos = (pos + BATCH) % SESSIONS;
            })
        });
    }
    {
        let clock = CoarseClock::new();
        let tracker = tracker_on(&ids, clock.clone());
        let mut pos = 0;
        group.bench_function(BenchmarkId::new("tracker", "heartbeat_coarse"), |b| {
            b.iter(|| {
                clock.refresh();
                for _ in 0..BATCH {
                    let _ = black_box(tracker.heartbeat(black_box(&order[pos]), Activity::Active));
                    pos = (pos + 1) % SESSIONS;
                }
            })
        });
    }
    group.bench_function(BenchmarkId::new("instant_now", "alone"), |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                black_box(Instant::now());
            }
        })
    });
    let system = SystemClock::new();
    group.bench_function(BenchmarkId::new("system_clock_now", "alone"), |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                black_box(system.now());
            }
        })
    });
    group.finish();
    support::record_end("clock");
}

criterion_group!(benches, clock);
criterion_main!(benches);
