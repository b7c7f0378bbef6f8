//! What clients report ([`Activity`]), what the tracker derives ([`Presence`]) and how a
//! connection ended ([`DisconnectKind`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// What a client reports about the human behind a session.
///
/// On the wire it is lowercase: `"active"`, `"idle"`, `"background"`. Parse what a client sent
/// with [`str::parse`]; anything else is [`Error::UnknownActivity`] naming it.
///
/// # Examples
///
/// ```
/// use presence_tracker::{Activity, Error};
///
/// assert_eq!("background".parse::<Activity>().unwrap(), Activity::Background);
/// assert!(matches!("dancing".parse::<Activity>(), Err(Error::UnknownActivity(s)) if s == "dancing"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activity {
    /// In the foreground, with recent interaction.
    Active,
    /// In the foreground, with no recent interaction.
    Idle,
    /// Hidden, frozen or suspended: the tab is in the background or the app is not visible.
    Background,
}

impl Activity {
    /// Every activity.
    pub const ALL: [Activity; 3] = [Activity::Active, Activity::Idle, Activity::Background];

    /// The lowercase wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Activity::Active => "active",
            Activity::Idle => "idle",
            Activity::Background => "background",
        }
    }

    /// The highest presence a session reporting this activity can have.
    pub const fn cap(self) -> Presence {
        match self {
            Activity::Active => Presence::Active,
            Activity::Idle => Presence::Idle,
            Activity::Background => Presence::Away,
        }
    }

    pub(crate) const fn to_bits(self) -> u64 {
        match self {
            Activity::Active => 0,
            Activity::Idle => 1,
            Activity::Background => 2,
        }
    }

    pub(crate) const fn from_bits(bits: u64) -> Activity {
        match bits & 3 {
            0 => Activity::Active,
            1 => Activity::Idle,
            _ => Activity::Background,
        }
    }
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Activity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Activity::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| Error::UnknownActivity(truncate(s)))
    }
}

/// The presence the tracker derives, in a total order: `Active > Idle > Away > Stale > Offline`.
///
/// On the wire it is lowercase.
///
/// # Examples
///
/// ```
/// use presence_tracker::Presence;
///
/// assert!(Presence::Active > Presence::Idle);
/// assert!(Presence::Stale > Presence::Offline);
/// assert_eq!(Presence::Away.to_string(), "away");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    /// No live session: gone, expired, or never seen.
    Offline,
    /// Not heard from for a long while; about to go offline.
    Stale,
    /// Not heard from for a while, or in the background.
    Away,
    /// There, but not interacting.
    Idle,
    /// There and interacting.
    Active,
}

impl Presence {
    /// Every presence, lowest first.
    pub const ALL: [Presence; 5] = [
        Presence::Offline,
        Presence::Stale,
        Presence::Away,
        Presence::Idle,
        Presence::Active,
    ];

    /// The lowercase wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Presence::Offline => "offline",
            Presence::Stale => "stale",
            Presence::Away => "away",
            Presence::Idle => "idle",
            Presence::Active => "active",
        }
    }

    /// Whether this is anything but [`Presence::Offline`].
    pub const fn is_online(self) -> bool {
        !matches!(self, Presence::Offline)
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    pub(crate) const fn from_index(i: u8) -> Presence {
        match i {
            0 => Presence::Offline,
            1 => Presence::Stale,
            2 => Presence::Away,
            3 => Presence::Idle,
            _ => Presence::Active,
        }
    }
}

impl fmt::Display for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Presence {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Presence::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| Error::UnknownPresence(truncate(s)))
    }
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DisconnectKind {
    /// The client closed it: the tab closed, the page reloaded, the app called disconnect. The
    /// session expires after the policy's `leave_grace` unless a connection re-attaches.
    Clean,
    /// The transport lost it: an error, a ping timeout, a reset. The session expires after the
    /// policy's `disconnect_grace` unless a connection re-attaches.
    Lost,
}

/// Client-supplied text quoted in an error, cut so that a hostile client cannot make errors huge.
pub(crate) fn truncate(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip() {
        for a in Activity::ALL {
            assert_eq!(Activity::from_bits(a.to_bits()), a);
        }
        for p in Presence::ALL {
            assert_eq!(Presence::from_index(p.index() as u8), p);
        }
    }

    #[test]
    fn long_unknown_input_is_truncated() {
        let long = "é".repeat(100);
        match long.parse::<Activity>() {
            Err(Error::UnknownActivity(s)) => assert!(s.len() < 80, "{s}"),
            other => panic!("{other:?}"),
        }
    }
}
