//! The [`Policy`]: thresholds, graces, retention and limits, validated when built.

use std::time::Duration;

use crate::clock::duration_to_millis;
use crate::Error;

/// How presence is derived from time, and what the tracker accepts.
///
/// Made by [`Policy::default`] (the seed's thresholds) or [`Policy::builder`], which refuses a
/// policy that could not work: an invalid `Policy` cannot be constructed.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | [`active`](Policy::active) | 15 s | age below it: `active` |
/// | [`idle`](Policy::idle) | 60 s | age below it: `idle` |
/// | [`away`](Policy::away) | 180 s | age below it: `away` |
/// | [`ttl`](Policy::ttl) | 240 s | age below it: `stale`; from it on: `offline`, the session expires |
/// | [`dwell`](Policy::dwell) | 0 | hysteresis: how long a silence must outlast a presence's band before the lower presence is shown (skipping levels the silence went past); never delays `offline` |
/// | [`disconnect_grace`](Policy::disconnect_grace) | 120 s | a session whose connection was lost expires this long after, unless one re-attaches |
/// | [`leave_grace`](Policy::leave_grace) | 5 s | the same after a clean disconnect or a leave: long enough for a page reload |
/// | [`retention`](Policy::retention) | 1 h | how long an offline user's "last seen" is kept |
/// | [`max_sessions_per_user`](Policy::max_sessions_per_user) | 64 | |
/// | [`max_sessions`](Policy::max_sessions) | 100,000 | a memory bound: a session is a few hundred bytes, and its rooms' metadata up to [`max_rooms_per_session`](Policy::max_rooms_per_session) × [`max_metadata_bytes`](Policy::max_metadata_bytes) |
/// | [`max_id_len`](Policy::max_id_len) | 256 | bytes, for string ids |
///
/// Durations are used at millisecond resolution.
///
/// # Choosing a dwell
///
/// Without a dwell, every band a silent session crosses is an event: one lost heartbeat shows
/// an active user `idle` for a moment, a minute-long network blip `idle` then `away`. A dwell
/// holds the presence of the last signal until the silence has outlasted its band by the
/// dwell, then shows what the ladder says at that age. It costs nothing per heartbeat and
/// never delays `offline`: a silent session still expires at its TTL, a disconnected one at
/// its grace, so departures are detected exactly as fast. What it delays is the first sign of
/// a silence: `active + dwell` after the last heartbeat. A dwell of the TTL shows a silent
/// session as it was until it goes offline. The simulator (`tune --peers`, README "Which
/// policy") measures it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use presence_tracker::{Error, Policy};
///
/// let policy = Policy::builder().active(Duration::from_secs(10)).build()?;
/// assert_eq!(policy.active(), Duration::from_secs(10));
///
/// let bad = Policy::builder().idle(Duration::from_secs(300)).build();
/// assert!(matches!(bad, Err(Error::ThresholdsNotIncreasing { name: "away", .. })));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub(crate) active_ms: u64,
    pub(crate) idle_ms: u64,
    pub(crate) away_ms: u64,
    pub(crate) ttl_ms: u64,
    pub(crate) dwell_ms: u64,
    pub(crate) disconnect_grace_ms: u64,
    pub(crate) leave_grace_ms: u64,
    pub(crate) retention_ms: u64,
    pub(crate) max_sessions_per_user: usize,
    pub(crate) max_sessions: usize,
    pub(crate) max_id_len: usize,
    pub(crate) max_rooms_per_session: usize,
    pub(crate) max_members_per_room: usize,
    pub(crate) max_metadata_bytes: usize,
    pub(crate) metadata_interval_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            active_ms: 15_000,
            idle_ms: 60_000,
            away_ms: 180_000,
            ttl_ms: 240_000,
            dwell_ms: 0,
            disconnect_grace_ms: 120_000,
            leave_grace_ms: 5_000,
            retention_ms: 3_600_000,
            max_sessions_per_user: 64,
            max_sessions: 100_000,
            max_id_len: 256,
            max_rooms_per_session: 32,
            max_members_per_room: 100_000,
            max_metadata_bytes: 4096,
            metadata_interval_ms: 50,
        }
    }
}

impl Policy {
    /// A builder starting from the defaults.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            policy: Policy::default(),
            dwell: Duration::ZERO,
        }
    }

    /// A session seen more recently than this is `active` (unless its activity caps it).
    pub fn active(&self) -> Duration {
        Duration::from_millis(self.active_ms)
    }

    /// A session seen more recently than this is at most `idle`.
    pub fn idle(&self) -> Duration {
        Duration::from_millis(self.idle_ms)
    }

    /// A session seen more recently than this is at most `away`.
    pub fn away(&self) -> Duration {
        Duration::from_millis(self.away_ms)
    }

    /// A session seen more recently than this is at most `stale`; one not seen for this long is
    /// `offline` and expires.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    /// Hysteresis for silences (default zero: none). A silent session's presence falls only
    /// once the silence has outlasted the band of the presence shown by this much (an active
    /// session one heartbeat late stays active), and then to the presence its age gives,
    /// skipping the levels the silence went past; a heartbeat within the dwell shows nothing.
    /// Never delays `offline`: the TTL and the graces bound a departure's detection as without
    /// a dwell. Signals are shown at once (an `idle` or `background` heartbeat lowers the
    /// presence when it arrives). See [`derive`](crate::derive()) for the rule, and
    /// [`Policy`] for choosing one.
    pub fn dwell(&self) -> Duration {
        Duration::from_millis(self.dwell_ms)
    }

    /// How long a session whose connection was lost lives on without a new connection.
    pub fn disconnect_grace(&self) -> Duration {
        Duration::from_millis(self.disconnect_grace_ms)
    }

    /// How long a session that closed its connection cleanly, or left, lives on without a new
    /// connection.
    pub fn leave_grace(&self) -> Duration {
        Duration::from_millis(self.leave_grace_ms)
    }

    /// How long an offline user's last-seen time is kept.
    pub fn retention(&self) -> Duration {
        Duration::from_millis(self.retention_ms)
    }

    /// The most sessions one user may have.
    pub fn max_sessions_per_user(&self) -> usize {
        self.max_sessions_per_user
    }

    /// The most sessions the tracker holds (default 100,000): a memory bound, so a session that
    /// expired counts until a tick (or a signal of its user) frees it. A session whose
    /// connection vanished stays for the disconnect grace; a node that holds more connections
    /// than this, or sees more tabs come and go within a grace, raises it.
    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// The longest string id accepted, in bytes (user, session and room ids).
    pub fn max_id_len(&self) -> usize {
        self.max_id_len
    }

    /// The most rooms one session may be in (default 32).
    pub fn max_rooms_per_session(&self) -> usize {
        self.max_rooms_per_session
    }

    /// The most members (users) one room may have (default 100,000).
    pub fn max_members_per_room(&self) -> usize {
        self.max_members_per_room
    }

    /// The largest metadata a session may carry into a room, as
    /// [`Metadata::size`](crate::Metadata::size) counts it (default 4 KiB).
    pub fn max_metadata_bytes(&self) -> usize {
        self.max_metadata_bytes
    }

    /// The shortest time between two metadata changes of one session in one room (default
    /// 50 ms, 20 a second): a faster change is refused with
    /// [`Error::MetadataTooFrequent`], which says when to try again. Zero: no bound.
    pub fn metadata_interval(&self) -> Duration {
        Duration::from_millis(self.metadata_interval_ms)
    }

    pub(crate) fn grace_ms(&self, kind: crate::DisconnectKind) -> u64 {
        match kind {
            crate::DisconnectKind::Clean => self.leave_grace_ms,
            crate::DisconnectKind::Lost => self.disconnect_grace_ms,
        }
    }
}

/// Builds a [`Policy`]; see [`Policy::builder`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until built"]
pub struct PolicyBuilder {
    policy: Policy,
    /// As given: a dwell under the tracker's 1 ms resolution is refused, not rounded to none.
    dwell: Duration,
}

macro_rules! duration_setters {
    ($($(#[$doc:meta])* $name:ident => $field:ident;)*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, value: Duration) -> Self {
            self.policy.$field = duration_to_millis(value);
            self
        }
    )*};
}

macro_rules! count_setters {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, value: usize) -> Self {
            self.policy.$name = value;
            self
        }
    )*};
}

impl PolicyBuilder {
    duration_setters! {
        /// Sets [`Policy::active`].
        active => active_ms;
        /// Sets [`Policy::idle`].
        idle => idle_ms;
        /// Sets [`Policy::away`].
        away => away_ms;
        /// Sets [`Policy::ttl`].
        ttl => ttl_ms;
        /// Sets [`Policy::disconnect_grace`].
        disconnect_grace => disconnect_grace_ms;
        /// Sets [`Policy::leave_grace`].
        leave_grace => leave_grace_ms;
        /// Sets [`Policy::retention`].
        retention => retention_ms;
        /// Sets [`Policy::metadata_interval`].
        metadata_interval => metadata_interval_ms;
    }

    /// Sets [`Policy::dwell`]: zero (the default) for none, at most the TTL (the TTL itself
    /// holds a silent session's presence until it goes offline).
    pub fn dwell(mut self, value: Duration) -> Self {
        self.dwell = value;
        self
    }

    count_setters! {
        /// Sets [`Policy::max_sessions_per_user`].
        max_sessions_per_user;
        /// Sets [`Policy::max_sessions`].
        max_sessions;
        /// Sets [`Policy::max_id_len`].
        max_id_len;
        /// Sets [`Policy::max_rooms_per_session`].
        max_rooms_per_session;
        /// Sets [`Policy::max_members_per_room`].
        max_members_per_room;
        /// Sets [`Policy::max_metadata_bytes`].
        max_metadata_bytes;
    }

    /// Validates and returns the policy.
    ///
    /// # Errors
    ///
    /// - [`Error::PolicyValueTooSmall`] if `active` is under 1 ms or a limit is zero;
    /// - [`Error::ThresholdsNotIncreasing`] unless `active < idle < away < ttl`;
    /// - [`Error::GraceLongerThanTtl`] if a grace exceeds the TTL;
    /// - [`Error::DwellLongerThanTtl`] if the dwell does; [`Error::PolicyValueTooSmall`] if it
    ///   is not zero but under 1 ms.
    pub fn build(self) -> Result<Policy, Error> {
        let mut p = self.policy;
        p.dwell_ms = duration_to_millis(self.dwell);
        if p.active_ms == 0 {
            return Err(Error::PolicyValueTooSmall {
                name: "active",
                min: "1 ms",
            });
        }
        let thresholds = [
            ("active", p.active_ms),
            ("idle", p.idle_ms),
            ("away", p.away_ms),
            ("ttl", p.ttl_ms),
        ];
        for pair in thresholds.windows(2) {
            let [(previous_name, previous), (name, value)] = [pair[0], pair[1]];
            if value <= previous {
                return Err(Error::ThresholdsNotIncreasing {
                    name,
                    value: Duration::from_millis(value),
                    previous_name,
                    previous: Duration::from_millis(previous),
                });
            }
        }
        for (name, grace) in [
            ("disconnect_grace", p.disconnect_grace_ms),
            ("leave_grace", p.leave_grace_ms),
        ] {
            if grace > p.ttl_ms {
                return Err(Error::GraceLongerThanTtl {
                    name,
                    grace: Duration::from_millis(grace),
                    ttl: p.ttl(),
                });
            }
        }
        if p.dwell_ms == 0 && !self.dwell.is_zero() {
            return Err(Error::PolicyValueTooSmall {
                name: "dwell",
                min: "1 ms (or zero for none)",
            });
        }
        if p.dwell_ms > p.ttl_ms {
            return Err(Error::DwellLongerThanTtl {
                dwell: self.dwell,
                ttl: p.ttl(),
            });
        }
        for (name, value) in [
            ("max_sessions_per_user", p.max_sessions_per_user),
            ("max_sessions", p.max_sessions),
            ("max_id_len", p.max_id_len),
            ("max_rooms_per_session", p.max_rooms_per_session),
            ("max_members_per_room", p.max_members_per_room),
        ] {
            if value == 0 {
                return Err(Error::PolicyValueTooSmall { name, min: "1" });
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(Policy::builder().build(), Ok(Policy::default()));
    }

    #[test]
    fn refuses_equal_thresholds() {
        let err = Policy::builder()
            .away(Duration::from_secs(240))
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            Error::ThresholdsNotIncreasing { name: "ttl", .. }
        ));
    }

    #[test]
    fn refuses_grace_over_ttl() {
        let err = Policy::builder()
            .leave_grace(Duration::from_secs(241))
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            Error::GraceLongerThanTtl {
                name: "leave_grace",
                ..
            }
        ));
    }

    #[test]
    fn dwell_is_zero_to_the_ttl() {
        assert_eq!(Policy::default().dwell(), Duration::ZERO);
        let ttl = Policy::default().ttl();
        let held = Policy::builder().dwell(ttl).build().map(|p| p.dwell());
        assert_eq!(held, Ok(ttl));
        let over = Policy::builder()
            .dwell(ttl + Duration::from_millis(1))
            .build();
        assert_eq!(
            over,
            Err(Error::DwellLongerThanTtl {
                dwell: ttl + Duration::from_millis(1),
                ttl
            })
        );
        // Checked against the TTL as built, whatever the order of the setters.
        let shorter = Policy::builder()
            .dwell(Duration::from_secs(200))
            .ttl(Duration::from_secs(190))
            .idle(Duration::from_secs(30))
            .away(Duration::from_secs(60))
            .disconnect_grace(Duration::from_secs(60))
            .build();
        assert!(matches!(shorter, Err(Error::DwellLongerThanTtl { .. })));
        let tiny = Policy::builder().dwell(Duration::from_micros(500)).build();
        assert!(matches!(
            tiny,
            Err(Error::PolicyValueTooSmall { name: "dwell", .. })
        ));
    }

    #[test]
    fn refuses_zero() {
        assert!(Policy::builder().active(Duration::ZERO).build().is_err());
        assert!(Policy::builder()
            .active(Duration::from_micros(10))
            .build()
            .is_err());
        assert!(Policy::builder().max_sessions(0).build().is_err());
    }
}
