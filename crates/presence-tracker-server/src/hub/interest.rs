//! Presence by interest: which subscriptions want which user's updates.
//!
//! A subscription of [`Interest::Users`](super::Interest::Users) has an [`Inbox`], registered in
//! the hub's [`Interests`] under each user it shows. Publishing an update of a user looks the
//! user up and pushes the update (an `Arc`, shared) into those inboxes only: a publication costs
//! O(the connections interested in it), never O(every connection). Registration, delivery and
//! the subscription's state are all made under the hub's lock, the one that orders versions, so
//! an inbox holds exactly the updates of its users after its state, in version order.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::wire::Update;

/// The inboxes interested in each user.
pub(crate) struct Interests<U> {
    by_user: HashMap<U, HashMap<u64, Arc<Inbox<U>>>>,
    next_id: u64,
}

impl<U> Default for Interests<U> {
    fn default() -> Self {
        Interests {
            by_user: HashMap::new(),
            next_id: 1,
        }
    }
}

impl<U: Hash + Eq + Clone> Interests<U> {
    /// A new inbox holding at most `capacity` updates before it counts as lagged.
    pub(crate) fn inbox(&mut self, capacity: usize) -> Arc<Inbox<U>> {
        let id = self.next_id;
        self.next_id += 1;
        Arc::new(Inbox {
            id,
            capacity: capacity.max(1),
            queue: Mutex::new(Queue {
                updates: VecDeque::new(),
                lagged: false,
            }),
            notify: Notify::new(),
        })
    }

    /// `inbox` wants the updates of `users` from now on.
    pub(crate) fn add(&mut self, inbox: &Arc<Inbox<U>>, users: &[U]) {
        for user in users {
            self.by_user
                .entry(user.clone())
                .or_default()
                .insert(inbox.id, Arc::clone(inbox));
        }
    }

    /// `inbox` no longer wants the updates of `users`.
    pub(crate) fn remove(&mut self, inbox: &Inbox<U>, users: &[U]) {
        for user in users {
            if let Some(inboxes) = self.by_user.get_mut(user) {
                inboxes.remove(&inbox.id);
                if inboxes.is_empty() {
                    self.by_user.remove(user);
                }
            }
        }
    }

    /// Hands `update` to the inboxes of its user.
    pub(crate) fn deliver(&self, update: &Arc<Update<U>>) {
        if let Some(inboxes) = self.by_user.get(&update.user.user) {
            for inbox in inboxes.values() {
                inbox.push(update);
            }
        }
    }

    /// How many users some subscription is interested in.
    #[cfg(test)]
    pub(crate) fn users(&self) -> usize {
        self.by_user.len()
    }
}

/// One subscription's updates on their way: a queue its publisher pushes into and its
/// subscriber drains.
pub(crate) struct Inbox<U> {
    id: u64,
    capacity: usize,
    queue: Mutex<Queue<U>>,
    notify: Notify,
}

struct Queue<U> {
    updates: VecDeque<Arc<Update<U>>>,
    /// More than the capacity came before the subscriber took them: they were dropped, and the
    /// subscriber starts again from a state.
    lagged: bool,
}

/// What an inbox holds when its subscriber looks.
pub(crate) enum Taken<U> {
    /// Nothing yet.
    Empty,
    /// The subscriber fell behind: what was queued is gone.
    Lagged,
    /// The next update.
    Update(Arc<Update<U>>),
}

/// A queue that was this long stays allocated; a longer one is given back once drained, so no
/// subscriber keeps the memory of its largest burst.
const KEPT_CAPACITY: usize = 16;

impl<U> Inbox<U> {
    fn push(&self, update: &Arc<Update<U>>) {
        let mut queue = self.queue.lock();
        if queue.lagged {
            return;
        }
        if queue.updates.len() >= self.capacity {
            queue.lagged = true;
            queue.updates = VecDeque::new();
        } else {
            queue.updates.push_back(Arc::clone(update));
        }
        drop(queue);
        self.notify.notify_one();
    }

    /// The next update, without waiting.
    pub(crate) fn take(&self) -> Taken<U> {
        let mut queue = self.queue.lock();
        if queue.lagged {
            return Taken::Lagged;
        }
        match queue.updates.pop_front() {
            Some(update) => {
                if queue.updates.is_empty() && queue.updates.capacity() > KEPT_CAPACITY {
                    queue.updates = VecDeque::new();
                }
                Taken::Update(update)
            }
            None => Taken::Empty,
        }
    }

    /// The next update or the lag, waiting for one. Cancel-safe: a call dropped while it waits
    /// takes nothing.
    pub(crate) async fn next(&self) -> Taken<U> {
        loop {
            match self.take() {
                Taken::Empty => {}
                taken => return taken,
            }
            // A push between the look above and this wait leaves a permit: no wake is lost.
            self.notify.notified().await;
        }
    }

    /// Drops what is queued and the lag: the subscriber starts again from a state made under
    /// the hub's lock, as this is called.
    pub(crate) fn clear(&self) {
        let mut queue = self.queue.lock();
        queue.updates = VecDeque::new();
        queue.lagged = false;
    }

    /// How many updates wait.
    pub(crate) fn len(&self) -> usize {
        self.queue.lock().updates.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::UserState;
    use presence_tracker::{Presence, Timestamp};

    fn update(user: &str, version: u64) -> Arc<Update<String>> {
        Arc::new(Update::new(
            1,
            version,
            UserState::new(
                user.to_string(),
                Presence::Active,
                1,
                Timestamp::EPOCH,
                version,
            ),
        ))
    }

    #[test]
    fn an_update_reaches_the_inboxes_of_its_user_only() {
        let mut interests: Interests<String> = Interests::default();
        let (a, b) = (interests.inbox(8), interests.inbox(8));
        interests.add(&a, &["ada".into(), "bob".into()]);
        interests.add(&b, &["bob".into()]);
        interests.deliver(&update("ada", 1));
        interests.deliver(&update("bob", 2));
        interests.deliver(&update("cy", 3));
        assert_eq!((a.len(), b.len()), (2, 1));
        let Taken::Update(first) = a.take() else {
            panic!("ada's update")
        };
        assert_eq!(first.version, 1);

        interests.remove(&a, &["ada".into(), "bob".into()]);
        interests.deliver(&update("bob", 4));
        assert_eq!((a.len(), b.len()), (1, 2));
        interests.remove(&b, &["bob".into()]);
        assert_eq!(interests.users(), 0, "no empty entry is kept");
    }

    #[test]
    fn an_inbox_past_its_capacity_is_lagged_until_cleared() {
        let mut interests: Interests<String> = Interests::default();
        let inbox = interests.inbox(2);
        interests.add(&inbox, &["ada".into()]);
        for v in 1..=3 {
            interests.deliver(&update("ada", v));
        }
        assert!(matches!(inbox.take(), Taken::Lagged));
        assert!(matches!(inbox.take(), Taken::Lagged), "until cleared");
        inbox.clear();
        assert!(matches!(inbox.take(), Taken::Empty));
        interests.deliver(&update("ada", 4));
        assert!(matches!(inbox.take(), Taken::Update(u) if u.version == 4));
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let mut interests: Interests<String> = Interests::default();
        let inbox = interests.inbox(1024);
        interests.add(&inbox, &["ada".into()]);
        for v in 1..=500 {
            interests.deliver(&update("ada", v));
        }
        while let Taken::Update(_) = inbox.take() {}
        assert!(inbox.queue.lock().updates.capacity() <= KEPT_CAPACITY);
    }
}
