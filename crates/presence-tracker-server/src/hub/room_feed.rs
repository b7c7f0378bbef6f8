//! What a subscriber of one room receives: [`RoomDelivery`] (the room's state, or its gathered
//! updates) and the [`RoomSubscription`] that hands them out.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use presence_tracker::{Clock, Id, Metadata, SystemClock};
use serde::Serialize;
use tokio::sync::broadcast;

use super::Hub;
use crate::wire::{MemberChange, Occupancy, RoomOccupancy, RoomState, RoomUpdate};

/// Updates of a room published together, shared by every subscriber.
pub(crate) type SharedUpdates<U, S, R, M> = Arc<[Arc<RoomUpdate<U, S, R, M>>]>;

/// What a room's channel carries: the next update, or a state that replaces everything (the
/// room's history started anew).
pub(crate) enum RoomItem<U, S, R, M> {
    Update(Arc<RoomUpdate<U, S, R, M>>),
    /// Updates published at once (a signal's or a tick's changes of the room), in version
    /// order: one slot of the room's ring however many members changed.
    Updates(SharedUpdates<U, S, R, M>),
    State(Arc<RoomState<U, S, R, M>>),
}

impl<U, S, R, M> Clone for RoomItem<U, S, R, M> {
    fn clone(&self) -> Self {
        match self {
            RoomItem::Update(u) => RoomItem::Update(Arc::clone(u)),
            RoomItem::Updates(u) => RoomItem::Updates(Arc::clone(u)),
            RoomItem::State(s) => RoomItem::State(Arc::clone(s)),
        }
    }
}

/// What a [`RoomSubscription`] hands out: the room's whole state, or its updates after what was
/// handed out before. Serialises as the [`ServerMessage`](crate::wire::ServerMessage) it is:
/// `{"type":"room_state",..}` or `{"type":"room_updates",..}`.
#[derive(Debug, PartialEq, Eq)]
pub enum RoomDelivery<U, S, R, M> {
    /// Replace what you hold of the room with this: at the start, after falling behind, on
    /// request, or when the room's history started anew.
    State(Arc<RoomState<U, S, R, M>>),
    /// The room's versions after what was delivered before, gathered: the latest change of
    /// each member they changed.
    Updates(RoomBatch<U, S, R, M>),
}

impl<U, S, R, M> Clone for RoomDelivery<U, S, R, M> {
    fn clone(&self) -> Self {
        match self {
            RoomDelivery::State(s) => RoomDelivery::State(Arc::clone(s)),
            RoomDelivery::Updates(b) => RoomDelivery::Updates(b.clone()),
        }
    }
}

/// Consecutive published updates of one room, the latest of each member: a
/// [`RoomDelivery::Updates`]. Shares the hub's updates (no copy per subscriber).
#[derive(Debug, PartialEq, Eq)]
pub struct RoomBatch<U, S, R, M> {
    epoch: u64,
    from: u64,
    to: u64,
    updates: Vec<Arc<RoomUpdate<U, S, R, M>>>,
}

impl<U, S, R, M> Clone for RoomBatch<U, S, R, M> {
    fn clone(&self) -> Self {
        RoomBatch {
            epoch: self.epoch,
            from: self.from,
            to: self.to,
            updates: self.updates.clone(),
        }
    }
}

impl<U: Id, S, R, M> RoomBatch<U, S, R, M> {
    /// Gathers consecutive updates of one epoch (in version order), keeping the latest of each
    /// member.
    fn of(updates: Vec<Arc<RoomUpdate<U, S, R, M>>>) -> Option<Self> {
        let first = updates.first()?;
        let (epoch, from) = (first.epoch, first.member.version);
        let to = updates.last().map_or(from, |u| u.member.version);
        let updates = if updates.len() == 1 {
            updates
        } else {
            let mut seen = std::collections::HashSet::with_capacity(updates.len());
            let mut kept: Vec<_> = updates
                .into_iter()
                .rev()
                .filter(|u| seen.insert(u.member.user.clone()))
                .collect();
            kept.reverse();
            kept
        };
        Some(RoomBatch {
            epoch,
            from,
            to,
            updates,
        })
    }
}

impl<U, S, R, M> RoomBatch<U, S, R, M> {
    /// The room's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The first version gathered.
    pub fn from(&self) -> u64 {
        self.from
    }

    /// The last version gathered.
    pub fn to(&self) -> u64 {
        self.to
    }

    /// The room.
    pub fn room(&self) -> &R {
        // A batch is never empty.
        &self.updates[0].room
    }

    /// The latest change of each member the versions changed, each with its version.
    pub fn members(&self) -> impl Iterator<Item = &MemberChange<U, S, M>> + '_ {
        self.updates.iter().map(|u| &u.member)
    }
}

impl<U, S, R, M> RoomDelivery<U, S, R, M> {
    /// Whether the room is big as of this delivery (see [`RoomState::big`]).
    pub fn big(&self) -> bool {
        match self {
            RoomDelivery::State(s) => s.big,
            RoomDelivery::Updates(b) => b.updates.last().is_some_and(|u| u.big),
        }
    }
}

impl<U, S, R: Clone, M> RoomDelivery<U, S, R, M> {
    /// The room's occupancy as of this delivery (its last version): counted from a state's
    /// members, or carried by the last update of a batch. What a connection that watches the
    /// room's [`RoomView::Occupancy`](crate::wire::RoomView::Occupancy) is sent instead.
    pub fn occupancy(&self) -> RoomOccupancy<R> {
        let big = self.big();
        let occupancy = match self {
            RoomDelivery::State(s) => RoomOccupancy::new(
                s.room.clone(),
                s.epoch,
                s.version,
                Occupancy::of(&s.members),
            ),
            RoomDelivery::Updates(b) => RoomOccupancy::new(
                b.room().clone(),
                b.epoch,
                b.to,
                b.updates.last().map(|u| u.occupancy).unwrap_or_default(),
            ),
        };
        occupancy.with_big(big)
    }
}

impl<U: Serialize, S: Serialize, R: Serialize, M: Serialize> RoomDelivery<U, S, R, M> {
    /// The message as JSON, what serialising it gives: a state's made once per state and
    /// shared by every subscriber sent it; a batch's spliced from each update's member JSON,
    /// made once per update.
    ///
    /// # Errors
    ///
    /// The serialisation of an id or of metadata failed.
    pub fn to_json(&self) -> Result<Bytes, serde_json::Error> {
        match self {
            RoomDelivery::State(state) => state
                .encoded
                .get_or_try_init(|| serde_json::to_vec(self).map(Bytes::from)),
            RoomDelivery::Updates(batch) => {
                let mut json = Vec::with_capacity(96 + 128 * batch.updates.len());
                json.extend_from_slice(br#"{"type":"room_updates","room":"#);
                serde_json::to_writer(&mut json, batch.room())?;
                json.extend_from_slice(
                    format!(
                        r#","epoch":{},"from":{},"to":{},"members":["#,
                        batch.epoch, batch.from, batch.to
                    )
                    .as_bytes(),
                );
                for (i, update) in batch.updates.iter().enumerate() {
                    if i > 0 {
                        json.push(b',');
                    }
                    json.extend_from_slice(&update.member_json()?);
                }
                json.extend_from_slice(b"]}");
                Ok(Bytes::from(json))
            }
        }
    }
}

impl<U: Serialize, S: Serialize, R: Serialize, M: Serialize> Serialize
    for RoomDelivery<U, S, R, M>
{
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct};

        /// The members of a batch, as a sequence.
        struct Members<'a, U, S, R, M>(&'a [Arc<RoomUpdate<U, S, R, M>>]);
        impl<U: Serialize, S: Serialize, R, M: Serialize> Serialize for Members<'_, U, S, R, M> {
            fn serialize<Ser: serde::Serializer>(
                &self,
                serializer: Ser,
            ) -> Result<Ser::Ok, Ser::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for u in self.0 {
                    seq.serialize_element(&u.member)?;
                }
                seq.end()
            }
        }

        match self {
            RoomDelivery::State(s) => {
                let mut m = serializer.serialize_struct("RoomState", 5)?;
                m.serialize_field("type", "room_state")?;
                m.serialize_field("room", &s.room)?;
                m.serialize_field("epoch", &s.epoch)?;
                m.serialize_field("version", &s.version)?;
                m.serialize_field("members", &s.members)?;
                m.end()
            }
            RoomDelivery::Updates(b) => {
                let mut m = serializer.serialize_struct("RoomUpdates", 6)?;
                m.serialize_field("type", "room_updates")?;
                m.serialize_field("room", b.room())?;
                m.serialize_field("epoch", &b.epoch)?;
                m.serialize_field("from", &b.from)?;
                m.serialize_field("to", &b.to)?;
                m.serialize_field("members", &Members(&b.updates))?;
                m.end()
            }
        }
    }
}

/// One subscriber's view of one room: the room's [`RoomState`], then every update of the room
/// after it, in version order. Falling more than the hub's [`room_backlog`](crate::HubConfig::room_backlog) behind yields a fresh state,
/// never a silent gap; so does the room's history starting anew (a new epoch).
///
/// Its receiving methods are cancel-safe, like [`Subscription`](crate::Subscription)'s.
pub struct RoomSubscription<U, S, C = SystemClock, R = String, M = ()> {
    hub: Hub<U, S, C, R, M>,
    room: R,
    pending: Option<Arc<RoomState<U, S, R, M>>>,
    rx: broadcast::Receiver<RoomItem<U, S, R, M>>,
    gathered: Vec<Arc<RoomUpdate<U, S, R, M>>>,
    gather_until: Option<tokio::time::Instant>,
    /// Run when dropped: the room's channel goes too if this was its last subscriber.
    release: Option<Release<U, S, C, R, M>>,
}

/// [`Hub::room_unsubscribed`] for these types (`Drop` cannot name bounds the struct has not).
type Release<U, S, C, R, M> = fn(&Hub<U, S, C, R, M>, &R);

impl<U, S, C, R: fmt::Debug, M> fmt::Debug for RoomSubscription<U, S, C, R, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomSubscription")
            .field("room", &self.room)
            .field("pending_state", &self.pending.is_some())
            .field("gathered", &self.gathered.len())
            .finish_non_exhaustive()
    }
}

impl<U, S, C, R, M> RoomSubscription<U, S, C, R, M> {
    /// The room.
    pub fn room(&self) -> &R {
        &self.room
    }
}

impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> RoomSubscription<U, S, C, R, M> {
    pub(super) fn new(
        hub: Hub<U, S, C, R, M>,
        room: R,
        pending: Option<Arc<RoomState<U, S, R, M>>>,
        rx: broadcast::Receiver<RoomItem<U, S, R, M>>,
    ) -> Self {
        RoomSubscription {
            hub,
            room,
            pending,
            rx,
            gathered: Vec::new(),
            gather_until: None,
            release: Some(Hub::room_unsubscribed),
        }
    }

    /// The next delivery: one update (or what an interrupted
    /// [`recv_gathered`](Self::recv_gathered) had gathered), or a state; `None` once the hub is
    /// gone.
    pub async fn recv(&mut self) -> Option<RoomDelivery<U, S, R, M>> {
        if let Some(ready) = self.ready() {
            return Some(ready);
        }
        let item = self.rx.recv().await;
        self.take(item, false)
    }

    /// The next delivery, gathering what else the room publishes within `linger` after the
    /// first update (and everything already waiting) into one. `None` once the hub is gone.
    pub async fn recv_gathered(&mut self, linger: Duration) -> Option<RoomDelivery<U, S, R, M>> {
        if let Some(state) = self.pending.take() {
            return Some(RoomDelivery::State(state));
        }
        if self.gathered.is_empty() {
            let item = self.rx.recv().await;
            match self.take(item, true) {
                None if self.gathered.is_empty() => return None,
                None => self.gather_until = Some(tokio::time::Instant::now() + linger),
                delivered => return delivered,
            }
        }
        // Receives while gathering, so that a burst fills the gathered updates rather than the
        // room's ring (a subscriber behind the ring gets a state: a room's whole membership).
        if let Some(until) = self.gather_until {
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    item = self.rx.recv() => match item {
                        Ok(RoomItem::Update(update)) => self.gathered.push(update),
                        Ok(RoomItem::Updates(updates)) => {
                            self.gathered.extend(updates.iter().cloned());
                        }
                        Ok(RoomItem::State(state)) => {
                            self.gathered.clear();
                            self.gather_until = None;
                            return Some(RoomDelivery::State(state));
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            return Some(RoomDelivery::State(self.resync()));
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
        }
        self.ready()
    }

    /// The next delivery if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<RoomDelivery<U, S, R, M>> {
        if let Some(ready) = self.ready() {
            return Some(ready);
        }
        let item = match self.rx.try_recv() {
            Ok(item) => Ok(item),
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                Err(broadcast::error::RecvError::Lagged(n))
            }
            Err(_) => return None,
        };
        self.take(item, false)
    }

    /// What one received item delivers: an update (or, `gather`ing, nothing yet: it is kept),
    /// a state, or `None` once the hub is gone.
    fn take(
        &mut self,
        item: Result<RoomItem<U, S, R, M>, broadcast::error::RecvError>,
        gather: bool,
    ) -> Option<RoomDelivery<U, S, R, M>> {
        match item {
            Ok(RoomItem::Update(update)) if gather => {
                self.gathered.push(update);
                None
            }
            Ok(RoomItem::Updates(updates)) if gather => {
                self.gathered.extend(updates.iter().cloned());
                None
            }
            Ok(RoomItem::Update(update)) => RoomBatch::of(vec![update]).map(RoomDelivery::Updates),
            Ok(RoomItem::Updates(updates)) => {
                RoomBatch::of(updates.to_vec()).map(RoomDelivery::Updates)
            }
            Ok(RoomItem::State(state)) => {
                self.gathered.clear();
                self.gather_until = None;
                Some(RoomDelivery::State(state))
            }
            Err(broadcast::error::RecvError::Lagged(_)) => Some(RoomDelivery::State(self.resync())),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// What can be delivered without waiting: a pending state, or what was gathered plus what
    /// is queued (up to a state, which replaces it all).
    fn ready(&mut self) -> Option<RoomDelivery<U, S, R, M>> {
        if let Some(state) = self.pending.take() {
            return Some(RoomDelivery::State(state));
        }
        if self.gathered.is_empty() {
            return None;
        }
        loop {
            match self.rx.try_recv() {
                Ok(RoomItem::Update(update)) => self.gathered.push(update),
                Ok(RoomItem::Updates(updates)) => self.gathered.extend(updates.iter().cloned()),
                Ok(RoomItem::State(state)) => {
                    self.gathered.clear();
                    self.gather_until = None;
                    return Some(RoomDelivery::State(state));
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    return Some(RoomDelivery::State(self.resync()))
                }
                Err(_) => break,
            }
        }
        self.gather_until = None;
        RoomBatch::of(std::mem::take(&mut self.gathered)).map(RoomDelivery::Updates)
    }

    /// How many items wait for this subscriber.
    pub fn pending(&self) -> usize {
        self.rx.len()
    }

    /// Drops whatever is queued and starts again from the room's current state (which the next
    /// [`recv`](Self::recv) also returns).
    pub fn resync(&mut self) -> Arc<RoomState<U, S, R, M>> {
        let (state, rx) = self.hub.room_state_and_receiver(&self.room);
        self.rx = rx;
        self.pending = None;
        self.gathered.clear();
        self.gather_until = None;
        state
    }

    /// Like [`resync`](Self::resync), but the state comes out of the next
    /// [`recv`](Self::recv).
    pub fn resync_later(&mut self) {
        let state = self.resync();
        self.pending = Some(state);
    }
}

impl<U, S, C, R, M> Drop for RoomSubscription<U, S, C, R, M> {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release(&self.hub, &self.room);
        }
    }
}
