//! The dense table both tracker tables are made of: the records packed in a `Vec` (the slab), found
//! through an index of one `u64` word per bucket (a 32-bit tag of the hash and the record's slot),
//! probed linearly.
//!
//! Why not a `hashbrown` table of the records: a hash table keeps a bucket for every entry it may
//! hold, so between two growths a table of 40-byte records is 44 % to 87 % full and costs up to
//! 91 bytes a record (at 10^6 sessions in 16 shards it sat at 48 %: 86 bytes for a 40-byte
//! record). Here an empty bucket costs 8 bytes, the records sit end to end (removal moves the last
//! one into the hole), and a lookup still takes two cache lines (the
//! index word, then the record), as a `hashbrown` lookup does (its control bytes, then the bucket).
//!
//! | word | high 32 bits | low 32 bits |
//! |---|---|---|
//! | index word | the tag: the hash's low 32 bits | the record's slot + 1 (0: an empty bucket, [`EMPTY`]) |
//!
//! A tag's home bucket is `tag × buckets / 2^32`, so the index is rebuilt, and a removal's hole
//! closed, from the words alone, without hashing a key; the shards pick their tables with the
//! hash's bits 32 and up, so the tags of one shard are not alike. The index is at most four fifths
//! full (an empty bucket ends every probe) and grows to half as many again as the records (two
//! thirds full); removals close their
//! hole by shifting the probe run back (no tombstones), so a lookup's run stays as short as at
//! insertion.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use super::session_table::{wants_shrink, Hasher};

/// An empty bucket of the index.
const EMPTY: u64 = 0;
/// Buckets of the smallest index.
const MIN_BUCKETS: usize = 8;
/// The largest slab a table holds: the slot + 1 must fit the index word's low 32 bits. The
/// tracker's tables stay far below it (a shard of 2^32 - 1 records would take hundreds of GB).
const MAX_RECORDS: usize = u32::MAX as usize - 1;

/// A record of a dense table, which holds its own key.
pub(crate) trait Keyed {
    type Key: Hash + Eq;
    fn key(&self) -> &Self::Key;
}

impl<K: Hash + Eq, V> Keyed for (K, V) {
    type Key = K;
    fn key(&self) -> &K {
        &self.0
    }
}

/// The buckets an index of `records` grows to: half as many again, so the index is two thirds
/// full after a growth and four fifths before the next.
fn grown(records: usize) -> usize {
    (records + records / 2).max(MIN_BUCKETS)
}

/// The tag of a hash: its low 32 bits.
fn tag_of(hash: u64) -> u64 {
    hash & u64::from(u32::MAX)
}

/// The index word of a record at `slot` whose hash has `tag`.
fn word(tag: u64, slot: usize) -> u64 {
    (tag << 32) | (slot as u64 + 1)
}

/// The slot a (non-empty) word points at.
fn slot_of(word: u64) -> usize {
    ((word & u64::from(u32::MAX)) - 1) as usize
}

/// The home bucket of a tag among `buckets`.
fn home(tag: u64, buckets: usize) -> usize {
    ((tag * buckets as u64) >> 32) as usize
}

/// Records of type `T` found by key, hashed by `H`: see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct DenseTable<T, H = Hasher> {
    index: Vec<u64>,
    slab: Vec<T>,
    hasher: H,
}

impl<T: Keyed, H: BuildHasher + Clone> DenseTable<T, H> {
    pub(crate) fn new(hasher: &H) -> Self {
        DenseTable {
            index: Vec::new(),
            slab: Vec::new(),
            hasher: hasher.clone(),
        }
    }

    /// The hash this table files `key` under: the tracker's one hash of an id.
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Every record, in slab order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.slab.iter()
    }

    /// The bucket and slot of `key`, whose hash is `hash`.
    #[inline]
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<(usize, usize)>
    where
        T::Key: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let buckets = self.index.len();
        if buckets == 0 {
            return None;
        }
        let tag = tag_of(hash);
        let mut at = home(tag, buckets);
        loop {
            let w = self.index[at];
            if w == EMPTY {
                return None;
            }
            if w >> 32 == tag {
                let slot = slot_of(w);
                if self.slab[slot].key().borrow() == key {
                    return Some((at, slot));
                }
            }
            at += 1;
            if at == buckets {
                at = 0;
            }
        }
    }

    /// The record of `key`, whose hash is `hash` ([`hash`](Self::hash)).
    #[inline]
    pub(crate) fn get_hashed<Q>(&self, hash: u64, key: &Q) -> Option<&T>
    where
        T::Key: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.find(hash, key).map(|(_, slot)| &self.slab[slot])
    }

    pub(crate) fn get_hashed_mut<Q>(&mut self, hash: u64, key: &Q) -> Option<&mut T>
    where
        T::Key: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.find(hash, key).map(|(_, slot)| &mut self.slab[slot])
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&T>
    where
        T::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_hashed(self.hash(key), key)
    }

    pub(crate) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut T>
    where
        T::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_hashed_mut(self.hash(key), key)
    }

    /// Files `record` under its key, whose hash is `hash`; returns the record it replaced.
    pub(crate) fn insert_hashed(&mut self, hash: u64, record: T) -> Option<T> {
        if let Some((_, slot)) = self.find(hash, record.key()) {
            return Some(std::mem::replace(&mut self.slab[slot], record));
        }
        debug_assert!(self.slab.len() < MAX_RECORDS, "a dense table is full");
        let records = self.slab.len() + 1;
        if records * 5 > self.index.len() * 4 {
            self.rebuild_index(grown(records));
        }
        let slot = self.slab.len();
        self.slab.push(record);
        self.place(word(tag_of(hash), slot));
        None
    }

    pub(crate) fn insert(&mut self, record: T) -> Option<T> {
        let hash = self.hash(record.key());
        self.insert_hashed(hash, record)
    }

    /// Removes the record of `key`, whose hash is `hash`; the last record takes its slot.
    pub(crate) fn remove_hashed<Q>(&mut self, hash: u64, key: &Q) -> Option<T>
    where
        T::Key: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let (at, slot) = self.find(hash, key)?;
        self.close(at);
        let last = self.slab.len() - 1;
        if slot != last {
            // The last record moves into the hole: its word points at `slot` from now on.
            let tag = tag_of(self.hash(self.slab[last].key()));
            match self.bucket_of(tag, last) {
                Some(b) => self.index[b] = word(tag, slot),
                // Cannot happen (every record has its word); should it, the index is rebuilt
                // from the keys rather than left pointing at the wrong records.
                None => {
                    let record = self.slab.swap_remove(slot);
                    self.reindex();
                    return Some(record);
                }
            }
        }
        Some(self.slab.swap_remove(slot))
    }

    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<T>
    where
        T::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_hashed(self.hash(key), key)
    }

    /// Gives memory back once the table is under a quarter full, as the tables did before (see
    /// [`wants_shrink`]): the slab to twice its records; the index, once under an eighth full, to
    /// two thirds full.
    pub(crate) fn shrink(&mut self) {
        let records = self.slab.len();
        if wants_shrink(records, self.slab.capacity()) {
            self.slab.shrink_to(records * 2);
        }
        if wants_shrink(records * 2, self.index.len()) {
            self.rebuild_index(grown(records));
        }
    }

    /// Bytes held by the table (its two vectors' capacity), for the tests of its size.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.index.capacity() * std::mem::size_of::<u64>()
            + self.slab.capacity() * std::mem::size_of::<T>()
    }

    /// The bucket holding the word of `slot`, whose tag is `tag`.
    fn bucket_of(&self, tag: u64, slot: usize) -> Option<usize> {
        let buckets = self.index.len();
        let wanted = word(tag, slot);
        let mut at = home(tag, buckets);
        for _ in 0..buckets {
            match self.index[at] {
                EMPTY => return None,
                w if w == wanted => return Some(at),
                _ => {}
            }
            at += 1;
            if at == buckets {
                at = 0;
            }
        }
        None
    }

    /// Puts `w` in the first empty bucket from its home (there is one: the index is at most
    /// four fifths full).
    fn place(&mut self, w: u64) {
        let buckets = self.index.len();
        let mut at = home(w >> 32, buckets);
        while self.index[at] != EMPTY {
            at += 1;
            if at == buckets {
                at = 0;
            }
        }
        self.index[at] = w;
    }

    /// Empties bucket `hole` and shifts back the words after it that may move (those whose home
    /// is not between the hole and where they sit), so no probe run has a gap.
    fn close(&mut self, mut hole: usize) {
        let buckets = self.index.len();
        let mut at = hole;
        loop {
            at += 1;
            if at == buckets {
                at = 0;
            }
            let w = self.index[at];
            if w == EMPTY {
                break;
            }
            let h = home(w >> 32, buckets);
            let stays = if hole <= at {
                hole < h && h <= at
            } else {
                hole < h || h <= at
            };
            if !stays {
                self.index[hole] = w;
                hole = at;
            }
        }
        self.index[hole] = EMPTY;
    }

    /// A new index of `buckets` buckets, from the old one's words.
    fn rebuild_index(&mut self, buckets: usize) {
        let old = std::mem::replace(&mut self.index, vec![EMPTY; buckets]);
        for w in old {
            if w != EMPTY {
                self.place(w);
            }
        }
    }

    /// A new index from the keys.
    fn reindex(&mut self) {
        self.index = vec![EMPTY; grown(self.slab.len())];
        for slot in 0..self.slab.len() {
            let tag = tag_of(self.hash(self.slab[slot].key()));
            self.place(word(tag, slot));
        }
    }
}

impl<'a, T, H> IntoIterator for &'a DenseTable<T, H> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.slab.iter()
    }
}

/// A map of `K` to `V` over a [`DenseTable`] of pairs, with the parts of `HashMap`'s API the
/// user tables use.
#[derive(Debug, Clone)]
pub(crate) struct DenseMap<K, V>(DenseTable<(K, V)>);

impl<K: Hash + Eq, V> DenseMap<K, V> {
    pub(crate) fn new(hasher: &Hasher) -> Self {
        DenseMap(DenseTable::new(hasher))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.slab.len()
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.get(key).map(|(_, v)| v)
    }

    pub(crate) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.get_mut(key).map(|(_, v)| v)
    }

    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.get(key).is_some()
    }

    /// Inserts or replaces; the value replaced.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.0.insert((key, value)).map(|(_, v)| v)
    }

    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.remove(key).map(|(_, v)| v)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub(crate) fn shrink(&mut self) {
        self.0.shrink();
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.0.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
        Get(u16),
        Shrink,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Keys from a small range, so removals and replacements hit.
        prop_oneof![
            4 => (0u16..300, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => (0u16..300).prop_map(Op::Remove),
            2 => (0u16..300).prop_map(Op::Get),
            1 => Just(Op::Shrink),
        ]
    }

    /// Hashes whose tags differ in few bits and sit at the top of the range (so every key's home
    /// is near the end of the index and runs wrap around to bucket 0), `2^spread` keys a tag.
    #[derive(Clone)]
    struct Clumped(u32);

    impl BuildHasher for Clumped {
        type Hasher = ClumpedHasher;
        fn build_hasher(&self) -> ClumpedHasher {
            ClumpedHasher(self.0, 0)
        }
    }

    struct ClumpedHasher(u32, u64);

    impl std::hash::Hasher for ClumpedHasher {
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.1 = (self.1 << 8) | u64::from(*b);
            }
        }
        fn finish(&self) -> u64 {
            u64::from(u32::MAX - ((self.1 as u32) >> self.0))
        }
    }

    proptest! {
        #[test]
        fn behaves_as_a_hash_map(ops in proptest::collection::vec(op(), 1..600)) {
            let mut dense: DenseMap<u16, u32> = DenseMap::new(&Hasher::default());
            let mut model: HashMap<u16, u32> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(dense.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(dense.remove(&k), model.remove(&k)),
                    Op::Get(k) => prop_assert_eq!(dense.get(&k), model.get(&k)),
                    Op::Shrink => dense.shrink(),
                }
                prop_assert_eq!(dense.len(), model.len());
            }
            let mut seen: Vec<(u16, u32)> = dense.iter().map(|(k, v)| (*k, *v)).collect();
            let mut want: Vec<(u16, u32)> = model.into_iter().collect();
            seen.sort_unstable();
            want.sort_unstable();
            prop_assert_eq!(seen, want);
        }

        #[test]
        fn probe_runs_that_wrap_and_collide_keep_every_key(
            ops in proptest::collection::vec(op(), 1..400),
            spread in 0u32..4,
        ) {
            let hasher = Clumped(spread);
            let hash = |k: u16| hasher.hash_one(k);
            let mut dense: DenseTable<(u16, u32), Clumped> = DenseTable::new(&hasher);
            let mut model: HashMap<u16, u32> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(
                        dense.insert_hashed(hash(k), (k, v)).map(|r| r.1),
                        model.insert(k, v)
                    ),
                    Op::Remove(k) => prop_assert_eq!(
                        dense.remove_hashed(hash(k), &k).map(|r| r.1),
                        model.remove(&k)
                    ),
                    Op::Get(k) => prop_assert_eq!(
                        dense.get_hashed(hash(k), &k).map(|r| r.1),
                        model.get(&k).copied()
                    ),
                    Op::Shrink => {}
                }
            }
            for (k, v) in &model {
                prop_assert_eq!(dense.get_hashed(hash(*k), k).map(|r| r.1), Some(*v));
            }
        }
    }

    #[test]
    fn an_index_word_costs_8_bytes_and_records_sit_end_to_end() {
        let mut dense: DenseMap<u64, u64> = DenseMap::new(&Hasher::default());
        for k in 0..100_000u64 {
            dense.insert(k, k);
        }
        // Slab: 16 bytes a record at most twice over; index: 8 bytes a bucket, 2.5 to 5 a record.
        let per_record = dense.bytes() as f64 / 100_000.0;
        assert!(
            per_record <= 16.0 * 2.0 + 8.0 * 2.5,
            "{per_record} bytes a record"
        );
        for k in 0..99_000u64 {
            assert_eq!(dense.remove(&k), Some(k));
        }
        dense.shrink();
        assert!(
            dense.bytes() <= 1_000 * (16 * 2 + 8 * 4),
            "{} bytes",
            dense.bytes()
        );
        for k in 99_000..100_000u64 {
            assert_eq!(dense.get(&k), Some(&k));
        }
    }
}
