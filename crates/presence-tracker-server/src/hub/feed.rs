//! What a subscriber of the users receives: [`Delivery`] (a state, or gathered updates) and
//! the [`Subscription`] that hands them out.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use presence_tracker::{Clock, Id, Metadata, SystemClock};
use serde::Serialize;
use tokio::sync::broadcast;

use super::Hub;
use crate::wire::{State, Update, UserState};

/// What a [`Subscription`] hands out: the whole state, or the updates after what was handed
/// out before. Serialises as the [`ServerMessage`](crate::wire::ServerMessage) it is:
/// `{"type":"state",..}` or `{"type":"updates",..}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery<U> {
    /// Replace what you hold with this: at the start, after falling behind, or on request.
    State(Arc<State<U>>),
    /// The versions after what was delivered before, gathered: the latest update of each user
    /// they changed (see [`Updates`](crate::wire::Updates)).
    Updates(Batch<U>),
}

/// Consecutive published updates, the latest of each user: a [`Delivery::Updates`]. Shares the
/// hub's updates (no copy per subscriber).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch<U> {
    epoch: u64,
    from: u64,
    to: u64,
    updates: Vec<Arc<Update<U>>>,
}

impl<U: Id> Batch<U> {
    /// Gathers consecutive updates (in version order), keeping the latest of each user.
    fn of(updates: Vec<Arc<Update<U>>>) -> Option<Self> {
        let first = updates.first()?;
        let (epoch, from) = (first.epoch, first.version);
        let to = updates.last().map_or(from, |u| u.version);
        let updates = if updates.len() == 1 {
            updates
        } else {
            // The last update of each user, in the order of those last updates.
            let mut seen = std::collections::HashSet::with_capacity(updates.len());
            let mut kept: Vec<Arc<Update<U>>> = updates
                .into_iter()
                .rev()
                .filter(|u| seen.insert(u.user.user.clone()))
                .collect();
            kept.reverse();
            kept
        };
        Some(Batch {
            epoch,
            from,
            to,
            updates,
        })
    }
}

impl<U> Batch<U> {
    /// The hub's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The first version gathered: the one after what was delivered before.
    pub fn from(&self) -> u64 {
        self.from
    }

    /// The last version gathered.
    pub fn to(&self) -> u64 {
        self.to
    }

    /// The latest state of each user the versions changed.
    pub fn users(&self) -> impl Iterator<Item = &UserState<U>> + '_ {
        self.updates.iter().map(|u| &u.user)
    }

    /// The updates kept: the latest of each user, each with its own version. A batch from
    /// [`Subscription::recv`] holds exactly one.
    pub fn updates(&self) -> impl Iterator<Item = &Update<U>> + '_ {
        self.updates.iter().map(|u| &**u)
    }
}

impl<U: Serialize> Serialize for Delivery<U> {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct};

        /// The users of a batch, as a sequence.
        struct Users<'a, U>(&'a [Arc<Update<U>>]);
        impl<U: Serialize> Serialize for Users<'_, U> {
            fn serialize<Ser: serde::Serializer>(
                &self,
                serializer: Ser,
            ) -> Result<Ser::Ok, Ser::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for u in self.0 {
                    seq.serialize_element(&u.user)?;
                }
                seq.end()
            }
        }

        #[derive(Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Tagged<'a, U> {
            State(&'a State<U>),
        }
        match self {
            Delivery::State(s) => Tagged::State(s).serialize(serializer),
            Delivery::Updates(b) => {
                let mut m = serializer.serialize_struct("Updates", 5)?;
                m.serialize_field("type", "updates")?;
                m.serialize_field("epoch", &b.epoch)?;
                m.serialize_field("from", &b.from)?;
                m.serialize_field("to", &b.to)?;
                m.serialize_field("users", &Users(&b.updates))?;
                m.end()
            }
        }
    }
}

impl<U, S, C, R, M> Subscription<U, S, C, R, M> {
    /// A subscription that first hands out `state`, then what `rx` receives.
    pub(super) fn new(
        hub: Hub<U, S, C, R, M>,
        state: Arc<State<U>>,
        rx: broadcast::Receiver<Arc<Update<U>>>,
    ) -> Self {
        Subscription {
            hub,
            pending: Some(state),
            rx,
            gathered: Vec::new(),
            gather_until: None,
        }
    }
}

/// One subscriber's view of the hub: a [`State`], then every update after it, in version
/// order. Falling more than the backlog behind yields a fresh state, never a silent gap.
///
/// Its receiving methods are cancel-safe: a `recv_gathered` dropped while it waits (in a
/// `select!` that took another branch) keeps what it had gathered for the next call.
pub struct Subscription<U, S, C = SystemClock, R = String, M = ()> {
    hub: Hub<U, S, C, R, M>,
    pending: Option<Arc<State<U>>>,
    rx: broadcast::Receiver<Arc<Update<U>>>,
    /// Updates received and not yet delivered, and when a gathering call hands them out.
    gathered: Vec<Arc<Update<U>>>,
    gather_until: Option<tokio::time::Instant>,
}

impl<U, S, C, R, M> fmt::Debug for Subscription<U, S, C, R, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("pending_state", &self.pending.is_some())
            .field("gathered", &self.gathered.len())
            .finish_non_exhaustive()
    }
}

impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> Subscription<U, S, C, R, M> {
    /// The next delivery: one update (or what an interrupted
    /// [`recv_gathered`](Self::recv_gathered) had gathered), or a state; `None` once the hub is
    /// gone.
    pub async fn recv(&mut self) -> Option<Delivery<U>> {
        if let Some(ready) = self.ready() {
            return Some(ready);
        }
        match self.rx.recv().await {
            Ok(update) => Batch::of(vec![update]).map(Delivery::Updates),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Delivery::State(self.resync())),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next delivery, gathering what else is published within `linger` after the first
    /// update (and everything already waiting) into one: what a connection's forwarder sends.
    /// A burst then costs each client one message, at most the size of a state. `None` once
    /// the hub is gone.
    pub async fn recv_gathered(&mut self, linger: Duration) -> Option<Delivery<U>> {
        if let Some(state) = self.pending.take() {
            return Some(Delivery::State(state));
        }
        if self.gathered.is_empty() {
            match self.rx.recv().await {
                Ok(update) => {
                    self.gathered.push(update);
                    self.gather_until = Some(tokio::time::Instant::now() + linger);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Some(Delivery::State(self.resync()))
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
        if let Some(until) = self.gather_until {
            tokio::time::sleep_until(until).await;
        }
        self.ready()
    }

    /// What can be delivered without waiting: a pending state, or what was gathered plus what
    /// is queued.
    fn ready(&mut self) -> Option<Delivery<U>> {
        if let Some(state) = self.pending.take() {
            return Some(Delivery::State(state));
        }
        if self.gathered.is_empty() {
            return None;
        }
        loop {
            match self.rx.try_recv() {
                Ok(update) => self.gathered.push(update),
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    return Some(Delivery::State(self.resync()))
                }
                Err(_) => break,
            }
        }
        self.gather_until = None;
        Batch::of(std::mem::take(&mut self.gathered)).map(Delivery::Updates)
    }

    /// How many updates wait for this subscriber.
    pub fn pending(&self) -> usize {
        self.rx.len()
    }

    /// The next delivery (one update, or a state) if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<Delivery<U>> {
        if let Some(ready) = self.ready() {
            return Some(ready);
        }
        match self.rx.try_recv() {
            Ok(update) => Batch::of(vec![update]).map(Delivery::Updates),
            Err(broadcast::error::TryRecvError::Lagged(_)) => Some(Delivery::State(self.resync())),
            Err(_) => None,
        }
    }

    /// Drops whatever is queued and starts again from the current state (which the next
    /// [`recv`](Self::recv) also returns): for a client that asked, or that could not be sent
    /// what it was due.
    pub fn resync(&mut self) -> Arc<State<U>> {
        let (state, rx) = self.hub.state_and_receiver();
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
