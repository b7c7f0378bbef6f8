//! Big rooms in the hub: windows of a room's members (the first by presence, then by how long
//! each had it, paged by key) that always show the room as it is, made once per change within
//! them; and rooms that are big above the configured bound until they shrink to three quarters
//! of it. Time moves through a `ManualClock`; nothing sleeps.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use presence_tracker::{Activity, Error, ManualClock, Policy, Presence, PresenceTracker};
use presence_tracker_server::wire::{RoomWindow, Window};
use presence_tracker_server::{Hub, HubConfig, Meta, RoomDelivery};
use serde_json::json;

type TestHub = Hub<String, String, ManualClock, String, Meta>;
type TestWindow = RoomWindow<String, String, String, Meta>;

fn hub(config: HubConfig) -> (TestHub, ManualClock) {
    let clock = ManualClock::new();
    let tracker = PresenceTracker::with_clock(Policy::default(), clock.clone());
    (Hub::new(tracker, config), clock)
}

fn meta(v: serde_json::Value) -> Meta {
    Meta::new(&v).expect("json")
}

fn rank(p: Presence) -> u8 {
    match p {
        Presence::Active => 0,
        Presence::Idle => 1,
        Presence::Away => 2,
        _ => 3,
    }
}

/// A member as the room's state has it: presence, and sessions with their metadata's JSON.
type Shown = (Presence, Vec<(String, String)>);

fn state_of(hub: &TestHub, room: &str) -> HashMap<String, Shown> {
    hub.rooms()
        .state(room)
        .members
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

/// Checks a window against the room's state: its members are in it as they are, by
/// increasing key and presence, none left out before its last; full, or holding every member
/// after `after`.
fn check(window: &TestWindow, state: &HashMap<String, Shown>, what: &str) {
    let mut last: Option<(u64, u8)> = None;
    for m in &window.members {
        let sessions: Vec<(String, String)> = m
            .sessions
            .iter()
            .map(|s| (s.session.clone(), s.meta.to_string()))
            .collect();
        assert_eq!(
            state.get(&m.user),
            Some(&(m.presence, sessions)),
            "{what}: {} as the room has it",
            m.user
        );
        if let Some((key, r)) = last {
            assert!(m.key > key && rank(m.presence) >= r, "{what}: out of order");
        }
        last = Some((m.key, rank(m.presence)));
    }
    assert!(window.members.len() <= window.limit);
    if window.after.is_none() {
        let n = state.len();
        assert_eq!(
            window.members.len(),
            n.min(window.limit),
            "{what}: not full"
        );
        assert_eq!(window.more, n > window.limit, "{what}: more");
        // Every member of a presence ranked before the window's last one is in the window.
        if let Some((_, last_rank)) = last {
            let within: HashSet<&String> = window.members.iter().map(|m| &m.user).collect();
            for (user, (p, _)) in state {
                if rank(*p) < last_rank {
                    assert!(within.contains(user), "{what}: {user} left out");
                }
            }
        }
    }
}

/// Pages through the whole room, `limit` at a time: every member once.
fn page_through(hub: &TestHub, room: &str, limit: usize, state: &HashMap<String, Shown>) {
    let mut seen = HashSet::new();
    let mut window = hub.rooms().window(room, Window::first(limit));
    loop {
        check(&window, state, "a page");
        for m in &window.members {
            assert!(seen.insert(m.user.clone()), "{} twice", m.user);
        }
        let Some(last) = window.members.last().map(|m| m.key) else {
            break;
        };
        if !window.more {
            break;
        }
        window = hub.rooms().window(room, Window::after(limit, last));
    }
    assert_eq!(seen.len(), state.len(), "every member once");
}

/// Through joins, second sessions, metadata changes, presence that decays, leaves, clean
/// disconnects and expiries (a fixed pseudo-random order), every window the hub hands out shows
/// the room as it is, even those kept from before a change.
#[test]
fn windows_show_the_room_as_it_is_through_every_change() {
    let (hub, clock) = hub(HubConfig::default());
    let mut seed = 0x9e37_79b9_u64;
    let mut kept = 0;
    for step in 0..800 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let user = format!("u{}", seed % 14);
        let session = format!("{user}-tab{}", (seed >> 8) % 2);
        let connection = format!("c-{step}");
        let before = hub.rooms().window("doc", Window::first(3));
        let outcome = match (seed >> 16) % 10 {
            0..=3 => hub
                .rooms()
                .join(&session, "doc".into(), meta(json!({"s": step % 3}))),
            4 => hub.rooms().leave(&session, "doc"),
            5 => hub.heartbeat(
                &session,
                [Activity::Active, Activity::Idle, Activity::Background][(seed >> 20) as usize % 3],
            ),
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
        let state = state_of(&hub, "doc");
        let first = hub.rooms().window("doc", Window::first(3));
        if Arc::ptr_eq(&before, &first) {
            kept += 1;
        }
        check(&first, &state, &format!("step {step}"));
        if step % 10 == 0 {
            page_through(&hub, "doc", 4, &state);
        }
    }
    assert!(
        kept > 50,
        "a change outside the window keeps it: kept {kept} times"
    );
}

/// A room with more members than `big_room` is big on every delivery, and stays big until it
/// holds three quarters of the bound or fewer.
#[test]
fn a_room_is_big_above_the_bound_until_it_shrinks_to_three_quarters() {
    let (hub, _clock) = hub(HubConfig::default().big_room(8));
    let mut feed = hub.rooms().subscribe("doc".to_string()).expect("room");
    let mut big = Vec::new();
    let record = |feed: &mut presence_tracker_server::RoomSubscription<_, _, _, _, _>| {
        let mut last = None;
        while let Some(d) = feed.try_recv() {
            last = Some(d.big());
        }
        last
    };
    for i in 0..10 {
        let session = format!("s{i}");
        hub.connect(format!("u{i}"), session.clone(), "c", Activity::Active)
            .expect("connects");
        hub.rooms()
            .join(&session, "doc".into(), meta(json!(null)))
            .expect("joins");
        big.push((i + 1, record(&mut feed)));
    }
    for i in 0..5 {
        hub.rooms().leave(&format!("s{i}"), "doc").expect("in it");
        big.push((9 - i, record(&mut feed)));
    }
    let when: Vec<(usize, bool)> = big.into_iter().map(|(n, b)| (n, b == Some(true))).collect();
    assert_eq!(
        when,
        [
            (1, false),
            (2, false),
            (3, false),
            (4, false),
            (5, false),
            (6, false),
            (7, false),
            (8, false),
            (9, true),
            (10, true),
            (9, true),
            (8, true),
            (7, true),
            (6, false),
            (5, false)
        ]
    );
    assert!(!hub.rooms().state("doc").big);
    // A fresh subscriber's state says so too.
    for i in 0..5 {
        hub.rooms()
            .join(&format!("s{i}"), "doc".into(), meta(json!(null)))
            .expect("joins");
    }
    let mut late = hub.rooms().subscribe("doc".to_string()).expect("room");
    match late.try_recv() {
        Some(RoomDelivery::State(s)) => assert!(s.big && s.members.len() == 10),
        other => panic!("a state first, not {other:?}"),
    }
}

/// In a room of 10,000 members, the first window is made once and shared until a change within
/// it: joins at the end keep it (the same `Arc`, the same JSON), a member of it that changes its
/// metadata or goes idle makes it anew.
#[test]
fn a_window_of_ten_thousand_members_is_made_anew_only_for_its_own_members() {
    let (hub, clock) = hub(HubConfig::default());
    for i in 0..10_000 {
        let session = format!("s{i}");
        hub.connect(format!("u{i:05}"), session.clone(), "c", Activity::Active)
            .expect("connects");
        hub.rooms()
            .join(&session, "big".into(), meta(json!({"n": i})))
            .expect("joins");
    }
    let first = hub.rooms().window("big", Window::first(50));
    assert_eq!(first.members.len(), 50);
    assert!(first.more);
    let users: Vec<&str> = first.members.iter().map(|m| m.user.as_str()).collect();
    assert_eq!(
        users[..3],
        ["u00000", "u00001", "u00002"],
        "longest active first"
    );
    let json = first.to_json().expect("json");

    clock.advance(Duration::from_millis(100));
    for i in 10_000..10_100 {
        let session = format!("s{i}");
        hub.connect(format!("u{i:05}"), session.clone(), "c", Activity::Active)
            .expect("connects");
        hub.rooms()
            .join(&session, "big".into(), meta(json!({"n": i})))
            .expect("joins");
    }
    hub.rooms().leave("s9000", "big").expect("in it");
    let after_joins = hub.rooms().window("big", Window::first(50));
    assert!(
        Arc::ptr_eq(&first, &after_joins),
        "joins at the end keep it"
    );
    assert_eq!(after_joins.to_json().expect("json").as_ptr(), json.as_ptr());

    hub.rooms()
        .update("s7", "big", meta(json!({"n": "moved"})))
        .expect("updates");
    let anew = hub.rooms().window("big", Window::first(50));
    assert!(!Arc::ptr_eq(&first, &anew));
    assert_eq!(
        anew.members[7].sessions[0].meta.to_string(),
        r#"{"n":"moved"}"#
    );

    hub.heartbeat("s3", Activity::Idle).expect("a session");
    clock.advance(Duration::from_secs(120));
    hub.tick();
    // Everybody went idle but those who heartbeat: s3's idle since before the others.
    let state = state_of(&hub, "big");
    let window = hub.rooms().window("big", Window::first(50));
    check(&window, &state, "after the tick");
}
