//! The hub's rooms: each room's versions in one order without a gap (also under concurrent
//! callers), a lagging subscriber given a fresh room state, a metadata change as one update, a
//! room that empties and fills again as a new epoch, and bad input that changes nothing. Time
//! moves through a `ManualClock` (and tokio's paused clock for gathering); nothing sleeps.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use presence_tracker::{
    Activity, Error, ManualClock, Policy, Presence, PresenceTracker, RoomChange, SystemClock,
};
use presence_tracker_server::wire::{ByPresence, Member, RoomState};
use presence_tracker_server::{Hub, HubConfig, Meta, RoomBatch, RoomDelivery, RoomSubscription};
use serde_json::json;

type TestHub = Hub<String, String, ManualClock, String, Meta>;
type Feed = RoomSubscription<String, String, ManualClock, String, Meta>;

fn hub_with(policy: Policy, config: HubConfig) -> (TestHub, ManualClock) {
    let clock = ManualClock::new();
    let tracker = PresenceTracker::with_clock(policy, clock.clone());
    (Hub::new(tracker, config), clock)
}

fn hub() -> (TestHub, ManualClock) {
    hub_with(Policy::default(), HubConfig::default())
}

fn meta(v: serde_json::Value) -> Meta {
    Meta::new(&v).expect("json")
}

/// A member as compared: presence, and each session with its metadata's JSON.
type Shown = (Presence, Vec<(String, String)>);

fn shown(m: &Member<String, String, Meta>) -> Shown {
    let sessions = m
        .sessions
        .iter()
        .map(|s| (s.session.clone(), s.meta.to_string()))
        .collect();
    (m.presence, sessions)
}

/// What a client holds of one room: the rule of `wire` (rooms), applied to deliveries.
#[derive(Debug, Default)]
struct RoomClient {
    epoch: u64,
    version: u64,
    members: BTreeMap<String, Shown>,
    states: usize,
    updates: usize,
    /// Every change applied, as (user, change).
    changes: Vec<(String, RoomChange)>,
}

impl RoomClient {
    fn apply(&mut self, d: &RoomDelivery<String, String, String, Meta>) {
        match d {
            RoomDelivery::State(s) => self.replace(s),
            RoomDelivery::Updates(b) => self.update(b),
        }
    }

    fn replace(&mut self, s: &RoomState<String, String, String, Meta>) {
        self.states += 1;
        self.epoch = s.epoch;
        self.version = s.version;
        self.members = s
            .members
            .iter()
            .map(|m| (m.user.clone(), shown(m)))
            .collect();
    }

    fn update(&mut self, b: &RoomBatch<String, String, String, Meta>) {
        self.updates += 1;
        assert_eq!(b.epoch(), self.epoch, "room updates of another epoch");
        assert_eq!(
            b.from(),
            self.version + 1,
            "a room version skipped or repeated"
        );
        let mut last = self.version;
        for m in b.members() {
            assert!(
                m.version > last && m.version <= b.to(),
                "members in version order"
            );
            last = m.version;
            self.changes.push((m.user.clone(), m.change));
            if m.presence == Presence::Offline {
                self.members.remove(&m.user);
            } else {
                let sessions = m
                    .sessions
                    .iter()
                    .map(|s| (s.session.clone(), s.meta.to_string()))
                    .collect();
                self.members.insert(m.user.clone(), (m.presence, sessions));
            }
        }
        self.version = b.to();
    }

    fn drain(&mut self, feed: &mut Feed) {
        while let Some(d) = feed.try_recv() {
            self.apply(&d);
        }
    }
}

/// The room as the tracker has it.
fn truth(hub: &TestHub, room: &str) -> BTreeMap<String, Shown> {
    let Some(view) = hub.tracker().rooms().get(room) else {
        return BTreeMap::new();
    };
    view.members
        .iter()
        .map(|m| {
            let sessions = m
                .sessions
                .iter()
                .map(|s| (s.session.clone(), s.meta.to_string()))
                .collect();
            (m.user.clone(), (m.presence, sessions))
        })
        .collect()
}

fn connect(hub: &TestHub, user: &str, session: &str) {
    hub.connect(user.into(), session.into(), session, Activity::Active)
        .expect("connects");
}

#[test]
fn a_room_subscriber_gets_the_state_then_each_change_once() {
    let (hub, clock) = hub();
    let mut feed = hub.rooms().subscribe("doc-1".into()).expect("a room id");
    let mut client = RoomClient::default();
    client.drain(&mut feed);
    assert_eq!(
        (client.states, client.epoch, client.members.len()),
        (1, 0, 0)
    );

    connect(&hub, "ada", "a-1");
    connect(&hub, "bob", "b-1");
    hub.rooms()
        .join(
            "a-1",
            "doc-1".into(),
            meta(json!({"name": "Ada", "section": 1})),
        )
        .expect("joins");
    client.drain(&mut feed);
    assert_eq!(
        client.states, 2,
        "the room's history began: its first state"
    );
    assert_ne!(client.epoch, 0);
    hub.rooms()
        .join("b-1", "doc-1".into(), meta(json!({"name": "Bob"})))
        .expect("joins");
    client.drain(&mut feed);
    assert_eq!(client.changes, [("bob".into(), RoomChange::Joined)]);

    // A metadata change: one update, never a leave and a join.
    clock.advance(Duration::from_millis(100));
    hub.rooms()
        .update("a-1", "doc-1", meta(json!({"name": "Ada", "section": 2})))
        .expect("updates");
    client.drain(&mut feed);
    assert_eq!(client.changes[1..], [("ada".into(), RoomChange::Updated)]);
    assert_eq!(
        client.members["ada"].1[0].1,
        r#"{"name":"Ada","section":2}"#
    );

    // ada's second tab joins the room: still one member, two sessions.
    connect(&hub, "ada", "a-2");
    hub.rooms()
        .join(
            "a-2",
            "doc-1".into(),
            meta(json!({"name": "Ada", "section": 4})),
        )
        .expect("joins");
    client.drain(&mut feed);
    assert_eq!(client.members["ada"].1.len(), 2);

    // A presence change reaches the room; so does leaving.
    hub.heartbeat("b-1", Activity::Background).expect("live");
    hub.rooms().leave("a-1", "doc-1").expect("in it");
    hub.rooms().leave("a-2", "doc-1").expect("in it");
    client.drain(&mut feed);
    assert_eq!(
        client.changes[2..],
        [
            ("ada".into(), RoomChange::Updated),
            ("bob".into(), RoomChange::Presence),
            ("ada".into(), RoomChange::Updated),
            ("ada".into(), RoomChange::Left),
        ]
    );
    assert_eq!(client.members, truth(&hub, "doc-1"));
    assert_eq!(client.members["bob"].0, Presence::Away);
    assert_eq!(hub.rooms().state("doc-1").version, client.version);
}

#[test]
fn a_late_joiner_gets_the_members_with_their_metadata() {
    let (hub, _clock) = hub();
    connect(&hub, "ada", "a-1");
    hub.rooms()
        .join(
            "a-1",
            "doc-1".into(),
            meta(json!({"name": "Ada", "color": "#e33"})),
        )
        .expect("joins");
    let mut feed = hub.rooms().subscribe("doc-1".into()).expect("a room id");
    let Some(RoomDelivery::State(state)) = feed.try_recv() else {
        panic!("a state first")
    };
    assert_eq!(state.members.len(), 1);
    assert_eq!(
        state.members[0].sessions[0].meta.to_string(),
        r##"{"color":"#e33","name":"Ada"}"##
    );
    // The state is shared until the room changes.
    assert!(std::sync::Arc::ptr_eq(&state, &hub.rooms().state("doc-1")));
}

#[test]
fn only_a_rooms_subscribers_get_its_messages() {
    let (hub, _clock) = hub();
    let mut one = hub.rooms().subscribe("doc-1".into()).expect("a room id");
    let mut two = hub.rooms().subscribe("doc-2".into()).expect("a room id");
    let (mut c1, mut c2) = (RoomClient::default(), RoomClient::default());
    c1.drain(&mut one);
    c2.drain(&mut two);
    connect(&hub, "ada", "a-1");
    connect(&hub, "ada", "a-2");
    hub.rooms()
        .join("a-1", "doc-1".into(), Meta::default())
        .expect("joins");
    c1.drain(&mut one);
    c2.drain(&mut two);
    assert_eq!((c1.states, c2.states), (2, 1), "doc-2 heard nothing");
    // One user in two rooms with two tabs: each room shows the tab that is in it.
    hub.rooms()
        .join("a-2", "doc-2".into(), Meta::default())
        .expect("joins");
    c1.drain(&mut one);
    c2.drain(&mut two);
    assert_eq!(c1.members["ada"].1[0].0, "a-1");
    assert_eq!(c2.members["ada"].1[0].0, "a-2");
    assert_eq!(hub.tracker().rooms().of_user("ada").len(), 2);
}

#[test]
fn a_subscriber_that_falls_behind_gets_a_fresh_room_state() {
    let (hub, clock) = hub_with(Policy::default(), HubConfig::default().room_backlog(4));
    let mut feed = hub.rooms().subscribe("doc-1".into()).expect("a room id");
    let mut client = RoomClient::default();
    client.drain(&mut feed);
    for i in 0..20 {
        let session = format!("s-{i}");
        connect(&hub, &format!("user-{i}"), &session);
        hub.rooms()
            .join(&session, "doc-1".into(), meta(json!({"n": i})))
            .expect("joins");
        clock.advance(Duration::from_millis(1));
    }
    client.drain(&mut feed);
    assert!(client.states >= 2, "the lag was answered with a state");
    assert_eq!(client.members.len(), 20);
    assert_eq!(client.members, truth(&hub, "doc-1"));
    assert_eq!(client.version, hub.rooms().state("doc-1").version);
}

#[test]
fn a_room_that_empties_and_fills_again_has_a_new_epoch() {
    let (hub, clock) = hub();
    let mut feed = hub.rooms().subscribe("doc-1".into()).expect("a room id");
    let mut client = RoomClient::default();
    connect(&hub, "ada", "a-1");
    hub.rooms()
        .join("a-1", "doc-1".into(), Meta::default())
        .expect("joins");
    client.drain(&mut feed);
    let first = client.epoch;
    hub.rooms().leave("a-1", "doc-1").expect("in it");
    client.drain(&mut feed);
    assert!(client.members.is_empty());
    clock.advance(Duration::from_millis(100));
    hub.rooms()
        .join("a-1", "doc-1".into(), Meta::default())
        .expect("joins");
    client.drain(&mut feed);
    assert_ne!(client.epoch, first, "a new history, a new epoch");
    assert_eq!(client.states, 3);
    assert_eq!(client.members, truth(&hub, "doc-1"));
}

#[test]
fn an_expired_session_leaves_its_rooms() {
    let (hub, clock) = hub();
    connect(&hub, "ada", "a-1");
    hub.rooms()
        .join("a-1", "doc-1".into(), Meta::default())
        .expect("joins");
    let mut feed = hub.rooms().subscribe("doc-1".into()).expect("a room id");
    let mut client = RoomClient::default();
    client.drain(&mut feed);
    hub.leave("a-1", "a-1").expect("live");
    clock.advance(Duration::from_secs(6));
    hub.tick();
    client.drain(&mut feed);
    assert_eq!(
        client.changes.last(),
        Some(&("ada".into(), RoomChange::Left))
    );
    assert!(client.members.is_empty());
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let policy = Policy::builder()
        .max_members_per_room(2)
        .max_rooms_per_session(2)
        .max_metadata_bytes(64)
        .build()
        .expect("valid");
    let (hub, clock) = hub_with(policy, HubConfig::default());
    for (user, session) in [("ada", "a-1"), ("bob", "b-1"), ("cid", "c-1")] {
        connect(&hub, user, session);
    }
    hub.rooms()
        .join("a-1", "doc-1".into(), meta(json!({"s": 1})))
        .expect("joins");
    hub.rooms()
        .join("b-1", "doc-1".into(), Meta::default())
        .expect("joins");
    let mut feed = hub.rooms().subscribe("doc-1".into()).expect("a room id");
    let mut client = RoomClient::default();
    client.drain(&mut feed);
    let before = (hub.rooms().state("doc-1"), truth(&hub, "doc-1"));
    clock.advance(Duration::from_secs(1));

    let big = meta(json!({ "x": "y".repeat(100) }));
    let refusals = [
        hub.rooms().join("c-1", "doc-1".into(), Meta::default()), // full
        hub.rooms().update("a-1", "doc-1", big.clone()),
        hub.rooms().join("a-1", "doc-1".into(), big),
        hub.rooms().leave("c-1", "doc-1"), // not in it
        hub.rooms().update("c-1", "doc-1", Meta::default()),
        hub.rooms().leave("a-1", "doc-9"),
        hub.rooms().join("a-1", String::new(), Meta::default()),
        hub.rooms().join("a-1", "d".repeat(300), Meta::default()),
        hub.rooms().join("nobody", "doc-1".into(), Meta::default()),
    ];
    let codes: Vec<String> = refusals
        .iter()
        .map(|r| {
            let e = r.as_ref().expect_err("refused");
            presence_tracker_server::wire::Refusal::from_error(e).code
        })
        .collect();
    assert_eq!(
        codes,
        [
            "room_full",
            "metadata_too_large",
            "metadata_too_large",
            "not_in_room",
            "not_in_room",
            "not_in_room",
            "bad_message",
            "bad_message",
            "unknown_session",
        ]
    );
    // Too many rooms for one session, and too soon after the last metadata change.
    hub.rooms()
        .join("a-1", "doc-2".into(), Meta::default())
        .expect("joins");
    let e = hub
        .rooms()
        .join("a-1", "doc-3".into(), Meta::default())
        .expect_err("a third room");
    assert!(matches!(e, Error::TooManyRooms { max: 2 }), "{e:?}");
    hub.rooms()
        .update("a-1", "doc-1", meta(json!({"s": 2})))
        .expect("updates");
    client.drain(&mut feed);
    let version = client.version;
    let e = hub
        .rooms()
        .update("a-1", "doc-1", meta(json!({"s": 3})))
        .expect_err("too soon");
    let refusal = presence_tracker_server::wire::Refusal::from_error(&e);
    assert_eq!(
        (refusal.code.as_str(), refusal.retry_after_ms),
        ("metadata_too_frequent", Some(50))
    );
    assert!(hub.rooms().subscribe(String::new()).is_err());

    client.drain(&mut feed);
    assert_eq!(client.version, version, "nothing published for a refusal");
    assert_eq!(client.version, before.0.version + 1, "only the one update");
    assert_eq!(client.members.len(), before.1.len());
    assert_eq!(client.members, truth(&hub, "doc-1"));
}

#[test]
fn set_leaves_the_rooms_not_named_and_keeps_the_same_quiet() {
    let (hub, clock) = hub();
    connect(&hub, "ada", "a-1");
    connect(&hub, "bob", "b-1");
    hub.rooms()
        .join("b-1", "doc-1".into(), Meta::default())
        .expect("joins");
    let m1 = meta(json!({"section": 1}));
    assert!(hub
        .rooms()
        .set(
            &"a-1".to_string(),
            [("doc-1".into(), m1.clone()), ("doc-2".into(), m1.clone())]
        )
        .is_empty());
    let mut feed = hub.rooms().subscribe("doc-1".into()).expect("a room id");
    let mut client = RoomClient::default();
    client.drain(&mut feed);
    clock.advance(Duration::from_secs(1));

    // A reconnect naming the same rooms with the same metadata: nothing anyone sees.
    let same = [("doc-1".into(), m1.clone()), ("doc-2".into(), m1.clone())];
    assert!(hub.rooms().set(&"a-1".to_string(), same).is_empty());
    client.drain(&mut feed);
    assert_eq!(client.updates, 0);

    // Another section, and doc-2 no more: one update here, and ada left doc-2.
    let m2 = meta(json!({"section": 2}));
    let refused = hub.rooms().set(
        &"a-1".to_string(),
        [("doc-1".into(), m2), ("".into(), Meta::default())],
    );
    assert_eq!(refused.len(), 1, "the empty room id");
    assert!(matches!(refused[0].1, Error::EmptyId));
    client.drain(&mut feed);
    assert_eq!(client.changes, [("ada".into(), RoomChange::Updated)]);
    assert_eq!(hub.tracker().rooms().of_session("a-1"), ["doc-1"]);
}

#[test]
fn a_restored_tracker_shows_its_rooms() {
    let (hub, clock) = hub();
    connect(&hub, "ada", "a-1");
    hub.rooms()
        .join("a-1", "doc-1".into(), meta(json!({"name": "Ada"})))
        .expect("joins");
    let snapshot = hub.tracker().snapshot();
    let restored: PresenceTracker<String, String, ManualClock, String, Meta> =
        PresenceTracker::restore(snapshot, Policy::default(), clock.clone()).expect("restores");
    let again = Hub::new(restored, HubConfig::default());
    let state = again.rooms().state("doc-1");
    assert_eq!(state.members.len(), 1);
    assert_ne!(state.epoch, hub.rooms().state("doc-1").epoch);
    // And it goes on from there.
    let mut feed = again.rooms().subscribe("doc-1".into()).expect("a room id");
    let mut client = RoomClient::default();
    client.drain(&mut feed);
    connect(&again, "bob", "b-1");
    again
        .rooms()
        .join("b-1", "doc-1".into(), Meta::default())
        .expect("joins");
    client.drain(&mut feed);
    assert_eq!(client.members, truth(&again, "doc-1"));
    assert_eq!(client.states, 1);
}

#[test]
fn concurrent_callers_never_show_a_room_gap_or_reordering() {
    let policy = Policy::builder()
        .metadata_interval(Duration::ZERO)
        .build()
        .expect("valid");
    let (hub, clock) = hub_with(policy, HubConfig::default().room_backlog(1 << 20));
    let rooms = ["doc-0", "doc-1", "doc-2"];
    let mut feeds: Vec<(String, Feed)> = rooms
        .iter()
        .flat_map(|r| (0..2).map(move |_| r.to_string()))
        .map(|r| (r.clone(), hub.rooms().subscribe(r).expect("a room id")))
        .collect();
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let hub = hub.clone();
            scope.spawn(move || {
                for i in 0..1_500u64 {
                    // Users shared between threads, sessions per thread, rooms shared by all.
                    let user = format!("user-{}", i % 5);
                    let session = format!("tab-{t}-{}", i % 3);
                    let room = rooms[((i / 3 + t) % 3) as usize];
                    let m = meta(json!({"t": t, "i": i}));
                    let outcome = match i % 9 {
                        0 => hub.rooms().leave(&session, room),
                        1 => hub.leave(&session, format!("c-{t}-{i}")),
                        2 => hub.heartbeat(&session, Activity::Background),
                        3 | 4 => hub.rooms().update(&session, room, m),
                        _ => hub.rooms().join(&session, room.to_string(), m),
                    };
                    if let Err(Error::UnknownSession) = outcome {
                        let _ = hub.connect(user, session, format!("c-{t}-{i}"), Activity::Active);
                    }
                }
            });
        }
        let hub = hub.clone();
        let clock = clock.clone();
        scope.spawn(move || {
            for _ in 0..300 {
                clock.advance(Duration::from_millis(100));
                hub.tick();
            }
        });
    });
    hub.tick();
    let mut updates = 0;
    for (room, feed) in &mut feeds {
        let mut client = RoomClient::default();
        client.drain(feed);
        updates += client.updates;
        assert_eq!(client.members, truth(&hub, room), "{room}");
        assert_eq!(client.version, hub.rooms().state(room.as_str()).version);
        // And a newcomer's state agrees too.
        let mut late = RoomClient::default();
        late.replace(&hub.rooms().state(room.as_str()));
        assert_eq!(late.members, truth(&hub, room));
    }
    assert!(updates > 1000, "the threads changed the rooms: {updates}");
}

#[tokio::test(start_paused = true)]
async fn a_burst_in_a_room_is_one_gathered_delivery() {
    // 53 versions published before the subscriber reads: a ring that holds them.
    let (hub, clock) = hub_with(Policy::default(), HubConfig::default().room_backlog(64));
    connect(&hub, "ada", "a-1");
    hub.rooms()
        .join("a-1", "doc-1".into(), Meta::default())
        .expect("joins");
    let mut feed = hub.rooms().subscribe("doc-1".into()).expect("a room id");
    let mut client = RoomClient::default();
    client.apply(&feed.recv().await.expect("the state"));
    for i in 0..50 {
        let session = format!("s-{i}");
        connect(&hub, &format!("user-{i}"), &session);
        hub.rooms()
            .join(&session, "doc-1".into(), Meta::default())
            .expect("joins");
    }
    for section in 0..3 {
        clock.advance(Duration::from_millis(60));
        hub.rooms()
            .update("a-1", "doc-1", meta(json!({ "section": section })))
            .expect("updates");
    }
    let Some(delivery) = feed.recv_gathered(Duration::from_millis(50)).await else {
        panic!("updates");
    };
    let RoomDelivery::Updates(batch) = &delivery else {
        panic!("updates, not a state");
    };
    assert_eq!((batch.from(), batch.to()), (1, 53));
    assert_eq!(batch.members().count(), 51, "the latest of each member");
    client.apply(&delivery);
    assert_eq!(client.members, truth(&hub, "doc-1"));
    assert_eq!(client.members["ada"].1[0].1, r#"{"section":2}"#);
    // As JSON: the wire's room_updates.
    let json = serde_json::to_value(&delivery).expect("serialises");
    assert_eq!(json["type"], "room_updates");
    assert_eq!(json["room"], "doc-1");
    assert_eq!(json["members"][50]["change"], "updated");
    // The shared JSON, spliced from each update's member JSON, is those very bytes.
    let spliced = delivery.to_json().expect("json");
    assert_eq!(
        spliced.as_ref(),
        serde_json::to_vec(&delivery)
            .expect("serialises")
            .as_slice()
    );
    // And a state's, made once: the same bytes twice, equal to its serialisation.
    let state = RoomDelivery::State(hub.rooms().state("doc-1"));
    let once = state.to_json().expect("json");
    assert_eq!(
        once.as_ref(),
        serde_json::to_vec(&state).expect("serialises").as_slice()
    );
    assert_eq!(
        once.as_ptr(),
        state.to_json().expect("json").as_ptr(),
        "made once"
    );
}

#[test]
fn the_default_metadata_type_is_unit() {
    // A hub without metadata, as the README's first examples build it.
    let hub: Hub<String, String> = Hub::new(
        PresenceTracker::new(Policy::default()),
        HubConfig::default(),
    );
    hub.connect("ada".into(), "a-1".into(), "c", Activity::Active)
        .expect("connects");
    hub.rooms().join("a-1", "lobby".into(), ()).expect("joins");
    let state = hub.rooms().state("lobby");
    assert_eq!(state.members[0].user, "ada");
    let _: Option<&Hub<String, String, SystemClock, String, ()>> = Some(&hub);
    let members: HashMap<_, _> = state
        .members
        .iter()
        .map(|m| (m.user.clone(), m.sessions.len()))
        .collect();
    assert_eq!(members["ada"], 1);
}

/// The occupancy a client holding `members` would count: users by presence, and each
/// member's sessions under its presence.
fn recount(members: &BTreeMap<String, Shown>) -> (ByPresence, ByPresence) {
    let (mut users, mut sessions) = (ByPresence::default(), ByPresence::default());
    for (presence, member_sessions) in members.values() {
        for (counts, n) in [
            (&mut users, 1),
            (&mut sessions, member_sessions.len() as u64),
        ] {
            match presence {
                Presence::Active => counts.active += n,
                Presence::Idle => counts.idle += n,
                Presence::Away => counts.away += n,
                Presence::Stale => counts.stale += n,
                _ => panic!("an offline member is shown"),
            }
        }
    }
    (users, sessions)
}

/// Every delivery's occupancy (kept by the hub with each change, never recounted) is what the
/// members it delivers count, at its version: through joins, second sessions, presence that
/// decays, leaves, clean disconnects and expiries, in a fixed pseudo-random order.
#[test]
fn each_deliverys_occupancy_counts_its_members() {
    let (hub, clock) = hub();
    let mut feed = hub.rooms().subscribe("doc".to_string()).expect("room");
    let mut client = RoomClient::default();
    let mut seed = 0x2545_f491_u64;
    let mut checked = 0;
    for step in 0..600 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let user = format!("u{}", seed % 12);
        let session = format!("{user}-tab{}", (seed >> 8) % 2);
        let connection = format!("c-{step}");
        let outcome = match (seed >> 16) % 10 {
            0..=3 => hub
                .rooms()
                .join(&session, "doc".into(), meta(json!({"s": step}))),
            4 => hub.rooms().leave(&session, "doc"),
            5 => hub.heartbeat(&session, Activity::Active),
            6 => hub.disconnect(
                &session,
                connection.as_str(),
                presence_tracker::DisconnectKind::Clean,
            ),
            _ => {
                clock.advance(Duration::from_secs((seed >> 24) % 40));
                hub.tick();
                Ok(())
            }
        };
        if let Err(Error::UnknownSession) = outcome {
            let _ = hub.connect(user, session, connection, Activity::Active);
        }
        while let Some(d) = feed.try_recv() {
            client.apply(&d);
            assert_eq!(
                d.to_json().expect("json").as_ref(),
                serde_json::to_vec(&d).expect("serialises").as_slice()
            );
            let occupancy = d.occupancy();
            assert_eq!(
                (occupancy.epoch, occupancy.version),
                (client.epoch, client.version)
            );
            assert_eq!(
                (occupancy.users, occupancy.sessions),
                recount(&client.members),
                "step {step}"
            );
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} deliveries checked");
    let (users, _) = recount(&client.members);
    assert!(users.total() > 0 || client.members.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_burst_while_gathering_fills_the_gathered_updates_not_the_ring() {
    let (hub, clock) = hub_with(Policy::default(), HubConfig::default().room_backlog(4));
    connect(&hub, "ada", "a-1");
    hub.rooms()
        .join("a-1", "doc-1".into(), Meta::default())
        .expect("joins");
    let mut feed = hub.rooms().subscribe("doc-1".into()).expect("a room id");
    let mut client = RoomClient::default();
    client.apply(&feed.recv().await.expect("the state"));
    // 40 joins, ten times the ring, while the subscriber gathers (time is paused: the
    // gathering window stays open while the joins come).
    let joins = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let session = format!("s-{i}");
                connect(&hub, &format!("user-{i}"), &session);
                hub.rooms()
                    .join(&session, "doc-1".into(), Meta::default())
                    .expect("joins");
                tokio::task::yield_now().await;
            }
        })
    };
    let delivery = feed
        .recv_gathered(Duration::from_millis(50))
        .await
        .expect("a delivery");
    joins.await.expect("joined");
    let RoomDelivery::Updates(batch) = &delivery else {
        panic!("updates, not a state: the ring never lagged");
    };
    assert_eq!(
        batch.to() - batch.from() + 1,
        40,
        "every join, in one delivery"
    );
    client.apply(&delivery);
    let _ = clock;
    assert_eq!(client.members, truth(&hub, "doc-1"));
}

#[tokio::test(start_paused = true)]
async fn a_tick_in_which_many_members_change_takes_one_slot_of_the_ring() {
    // A ring of 4: a hundred members going idle in one tick must not overflow it.
    let (hub, clock) = hub_with(Policy::default(), HubConfig::default().room_backlog(4));
    for i in 0..100 {
        let session = format!("s-{i}");
        connect(&hub, &format!("user-{i}"), &session);
        hub.rooms()
            .join(&session, "doc-1".into(), Meta::default())
            .expect("joins");
    }
    let mut feed = hub.rooms().subscribe("doc-1".into()).expect("a room id");
    let mut client = RoomClient::default();
    client.apply(&feed.recv().await.expect("the state"));
    let version = client.version;
    // Nobody sends anything past the active threshold: one tick, a hundred transitions.
    clock.advance(Policy::default().active() + Duration::from_millis(1));
    hub.tick();
    let Some(delivery) = feed.recv_gathered(Duration::from_millis(50)).await else {
        panic!("updates");
    };
    let RoomDelivery::Updates(batch) = &delivery else {
        panic!("the tick's updates, not the room whole");
    };
    assert_eq!((batch.from(), batch.to()), (version + 1, version + 100));
    client.apply(&delivery);
    assert_eq!(client.members, truth(&hub, "doc-1"));
    assert!(client
        .members
        .values()
        .all(|(presence, _)| *presence == Presence::Idle));
}
