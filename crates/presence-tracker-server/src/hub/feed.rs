//! What a subscriber of the users receives: [`Delivery`] (a state, or gathered updates) and
//! the [`Subscription`] that hands them out.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use presence_tracker::{Clock, Id, Metadata, SystemClock};
use serde::Serialize;
use tokio::sync::broadcast;

use parking_lot::Mutex;

use super::interest::{Inbox, Interests, Taken};
use super::Hub;
use crate::wire::{updates_head, Scope, State, Update, UserState, UPDATES_TAIL};

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

impl<U: Serialize> Delivery<U> {
    /// This delivery as the server message's JSON, made without serialising anything twice: a
    /// state's is made once and shared, an update's once and shared, and the message of
    /// several gathered updates is spliced from their shared JSON (a copy of bytes).
    ///
    /// # Errors
    ///
    /// `U`'s serialisation failed.
    pub fn to_json(&self) -> Result<Bytes, serde_json::Error> {
        match self {
            Delivery::State(state) => state.to_json(),
            Delivery::Updates(batch) => batch.to_json(),
        }
    }
}

impl<U: Serialize> Batch<U> {
    /// The `updates` message of this batch as JSON: the update's own shared bytes when it
    /// holds one, else spliced from each update's shared JSON.
    ///
    /// # Errors
    ///
    /// `U`'s serialisation failed.
    pub fn to_json(&self) -> Result<Bytes, serde_json::Error> {
        if let [one] = self.updates.as_slice() {
            return one.to_json();
        }
        let mut json = updates_head(self.epoch, self.from, self.to).into_bytes();
        for (i, update) in self.updates.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            json.extend_from_slice(&update.user_json()?);
        }
        json.extend_from_slice(UPDATES_TAIL.as_bytes());
        Ok(Bytes::from(json))
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

/// What a [`Subscription`] is sent: every user, or the users it names.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Interest<U> {
    /// Every user's updates: a [`State`] of every online user, then every version.
    All,
    /// These users' updates only (a list, as Slack's `presence_sub`): a [`State`] of those of
    /// them who are online, then their updates. The hub finds a user's subscribers through an
    /// index, so what one publication costs grows with the connections interested in it, not
    /// with every connection. Duplicates count once.
    Users(Vec<U>),
}

impl<U> Interest<U> {
    /// The scope of the states and updates of this interest.
    pub fn scope(&self) -> Scope {
        match self {
            Interest::All => Scope::All,
            Interest::Users(_) => Scope::Users,
        }
    }
}

/// Where a subscription's updates come from.
enum Source<U> {
    /// The hub's ring of every update.
    All(broadcast::Receiver<Arc<Update<U>>>),
    /// Its own inbox, which the hub fills with the updates of its users.
    Users(Arc<Inbox<U>>, Arc<[U]>),
}

/// What a subscription does at its end: its inbox leaves the hub's index.
type Unregister = Box<dyn FnOnce() + Send + Sync>;

impl<U, S, C, R, M> Subscription<U, S, C, R, M> {
    /// A subscription that first hands out `state`, then what `source` receives.
    fn with_source(hub: Hub<U, S, C, R, M>, state: Arc<State<U>>, source: Source<U>) -> Self {
        Subscription {
            hub,
            pending: Some(state),
            source,
            unregister: None,
            gathered: Vec::new(),
            gather_until: None,
        }
    }
}

impl<U, S, C, R, M> Drop for Subscription<U, S, C, R, M> {
    fn drop(&mut self) {
        if let Some(unregister) = self.unregister.take() {
            unregister();
        }
    }
}

/// One subscriber's view of the hub: a [`State`], then every update after it, in version
/// order: of every user ([`Interest::All`]), or of the users it is interested in. Falling
/// more than the backlog behind yields a fresh state, never a silent gap.
///
/// Its receiving methods are cancel-safe: a `recv_gathered` dropped while it waits (in a
/// `select!` that took another branch) keeps what it had gathered for the next call.
pub struct Subscription<U, S, C = SystemClock, R = String, M = ()> {
    hub: Hub<U, S, C, R, M>,
    pending: Option<Arc<State<U>>>,
    source: Source<U>,
    unregister: Option<Unregister>,
    /// Updates received and not yet delivered, and when a gathering call hands them out.
    gathered: Vec<Arc<Update<U>>>,
    gather_until: Option<tokio::time::Instant>,
}

impl<U, S, C, R, M> fmt::Debug for Subscription<U, S, C, R, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = match self.source {
            Source::All(_) => Scope::All,
            Source::Users(..) => Scope::Users,
        };
        f.debug_struct("Subscription")
            .field("scope", &scope)
            .field("pending_state", &self.pending.is_some())
            .field("gathered", &self.gathered.len())
            .finish_non_exhaustive()
    }
}

/// What a subscription's source has for it now.
enum Next<U> {
    Update(Arc<Update<U>>),
    Lagged,
    Closed,
    Empty,
}

impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> Subscription<U, S, C, R, M> {
    /// A subscription of `interest`, starting with its state.
    pub(super) fn new(hub: Hub<U, S, C, R, M>, interest: Interest<U>) -> Self {
        let mut published = hub.inner.published.lock();
        match interest {
            Interest::All => {
                // Under the lock that orders the sends: the receiver gets exactly the versions
                // after.
                let rx = hub.inner.updates.subscribe();
                let state = hub.state_locked(&mut published);
                drop(published);
                Subscription::with_source(hub, state, Source::All(rx))
            }
            Interest::Users(users) => {
                let users = dedup(users);
                let inbox = {
                    // Under `published`: the inbox gets exactly the updates after the state.
                    let mut interests = hub.inner.interests.lock();
                    let inbox = interests.inbox(hub.inner.config.backlog);
                    interests.add(&inbox, &users);
                    inbox
                };
                let state = hub.users_state_locked(&published, &users);
                drop(published);
                let unregister = unregister(&hub.inner.interests, &inbox, &users);
                let mut subscription =
                    Subscription::with_source(hub, state, Source::Users(inbox, users));
                subscription.unregister = Some(unregister);
                subscription
            }
        }
    }

    /// What this subscription is sent from now on: the next delivery is a [`State`] of the new
    /// interest, and what was queued for the old one is dropped.
    pub fn set_interest(&mut self, interest: Interest<U>) {
        if let Some(unregister) = self.unregister.take() {
            unregister();
        }
        let fresh = Subscription::new(self.hub.clone(), interest);
        // The old source's registration is gone; the new one's moves here.
        *self = fresh;
    }

    /// The scope of what this subscription is sent.
    pub fn scope(&self) -> Scope {
        match self.source {
            Source::All(_) => Scope::All,
            Source::Users(..) => Scope::Users,
        }
    }

    /// The next delivery: one update (or what an interrupted
    /// [`recv_gathered`](Self::recv_gathered) had gathered), or a state; `None` once the hub is
    /// gone.
    pub async fn recv(&mut self) -> Option<Delivery<U>> {
        if let Some(ready) = self.ready() {
            return Some(ready);
        }
        match self.next().await {
            Next::Update(update) => Batch::of(vec![update]).map(Delivery::Updates),
            Next::Lagged => Some(Delivery::State(self.resync())),
            Next::Closed | Next::Empty => None,
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
            match self.next().await {
                Next::Update(update) => {
                    self.gathered.push(update);
                    self.gather_until = Some(tokio::time::Instant::now() + linger);
                }
                Next::Lagged => return Some(Delivery::State(self.resync())),
                Next::Closed | Next::Empty => return None,
            }
        }
        if let Some(until) = self.gather_until {
            tokio::time::sleep_until(until).await;
        }
        self.ready()
    }

    /// The next update of the source, waiting for one. Cancel-safe.
    async fn next(&mut self) -> Next<U> {
        match &mut self.source {
            Source::All(rx) => match rx.recv().await {
                Ok(update) => Next::Update(update),
                Err(broadcast::error::RecvError::Lagged(_)) => Next::Lagged,
                Err(broadcast::error::RecvError::Closed) => Next::Closed,
            },
            Source::Users(inbox, _) => match inbox.next().await {
                Taken::Update(update) => Next::Update(update),
                Taken::Lagged => Next::Lagged,
                Taken::Empty => Next::Empty,
            },
        }
    }

    /// The next update of the source if one is waiting.
    fn try_next(&mut self) -> Next<U> {
        match &mut self.source {
            Source::All(rx) => match rx.try_recv() {
                Ok(update) => Next::Update(update),
                Err(broadcast::error::TryRecvError::Lagged(_)) => Next::Lagged,
                Err(broadcast::error::TryRecvError::Closed) => Next::Closed,
                Err(broadcast::error::TryRecvError::Empty) => Next::Empty,
            },
            Source::Users(inbox, _) => match inbox.take() {
                Taken::Update(update) => Next::Update(update),
                Taken::Lagged => Next::Lagged,
                Taken::Empty => Next::Empty,
            },
        }
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
            match self.try_next() {
                Next::Update(update) => self.gathered.push(update),
                Next::Lagged => return Some(Delivery::State(self.resync())),
                Next::Closed | Next::Empty => break,
            }
        }
        self.gather_until = None;
        Batch::of(std::mem::take(&mut self.gathered)).map(Delivery::Updates)
    }

    /// How many updates wait for this subscriber.
    pub fn pending(&self) -> usize {
        match &self.source {
            Source::All(rx) => rx.len(),
            Source::Users(inbox, _) => inbox.len(),
        }
    }

    /// The next delivery (one update, or a state) if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<Delivery<U>> {
        if let Some(ready) = self.ready() {
            return Some(ready);
        }
        match self.try_next() {
            Next::Update(update) => Batch::of(vec![update]).map(Delivery::Updates),
            Next::Lagged => Some(Delivery::State(self.resync())),
            Next::Closed | Next::Empty => None,
        }
    }

    /// Drops whatever is queued and starts again from the current state of its interest
    /// (which the next [`recv`](Self::recv) also returns): for a client that asked, or that
    /// could not be sent what it was due.
    pub fn resync(&mut self) -> Arc<State<U>> {
        let hub = self.hub.clone();
        let mut published = hub.inner.published.lock();
        let state = match &mut self.source {
            Source::All(rx) => {
                *rx = hub.inner.updates.subscribe();
                hub.state_locked(&mut published)
            }
            Source::Users(inbox, users) => {
                // Under the lock that fills the inbox: it holds exactly what comes after.
                inbox.clear();
                hub.users_state_locked(&published, users)
            }
        };
        drop(published);
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

/// `users` once each, in their first order.
fn dedup<U: Id>(users: Vec<U>) -> Arc<[U]> {
    let mut seen = HashSet::with_capacity(users.len());
    users
        .into_iter()
        .filter(|u| seen.insert(u.clone()))
        .collect()
}

/// Takes `inbox` out of the hub's index for `users`.
fn unregister<U: Id>(
    interests: &Arc<Mutex<Interests<U>>>,
    inbox: &Arc<Inbox<U>>,
    users: &Arc<[U]>,
) -> Unregister {
    let (interests, inbox, users) = (Arc::clone(interests), Arc::clone(inbox), Arc::clone(users));
    Box::new(move || interests.lock().remove(&inbox, &users))
}
