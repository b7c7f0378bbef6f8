//! [`Admission`]: how many new connections a node lets in per second, so that a stampede waits
//! its turn instead of starving the connections already in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A token bucket of new connections: `per_second` on average, up to `burst` at once.
///
/// When a node restarts, every client reconnects within a second or two. Each handshake costs
/// the node more than a heartbeat does (an upgrade, a hello, a state), and a node that takes
/// them all at once leaves the connections it already holds unanswered: on Socket.IO their
/// pongs come late and Engine.IO closes them, and they reconnect too. An `Admission` given to
/// the WebSocket route (`ws::WsOptions::admission`) and to Socket.IO
/// (`socketio::SocketIoOptions::admission`)
/// refuses a connection over the rate before any of that work: the WebSocket route answers the
/// upgrade with `503 Service Unavailable` and `Retry-After`, Socket.IO with a `connect_error`
/// whose refusal is `busy` with `retry_after_ms`. Clients come back after that, with jitter (the
/// browser client does). One `Admission` may serve several routes (it is a handle: clones share
/// the bucket), so the node's rate is one whatever the transport.
///
/// A connection that is refused costs the node a TCP accept and an HTTP request's parse, and
/// changes nothing: no session is touched.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use presence_tracker_server::Admission;
///
/// let admission = Admission::new(1000, 200);
/// // The first 200 come in at once; the bucket then refills at 1,000 a second.
/// for _ in 0..200 {
///     assert!(admission.try_admit().is_ok());
/// }
/// let busy = admission.try_admit().expect_err("the burst is spent");
/// assert!(busy.retry_after <= Duration::from_millis(1));
/// ```
#[derive(Clone, Debug)]
pub struct Admission {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    per_second: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    /// When `tokens` was counted; `None` before the first connection (the bucket starts full).
    at: Option<Instant>,
}

/// A connection [`Admission`] refused: the bucket refills one place in `retry_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Busy {
    /// How long until a place is free (at least 1 ms).
    pub retry_after: Duration,
}

impl Busy {
    /// The HTTP answer: `503 Service Unavailable`, `Retry-After` in whole seconds (rounded
    /// up: the header has no finer unit), and an empty body.
    #[cfg_attr(not(any(feature = "socketioxide", feature = "axum")), allow(dead_code))]
    pub(crate) fn response<B: Default>(&self) -> http::Response<B> {
        let seconds = self.retry_after.as_millis().div_ceil(1000).max(1);
        let mut response = http::Response::new(B::default());
        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        if let Ok(value) = http::HeaderValue::from_str(&seconds.to_string()) {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, value);
        }
        response
    }
}

impl Admission {
    /// `per_second` new connections a second on average, and up to `burst` at once (the
    /// bucket starts full). Zero for either is taken as 1: an admission that never admits
    /// would be a configuration mistake, not a limit.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Admission {
            inner: Arc::new(Inner {
                per_second: f64::from(per_second.max(1)),
                burst,
                bucket: Mutex::new(Bucket {
                    tokens: burst,
                    at: None,
                }),
            }),
        }
    }

    /// Takes a place for one new connection now, or says how long until one is free.
    ///
    /// # Errors
    ///
    /// [`Busy`] when the rate is spent.
    pub fn try_admit(&self) -> Result<(), Busy> {
        self.try_admit_at(Instant::now())
    }

    /// [`try_admit`](Self::try_admit) at `now`. A `now` earlier than one seen before (a clock
    /// that went back) refills nothing.
    ///
    /// # Errors
    ///
    /// [`Busy`] when the rate is spent.
    pub fn try_admit_at(&self, now: Instant) -> Result<(), Busy> {
        let inner = &*self.inner;
        let mut bucket = inner.bucket.lock();
        if let Some(at) = bucket.at {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * inner.per_second).min(inner.burst);
        }
        bucket.at = Some(bucket.at.map_or(now, |at| at.max(now)));
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / inner.per_second;
        let retry_after = Duration::try_from_secs_f64(wait)
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_millis(1));
        Err(Busy { retry_after })
    }

    /// The rate, in connections a second.
    pub fn per_second(&self) -> u32 {
        // Made from a u32: exact.
        self.inner.per_second as u32
    }

    /// The burst.
    pub fn burst(&self) -> u32 {
        self.inner.burst as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_comes_in_then_the_rate() {
        let admission = Admission::new(10, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(admission.try_admit_at(t0), Ok(()));
        }
        let busy = admission.try_admit_at(t0).expect_err("spent");
        assert_eq!(busy.retry_after, Duration::from_millis(100));
        // A tenth of a second later, one place.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(admission.try_admit_at(t1), Ok(()));
        assert!(admission.try_admit_at(t1).is_err());
        // A long pause refills the burst and no more.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(admission.try_admit_at(t2), Ok(()));
        }
        assert!(admission.try_admit_at(t2).is_err());
    }

    #[test]
    fn over_a_second_of_a_stampede_the_rate_is_kept() {
        let admission = Admission::new(500, 100);
        let t0 = Instant::now();
        let mut admitted = 0;
        // 20,000 attempts spread over one second.
        for i in 0..20_000u64 {
            let now = t0 + Duration::from_micros(i * 50);
            if admission.try_admit_at(now).is_ok() {
                admitted += 1;
            }
        }
        // The burst, and the rate over the second (less the last attempt's fraction).
        assert!((599..=600).contains(&admitted), "{admitted}");
    }

    #[test]
    fn a_clock_that_goes_back_refills_nothing() {
        let admission = Admission::new(1, 1);
        let t0 = Instant::now() + Duration::from_secs(100);
        assert_eq!(admission.try_admit_at(t0), Ok(()));
        assert!(admission
            .try_admit_at(t0 - Duration::from_secs(50))
            .is_err());
        // Nor does it later count the time it went back as elapsed twice.
        assert_eq!(admission.try_admit_at(t0 + Duration::from_secs(1)), Ok(()));
        assert!(admission.try_admit_at(t0 + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn zero_is_taken_as_one() {
        let admission = Admission::new(0, 0);
        assert_eq!((admission.per_second(), admission.burst()), (1, 1));
        let t0 = Instant::now();
        assert_eq!(admission.try_admit_at(t0), Ok(()));
        assert_eq!(
            admission.try_admit_at(t0).map_err(|b| b.retry_after),
            Err(Duration::from_secs(1))
        );
    }

    #[test]
    fn clones_share_the_bucket() {
        let a = Admission::new(1, 1);
        let b = a.clone();
        let t0 = Instant::now();
        assert_eq!(a.try_admit_at(t0), Ok(()));
        assert!(b.try_admit_at(t0).is_err());
    }
}
