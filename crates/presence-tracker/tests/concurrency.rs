//! Many threads on one `Arc<PresenceTracker>`: per-user event chains stay consistent, and the
//! final views match a fresh derivation.

mod support;

use std::sync::{Arc, Barrier};
use std::thread;

use presence_tracker::{
    derive, Activity, Cause, DisconnectKind, Event, ManualClock, Policy, Presence, PresenceTracker,
    SessionRecord, Subject, SystemClock,
};
use support::{ms, Replay};

const THREADS: u64 = 4;
const OPS: u64 = 3_000;
const SHARED_USERS: u64 = 2;

#[test]
fn tracker_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PresenceTracker<u64, u64>>();
    assert_send_sync::<PresenceTracker<u64, u64, SystemClock>>();
    assert_send_sync::<PresenceTracker<String, String, ManualClock>>();
    assert_send_sync::<Arc<PresenceTracker<u64, u64, ManualClock>>>();
}

/// A small deterministic generator, so a failure replays.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

type Shared = Arc<PresenceTracker<u64, u64, ManualClock>>;

/// Runs the threads; returns the tracker and every event, a final tick's included, sorted by
/// user and seq.
fn hammer() -> (Shared, Vec<Event<u64, u64>>) {
    let policy = Policy::builder()
        .active(ms(1_000))
        .idle(ms(3_000))
        .away(ms(6_000))
        .ttl(ms(10_000))
        .disconnect_grace(ms(4_000))
        .leave_grace(ms(1_000))
        .build()
        .expect("valid");
    let clock = ManualClock::new();
    let tracker = Arc::new(PresenceTracker::<u64, u64, _>::with_clock(
        policy,
        clock.clone(),
    ));
    let barrier = Arc::new(Barrier::new(THREADS as usize));

    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let tracker = Arc::clone(&tracker);
            let clock = clock.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut rng = Lcg(t + 1);
                let mut events: Vec<Event<u64, u64>> = Vec::new();
                let mut refused = 0u64;
                barrier.wait();
                for i in 0..OPS {
                    // Users 0..SHARED_USERS are shared by all threads; each thread also has
                    // its own. Session ids are the thread's own, so ownership never clashes.
                    let user = if rng.next(2) == 0 {
                        rng.next(SHARED_USERS)
                    } else {
                        100 + t
                    };
                    let session = t * 1_000 + rng.next(6);
                    let conn = rng.next(3);
                    let got = match rng.next(10) {
                        0..=2 => tracker.connect(user, session, conn, Activity::Active),
                        3 | 4 => tracker.heartbeat(
                            &session,
                            [Activity::Active, Activity::Idle, Activity::Background]
                                [rng.next(3) as usize],
                        ),
                        5 => {
                            let activities =
                                [Activity::Active, Activity::Idle, Activity::Background];
                            let others = [session, t * 1_000 + rng.next(6)];
                            let out = tracker.heartbeat_batch([
                                (&others[0], activities[rng.next(3) as usize]),
                                (&others[1], activities[rng.next(3) as usize]),
                            ]);
                            match out.errors.into_iter().next() {
                                Some((_, e)) if out.events.is_empty() => Err(e),
                                _ => Ok(out.events),
                            }
                        }
                        6 => tracker.disconnect(
                            &session,
                            conn,
                            if rng.next(2) == 0 {
                                DisconnectKind::Clean
                            } else {
                                DisconnectKind::Lost
                            },
                        ),
                        // Fenced like a disconnect: a stale connection's leave is ignored.
                        7 => tracker.leave(&session, conn),
                        _ => Ok(tracker.tick()),
                    };
                    match got {
                        Ok(e) => events.extend(e),
                        Err(_) => refused += 1,
                    }
                    if t == 0 && i % 10 == 0 {
                        clock.advance(ms(rng.next(900)));
                    }
                }
                (events, refused)
            })
        })
        .collect();

    let mut all = Vec::new();
    let mut refused = 0;
    for h in handles {
        let (events, r) = h.join().expect("no thread panicked");
        all.extend(events);
        refused += r;
    }
    all.extend(tracker.tick());
    assert!(all.len() > 1_000, "enough traffic: {} events", all.len());
    assert!(refused < THREADS * OPS, "some signals were accepted");
    // The seq is assigned under the user's lock: ordering by it is the true order per user.
    all.sort_by_key(|e| (*e.user(), e.seq));
    (tracker, all)
}

/// Within one user's chain (in seq order) the events' times never go back: the tracker's
/// clock stands still rather than going back, also between threads.
#[test]
fn threads_never_make_a_users_time_go_back() {
    // The race needs a thread preempted between reading the clock and taking a lock: a few
    // rounds make it all but certain to show if it exists.
    for _ in 0..5 {
        assert_user_times_never_go_back(&hammer().1);
    }
}

fn assert_user_times_never_go_back(all: &[Event<u64, u64>]) {
    for e in all {
        // Time only lowers presence: a rise published as a timeout would be a heartbeat lost
        // between a tick's derivation and its publication.
        assert!(
            e.to <= e.from || e.cause != Cause::Timeout,
            "rise by timeout: {e:?}"
        );
    }
    for w in all.windows(2) {
        if e_user(&w[0]) == e_user(&w[1]) {
            assert!(
                w[0].at <= w[1].at,
                "time goes back within a user's chain: {:?} {:?}",
                w[0],
                w[1]
            );
        }
    }
}

#[test]
fn threads_hammering_one_tracker_keep_chains_consistent() {
    let (tracker, all) = hammer();
    for w in all.windows(2) {
        if e_user(&w[0]) == e_user(&w[1]) {
            assert!(w[0].seq < w[1].seq, "duplicate seq: {:?} {:?}", w[0], w[1]);
        }
    }
    // Threads interleave users, so only each owner's own chain of a session id is ordered here:
    // replay sessions per (owner, id).
    let per_owner: Vec<Event<u64, u64>> = all.iter().map(per_owner).collect();
    let mut replay = Replay::new();
    replay
        .apply_all(&per_owner)
        .expect("consistent chains per subject");

    let policy = tracker.policy();
    let now = tracker.now();
    let mut users: Vec<u64> = (0..SHARED_USERS)
        .chain((0..THREADS).map(|t| 100 + t))
        .collect();
    users.sort();
    let mut live_sessions = 0;
    for u in &users {
        let sessions = tracker.user_sessions(u);
        let mut max = Presence::Offline;
        for (s, view) in &sessions {
            let fresh = derive(
                &SessionRecord::new(view.last_seen, view.activity, Some(view.expires_at)),
                now,
                policy,
            );
            assert_eq!(view.presence, fresh, "session {s}");
            assert_eq!(derive(&view.record(), now, policy), fresh, "record of {s}");
            assert_eq!(
                replay.session(&owned(*u, *s)),
                Some((*u, fresh)),
                "published session {s}"
            );
            max = max.max(fresh);
            live_sessions += 1;
        }
        assert_eq!(tracker.user(u).presence, max, "user {u}");
        assert_eq!(replay.user(u), max, "published user {u}");
    }
    for (s, (u, published)) in replay.sessions() {
        if tracker.session(&(s % OWNED)).is_none_or(|v| v.user != *u) {
            assert_eq!(
                *published,
                Presence::Offline,
                "session {s} gone but published"
            );
        }
    }
    assert_eq!(tracker.census().sessions.online(), live_sessions);
}

const OWNED: u64 = 1 << 32;

fn owned(user: u64, session: u64) -> u64 {
    user * OWNED + session
}

fn per_owner(e: &Event<u64, u64>) -> Event<u64, u64> {
    let mut e = e.clone();
    if let Subject::Session { user, session } = &mut e.subject {
        *session = owned(*user, *session);
    }
    e
}

fn e_user(e: &Event<u64, u64>) -> u64 {
    *e.user()
}
