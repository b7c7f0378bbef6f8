//! Time: [`Timestamp`], the [`Clock`] trait, [`SystemClock`], [`CoarseClock`] and [`ManualClock`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// An instant on a clock's monotonic timeline, in milliseconds since the Unix epoch.
///
/// The timeline is anchored to wall-clock time once, when the clock is made, and from then on
/// moves only forward: [`SystemClock`] adds [`Instant`] elapsed time to the wall time it read at
/// construction. So a `Timestamp` is at once a monotonic instant (for ages, TTLs and deadlines)
/// and a wall-clock time (for "last seen at", snapshots and the wire), and one taken before a
/// restart stays meaningful after it.
///
/// All arithmetic saturates; none panics. On the wire it is a plain integer of milliseconds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch, the earliest representable instant.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The latest instant a tracker accepts: 2^61 − 3 ms after the epoch, some 73 million years
    /// from now, just below where the tracker's stored times saturate.
    ///
    /// A signal at a later time (from the clock or an `*_at` argument) is refused with
    /// [`Error::TimeOutOfRange`](crate::Error::TimeOutOfRange) and changes nothing; reads and
    /// ticks at a later time take it as this one: past it, the tracker's time stands still.
    /// `Timestamp` arithmetic itself goes on to `u64::MAX` milliseconds.
    pub const MAX: Timestamp = Timestamp((1 << 61) - 3);

    /// The instant `ms` milliseconds after the Unix epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The instant of a wall-clock time; times before the epoch saturate to [`Timestamp::EPOCH`].
    pub fn from_system_time(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(since) => Timestamp(duration_to_millis(since)),
            Err(_) => Timestamp::EPOCH,
        }
    }

    /// This instant as a wall-clock time.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// `self + d`, saturating at the largest representable instant.
    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(duration_to_millis(d)))
    }

    /// `self - d`, saturating at [`Timestamp::EPOCH`].
    pub fn saturating_sub(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_sub(duration_to_millis(d)))
    }

    /// How long after `earlier` this instant is; zero if it is not after it.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;

    /// Saturating, as [`Timestamp::saturating_add`].
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;

    /// Saturating, as [`Timestamp::saturating_sub`].
    fn sub(self, d: Duration) -> Timestamp {
        self.saturating_sub(d)
    }
}

impl std::ops::AddAssign<Duration> for Timestamp {
    fn add_assign(&mut self, d: Duration) {
        *self = self.saturating_add(d);
    }
}

/// As a UTC time in RFC 3339 form with milliseconds: `2026-11-29T00:36:09.123Z`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 % 1000;
        let secs = self.0 / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Whole milliseconds in `d`, saturating at `u64::MAX`.
pub(crate) fn duration_to_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A source of [`Timestamp`]s.
///
/// `now` must not go backwards. If it does anyway (a misbehaving implementation, or a test that
/// sets a [`ManualClock`] back), the tracker treats time as standing still until the clock
/// catches up again: nothing rises, nothing panics.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// The default clock: monotonic time from [`Instant`], anchored to [`SystemTime`] when made.
///
/// Reading it costs one `Instant::now()` (about 30 ns on a virtual machine). A server that
/// records many signals a second can read it once per refresh instead, through a
/// [`CoarseClock`].
///
/// # Examples
///
/// ```
/// use presence_tracker::{Clock, SystemClock};
///
/// let clock = SystemClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    anchor_wall: Timestamp,
    anchor: Instant,
}

impl SystemClock {
    /// A clock anchored to the current wall-clock time.
    pub fn new() -> Self {
        SystemClock {
            anchor_wall: Timestamp::from_system_time(SystemTime::now()),
            anchor: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        self.anchor_wall.saturating_add(self.anchor.elapsed())
    }
}

/// A [`SystemClock`] (or another clock) read once per [`refresh`](CoarseClock::refresh): reading it costs one atomic
/// load, not a clock read, for servers that make millions of calls a second and can live with
/// the time as of the last refresh.
///
/// Clones share one time: give one clone to the tracker and refresh another every few
/// milliseconds from a task of your own (the crate owns no thread), for instance the one that
/// calls [`tick`](crate::PresenceTracker::tick), on an interval much shorter than the policy's
/// thresholds. The time stands still between refreshes, so every signal's `last_seen` is up to
/// one refresh period early, and a clock never refreshed never moves: nothing would age.
///
/// # Examples
///
/// ```
/// use presence_tracker::{Activity, Clock, CoarseClock, Policy, PresenceTracker};
///
/// let clock = CoarseClock::new();
/// let tracker: PresenceTracker<u64, u64, _> =
///     PresenceTracker::with_clock(Policy::default(), clock.clone());
/// // In the server's interval task, every 10 ms or so:
/// let now = clock.refresh();
/// let _ = tracker.connect(7, 1, "socket-a", Activity::Active)?;
/// assert_eq!(tracker.session(&1).map(|s| s.last_seen), Some(now));
/// # Ok::<(), presence_tracker::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct CoarseClock<C = SystemClock> {
    source: C,
    now: Arc<AtomicU64>,
}

impl CoarseClock<SystemClock> {
    /// A clock at the [`SystemClock`]'s current time.
    pub fn new() -> Self {
        CoarseClock::with_source(SystemClock::new())
    }
}

impl<C: Clock> CoarseClock<C> {
    /// A clock that reads `source` on each refresh, at `source`'s current time.
    pub fn with_source(source: C) -> Self {
        CoarseClock {
            now: Arc::new(AtomicU64::new(source.now().0)),
            source,
        }
    }

    /// Reads the source clock and makes that the time of this clock and its clones; returns
    /// it. Never moves the time back, even if two refreshes race or the source goes back.
    pub fn refresh(&self) -> Timestamp {
        let t = self.source.now().0;
        Timestamp(self.now.fetch_max(t, Ordering::Relaxed).max(t))
    }

    /// The time as of the last refresh.
    pub fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::Relaxed))
    }
}

impl Default for CoarseClock<SystemClock> {
    fn default() -> Self {
        CoarseClock::new()
    }
}

impl<C: Clock> Clock for CoarseClock<C> {
    fn now(&self) -> Timestamp {
        CoarseClock::now(self)
    }
}

/// A clock that moves only when told to: for tests and simulations in virtual time.
///
/// Clones share one time, so a test keeps a clone and advances the tracker's clock through it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use presence_tracker::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let handle = clock.clone();
/// let start = clock.now();
/// handle.advance(Duration::from_secs(5));
/// assert_eq!(clock.now().saturating_duration_since(start), Duration::from_secs(5));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// 2026-01-01T00:00:00Z, where [`ManualClock::new`] starts.
    pub const DEFAULT_START: Timestamp = Timestamp(1_767_225_600_000);

    /// A clock standing at [`ManualClock::DEFAULT_START`].
    pub fn new() -> Self {
        ManualClock::starting_at(Self::DEFAULT_START)
    }

    /// A clock standing at `start`.
    pub fn starting_at(start: Timestamp) -> Self {
        ManualClock {
            now: Arc::new(AtomicU64::new(start.0)),
        }
    }

    /// Moves time forward by `d` (at millisecond resolution, saturating).
    pub fn advance(&self, d: Duration) {
        let ms = duration_to_millis(d);
        // fetch_update with a closure that always returns Some cannot fail.
        let _ = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ms))
            });
    }

    /// Sets the time, even backwards: that is how tests model a misbehaving clock.
    pub fn set(&self, t: Timestamp) {
        self.now.store(t.0, Ordering::SeqCst);
    }

    /// The current instant.
    pub fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::SeqCst))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        ManualClock::now(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_millis(10);
        assert_eq!(t.saturating_sub(Duration::from_secs(1)), Timestamp::EPOCH);
        assert_eq!(
            Timestamp::from_millis(u64::MAX).saturating_add(Duration::from_secs(1)),
            Timestamp::from_millis(u64::MAX)
        );
        assert_eq!(
            t.saturating_duration_since(Timestamp::from_millis(20)),
            Duration::ZERO
        );
        assert_eq!(
            Timestamp::from_millis(u64::MAX).saturating_add(Duration::MAX),
            Timestamp::from_millis(u64::MAX)
        );
    }

    #[test]
    fn display_is_rfc3339_utc() {
        assert_eq!(Timestamp::EPOCH.to_string(), "1970-01-01T00:00:00.000Z");
        // 2026-11-29T00:36:09.123Z, checked against `date -u -d @1795912569`.
        assert_eq!(
            Timestamp::from_millis(1_795_912_569_123).to_string(),
            "2026-11-29T00:36:09.123Z"
        );
        assert_eq!(
            Timestamp::from_millis(951_782_400_000).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn operators_saturate() {
        let t = Timestamp::from_millis(1000);
        assert_eq!(t + Duration::from_millis(5), Timestamp::from_millis(1005));
        assert_eq!(t - Duration::from_secs(5), Timestamp::EPOCH);
        assert_eq!(
            Timestamp::from_millis(u64::MAX) + Duration::from_secs(1),
            Timestamp::from_millis(u64::MAX)
        );
    }

    #[test]
    fn wall_round_trip() {
        let t = Timestamp::from_millis(1_700_000_000_123);
        assert_eq!(Timestamp::from_system_time(t.to_system_time()), t);
    }

    #[test]
    fn system_clock_is_near_wall_time() {
        let clock = SystemClock::new();
        let wall = Timestamp::from_system_time(SystemTime::now());
        let diff = clock.now().as_millis().abs_diff(wall.as_millis());
        assert!(diff < 1_000, "{diff} ms apart");
    }

    #[test]
    fn coarse_clock_moves_only_on_refresh_and_never_back() {
        let source = ManualClock::starting_at(Timestamp::from_millis(1000));
        let clock = CoarseClock::with_source(source.clone());
        let other = clock.clone();
        source.advance(Duration::from_millis(250));
        assert_eq!(clock.now(), Timestamp::from_millis(1000), "stands still");
        assert_eq!(other.refresh(), Timestamp::from_millis(1250));
        assert_eq!(clock.now(), Timestamp::from_millis(1250), "clones share it");
        source.set(Timestamp::from_millis(10));
        assert_eq!(clock.refresh(), Timestamp::from_millis(1250), "never back");
        assert_eq!(other.now(), Timestamp::from_millis(1250));
    }

    #[test]
    fn coarse_system_clock_starts_near_wall_time() {
        let clock = CoarseClock::new();
        let wall = Timestamp::from_system_time(SystemTime::now());
        assert!(clock.now().as_millis().abs_diff(wall.as_millis()) < 1_000);
        let before = clock.now();
        assert!(clock.refresh() >= before);
    }

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::starting_at(Timestamp::from_millis(1000));
        let b = a.clone();
        b.advance(Duration::from_millis(500));
        assert_eq!(a.now(), Timestamp::from_millis(1500));
        b.set(Timestamp::from_millis(10));
        assert_eq!(a.now(), Timestamp::from_millis(10));
    }
}
