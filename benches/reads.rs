//! Question 5: what do reads cost: one user's presence, the online list, the census?
//!
//! 10^6 known users (u64 ids, one session each), of which 1 % or 50 % are online; the others left
//! and are offline, kept for "last seen". Compares:
//! - `tracker`: `user` (a batch of 1024 random users), `online`, `census`;
//! - `hashbrown` (the hand-written map of user -> (state, last_seen)): `get`, a scan collecting
//!   the users not offline, a scan counting each state;
//! - `moka` (the peer, holding only the users not offline, as a cache of live users would): `get`,
//!   `iter` collecting every entry, `entry_count`.

use std::{hint::black_box, time::Duration};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use presence_tracker::{Activity, ManualClock, Policy, PresenceTracker, Timestamp};

#[allow(dead_code)]
mod support;
use support::{mix, shuffled, RawMap, Tracker, ACTIVE};

const USERS: usize = 1_000_000;
const LOOKUPS: usize = 1024;

/// Users `0..USERS` connected at `t0`; those for which `online(i)` is false leave at `t0 + 1 s` and
/// are offline after the tick at `t0 + 10 s`, where the clock is left.
fn population(t0: u64, online: impl Fn(usize) -> bool) -> Tracker<u64> {
    let clock = ManualClock::starting_at(Timestamp::from_millis(t0));
    let tracker = PresenceTracker::with_clock(Policy::default(), clock.clone());
    for i in 0..USERS {
        let id = mix(i as u64);
        if let Err(e) = tracker.connect(id, id, i as u64, Activity::Active) {
            panic!("setup: connect failed: {e}");
        }
    }
    clock.set(Timestamp::from_millis(t0 + 1_000));
    for i in (0..USERS).filter(|&i| !online(i)) {
        if let Err(e) = tracker.leave(&mix(i as u64), i as u64) {
            panic!("setup: leave failed: {e}");
        }
    }
    clock.set(Timestamp::from_millis(t0 + 10_000));
    let _ = tracker.tick();
    tracker
}

fn reads(c: &mut Criterion) {
    support::record_run("reads");
    let t0 = support::t0();
    let lookups: Vec<u64> = shuffled(USERS, 3)
        .into_iter()
        .take(LOOKUPS)
        .map(|i| mix(i as u64))
        .collect();

    for (percent, every) in [(1usize, 100usize), (50, 2)] {
        let online = |i: usize| i.is_multiple_of(every);
        let expected_online = USERS / every;
        let mut group = c.benchmark_group(format!("reads_{percent}pct_online"));

        let tracker = population(t0, online);
        let listed = tracker.online().len();
        assert_eq!(listed, expected_online, "setup: online users");

        let map: RawMap<u64> = (0..USERS)
            .map(|i| (mix(i as u64), (if online(i) { ACTIVE } else { 0 }, t0)))
            .collect();
        let cache: moka::sync::Cache<u64, support::Slot> = moka::sync::Cache::builder()
            .time_to_idle(Duration::from_secs(240))
            .eviction_listener(|key, _value, _cause| {
                black_box(key);
            })
            .build();
        for i in (0..USERS).filter(|&i| online(i)) {
            cache.insert(mix(i as u64), (ACTIVE, t0));
        }
        cache.run_pending_tasks();

        group.throughput(Throughput::Elements(LOOKUPS as u64));
        group.bench_function(BenchmarkId::new("tracker", "user"), |b| {
            b.iter(|| {
                for u in &lookups {
                    black_box(tracker.user(black_box(u)));
                }
            })
        });
        group.bench_function(BenchmarkId::new("hashbrown", "user"), |b| {
            b.iter(|| {
                for u in &lookups {
                    black_box(map.get(black_box(u)));
                }
            })
        });
        group.bench_function(BenchmarkId::new("moka", "user"), |b| {
            b.iter(|| {
                for u in &lookups {
                    black_box(cache.get(black_box(u)));
                }
            })
        });

        group.throughput(Throughput::Elements(expected_online as u64));
        group.bench_function(BenchmarkId::new("tracker", "online"), |b| {
            b.iter(|| tracker.online())
        });
        group.bench_function(BenchmarkId::new("hashbrown", "online"), |b| {
            b.iter(|| {
                map.iter()
                    .filter(|(_, slot)| slot.0 != 0)
                    .map(|(&u, &slot)| (u, slot))
                    .collect::<Vec<_>>()
            })
        });
        group.bench_function(BenchmarkId::new("moka", "online"), |b| {
            b.iter(|| cache.iter().map(|(u, slot)| (*u, slot)).collect::<Vec<_>>())
        });

        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("tracker", "census"), |b| {
            b.iter(|| tracker.census())
        });
        group.bench_function(BenchmarkId::new("hashbrown", "census"), |b| {
            b.iter(|| {
                let mut counts = [0usize; 5];
                for slot in map.values() {
                    counts[usize::from(slot.0.min(4))] += 1;
                }
                counts
            })
        });
        group.bench_function(BenchmarkId::new("moka", "census"), |b| {
            b.iter(|| cache.entry_count())
        });
        group.finish();
    }
    support::record_end("reads");
}

criterion_group!(benches, reads);
criterion_main!(benches);
