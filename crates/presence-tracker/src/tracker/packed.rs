//! The packed words: two fields in one `u64`, so an entry stays small (the entries are most of
//! the memory per session) and a heartbeat updates `last_seen` and the activity in one store.
//!
//! | word | high bits | low bits | held in |
//! |---|---|---|---|
//! | hot | `last_seen` in ms, 62 bits (`<< HOT_SHIFT`; saturates at [`MAX_LAST_SEEN`]) | the activity, [`ACTIVITY_BITS`] (`& ACTIVITY_MASK`) | `SessionEntry::hot`, atomic: see [`pack`] |
//! | grace and published | the grace deadline in ms, 61 bits (`<< PRESENCE_BITS`; [`MAX_GRACE`] at most, `MAX_GRACE + 1` for [`NO_DEADLINE`]) | the published presence, [`PRESENCE_BITS`] (`& PRESENCE_MASK`) | `SessionEntry`: [`GracePublished`] |
//! | seq and published | the user's last event's seq, 61 bits (`<< PRESENCE_BITS`; below [`MAX_SEQ`]) | the published presence, [`PRESENCE_BITS`] (`& PRESENCE_MASK`) | `UserEntry::state`: [`SeqPublished`] |
//! | gone | bit 63, [`RETENTION_QUEUED`]: a retention entry of an earlier offline spell is queued | the latest `last_seen` of the user's expired sessions in ms, 63 bits (`& !RETENTION_QUEUED`; 0 if none) | `UserShard::gone`, per live user that has one: [`Gone`] |

use super::NO_DEADLINE;
use crate::{Activity, Presence, SessionRecord, Timestamp};

/// Bits of the activity, the low bits of the hot word.
const ACTIVITY_BITS: u32 = 2;
/// The activity's bits of the hot word.
const ACTIVITY_MASK: u64 = (1 << ACTIVITY_BITS) - 1;
/// Where `last_seen` starts in the hot word.
const HOT_SHIFT: u32 = ACTIVITY_BITS;
/// The largest `last_seen` the hot word holds; a later one saturates to it.
const MAX_LAST_SEEN: u64 = u64::MAX >> HOT_SHIFT;

/// Bits of a published presence (five values), the low bits of the grace and seq words.
const PRESENCE_BITS: u32 = 3;
/// The published presence's bits of the grace and seq words.
const PRESENCE_MASK: u64 = (1 << PRESENCE_BITS) - 1;

/// The largest grace deadline stored; [`NO_DEADLINE`] is stored as the next value. A deadline
/// beyond it (some 73 million years after 1970) saturates to it.
const MAX_GRACE: u64 = (1 << (u64::BITS - PRESENCE_BITS)) - 2;

/// One past the largest sequence number a tracker keeps (a seq has 61 bits).
pub(crate) const MAX_SEQ: u64 = 1 << (u64::BITS - PRESENCE_BITS);
/// One seq in the seq word.
const SEQ_ONE: u64 = 1 << PRESENCE_BITS;

/// The top bit of the gone word: a retention entry is queued for the user.
const RETENTION_QUEUED: u64 = 1 << (u64::BITS - 1);

/// `last_seen` in milliseconds and the activity, in one word, so a heartbeat updates both with
/// one store and a reader never sees half of it.
pub(crate) fn pack(last_seen: u64, activity: Activity) -> u64 {
    (last_seen.min(MAX_LAST_SEEN) << HOT_SHIFT) | activity.to_bits()
}

/// The `last_seen` and activity of a hot word.
pub(super) fn unpack(hot: u64) -> (u64, Activity) {
    (hot >> HOT_SHIFT, Activity::from_bits(hot & ACTIVITY_MASK))
}

/// A session's record, from its hot word and its grace deadline ([`NO_DEADLINE`] if none).
pub(super) fn record_of(hot: u64, grace: u64) -> SessionRecord {
    let (last_seen, activity) = unpack(hot);
    SessionRecord {
        last_seen: Timestamp::from_millis(last_seen),
        activity,
        grace_deadline: (grace != NO_DEADLINE).then_some(Timestamp::from_millis(grace)),
    }
}

/// A session's grace deadline and its published presence, in one word (40 bytes an entry with
/// u64 ids, not 48).
#[derive(Debug, Clone, Copy)]
pub(super) struct GracePublished(u64);

impl GracePublished {
    pub(super) fn new(published: Presence, grace: u64) -> Self {
        let mut word = GracePublished(published as u64);
        word.set_grace(grace);
        word
    }

    pub(super) fn published(self) -> Presence {
        Presence::from_index((self.0 & PRESENCE_MASK) as u8)
    }

    pub(super) fn set_published(&mut self, p: Presence) {
        self.0 = (self.0 & !PRESENCE_MASK) | p as u64;
    }

    /// Grace deadline in ms, [`NO_DEADLINE`] while connected.
    pub(super) fn grace(self) -> u64 {
        match self.0 >> PRESENCE_BITS {
            g if g > MAX_GRACE => NO_DEADLINE,
            g => g,
        }
    }

    pub(super) fn set_grace(&mut self, grace: u64) {
        let stored = if grace == NO_DEADLINE {
            MAX_GRACE + 1
        } else {
            grace.min(MAX_GRACE)
        };
        self.0 = (stored << PRESENCE_BITS) | (self.0 & PRESENCE_MASK);
    }
}

/// A user's last event's seq and its published presence: one word instead of two (the user
/// entry is a large part of the memory per session).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeqPublished(u64);

impl SeqPublished {
    pub(super) fn new(published: Presence, seq: u64) -> Self {
        SeqPublished((seq << PRESENCE_BITS) | published as u64)
    }

    pub(super) fn published(self) -> Presence {
        Presence::from_index((self.0 & PRESENCE_MASK) as u8)
    }

    pub(super) fn set_published(&mut self, p: Presence) {
        self.0 = (self.0 & !PRESENCE_MASK) | p as u64;
    }

    pub(super) fn seq(self) -> u64 {
        self.0 >> PRESENCE_BITS
    }

    /// The seq for the user's next event. Wraps after 2^61 events, which no user will reach.
    pub(super) fn next_seq(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(SEQ_ONE);
        self.seq()
    }
}

/// The latest `last_seen` of a user's sessions that expired (0 if none), and whether a
/// retention entry of an earlier offline spell is still queued for the user (see
/// [`UserShard::retention`](super::user_table::UserShard::retention)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gone(u64);

impl Gone {
    pub(super) fn new(last_seen: u64) -> Self {
        Gone(last_seen & !RETENTION_QUEUED)
    }

    /// The latest `last_seen` of the expired sessions, 0 if none.
    pub(super) fn last_seen(self) -> u64 {
        self.0 & !RETENTION_QUEUED
    }

    /// Raises the latest `last_seen` of the expired sessions to `t` (times stay below 2^62).
    pub(super) fn saw(&mut self, t: u64) {
        let t = t.min(!RETENTION_QUEUED);
        self.0 = (self.0 & RETENTION_QUEUED) | self.last_seen().max(t);
    }

    pub(super) fn retention_queued(self) -> bool {
        self.0 & RETENTION_QUEUED != 0
    }

    pub(super) fn set_retention_queued(&mut self, queued: bool) {
        self.0 = (self.0 & !RETENTION_QUEUED) | if queued { RETENTION_QUEUED } else { 0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_and_published_share_a_word_without_mixing() {
        let mut w = SeqPublished::new(Presence::Away, 41);
        assert_eq!((w.published(), w.seq()), (Presence::Away, 41));
        assert_eq!(w.next_seq(), 42);
        w.set_published(Presence::Active);
        assert_eq!((w.published(), w.seq()), (Presence::Active, 42));
        w.set_published(Presence::Offline);
        assert_eq!((w.published(), w.seq()), (Presence::Offline, 42));
    }

    #[test]
    fn grace_and_published_share_a_word_without_mixing() {
        let mut w = GracePublished::new(Presence::Idle, NO_DEADLINE);
        assert_eq!((w.grace(), w.published()), (NO_DEADLINE, Presence::Idle));
        w.set_grace(1_767_225_600_000);
        w.set_published(Presence::Active);
        assert_eq!(
            (w.grace(), w.published()),
            (1_767_225_600_000, Presence::Active)
        );
        w.set_grace(u64::MAX - 1); // saturates, and still expires (far away)
        assert_eq!((w.grace(), w.published()), (MAX_GRACE, Presence::Active));
        w.set_grace(NO_DEADLINE);
        w.set_published(Presence::Offline);
        assert_eq!((w.grace(), w.published()), (NO_DEADLINE, Presence::Offline));
    }

    #[test]
    fn the_retention_flag_does_not_disturb_the_time() {
        let mut g = Gone::new(1_000);
        g.set_retention_queued(true);
        g.saw(900);
        assert_eq!((g.last_seen(), g.retention_queued()), (1_000, true));
        g.saw(2_000);
        g.set_retention_queued(false);
        assert_eq!((g.last_seen(), g.retention_queued()), (2_000, false));
        g.saw(u64::MAX); // saturates below the flag
        assert_eq!(
            (g.last_seen(), g.retention_queued()),
            ((1 << 63) - 1, false)
        );
    }
}
