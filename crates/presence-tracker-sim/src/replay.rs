//! Hand-written traffic: [`replay`] a few [`Signal`]s of one user on a candidate (the tracker or
//! a peer model) and read what it published, to check a model's known answers.

use std::time::Duration;

use presence_tracker::{Activity, DisconnectKind, Presence};

use super::metrics::Accounting;
use super::world::server::{dispatch, Server, WithServer};
use super::{Candidate, ScenarioError};

/// What reaches the server from one user's clients (or happens to the server), in a
/// hand-written [`replay`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signal {
    /// Session `session` opens connection `conn` (number each reconnect anew), reporting
    /// `activity`.
    Connect {
        /// The session (tab or app).
        session: u32,
        /// The connection.
        conn: u32,
        /// What the client reports.
        activity: Activity,
    },
    /// A message of the session reaches the server: a heartbeat, keep-alive or request.
    Heartbeat {
        /// The session.
        session: u32,
        /// What the client reports.
        activity: Activity,
    },
    /// Connection `conn` closes with a close frame: the tab closed, the page unloads.
    Close {
        /// The session.
        session: u32,
        /// The connection.
        conn: u32,
    },
    /// The transport notices connection `conn` dead (Socket.IO's ping timeout).
    Lost {
        /// The session.
        session: u32,
        /// The connection.
        conn: u32,
    },
    /// The server restarts (every connection drops; see [`Restart`](crate::Restart)).
    Restart,
}

impl Signal {
    /// `Heartbeat`s of `session` every `every` from `from` until before `to`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use presence_tracker::Activity;
    /// use presence_tracker_sim::Signal;
    ///
    /// let beats = Signal::heartbeats(0, Activity::Active, Duration::from_secs(10),
    ///     Duration::from_secs(30), Duration::from_secs(10));
    /// assert_eq!(beats.len(), 2); // at 10 s and 20 s
    /// ```
    pub fn heartbeats(
        session: u32,
        activity: Activity,
        from: Duration,
        to: Duration,
        every: Duration,
    ) -> Vec<(Duration, Signal)> {
        let mut out = Vec::new();
        let mut at = from;
        while at < to && !every.is_zero() {
            out.push((at, Signal::Heartbeat { session, activity }));
            at += every;
        }
        out
    }
}

/// Replays one user's signals (sorted by time; signals at one instant in the order given) on
/// the server `candidate` simulates, ticking it every second of virtual time as the scenarios
/// do, until `until`. Returns the user presence it published, as `(time, presence)` changes;
/// a two-state peer publishes present as [`Presence::Stale`] (see [`Peer`](crate::Peer)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use presence_tracker::{Activity, Presence};
/// use presence_tracker_sim::{replay, Candidate, Peer, Signal};
///
/// // A tab connects, then closes cleanly at 60 s.
/// let s = Duration::from_secs;
/// let signals = [
///     (s(0), Signal::Connect { session: 0, conn: 1, activity: Activity::Active }),
///     (s(60), Signal::Close { session: 0, conn: 1 }),
/// ];
/// let phoenix = replay(&Candidate::peer(Peer::Phoenix), &signals, s(120))?;
/// assert_eq!(phoenix, [(s(0), Presence::Stale), (s(60), Presence::Offline)]);
/// # Ok::<(), presence_tracker_sim::ScenarioError>(())
/// ```
///
/// # Errors
///
/// [`ScenarioError::Candidate`] if the candidate's thresholds do not make a policy.
pub fn replay(
    candidate: &Candidate,
    signals: &[(Duration, Signal)],
    until: Duration,
) -> Result<Vec<(Duration, Presence)>, ScenarioError> {
    let mut signals = signals.to_vec();
    signals.sort_by_key(|(at, _)| *at);
    dispatch(
        candidate,
        Replay {
            signals,
            until: millis(until),
        },
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

struct Replay {
    signals: Vec<(Duration, Signal)>,
    until: u64,
}

impl WithServer for Replay {
    type Output = Vec<(Duration, Presence)>;

    fn with<S: Server>(self, mut server: S) -> Self::Output {
        const TICK: u64 = 1000;
        let mut books = Accounting::recording(1);
        let mut conns = Conns::default();
        let mut signals = self.signals.into_iter().peekable();
        let mut tick = TICK;
        loop {
            let next_signal = signals.peek().map(|(at, _)| millis(*at));
            match next_signal {
                // A signal at a tick's instant comes first.
                Some(at) if at <= tick && at <= self.until => {
                    if let Some((_, signal)) = signals.next() {
                        apply(&mut server, at, signal, &mut conns, &mut books);
                    }
                }
                _ if tick <= self.until => {
                    server.tick(tick, &mut books);
                    tick += TICK;
                }
                _ => break,
            }
        }
        books
            .recorded()
            .iter()
            .map(|&(at, _, to)| (Duration::from_millis(at), to))
            .collect()
    }
}

/// Each session's latest connection.
#[derive(Debug, Default)]
struct Conns(Vec<(u32, u32)>);

impl Conns {
    fn set(&mut self, session: u32, conn: u32) {
        self.0.retain(|&(s, _)| s != session);
        self.0.push((session, conn));
    }

    fn of(&self, session: u32) -> u32 {
        self.0
            .iter()
            .find(|&&(s, _)| s == session)
            .map_or(0, |&(_, c)| c)
    }
}

fn apply<S: Server>(
    server: &mut S,
    now: u64,
    signal: Signal,
    conns: &mut Conns,
    books: &mut Accounting,
) {
    const USER: u32 = 0;
    // Refusals change nothing; a heartbeat for an expired session connects it again, as the
    // simulated server's handler does.
    match signal {
        Signal::Connect {
            session,
            conn,
            activity,
        } => {
            conns.set(session, conn);
            let _ = server.connect(now, USER, session, conn, activity, books);
        }
        Signal::Heartbeat { session, activity } => {
            if server
                .heartbeat(now, USER, session, activity, books)
                .is_err()
            {
                let conn = conns.of(session);
                let _ = server.connect(now, USER, session, conn, activity, books);
            }
        }
        Signal::Close { session, conn } => {
            let _ = server.disconnect(now, USER, session, conn, DisconnectKind::Clean, books);
        }
        Signal::Lost { session, conn } => {
            let _ = server.disconnect(now, USER, session, conn, DisconnectKind::Lost, books);
        }
        Signal::Restart => server.restart(now, books),
    }
}
