//! What is being tuned: a [`Candidate`] (tracker thresholds plus client heartbeat intervals) and
//! a [`Grid`] of them.

use std::time::Duration;

use presence_tracker::Policy;

use super::{Peer, ScenarioError};

/// One setting to evaluate: the tracker's thresholds and the intervals at which clients
/// heartbeat. The heartbeat intervals belong here rather than in the [`Scenario`](super::Scenario)
/// because they are the application's choice, like the thresholds, and the two must be tuned
/// together (a heartbeat interval close to the active window makes presence flap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// A name for reports.
    pub name: String,
    /// [`Policy::active`].
    pub active: Duration,
    /// [`Policy::idle`].
    pub idle: Duration,
    /// [`Policy::away`].
    pub away: Duration,
    /// [`Policy::ttl`].
    pub ttl: Duration,
    /// [`Policy::disconnect_grace`].
    pub disconnect_grace: Duration,
    /// [`Policy::leave_grace`].
    pub leave_grace: Duration,
    /// [`Policy::dwell`]: how long a silence must outlast a presence's band before a lower
    /// presence is shown (zero: none).
    pub dwell: Duration,
    /// How often a foreground client heartbeats (active or idle). Clients also heartbeat at
    /// once whenever their activity changes.
    pub heartbeat: Duration,
    /// How often a hidden browser tab heartbeats, before the browser's throttling rounds it up.
    pub background_heartbeat: Duration,
    /// `None` (the default) simulates this crate's tracker with the thresholds above; a peer
    /// simulates a model of that system's documented semantics instead, which ignores the
    /// thresholds (its clients keep the heartbeat intervals above). See [`Candidate::peer`].
    pub peer: Option<Peer>,
}

impl Default for Candidate {
    /// [`Policy::default`] with heartbeats every 10 s in the foreground and every 30 s in the
    /// background.
    fn default() -> Self {
        Candidate::from_policy(
            "default",
            &Policy::default(),
            Duration::from_secs(10),
            Duration::from_secs(30),
        )
    }
}

impl Candidate {
    /// A candidate with a policy's thresholds.
    pub fn from_policy(
        name: impl Into<String>,
        policy: &Policy,
        heartbeat: Duration,
        background_heartbeat: Duration,
    ) -> Self {
        Candidate {
            name: name.into(),
            active: policy.active(),
            idle: policy.idle(),
            away: policy.away(),
            ttl: policy.ttl(),
            disconnect_grace: policy.disconnect_grace(),
            leave_grace: policy.leave_grace(),
            dwell: policy.dwell(),
            heartbeat,
            background_heartbeat,
            peer: None,
        }
    }

    /// A model of a peer, its clients keeping alive at the peer's own intervals
    /// ([`Peer::keepalive`]), named after it. Simulated on the same users as every candidate
    /// (the same scenario and seed give the same arrivals, activity, departures, partitions and
    /// restarts); candidates with equal heartbeat intervals also get the same transport noise,
    /// so the naive server sees exactly the default candidate's traffic.
    ///
    /// # Examples
    ///
    /// ```
    /// use presence_tracker_sim::{run, Candidate, Peer, Scenario};
    ///
    /// let scenario = Scenario::named("office")?.with_users(50).with_hours(2.0);
    /// let phoenix = run(&scenario, &Candidate::peer(Peer::Phoenix))?;
    /// let ours = run(&scenario, &Candidate::default())?;
    /// // The same users were there for the same time.
    /// assert_eq!(phoenix.metrics.there_user_hours, ours.metrics.there_user_hours);
    /// # Ok::<(), presence_tracker_sim::ScenarioError>(())
    /// ```
    pub fn peer(peer: Peer) -> Self {
        let (heartbeat, background_heartbeat) = peer.keepalive();
        Candidate {
            name: peer.name().to_string(),
            heartbeat,
            background_heartbeat,
            peer: Some(peer),
            ..Candidate::default()
        }
    }

    /// The tracker policy (other settings at their defaults).
    ///
    /// # Errors
    ///
    /// [`ScenarioError::Candidate`] if the thresholds do not make a valid policy, or a heartbeat
    /// interval is zero.
    pub fn policy(&self) -> Result<Policy, ScenarioError> {
        let refused = |source| ScenarioError::Candidate {
            name: self.name.clone(),
            source,
        };
        for (name, interval) in [
            ("heartbeat", self.heartbeat),
            ("background_heartbeat", self.background_heartbeat),
        ] {
            if interval < Duration::from_millis(1) {
                return Err(refused(presence_tracker::Error::PolicyValueTooSmall {
                    name,
                    min: "1 ms",
                }));
            }
        }
        Policy::builder()
            .active(self.active)
            .idle(self.idle)
            .away(self.away)
            .ttl(self.ttl)
            .disconnect_grace(self.disconnect_grace)
            .leave_grace(self.leave_grace)
            .dwell(self.dwell)
            .build()
            .map_err(refused)
    }

    /// Whether the thresholds and intervals are those of [`Candidate::default`] (the name is
    /// not compared).
    pub fn is_default(&self) -> bool {
        let default = Candidate::default();
        Candidate {
            name: default.name.clone(),
            ..self.clone()
        } == default
    }

    /// The heartbeat interval as a fraction of the active window.
    pub fn heartbeat_ratio(&self) -> f64 {
        self.heartbeat.as_secs_f64() / self.active.as_secs_f64().max(1e-3)
    }

    /// A compact description of what the grid varies, e.g. `ttl 240s dg 120s lg 5s hb 10s`
    /// (with `dw 30s` when there is a dwell, `dw ttl` when it is the TTL), or for a peer its
    /// name and heartbeat, e.g. `phoenix hb 30s`.
    pub fn label(&self) -> String {
        if let Some(peer) = self.peer {
            return format!("{peer} hb {}", secs(self.heartbeat));
        }
        let mut label = format!(
            "ttl {} dg {} lg {} hb {}",
            secs(self.ttl),
            secs(self.disconnect_grace),
            secs(self.leave_grace),
            secs(self.heartbeat)
        );
        if self.dwell == self.ttl {
            label.push_str(" dw ttl");
        } else if !self.dwell.is_zero() {
            label.push_str(&format!(" dw {}", secs(self.dwell)));
        }
        label
    }
}

/// Seconds, without a trailing `.0`.
pub(crate) fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if (s - s.round()).abs() < 1e-9 {
        format!("{}s", s.round())
    } else {
        format!("{s:.1}s")
    }
}

/// A grid of candidates: every combination of the listed values.
///
/// For each TTL the lower thresholds follow the default ladder scaled to it: `away` is 3/4 of
/// the TTL, `idle` a quarter of it but at most 60 s (the default 15/60/180/240 s at a TTL of
/// 240 s), `active` stays [`Grid::active`]. The disconnect grace is given as a fraction of
/// the TTL, so every combination is a valid policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    /// The active window, the same for every candidate.
    pub active: Duration,
    /// TTLs.
    pub ttl: Vec<Duration>,
    /// Disconnect graces, as fractions of the TTL (at most 1).
    pub disconnect_grace: Vec<f64>,
    /// Leave graces (capped at the TTL).
    pub leave_grace: Vec<Duration>,
    /// Foreground heartbeat intervals.
    pub heartbeat: Vec<Duration>,
    /// Dwells ([`Candidate::dwell`]), each capped at the candidate's TTL (so
    /// [`Duration::MAX`] is the TTL: a silent session shown as it was until offline).
    pub dwell: Vec<Duration>,
    /// The background heartbeat interval, the same for every candidate.
    pub background_heartbeat: Duration,
}

impl Default for Grid {
    /// TTL 90, 120, 240 or 480 s; disconnect grace 1/4, 1/2 or all of it; leave grace 5 s;
    /// heartbeat every 5, 10 or 14 s (1/3, 2/3 and 14/15 of the 15 s active window); no
    /// dwell: 36 candidates, [`Candidate::default`] among them.
    fn default() -> Self {
        Grid {
            active: Duration::from_secs(15),
            ttl: [90, 120, 240, 480].map(Duration::from_secs).to_vec(),
            disconnect_grace: vec![0.25, 0.5, 1.0],
            leave_grace: vec![Duration::from_secs(5)],
            heartbeat: [5, 10, 14].map(Duration::from_secs).to_vec(),
            dwell: vec![Duration::ZERO],
            background_heartbeat: Duration::from_secs(30),
        }
    }
}

impl Grid {
    /// [`Grid::default`] with the leave grace varied too (1, 5 or 15 s), which matters when
    /// pages reload: 108 candidates.
    pub fn full() -> Self {
        Grid {
            leave_grace: [1, 5, 15].map(Duration::from_secs).to_vec(),
            ..Grid::default()
        }
    }

    /// The hysteresis study's grid: TTL 120, 240 or 480 s; disconnect grace 1/4, 1/2 or all
    /// of it; leave grace 5 s; heartbeat every 5 or 10 s; dwell none, 15 s, 45 s or the TTL:
    /// 72 candidates, [`Candidate::default`] among them. (The 14 s heartbeat and the 90 s TTL
    /// of [`Grid::default`] are left out: they lose on every scenario.)
    pub fn hysteresis() -> Self {
        Grid {
            ttl: [120, 240, 480].map(Duration::from_secs).to_vec(),
            heartbeat: [5, 10].map(Duration::from_secs).to_vec(),
            dwell: vec![
                Duration::ZERO,
                Duration::from_secs(15),
                Duration::from_secs(45),
                Duration::MAX,
            ],
            ..Grid::default()
        }
    }

    /// Every combination, in a stable order (TTL outermost, then grace, leave grace, dwell,
    /// heartbeat innermost). Each is named by its [`label`](Candidate::label), or `default`
    /// if it is the default.
    pub fn candidates(&self) -> Vec<Candidate> {
        let mut out = Vec::new();
        for &ttl in &self.ttl {
            let (idle, away) = ladder(self.active, ttl);
            for &fraction in &self.disconnect_grace {
                let disconnect_grace = ttl.mul_f64(fraction.clamp(0.0, 1.0));
                for &leave_grace in &self.leave_grace {
                    for &dwell in &self.dwell {
                        for &heartbeat in &self.heartbeat {
                            let mut candidate = Candidate {
                                name: String::new(),
                                active: self.active,
                                idle,
                                away,
                                ttl,
                                disconnect_grace: Duration::from_millis(
                                    disconnect_grace.as_millis() as u64,
                                ),
                                leave_grace: leave_grace.min(ttl),
                                dwell: dwell.min(ttl),
                                heartbeat,
                                background_heartbeat: self.background_heartbeat,
                                peer: None,
                            };
                            candidate.name = if candidate.is_default() {
                                "default".to_string()
                            } else {
                                candidate.label()
                            };
                            out.push(candidate);
                        }
                    }
                }
            }
        }
        out
    }
}

/// `idle` and `away` for a TTL: the default ladder's proportions, `idle` at most 60 s and always
/// between `active` and `away`.
fn ladder(active: Duration, ttl: Duration) -> (Duration, Duration) {
    let ms = |d: Duration| d.as_millis() as u64;
    let away = ms(ttl) * 3 / 4;
    let mut idle = (ms(ttl) / 4).min(60_000);
    if idle <= ms(active) {
        idle = (ms(active) + away) / 2;
    }
    (Duration::from_millis(idle), Duration::from_millis(away))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_grid_is_valid_and_holds_the_default() {
        assert_eq!(Grid::default().candidates().len(), 36);
        let candidates = Grid::full().candidates();
        assert_eq!(candidates.len(), 108);
        for candidate in &candidates {
            assert!(candidate.policy().is_ok(), "{candidate:?}");
        }
        assert_eq!(candidates.iter().filter(|c| c.is_default()).count(), 1);
        let hysteresis = Grid::hysteresis().candidates();
        assert_eq!(hysteresis.len(), 72);
        assert!(hysteresis.iter().all(|c| c.policy().is_ok()));
        assert_eq!(hysteresis.iter().filter(|c| c.is_default()).count(), 1);
        assert!(hysteresis.iter().any(|c| c.dwell == c.ttl));
        assert_eq!(
            Grid::default()
                .candidates()
                .iter()
                .filter(|c| c.is_default())
                .count(),
            1
        );
    }

    #[test]
    fn default_candidate_is_the_default_policy() {
        assert_eq!(Candidate::default().policy(), Ok(Policy::default()));
        let zero = Candidate {
            heartbeat: Duration::ZERO,
            ..Candidate::default()
        };
        assert!(zero.policy().is_err());
    }
}
