//! [`ClusterConfig`]: where Redis is, the lease, the graces and the bounds.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use presence_tracker::Policy;

use super::{ClusterError, Diagnostic};

/// A callback for [`Diagnostic`]s.
type OnDiagnostic = Arc<dyn Fn(&Diagnostic) + Send + Sync>;

/// How a [`ClusterNode`](super::ClusterNode) joins the cluster. Built from a Redis URL with
/// defaults; [`ClusterNode::start`](super::ClusterNode::start) refuses a configuration that
/// cannot work.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | [`prefix`](Self::prefix) | `pt` | the start of every key and of the channel |
/// | [`lease_ttl`](Self::lease_ttl) | 10 s | a node that has not renewed for this long is dead; renewed every third of it |
/// | [`reap_interval`](Self::reap_interval) | 1 s | how often a node looks for lapsed nodes and due cleanups |
/// | [`disconnect_grace`](Self::disconnect_grace) | 120 s | how long a dead or retired node's sessions stay before they go offline (the policy's `disconnect_grace`) |
/// | [`retention`](Self::retention) | 1 h | how long an offline user's version is kept (the policy's `retention`) |
/// | [`ownership_ttl`](Self::ownership_ttl) | 7 days | how long a session id stays its user's without a claim |
/// | [`response_timeout`](Self::response_timeout) | 2 s | a command unanswered for this long fails (the node degrades) |
/// | [`max_backoff`](Self::max_backoff) | 5 s | the longest wait between retries |
/// | [`require_noeviction`](Self::require_noeviction) | true | refuse to start unless `maxmemory-policy` is `noeviction` |
#[derive(Clone)]
pub struct ClusterConfig {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) lease_ttl: Duration,
    pub(crate) reap_interval: Duration,
    pub(crate) disconnect_grace: Duration,
    pub(crate) retention: Duration,
    pub(crate) ownership_ttl: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) require_noeviction: bool,
    pub(crate) on_diagnostic: Option<OnDiagnostic>,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("lease_ttl", &self.lease_ttl)
            .field("reap_interval", &self.reap_interval)
            .field("disconnect_grace", &self.disconnect_grace)
            .field("retention", &self.retention)
            .field("ownership_ttl", &self.ownership_ttl)
            .field("response_timeout", &self.response_timeout)
            .field("max_backoff", &self.max_backoff)
            .field("require_noeviction", &self.require_noeviction)
            .field("on_diagnostic", &self.on_diagnostic.is_some())
            .finish()
    }
}

impl ClusterConfig {
    /// The defaults, on the Redis at `url` (`redis://host:port/db`).
    pub fn new(url: impl Into<String>) -> Self {
        ClusterConfig {
            url: url.into(),
            prefix: "pt".into(),
            lease_ttl: Duration::from_secs(10),
            reap_interval: Duration::from_secs(1),
            disconnect_grace: Duration::from_secs(120),
            retention: Duration::from_secs(3600),
            ownership_ttl: Duration::from_secs(7 * 24 * 3600),
            response_timeout: Duration::from_secs(2),
            max_backoff: Duration::from_secs(5),
            require_noeviction: true,
            on_diagnostic: None,
        }
    }

    /// The grace and retention of the trackers' policy: a dead node's sessions go as a lost
    /// connection's would.
    pub fn policy(mut self, policy: &Policy) -> Self {
        self.disconnect_grace = policy.disconnect_grace();
        self.retention = policy.retention();
        self
    }

    /// The start of every key and of the channel: letters, digits, `_`, `-` and `.`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a node lives without renewing its lease (at least 100 ms).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How often the node looks for lapsed nodes and due cleanups.
    pub fn reap_interval(mut self, interval: Duration) -> Self {
        self.reap_interval = interval;
        self
    }

    /// How long a dead or retired node's sessions stay before going offline, unless their
    /// clients claim them elsewhere.
    pub fn disconnect_grace(mut self, grace: Duration) -> Self {
        self.disconnect_grace = grace;
        self
    }

    /// How long an offline user's version is kept.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How long a session id stays its user's without a claim (a safety net: a session that
    /// ends releases it at once).
    pub fn ownership_ttl(mut self, ttl: Duration) -> Self {
        self.ownership_ttl = ttl;
        self
    }

    /// How long a command may go unanswered: at most a third of the lease TTL.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The longest wait between retries while Redis fails.
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// Whether to refuse to start unless Redis's `maxmemory-policy` is `noeviction`.
    pub fn require_noeviction(mut self, require: bool) -> Self {
        self.require_noeviction = require;
        self
    }

    /// Called with every [`Diagnostic`], on the node's tasks: keep it short (log it, count it).
    pub fn on_diagnostic(mut self, f: impl Fn(&Diagnostic) + Send + Sync + 'static) -> Self {
        self.on_diagnostic = Some(Arc::new(f));
        self
    }

    /// The bound on how long after a crashed or partitioned node's last renewal its sessions
    /// are offline cluster-wide, unless claimed elsewhere: lease TTL + disconnect grace + two
    /// reap intervals (one to notice the lapse, one to notice the grace ran out).
    pub fn offline_bound(&self) -> Duration {
        self.lease_ttl + self.disconnect_grace + 2 * self.reap_interval
    }

    /// How often the lease is renewed: a third of its TTL.
    pub(crate) fn renew_interval(&self) -> Duration {
        self.lease_ttl / 3
    }

    /// The gap without lease calls after which Redis is taken to have stalled.
    pub(crate) fn stall(&self) -> Duration {
        self.lease_ttl / 2
    }

    pub(crate) fn validate(&self) -> Result<(), ClusterError> {
        let bad = |what: &str| Err(ClusterError::InvalidConfig(what.to_owned()));
        if self.prefix.is_empty()
            || !self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return bad("the prefix must be letters, digits, '_', '-' or '.'");
        }
        if self.lease_ttl < Duration::from_millis(100) {
            return bad("the lease TTL must be at least 100 ms");
        }
        if self.reap_interval.is_zero() || self.reap_interval > self.lease_ttl {
            return bad("the reap interval must be above zero and at most the lease TTL");
        }
        if self.response_timeout.is_zero() || self.max_backoff.is_zero() {
            return bad("the response timeout and the backoff must be above zero");
        }
        if self.response_timeout > self.renew_interval() {
            // Writes wait while the lease may have lapsed before they land.
            return bad("the response timeout must be at most a third of the lease TTL");
        }
        if self.retention.is_zero() || self.ownership_ttl.is_zero() {
            return bad("the retention and the ownership TTL must be above zero");
        }
        Ok(())
    }

    pub(crate) fn diagnose(&self, d: Diagnostic) {
        if let Some(f) = &self.on_diagnostic {
            f(&d);
        }
    }
}

/// Whole milliseconds, saturating, as Redis takes them.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
