//! The crate's one error type.

use std::time::Duration;

use crate::Timestamp;

/// Everything that can go wrong. An operation that returns an error has changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A heartbeat, disconnect or leave named a session the tracker does not know: never
    /// connected, or already expired. The client should connect again.
    ///
    /// Errors carry no copy of the ids the caller passed (it has them): refusing a flood of
    /// bogus ids allocates nothing, and the message is safe to echo to a client.
    #[error("unknown session (never connected, or expired)")]
    UnknownSession,
    /// A connect named a session id that belongs to another user: a client cannot take over
    /// someone else's session.
    #[error("the session belongs to another user")]
    SessionOwnedByOtherUser,
    /// A string id was empty.
    #[error("empty id")]
    EmptyId,
    /// A string id was longer than the policy's `max_id_len`.
    #[error("id of {len} bytes is longer than the limit of {max}")]
    IdTooLong {
        /// The id's length in bytes.
        len: usize,
        /// The policy's limit.
        max: usize,
    },
    /// A connect would give the user more sessions than the policy allows.
    #[error("the user already has the maximum of {max} sessions")]
    TooManySessionsForUser {
        /// The policy's limit.
        max: usize,
    },
    /// A connect would make more sessions in total than the policy allows.
    #[error("the tracker already holds the maximum of {max} sessions")]
    TooManySessions {
        /// The policy's limit.
        max: usize,
    },
    /// A client sent an activity that is not `active`, `idle` or `background`.
    #[error("unknown activity {0:?}")]
    UnknownActivity(String),
    /// Text that is not a presence name.
    #[error("unknown presence {0:?}")]
    UnknownPresence(String),
    /// A policy's thresholds are not strictly increasing.
    #[error("threshold {name} ({value:?}) must be longer than {previous_name} ({previous:?})")]
    ThresholdsNotIncreasing {
        /// The threshold that is too short.
        name: &'static str,
        /// Its value.
        value: Duration,
        /// The threshold before it.
        previous_name: &'static str,
        /// That one's value.
        previous: Duration,
    },
    /// A policy's grace is longer than its TTL, so it could never take effect.
    #[error("{name} ({grace:?}) is longer than the ttl ({ttl:?})")]
    GraceLongerThanTtl {
        /// Which grace.
        name: &'static str,
        /// Its value.
        grace: Duration,
        /// The TTL.
        ttl: Duration,
    },
    /// A policy's dwell is longer than its TTL: a session silent that long is already offline,
    /// so no downgrade could wait for it.
    #[error("dwell ({dwell:?}) is longer than the ttl ({ttl:?})")]
    DwellLongerThanTtl {
        /// The dwell.
        dwell: Duration,
        /// The TTL.
        ttl: Duration,
    },
    /// A policy's limit is zero, or a duration is shorter than the tracker's 1 ms resolution.
    #[error("policy setting {name} must be at least {min}")]
    PolicyValueTooSmall {
        /// The setting.
        name: &'static str,
        /// Its smallest allowed value, in its own unit.
        min: &'static str,
    },
    /// A signal's time is past [`Timestamp::MAX`], the latest the tracker accepts. Nothing
    /// changed, and the tracker's time did not move.
    #[error(
        "time {} ms is past the latest the tracker accepts, {} ms",
        at.as_millis(),
        max.as_millis()
    )]
    TimeOutOfRange {
        /// The time of the signal.
        at: Timestamp,
        /// [`Timestamp::MAX`].
        max: Timestamp,
    },
    /// A join would put the session in more rooms than the policy's `max_rooms_per_session`.
    #[error("the session is already in the maximum of {max} rooms")]
    TooManyRooms {
        /// The policy's limit.
        max: usize,
    },
    /// A join would give the room more members than the policy's `max_members_per_room`.
    #[error("the room already has the maximum of {max} members")]
    RoomFull {
        /// The policy's limit.
        max: usize,
    },
    /// A room update or leave named a room the session is not in.
    #[error("the session is not in that room")]
    NotInRoom,
    /// Metadata larger than the policy's `max_metadata_bytes`.
    #[error("metadata of {size} bytes is larger than the limit of {max}")]
    MetadataTooLarge {
        /// [`Metadata::size`](crate::Metadata::size) of the refused value.
        size: usize,
        /// The policy's limit.
        max: usize,
    },
    /// A metadata change came sooner than the policy's `metadata_interval` after the last one
    /// of the same session in the same room.
    #[error("metadata changed too often: try again in {retry_after:?}")]
    MetadataTooFrequent {
        /// When the change would be accepted.
        retry_after: Duration,
    },
    /// A snapshot is inconsistent (the same session twice, a session of two users, ids or
    /// counts beyond the policy's limits).
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(String),
}
