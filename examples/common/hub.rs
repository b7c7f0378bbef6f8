//! What the two servers share besides HTTP: the tracker, the publication of user transitions to
//! every client, and the task that drives `tick`.
//!
//! Handlers call the tracker directly and hand the events they got to [`Hub::publish`]; nothing
//! holds a lock around the tracker, so two signals of one user may publish out of order. Each
//! event carries the user's `seq`, and the browser client drops one older than what it has.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use presence_tracker::{
    Activity, ConnectionId, DisconnectKind, Error, Event, Policy, Presence, PresenceTracker,
    Timestamp, UserView,
};
use serde::Serialize;
use tokio::sync::{broadcast, Notify};

/// The tracker both servers use: users and sessions named by the client's strings.
pub(crate) type Tracker = PresenceTracker<String, String>;
/// One transition, as the tracker reports it.
pub(crate) type PresenceEvent = Event<String, String>;

/// The longest the tick task sleeps, even when nothing is due: a bound on how late a
/// transition can be published if a wake-up were ever missed.
const MAX_TICK_WAIT: Duration = Duration::from_secs(1);
/// How many broadcast user transitions `/api/events` keeps (the oldest are dropped).
const EVENT_LOG_LEN: usize = 100_000;
/// How many messages a slow client may fall behind before it misses some (it sees a gap in
/// `seq` and can ask for the state again).
const BROADCAST_CAPACITY: usize = 4096;

/// Who a connection speaks for, once its Socket.IO `auth` or WebSocket `hello` was accepted.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    /// The user name the client claims (a real application takes it from its login).
    pub(crate) user: String,
    /// The tab's stable session id.
    pub(crate) session: String,
}

impl Identity {
    /// Checks the client's claim for presence of both fields; the tracker checks the rest
    /// (empty, too long, owned by another user).
    ///
    /// # Errors
    ///
    /// A message naming the missing field.
    pub(crate) fn from_claim(
        user: Option<String>,
        session: Option<String>,
    ) -> Result<Self, String> {
        match (user, session) {
            (_, None) => Err("missing session id".to_string()),
            (None, _) => Err("missing user".to_string()),
            (Some(user), Some(session)) => Ok(Identity { user, session }),
        }
    }
}

/// A user's presence changed: the transition and the user as it is now.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct PresenceUpdate {
    /// The user transition (`subject.kind == "user"`).
    pub(crate) event: PresenceEvent,
    /// The user's presence, tab count and last seen right after it.
    pub(crate) view: UserView,
}

/// A user's tab count changed while its presence did not (a second tab opened, a hidden tab
/// expired). Sent so the "who is online" list can show tabs without polling.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SessionsUpdate {
    /// The user.
    pub(crate) user: String,
    /// The user's presence, tab count and last seen now.
    pub(crate) view: UserView,
}

/// What goes to every client.
#[derive(Clone, Debug)]
pub(crate) enum Broadcast {
    /// A user transition.
    Presence(PresenceUpdate),
    /// A tab count change without a transition.
    Sessions(SessionsUpdate),
}

/// One online user, as `state` and `/api/presence` list it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct UserEntry {
    /// The user.
    pub(crate) user: String,
    /// Presence, tab count, last seen.
    #[serde(flatten)]
    pub(crate) view: UserView,
}

/// Everything a client needs to render before the first transition arrives.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct PresenceState {
    /// The server's time, so a client can show "last seen 2 min ago" without trusting its clock.
    pub(crate) now: Timestamp,
    /// Users that are not offline, by name.
    pub(crate) users: Vec<UserEntry>,
}

/// One session of a user, as `/api/sessions?user=` lists it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SessionEntry {
    /// The session id.
    pub(crate) session: String,
    /// Its derived presence.
    pub(crate) presence: Presence,
    /// The activity it last reported.
    pub(crate) activity: Activity,
    /// Server time of its last connect or heartbeat.
    pub(crate) last_seen: Timestamp,
    /// Its current connection's fingerprint, in hex (it changes on every reconnect).
    pub(crate) connection: String,
    /// Whether that connection is open.
    pub(crate) connected: bool,
    /// When it expires unless a signal comes.
    pub(crate) expires_at: Timestamp,
}

/// The shared state of a server; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    tracker: Tracker,
    /// User transitions broadcast so far, in broadcast order. The lock also keeps the log and
    /// the broadcast channel in the same order.
    log: Mutex<VecDeque<PresenceEvent>>,
    tx: broadcast::Sender<Broadcast>,
    /// Wakes the tick task when a signal may have moved the next deadline earlier.
    wake: Notify,
}

impl Hub {
    /// A hub with an empty tracker on the system clock.
    pub(crate) fn new(policy: Policy) -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Hub {
            inner: Arc::new(HubInner {
                tracker: Tracker::new(policy),
                log: Mutex::new(VecDeque::new()),
                tx,
                wake: Notify::new(),
            }),
        }
    }

    /// A receiver of everything broadcast from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Broadcast> {
        self.inner.tx.subscribe()
    }

    /// A connection opened for `id`: a new session, or a reload / reconnect re-attaching one.
    ///
    /// # Errors
    ///
    /// The tracker's: the session belongs to another user, an id is empty or too long, too
    /// many sessions. Nothing changed.
    pub(crate) fn connect(
        &self,
        id: &Identity,
        connection: ConnectionId,
        activity: Option<Activity>,
    ) -> Result<(), Error> {
        let (user, session) = (id.user.clone(), id.session.clone());
        let tracker = &self.inner.tracker;
        let events = match activity {
            // A client that says what it is doing as it connects (a hidden tab reconnecting)
            // starts there, instead of showing `active` for an instant.
            Some(activity) => tracker.connect_with_activity(user, session, connection, activity)?,
            None => tracker.connect(user, session, connection)?,
        };
        self.publish(events);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// A heartbeat on the connection. If the session expired while the connection stayed open
    /// (a laptop that slept past the TTL), it is connected again first.
    ///
    /// # Errors
    ///
    /// The tracker's; nothing changed.
    pub(crate) fn heartbeat(
        &self,
        id: &Identity,
        connection: ConnectionId,
        activity: Activity,
    ) -> Result<(), Error> {
        let tracker = &self.inner.tracker;
        let events = match tracker.heartbeat(&id.session, activity) {
            Err(Error::UnknownSession { .. }) => {
                self.connect(id, connection, Some(activity))?;
                Vec::new()
            }
            other => other?,
        };
        if !events.is_empty() {
            // An upgrade re-arms the session's downgrade, possibly before the tick task's alarm.
            self.publish(events);
            self.inner.wake.notify_one();
        }
        Ok(())
    }

    /// The connection closed. An unknown (already expired) session is not an error here.
    pub(crate) fn disconnect(&self, id: &Identity, connection: ConnectionId, kind: DisconnectKind) {
        if let Ok(events) = self.inner.tracker.disconnect(&id.session, connection, kind) {
            self.publish(events);
        }
        // The grace deadline may be the earliest one now.
        self.inner.wake.notify_one();
    }

    /// The client says it is leaving. An unknown (already expired) session is not an error.
    pub(crate) fn leave(&self, id: &Identity) {
        if let Ok(events) = self.inner.tracker.leave(&id.session) {
            self.publish(events);
        }
        self.inner.wake.notify_one();
    }

    /// Who is online now.
    pub(crate) fn state(&self) -> PresenceState {
        let tracker = &self.inner.tracker;
        let mut users: Vec<UserEntry> = tracker
            .online()
            .into_iter()
            .map(|(user, view)| UserEntry { user, view })
            .collect();
        users.sort_by(|a, b| a.user.cmp(&b.user));
        PresenceState {
            now: tracker.now(),
            users,
        }
    }

    /// The user transitions broadcast so far.
    pub(crate) fn events(&self) -> Vec<PresenceEvent> {
        self.log().iter().cloned().collect()
    }

    /// A user's live sessions.
    pub(crate) fn sessions(&self, user: &str) -> Vec<SessionEntry> {
        let mut sessions: Vec<SessionEntry> = self
            .inner
            .tracker
            .user_sessions(&user.to_string())
            .into_iter()
            .map(|(session, view)| SessionEntry {
                session,
                presence: view.presence,
                activity: view.activity,
                last_seen: view.last_seen,
                connection: view.connection.to_string(),
                connected: view.connected,
                expires_at: view.expires_at,
            })
            .collect();
        sessions.sort_by(|a, b| a.session.cmp(&b.session));
        sessions
    }

    /// Runs forever: ticks the tracker at its next deadline (or when a signal wakes it) and
    /// publishes what time changed.
    pub(crate) async fn drive_ticks(self) {
        let tracker = &self.inner.tracker;
        loop {
            let wait = tracker
                .next_deadline()
                .map_or(MAX_TICK_WAIT, |at| {
                    at.saturating_duration_since(tracker.now())
                })
                // At least a millisecond, the tracker's resolution: never a busy loop.
                .clamp(Duration::from_millis(1), MAX_TICK_WAIT);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.inner.wake.notified() => {}
            }
            self.publish(tracker.tick());
        }
    }

    /// Logs and broadcasts the user transitions among `events`, and a tab count update for a
    /// user whose sessions came or went without a transition of its own.
    pub(crate) fn publish(&self, events: Vec<PresenceEvent>) {
        if events.is_empty() {
            return;
        }
        let tracker = &self.inner.tracker;
        let transitioned: BTreeSet<&String> = events
            .iter()
            .filter(|e| e.is_user())
            .map(|e| e.user())
            .collect();
        let recounted: BTreeSet<&String> = events
            .iter()
            .filter(|e| !e.is_user() && (e.from == Presence::Offline || e.to == Presence::Offline))
            .map(|e| e.user())
            .filter(|u| !transitioned.contains(u))
            .collect();
        let mut log = self.log();
        for event in events.iter().filter(|e| e.is_user()) {
            let view = tracker.user(event.user());
            if log.len() == EVENT_LOG_LEN {
                log.pop_front();
            }
            log.push_back(event.clone());
            // An error only means that no client is listening.
            let _ = self.inner.tx.send(Broadcast::Presence(PresenceUpdate {
                event: event.clone(),
                view,
            }));
        }
        for user in recounted {
            let view = tracker.user(user);
            let _ = self.inner.tx.send(Broadcast::Sessions(SessionsUpdate {
                user: user.clone(),
                view,
            }));
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, VecDeque<PresenceEvent>> {
        // The log holds plain data: a panic elsewhere cannot leave it half-written.
        self.inner
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
