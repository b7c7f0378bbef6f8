//! Question 2: do heartbeats from two threads get more done than from one?
//!
//! Aggregate throughput of heartbeats from 1 and 2 threads, each thread heartbeating its own
//! sessions (distinct users) in a random order, u64 ids, at 10^4 and 10^6 sessions:
//! - `tracker`: `PresenceTracker::heartbeat` on one shared tracker, one call per heartbeat (its
//!   `ManualClock` set by each thread every 1024 heartbeats, as a `CoarseClock` is refreshed);
//! - `tracker_batch`: `PresenceTracker::heartbeat_batch` on one shared tracker, each thread
//!   handing over its heartbeats 1024 per call (the clock set to the same time as `tracker`'s
//!   for each of them);
//! - `mutex_map` (what a user writes by hand): one `std::sync::Mutex<hashbrown::HashMap>` updated
//!   under the lock.
//!
//! `iter_custom` splits the iterations between the threads (started inside `std::thread::scope`)
//! and times from the moment all threads are released until the last one finishes, so the time per
//! element is wall time over the heartbeats of all threads. Each variant has its own tracker (or
//! map) and its own virtual time.
//!
//! Interleaved rounds, as in question 1: every variant of a size is set up once and kept, then
//! [`support::ROUNDS`] rounds each run every variant once (`<variant>/<threads>_r<round>`,
//! backwards in even rounds), each going on where its previous round stopped. The report takes
//! the 2-thread ÷ 1-thread throughput of each structure within each round (benchmarks seconds
//! apart, not minutes) and gives the median, min and max over the rounds.

use std::{
    cell::Cell,
    hint::black_box,
    rc::Rc,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Barrier, Mutex,
    },
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use presence_tracker::{Activity, Timestamp};

#[allow(dead_code)]
mod support;
use support::{cyclic_window, ids_and_order, size_label, RawMap, ACTIVE};

/// Heartbeats per call of the batch variant.
const BATCH: usize = 1024;

/// Splits `iters` heartbeats between one thread per order and times them from the moment all
/// threads are released until the last one finishes. Thread `t` runs
/// `work(&orders[t], start, share)` from where its previous run stopped (`positions[t]`), and
/// `work` returns where it stopped.
fn timed_threads(
    iters: u64,
    orders: &[Vec<u64>],
    positions: &[AtomicUsize],
    work: &(impl Fn(&[u64], usize, u64) -> usize + Sync),
) -> Duration {
    let threads = orders.len() as u64;
    let start_line = Barrier::new(orders.len() + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = orders
            .iter()
            .zip(positions)
            .enumerate()
            .map(|(t, (order, position))| {
                let share = iters / threads + u64::from((t as u64) < iters % threads);
                let start_line = &start_line;
                s.spawn(move || {
                    start_line.wait();
                    let end = work(order, position.load(Ordering::Relaxed), share);
                    position.store(end, Ordering::Relaxed);
                })
            })
            .collect();
        start_line.wait();
        let start = Instant::now();
        for w in workers {
            if w.join().is_err() {
                panic!("benchmark worker panicked");
            }
        }
        start.elapsed()
    })
}

/// [`timed_threads`], each thread heartbeating its order cyclically via `op(key, now_ms)`,
/// virtual time moving 1 ms per 1024 heartbeats from `t0`: `tick(now_ms)` is called when it
/// moves (a server refreshes its `CoarseClock` every few milliseconds).
fn timed_split(
    iters: u64,
    orders: &[Vec<u64>],
    positions: &[AtomicUsize],
    t0: u64,
    tick: &(impl Fn(u64) + Sync),
    op: &(impl Fn(&u64, u64) + Sync),
) -> Duration {
    timed_threads(iters, orders, positions, &|order, mut pos, share| {
        for i in 0..share {
            if i & 1023 == 0 {
                tick(t0 + (i >> 10));
            }
            op(black_box(&order[pos]), t0 + (i >> 10));
            pos += 1;
            if pos == order.len() {
                pos = 0;
            }
        }
        pos
    })
}

/// [`timed_threads`] for batches: each thread hands its order over cyclically in calls of
/// `op(head, tail, now_ms)` with [`BATCH`] heartbeats each (fewer in a thread's last call), `tail`
/// continuing from the start of the order when a batch wraps around its end. Heartbeat `i` of a
/// thread is at `t0 + i / 1024` ms, as in [`timed_split`].
fn timed_split_batches(
    iters: u64,
    orders: &[Vec<u64>],
    positions: &[AtomicUsize],
    t0: u64,
    op: &(impl Fn(&[u64], &[u64], u64) + Sync),
) -> Duration {
    timed_threads(iters, orders, positions, &|order, mut pos, share| {
        let mut done = 0;
        let mut now = t0;
        while done < share {
            let len = (share - done).min(BATCH as u64) as usize;
            let (head, tail) = cyclic_window(order, pos, len);
            op(black_box(head), black_box(tail), now);
            pos = (pos + len) % order.len();
            done += len as u64;
            now += 1;
        }
        pos
    })
}

type Bencher<'a> = criterion::Bencher<'a, criterion::measurement::WallTime>;

/// One variant of a group (a structure and a number of threads), set up, run once per round.
struct Variant {
    function: &'static str,
    threads: String,
    routine: Box<dyn FnMut(&mut Bencher<'_>)>,
}

fn threads(c: &mut Criterion) {
    support::record_run("threads");
    for n in [10_000, 1_000_000] {
        let mut group = c.benchmark_group(format!("threads_{}", size_label(n)));
        group.throughput(Throughput::Elements(1));
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(2));
        let mut variants = Vec::new();
        let t0 = support::t0();
        let (ids, order) = ids_and_order::<u64>(n);
        for threads in [1usize, 2] {
            // Thread t owns the sessions whose position in the random order is t modulo threads.
            let orders: Rc<Vec<Vec<u64>>> = Rc::new(
                (0..threads)
                    .map(|t| order.iter().skip(t).step_by(threads).copied().collect())
                    .collect(),
            );
            let label = format!("{threads}_thread{}", if threads > 1 { "s" } else { "" });
            // Each thread goes on where its previous sample (or round) stopped: restarting at
            // the head of its order every sample would replay a prefix that the cache still
            // holds, and the prefix is shorter with more threads.
            let fresh_positions =
                || -> Vec<AtomicUsize> { (0..threads).map(|_| AtomicUsize::new(0)).collect() };
            // Each variant has its own virtual time, from t0: a tracker's sessions are seen
            // within the active threshold from its first heartbeat on.
            let next_base = |clock: &Cell<u64>, iters: u64| {
                let base = clock.get();
                clock.set(base + iters / 1024 + 1);
                base
            };

            let map: Mutex<RawMap<u64>> =
                Mutex::new(ids.iter().map(|&k| (k, (ACTIVE, t0))).collect());
            let (positions, clock, orders_here) =
                (fresh_positions(), Cell::new(t0), Rc::clone(&orders));
            variants.push(Variant {
                function: "mutex_map",
                threads: label.clone(),
                routine: Box::new(move |b| {
                    b.iter_custom(|iters| {
                        timed_split(
                            iters,
                            &orders_here,
                            &positions,
                            next_base(&clock, iters),
                            &|_| {},
                            &|k, now| {
                                let mut guard = match map.lock() {
                                    Ok(guard) => guard,
                                    Err(poisoned) => poisoned.into_inner(),
                                };
                                if let Some(slot) = guard.get_mut(k) {
                                    *slot = (ACTIVE, now);
                                }
                            },
                        )
                    })
                }),
            });

            let tracker = support::tracker_with(&ids, support::at(t0, 0));
            let (positions, clock, orders_here) =
                (fresh_positions(), Cell::new(t0), Rc::clone(&orders));
            variants.push(Variant {
                function: "tracker",
                threads: label.clone(),
                routine: Box::new(move |b| {
                    b.iter_custom(|iters| {
                        let tick = |now| tracker.clock().set(Timestamp::from_millis(now));
                        timed_split(
                            iters,
                            &orders_here,
                            &positions,
                            next_base(&clock, iters),
                            &tick,
                            &|k, _| {
                                let _ = black_box(tracker.heartbeat(k, Activity::Active));
                            },
                        )
                    })
                }),
            });

            let tracker = support::tracker_with(&ids, support::at(t0, 0));
            // A batch must hit live sessions only and change nothing, or we would time errors or
            // event allocation instead of the update.
            for order in orders.iter() {
                let (head, tail) = cyclic_window(order, 0, BATCH.min(order.len()));
                support::assert_quiet_batch(&tracker, head.iter().chain(tail), support::at(t0, 0));
            }
            let (positions, clock) = (fresh_positions(), Cell::new(t0));
            variants.push(Variant {
                function: "tracker_batch",
                threads: label,
                routine: Box::new(move |b| {
                    b.iter_custom(|iters| {
                        let base = next_base(&clock, iters);
                        timed_split_batches(iters, &orders, &positions, base, &|head, tail, now| {
                            tracker.clock().set(Timestamp::from_millis(now));
                            let _ = black_box(tracker.heartbeat_batch(
                                head.iter().chain(tail).map(|k| (k, Activity::Active)),
                            ));
                        })
                    })
                }),
            });
        }
        for round in 1..=support::ROUNDS {
            for i in support::round_order(variants.len(), round) {
                let v = &mut variants[i];
                group.bench_function(
                    BenchmarkId::new(v.function, support::in_round(&v.threads, round)),
                    |b| (v.routine)(b),
                );
            }
        }
        group.finish();
    }
    support::record_end("threads");
}

criterion_group!(benches, threads);
criterion_main!(benches);
