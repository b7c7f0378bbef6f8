//! Ids: the [`Id`] trait for users and sessions, and [`ConnectionId`].

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A user or session id.
///
/// Implemented for the integer types, `String`, `Box<str>`, `Arc<str>`, `&'static str` and
/// `[u8; 16]` (a UUID's bytes). Implement it for your own id type; string-like ids return their
/// length from [`Id::byte_len`] so the tracker can refuse empty and over-long ones.
///
/// Cloning happens when a session connects and when events are made, never on the heartbeat
/// path; `Arc<str>` makes it cheap for string ids.
pub trait Id: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static {
    /// The length in bytes of a string-like id, `None` for fixed-size ids.
    fn byte_len(&self) -> Option<usize> {
        None
    }
}

macro_rules! fixed_size_ids {
    ($($t:ty),*) => { $(impl Id for $t {})* };
}
fixed_size_ids!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, [u8; 16]);

impl Id for String {
    fn byte_len(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl Id for Box<str> {
    fn byte_len(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl Id for Arc<str> {
    fn byte_len(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl Id for &'static str {
    fn byte_len(&self) -> Option<usize> {
        Some(self.len())
    }
}

/// One transport connection (a Socket.IO `socket.id`, a WebSocket) carrying a session.
///
/// Stored as a stable 64-bit fingerprint of the id (FNV-1a for text), so the tracker keeps no
/// string per session; two distinct ids of one session colliding is a 1 in 2^64 chance. Only
/// equality matters: a disconnect naming a connection that is no longer the session's current
/// one is ignored.
///
/// # Examples
///
/// ```
/// use presence_tracker::ConnectionId;
///
/// assert_eq!(ConnectionId::from("sid-1"), ConnectionId::from(String::from("sid-1")));
/// assert_ne!(ConnectionId::from("sid-1"), ConnectionId::from("sid-2"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// The fingerprint.
    pub const fn fingerprint(self) -> u64 {
        self.0
    }

    /// A connection id from a fingerprint made earlier (or any number the caller picks).
    pub const fn from_fingerprint(fingerprint: u64) -> Self {
        ConnectionId(fingerprint)
    }

    fn of_bytes(bytes: &[u8]) -> Self {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h = OFFSET;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
        ConnectionId(h)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({:016x})", self.0)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl From<&str> for ConnectionId {
    fn from(s: &str) -> Self {
        ConnectionId::of_bytes(s.as_bytes())
    }
}

impl From<&String> for ConnectionId {
    fn from(s: &String) -> Self {
        ConnectionId::of_bytes(s.as_bytes())
    }
}

impl From<String> for ConnectionId {
    fn from(s: String) -> Self {
        ConnectionId::of_bytes(s.as_bytes())
    }
}

impl From<u64> for ConnectionId {
    fn from(n: u64) -> Self {
        ConnectionId::of_bytes(&n.to_le_bytes())
    }
}
