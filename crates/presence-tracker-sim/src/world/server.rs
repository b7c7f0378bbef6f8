//! What the simulated clients talk to: the tracker under test ([`Tracked`]), or a model of a
//! peer's semantics (`crate::peers`). The world drives either through [`Server`], with the same
//! signals at the same instants, and the server books what it publishes.

use presence_tracker::{
    Activity, ConnectionId, DisconnectKind, Error, ManualClock, Policy, PresenceTracker, Subject,
    Timestamp, Transitions,
};

use crate::metrics::Accounting;
use crate::peers::{self, Peer};
use crate::{Candidate, ScenarioError};

/// Why a server did not take a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The session is not known (it expired): a server's handler connects it again.
    UnknownSession,
    /// Anything else: a correct server never sees one.
    Other,
}

/// The server side of a simulation. Times are milliseconds of virtual time since the run
/// started; `user`, `session` and `conn` number users, sessions and a session's connections.
/// Every method books the user (and session) events it publishes, at `now`.
pub(crate) trait Server {
    /// A client's connection `conn` of `session` opens, carrying its activity.
    fn connect(
        &mut self,
        now: u64,
        user: u32,
        session: u32,
        conn: u32,
        activity: Activity,
        books: &mut Accounting,
    ) -> Result<(), Refusal>;

    /// A message from the session's client reaches the server.
    fn heartbeat(
        &mut self,
        now: u64,
        user: u32,
        session: u32,
        activity: Activity,
        books: &mut Accounting,
    ) -> Result<(), Refusal>;

    /// The transport reports connection `conn` closed: with a close frame, or noticed dead
    /// (Socket.IO's ping timeout, or an old connection's disconnect arriving after a restart).
    fn disconnect(
        &mut self,
        now: u64,
        user: u32,
        session: u32,
        conn: u32,
        kind: DisconnectKind,
        books: &mut Accounting,
    ) -> Result<(), Refusal>;

    /// Publishes what time has changed.
    fn tick(&mut self, now: u64, books: &mut Accounting);

    /// When `tick` has something to do next, if ever (it may be early, never late).
    fn next_deadline(&self) -> Option<u64>;

    /// The server restarts: every connection drops at once. What survives is the server's
    /// business (the tracker's state survives: it runs elsewhere, or is restored).
    fn restart(&mut self, now: u64, books: &mut Accounting);

    /// Whether the client's keep-alive runs on page timers, which a browser throttles in a
    /// hidden tab (rather than on the transport, which it does not).
    fn timer_driven(&self) -> bool {
        true
    }
}

/// Something to do with whichever server a candidate simulates.
pub(crate) trait WithServer {
    type Output;
    fn with<S: Server>(self, server: S) -> Self::Output;
}

/// Builds the server `candidate` simulates (the tracker, or a peer model) and hands it to `job`.
///
/// # Errors
///
/// [`ScenarioError::Candidate`] if the candidate's thresholds do not make a policy.
pub(crate) fn dispatch<W: WithServer>(
    candidate: &Candidate,
    job: W,
) -> Result<W::Output, ScenarioError> {
    let policy = candidate.policy()?;
    Ok(match candidate.peer {
        None => job.with(Tracked::new(policy)),
        Some(Peer::Naive) => job.with(peers::Naive::default()),
        Some(Peer::Phoenix) => job.with(peers::phoenix()),
        Some(Peer::Ably) => job.with(peers::ably()),
        Some(Peer::Synapse) => job.with(peers::Synapse::default()),
        Some(Peer::PubNub) => job.with(peers::pubnub()),
        Some(Peer::Yjs) => job.with(peers::yjs()),
    })
}

/// The real [`PresenceTracker`] on a [`ManualClock`] set to each signal's instant.
#[derive(Debug)]
pub(crate) struct Tracked {
    tracker: PresenceTracker<u32, u64, ManualClock>,
    clock: ManualClock,
    /// The clock's time at the start of the run, in milliseconds.
    origin: u64,
    /// Where the clock stands, in virtual milliseconds.
    at: u64,
}

impl Tracked {
    pub(crate) fn new(policy: Policy) -> Self {
        let clock = ManualClock::new();
        Tracked {
            origin: clock.now().as_millis(),
            tracker: PresenceTracker::with_clock(policy, clock.clone()),
            clock,
            at: 0,
        }
    }

    /// Moves the clock to `now`; every call takes its time from it.
    fn set(&mut self, now: u64) {
        if now != self.at {
            self.at = now;
            self.clock.set(Timestamp::from_millis(self.origin + now));
        }
    }

    fn connection(session: u32, conn: u32) -> ConnectionId {
        ConnectionId::from((u64::from(session) << 32) | u64::from(conn))
    }

    /// Books the tracker's events.
    fn absorb(&self, events: Transitions<u32, u64>, books: &mut Accounting) {
        for event in events {
            let at = event.at.as_millis().saturating_sub(self.origin);
            match event.subject {
                Subject::User { user } => {
                    books.on_user_event(user as usize, event.from, event.to, at)
                }
                Subject::Session { .. } => books.on_session_event(),
            }
        }
    }

    fn book(
        &self,
        result: Result<Transitions<u32, u64>, Error>,
        books: &mut Accounting,
    ) -> Result<(), Refusal> {
        match result {
            Ok(events) => {
                self.absorb(events, books);
                Ok(())
            }
            Err(Error::UnknownSession) => Err(Refusal::UnknownSession),
            Err(_) => Err(Refusal::Other),
        }
    }
}

impl Server for Tracked {
    fn connect(
        &mut self,
        now: u64,
        user: u32,
        session: u32,
        conn: u32,
        activity: Activity,
        books: &mut Accounting,
    ) -> Result<(), Refusal> {
        self.set(now);
        let result = self.tracker.connect(
            user,
            u64::from(session),
            Self::connection(session, conn),
            activity,
        );
        self.book(result, books)
    }

    fn heartbeat(
        &mut self,
        now: u64,
        _user: u32,
        session: u32,
        activity: Activity,
        books: &mut Accounting,
    ) -> Result<(), Refusal> {
        self.set(now);
        let result = self.tracker.heartbeat(&u64::from(session), activity);
        self.book(result, books)
    }

    fn disconnect(
        &mut self,
        now: u64,
        _user: u32,
        session: u32,
        conn: u32,
        kind: DisconnectKind,
        books: &mut Accounting,
    ) -> Result<(), Refusal> {
        self.set(now);
        let result =
            self.tracker
                .disconnect(&u64::from(session), Self::connection(session, conn), kind);
        self.book(result, books)
    }

    fn tick(&mut self, now: u64, books: &mut Accounting) {
        self.set(now);
        let events = self.tracker.tick();
        self.absorb(events, books);
    }

    fn next_deadline(&self) -> Option<u64> {
        self.tracker
            .next_deadline()
            .map(|deadline| deadline.as_millis().saturating_sub(self.origin))
    }

    fn restart(&mut self, _now: u64, _books: &mut Accounting) {}
}
