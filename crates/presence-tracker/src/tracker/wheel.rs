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

use super::user_table::Due;
use super::NO_DEADLINE;

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
/// Boxed, so that a [`UserShard`](super::user_table::UserShard) stays small: its two queues are
/// two pointers.
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
mod tests;
