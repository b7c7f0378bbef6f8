//! Question 1: what does a heartbeat on a live session cost, one thread, clock excluded?
//!
//! Compares, in one group per size (10^4 and 10^6 sessions; 10^7 with `PRESENCE_BENCH_1E7=1`),
//! each with u64 ids and with 36-character UUID strings (`Arc<str>`; u64 ids only at 10^7, where
//! every variant of both id types held at once would need about 20 GB), heartbeats in a random
//! order:
//! - `tracker`: `PresenceTracker::heartbeat`, one call per heartbeat, on a tracker with a
//!   `ManualClock` set once per batch (as a server's `CoarseClock` is refreshed: one atomic load of
//!   the clock per call);
//! - `tracker_batch`: `PresenceTracker::heartbeat_batch`, the iteration's 1024 heartbeats in
//!   one call at the batch's time (on a tracker of its own, set up like `tracker`'s);
//! - `hashbrown` (the limit): a raw `hashbrown::HashMap<K, (u8, u64)>` with foldhash, updating the
//!   state byte and `last_seen` of the entry;
//! - `moka` (the peer a Rust user would pick): `moka::sync::Cache` with `time_to_idle` and an
//!   eviction listener, one `insert` per heartbeat;
//! - `vec_slot` (the handle-path limit): the same update in a dense `Vec` indexed by slot number.
//!
//! One session per user. Each iteration is a batch of 1024 heartbeats at one `now`; virtual time
//! moves 1 ms per batch, so every session is heartbeated well within the active threshold and no
//! heartbeat causes an event or an error (checked before timing, for both tracker paths).
//!
//! Interleaved rounds: every variant of a size is set up once and kept, then the group runs
//! [`support::ROUNDS`] rounds, each running every variant once as the benchmark
//! `<variant>/<ids>_r<round>` (in the listed order in odd rounds, backwards in even ones). Each
//! variant goes on where its previous round stopped (its position in the order, its virtual
//! time). On this shared VM memory-bound costs drift by up to 2x between minutes, so a ratio of
//! two benchmarks run minutes apart (as when each variant ran once, in turn) is partly drift:
//! the report divides the tracker by the raw map of the same round (seconds apart) and gives the
//! median, min and max of those ratios over the rounds. Rounds of whole criterion benchmarks
//! (rather than an `iter_custom` that alternates variants inside one benchmark) keep criterion's
//! own statistics per variant and round, and each variant's warm-up refills the caches with its
//! own data, as a server doing only heartbeats would have them.

use std::{
    hint::black_box,
    rc::Rc,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use moka::{notification::RemovalCause, sync::Cache};
use presence_tracker::{Activity, Timestamp};

#[allow(dead_code)]
mod support;
use support::{cyclic_window, ids_and_order, shuffled, size_label, BenchId, RawMap, Slot, ACTIVE};

/// Heartbeats per timed iteration.
const BATCH: usize = 1024;

type Bencher<'a> = criterion::Bencher<'a, criterion::measurement::WallTime>;

/// One variant of a group, set up, run once per round.
struct Variant {
    function: &'static str,
    ids: &'static str,
    routine: Box<dyn FnMut(&mut Bencher<'_>)>,
}

fn heartbeat(c: &mut Criterion) {
    support::record_run("heartbeat");
    for n in support::sizes() {
        let mut group = c.benchmark_group(format!("heartbeat_{}", size_label(n)));
        group.throughput(Throughput::Elements(BATCH as u64));
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(2));
        if n >= 1_000_000 {
            group.sample_size(30);
        }
        let mut variants = vec![vec_slot(n)];
        variants.extend(by_key::<u64>(n));
        if n < 10_000_000 {
            variants.extend(by_key::<Arc<str>>(n));
        }
        for round in 1..=support::ROUNDS {
            for i in support::round_order(variants.len(), round) {
                let v = &mut variants[i];
                group.bench_function(
                    BenchmarkId::new(v.function, support::in_round(v.ids, round)),
                    |b| (v.routine)(b),
                );
            }
        }
        group.finish();
    }
    support::record_end("heartbeat");
}

/// A variant that runs `op(key, now_ms)` over `order` cyclically, `BATCH` per iteration,
/// advancing `now` by 1 ms per batch.
fn batches<K: 'static>(
    function: &'static str,
    ids: &'static str,
    order: Rc<Vec<K>>,
    t0: u64,
    mut op: impl FnMut(&K, u64) + 'static,
) -> Variant {
    let mut pos = 0;
    let mut now = t0;
    Variant {
        function,
        ids,
        routine: Box::new(move |b| {
            b.iter(|| {
                now += 1;
                for _ in 0..BATCH {
                    op(black_box(&order[pos]), now);
                    pos += 1;
                    if pos == order.len() {
                        pos = 0;
                    }
                }
            })
        }),
    }
}

/// A variant that runs `op(head, tail, now_ms)` once per iteration on the next `BATCH` keys of
/// `order`, in the same cyclic order as [`batches`] (`tail` continues from the start of `order`
/// when the batch wraps around its end), advancing `now` by 1 ms per batch.
fn batch_calls<K: 'static>(
    function: &'static str,
    ids: &'static str,
    order: Rc<Vec<K>>,
    t0: u64,
    mut op: impl FnMut(&[K], &[K], u64) + 'static,
) -> Variant {
    let mut pos = 0;
    let mut now = t0;
    Variant {
        function,
        ids,
        routine: Box::new(move |b| {
            b.iter(|| {
                now += 1;
                let (head, tail) = cyclic_window(&order, pos, BATCH);
                op(black_box(head), black_box(tail), now);
                pos = (pos + BATCH) % order.len();
            })
        }),
    }
}

fn vec_slot(n: usize) -> Variant {
    let t0 = support::t0();
    let mut slots: Vec<Slot> = vec![(ACTIVE, t0); n];
    let order: Vec<u32> = shuffled(n, n as u64)
        .into_iter()
        .map(|i| i as u32)
        .collect();
    batches("vec_slot", "handle", Rc::new(order), t0, move |&i, now| {
        slots[i as usize] = (ACTIVE, now);
    })
}

fn by_key<K: BenchId + 'static>(n: usize) -> Vec<Variant> {
    let t0 = support::t0();
    let (ids, order) = ids_and_order::<K>(n);
    let order = Rc::new(order);
    let mut variants = Vec::new();

    // The limit: a raw map update.
    let mut map: RawMap<K> = ids.iter().map(|k| (k.clone(), (ACTIVE, t0))).collect();
    variants.push(batches(
        "hashbrown",
        K::NAME,
        Rc::clone(&order),
        t0,
        move |k, now| {
            if let Some(slot) = map.get_mut(k) {
                *slot = (ACTIVE, now);
            }
        },
    ));

    // The subject, one call per heartbeat.
    let tracker = support::tracker_with(&ids, support::at(t0, 0));
    // Every heartbeat must hit a live session and change nothing, or we would time errors or
    // event allocation instead of the update.
    tracker.clock().set(support::at(t0, 1));
    for k in order.iter().take(BATCH) {
        match tracker.heartbeat(k, Activity::Active) {
            Ok(events) => assert!(events.is_empty(), "setup: heartbeat emitted {events:?}"),
            Err(e) => panic!("setup: heartbeat failed: {e}"),
        }
    }
    let mut last = 0;
    variants.push(batches(
        "tracker",
        K::NAME,
        Rc::clone(&order),
        t0,
        move |k, now| {
            support::set_time(&tracker, &mut last, now);
            let _ = black_box(tracker.heartbeat(k, Activity::Active));
        },
    ));

    // The subject, one call per batch: a tracker of its own, so virtual time restarts with it.
    let tracker = support::tracker_with(&ids, support::at(t0, 0));
    // As above: a batch must hit live sessions only and change nothing.
    let (head, tail) = cyclic_window(&order, 0, BATCH);
    support::assert_quiet_batch(&tracker, head.iter().chain(tail), support::at(t0, 1));
    variants.push(batch_calls(
        "tracker_batch",
        K::NAME,
        Rc::clone(&order),
        t0,
        move |head, tail, now| {
            tracker.clock().set(Timestamp::from_millis(now));
            let _ = black_box(
                tracker.heartbeat_batch(head.iter().chain(tail).map(|k| (k, Activity::Active))),
            );
        },
    ));

    // The peer.
    let expired = Arc::new(AtomicU64::new(0));
    let listener_count = Arc::clone(&expired);
    // Expirations are counted (moka's listener does work on them) but not expected: every entry
    // is inserted again well within its time to idle.
    let cache: Cache<K, Slot> = Cache::builder()
        .time_to_idle(Duration::from_secs(240))
        .eviction_listener(move |_key, _value, cause| {
            if cause == RemovalCause::Expired {
                listener_count.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build();
    for k in &ids {
        cache.insert(k.clone(), (ACTIVE, t0));
    }
    cache.run_pending_tasks();
    variants.push(batches("moka", K::NAME, order, t0, move |k, now| {
        cache.insert(k.clone(), (ACTIVE, now));
    }));
    variants
}

criterion_group!(benches, heartbeat);
criterion_main!(benches);
