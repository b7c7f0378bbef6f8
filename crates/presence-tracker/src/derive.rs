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
/// - offline once `now` reaches the grace deadline, or the age (`now - last_seen`, never
///   negative) reaches [`Policy::ttl`];
/// - otherwise, with no [`Policy::dwell`] (the default), by age: below [`Policy::active`]
///   active, below [`Policy::idle`] idle, below [`Policy::away`] away, else stale; capped by
///   the activity (`idle` at idle, `background` at away);
/// - with a dwell, the age must outlast the band of the presence shown by the dwell before a
///   lower one is shown, and that is then the presence the ladder above gives at that age
///   (levels the silence went past meanwhile are skipped). From `active` at the last signal:
///   active until `active + dwell`; then, with a dwell of 30 s, idle until `idle + dwell`,
///   away until `away + dwell`, stale until the TTL; with a dwell of 60 s, away from 75 s until
///   the TTL. A dwell never delays offline.
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
///
/// // A 60 s dwell: one missed heartbeat shows nothing, a long silence shows away at once.
/// let dwell = Policy::builder().dwell(Duration::from_secs(60)).build()?;
/// assert_eq!(derive(&record, seen + Duration::from_secs(20), &dwell), Presence::Active);
/// assert_eq!(derive(&record, seen + Duration::from_secs(75), &dwell), Presence::Away);
/// assert_eq!(derive(&record, seen + Duration::from_secs(240), &dwell), Presence::Offline);
/// # Ok::<(), presence_tracker::Error>(())
/// ```
pub fn derive(record: &SessionRecord, now: Timestamp, policy: &Policy) -> Presence {
    if record.grace_deadline.is_some_and(|d| now >= d) {
        return Presence::Offline;
    }
    let age = now.as_millis().saturating_sub(record.last_seen.as_millis());
    if age >= policy.ttl_ms {
        return Presence::Offline;
    }
    let cap = record.activity.cap();
    if policy.dwell_ms == 0 {
        return by_age(age, policy).min(cap);
    }
    // Down the ladder from the presence of the last signal: each step is due a dwell after
    // the band of the presence shown ends, and shows the presence by age at that instant.
    let mut shown = cap;
    loop {
        let due = band_end(shown, policy).saturating_add(policy.dwell_ms);
        if age < due || due >= policy.ttl_ms {
            return shown;
        }
        shown = by_age(due, policy).min(cap);
    }
}

/// The presence by age alone, below the TTL.
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

/// The age at which [`by_age`] falls below `presence` (the TTL for `stale`).
fn band_end(presence: Presence, policy: &Policy) -> u64 {
    match presence {
        Presence::Active => policy.active_ms,
        Presence::Idle => policy.idle_ms,
        Presence::Away => policy.away_ms,
        Presence::Stale | Presence::Offline => policy.ttl_ms,
    }
}

/// When a session whose presence is `current` (its [`derive`]d presence now) will next change
/// without a new signal: a dwell after the end of `current`'s age band (at the TTL at the
/// latest), or at the grace deadline, whichever is first. `None` when it is already offline.
///
/// A heartbeat only moves `last_seen` forward and, for an unchanged presence, so moves this
/// instant later; that is what lets the tracker arm a deadline once and re-check it lazily.
pub(crate) fn next_change(
    record: &SessionRecord,
    current: Presence,
    policy: &Policy,
) -> Option<Timestamp> {
    let after = match current {
        Presence::Offline => return None,
        // Offline is never held.
        Presence::Stale => policy.ttl_ms,
        shown => band_end(shown, policy)
            .saturating_add(policy.dwell_ms)
            .min(policy.ttl_ms),
    };
    let by_age = Timestamp::from_millis(record.last_seen.as_millis().saturating_add(after));
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

    fn with_dwell(secs: u64) -> Policy {
        Policy::builder()
            .dwell(Duration::from_secs(secs))
            .build()
            .expect("a valid dwell")
    }

    #[test]
    fn a_dwell_holds_each_band_and_then_shows_the_age_s_presence() {
        let r = rec(Activity::Active);
        let at = |s: u64| r.last_seen.saturating_add(Duration::from_millis(s));
        // 30 s: every step a dwell late, none skipped.
        let p = with_dwell(30);
        assert_eq!(derive(&r, at(44_999), &p), Presence::Active);
        assert_eq!(derive(&r, at(45_000), &p), Presence::Idle);
        assert_eq!(derive(&r, at(89_999), &p), Presence::Idle);
        assert_eq!(derive(&r, at(90_000), &p), Presence::Away);
        assert_eq!(derive(&r, at(210_000), &p), Presence::Stale);
        assert_eq!(derive(&r, at(239_999), &p), Presence::Stale);
        assert_eq!(derive(&r, at(240_000), &p), Presence::Offline);
        // 60 s: at 75 s the age is past idle's band: away at once, and away's dwell runs
        // past the TTL.
        let p = with_dwell(60);
        assert_eq!(derive(&r, at(74_999), &p), Presence::Active);
        assert_eq!(derive(&r, at(75_000), &p), Presence::Away);
        assert_eq!(derive(&r, at(239_999), &p), Presence::Away);
        assert_eq!(derive(&r, at(240_000), &p), Presence::Offline);
        // The TTL: as it was until offline.
        let p = with_dwell(240);
        assert_eq!(derive(&r, at(239_999), &p), Presence::Active);
        assert_eq!(derive(&r, at(240_000), &p), Presence::Offline);
        // A background session's band is away's: 180 s, then stale after the dwell.
        let hidden = rec(Activity::Background);
        let p = with_dwell(30);
        assert_eq!(derive(&hidden, at(209_999), &p), Presence::Away);
        assert_eq!(derive(&hidden, at(210_000), &p), Presence::Stale);
    }

    #[test]
    fn a_dwell_never_delays_offline() {
        for secs in [0, 1, 15, 45, 100, 239, 240] {
            let p = with_dwell(secs);
            for activity in Activity::ALL {
                let mut r = rec(activity);
                let ttl = r.last_seen.saturating_add(p.ttl());
                assert_eq!(derive(&r, ttl, &p), Presence::Offline);
                let before = Timestamp::from_millis(ttl.as_millis() - 1);
                assert!(derive(&r, before, &p).is_online());
                let grace = r.last_seen.saturating_add(Duration::from_secs(7));
                r.grace_deadline = Some(grace);
                assert_eq!(derive(&r, grace, &p), Presence::Offline);
            }
        }
    }

    #[test]
    fn next_change_is_where_derive_changes() {
        for secs in [0, 1, 15, 30, 45, 60, 120, 165, 200, 240] {
            let p = with_dwell(secs);
            for activity in Activity::ALL {
                for grace in [None, Some(100), Some(230)] {
                    let mut r = rec(activity);
                    r.grace_deadline =
                        grace.map(|g| r.last_seen.saturating_add(Duration::from_secs(g)));
                    let mut now = r.last_seen;
                    let mut current = derive(&r, now, &p);
                    assert_eq!(current, activity.cap());
                    while let Some(next) = next_change(&r, current, &p) {
                        assert!(next > now);
                        let before = Timestamp::from_millis(next.as_millis() - 1);
                        assert_eq!(derive(&r, before, &p), current, "dwell {secs}s");
                        let after = derive(&r, next, &p);
                        assert!(after < current, "{activity:?} {current:?} -> {after:?}");
                        now = next;
                        current = after;
                    }
                    assert_eq!(current, Presence::Offline);
                }
            }
        }
    }
}
