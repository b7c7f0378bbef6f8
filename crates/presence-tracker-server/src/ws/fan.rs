//! The rooms of one WebSocket route: a task per room with connections on the route, which
//! receives the room's deliveries once, encodes each message once, and hands every connection
//! sent the room the same bytes ([`RoomFan`]).
//!
//! A publication costs the room's task one receive, whatever the number of connections; a
//! gathering window costs each connection at most one message of each kind it is sent (the
//! room's members, its counts, its window). A connection whose queue is full is not waited for:
//! it misses what comes, and gets the room whole once its queue has room again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use presence_tracker::{Clock, Id, Metadata};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::link::Sent;
use crate::wire::{RoomOccupancy, RoomWindow, ServerMessage, Window};
use crate::{Hub, RoomDelivery, RoomSubscription};

/// Where a connection's room messages go: its queue of encoded messages, bounded in messages
/// and in bytes.
#[derive(Clone, Debug)]
pub(super) struct Outbox {
    tx: mpsc::Sender<Bytes>,
    /// The bytes in the queue (shared with the [`Inbox`] that takes them out).
    queued: Arc<AtomicUsize>,
    budget: usize,
}

/// The other end of an [`Outbox`]: the connection's task takes its room messages from it.
#[derive(Debug)]
pub(super) struct Inbox {
    rx: mpsc::Receiver<Bytes>,
    queued: Arc<AtomicUsize>,
}

/// A connection's room queue: at most `messages` messages, and a message is taken only into an
/// empty queue or one whose bytes stay within `budget` with it (so one message of any size
/// always goes, and a connection that does not read holds about `budget` bytes at most).
pub(super) fn queue(messages: usize, budget: usize) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(messages.max(1));
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            queued: Arc::clone(&queued),
            budget,
        },
        Inbox { rx, queued },
    )
}

impl Outbox {
    fn try_send(&self, json: Bytes) -> Result<(), TrySendError<Bytes>> {
        let len = json.len();
        let queued = self.queued.load(AtomicOrdering::Acquire);
        if queued > 0 && queued.saturating_add(len) > self.budget {
            return Err(TrySendError::Full(json));
        }
        self.queued.fetch_add(len, AtomicOrdering::AcqRel);
        self.tx.try_send(json).inspect_err(|_| {
            self.queued.fetch_sub(len, AtomicOrdering::AcqRel);
        })
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl Inbox {
    /// The next message (its bytes leave the queue's count).
    pub(super) async fn recv(&mut self) -> Option<Bytes> {
        let json = self.rx.recv().await?;
        self.queued.fetch_sub(json.len(), AtomicOrdering::AcqRel);
        Some(json)
    }

    #[cfg(test)]
    fn try_recv(&mut self) -> Result<Bytes, mpsc::error::TryRecvError> {
        let json = self.rx.try_recv()?;
        self.queued.fetch_sub(json.len(), AtomicOrdering::AcqRel);
        Ok(json)
    }
}

/// A connection as the route's rooms know it.
pub(super) type ConnectionKey = u64;

/// The rooms' fan-out of one route.
pub(super) struct RoomFan<U, S, C, M> {
    hub: Hub<U, S, C, String, M>,
    linger: Duration,
    /// How long a connection whose queue was full waits for the room whole.
    retry: Duration,
    tasks: Mutex<HashMap<String, Task>>,
}

/// A room's task, and how many connections it sends to.
struct Task {
    connections: usize,
    control: Arc<ControlQueue>,
    handle: JoinHandle<()>,
}

/// What a room's task is told, in order: a vector and a wake-up, which cost nothing while
/// empty (a channel would hold a block of 32 slots for every room watched).
#[derive(Default)]
struct ControlQueue {
    orders: Mutex<Vec<Control>>,
    wake: tokio::sync::Notify,
}

impl ControlQueue {
    fn push(&self, order: Control) {
        self.orders.lock().push(order);
        self.wake.notify_one();
    }
}

/// What a room's task is told.
enum Control {
    /// Send this connection the room as `sent`: whole now, then what changes.
    Open(ConnectionKey, Sent, Outbox),
    /// Stop sending it the room.
    Close(ConnectionKey),
}

impl<U, S, C, M> RoomFan<U, S, C, M>
where
    U: Id + Serialize,
    S: Id + Serialize,
    C: Clock + 'static,
    M: Metadata + Serialize,
{
    pub(super) fn new(hub: Hub<U, S, C, String, M>, linger: Duration, retry: Duration) -> Self {
        RoomFan {
            hub,
            linger,
            retry,
            tasks: Mutex::new(HashMap::new()),
        }
    }

    /// Starts sending `room` to a connection as `sent` (again, in its new view, if it was sent
    /// it: the room whole first).
    pub(super) fn open(&self, room: &str, key: ConnectionKey, sent: Sent, out: Outbox) {
        let mut tasks = self.tasks.lock();
        let task = match tasks.get_mut(room) {
            Some(task) => task,
            None => {
                let control = Arc::new(ControlQueue::default());
                let rx = Arc::clone(&control);
                let feed = self.hub.rooms().subscribe_updates(room.to_string());
                let handle =
                    tokio::spawn(run(self.hub.clone(), feed, rx, (self.linger, self.retry)));
                tasks.entry(room.to_string()).or_insert(Task {
                    connections: 0,
                    control,
                    handle,
                })
            }
        };
        task.connections += 1;
        task.control.push(Control::Open(key, sent, out));
    }
}

impl<U, S, C, M> RoomFan<U, S, C, M> {
    /// Stops sending `room` to a connection (opened once more than closed: each open counts).
    pub(super) fn close(&self, room: &str, key: ConnectionKey) {
        let mut tasks = self.tasks.lock();
        let Some(task) = tasks.get_mut(room) else {
            return;
        };
        task.connections = task.connections.saturating_sub(1);
        if task.connections == 0 {
            task.handle.abort();
            tasks.remove(room);
        } else {
            task.control.push(Control::Close(key));
        }
    }
}

/// A connection of a room's task.
struct Connection {
    sent: Sent,
    out: Outbox,
    /// Its queue was full: it missed messages, and gets the room whole when it has room.
    behind: bool,
    /// The epoch and version of the state it was sent whole: updates up to it are old news
    /// (they were on their way to this task when it made the state).
    held: Option<(u64, u64)>,
}

/// What a room's task sent last, so that it sends only what changed.
struct Sending<U, S, M> {
    /// The occupancy last sent: one that counts the same is not sent again.
    counted: Option<RoomOccupancy<String>>,
    /// Whether connections of the members view hold the members (the room is not big).
    listed: bool,
    /// The window last sent for each window in use.
    shown: HashMap<Window, Arc<RoomWindow<U, S, String, M>>>,
    /// A big room's counts go out at most every `counts_interval`: not before `counts_after`;
    /// `counts_due` when counts that changed were held back.
    counts_interval: Duration,
    counts_after: Option<Instant>,
    counts_due: Option<Instant>,
}

/// One room's task: until it is aborted (its last connection closed) or the hub is gone.
async fn run<U, S, C, M>(
    hub: Hub<U, S, C, String, M>,
    mut feed: RoomSubscription<U, S, C, String, M>,
    control: Arc<ControlQueue>,
    (linger, retry): (Duration, Duration),
) where
    U: Id + Serialize,
    S: Id + Serialize,
    C: Clock + 'static,
    M: Metadata + Serialize,
{
    let room = feed.room().clone();
    let mut connections: HashMap<ConnectionKey, Connection> = HashMap::new();
    let mut sending = Sending {
        counted: None,
        // Connections get the room as it is now when they open: listed unless it is big.
        listed: !hub.rooms().occupancy(room.as_str()).big,
        shown: HashMap::new(),
        counts_interval: hub.config().big_room_counts,
        counts_after: None,
        counts_due: None,
    };
    let mut retry_at: Option<Instant> = None;
    loop {
        tokio::select! {
            () = control.wake.notified() => {
                let orders = std::mem::take(&mut *control.orders.lock());
                for order in orders {
                    match order {
                        Control::Open(key, sent, out) => {
                            let mut c = Connection { sent, out, behind: false, held: None };
                            whole(&hub, &room, &mut c);
                            if c.behind && retry_at.is_none() {
                                retry_at = Some(Instant::now() + retry);
                            }
                            connections.insert(key, c);
                        }
                        Control::Close(key) => {
                            connections.remove(&key);
                        }
                    }
                }
            }
            () = sleep_until(retry_at), if retry_at.is_some() => {
                retry_at = None;
                for c in connections.values_mut().filter(|c| c.behind) {
                    c.behind = false;
                    whole(&hub, &room, c);
                    if c.behind {
                        retry_at = Some(Instant::now() + retry);
                    }
                }
            }
            () = sleep_until(sending.counts_due), if sending.counts_due.is_some() => {
                sending.counts_due = None;
                if counts_now(&hub, &room, &mut connections, &mut sending) && retry_at.is_none() {
                    retry_at = Some(Instant::now() + retry);
                }
            }
            delivery = feed.recv_gathered(linger) => {
                let Some(delivery) = delivery else { return };
                if fan_out(&hub, &room, &delivery, &mut connections, &mut sending) && retry_at.is_none() {
                    retry_at = Some(Instant::now() + retry);
                }
            }
        }
    }
}

/// Sends a connection the room whole, as it is sent it: the state (or the counts of a big
/// room), the counts, or the counts and its window.
fn whole<U, S, C, M>(hub: &Hub<U, S, C, String, M>, room: &str, c: &mut Connection)
where
    U: Id + Serialize,
    S: Id + Serialize,
    C: Clock + 'static,
    M: Metadata + Serialize,
{
    // A big room's counts, without making its state.
    let occupancy = hub.rooms().occupancy(room);
    let mut messages = Vec::with_capacity(2);
    c.held = None;
    match c.sent {
        Sent::Members if !occupancy.big => {
            let state = hub.rooms().state(room);
            c.held = Some((state.epoch, state.version));
            messages.extend(RoomDelivery::State(state).to_json().ok());
        }
        Sent::Members | Sent::Occupancy => messages.extend(occupancy_json(&occupancy)),
        Sent::Window(window) => {
            messages.extend(occupancy_json(&occupancy));
            messages.extend(hub.rooms().window(room, window).to_json().ok());
        }
    }
    for json in messages {
        if !give(c, json) {
            return;
        }
    }
}

/// Sends what a delivery changes to every connection not behind; whether one fell behind.
fn fan_out<U, S, C, M>(
    hub: &Hub<U, S, C, String, M>,
    room: &str,
    delivery: &RoomDelivery<U, S, String, M>,
    connections: &mut HashMap<ConnectionKey, Connection>,
    sending: &mut Sending<U, S, M>,
) -> bool
where
    U: Id + Serialize,
    S: Id + Serialize,
    C: Clock + 'static,
    M: Metadata + Serialize,
{
    let occupancy = delivery.occupancy();
    let mut recount = !sending
        .counted
        .as_ref()
        .is_some_and(|c| c.counts_as(&occupancy));
    // A big room's counts are paced, but for the members view's switch to them.
    let switching = delivery.big() && sending.listed;
    let now = Instant::now();
    if recount && occupancy.big && !switching && sending.counts_after.is_some_and(|t| now < t) {
        sending.counts_due = sending.counts_after;
        recount = false;
    }
    let counts = if recount {
        if occupancy.big {
            sending.counts_after = Some(now + sending.counts_interval);
        }
        sending.counted = Some(occupancy.clone());
        occupancy_json(&occupancy)
    } else {
        None
    };
    // Updates a connection sent the room whole after them holds already.
    let span = match delivery {
        RoomDelivery::Updates(b) if !delivery.big() && sending.listed => Some((b.epoch(), b.to())),
        _ => None,
    };
    // The members view: the delivery (the state, once the room is listed again), or the counts
    // of a big room (once more when it becomes big).
    let members = if delivery.big() {
        let json = if recount || switching {
            if switching && sending.counts_after.is_none_or(|t| now >= t) {
                sending.counts_after = Some(now + sending.counts_interval);
            }
            occupancy_json(&occupancy)
        } else {
            None
        };
        sending.listed = false;
        json
    } else {
        let json = if sending.listed || matches!(delivery, RoomDelivery::State(_)) {
            delivery.to_json().ok()
        } else {
            RoomDelivery::State(hub.rooms().state(room)).to_json().ok()
        };
        sending.listed = true;
        json
    };
    // Each window in use, once, if it changed.
    let mut windows: HashMap<Window, Option<Bytes>> = HashMap::new();
    for c in connections.values() {
        if let Sent::Window(window) = c.sent {
            windows.entry(window).or_insert_with(|| {
                let now = hub.rooms().window(room, window);
                if sending
                    .shown
                    .get(&window)
                    .is_some_and(|s| Arc::ptr_eq(s, &now))
                {
                    return None;
                }
                let json = now.to_json().ok();
                sending.shown.insert(window, now);
                json
            });
        }
    }
    sending.shown.retain(|w, _| windows.contains_key(w));
    let mut behind = false;
    connections.retain(|_, c| {
        if c.behind {
            return true; // the room comes whole when its queue has room
        }
        let old = match (span, c.held) {
            (Some((epoch, to)), Some((held_epoch, version))) => {
                epoch == held_epoch && to <= version
            }
            _ => false,
        };
        let (first, second) = match c.sent {
            Sent::Members if old => (None, None),
            Sent::Members => (members.as_ref(), None),
            Sent::Occupancy => (counts.as_ref(), None),
            Sent::Window(window) => (
                counts.as_ref(),
                windows.get(&window).and_then(Option::as_ref),
            ),
        };
        for json in [first, second].into_iter().flatten() {
            if !give(c, json.clone()) {
                break;
            }
        }
        behind |= c.behind;
        !c.out.is_closed()
    });
    behind
}

/// Sends the room's counts now, if they changed since the last sent, to every connection sent
/// them (the members view while the room is big); whether a connection fell behind.
fn counts_now<U, S, C, M>(
    hub: &Hub<U, S, C, String, M>,
    room: &str,
    connections: &mut HashMap<ConnectionKey, Connection>,
    sending: &mut Sending<U, S, M>,
) -> bool
where
    U: Id + Serialize,
    S: Id + Serialize,
    C: Clock + 'static,
    M: Metadata + Serialize,
{
    let occupancy = hub.rooms().occupancy(room);
    if sending
        .counted
        .as_ref()
        .is_some_and(|c| c.counts_as(&occupancy))
    {
        return false;
    }
    let Some(json) = occupancy_json(&occupancy) else {
        return false;
    };
    if occupancy.big {
        sending.counts_after = Some(Instant::now() + sending.counts_interval);
    }
    sending.counted = Some(occupancy);
    let mut behind = false;
    for c in connections.values_mut().filter(|c| !c.behind) {
        if c.sent != Sent::Members || !sending.listed {
            give(c, json.clone());
            behind |= c.behind;
        }
    }
    behind
}

/// Puts a message in a connection's queue; `false` (and the connection behind) if it is full.
fn give(c: &mut Connection, json: Bytes) -> bool {
    match c.out.try_send(json) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            c.behind = true;
            false
        }
        Err(TrySendError::Closed(_)) => false,
    }
}

/// The `room_occupancy` message's JSON.
fn occupancy_json(occupancy: &RoomOccupancy<String>) -> Option<Bytes> {
    let message = ServerMessage::<(), (), String, ()>::RoomOccupancy(occupancy.clone());
    serde_json::to_vec(&message).ok().map(Bytes::from)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use presence_tracker::{Activity, ManualClock, Policy, PresenceTracker};
    use serde_json::Value;

    use super::*;
    use crate::HubConfig;

    type TestHub = Hub<String, String, ManualClock, String, String>;

    fn hub() -> (TestHub, ManualClock) {
        let clock = ManualClock::new();
        let tracker = PresenceTracker::with_clock(Policy::default(), clock.clone());
        (Hub::new(tracker, HubConfig::default()), clock)
    }

    /// Lets the room's task run: time stands still, so no gathering window ends.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn json(bytes: &Bytes) -> Value {
        serde_json::from_slice(bytes).expect("json")
    }

    /// A big room's counts go to a connection at most once per `big_room_counts` (here 1 s),
    /// the latest when the time is up, however many gathering windows changed them; a small
    /// room's would go once per window.
    #[tokio::test(start_paused = true)]
    async fn a_big_rooms_counts_are_paced() {
        let clock = ManualClock::new();
        let tracker = PresenceTracker::with_clock(Policy::default(), clock.clone());
        let config = HubConfig::default()
            .big_room(2)
            .big_room_counts(Duration::from_secs(1));
        let hub: TestHub = Hub::new(tracker, config);
        let join = |i: usize| {
            let session = format!("s{i}");
            hub.connect(format!("u{i}"), session.clone(), "c", Activity::Active)
                .expect("connects");
            hub.rooms()
                .join(&session, "doc".into(), "m".into())
                .expect("joins");
        };
        for i in 0..3 {
            join(i);
        }
        let fan = RoomFan::new(
            hub.clone(),
            Duration::from_millis(50),
            Duration::from_millis(250),
        );
        let (tx, mut counts) = queue(64, usize::MAX);
        fan.open("doc", 1, Sent::Occupancy, tx);
        settle().await;
        let mut got = Vec::new();
        let drain = |rx: &mut Inbox, got: &mut Vec<u64>| {
            while let Ok(m) = rx.try_recv() {
                let m = json(&m);
                assert_eq!(m["type"], "room_occupancy");
                got.push(m["users"]["active"].as_u64().expect("a count"));
            }
        };
        drain(&mut counts, &mut got);
        assert_eq!(got, [3], "the counts at once");
        // Ten gathering windows with a join each, within 0.6 s.
        for i in 3..13 {
            join(i);
            settle().await;
            tokio::time::advance(Duration::from_millis(60)).await;
            settle().await;
        }
        drain(&mut counts, &mut got);
        assert_eq!(
            got,
            [3, 4],
            "the first change at once, the others held back"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        drain(&mut counts, &mut got);
        assert_eq!(got, [3, 4, 13], "the latest when the second is up");
    }

    /// A connection whose queue is full is not waited for: it misses the updates of the
    /// gathering windows that find it full, then, once its queue has room, it is sent the room
    /// whole, at the version it is at; a connection that reads was sent each window's updates.
    #[tokio::test(start_paused = true)]
    async fn a_connection_whose_queue_is_full_is_sent_the_room_whole_when_it_has_room() {
        let (hub, clock) = hub();
        for i in 0..3 {
            let session = format!("s{i}");
            hub.connect(format!("u{i}"), session.clone(), "c", Activity::Active)
                .expect("connects");
            hub.rooms()
                .join(&session, "doc".into(), "m0".into())
                .expect("joins");
        }
        let fan = RoomFan::new(
            hub.clone(),
            Duration::from_millis(50),
            Duration::from_millis(250),
        );
        let (slow_tx, mut slow) = queue(1, usize::MAX);
        let (reader_tx, mut reader) = queue(16, usize::MAX);
        fan.open("doc", 1, Sent::Members, slow_tx);
        fan.open("doc", 2, Sent::Members, reader_tx);
        settle().await;
        let mut read = Vec::new();
        while let Ok(m) = reader.try_recv() {
            read.push(json(&m));
        }
        assert_eq!(read.len(), 1);
        assert_eq!(read[0]["type"], "room_state");

        // Five gathering windows of changes; the slow connection reads nothing meanwhile.
        for round in 1..=5 {
            clock.advance(Duration::from_millis(100));
            hub.rooms()
                .update("s0", "doc", format!("m{round}"))
                .expect("updates");
            settle().await;
            tokio::time::advance(Duration::from_millis(60)).await;
            settle().await;
            while let Ok(m) = reader.try_recv() {
                read.push(json(&m));
            }
        }
        let updates: Vec<&Value> = read
            .iter()
            .filter(|m| m["type"] == "room_updates")
            .collect();
        assert_eq!(updates.len(), 5, "the reader: one message per window");

        // The slow connection holds its first state only; it reads it, and after the retry it
        // is sent the room whole, as it is.
        let first = json(&slow.try_recv().expect("its first state"));
        assert_eq!(first["type"], "room_state");
        assert!(slow.try_recv().is_err(), "the updates found its queue full");
        tokio::time::advance(Duration::from_millis(300)).await;
        settle().await;
        let again = json(&slow.try_recv().expect("the room whole"));
        assert_eq!(again["type"], "room_state");
        let version = hub.rooms().state("doc").version;
        assert_eq!(again["version"].as_u64(), Some(version));
        let ada = again["members"]
            .as_array()
            .expect("members")
            .iter()
            .find(|m| m["user"] == "u0")
            .cloned()
            .expect("u0");
        assert_eq!(ada["sessions"][0]["meta"], "m5");
        // Nothing else: the next window sends it what changes, as to the others.
        assert!(slow.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_queue_takes_bytes_up_to_its_budget_and_one_message_of_any_size() {
        let (out, mut inbox) = queue(16, 100);
        let bytes = |n: usize| Bytes::from(vec![b'x'; n]);
        assert!(out.try_send(bytes(80)).is_ok());
        assert!(matches!(
            out.try_send(bytes(30)),
            Err(TrySendError::Full(_))
        ));
        assert!(out.try_send(bytes(20)).is_ok(), "exactly the budget");
        assert_eq!(inbox.recv().await.map(|b| b.len()), Some(80));
        assert!(out.try_send(bytes(30)).is_ok());
        assert_eq!(inbox.try_recv().map(|b| b.len()), Ok(20));
        assert_eq!(inbox.try_recv().map(|b| b.len()), Ok(30));
        // Empty: a message over the budget goes, alone.
        assert!(out.try_send(bytes(1000)).is_ok());
        assert!(matches!(out.try_send(bytes(1)), Err(TrySendError::Full(_))));
        assert_eq!(inbox.try_recv().map(|b| b.len()), Ok(1000));
        assert!(out.try_send(bytes(1)).is_ok());
    }
}
