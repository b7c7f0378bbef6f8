//! Question 10: what do rooms cost the calls that do not use them, and the ones that do?
//!
//! Rooms are `u64` ids, metadata `()`; each session is in `k` rooms of 10 members (`k` layers of
//! rooms, each session in one room of each layer, its 9 fellow members drawn at random). The
//! variants of each question run interleaved, in rounds (A B A B ...) within one group, so the
//! ratios compare runs made in the same minutes of the same process; the report takes the ratio
//! within each round and the median of the rounds.
//!
//! - `rooms_heartbeat_1e5`: a heartbeat that changes nothing (one `heartbeat` call, batches of
//!   1024 in a random order at one time, as in question 1) on 10^5 sessions in 0 rooms
//!   (`rooms_0`) and on 10^5 sessions in 5 rooms each (`rooms_5`), 8 rounds. The fast path
//!   never looks at rooms, so the two should cost the same. Then, outside criterion, 20,000
//!   pairs of batches, one of each tracker back to back (which goes first alternates), each
//!   batch timed: the median of the pairs' ratios is written to
//!   `presence-meta/rooms-heartbeat-pairs.json`. Load from other processes, which comes and goes
//!   over seconds, hits both batches of a pair alike, so this ratio is steadier than the ratio
//!   of two benchmarks measured seconds apart.
//! - `rooms_transition_1e4`: one session transition with the session in `k` = 0, 1, 5 or 20
//!   rooms, 10^4 sessions (one per user), 3 rounds. `presence`: a heartbeat that changes the
//!   session's presence (it reports `background`, then `active` again: active -> away -> active),
//!   publishing the session's and the user's events and one `Presence` room event per room;
//!   `disconnect`: a clean disconnect with a zero leave grace, which ends the session there and
//!   then: two events and one `Left` room event per room (the sessions are made and put in their
//!   rooms untimed, a batch of 256 at a time, and are the 11th members of rooms that stay).
//!   Per transition; `(k rooms - 0 rooms) / k` is the cost of one room.
//! - `rooms_tick_1e5`: a tick with 0.1 % or 1 % of 10^5 sessions due (they cross the active
//!   threshold: the scheme of question 3, checked on every tick), the sessions in 0 or 5 rooms,
//!   3 rounds. Per due session. In rooms, each due session also moves its 5 rooms; nothing else
//!   of the 5 * 10^5 memberships is looked at, so the cost per due session does not change
//!   between 0.1 % and 1 %.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use presence_tracker::{Activity, DisconnectKind, ManualClock, Policy, PresenceTracker, Timestamp};

#[allow(dead_code)]
mod support;
use support::{mix, shuffled};

/// A tracker with rooms: u64 users, sessions and rooms, no metadata.
type RoomTracker = PresenceTracker<u64, u64, ManualClock, u64, ()>;

/// Heartbeats (or transitions) per timed iteration, as in question 1.
const BATCH: usize = 1024;
/// Members of each room.
const PER_ROOM: usize = 10;
/// Sessions made and ended per iteration of `disconnect`.
const DEPARTURES: usize = 256;
/// Room ids of a layer start here, one layer apart (no session or user id is below 2^40).
const ROOM_BASE: u64 = 1 << 40;

fn group_settings(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(30);
}

/// The room of session `i`'s `layer`: `layer` places the `n` sessions in a random order and cuts
/// it into rooms of [`PER_ROOM`].
struct Layers {
    /// `rooms[i]`: session i's room in each layer.
    rooms: Vec<Vec<u64>>,
}

impl Layers {
    fn new(n: usize, k: usize) -> Self {
        let mut rooms = vec![Vec::with_capacity(k); n];
        for layer in 0..k {
            for (p, &i) in shuffled(n, 1_000 + layer as u64).iter().enumerate() {
                rooms[i].push(Self::room(layer, p / PER_ROOM, n));
            }
        }
        Layers { rooms }
    }

    fn room(layer: usize, index: usize, n: usize) -> u64 {
        ROOM_BASE + (layer * n.div_ceil(PER_ROOM) + index) as u64
    }
}

/// A tracker with `ids[i]` connected as session `i` of user `ids[i]` at `t0`, each in its rooms
/// of `layers`.
fn tracker_in_rooms(policy: Policy, ids: &[u64], layers: &Layers, t0: u64) -> RoomTracker {
    let tracker: RoomTracker =
        PresenceTracker::with_clock(policy, ManualClock::starting_at(Timestamp::from_millis(t0)));
    for (i, &id) in ids.iter().enumerate() {
        if let Err(e) = tracker.connect(id, id, i as u64, Activity::Active) {
            panic!("setup: connect failed: {e}");
        }
        for &room in &layers.rooms[i] {
            if let Err(e) = tracker.rooms().join(&id, room, ()) {
                panic!("setup: join failed: {e}");
            }
        }
    }
    tracker
}

/// One tracker of a heartbeat comparison, and where its run is, kept from round to round.
struct Quiet {
    tracker: RoomTracker,
    order: Vec<u64>,
    pos: usize,
    now: u64,
}

impl Quiet {
    fn new(n: usize, k: usize) -> Self {
        let t0 = support::t0();
        let ids: Vec<u64> = (0..n as u64).map(mix).collect();
        let tracker = tracker_in_rooms(Policy::default(), &ids, &Layers::new(n, k), t0);
        let order = shuffled(n, n as u64).into_iter().map(|i| ids[i]).collect();
        let mut quiet = Quiet {
            tracker,
            order,
            pos: 0,
            now: t0,
        };
        // Every heartbeat must hit a live session and change nothing, or we would time errors
        // or event allocation instead of the update.
        quiet.batch(|result| match result {
            Ok(events) => assert!(events.is_empty(), "setup: heartbeat emitted {events:?}"),
            Err(e) => panic!("setup: heartbeat failed: {e}"),
        });
        quiet
    }

    fn batch(&mut self, mut check: impl FnMut(Result<Transitions, presence_tracker::Error>)) {
        self.now += 1;
        self.tracker.clock().set(Timestamp::from_millis(self.now));
        for _ in 0..BATCH {
            check(
                self.tracker
                    .heartbeat(black_box(&self.order[self.pos]), Activity::Active),
            );
            self.pos += 1;
            if self.pos == self.order.len() {
                self.pos = 0;
            }
        }
    }
}

type Transitions = presence_tracker::Transitions<u64, u64, u64, ()>;

fn heartbeat(c: &mut Criterion) {
    support::record_run("rooms");
    let n = 100_000;
    let mut group = c.benchmark_group("rooms_heartbeat_1e5");
    group_settings(&mut group);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.measurement_time(Duration::from_secs(2));
    let mut variants = [(0, Quiet::new(n, 0)), (5, Quiet::new(n, 5))];
    for round in 1..=8 {
        for (k, quiet) in &mut variants {
            group.bench_function(
                BenchmarkId::new(format!("rooms_{k}"), format!("round_{round}")),
                |b| {
                    b.iter(|| {
                        quiet.batch(|result| {
                            let _ = black_box(result);
                        })
                    })
                },
            );
        }
    }
    group.finish();
    paired(&mut variants);
}

/// Pairs of batches in [`paired`].
const PAIRS: usize = 20_000;

/// [`PAIRS`] pairs of batches, one of each variant back to back, the order alternating; writes
/// the medians per heartbeat and the quartiles of the pairs' ratios (5 rooms ÷ 0 rooms).
fn paired(variants: &mut [(usize, Quiet); 2]) {
    let mut times: [Vec<f64>; 2] = [Vec::with_capacity(PAIRS), Vec::with_capacity(PAIRS)];
    let mut ratios = Vec::with_capacity(PAIRS);
    for p in 0..PAIRS {
        let mut pair = [0.0; 2];
        for v in [p % 2, 1 - p % 2] {
            let start = Instant::now();
            variants[v].1.batch(|result| {
                let _ = black_box(result);
            });
            pair[v] = start.elapsed().as_nanos() as f64 / BATCH as f64;
        }
        times[0].push(pair[0]);
        times[1].push(pair[1]);
        ratios.push(pair[1] / pair[0]);
    }
    let quantile = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    let (a, b) = (quantile(&mut times[0], 0.5), quantile(&mut times[1], 0.5));
    let (q1, q2, q3) = (
        quantile(&mut ratios, 0.25),
        quantile(&mut ratios, 0.5),
        quantile(&mut ratios, 0.75),
    );
    println!(
        "rooms_heartbeat_1e5 paired: {PAIRS} pairs, median {a:.1} ns (0 rooms), {b:.1} ns (5 rooms) \
         per heartbeat; ratio 5 rooms / 0 rooms: median {q2:.3}, quartiles {q1:.3} - {q3:.3}"
    );
    support::write_meta(
        "rooms-heartbeat-pairs",
        &format!(
            "{{\"pairs\":{PAIRS},\"batch\":{BATCH},\"sessions\":100000,\"rooms\":[{},{}],\"median_ns\":[{a:.2},{b:.2}],\"ratio_quartiles\":[{q1:.4},{q2:.4},{q3:.4}]}}\n",
            variants[0].0, variants[1].0
        ),
    );
}

/// Sessions whose every heartbeat changes their presence: each reports `background` and
/// `active` in turn.
struct Toggles {
    tracker: RoomTracker,
    order: Vec<u64>,
    background: Vec<bool>,
    pos: usize,
    now: u64,
}

impl Toggles {
    fn new(n: usize, k: usize) -> Self {
        let t0 = support::t0();
        let ids: Vec<u64> = (0..n as u64).map(mix).collect();
        let tracker = tracker_in_rooms(Policy::default(), &ids, &Layers::new(n, k), t0);
        let order = shuffled(n, n as u64).into_iter().map(|i| ids[i]).collect();
        let mut toggles = Toggles {
            tracker,
            order,
            background: vec![false; n],
            pos: 0,
            now: t0,
        };
        // Every heartbeat must be one transition of its session (and its user), moving each
        // of its rooms.
        let mut checked = 0;
        toggles.batch(|events| {
            assert_eq!(
                (events.sessions().count(), events.users().count()),
                (1, 1),
                "setup: a toggle is not one transition: {events:?}"
            );
            assert_eq!(events.rooms().count(), k, "setup: room events {events:?}");
            checked += 1;
        });
        assert_eq!(checked, BATCH);
        toggles
    }

    fn batch(&mut self, mut check: impl FnMut(Transitions)) {
        self.now += 1;
        self.tracker.clock().set(Timestamp::from_millis(self.now));
        for _ in 0..BATCH {
            let background = &mut self.background[self.pos];
            *background = !*background;
            let activity = if *background {
                Activity::Background
            } else {
                Activity::Active
            };
            match self.tracker.heartbeat(&self.order[self.pos], activity) {
                Ok(events) => check(events),
                Err(e) => panic!("toggle: heartbeat failed: {e}"),
            }
            self.pos += 1;
            if self.pos == self.order.len() {
                self.pos = 0;
            }
        }
    }
}

/// Sessions that join their rooms (untimed) and end at once with a clean disconnect and a zero
/// leave grace (timed), [`DEPARTURES`] at a time, as the 11th members of rooms that stay.
struct Departures {
    tracker: RoomTracker,
    /// Rooms of each layer.
    per_layer: usize,
    base: usize,
    k: usize,
    next: u64,
    now: u64,
}

impl Departures {
    /// Sessions end as their connection closes, and are forgotten as soon as the next tick
    /// runs (so the users they leave behind do not pile up).
    fn policy() -> Policy {
        Policy::builder()
            .leave_grace(Duration::ZERO)
            .retention(Duration::from_millis(1))
            .build()
            .expect("a valid policy")
    }

    fn new(base: usize, k: usize) -> Self {
        let t0 = support::t0();
        let ids: Vec<u64> = (0..base as u64).map(mix).collect();
        let tracker = tracker_in_rooms(Self::policy(), &ids, &Layers::new(base, k), t0);
        let mut departures = Departures {
            tracker,
            per_layer: base.div_ceil(PER_ROOM),
            base,
            k,
            next: base as u64,
            now: t0,
        };
        let ids = departures.arrive();
        for id in ids {
            match departures
                .tracker
                .disconnect(&id, id, DisconnectKind::Clean)
            {
                Ok(events) => {
                    assert_eq!(
                        (events.sessions().count(), events.users().count()),
                        (1, 1),
                        "setup: a disconnect did not end its session: {events:?}"
                    );
                    assert_eq!(events.rooms().count(), k, "setup: room events {events:?}");
                }
                Err(e) => panic!("setup: disconnect failed: {e}"),
            }
        }
        departures
    }

    /// Untimed: a tick forgets the last batch's users; a new batch of sessions connects and
    /// joins its rooms.
    fn arrive(&mut self) -> Vec<u64> {
        self.now += 1;
        self.tracker.clock().set(Timestamp::from_millis(self.now));
        let _ = black_box(self.tracker.tick());
        let mut ids = Vec::with_capacity(DEPARTURES);
        for _ in 0..DEPARTURES {
            let id = mix(self.next);
            self.next += 1;
            if let Err(e) = self.tracker.connect(id, id, id, Activity::Active) {
                panic!("departures: connect failed: {e}");
            }
            for layer in 0..self.k {
                let index = (mix(id ^ layer as u64) % self.per_layer as u64) as usize;
                let room = Layers::room(layer, index, self.base);
                if let Err(e) = self.tracker.rooms().join(&id, room, ()) {
                    panic!("departures: join failed: {e}");
                }
            }
            ids.push(id);
        }
        ids
    }
}

fn transition(c: &mut Criterion) {
    let n = 10_000;
    let mut group = c.benchmark_group("rooms_transition_1e4");
    group_settings(&mut group);
    let ks = [0, 1, 5, 20];
    let mut toggles: Vec<Toggles> = ks.iter().map(|&k| Toggles::new(n, k)).collect();
    let mut departures: Vec<Departures> = ks.iter().map(|&k| Departures::new(n, k)).collect();
    for round in 1..=3 {
        group.throughput(Throughput::Elements(BATCH as u64));
        for (k, t) in ks.iter().zip(&mut toggles) {
            group.bench_function(
                BenchmarkId::new("presence", format!("rooms_{k}_r{round}")),
                |b| {
                    b.iter(|| {
                        t.batch(|events| {
                            let _ = black_box(events);
                        })
                    })
                },
            );
        }
        group.throughput(Throughput::Elements(DEPARTURES as u64));
        for (k, d) in ks.iter().zip(&mut departures) {
            group.bench_function(
                BenchmarkId::new("disconnect", format!("rooms_{k}_r{round}")),
                |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let ids = d.arrive();
                            let start = Instant::now();
                            for &id in &ids {
                                let _ =
                                    black_box(d.tracker.disconnect(&id, id, DisconnectKind::Clean));
                            }
                            total += start.elapsed();
                        }
                        total
                    })
                },
            );
        }
    }
    group.finish();
}

/// Question 3's k-due scheme: cohort `j` of `k` random sessions is first seen at
/// `t0 + j * delta`; the tick of step `s` runs at `t0 + (m + s) * delta + delta / 2`, when
/// exactly cohort `s % m` has crossed the active threshold; the cohort is heartbeated again,
/// untimed, after its tick.
struct KDue {
    tracker: RoomTracker,
    ids: Vec<u64>,
    cohorts: Vec<Vec<usize>>,
    t0: u64,
    delta: u64,
    step: u64,
    rooms: usize,
}

const ACTIVE_MS: u64 = 15_000;

impl KDue {
    fn new(n: usize, due: usize, rooms: usize) -> Self {
        let t0 = support::t0();
        let m = n / due;
        let delta = ACTIVE_MS / m as u64;
        let ids: Vec<u64> = (0..n as u64).map(mix).collect();
        let cohorts: Vec<Vec<usize>> = shuffled(n, 7).chunks(due).map(<[usize]>::to_vec).collect();
        let layers = Layers::new(n, rooms);
        let tracker: RoomTracker = PresenceTracker::with_clock(
            Policy::default(),
            ManualClock::starting_at(Timestamp::from_millis(t0)),
        );
        for (j, cohort) in cohorts.iter().enumerate() {
            tracker
                .clock()
                .set(Timestamp::from_millis(t0 + j as u64 * delta));
            for &s in cohort {
                if let Err(e) = tracker.connect(ids[s], ids[s], s as u64, Activity::Active) {
                    panic!("setup: connect failed: {e}");
                }
                for &room in &layers.rooms[s] {
                    if let Err(e) = tracker.rooms().join(&ids[s], room, ()) {
                        panic!("setup: join failed: {e}");
                    }
                }
            }
        }
        KDue {
            tracker,
            ids,
            cohorts,
            t0,
            delta,
            step: 0,
            rooms,
        }
    }

    fn tick_time(&self) -> u64 {
        self.t0 + (self.cohorts.len() as u64 + self.step) * self.delta + self.delta / 2
    }

    /// Times one tick (checking that it moved exactly the due cohort, and each of its rooms),
    /// then heartbeats the cohort again, untimed.
    fn step(&mut self) -> Duration {
        let now = self.tick_time();
        self.tracker.clock().set(Timestamp::from_millis(now));
        let start = Instant::now();
        let events = self.tracker.tick();
        let elapsed = start.elapsed();
        let cohort = &self.cohorts[(self.step % self.cohorts.len() as u64) as usize];
        assert_eq!(
            (events.sessions().count(), events.rooms().count()),
            (cohort.len(), cohort.len() * self.rooms),
            "tick at step {} moved",
            self.step
        );
        drop(events);
        for &s in cohort {
            if let Err(e) = self.tracker.heartbeat(&self.ids[s], Activity::Active) {
                panic!("k-due: heartbeat failed: {e}");
            }
        }
        self.step += 1;
        elapsed
    }
}

fn tick(c: &mut Criterion) {
    let n = 100_000;
    let mut group = c.benchmark_group("rooms_tick_1e5");
    group_settings(&mut group);
    let mut variants: Vec<(&str, usize, usize, KDue)> = Vec::new();
    for (label, due) in [("due_0.1pct", n / 1_000), ("due_1pct", n / 100)] {
        for rooms in [0, 5] {
            variants.push((label, due, rooms, KDue::new(n, due, rooms)));
        }
    }
    for round in 1..=3 {
        for (label, due, rooms, k_due) in &mut variants {
            group.throughput(Throughput::Elements(*due as u64));
            group.bench_function(
                BenchmarkId::new(format!("rooms_{rooms}"), format!("{label}_r{round}")),
                |b| b.iter_custom(|iters| (0..iters).map(|_| k_due.step()).sum()),
            );
        }
    }
    group.finish();
    support::record_end("rooms");
}

criterion_group!(benches, heartbeat, transition, tick);
criterion_main!(benches);
