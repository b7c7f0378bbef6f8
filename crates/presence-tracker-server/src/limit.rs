//! [`RateLimit`]: how fast one connection may send, and the token bucket that counts it.

use std::time::Duration;

use presence_tracker::Timestamp;

/// How fast one connection may send messages after its hello: a token bucket of `burst`
/// messages, refilled at `per_second`.
///
/// Every message counts, whatever it is and whether it is understood: heartbeats (activity
/// flips included), joins, leaves, updates, watches, resyncs and malformed ones. A message over
/// the rate changes nothing. The first one is answered with a refusal `rate_limited` whose
/// `retry_after_ms` says when a message will be taken again; those after it, until one is taken,
/// are dropped without an answer (a flood is not answered with a flood). A connection that
/// sends more than ten times its rate over it within a second is closed (WebSocket: code 1008;
/// Socket.IO: disconnected), since no client of the protocol does.
///
/// The default, 20 messages a second with bursts of 40, is more than the shipped browser
/// client sends (a heartbeat every 5 s, one per activity change, joins of a few rooms at once)
/// and more than a client that moves a cursor through room metadata can have taken (the
/// policy's metadata interval, 50 ms by default, refuses updates of a room more often than 20 a
/// second). Time is the hub's clock, so a test moves it with a manual clock.
///
/// # Examples
///
/// ```
/// use presence_tracker_server::{HubConfig, RateLimit};
///
/// // A collaborative editor whose clients update metadata in several rooms at once.
/// let config = HubConfig::default().client_rate(Some(RateLimit::new(60, 120)));
/// assert_eq!(config.client_rate, Some(RateLimit::new(60, 120)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Messages a second, on average (at least 1).
    pub per_second: u32,
    /// Messages at once, after a quiet spell (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// `per_second` on average, up to `burst` at once; zero for either is taken as 1 (a limit
    /// that takes nothing would be a configuration mistake, not a limit).
    pub const fn new(per_second: u32, burst: u32) -> Self {
        RateLimit {
            per_second: if per_second == 0 { 1 } else { per_second },
            burst: if burst == 0 { 1 } else { burst },
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new(20, 40)
    }
}

/// A token in thousandths, so that a refill of `per_second` tokens is `per_second` thousandths
/// a millisecond: integer arithmetic, exact.
const MILLI: u64 = 1000;

/// What [`TokenBucket::take`] says about a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Taken: handle it.
    Yes,
    /// Over the rate, the first since the last one taken: refuse it, saying when to retry.
    Refuse(Duration),
    /// Over the rate again: drop it silently.
    Drop,
    /// Over the rate more than [`FLOOD_FACTOR`] times the rate within a second: close the
    /// connection (a flood, which no client of the protocol sends).
    Close,
}

/// How many times its rate a connection may send, dropped, within a second before it is closed.
pub(crate) const FLOOD_FACTOR: u64 = 10;

/// One connection's bucket, on the hub's clock (milliseconds).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    limit: Option<RateLimit>,
    /// Tokens, in thousandths.
    tokens: u64,
    /// When `tokens` was counted; `None` before the first message (the bucket starts full).
    at: Option<Timestamp>,
    /// Whether a refusal went out since the last message taken.
    refused: bool,
    /// Messages dropped since `window` (a second at most ago).
    dropped: u64,
    window: Timestamp,
}

impl TokenBucket {
    /// A full bucket (`None`: no limit).
    pub(crate) fn new(limit: Option<RateLimit>) -> Self {
        TokenBucket {
            limit,
            tokens: limit.map_or(0, |l| u64::from(l.burst) * MILLI),
            at: None,
            refused: false,
            dropped: 0,
            window: Timestamp::EPOCH,
        }
    }

    /// Takes a token for one message at `now`. A `now` earlier than one seen before (a clock
    /// that went back) refills nothing.
    pub(crate) fn take(&mut self, now: Timestamp) -> Taken {
        let Some(limit) = self.limit else {
            return Taken::Yes;
        };
        let capacity = u64::from(limit.burst) * MILLI;
        let rate = u64::from(limit.per_second); // thousandths a millisecond
        if let Some(at) = self.at {
            let elapsed = now.as_millis().saturating_sub(at.as_millis());
            self.tokens = self
                .tokens
                .saturating_add(elapsed.saturating_mul(rate))
                .min(capacity);
        }
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
        if self.tokens >= MILLI {
            self.tokens -= MILLI;
            self.refused = false;
            return Taken::Yes;
        }
        if now.saturating_duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.dropped = 0;
        }
        self.dropped += 1;
        if self.dropped > FLOOD_FACTOR * u64::from(limit.per_second) {
            return Taken::Close;
        }
        if self.refused {
            return Taken::Drop;
        }
        self.refused = true;
        // Rounded up: retrying after it is never too early.
        let missing = MILLI - self.tokens;
        Taken::Refuse(Duration::from_millis(missing.div_ceil(rate).max(1)))
    }
}

impl TokenBucket {
    /// Whether the bucket is full at `now`: as good as a new one.
    fn is_full(&self, now: Timestamp) -> bool {
        let (Some(limit), Some(at)) = (self.limit, self.at) else {
            return true;
        };
        let elapsed = now.as_millis().saturating_sub(at.as_millis());
        let tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(u64::from(limit.per_second)));
        tokens >= u64::from(limit.burst) * MILLI
    }
}

/// One bucket per session, shared by its connections and kept across its reconnects: a
/// session's rate is not renewed by connecting again, nor multiplied by connecting twice.
///
/// A bucket no connection holds and that is full again (it would take as much as a new one)
/// is forgotten when the map is next pruned: the map holds the sessions that sent lately, not
/// every session ever seen.
pub(crate) struct SessionBuckets<S> {
    limit: Option<RateLimit>,
    buckets: parking_lot::Mutex<Buckets<S>>,
}

struct Buckets<S> {
    map: std::collections::HashMap<S, std::sync::Arc<parking_lot::Mutex<TokenBucket>>>,
    /// The map's size at which it is pruned next.
    prune_at: usize,
}

/// The least size at which the map of session buckets is pruned.
const PRUNE_AT_LEAST: usize = 1024;

impl<S: std::hash::Hash + Eq + Clone> SessionBuckets<S> {
    pub(crate) fn new(limit: Option<RateLimit>) -> Self {
        SessionBuckets {
            limit,
            buckets: parking_lot::Mutex::new(Buckets {
                map: std::collections::HashMap::new(),
                prune_at: PRUNE_AT_LEAST,
            }),
        }
    }

    /// `session`'s bucket (`None` without a limit), with one message (a hello) taken from it.
    pub(crate) fn hello(
        &self,
        session: &S,
        now: Timestamp,
    ) -> Option<(std::sync::Arc<parking_lot::Mutex<TokenBucket>>, Taken)> {
        self.limit?;
        let bucket = {
            let mut buckets = self.buckets.lock();
            if buckets.map.len() >= buckets.prune_at {
                buckets
                    .map
                    .retain(|_, b| std::sync::Arc::strong_count(b) > 1 || !b.lock().is_full(now));
                // Amortised: the next prune after as many insertions as there are entries.
                buckets.prune_at = (buckets.map.len() * 2).max(PRUNE_AT_LEAST);
            }
            let limit = self.limit;
            std::sync::Arc::clone(buckets.map.entry(session.clone()).or_insert_with(|| {
                std::sync::Arc::new(parking_lot::Mutex::new(TokenBucket::new(limit)))
            }))
        };
        let taken = bucket.lock().take(now);
        Some((bucket, taken))
    }

    /// How many sessions have a bucket (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(1_000_000 + ms)
    }

    #[test]
    fn a_burst_is_taken_then_one_refusal_then_silence_until_refilled() {
        let mut bucket = TokenBucket::new(Some(RateLimit::new(10, 3)));
        let got: Vec<Taken> = (0..6).map(|_| bucket.take(at(0))).collect();
        // (5 messages, not a flood yet.)
        assert_eq!(
            got,
            [
                Taken::Yes,
                Taken::Yes,
                Taken::Yes,
                Taken::Refuse(Duration::from_millis(100)),
                Taken::Drop,
                Taken::Drop
            ]
        );
        // 10 a second: one token after 100 ms, not before.
        assert_eq!(bucket.take(at(99)), Taken::Drop);
        assert_eq!(bucket.take(at(100)), Taken::Yes);
        // Taken again: the next one over is told again.
        assert_eq!(
            bucket.take(at(100)),
            Taken::Refuse(Duration::from_millis(100))
        );
    }

    #[test]
    fn the_retry_after_counts_the_part_of_a_token_already_refilled() {
        let mut bucket = TokenBucket::new(Some(RateLimit::new(10, 1)));
        assert_eq!(bucket.take(at(0)), Taken::Yes);
        assert_eq!(
            bucket.take(at(40)),
            Taken::Refuse(Duration::from_millis(60))
        );
        assert_eq!(bucket.take(at(100)), Taken::Yes);
    }

    #[test]
    fn a_sustained_rate_at_the_limit_is_all_taken() {
        let mut bucket = TokenBucket::new(Some(RateLimit::new(20, 1)));
        for i in 0..1000 {
            assert_eq!(bucket.take(at(i * 50)), Taken::Yes, "message {i}");
        }
    }

    #[test]
    fn a_quiet_spell_refills_no_more_than_the_burst() {
        let mut bucket = TokenBucket::new(Some(RateLimit::new(100, 5)));
        assert_eq!(bucket.take(at(0)), Taken::Yes);
        let taken = (0..50)
            .filter(|_| bucket.take(at(3_600_000)) == Taken::Yes)
            .count();
        assert_eq!(taken, 5);
    }

    #[test]
    fn a_clock_that_goes_back_refills_nothing_and_a_far_future_saturates() {
        let mut bucket = TokenBucket::new(Some(RateLimit::new(1, 1)));
        assert_eq!(bucket.take(at(10_000)), Taken::Yes);
        assert!(matches!(bucket.take(at(0)), Taken::Refuse(_)));
        assert_eq!(bucket.take(at(5_000)), Taken::Drop);
        // Still no token at 10.5 s (the clock's high mark), one at 11 s.
        assert_eq!(bucket.take(at(10_500)), Taken::Drop);
        assert_eq!(bucket.take(at(11_000)), Taken::Yes);
        assert_eq!(bucket.take(Timestamp::from_millis(u64::MAX)), Taken::Yes);
    }

    #[test]
    fn a_connection_that_keeps_flooding_is_closed_and_one_a_little_over_is_not() {
        // Ten a second: 100 over it within a second is a flood.
        let mut bucket = TokenBucket::new(Some(RateLimit::new(10, 10)));
        let got: Vec<Taken> = (0..111).map(|_| bucket.take(at(0))).collect();
        assert_eq!(got[..10], [Taken::Yes; 10]);
        assert!(matches!(got[10], Taken::Refuse(_)));
        assert!(got[11..110].iter().all(|t| *t == Taken::Drop));
        assert_eq!(
            got[110],
            Taken::Close,
            "the 101st over the rate in the second"
        );
        // Twice the rate for a minute: half taken, never closed.
        let mut bucket = TokenBucket::new(Some(RateLimit::new(10, 10)));
        for i in 0..1200 {
            assert_ne!(bucket.take(at(i * 50)), Taken::Close, "message {i}");
        }
    }

    #[test]
    fn no_limit_takes_everything_and_zero_is_taken_as_one() {
        let mut bucket = TokenBucket::new(None);
        assert!((0..10_000).all(|_| bucket.take(at(0)) == Taken::Yes));
        assert_eq!(RateLimit::new(0, 0), RateLimit::new(1, 1));
    }

    #[test]
    fn a_session_s_bucket_outlives_its_connections_until_it_is_full_again() {
        let sessions = SessionBuckets::new(Some(RateLimit::new(1, 2)));
        let (first, taken) = sessions.hello(&"tab", at(0)).expect("limited");
        assert_eq!(taken, Taken::Yes);
        assert_eq!(first.lock().take(at(0)), Taken::Yes);
        drop(first);
        // Connecting again does not renew the rate.
        let (_, taken) = sessions.hello(&"tab", at(0)).expect("limited");
        assert_eq!(taken, Taken::Refuse(Duration::from_secs(1)));
        assert!(SessionBuckets::<&str>::new(None)
            .hello(&"tab", at(0))
            .is_none());

        // Forgotten once held by nobody and full again; a bucket held or short of tokens stays.
        let sessions = SessionBuckets::new(Some(RateLimit::new(1, 2)));
        for i in 0..PRUNE_AT_LEAST {
            let _ = sessions.hello(&format!("a{i}"), at(0));
        }
        // A prune runs here: every bucket is short of a token, none goes.
        let (held, _) = sessions.hello(&"held".to_string(), at(0)).expect("limited");
        assert_eq!(sessions.len(), PRUNE_AT_LEAST + 1);
        // Two seconds on, the first ones are full again: the next prune forgets them.
        for i in 0..PRUNE_AT_LEAST {
            let _ = sessions.hello(&format!("b{i}"), at(2000));
        }
        assert_eq!(sessions.len(), PRUNE_AT_LEAST + 1, "held and the b's");
        let (again, _) = sessions
            .hello(&"held".to_string(), at(2000))
            .expect("limited");
        assert!(std::sync::Arc::ptr_eq(&held, &again));
        drop(held);
    }
}
