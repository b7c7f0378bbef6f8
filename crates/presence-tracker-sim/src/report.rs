//! What one run measured: [`Report`], [`Metrics`], [`Latency`].

use std::time::Duration;

use presence_tracker::Presence;

use super::Candidate;

/// The result of simulating one [`Candidate`] on one [`Scenario`](super::Scenario).
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// What was simulated.
    pub candidate: Candidate,
    /// What it measured: a pure function of the scenario (seed included) and the candidate.
    pub metrics: Metrics,
    /// What the simulation cost: wall-clock time, so it differs between runs.
    pub cost: Cost,
}

impl Report {
    /// Simulated session-hours per wall-clock second: the simulator's throughput.
    pub fn session_hours_per_second(&self) -> f64 {
        self.metrics.session_hours / self.cost.wall.as_secs_f64().max(1e-9)
    }
}

/// The accuracy and noise of presence, measured against the ground truth.
///
/// # Definitions
///
/// The ground truth knows, at every instant, each session's class: *active* (in the
/// foreground, the user interacting), *idle* (in the foreground, untouched), *hidden* (open in
/// a background tab, or on a phone suspended by the OS that will resume) or *gone* (closed,
/// crashed, or suspended for good). A user's class is the highest of its sessions'. The user
/// is *there* when that is active or idle (someone is in front of the app), *open* when it is
/// anything but gone. The presence a perfect tracker would show for each class is its
/// *expected presence*: `active`, `idle`, `away` (what a `background` activity caps at) and
/// `offline`. The tracker's user presence is the one its user events published.
///
/// - **False offline**: time during which the user is there but the tracker shows it
///   `offline`. [`false_offline_share`](Self::false_offline_share) is its share of the time
///   users are there; an *episode* is one uninterrupted stretch of it. Time a user's sessions
///   are all hidden and shown offline is counted apart, in
///   [`hidden_offline_share`](Self::hidden_offline_share): it is mostly phones suspended for
///   minutes that will resume, which no tracker can tell from phones that will not, so it is the
///   price of quick detection rather than an error.
/// - **Flap**: a user event that moves the shown presence *away* from the expected one: a
///   downgrade to below the expected presence (`active → idle` while the user is active, `away
///   → offline` while a phone is only suspended), or an upgrade to above it. Events that lag
///   behind the truth but move toward it (the decay `active → idle → ... → offline` after a
///   departure, a recovery after a false offline) are not flaps, so a tracker that is slow but
///   never wrong scores zero, and every flap is a change the truth did not have.
/// - **Departure**: a user stops being there (its last session gone). Its *detection latency*
///   runs from that instant to the user's event to `offline` (zero if the tracker already
///   showed it offline). Departures after which the user comes back within the scenario's
///   `min_absence_minutes` are not counted (they are [`brief_absences`](Self::brief_absences));
///   when the tracker has not shown a counted departure as offline by the time the user comes
///   back, or the run ends, the latency counts up to then. So every candidate is scored on
///   the same departures, and a shorter TTL can never score a longer latency.
/// - **First sign** of a departure: from that instant to the first user event that shows the
///   user lower than before (zero if already offline): what a viewer sees first. Holding a
///   silent session's presence ([`Candidate::dwell`]) delays it; the detection latency is the
///   measure that counts.
/// - **Noise**: user events per second per thousand users, the broadcast rate. The truth's own
///   class changes at [`truth_changes_per_second_per_1k_users`](Self::truth_changes_per_second_per_1k_users)
///   are the floor a perfect tracker would need.
///
/// Per-hour rates are per hour that users have a session open.
#[derive(Clone, Debug, PartialEq)]
pub struct Metrics {
    /// Users simulated.
    pub users: u32,
    /// Virtual hours simulated.
    pub hours: f64,
    /// Hours users had a session open (there or hidden), summed over users.
    pub open_user_hours: f64,
    /// Hours users were there (active or idle), summed over users.
    pub there_user_hours: f64,
    /// Hours sessions were open (not gone), summed over sessions.
    pub session_hours: f64,
    /// Share of the time users were there that they were shown `offline`, in `[0, 1]`.
    pub false_offline_share: f64,
    /// Share of the time users' sessions were all hidden that they were shown `offline`, in
    /// `[0, 1]`.
    pub hidden_offline_share: f64,
    /// False-offline episodes.
    pub false_offline_episodes: u64,
    /// False-offline episodes per open user-hour.
    pub false_offline_episodes_per_user_hour: f64,
    /// Flaps.
    pub flaps: u64,
    /// Flaps per open user-hour.
    pub flaps_per_user_hour: f64,
    /// Flaps to or from `offline`: a user shown offline while its sessions are open, or shown
    /// online while it is gone. The only flaps a two-state system (present or not) can make,
    /// so the measure to compare with one.
    pub offline_flaps: u64,
    /// Offline flaps per open user-hour.
    pub offline_flaps_per_user_hour: f64,
    /// Flaps by kind (expected presence, change published), most frequent first.
    pub flap_kinds: Vec<FlapKind>,
    /// Flaps by what the user's clients and network were doing when each was published.
    pub flap_sources: FlapSources,
    /// Detection latency of departures.
    pub latency: Latencies,
    /// From a departure to its first sign: the first user event lowering the shown presence.
    pub first_sign: Latency,
    /// Departures not counted because the user came back within `min_absence_minutes` (or the
    /// run ended sooner).
    pub brief_absences: u64,
    /// User events the tracker emitted.
    pub user_events: u64,
    /// Session events the tracker emitted.
    pub session_events: u64,
    /// Changes of the users' ground-truth class.
    pub truth_changes: u64,
    /// User events per second per thousand users.
    pub user_events_per_second_per_1k_users: f64,
    /// Ground-truth class changes per second per thousand users.
    pub truth_changes_per_second_per_1k_users: f64,
    /// Heartbeats clients sent on a live connection.
    pub heartbeats_sent: u64,
    /// Heartbeats that reached the tracker (the others were dropped or hit a partition).
    pub heartbeats_delivered: u64,
    /// Heartbeats that found their session expired while its connection lived, so the server
    /// connected it again (as a handler would on [`Error::UnknownSession`](presence_tracker::Error::UnknownSession)).
    pub reregistrations: u64,
    /// Errors the tracker returned for signals a correct server would send: should be zero.
    pub tracker_errors: u64,
    /// Users with a session open at the end of the run.
    pub open_at_end: u32,
    /// Users the tracker showed not offline at the end of the run.
    pub shown_online_at_end: u32,
}

/// One kind of flap and how often it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlapKind {
    /// The presence the truth called for (see [`Metrics`]).
    pub expected: Presence,
    /// The presence shown before.
    pub from: Presence,
    /// The presence the event showed.
    pub to: Presence,
    /// How many such flaps.
    pub count: u64,
}

/// Flaps by what the simulated world was doing to the user when each was published, checked
/// in this order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlapSources {
    /// A server restart less than three minutes before (reconnections, late disconnects).
    pub restart: u64,
    /// The user's network was down, or came back less than a minute before (reconnecting).
    pub partition: u64,
    /// A phone app of the user was suspended by the OS (hidden, to resume later).
    pub suspended: u64,
    /// The user's open sessions were all hidden browser tabs (timers throttled after a while).
    pub hidden_tab: u64,
    /// None of those: the user was in front of a connected client whose heartbeats were lost
    /// on the way (drops) or came late (timer jitter).
    pub heartbeat: u64,
}

/// Detection latency, split by how the user left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Latencies {
    /// Every counted departure.
    pub all: Latency,
    /// Departures whose sessions all sent a close frame (tab closed, logout).
    pub clean: Latency,
    /// Departures where at least one session vanished without one (crash, lid closed, phone
    /// suspended for good, network gone).
    pub lost: Latency,
}

/// A distribution of detection latencies (nearest-rank percentiles; zeros when `count` is 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// How many departures.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The longest.
    pub max: Duration,
}

impl Latency {
    /// The distribution of `millis` (sorted here).
    pub(crate) fn of(millis: &mut [u64]) -> Latency {
        millis.sort_unstable();
        let n = millis.len();
        if n == 0 {
            return Latency::default();
        }
        let rank = |p: f64| {
            let index = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            Duration::from_millis(millis[index])
        };
        Latency {
            count: n as u64,
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: Duration::from_millis(millis[n - 1]),
        }
    }
}

/// What a run cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    /// Simulation events processed (signals, timers, ticks).
    pub sim_events: u64,
    /// Wall-clock time of the run.
    pub wall: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let l = Latency::of(&mut v);
        assert_eq!(l.count, 100);
        assert_eq!(l.p50, Duration::from_millis(50));
        assert_eq!(l.p95, Duration::from_millis(95));
        assert_eq!(l.p99, Duration::from_millis(99));
        assert_eq!(l.max, Duration::from_millis(100));
        assert_eq!(Latency::of(&mut []), Latency::default());
        let one = Latency::of(&mut [7]);
        assert_eq!(
            (one.p50, one.p99),
            (Duration::from_millis(7), Duration::from_millis(7))
        );
    }
}
