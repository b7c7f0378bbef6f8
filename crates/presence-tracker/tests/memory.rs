//! Memory that must be given back: what a tracker holds after its sessions are gone, counted by
//! a counting global allocator (bytes requested, not time: these are not timed tests).
//!
//! One test per file would be needed if tests ran concurrently in one process and allocated
//! meanwhile; here the one `#[test]` runs its cases in sequence.

use std::alloc::System;
use std::time::Duration;

use presence_tracker::{Activity, DisconnectKind, ManualClock, Policy, PresenceTracker};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

type Tracker = PresenceTracker<u64, u64, ManualClock>;

/// Live bytes held now, counted from `region`'s start.
fn live(region: &Region<'_, System>) -> i64 {
    let c = region.change();
    // stats_alloc counts a reallocation's growth or shrinkage in these two as well.
    c.bytes_allocated as i64 - c.bytes_deallocated as i64
}

/// One cycle: `users` users connect a session each, close it cleanly, and go offline after the
/// leave grace (a tick publishes it). They stay retained (offline, last seen kept).
fn cycle(tracker: &Tracker, clock: &ManualClock, users: u64, round: u64) {
    for u in 0..users {
        let _ = tracker
            .connect(u, u, round * users + u, Activity::Active)
            .expect("connects");
    }
    clock.advance(Duration::from_secs(1));
    for u in 0..users {
        let _ = tracker
            .disconnect(&u, round * users + u, DisconnectKind::Clean)
            .expect("disconnects");
    }
    clock.advance(tracker.policy().leave_grace() + Duration::from_secs(1));
    let _ = tracker.tick();
    assert_eq!(tracker.census().users.online(), 0);
}

#[test]
fn memory_is_given_back() {
    // Users going offline and coming back many times within the retention hold what one cycle
    // holds: one retention entry per user, not one per offline transition.
    {
        let clock = ManualClock::new();
        let tracker: Tracker = PresenceTracker::with_clock(Policy::default(), clock.clone());
        let region = Region::new(GLOBAL);
        // Ten cycles first: the timing wheels reach their steady size (a ring of buckets
        // spanning the active window) within a few.
        for round in 0..10 {
            cycle(&tracker, &clock, 1_000, round);
        }
        let ten = live(&region);
        for round in 10..100 {
            cycle(&tracker, &clock, 1_000, round);
        }
        let hundred = live(&region);
        assert!(
            hundred * 10 < ten * 12,
            "100 offline/online cycles hold {hundred} B, 10 cycles {ten} B"
        );
        // After the retention, every user is forgotten.
        clock.advance(tracker.policy().retention() + Duration::from_secs(1));
        let _ = tracker.tick();
        assert_eq!(tracker.census().users.total(), 0);
    }

    // 100,000 sessions that all expire and are forgotten give back (nearly) all they took: the
    // tables shrink when occupancy falls well below their capacity.
    {
        let clock = ManualClock::new();
        let region = Region::new(GLOBAL);
        let tracker: Tracker = PresenceTracker::with_clock(Policy::default(), clock.clone());
        let empty = live(&region);
        for s in 0..100_000u64 {
            let _ = tracker
                .connect(s % 50_000, s, s, Activity::Active)
                .expect("connects");
        }
        let peak = live(&region);
        clock.advance(tracker.policy().ttl() + Duration::from_secs(1));
        let _ = tracker.tick();
        clock.advance(tracker.policy().retention() + Duration::from_secs(1));
        let _ = tracker.tick();
        assert_eq!(tracker.census().users.total(), 0);
        assert_eq!(tracker.census().sessions.total(), 0);
        let after = live(&region);
        assert!(
            (after - empty) * 20 < peak - empty,
            "empty {empty} B, peak {peak} B, after every session was forgotten {after} B"
        );
        drop(tracker);
    }
}
