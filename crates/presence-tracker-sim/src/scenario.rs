//! Traffic descriptions: who the clients are, how they behave, and what goes wrong around them.
//!
//! Every type here is plain data with public fields, serde support and a `Default`, so a
//! scenario can be written in JSON (see [`Scenario::from_json`](super::Scenario::from_json)) or
//! built in code from the presets and the `with_*` methods.

use serde::{Deserialize, Serialize};

use super::ScenarioError;

/// A range of values drawn **log-uniformly** (every factor of two inside it equally likely), or
/// exactly `lo` when `lo == hi`. Log-uniform suits durations that span orders of magnitude
/// ("a few seconds to a few minutes"). When `lo` is 0 the draw is uniform instead.
///
/// In JSON a span is a two-element array: `[lo, hi]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "[f64; 2]", into = "[f64; 2]")]
pub struct Span {
    /// The smallest value.
    pub lo: f64,
    /// The largest value.
    pub hi: f64,
}

impl Span {
    /// The range `lo..=hi`.
    pub const fn new(lo: f64, hi: f64) -> Self {
        Span { lo, hi }
    }

    /// Always `value`.
    pub const fn fixed(value: f64) -> Self {
        Span {
            lo: value,
            hi: value,
        }
    }

    /// The mean of the distribution described above.
    pub fn mean(&self) -> f64 {
        if self.hi <= self.lo {
            self.lo
        } else if self.lo <= 0.0 {
            (self.lo + self.hi) / 2.0
        } else {
            (self.hi - self.lo) / (self.hi / self.lo).ln()
        }
    }

    /// Maps a uniform `u` in `[0, 1)` to a value of the span.
    pub(crate) fn at(&self, u: f64) -> f64 {
        if self.hi <= self.lo {
            self.lo
        } else if self.lo <= 0.0 {
            self.lo + (self.hi - self.lo) * u
        } else {
            (self.lo.ln() + u * (self.hi / self.lo).ln()).exp()
        }
    }

    fn check(&self, what: &str) -> Result<(), ScenarioError> {
        if !(self.lo.is_finite() && self.hi.is_finite() && self.lo >= 0.0 && self.lo <= self.hi) {
            return Err(ScenarioError::Invalid(format!(
                "{what} must be [lo, hi] with 0 <= lo <= hi, got [{}, {}]",
                self.lo, self.hi
            )));
        }
        Ok(())
    }
}

impl From<[f64; 2]> for Span {
    fn from([lo, hi]: [f64; 2]) -> Self {
        Span { lo, hi }
    }
}

impl From<Span> for [f64; 2] {
    fn from(span: Span) -> Self {
        [span.lo, span.hi]
    }
}

/// What kind of client a population runs: it decides what "hidden" does to the connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Client {
    /// A browser tab. Hidden, it stays connected and keeps heartbeating `background`, but the
    /// browser throttles its timers (see [`Population::throttle_after_minutes`]).
    #[default]
    Browser,
    /// A phone app. Hidden, the OS suspends it: no heartbeats, no close frame; the server
    /// notices the dead connection after the ping timeout, and the app reconnects (a new
    /// connection id, the same session) when it resumes.
    Mobile,
}

/// The network between one population's clients and the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    /// Probability that one heartbeat is lost.
    pub drop: f64,
    /// Partitions (nothing gets through, no close frame) per user per hour, a Poisson process.
    pub partitions_per_hour: f64,
    /// How long a partition lasts, in seconds.
    pub partition_seconds: Span,
    /// How long the server takes to notice a connection that went silent, in seconds. With
    /// Socket.IO's defaults the next ping comes within 25 s and the pong is awaited 20 s: 20 to
    /// 45 s. A partition that ends sooner does not break the connection.
    pub ping_timeout_seconds: Span,
    /// How long a client waits before reconnecting once it can (Socket.IO's backoff).
    pub reconnect_seconds: Span,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            drop: 0.0,
            partitions_per_hour: 0.0,
            partition_seconds: Span::new(2.0, 60.0),
            ping_timeout_seconds: Span::new(20.0, 45.0),
            reconnect_seconds: Span::new(0.5, 5.0),
        }
    }
}

/// One kind of user: its clients, habits and network. A scenario mixes several by share.
///
/// A user alternates between *visits* (its sessions are open) and *gaps* (nothing open). During
/// a visit one session is *focused* and cycles through active, idle and hidden phases; the
/// other tabs of the visit stay hidden in the background. A visit ends with a close frame
/// (the tab or app closed, with probability [`close_frame`](Self::close_frame)) or without one
/// (a crash, a closed laptop lid, a phone suspended for good).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Population {
    /// A name for reports.
    pub name: String,
    /// This population's weight among the scenario's populations (normalised).
    pub share: f64,
    /// Browser tabs or phone apps.
    pub client: Client,
    /// Sessions per visit, `[min, max]`, uniform: the focused one plus background tabs.
    pub tabs: [u32; 2],
    /// How long a visit lasts, in minutes.
    pub visit_minutes: Span,
    /// How long a user stays away between visits, in minutes.
    pub gap_minutes: Span,
    /// How long the focused session stays active (the user interacting), in minutes.
    pub active_minutes: Span,
    /// How long it stays idle (in the foreground, untouched), in minutes.
    pub idle_minutes: Span,
    /// How long it stays hidden (another tab or app in front, the phone locked), in minutes.
    pub hidden_minutes: Span,
    /// Share of active phases that end with the session hidden rather than idle.
    pub hide_share: f64,
    /// Page reloads of the focused session per hour while it is in the foreground: a clean
    /// close, then the same session reconnects.
    pub reloads_per_hour: f64,
    /// How long a reload takes, in seconds.
    pub reload_seconds: Span,
    /// Probability that a visit ends with a close frame (a clean disconnect).
    pub close_frame: f64,
    /// Mobile: probability that the app manages to send a `background` heartbeat before the OS
    /// suspends it.
    pub background_signal: f64,
    /// Timer jitter: each heartbeat interval is scaled by a uniform factor in
    /// `[1 - jitter, 1 + jitter]`.
    pub jitter: f64,
    /// Browser: minutes hidden after which the browser throttles the tab's timers.
    pub throttle_after_minutes: f64,
    /// Browser: once throttled, timers fire at most this often (Chrome: once a minute), so a
    /// hidden tab's heartbeat interval is rounded up to a multiple of it, and so is its delay
    /// before reconnecting.
    pub throttle_seconds: f64,
    /// The network.
    pub network: Network,
}

impl Default for Population {
    fn default() -> Self {
        Population {
            name: "custom".to_string(),
            share: 1.0,
            client: Client::Browser,
            tabs: [1, 1],
            visit_minutes: Span::new(30.0, 240.0),
            gap_minutes: Span::new(30.0, 600.0),
            active_minutes: Span::new(1.0, 20.0),
            idle_minutes: Span::new(1.0, 10.0),
            hidden_minutes: Span::new(1.0, 20.0),
            hide_share: 0.3,
            reloads_per_hour: 0.0,
            reload_seconds: Span::new(0.3, 3.0),
            close_frame: 0.8,
            background_signal: 0.5,
            jitter: 0.1,
            throttle_after_minutes: 5.0,
            throttle_seconds: 60.0,
            network: Network::default(),
        }
    }
}

impl Population {
    /// Sets the share.
    pub fn with_share(mut self, share: f64) -> Self {
        self.share = share;
        self
    }

    /// Sets the network.
    pub fn with_network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Sets the name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ScenarioError> {
        let name = &self.name;
        let fail = |what: String| Err(ScenarioError::Invalid(format!("population {name}: {what}")));
        if !(self.share.is_finite() && self.share > 0.0) {
            return fail(format!("share must be > 0, got {}", self.share));
        }
        let [lo, hi] = self.tabs;
        if !(1..=16).contains(&lo) || hi < lo || hi > 16 {
            return fail(format!(
                "tabs must be [min, max] with 1 <= min <= max <= 16, got [{lo}, {hi}]"
            ));
        }
        for (what, p) in [
            ("hide_share", self.hide_share),
            ("close_frame", self.close_frame),
            ("background_signal", self.background_signal),
            ("network.drop", self.network.drop),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return fail(format!("{what} must be a probability in [0, 1], got {p}"));
            }
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return fail(format!("jitter must be in [0, 1), got {}", self.jitter));
        }
        for (what, v) in [
            ("reloads_per_hour", self.reloads_per_hour),
            ("throttle_after_minutes", self.throttle_after_minutes),
            (
                "network.partitions_per_hour",
                self.network.partitions_per_hour,
            ),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return fail(format!("{what} must be >= 0, got {v}"));
            }
        }
        if !(self.throttle_seconds.is_finite() && self.throttle_seconds > 0.0) {
            return fail(format!(
                "throttle_seconds must be > 0, got {}",
                self.throttle_seconds
            ));
        }
        if self.network.ping_timeout_seconds.lo <= 0.0 {
            return fail("network.ping_timeout_seconds must be above 0".to_string());
        }
        for (what, span) in [
            ("visit_minutes", self.visit_minutes),
            ("gap_minutes", self.gap_minutes),
            ("active_minutes", self.active_minutes),
            ("idle_minutes", self.idle_minutes),
            ("hidden_minutes", self.hidden_minutes),
            ("reload_seconds", self.reload_seconds),
            ("network.partition_seconds", self.network.partition_seconds),
            ("network.reconnect_seconds", self.network.reconnect_seconds),
            (
                "network.ping_timeout_seconds",
                self.network.ping_timeout_seconds,
            ),
        ] {
            span.check(&format!("population {name}: {what}"))?;
        }
        for (what, span) in [
            ("visit_minutes", self.visit_minutes),
            ("gap_minutes", self.gap_minutes),
            ("active_minutes", self.active_minutes),
            ("idle_minutes", self.idle_minutes),
            ("hidden_minutes", self.hidden_minutes),
        ] {
            if span.hi <= 0.0 {
                return fail(format!("{what} must not be all zero"));
            }
        }
        Ok(())
    }
}

/// A server restart: every connection drops at once, every client reconnects within a few
/// seconds with a new connection id, and the old connections' disconnects reach the tracker
/// late, often after the new connect (a reconnect storm). The tracker's state survives (it runs
/// elsewhere, or was restored from a snapshot).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Restart {
    /// When, in minutes from the start.
    pub at_minutes: f64,
    /// Repeat every this many minutes; 0 for once.
    pub repeat_minutes: f64,
    /// Clients reconnect uniformly within this many seconds (throttled hidden tabs take up to
    /// their throttle interval).
    pub spread_seconds: f64,
    /// Old connections' lost disconnects arrive uniformly within this many seconds.
    pub late_disconnect_seconds: f64,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            at_minutes: 60.0,
            repeat_minutes: 0.0,
            spread_seconds: 5.0,
            late_disconnect_seconds: 30.0,
        }
    }
}

/// Everyone leaves at once, for good: every open visit ends at the same moment and nobody comes
/// back. A sanity check more than traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Exodus {
    /// When, in minutes from the start.
    pub at_minutes: f64,
    /// Whether the clients send close frames (a clean disconnect) or just vanish.
    pub close_frame: bool,
}

impl Default for Exodus {
    fn default() -> Self {
        Exodus {
            at_minutes: 60.0,
            close_frame: false,
        }
    }
}

/// When the simulated server calls [`tick`](presence_tracker::PresenceTracker::tick).
///
/// In JSON: `"deadline"` or `{"every_ms": 1000}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ticking {
    /// At [`next_deadline`](presence_tracker::PresenceTracker::next_deadline), as a server that sleeps
    /// until then would.
    Deadline,
    /// At a fixed interval, in milliseconds.
    EveryMs(u64),
}

impl Default for Ticking {
    fn default() -> Self {
        Ticking::EveryMs(1000)
    }
}

/// A complete traffic description: the populations, how many users, how long, what happens to
/// the server, and the seed.
///
/// # Examples
///
/// ```
/// use presence_tracker_sim::{Network, Population, Restart, Scenario};
///
/// let scenario = Scenario::new("my-traffic")
///     .with_users(200)
///     .with_hours(2.0)
///     .with_population(Population::preset("desk")?.with_share(0.7))
///     .with_population(Population::preset("phone")?.with_share(0.3).with_network(Network {
///         drop: 0.05,
///         ..Network::default()
///     }))
///     .with_restart(Restart { at_minutes: 30.0, ..Restart::default() });
/// assert!(scenario.validate().is_ok());
/// # Ok::<(), presence_tracker_sim::ScenarioError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// A name for reports.
    pub name: String,
    /// How many users.
    pub users: u32,
    /// How many hours of virtual time.
    pub hours: f64,
    /// The seed: the same seed, scenario and candidate give the same report.
    pub seed: u64,
    /// The populations, mixed by share; users are assigned in proportion.
    pub populations: Vec<Population>,
    /// Server restarts.
    pub restarts: Vec<Restart>,
    /// An optional mass departure.
    pub exodus: Option<Exodus>,
    /// When the server ticks.
    pub ticking: Ticking,
    /// A user's departure counts toward detection latency only if the user stays away at
    /// least this many minutes (or until the end of the run, if that is at least as long).
    /// Shorter absences are counted as brief absences instead.
    pub min_absence_minutes: f64,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "custom".to_string(),
            users: 1000,
            hours: 24.0,
            seed: 1,
            populations: Vec::new(),
            restarts: Vec::new(),
            exodus: None,
            ticking: Ticking::default(),
            min_absence_minutes: 10.0,
        }
    }
}

impl Scenario {
    /// An empty scenario with the default size (1000 users, 24 hours, seed 1); add populations.
    pub fn new(name: impl Into<String>) -> Self {
        Scenario {
            name: name.into(),
            ..Scenario::default()
        }
    }

    /// Sets the number of users.
    pub fn with_users(mut self, users: u32) -> Self {
        self.users = users;
        self
    }

    /// Sets the virtual duration in hours.
    pub fn with_hours(mut self, hours: f64) -> Self {
        self.hours = hours;
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Adds a population.
    pub fn with_population(mut self, population: Population) -> Self {
        self.populations.push(population);
        self
    }

    /// Adds a server restart.
    pub fn with_restart(mut self, restart: Restart) -> Self {
        self.restarts.push(restart);
        self
    }

    /// Sets a mass departure.
    pub fn with_exodus(mut self, exodus: Exodus) -> Self {
        self.exodus = Some(exodus);
        self
    }

    /// Sets when the server ticks.
    pub fn with_ticking(mut self, ticking: Ticking) -> Self {
        self.ticking = ticking;
        self
    }

    /// Checks that the scenario can run.
    ///
    /// # Errors
    ///
    /// [`ScenarioError::Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let fail = |what: String| {
            Err(ScenarioError::Invalid(format!(
                "scenario {}: {what}",
                self.name
            )))
        };
        if self.users == 0 || self.users > 10_000_000 {
            return fail(format!("users must be in 1..=10000000, got {}", self.users));
        }
        if !(self.hours.is_finite() && self.hours > 0.0 && self.hours <= 24.0 * 366.0) {
            return fail(format!("hours must be in (0, 8784], got {}", self.hours));
        }
        if self.populations.is_empty() {
            return fail("has no populations".to_string());
        }
        if !(self.min_absence_minutes.is_finite() && self.min_absence_minutes >= 0.0) {
            return fail(format!(
                "min_absence_minutes must be >= 0, got {}",
                self.min_absence_minutes
            ));
        }
        if self.ticking == Ticking::EveryMs(0) {
            return fail("ticking every_ms must be at least 1".to_string());
        }
        for population in &self.populations {
            population.validate()?;
        }
        for restart in &self.restarts {
            for (what, v) in [
                ("at_minutes", restart.at_minutes),
                ("repeat_minutes", restart.repeat_minutes),
                ("spread_seconds", restart.spread_seconds),
                ("late_disconnect_seconds", restart.late_disconnect_seconds),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return fail(format!("restart {what} must be >= 0, got {v}"));
                }
            }
            if restart.repeat_minutes > 0.0 && restart.repeat_minutes < 1.0 {
                return fail("restart repeat_minutes must be 0 (once) or at least 1".to_string());
            }
        }
        if let Some(exodus) = &self.exodus {
            if !(exodus.at_minutes.is_finite() && exodus.at_minutes >= 0.0) {
                return fail(format!(
                    "exodus at_minutes must be >= 0, got {}",
                    exodus.at_minutes
                ));
            }
        }
        Ok(())
    }
}
