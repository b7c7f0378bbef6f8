//! The derivation: presence as a pure function of a session's record, the time and the policy.

use crate::{Activity, Policy, Presence, Timestamp};

/// What the tracker knows about one session, as far as its presence is concerned.
///
/// Made with [`SessionRecord::new`], or read from a live session with
/// [`SessionView::record`](crate::SessionView::record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionRecord {
    /// Server time of the session's last connect or heartbeat.
    pub last_seen: Timestamp,
    /// The activity the client last reported.
    pub activity: Activity,
    /// When the session expires because its connection closed and none re-attached.
    pub grace_deadline: Option<Timestamp>,
}

impl SessionRecord {
    /// A session last seen at `last_seen` doing `activity`, expiring at `grace_deadline` if its
    /// connection closed.
    pub const fn new(
        last_seen: Timestamp,
        activity: Activity,
        grace_deadline: Option<Timestamp>,
    ) -> Self {
        SessionRecord {
            last_seen,
            activity,
            grace_deadline,
        }
    }
}

/// A session's presence at `now`: the pure function the tracker itself uses.
///
/// - offline once `now` reaches the grace deadline;
/// - otherwise by age (`now - last_seen`, never negative): below [`Policy::active`] active,
///   below [`Policy::idle`] idle, below [`Policy::away`] away, below [`Policy::ttl`] stale,
///   else offline;
/// - capped by the activity (`idle` at idle, `background` at away).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use presence_tracker::{derive, Activity, Policy, Presence, SessionRecord, Timestamp};
///
/// let policy = Policy::default();
/// let seen = Timestamp::from_millis(1_000_000);
/// let record = SessionRecord::new(seen, Activity::Active, None);
/// assert_eq!(derive(&record, seen + Duration::from_secs(20), &policy), Presence::Idle);
///
/// let hidden = SessionRecord::new(seen, Activity::Background, None);
/// assert_eq!(derive(&hidden, seen, &policy), Presence::Away);
/// ```
pub fn derive(record: &SessionRecord, now: Timestamp, policy: &Policy) -> Presence {
    if record.grace_deadline.is_some_and(|d| now >= d) {
        return Presence::Offline;
    }
    by_age(
        now.as_millis().saturating_sub(record.last_seen.as_millis()),
        policy,
    )
    .min(record.activity.cap())
}

fn by_age(age_ms: u64, policy: &Policy) -> Presence {
    if age_ms < policy.active_ms {
        Presence::Active
    } else if age_ms < policy.idle_ms {
        Presence::Idle
    } else if age_ms < policy.away_ms {
        Presence::Away
    } else if age_ms < policy.ttl_ms {
        Presence::Stale
    } else {
        Presence::Offline
    }
}

/// When a session whose presence is `current` will next change without a new signal: at the
/// end of `current`'s age band or at the grace deadline, whichever is first. `None` when it is
/// already offline.
///
/// A heartbeat only moves `last_seen` forward and, for an unchanged presence, so moves this
/// instant later; that is what lets the tracker arm a deadline once and re-check it lazily.
pub(crate) fn next_change(
    record: &SessionRecord,
    current: Presence,
    policy: &Policy,
) -> Option<Timestamp> {
    let band_end = match current {
        Presence::Offline => return None,
        Presence::Stale => policy.ttl_ms,
        Presence::Away => policy.away_ms,
        Presence::Idle => policy.idle_ms,
        Presence::Active => policy.active_ms,
    };
    let by_age = Timestamp::from_millis(record.last_seen.as_millis().saturating_add(band_end));
    Some(match record.grace_deadline {
        Some(deadline) => by_age.min(deadline),
        None => by_age,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rec(activity: Activity) -> SessionRecord {
        SessionRecord {
            last_seen: Timestamp::from_millis(1_000_000),
            activity,
            grace_deadline: None,
        }
    }

    #[test]
    fn bands_follow_the_seed() {
        let p = Policy::default();
        let r = rec(Activity::Active);
        let at = |s: u64| r.last_seen.saturating_add(Duration::from_millis(s));
        assert_eq!(derive(&r, at(14_999), &p), Presence::Active);
        assert_eq!(derive(&r, at(15_000), &p), Presence::Idle);
        assert_eq!(derive(&r, at(59_999), &p), Presence::Idle);
        assert_eq!(derive(&r, at(60_000), &p), Presence::Away);
        assert_eq!(derive(&r, at(180_000), &p), Presence::Stale);
        assert_eq!(derive(&r, at(240_000), &p), Presence::Offline);
    }

    #[test]
    fn time_before_last_seen_counts_as_age_zero() {
        let p = Policy::default();
        let r = rec(Activity::Active);
        assert_eq!(derive(&r, Timestamp::EPOCH, &p), Presence::Active);
    }

    #[test]
    fn next_change_is_where_derive_changes() {
        let p = Policy::default();
        for activity in Activity::ALL {
            let mut r = rec(activity);
            r.grace_deadline = Some(r.last_seen.saturating_add(Duration::from_secs(100)));
            let mut now = r.last_seen;
            let mut current = derive(&r, now, &p);
            while let Some(next) = next_change(&r, current, &p) {
                assert!(next > now);
                let before = Timestamp::from_millis(next.as_millis() - 1);
                assert_eq!(derive(&r, before, &p), current);
                let after = derive(&r, next, &p);
                assert!(after < current, "{activity:?} {current:?} -> {after:?}");
                now = next;
                current = after;
            }
            assert_eq!(current, Presence::Offline);
        }
    }
}
