//! The wire protocol, version [`PROTOCOL`]: what a server sends its clients and what they send
//! back, as serde types (JSON on both transports).
//!
//! # The resync rule
//!
//! A client holds the presence of the users it shows *as of a version*. The server sends:
//!
//! 1. a [`State`] when the client connects, when it asks ([`ClientMessage::Resync`]), and
//!    whenever it fell too far behind: every online user, with the hub's `epoch` and `version`;
//! 2. then [`Updates`]: the versions `from..=to` that came next, as the whole state (not a
//!    delta) of each user they changed, the latest of each. A server gathers what came within a
//!    few milliseconds into one message, so a burst of a thousand transitions is one message
//!    per client, never a backlog of a thousand.
//!
//! The client applies updates whose `from` is exactly the version after what it holds, and
//! then holds `to`. It asks for a state again, and replaces everything it had with it, when
//! updates skip a version or name another `epoch` (the server restarted: its versions and the
//! users' `seq` started again), and after every reconnect. A user whose `seq` is not above the
//! one the client holds for that user is old news: it is skipped.
//!
//! A client that falls behind (a slow network, a frozen tab) is sent a fresh [`State`] instead
//! of the backlog: it may miss intermediate presences, never the last one.
//!
//! Numbers on the wire fit a JavaScript number: `epoch` is below 2^53, and versions and `seq`
//! would take centuries of transitions to get there.

use presence_tracker::{Activity, Presence, Timestamp};
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks. A [`ClientMessage::Hello`] naming another is refused.
pub const PROTOCOL: u32 = 1;

/// One user as clients see it: the whole state, so that applying the newest wins whatever
/// order updates took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UserState<U> {
    /// The user.
    pub user: U,
    /// Its presence: the highest of its sessions'.
    pub presence: Presence,
    /// Its live sessions (tabs, devices); 0 when offline.
    pub sessions: usize,
    /// When it was last seen (its latest connect or heartbeat).
    pub last_seen: Timestamp,
    /// The user's event sequence number: strictly increasing per user within an epoch.
    pub seq: u64,
}

impl<U> UserState<U> {
    /// A user's state.
    pub fn new(
        user: U,
        presence: Presence,
        sessions: usize,
        last_seen: Timestamp,
        seq: u64,
    ) -> Self {
        UserState {
            user,
            presence,
            sessions,
            last_seen,
            seq,
        }
    }
}

/// Everything a client needs to render: every online user, as of `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct State<U> {
    /// The protocol version, [`PROTOCOL`].
    pub protocol: u32,
    /// The hub's epoch: new at every start of the server.
    pub epoch: u64,
    /// The version this state is at; the next update carries `version + 1`.
    pub version: u64,
    /// The server's time, so a client can say "last seen 2 min ago" without trusting its clock.
    pub now: Timestamp,
    /// Every user that is not offline, in no particular order.
    pub users: Vec<UserState<U>>,
}

/// The versions `from..=to` that came after what a client holds: the latest state of each
/// user they changed, in the order of their last change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Updates<U> {
    /// The hub's epoch.
    pub epoch: u64,
    /// The first version in this message: the one after what the client holds.
    pub from: u64,
    /// The last version in this message: what the client holds after applying it.
    pub to: u64,
    /// The users those versions changed, as they are at `to` (`presence` is `offline` for a
    /// user who left).
    pub users: Vec<UserState<U>>,
}

/// One published change: one user's new state, at the next version. What the hub publishes;
/// clients receive them gathered as [`Updates`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Update<U> {
    /// The hub's epoch.
    pub epoch: u64,
    /// This update's version: the previous one's plus one.
    pub version: u64,
    /// The user as it is now (`presence` is `offline` when it left).
    pub user: UserState<U>,
}

/// A refusal: the client sent something the server will not act on. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Refusal {
    /// A stable, machine-readable code: `unknown_session`, `bad_message`, `unauthorized`,
    /// `session_taken`, `limit`, `protocol`, `watch_only`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

impl Refusal {
    /// A refusal with a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The refusal for a tracker error: its code, and its message (which never echoes ids).
    pub fn from_error(error: &presence_tracker::Error) -> Self {
        use presence_tracker::Error;
        let code = match error {
            Error::UnknownSession => "unknown_session",
            Error::SessionOwnedByOtherUser => "session_taken",
            Error::TooManySessionsForUser { .. } | Error::TooManySessions { .. } => "limit",
            _ => "bad_message",
        };
        Refusal::new(code, error.to_string())
    }
}

/// What the server sends, tagged by `type` (`state`, `updates`, `refused`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage<U> {
    /// The whole state: replace what you hold.
    State(State<U>),
    /// The next versions.
    Updates(Updates<U>),
    /// Something the client sent was refused.
    Refused(Refusal),
}

/// What a client sends, tagged by `type`: `hello` first, then `heartbeat`, `leave` and
/// `resync` in any order. On Socket.IO the hello is the handshake's `auth` and the others are
/// events of those names. Fields a message does not know are ignored, so a newer client's
/// additions do not break an older server of the same protocol version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    bound(deserialize = "S: Deserialize<'de>")
)]
#[non_exhaustive]
pub enum ClientMessage<S> {
    /// Who is connecting, for which tab, doing what.
    Hello(Hello<S>),
    /// The client is there, doing `activity`.
    Heartbeat {
        /// What the client reports.
        activity: Activity,
    },
    /// The client is leaving (logout, `pagehide`).
    Leave,
    /// Send me the whole state again.
    Resync,
}

/// The first message of a connection (a WebSocket `hello`, a Socket.IO handshake's `auth`).
///
/// It names no user: who the connection speaks for is the application's decision, taken from
/// the handshake (a cookie, a token) by its [`Authenticate`](crate::Authenticate) hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>"))]
#[non_exhaustive]
pub struct Hello<S> {
    /// The protocol version the client speaks.
    pub protocol: u32,
    /// The tab's stable session id; `None` for a watcher (observes, has no presence of its
    /// own).
    #[serde(default)]
    pub session: Option<S>,
    /// The client's activity as it connects (a hidden tab: `background`).
    #[serde(default = "active")]
    pub activity: Activity,
    /// A credential for the application's [`Authenticate`](crate::Authenticate) hook (a signed
    /// token); cookies and headers come with the handshake instead.
    #[serde(default)]
    pub token: Option<String>,
}

fn active() -> Activity {
    Activity::Active
}

impl<S> Hello<S> {
    /// A hello for a session doing `activity`.
    pub fn session(session: S, activity: Activity) -> Self {
        Hello {
            protocol: PROTOCOL,
            session: Some(session),
            activity,
            token: None,
        }
    }

    /// A hello for a watcher.
    pub fn watcher() -> Self {
        Hello {
            protocol: PROTOCOL,
            session: None,
            activity: Activity::Active,
            token: None,
        }
    }

    /// The same hello with a token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json() {
        let m: ServerMessage<String> = ServerMessage::Updates(Updates {
            epoch: 7,
            from: 3,
            to: 4,
            users: vec![UserState::new(
                "ada".into(),
                Presence::Idle,
                2,
                Timestamp::from_millis(5),
                9,
            )],
        });
        let json = serde_json::to_value(&m).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"type": "updates", "epoch": 7, "from": 3, "to": 4,
                "users": [{"user": "ada", "presence": "idle", "sessions": 2, "last_seen": 5, "seq": 9}]})
        );
        let back: ServerMessage<String> = serde_json::from_value(json).expect("parses");
        assert_eq!(back, m);
    }

    #[test]
    fn a_hello_takes_defaults() {
        let m: ClientMessage<String> =
            serde_json::from_str(r#"{"type":"hello","protocol":1,"session":"tab-1"}"#)
                .expect("parses");
        assert_eq!(
            m,
            ClientMessage::Hello(Hello::session("tab-1".to_string(), Activity::Active))
        );
        let w: ClientMessage<String> =
            serde_json::from_str(r#"{"type":"hello","protocol":1}"#).expect("parses");
        assert_eq!(w, ClientMessage::Hello(Hello::watcher()));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let m: ClientMessage<String> =
            serde_json::from_str(r#"{"type":"leave","extra":1}"#).expect("parses");
        assert_eq!(m, ClientMessage::Leave);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "{}",
            r#"{"type":"heartbeat"}"#,
            r#"{"type":"heartbeat","activity":"dancing"}"#,
            r#"{"type":"nope"}"#,
            "[1,2,3]",
        ] {
            assert!(
                serde_json::from_str::<ClientMessage<String>>(text).is_err(),
                "{text:?} parsed"
            );
        }
    }
}
