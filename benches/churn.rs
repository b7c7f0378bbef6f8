//! Question 4: how many sessions per second can come and go, and what does a reconnect storm cost?
//!
//! `churn`: batches of 10^4 new sessions (new users, u64 ids), each batch connected at one `now`
//! and then removed:
//! - `tracker/expire`: `connect` each, then one `tick` at `now + ttl` that expires them all;
//! - `tracker/leave`: `connect`, a clean `disconnect` 1 s later, a `tick` after the leave grace
//!   (the tracker's `ManualClock` set to each time);
//! - `hashbrown` (the limit): insert each into a raw map, then one `retain` that drops the expired;
//! - `moka` (the peer): `insert` each, then `invalidate` each and `run_pending_tasks` (moka's
//!   expiry runs on its own clock, which a benchmark cannot advance, so removal is explicit).
//!
//! `reconnect_storm`: 10^5 live sessions re-attach with new connection ids within one virtual
//! second, in a random order:
//! - `tracker/after_lost`: every session had a lost disconnect (done untimed), then `connect`
//!   with a new connection id;
//! - `tracker/connect_first`: the new connection's `connect` arrives before the old
//!   connection's `disconnect`, which must be ignored (both timed);
//! - `hashbrown` (the limit): the session's entry gets the new connection id and `last_seen`;
//! - `moka` (the peer): one `insert` of (connection id, `last_seen`).
//!
//! Throughput is sessions per iteration, so criterion prints sessions per second.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use presence_tracker::{Activity, ConnectionId, DisconnectKind, ManualClock, Policy, Timestamp};

#[allow(dead_code)]
mod support;
use support::{mix, shuffled, Tracker, ACTIVE};

const CHURN_BATCH: u64 = 10_000;
const STORM: usize = 100_000;
const TTL_MS: u64 = 240_000;

fn new_tracker(t0: u64) -> Tracker<u64> {
    presence_tracker::PresenceTracker::with_clock(
        Policy::default(),
        ManualClock::starting_at(Timestamp::from_millis(t0)),
    )
}

fn churn(c: &mut Criterion) {
    support::record_run("churn");
    let t0 = support::t0();
    let mut group = c.benchmark_group("churn");
    group.throughput(Throughput::Elements(CHURN_BATCH));

    {
        let mut map: support::RawMap<u64> = hashbrown::HashMap::default();
        let mut next_id = 0u64;
        let mut now = t0;
        group.bench_function(BenchmarkId::new("hashbrown", "insert_retain"), |b| {
            b.iter(|| {
                for _ in 0..CHURN_BATCH {
                    map.insert(mix(next_id), (ACTIVE, now));
                    next_id += 1;
                }
                now += TTL_MS + 1;
                map.retain(|_, slot| now - slot.1 < TTL_MS);
                black_box(map.len())
            })
        });
    }
    {
        let cache: moka::sync::Cache<u64, support::Slot> = moka::sync::Cache::builder()
            .time_to_idle(Duration::from_millis(TTL_MS))
            .eviction_listener(|key, _value, _cause| {
                black_box(key);
            })
            .build();
        let mut next_id = 0u64;
        group.bench_function(BenchmarkId::new("moka", "insert_invalidate"), |b| {
            b.iter(|| {
                let first = next_id;
                for _ in 0..CHURN_BATCH {
                    cache.insert(mix(next_id), (ACTIVE, t0));
                    next_id += 1;
                }
                for id in first..next_id {
                    cache.invalidate(&mix(id));
                }
                cache.run_pending_tasks();
            })
        });
    }
    for variant in ["expire", "leave"] {
        let tracker = new_tracker(t0);
        let mut next_id = 0u64;
        let mut now = t0;
        group.bench_function(BenchmarkId::new("tracker", variant), |b| {
            b.iter(|| {
                let first = next_id;
                tracker.clock().set(Timestamp::from_millis(now));
                for _ in 0..CHURN_BATCH {
                    let id = mix(next_id);
                    let _ = black_box(tracker.connect(id, id, next_id, Activity::Active));
                    next_id += 1;
                }
                if variant == "leave" {
                    tracker.clock().set(Timestamp::from_millis(now + 1_000));
                    for i in first..next_id {
                        let _ = black_box(tracker.disconnect(&mix(i), i, DisconnectKind::Clean));
                    }
                    now += 1_000 + tracker.policy().leave_grace().as_millis() as u64;
                } else {
                    now += TTL_MS;
                }
                tracker.clock().set(Timestamp::from_millis(now));
                let events = tracker.tick();
                now += 1;
                events
            })
        });
        // Every session of the last batch must have gone: otherwise we timed something else.
        assert!(
            tracker.session(&mix(next_id - 1)).is_none(),
            "churn: a session outlived its batch"
        );
    }
    group.finish();
}

fn reconnect_storm(c: &mut Criterion) {
    let t0 = support::t0();
    let mut group = c.benchmark_group("reconnect_storm");
    group.throughput(Throughput::Elements(STORM as u64));
    let ids: Vec<u64> = (0..STORM as u64).map(mix).collect();
    let order: Vec<u64> = shuffled(STORM, 11).into_iter().map(|i| ids[i]).collect();
    // The i-th reconnect of a storm starting at `start` lands within one virtual second.
    let storm_time = |start: u64, i: usize| start + (i as u64 * 1_000) / STORM as u64;
    let conn = |generation: u64, id: u64| ConnectionId::from(generation << 40 ^ id);

    {
        let mut map: hashbrown::HashMap<u64, (u64, u64)> =
            ids.iter().map(|&id| (id, (0, t0))).collect();
        let mut generation = 0u64;
        let mut start = t0;
        group.bench_function(BenchmarkId::new("hashbrown", "reattach"), |b| {
            b.iter(|| {
                generation += 1;
                for (i, id) in order.iter().enumerate() {
                    if let Some(entry) = map.get_mut(id) {
                        *entry = (generation << 40 ^ id, storm_time(start, i));
                    }
                }
                start += 2_000;
            })
        });
    }
    {
        let cache: moka::sync::Cache<u64, (u64, u64)> = moka::sync::Cache::builder()
            .time_to_idle(Duration::from_millis(TTL_MS))
            .eviction_listener(|key, _value, _cause| {
                black_box(key);
            })
            .build();
        for &id in &ids {
            cache.insert(id, (0, t0));
        }
        let mut generation = 0u64;
        let mut start = t0;
        group.bench_function(BenchmarkId::new("moka", "reattach"), |b| {
            b.iter(|| {
                generation += 1;
                for (i, &id) in order.iter().enumerate() {
                    cache.insert(id, (generation << 40 ^ id, storm_time(start, i)));
                }
                start += 2_000;
            })
        });
    }
    for variant in ["after_lost", "connect_first"] {
        let tracker = new_tracker(t0);
        tracker.clock().set(Timestamp::from_millis(t0));
        for &id in &ids {
            if let Err(e) = tracker.connect(id, id, conn(0, id), Activity::Active) {
                panic!("setup: connect failed: {e}");
            }
        }
        let mut generation = 0u64;
        let mut start = t0 + 1_000;
        group.bench_function(BenchmarkId::new("tracker", variant), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let old = generation;
                    generation += 1;
                    if variant == "after_lost" {
                        tracker.clock().set(Timestamp::from_millis(start - 500));
                        for &id in &order {
                            let _ = black_box(tracker.disconnect(
                                &id,
                                conn(old, id),
                                DisconnectKind::Lost,
                            ));
                        }
                    }
                    let begin = Instant::now();
                    for (i, &id) in order.iter().enumerate() {
                        tracker
                            .clock()
                            .set(Timestamp::from_millis(storm_time(start, i)));
                        let _ = black_box(tracker.connect(
                            id,
                            id,
                            conn(generation, id),
                            Activity::Active,
                        ));
                        if variant == "connect_first" {
                            let _ = black_box(tracker.disconnect(
                                &id,
                                conn(old, id),
                                DisconnectKind::Lost,
                            ));
                        }
                    }
                    total += begin.elapsed();
                    start += 2_000;
                }
                total
            })
        });
        // Every session must be alive and on the storm's last connection.
        let sample = order[STORM - 1];
        match tracker.session(&sample) {
            Some(view) => assert!(
                view.connected && view.connection == conn(generation, sample),
                "storm: session not re-attached: {view:?}"
            ),
            None => panic!("storm: session lost"),
        }
    }
    group.finish();
    support::record_end("churn");
}

criterion_group!(benches, churn, reconnect_storm);
criterion_main!(benches);
