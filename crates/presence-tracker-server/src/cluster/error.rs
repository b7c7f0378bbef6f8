//! [`ClusterError`]: what starting, flushing or shutting down a node can fail with.

/// What can go wrong with the cluster layer. Signals never fail because of it: while Redis is
/// unreachable the node serves local presence and reports [`Health::Degraded`](super::Health).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The configuration cannot work.
    #[error("invalid cluster configuration: {0}")]
    InvalidConfig(String),
    /// Redis could not be reached, or refused a command.
    #[error("redis: {0}")]
    Redis(String),
    /// Redis may evict keys: presence would vanish without a transition.
    #[error("redis maxmemory-policy is {policy:?}, not \"noeviction\": set `maxmemory-policy noeviction` (evicted presence keys would be lost silently)")]
    EvictionPolicy {
        /// The policy Redis reported.
        policy: String,
    },
    /// `CONFIG GET maxmemory-policy` was refused (a managed Redis may rename `CONFIG`), so the
    /// eviction policy could not be checked.
    #[error("cannot check redis maxmemory-policy ({0}): make sure it is noeviction and turn the check off with ClusterConfig::require_noeviction(false)")]
    PolicyUnknown(String),
    /// A reply that does not have the shape the scripts return (another program answering on
    /// the port, a script changed under the node).
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    /// The node was shut down.
    #[error("the cluster node has shut down")]
    Closed,
    /// Waiting for the node's writes took longer than the deadline given.
    #[error("pending cluster writes were not done within {0:?}")]
    Timeout(std::time::Duration),
}

impl From<redis::RedisError> for ClusterError {
    fn from(e: redis::RedisError) -> Self {
        ClusterError::Redis(e.to_string())
    }
}
