//! Question 8: what does the server crate's hub add, and what does a subscriber cost?
//!
//! At 10^4 sessions (u64 ids, one session per user, cache-resident), on a `ManualClock`:
//! - `hub_heartbeat_1e4`: a heartbeat that changes nothing, straight to the tracker
//!   (`tracker/heartbeat`) and through the hub (`hub/heartbeat`, which publishes nothing and
//!   checks nothing else); batches of 1024.
//! - `hub_publish`: one user's activity toggled (`active` ↔ `background`), each heartbeat a
//!   presence change the hub publishes as one update, with 0, 10 and 1,000 subscribers that each
//!   take the update (`try_recv`) after it: per update, the tracker's slow path, the hub's
//!   ordering and state, and the fan-out to every subscriber.
//! - `hub_state_json`: a state of 1,000 online users serialised to JSON (what a client is sent
//!   when it connects or falls behind), per state.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use presence_tracker::{Activity, ManualClock};
use presence_tracker_server::{Hub, HubConfig};

#[allow(dead_code)]
mod support;
use support::ids_and_order;

const SESSIONS: usize = 10_000;
const BATCH: usize = 1024;

/// A hub over [`support::tracker_with`]'s tracker: its users are in the hub's first state.
fn hub_with(ids: &[u64]) -> Hub<u64, u64, ManualClock> {
    let tracker = support::tracker_with(ids, support::at(support::t0(), 0));
    Hub::new(tracker, HubConfig::default().backlog(1 << 16))
}

fn hub(c: &mut Criterion) {
    support::record_run("hub");
    let (ids, order) = ids_and_order::<u64>(SESSIONS);

    let mut group = c.benchmark_group("hub_heartbeat_1e4");
    group.throughput(Throughput::Elements(BATCH as u64));
    {
        let tracker = support::tracker_with(&ids, support::at(support::t0(), 0));
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
        let hub = hub_with(&ids);
        let before = hub.version();
        let mut pos = 0;
        group.bench_function(BenchmarkId::new("hub", "heartbeat"), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    let _ = black_box(hub.heartbeat(black_box(&order[pos]), Activity::Active));
                    pos = (pos + 1) % SESSIONS;
                }
            })
        });
        assert_eq!(
            hub.version(),
            before,
            "a heartbeat that changes nothing publishes nothing"
        );
    }
    group.finish();

    let mut group = c.benchmark_group("hub_publish");
    group.throughput(Throughput::Elements(1));
    for subscribers in [0usize, 10, 1000] {
        let hub = hub_with(&ids[..1000]);
        let mut feeds: Vec<_> = (0..subscribers).map(|_| hub.subscribe()).collect();
        for feed in &mut feeds {
            let _ = feed.try_recv(); // the state
        }
        let session = ids[0];
        let mut hidden = false;
        group.bench_function(
            BenchmarkId::new("toggle", format!("{subscribers}_subscribers")),
            |b| {
                b.iter(|| {
                    hidden = !hidden;
                    let activity = if hidden {
                        Activity::Background
                    } else {
                        Activity::Active
                    };
                    if let Err(e) = hub.heartbeat(&session, activity) {
                        panic!("heartbeat failed: {e}");
                    }
                    for feed in &mut feeds {
                        black_box(feed.try_recv());
                    }
                })
            },
        );
        // Every toggle was an update, and every subscriber took each one in order.
        assert!(hub.version() > 0);
        for feed in &mut feeds {
            assert!(feed.try_recv().is_none(), "a subscriber fell behind");
        }
    }
    group.finish();

    let mut group = c.benchmark_group("hub_state_json");
    group.throughput(Throughput::Elements(1));
    {
        let hub = hub_with(&ids[..1000]);
        let mut feed = hub.subscribe();
        let state = feed.try_recv().expect("a state");
        group.bench_function(BenchmarkId::new("state", "1000_users"), |b| {
            b.iter(|| black_box(serde_json::to_string(&state).map(|s| s.len())))
        });
    }
    group.finish();
    support::record_end("hub");
}

criterion_group!(benches, hub);
criterion_main!(benches);
