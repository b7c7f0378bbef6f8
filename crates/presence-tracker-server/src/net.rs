//! A listener for a public endpoint: every connection bounded in time, and the node's and each
//! address's connections bounded in number ([`GuardedListener`], for [`axum::serve()`]).
//!
//! `axum::serve` over a plain `TcpListener` sets no timer: a connection that sends half a
//! request (slowloris) or nothing at all stays open for ever, a client that stops reading
//! holds its unsent bytes (and the task writing them) for ever, and a node at its descriptor
//! limit stops answering everyone. A [`GuardedListener`] accepts the same connections and gives
//! `axum::serve` streams that fail (and so close) when:
//!
//! - the server has written nothing within [`first_response`](ConnectionLimits::first_response)
//!   of the accept: a request's headers that never finish, or a silent connection (what hyper's
//!   header-read timeout does, which `axum::serve` does not turn on);
//! - a write makes no progress for [`write_timeout`](ConnectionLimits::write_timeout): a client
//!   that does not read (on every route: the WebSocket route, Socket.IO's writer task, a
//!   long response);
//! - nothing is read or written for [`idle_timeout`](ConnectionLimits::idle_timeout).
//!
//! and reads each connection at most [`read_rate`](ConnectionLimits::read_rate) bytes a second
//! (a client that sends faster waits, as TCP makes it).
//!
//! Connections over [`max_connections`](ConnectionLimits::max_connections), or over
//! [`max_per_address`](ConnectionLimits::max_per_address) from one IP address, are closed as
//! they are accepted, before any byte is read.
//!
//! Served with [`ConnectInfo`](axum::extract::ConnectInfo) of [`Peer`]
//! (`app.into_make_service_with_connect_info::<Peer>()`), a handler knows the client's address
//! and whether the server's writes to it are blocked now ([`Peer::write_blocked`]): the
//! Socket.IO integration sends no room whole to a socket whose connection is blocked (it
//! holds the request until the connection drains), so that a client that does not read holds
//! at most one copy of a state, whatever it asks.
//!
//! # Examples
//!
//! ```no_run
//! use presence_tracker_server::net::{ConnectionLimits, GuardedListener};
//!
//! # async fn run(app: axum::Router) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//! let listener = GuardedListener::new(listener, ConnectionLimits::default());
//! axum::serve(listener, app).await
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// Whether a connection's writes are blocked: shared by its [`GuardedStream`] and its
/// [`Peer`]s.
#[derive(Debug, Default)]
struct Flow {
    blocked: AtomicBool,
}

/// The connection a request came on, for [`ConnectInfo`](axum::extract::ConnectInfo): serve
/// with `app.into_make_service_with_connect_info::<Peer>()`.
///
/// # Examples
///
/// ```no_run
/// use axum::extract::ConnectInfo;
/// use axum::routing::get;
/// use presence_tracker_server::net::{ConnectionLimits, GuardedListener, Peer};
///
/// # async fn run() -> std::io::Result<()> {
/// let app = axum::Router::new().route(
///     "/whoami",
///     get(|ConnectInfo(peer): ConnectInfo<Peer>| async move { peer.address().to_string() }),
/// );
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
/// let listener = GuardedListener::new(listener, ConnectionLimits::default());
/// axum::serve(listener, app.into_make_service_with_connect_info::<Peer>()).await
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Peer {
    address: SocketAddr,
    flow: Arc<Flow>,
}

impl Peer {
    /// The client's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Whether a write to the connection is waiting for the client to read now (its kernel
    /// buffers are full): what the server sends it meanwhile waits in memory. `false` once the
    /// connection closed.
    pub fn write_blocked(&self) -> bool {
        self.flow.blocked.load(Ordering::Relaxed)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, GuardedListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, GuardedListener>) -> Self {
        Peer {
            address: *stream.remote_addr(),
            flow: Arc::clone(&stream.io().flow),
        }
    }
}

/// The most a throttled connection is read at once, and the least it waits for.
const READ_CHUNK: u64 = 4096;

/// The bounds of a [`GuardedListener`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// The most connections open at once (default 10,000; keep it under the process's
    /// descriptor limit, `ulimit -n`, with room for the node's own files and Redis).
    pub max_connections: usize,
    /// The most connections open at once from one IP address (default 256: an office behind
    /// one NAT address holds a few tabs per person).
    pub max_per_address: usize,
    /// How long after the accept the server must have written something, its first response
    /// (default 10 s): a request's headers that do not arrive in that time close the
    /// connection.
    pub first_response: Duration,
    /// How long a write may make no progress (default 20 s, the WebSocket route's and
    /// Socket.IO's ping timeout): a client that stops reading is closed after it.
    pub write_timeout: Duration,
    /// How long a connection may go without a byte read or written (default 120 s: both
    /// integrations ping a quiet client every 25 s, and a long poll lasts as long).
    pub idle_timeout: Duration,
    /// How many bytes a second a connection is read, on average (default 64 KiB; 0: no
    /// limit): a client that sends faster waits, as TCP makes it, and the server's work on
    /// it (a task socketioxide spawns for each event, say) is bounded. A presence client
    /// sends well under 1 KiB a second.
    pub read_rate: u32,
    /// How many bytes a connection is read at once after a quiet spell (default 256 KiB: a
    /// hello naming rooms, a join with large metadata, a request with a body).
    pub read_burst: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            max_per_address: 256,
            first_response: Duration::from_secs(10),
            write_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(120),
            read_rate: 64 << 10,
            read_burst: 256 << 10,
        }
    }
}

impl ConnectionLimits {
    /// With at most `max` connections at once, and at most `per_address` from one address
    /// (each at least 1).
    pub fn connections(mut self, max: usize, per_address: usize) -> Self {
        self.max_connections = max.max(1);
        self.max_per_address = per_address.max(1);
        self
    }

    /// With connections read at most `bytes_per_second` on average, `burst` at once (0: no
    /// limit; see [`read_rate`](Self::read_rate)).
    pub fn read_rate(mut self, bytes_per_second: u32, burst: u32) -> Self {
        self.read_rate = bytes_per_second;
        self.read_burst = burst.max(1);
        self
    }

    /// With these timeouts (see the fields).
    pub fn timeouts(mut self, first_response: Duration, write: Duration, idle: Duration) -> Self {
        self.first_response = first_response;
        self.write_timeout = write;
        self.idle_timeout = idle;
        self
    }
}

/// How many connections are open, in all and per address.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// A [`TcpListener`] whose connections are bounded (see the [module](self)): give it to
/// [`axum::serve()`] instead of the listener.
#[derive(Debug)]
pub struct GuardedListener {
    listener: TcpListener,
    limits: ConnectionLimits,
    open: Arc<Mutex<Open>>,
    refused: Arc<std::sync::atomic::AtomicU64>,
}

impl GuardedListener {
    /// Bounds `listener`'s connections by `limits`.
    pub fn new(listener: TcpListener, limits: ConnectionLimits) -> Self {
        GuardedListener {
            listener,
            limits,
            open: Arc::default(),
            refused: Arc::default(),
        }
    }

    /// How many connections are open now.
    pub fn open(&self) -> usize {
        self.open.lock().total
    }

    /// A handle that reads the counts while `axum::serve` owns the listener.
    pub fn counts(&self) -> ConnectionCounts {
        ConnectionCounts {
            open: Arc::clone(&self.open),
            refused: Arc::clone(&self.refused),
        }
    }

    /// Takes a place for a connection from `address`, if there is one.
    fn admit(&self, address: IpAddr) -> Option<Place> {
        let mut open = self.open.lock();
        let from = open.by_address.get(&address).copied().unwrap_or(0);
        if open.total >= self.limits.max_connections || from >= self.limits.max_per_address {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        open.total += 1;
        open.by_address.insert(address, from + 1);
        Some(Place {
            open: Arc::clone(&self.open),
            address,
        })
    }
}

/// The counts of a [`GuardedListener`], readable while it serves.
#[derive(Clone, Debug)]
pub struct ConnectionCounts {
    open: Arc<Mutex<Open>>,
    refused: Arc<std::sync::atomic::AtomicU64>,
}

impl ConnectionCounts {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().total
    }

    /// Connections closed as they were accepted, over a limit, since the start.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A connection's place in the counts, given back when it closes.
#[derive(Debug)]
struct Place {
    open: Arc<Mutex<Open>>,
    address: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_address.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, address) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted:
                    // the same pause `axum::serve` makes, then go on.
                    if !is_connection_error(&e) {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            };
            // Over a limit: dropped, which closes it, before any byte is read.
            let Some(place) = self.admit(address.ip()) else {
                continue;
            };
            return (GuardedStream::new(stream, place, &self.limits), address);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A connection of a [`GuardedListener`]: a [`TcpStream`] whose reads and writes fail with
/// [`io::ErrorKind::TimedOut`] once one of its limits' timeouts runs out (and from then on).
#[derive(Debug)]
pub struct GuardedStream {
    stream: TcpStream,
    _place: Place,
    write_timeout: Duration,
    idle_timeout: Duration,
    /// Until the server's first write: when the first response is due.
    first_response: Option<Instant>,
    /// The last byte read or written.
    last_active: Instant,
    /// Wakes a pending read at the first-response or idle deadline.
    read_timer: Pin<Box<Sleep>>,
    /// Wakes a pending write at its deadline; `None` while no write is pending.
    write_timer: Option<Pin<Box<Sleep>>>,
    /// A timeout ran out: every read and write fails.
    expired: bool,
    /// The task waiting in a read, woken when a write times out (so that a reader that waits
    /// for bytes learns the connection is over now, not at its own deadline).
    reader: Option<Waker>,
    /// Bytes a second read at most (0: no limit), and at once.
    read_rate: u64,
    read_burst: u64,
    /// Bytes that may be read now (below zero: read ahead of the rate), as of `counted`.
    read_tokens: i64,
    counted: Instant,
    /// Wakes a read held back by the rate.
    throttle: Option<Pin<Box<Sleep>>>,
    /// Whether a write is blocked, for the connection's [`Peer`]s.
    flow: Arc<Flow>,
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.flow.blocked.store(false, Ordering::Relaxed);
    }
}

impl GuardedStream {
    fn new(stream: TcpStream, place: Place, limits: &ConnectionLimits) -> Self {
        let now = Instant::now();
        // Small writes go out at once (a pong, a heartbeat's answer), as most servers set it.
        let _ = stream.set_nodelay(true);
        let first = now + limits.first_response;
        GuardedStream {
            stream,
            _place: place,
            write_timeout: limits.write_timeout,
            idle_timeout: limits.idle_timeout,
            first_response: Some(first),
            last_active: now,
            read_timer: Box::pin(tokio::time::sleep_until(
                first.min(now + limits.idle_timeout),
            )),
            write_timer: None,
            expired: false,
            reader: None,
            read_rate: u64::from(limits.read_rate),
            read_burst: u64::from(limits.read_burst.max(1)),
            read_tokens: i64::from(limits.read_burst.max(1)),
            counted: now,
            throttle: None,
            flow: Arc::default(),
        }
    }

    /// When a read waiting for bytes gives up.
    fn read_deadline(&self) -> Instant {
        let idle = self.last_active + self.idle_timeout;
        self.first_response.map_or(idle, |first| first.min(idle))
    }

    fn timed_out(&mut self) -> io::Error {
        self.expired = true;
        if let Some(reader) = self.reader.take() {
            reader.wake();
        }
        io::Error::new(io::ErrorKind::TimedOut, "connection timed out")
    }

    fn expired_error() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "connection timed out")
    }

    /// Whether a read must wait for the rate: refills the tokens, and arms the throttle when
    /// there are none.
    fn throttled(&mut self, cx: &mut Context<'_>) -> bool {
        if self.read_rate == 0 {
            return false;
        }
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.counted);
        let refill = elapsed
            .as_micros()
            .saturating_mul(u128::from(self.read_rate))
            / 1_000_000;
        if refill > 0 {
            let burst = i64::try_from(self.read_burst).unwrap_or(i64::MAX);
            let refill = i64::try_from(refill).unwrap_or(i64::MAX);
            self.read_tokens = self.read_tokens.saturating_add(refill).min(burst);
            self.counted = now;
        }
        // Reads of a chunk at least: a throttled connection wakes a few times a second, not
        // at every byte.
        let chunk = i64::try_from(READ_CHUNK.min(self.read_burst)).unwrap_or(1);
        if self.read_tokens >= chunk {
            self.throttle = None;
            return false;
        }
        let missing = u64::try_from(chunk - self.read_tokens).unwrap_or(u64::MAX);
        let wait =
            Duration::from_micros((missing.saturating_mul(1_000_000) / self.read_rate).max(1000));
        let timer = self
            .throttle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(wait)));
        if timer.as_mut().poll(cx).is_ready() {
            timer.as_mut().reset(now + wait);
            // Polled again so that it wakes this task.
            return timer.as_mut().poll(cx).is_pending();
        }
        true
    }

    /// A read found no bytes: pending until they come, or an error once its deadline (the
    /// first response's or the idle one) has passed.
    fn wait_for_bytes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let deadline = self.read_deadline();
            if self.read_timer.deadline() != deadline {
                self.read_timer.as_mut().reset(deadline);
            }
            if self.read_timer.as_mut().poll(cx).is_pending() {
                if !self
                    .reader
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    self.reader = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            // The deadline passed with nothing read (a write since may have moved it on).
            if Instant::now() >= self.read_deadline() {
                return Poll::Ready(Err(self.timed_out()));
            }
        }
    }

    /// A write went through: the first response is written, the connection active.
    fn wrote(&mut self) {
        self.first_response = None;
        self.last_active = Instant::now();
        if self.write_timer.take().is_some() {
            self.flow.blocked.store(false, Ordering::Relaxed);
        }
    }

    /// A write is pending: `Err` once it has made no progress for the write timeout.
    fn write_pending(&mut self, cx: &mut Context<'_>) -> Result<(), io::Error> {
        let timeout = self.write_timeout;
        let flow = &self.flow;
        let timer = self.write_timer.get_or_insert_with(|| {
            flow.blocked.store(true, Ordering::Relaxed);
            Box::pin(tokio::time::sleep(timeout))
        });
        if timer.as_mut().poll(cx).is_ready() {
            return Err(self.timed_out());
        }
        Ok(())
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Err(GuardedStream::expired_error()));
        }
        if this.throttled(cx) {
            return Poll::Pending;
        }
        let allowed = usize::try_from(this.read_tokens).unwrap_or(0);
        if this.read_rate > 0 && allowed < buf.remaining() {
            // No more than the tokens allow: through a buffer of that size.
            let mut chunk = [0u8; READ_CHUNK as usize];
            let len = allowed.min(chunk.len());
            let mut limited = ReadBuf::new(&mut chunk[..len]);
            return match Pin::new(&mut this.stream).poll_read(cx, &mut limited) {
                Poll::Ready(Ok(())) => {
                    let read = limited.filled().len();
                    buf.put_slice(limited.filled());
                    if read > 0 {
                        this.last_active = Instant::now();
                        this.read_tokens = this
                            .read_tokens
                            .saturating_sub(i64::try_from(read).unwrap_or(i64::MAX));
                    }
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => this.wait_for_bytes(cx),
            };
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if read > 0 {
                    this.last_active = Instant::now();
                    this.read_tokens = this
                        .read_tokens
                        .saturating_sub(i64::try_from(read).unwrap_or(i64::MAX));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.wait_for_bytes(cx),
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Err(GuardedStream::expired_error()));
        }
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.wrote();
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.write_pending(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Err(GuardedStream::expired_error()));
        }
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                this.wrote();
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.write_pending(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Err(GuardedStream::expired_error()));
        }
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Ok(()));
        }
        // A client that does not read may hold a shutdown up too.
        match Pin::new(&mut this.stream).poll_shutdown(cx) {
            Poll::Pending => match this.write_pending(cx) {
                Ok(()) => Poll::Pending,
                Err(_) => Poll::Ready(Ok(())),
            },
            done => done,
        }
    }
}
