//! [`ScenarioError`]: what can be wrong with a scenario or a candidate.

/// A scenario or candidate that cannot run. Nothing is simulated when one is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The JSON text does not parse, or does not describe a scenario (an unknown field, a
    /// value of the wrong type).
    #[error("invalid scenario json: {0}")]
    Json(String),
    /// [`Scenario::named`](super::Scenario::named) does not know the name.
    #[error("unknown scenario {0:?}, expected one of office, mobile, flaky-network, restart-storm, mixed")]
    UnknownScenario(String),
    /// [`Population::preset`](super::Population::preset) does not know the name.
    #[error("unknown population preset {0:?}, expected one of desk, phone, flaky, steady")]
    UnknownPreset(String),
    /// A value is out of range; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// A candidate's thresholds do not make a valid [`Policy`](presence_tracker::Policy).
    #[error("candidate {name}: {source}")]
    Candidate {
        /// The candidate's name.
        name: String,
        /// Why the policy was refused.
        source: presence_tracker::Error,
    },
}
