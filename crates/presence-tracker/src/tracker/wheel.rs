//! The deadline queue of a user shard: a coarse two-level timing wheel.
//!
//! Entries live in buckets of time, each bucket an unordered `Vec` with its exact minimum, so a
//! push is a `Vec` append and taking what is due drains whole buckets front to back; only the
//! bucket that holds `now` is scanned, its due entries taken and the rest kept.
//!
//! - Near: a ring (`VecDeque`) of buckets of 2^[`FINE`] ms, one per slot (`at >> FINE`) from the
//!   current slot to the end of the next far bucket: at most [`NEAR_SPAN`] slots. This is where
//!   the steady state lives: a heartbeating user's deadline is re-armed one active window
//!   (15 s by default) ahead, inside the near horizon.
//! - Far: a `BTreeMap` of buckets of 2^[`COARSE`] ms keyed by `at >> COARSE`, for deadlines past
//!   the near horizon (later bands, grace, retention). When time reaches a far bucket, its
//!   entries move once into near buckets (or straight out, if due).
//!
//! A drained bucket is removed and its `Vec` freed (or handed to the caller); the ring's gaps are
//! empty headers without an allocation, and it spans at most [`NEAR_SPAN`] of them.

use std::collections::{BTreeMap, VecDeque};

use super::shard::{Due, NO_DEADLINE};

/// A near bucket spans 2^FINE ms (64 ms).
const FINE: u32 = 6;
/// A far bucket spans 2^COARSE ms (about 16.4 s), 2^SHIFT near slots.
const COARSE: u32 = 14;
const SHIFT: u32 = COARSE - FINE;
/// The most near slots the ring ever spans: from the cursor's slot to the end of the far bucket
/// after the cursor's.
const NEAR_SPAN: u64 = 2 << SHIFT;

/// Entries of one span of time, unordered, with their exact minimum ([`NO_DEADLINE`] if none).
#[derive(Debug)]
struct Bucket<U> {
    min: u64,
    items: Vec<Due<U>>,
}

impl<U> Bucket<U> {
    fn empty() -> Self {
        Bucket {
            min: NO_DEADLINE,
            items: Vec::new(),
        }
    }

    fn push(&mut self, due: Due<U>) {
        self.min = self.min.min(due.at);
        self.items.push(due);
    }

    /// Moves the entries due at `now` to `out`, keeps the rest and recomputes the minimum.
    fn take_due(&mut self, now: u64, out: &mut Vec<Due<U>>) {
        let mut min = NO_DEADLINE;
        let mut i = 0;
        while i < self.items.len() {
            let at = self.items[i].at;
            if at <= now {
                out.push(self.items.swap_remove(i));
            } else {
                min = min.min(at);
                i += 1;
            }
        }
        self.min = min;
    }
}

/// Deadlines `(at, user)`, taken by time: see the [module](self).
///
/// Boxed, so that a [`UserShard`](super::shard::UserShard) stays as small as with the binary
/// heap this replaced, and a `UserSlot` within its 128 bytes: an idle tick reads one line per
/// slot, and twice the stride made it measurably slower.
#[derive(Debug)]
pub(crate) struct DueQueue<U> {
    wheel: Box<Wheel<U>>,
}

impl<U> DueQueue<U> {
    pub(crate) fn new() -> Self {
        DueQueue {
            wheel: Box::new(Wheel::new()),
        }
    }

    /// Queues `user` to be looked at `at`. Amortised O(1) within the near horizon, O(log far
    /// buckets) past it.
    pub(crate) fn push(&mut self, at: u64, user: U) {
        self.wheel.push(at, user);
    }

    /// The least `at` queued, [`NO_DEADLINE`] if none. Exact.
    pub(crate) fn earliest(&self) -> u64 {
        self.wheel.earliest()
    }

    /// Moves every entry with `at <= now` to `out`, in no particular order (bucket by bucket:
    /// earlier buckets first). O(entries taken + the entries of the bucket holding `now` + far
    /// entries coming within the near horizon).
    pub(crate) fn take_due(&mut self, now: u64, out: &mut Vec<Due<U>>) {
        self.wheel.take_due(now, out);
    }
}

/// The wheel itself.
///
/// Invariants: the front near bucket, if any, is not empty and holds the least `at` of the near
/// buckets; near buckets hold entries whose slot is at most their own (entries already behind
/// the cursor sit in the cursor's slot); far buckets hold entries past the near horizon.
#[derive(Debug)]
struct Wheel<U> {
    /// The slot of the latest `now` given to [`take_due`](Self::take_due); never goes back.
    cursor: u64,
    /// The slot of `near[0]`; at least `cursor` when `near` is not empty.
    base: u64,
    near: VecDeque<Bucket<U>>,
    far: BTreeMap<u64, Bucket<U>>,
}

impl<U> Wheel<U> {
    fn new() -> Self {
        Wheel {
            cursor: 0,
            base: 0,
            near: VecDeque::new(),
            far: BTreeMap::new(),
        }
    }

    /// The last far key whose entries belong in near buckets: the cursor's and the next.
    fn horizon(&self) -> u64 {
        (self.cursor >> SHIFT) + 1
    }

    fn push(&mut self, at: u64, user: U) {
        let due = Due { at, user };
        if at >> COARSE > self.horizon() {
            self.push_far(due);
        } else {
            self.push_near(due);
        }
    }

    fn push_far(&mut self, due: Due<U>) {
        self.far
            .entry(due.at >> COARSE)
            .or_insert_with(Bucket::empty)
            .push(due);
    }

    /// Into the slot of `due.at`, or the cursor's if that is earlier.
    fn push_near(&mut self, due: Due<U>) {
        let slot = (due.at >> FINE).max(self.cursor);
        if self.near.is_empty() {
            self.base = slot;
        }
        // Both ends are within the horizon, so this never exceeds NEAR_SPAN; should it, the
        // entry waits in the far map instead (which take_due cascades), not in a huge ring.
        let end = (self.base + self.near.len() as u64).max(slot + 1);
        let start = self.base.min(slot);
        debug_assert!(
            end - start <= NEAR_SPAN,
            "near ring would span {}",
            end - start
        );
        if end - start > NEAR_SPAN {
            self.push_far(due);
            return;
        }
        while self.base > slot {
            self.near.push_front(Bucket::empty());
            self.base -= 1;
        }
        let index = (slot - self.base) as usize;
        while self.near.len() <= index {
            self.near.push_back(Bucket::empty());
        }
        self.near[index].push(due);
    }

    fn earliest(&self) -> u64 {
        let near = self.near.front().map_or(NO_DEADLINE, |b| b.min);
        let far = self
            .far
            .first_key_value()
            .map_or(NO_DEADLINE, |(_, b)| b.min);
        near.min(far)
    }

    fn take_due(&mut self, now: u64, out: &mut Vec<Due<U>>) {
        let slot = now >> FINE;
        self.cursor = self.cursor.max(slot);
        // Buckets of earlier slots are due whole.
        while self.base < slot {
            let Some(front) = self.near.front_mut() else {
                break;
            };
            if out.is_empty() {
                std::mem::swap(out, &mut front.items);
            } else {
                out.append(&mut front.items);
            }
            self.near.pop_front();
            self.base += 1;
        }
        // The front bucket holds the least `at` of the near ones: if that is due, scan it. Any
        // later bucket is of a later slot than `now`'s.
        if let Some(front) = self.near.front_mut() {
            if front.min <= now {
                front.take_due(now, out);
            }
        }
        self.trim_front();
        // Far buckets within the new horizon move to the near ring (what is due, straight out).
        let horizon = self.horizon();
        if self
            .far
            .first_key_value()
            .is_some_and(|(&k, _)| k <= horizon)
        {
            let rest = self.far.split_off(&(horizon + 1));
            for (_, bucket) in std::mem::replace(&mut self.far, rest) {
                for due in bucket.items {
                    if due.at <= now {
                        out.push(due);
                    } else {
                        self.push_near(due);
                    }
                }
            }
        }
    }

    /// Drops empty buckets at the front of the ring.
    fn trim_front(&mut self) {
        while self.near.front().is_some_and(|b| b.items.is_empty()) {
            self.near.pop_front();
            self.base += 1;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.near.iter().map(|b| b.items.len()).sum::<usize>()
            + self.far.values().map(|b| b.items.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(q: &mut DueQueue<u32>, now: u64) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        q.take_due(now, &mut out);
        let mut got: Vec<(u64, u32)> = out.into_iter().map(|d| (d.at, d.user)).collect();
        got.sort_unstable();
        got
    }

    /// Checks the queue against a sorted list of what it should hold.
    fn check(q: &DueQueue<u32>, model: &[(u64, u32)]) {
        assert_eq!(q.wheel.len(), model.len());
        assert_eq!(q.earliest(), model.first().map_or(NO_DEADLINE, |e| e.0));
        assert!(q.wheel.near.len() as u64 <= NEAR_SPAN);
        assert!(q.wheel.near.front().is_none_or(|b| !b.items.is_empty()));
    }

    #[test]
    fn empty_queue_has_no_deadline() {
        let mut q = DueQueue::<u32>::new();
        assert_eq!(q.earliest(), NO_DEADLINE);
        assert!(taken(&mut q, 0).is_empty());
        assert!(taken(&mut q, u64::MAX).is_empty());
        assert_eq!(q.earliest(), NO_DEADLINE);
    }

    #[test]
    fn takes_across_bucket_boundaries() {
        let mut q = DueQueue::new();
        let fine = 1 << FINE;
        // Last ms of one near bucket, first of the next, and a few more.
        for (i, at) in [fine - 1, fine, fine + 1, 3 * fine, 3 * fine - 1]
            .iter()
            .enumerate()
        {
            q.push(1_000 * fine + at, i as u32);
        }
        assert_eq!(q.earliest(), 1_000 * fine + fine - 1);
        assert!(taken(&mut q, 1_000 * fine + fine - 2).is_empty());
        assert_eq!(
            taken(&mut q, 1_000 * fine + fine - 1),
            vec![(1_000 * fine + fine - 1, 0)]
        );
        assert_eq!(q.earliest(), 1_000 * fine + fine);
        assert_eq!(
            taken(&mut q, 1_000 * fine + fine + 1),
            vec![(1_000 * fine + fine, 1), (1_000 * fine + fine + 1, 2)]
        );
        assert_eq!(q.earliest(), 1_000 * fine + 3 * fine - 1);
        assert_eq!(
            taken(&mut q, 1_000 * fine + 10 * fine),
            vec![
                (1_000 * fine + 3 * fine - 1, 4),
                (1_000 * fine + 3 * fine, 3)
            ]
        );
        assert_eq!(q.earliest(), NO_DEADLINE);
        assert!(q.wheel.near.is_empty() && q.wheel.far.is_empty());
    }

    #[test]
    fn partial_bucket_keeps_the_rest_and_its_minimum() {
        let mut q = DueQueue::new();
        let base = 5_000 << FINE;
        assert!(taken(&mut q, base - 1).is_empty()); // the cursor, so that pushes go near
        for (i, off) in [9, 3, 7, 1, 5, 8, 2].iter().enumerate() {
            q.push(base + off, i as u32);
        }
        assert_eq!(q.wheel.near.len(), 1, "all in one bucket");
        assert_eq!(q.earliest(), base + 1);
        assert_eq!(
            taken(&mut q, base + 4),
            vec![(base + 1, 3), (base + 2, 6), (base + 3, 1)]
        );
        assert_eq!(q.earliest(), base + 5);
        assert_eq!(q.wheel.len(), 4);
        // A push behind the cursor lands in the cursor's bucket and is due at once.
        q.push(base, 9);
        assert_eq!(q.earliest(), base);
        assert_eq!(taken(&mut q, base + 5), vec![(base, 9), (base + 5, 4)]);
        assert_eq!(q.earliest(), base + 7);
    }

    #[test]
    fn equal_times_all_come_out_together() {
        let mut q = DueQueue::new();
        for user in 0..100 {
            q.push(123_456, user);
        }
        q.push(123_457, 100);
        assert_eq!(q.earliest(), 123_456);
        let got = taken(&mut q, 123_456);
        assert_eq!(got.len(), 100);
        assert!(got.iter().all(|&(at, _)| at == 123_456));
        assert_eq!(q.earliest(), 123_457);
        assert_eq!(taken(&mut q, 123_457), vec![(123_457, 100)]);
    }

    #[test]
    fn far_entries_cascade_and_stay_exact() {
        let mut q = DueQueue::new();
        let t0 = 1_700_000_000_000u64;
        q.push(t0, 0);
        assert_eq!(taken(&mut q, t0), vec![(t0, 0)]);
        // Near (15 s), far (1 min, 1 h) and an entry in a far bucket's first and last ms.
        let coarse = 1 << COARSE;
        let far_key = (t0 >> COARSE) + 10;
        let pushes = [
            (t0 + 15_000, 1),
            (t0 + 60_000, 2),
            (t0 + 3_600_000, 3),
            (far_key << COARSE, 4),
            ((far_key << COARSE) + coarse - 1, 5),
        ];
        let mut model: Vec<(u64, u32)> = pushes.to_vec();
        model.sort_unstable();
        for (at, user) in pushes {
            q.push(at, user);
        }
        assert!(!q.wheel.far.is_empty());
        check(&q, &model);
        // Step through time in irregular strides, comparing with the model.
        let mut now = t0;
        while !model.is_empty() {
            now += 7_919;
            let split = model.partition_point(|e| e.0 <= now);
            let due: Vec<_> = model.drain(..split).collect();
            assert_eq!(taken(&mut q, now), due, "at {now}");
            check(&q, &model);
        }
        assert!(q.wheel.near.is_empty() && q.wheel.far.is_empty());
    }

    #[test]
    fn huge_times_saturate_without_overflow() {
        let mut q = DueQueue::new();
        q.push(u64::MAX, 1);
        q.push(u64::MAX - 1, 2);
        q.push(NO_DEADLINE - (1 << COARSE), 3);
        assert_eq!(q.earliest(), NO_DEADLINE - (1 << COARSE));
        assert!(taken(&mut q, 1_000).is_empty());
        assert_eq!(
            taken(&mut q, u64::MAX - 1),
            vec![(NO_DEADLINE - (1 << COARSE), 3), (u64::MAX - 1, 2)]
        );
        // An entry at u64::MAX is queued but reads as no deadline, as before.
        assert_eq!(q.earliest(), NO_DEADLINE);
        assert_eq!(q.wheel.len(), 1);
        // Pushes behind the (now huge) cursor are due at once, and near the end of time work.
        q.push(5, 4);
        q.push(u64::MAX - 3, 5);
        assert_eq!(q.earliest(), 5);
        assert_eq!(taken(&mut q, u64::MAX - 3), vec![(5, 4), (u64::MAX - 3, 5)]);
        assert_eq!(taken(&mut q, u64::MAX), vec![(u64::MAX, 1)]);
        assert_eq!(q.earliest(), NO_DEADLINE);
        assert_eq!(q.wheel.len(), 0);
    }

    #[test]
    fn time_going_back_still_takes_everything_due() {
        let mut q = DueQueue::new();
        let t = 10_000_000u64;
        q.push(t, 0);
        assert_eq!(taken(&mut q, t), vec![(t, 0)]);
        // Behind the cursor: kept in the cursor's bucket, but taken at its own time.
        q.push(t - 5_000, 1);
        q.push(t - 1_000, 2);
        assert_eq!(q.earliest(), t - 5_000);
        assert_eq!(taken(&mut q, t - 3_000), vec![(t - 5_000, 1)]);
        assert_eq!(q.earliest(), t - 1_000);
        assert_eq!(taken(&mut q, t - 3_000), vec![]);
        assert_eq!(taken(&mut q, t - 1_000), vec![(t - 1_000, 2)]);
    }

    /// Against a sorted-list model: random pushes (some behind the clock, some far) and ticks.
    #[test]
    fn matches_a_model() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut q = DueQueue::new();
        let mut model: Vec<(u64, u32)> = Vec::new();
        let mut now = 1_000_000u64;
        for user in 0..20_000u32 {
            let at = match rand(10) {
                0 => now.saturating_sub(rand(5_000)),
                1..=6 => now + rand(20_000),
                7 | 8 => now + rand(300_000),
                _ => now + rand(4_000_000),
            };
            q.push(at, user);
            let i = model.partition_point(|e| *e < (at, user));
            model.insert(i, (at, user));
            if rand(20) == 0 {
                now += rand(2_000);
                let split = model.partition_point(|e| e.0 <= now);
                let due: Vec<_> = model.drain(..split).collect();
                assert_eq!(taken(&mut q, now), due, "at {now}");
            }
            check(&q, &model);
        }
        let last = model.last().map_or(now, |e| e.0);
        let all: Vec<_> = std::mem::take(&mut model);
        assert_eq!(taken(&mut q, last), all);
        check(&q, &model);
    }
}
