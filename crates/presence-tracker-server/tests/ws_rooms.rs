//! Rooms over the WebSocket integration, driven by another client stack (tungstenite): a
//! connection is sent the rooms it is in or watches and no other, a metadata change is one
//! member update, a reconnect naming the same rooms changes nothing, a session that expired
//! under an open socket joins its rooms again, and garbage is refused with the room named and
//! changes nothing.
#![cfg(feature = "axum")]

use std::time::Duration;

use presence_tracker::Policy;
use presence_tracker_server::Meta;
use serde_json::{json, Value};

mod support;
use support::{client, hello, next, send, server_with, sync, Client, TestHub};

async fn rooms_server() -> (TestHub<Meta>, presence_tracker::ManualClock, String) {
    let policy = Policy::builder()
        .max_metadata_bytes(256)
        .build()
        .expect("valid");
    server_with::<Meta>(policy).await
}

/// The next message of `type_`, skipping others (pings are skipped by `next`).
async fn next_of(c: &mut Client, type_: &str) -> Value {
    loop {
        let m = next(c).await;
        if m["type"] == type_ {
            return m;
        }
    }
}

/// Everything up to and including the room state a `room_resync` asks for: what the server had
/// sent before it.
async fn until_room_state(c: &mut Client, room: &str) -> Vec<Value> {
    send(c, json!({"type": "room_resync", "room": room})).await;
    let mut seen = Vec::new();
    loop {
        let m = next(c).await;
        let done = m["type"] == "room_state" && m["room"] == room;
        seen.push(m);
        if done {
            return seen;
        }
    }
}

/// A signed-in tab: its hello (with `rooms` if given), then the users' state.
async fn tab(url: &str, user: &str, session: &str, rooms: Option<Value>) -> Client {
    let mut c = client(url).await;
    let mut h = hello(Some(&format!("user:{user}")), Some(session));
    if let Some(rooms) = rooms {
        h["rooms"] = rooms;
    }
    send(&mut c, h).await;
    assert_eq!(next(&mut c).await["type"], "state");
    c
}

fn members(state: &Value) -> Vec<(String, String, Vec<Value>)> {
    let mut m: Vec<_> = state["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            let metas = m["sessions"]
                .as_array()
                .expect("sessions")
                .iter()
                .map(|s| s["meta"].clone())
                .collect();
            (
                m["user"].as_str().expect("user").to_string(),
                m["presence"].as_str().expect("presence").to_string(),
                metas,
            )
        })
        .collect();
    m.sort_by(|a, b| a.0.cmp(&b.0));
    m
}

#[tokio::test]
async fn rooms_reach_their_members_and_watchers_only() {
    let (hub, clock, url) = rooms_server().await;
    let mut ada = tab(
        &url,
        "ada",
        "a-1",
        Some(json!([{"room": "doc-1", "meta": {"name": "Ada", "section": 1}}])),
    )
    .await;
    let first = next_of(&mut ada, "room_state").await;
    assert_eq!(first["room"], "doc-1");
    assert_eq!(
        members(&first),
        [(
            "ada".to_string(),
            "active".to_string(),
            vec![json!({"name": "Ada", "section": 1})]
        )]
    );

    // A late joiner gets the state with ada in it; ada gets bob's arrival.
    let mut bob = tab(&url, "bob", "b-1", None).await;
    send(
        &mut bob,
        json!({"type": "join", "room": "doc-1", "meta": {"name": "Bob"}}),
    )
    .await;
    let state = next_of(&mut bob, "room_state").await;
    assert_eq!(members(&state).len(), 2);
    let joined = next_of(&mut ada, "room_updates").await;
    assert_eq!(joined["members"][0]["user"], "bob");
    assert_eq!(joined["members"][0]["change"], "joined");
    assert_eq!(
        joined["from"].as_u64(),
        Some(first["version"].as_u64().expect("v") + 1)
    );

    // A metadata change: one update on the others' connection, never a leave and a join.
    clock.advance(Duration::from_millis(100));
    send(
        &mut ada,
        json!({"type": "update", "room": "doc-1", "meta": {"name": "Ada", "section": 2}}),
    )
    .await;
    let moved = next_of(&mut bob, "room_updates").await;
    assert_eq!(moved["from"], moved["to"]);
    assert_eq!(moved["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(moved["members"][0]["change"], "updated");
    assert_eq!(
        moved["members"][0]["sessions"][0]["meta"],
        json!({"name": "Ada", "section": 2})
    );

    // A watcher sees the room without being in it; a user in no room hears nothing of it.
    let mut watcher = client(&url).await;
    send(&mut watcher, hello(None, None)).await;
    assert_eq!(next(&mut watcher).await["type"], "state");
    send(&mut watcher, json!({"type": "watch", "room": "doc-1"})).await;
    let watched = next_of(&mut watcher, "room_state").await;
    assert_eq!(members(&watched).len(), 2);
    let mut cid = tab(&url, "cid", "c-1", None).await;

    send(&mut bob, json!({"type": "leave_room", "room": "doc-1"})).await;
    let left = next_of(&mut watcher, "room_updates").await;
    assert_eq!(
        (&left["members"][0]["user"], &left["members"][0]["change"]),
        (&json!("bob"), &json!("left"))
    );
    assert_eq!(left["members"][0]["presence"], "offline");
    let v = hub.rooms().state("doc-1").version;
    assert_eq!(left["to"].as_u64(), Some(v));

    // cid was sent no room message at all: only user updates before its own answer.
    send(&mut cid, json!({"type": "resync"})).await;
    loop {
        let m = next(&mut cid).await;
        assert!(
            !m["type"].as_str().is_some_and(|t| t.starts_with("room")),
            "{m}"
        );
        if m["type"] == "state" {
            break;
        }
    }
    // Nor is bob any more, once out: a room_resync of a room it left is refused.
    send(&mut bob, json!({"type": "room_resync", "room": "doc-1"})).await;
    let refused = next_of(&mut bob, "refused").await;
    assert_eq!(
        (&refused["code"], &refused["room"]),
        (&json!("not_in_room"), &json!("doc-1"))
    );
    assert_eq!(hub.tracker().rooms().of_user("ada"), ["doc-1"]);
}

#[tokio::test]
async fn room_garbage_is_refused_with_the_room_named_and_changes_nothing() {
    let (hub, _clock, url) = rooms_server().await;
    let mut ada = tab(
        &url,
        "ada",
        "a-1",
        Some(json!([{"room": "doc-1", "meta": {"name": "Ada"}}, {"room": "secret-x"}])),
    )
    .await;
    // The room's state comes from the room's forwarder, the refusal from the connection: in
    // either order.
    let (a, b) = (next(&mut ada).await, next(&mut ada).await);
    let hello_refusal = if a["type"] == "refused" { a } else { b };
    assert_eq!(
        (&hello_refusal["code"], &hello_refusal["room"]),
        (&json!("forbidden"), &json!("secret-x"))
    );
    let before = hub.rooms().state("doc-1");

    let big = "x".repeat(300);
    let cases = [
        (json!({"type": "join"}), "bad_message", None),
        (json!({"type": "join", "room": 42}), "bad_message", None),
        (json!({"type": "join", "room": ""}), "bad_message", Some("")),
        (
            json!({"type": "join", "room": "doc-1", "meta": {"big": big}}),
            "metadata_too_large",
            Some("doc-1"),
        ),
        (
            json!({"type": "update", "room": "doc-1", "meta": {"big": big}}),
            "metadata_too_large",
            Some("doc-1"),
        ),
        (
            json!({"type": "update", "room": "doc-9", "meta": {}}),
            "not_in_room",
            Some("doc-9"),
        ),
        (
            json!({"type": "leave_room", "room": "doc-9"}),
            "not_in_room",
            Some("doc-9"),
        ),
        (json!({"type": "leave_room"}), "bad_message", None),
        (
            json!({"type": "join", "room": "secret-y"}),
            "forbidden",
            Some("secret-y"),
        ),
        (
            json!({"type": "watch", "room": ""}),
            "bad_message",
            Some(""),
        ),
        (
            json!({"type": "watch", "room": "secret-y"}),
            "forbidden",
            Some("secret-y"),
        ),
        (
            json!({"type": "unwatch", "room": "doc-2"}),
            "not_watching",
            Some("doc-2"),
        ),
        (
            json!({"type": "room_resync", "room": "doc-2"}),
            "not_in_room",
            Some("doc-2"),
        ),
        (
            json!({"type": "dance", "room": "doc-1"}),
            "bad_message",
            None,
        ),
    ];
    for (message, code, room) in &cases {
        send(&mut ada, message.clone()).await;
        let refused = next_of(&mut ada, "refused").await;
        assert_eq!(refused["code"], *code, "{message}: {refused}");
        assert_eq!(refused["room"].as_str(), *room, "{message}: {refused}");
    }
    // A watcher may watch, and join nothing.
    let mut watcher = client(&url).await;
    send(&mut watcher, hello(None, None)).await;
    next(&mut watcher).await;
    send(&mut watcher, json!({"type": "join", "room": "doc-1"})).await;
    assert_eq!(next_of(&mut watcher, "refused").await["code"], "watch_only");

    // Nothing changed: the room's version, its members, and nothing sent to ada's connection
    // about the room but the state it asks for now.
    let after = hub.rooms().state("doc-1");
    assert_eq!((after.epoch, after.version), (before.epoch, before.version));
    let seen = until_room_state(&mut ada, "doc-1").await;
    assert!(seen.iter().all(|m| m["type"] != "room_updates"), "{seen:?}");
    assert_eq!(hub.tracker().rooms().of_session("a-1"), ["doc-1"]);
    assert_eq!(
        hub.tracker().rooms().get("doc-1").map(|v| v.members.len()),
        Some(1)
    );
}

#[tokio::test]
async fn a_reconnect_naming_the_same_rooms_changes_nothing() {
    let (hub, clock, url) = rooms_server().await;
    let rooms = json!([{"room": "doc-1", "meta": {"name": "Ada", "section": 3}}]);
    let mut ada = tab(&url, "ada", "a-1", Some(rooms.clone())).await;
    next_of(&mut ada, "room_state").await;
    let mut bob = tab(&url, "bob", "b-1", Some(json!([{"room": "doc-1"}]))).await;
    next_of(&mut bob, "room_state").await;
    let version = hub.rooms().state("doc-1").version;
    clock.advance(Duration::from_secs(1));

    // A reload: the new page's connection names the same rooms, then the old one goes.
    let mut again = tab(&url, "ada", "a-1", Some(rooms)).await;
    let state = next_of(&mut again, "room_state").await;
    assert_eq!(state["version"].as_u64(), Some(version));
    drop(ada);
    assert_eq!(
        hub.rooms().state("doc-1").version,
        version,
        "nobody saw a thing"
    );
    let seen = until_room_state(&mut bob, "doc-1").await;
    assert!(seen.iter().all(|m| m["type"] != "room_updates"), "{seen:?}");

    // A reconnect that names no room leaves them all.
    drop(again);
    let _gone = tab(&url, "ada", "a-1", Some(json!([]))).await;
    let left = next_of(&mut bob, "room_updates").await;
    assert_eq!(left["members"][0]["change"], "left");
    assert!(hub.tracker().rooms().of_session("a-1").is_empty());
}

#[tokio::test]
async fn a_session_that_expired_under_an_open_socket_joins_its_rooms_again() {
    let (hub, clock, url) = rooms_server().await;
    let mut rita = tab(
        &url,
        "rita",
        "r-1",
        Some(json!([{"room": "doc-1", "meta": {"name": "Rita"}}])),
    )
    .await;
    next_of(&mut rita, "room_state").await;
    let mut bob = tab(&url, "bob", "b-1", Some(json!([{"room": "doc-1"}]))).await;
    next_of(&mut bob, "room_state").await;
    // rita's session ends while her socket stays open (a laptop asleep past the TTL); bob
    // keeps beating.
    for _ in 0..6 {
        clock.advance(Duration::from_secs(50));
        send(&mut bob, json!({"type": "heartbeat", "activity": "active"})).await;
        until_room_state(&mut bob, "doc-1").await;
        hub.tick();
    }
    assert!(hub.tracker().session("r-1").is_none());
    let state = until_room_state(&mut bob, "doc-1").await;
    assert_eq!(
        members(state.last().expect("a state")).len(),
        1,
        "rita left"
    );

    send(&mut rita, json!({"type": "heartbeat", "activity": "idle"})).await;
    let back = next_of(&mut bob, "room_updates").await;
    assert_eq!(back["members"][0]["user"], "rita");
    assert_eq!(back["members"][0]["change"], "joined");
    assert_eq!(back["members"][0]["presence"], "idle");
    assert_eq!(
        back["members"][0]["sessions"][0]["meta"],
        json!({"name": "Rita"})
    );
    assert_eq!(
        hub.tracker().rooms().get("doc-1").map(|v| v.members.len()),
        Some(2)
    );
}

/// A connection that watches a room's occupancy is sent counts, never members: the room's
/// occupancy when it starts watching, then at most one message per gathering window however
/// many join in it; a watch with the members view switches it to the members.
#[tokio::test]
async fn occupancy_watchers_get_counts_one_message_per_window() {
    let (hub, _clock, url) = rooms_server().await;
    let mut counter = client(&url).await;
    send(&mut counter, hello(None, None)).await;
    assert_eq!(next(&mut counter).await["type"], "state");
    send(
        &mut counter,
        json!({"type": "watch", "room": "doc-1", "view": "occupancy"}),
    )
    .await;
    let first = next(&mut counter).await;
    assert_eq!(first["type"], "room_occupancy", "{first}");
    assert_eq!(first["room"], "doc-1");
    assert_eq!(first["users"]["active"], 0);

    // Fifty users join within one window (u0 with two tabs), straight through the hub.
    for i in 0..50 {
        let user = format!("u{i}");
        for tab in 0..(if i == 0 { 2 } else { 1 }) {
            let session = format!("{user}-tab{tab}");
            hub.connect(
                user.clone(),
                session.clone(),
                format!("c-{session}"),
                presence_tracker::Activity::Active,
            )
            .expect("connects");
            hub.rooms()
                .join(
                    &session,
                    "doc-1".into(),
                    Meta::from_json("{}").expect("json"),
                )
                .expect("joins");
        }
    }
    let mut messages = Vec::new();
    loop {
        let m = next(&mut counter).await;
        if m["type"] == "updates" {
            continue; // the users' feed (this test server sends every user)
        }
        assert_eq!(m["type"], "room_occupancy", "only counts: {m}");
        let done = m["users"]["active"] == 50;
        messages.push(m);
        if done {
            break;
        }
    }
    let last = messages.last().expect("one");
    assert_eq!(last["sessions"]["active"], 51, "{last}");
    assert!(
        messages.len() <= 3,
        "51 joins in one window: {} messages",
        messages.len()
    );

    // The same connection switches to the members.
    send(&mut counter, json!({"type": "watch", "room": "doc-1"})).await;
    let state = next_of(&mut counter, "room_state").await;
    assert_eq!(state["members"].as_array().map(Vec::len), Some(50));
}

/// Everything a client is sent of `room` until `done` says so, skipping the users' feed.
async fn room_messages(
    c: &mut Client,
    room: &str,
    mut done: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let m = next(c).await;
        if m["room"] != room {
            continue;
        }
        let stop = done(&m);
        seen.push(m);
        if stop {
            return seen;
        }
    }
}

async fn join_through_hub(hub: &TestHub<Meta>, user: &str, room: &str) {
    let session = format!("{user}-tab");
    hub.connect(
        user.to_string(),
        session.clone(),
        format!("c-{session}"),
        presence_tracker::Activity::Active,
    )
    .expect("connects");
    hub.rooms()
        .join(&session, room.into(), Meta::from_json("{}").expect("json"))
        .expect("joins");
}

/// Above `big_room` members a room is counted, not listed, to the connections that did not ask
/// for a window, its own members included; a window watcher is sent the first members and the
/// counts, pages on by key, and is refused a window over the bound; when the room shrinks to
/// three quarters of the bound its members get the member list again, whole.
#[tokio::test]
async fn a_big_room_is_counted_to_its_members_and_listed_in_windows() {
    let policy = Policy::builder()
        .max_metadata_bytes(256)
        .build()
        .expect("valid");
    let config = presence_tracker_server::HubConfig::default()
        .all_users_feed(true)
        .big_room(4)
        .max_window(2);
    let (hub, _clock, url) = support::server_config::<Meta>(policy, config).await;
    let mut ada = tab(&url, "ada", "ada-1", Some(json!([{"room": "hall"}]))).await;
    let first = next_of(&mut ada, "room_state").await;
    assert_eq!(first["members"].as_array().map(Vec::len), Some(1));
    for user in ["bob", "cy", "di"] {
        join_through_hub(&hub, user, "hall").await;
    }
    // Four members: still listed.
    let listed = room_messages(&mut ada, "hall", |m| {
        m["type"] == "room_updates"
            && m["members"]
                .as_array()
                .is_some_and(|ms| ms.iter().any(|x| x["user"] == "di"))
    })
    .await;
    assert!(
        listed.iter().all(|m| m["type"] == "room_updates"),
        "{listed:?}"
    );

    join_through_hub(&hub, "eve", "hall").await;
    let counted = room_messages(&mut ada, "hall", |m| m["type"] == "room_occupancy").await;
    let last = counted.last().expect("one");
    assert_eq!(last["users"]["active"], 5, "{last}");
    assert!(
        counted.iter().all(|m| m["type"] != "room_updates"
            || !m["members"]
                .as_array()
                .is_some_and(|ms| ms.iter().any(|x| x["user"] == "eve"))),
        "the fifth member is counted, not listed: {counted:?}"
    );

    let mut watcher = client(&url).await;
    send(&mut watcher, hello(None, None)).await;
    assert_eq!(next(&mut watcher).await["type"], "state");
    send(
        &mut watcher,
        json!({"type": "watch", "room": "hall", "view": "window", "limit": 3}),
    )
    .await;
    let refused = next_of(&mut watcher, "refused").await;
    assert_eq!(
        (refused["code"].as_str(), refused["room"].as_str()),
        (Some("limit"), Some("hall"))
    );
    send(
        &mut watcher,
        json!({"type": "watch", "room": "hall", "view": "window", "limit": 2}),
    )
    .await;
    let mut occupancy = None;
    let got = room_messages(&mut watcher, "hall", |m| {
        if m["type"] == "room_occupancy" {
            occupancy = Some(m.clone());
        }
        m["type"] == "room_window"
    })
    .await;
    assert!(got.iter().all(|m| m["type"] != "room_state"), "{got:?}");
    let window = got.last().expect("a window");
    let users: Vec<&str> = window["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["user"].as_str().expect("user"))
        .collect();
    assert_eq!(users, ["ada", "bob"], "the longest active first: {window}");
    assert_eq!(window["more"], true);
    let occupancy = occupancy.expect("the counts with the window");
    assert_eq!(occupancy["users"]["active"], 5);

    // The next page, by the last key.
    let after = window["members"][1]["key"].clone();
    send(
        &mut watcher,
        json!({"type": "watch", "room": "hall", "view": "window", "limit": 2, "after": after}),
    )
    .await;
    let page = next_of(&mut watcher, "room_window").await;
    let users: Vec<&str> = page["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["user"].as_str().expect("user"))
        .collect();
    assert_eq!((users, &page["more"]), (vec!["cy", "di"], &json!(true)));

    // Two leave: three members, three quarters of the bound: listed again, whole.
    for user in ["di", "eve"] {
        hub.rooms()
            .leave(&format!("{user}-tab"), "hall")
            .expect("in it");
    }
    let back = room_messages(&mut ada, "hall", |m| m["type"] == "room_state").await;
    let state = back.last().expect("a state");
    assert_eq!(
        state["members"].as_array().map(Vec::len),
        Some(3),
        "{state}"
    );
    // The window watcher's page lost the two, and nobody follows it.
    let pages = room_messages(&mut watcher, "hall", |m| {
        m["type"] == "room_window" && m["members"].as_array().map(Vec::len) == Some(1)
    })
    .await;
    let page = pages.last().expect("a page");
    assert_eq!(
        (&page["members"][0]["user"], &page["more"]),
        (&json!("cy"), &json!(false))
    );
}

/// 10,000 members join a room, as fast as the hub takes them: a watcher of its first 50 members
/// is sent a window and the counts at most once per gathering window (50 ms), never more than
/// 50 members at a time; a connection that watches its members is counted past 1,000.
#[tokio::test]
async fn joins_in_a_room_of_ten_thousand_cost_each_watcher_a_few_messages_per_window() {
    let (hub, _clock, url) = support::server_config::<Meta>(
        Policy::default(),
        presence_tracker_server::HubConfig::default(),
    )
    .await;
    let mut windowed = client(&url).await;
    send(&mut windowed, hello(None, None)).await;
    assert_eq!(next(&mut windowed).await["type"], "state");
    send(
        &mut windowed,
        json!({"type": "watch", "room": "big", "view": "window", "limit": 50}),
    )
    .await;
    let mut listed = client(&url).await;
    send(&mut listed, hello(None, None)).await;
    assert_eq!(next(&mut listed).await["type"], "state");
    send(&mut listed, json!({"type": "watch", "room": "big"})).await;
    assert_eq!(
        next_of(&mut listed, "room_state").await["members"],
        json!([])
    );

    let start = std::time::Instant::now();
    for i in 0..10_000 {
        join_through_hub(&hub, &format!("u{i:05}"), "big").await;
    }
    let all_in = |m: &Value| m["type"] == "room_occupancy" && m["users"]["active"] == 10_000;
    let got = room_messages(&mut windowed, "big", all_in).await;
    let elapsed = start.elapsed();
    let windows = u32::try_from(elapsed.as_millis() / 50).expect("small") + 2;
    let most = got
        .iter()
        .filter_map(|m| m["members"].as_array().map(Vec::len))
        .max()
        .unwrap_or(0);
    assert!(most <= 50, "a window of {most}");
    assert!(
        got.len() <= 2 * windows as usize,
        "{} messages in {elapsed:?} ({windows} gathering windows)",
        got.len()
    );
    let seen = room_messages(&mut listed, "big", all_in).await;
    let listed_most = seen
        .iter()
        .filter(|m| m["type"] == "room_state")
        .filter_map(|m| m["members"].as_array().map(Vec::len))
        .max()
        .unwrap_or(0);
    assert!(listed_most <= 1000, "a state of {listed_most} members");
    assert!(
        seen.len() <= 3 * windows as usize,
        "{} messages",
        seen.len()
    );
}

/// A tab that joins a room again with the metadata it has there (a client that resends its
/// join after a reconnect) changes nothing: no update for the others, no refusal for sending
/// within the metadata interval.
#[tokio::test]
async fn joining_again_with_the_same_metadata_publishes_nothing() {
    let (_hub, clock, url) = rooms_server().await;
    let mut ada = tab(
        &url,
        "ada",
        "a-1",
        Some(json!([{"room": "doc-1", "meta": {"s": 1}}])),
    )
    .await;
    next_of(&mut ada, "room_state").await;
    let mut watcher = client(&url).await;
    send(&mut watcher, hello(None, None)).await;
    send(&mut watcher, json!({"type": "watch", "room": "doc-1"})).await;
    let state = next_of(&mut watcher, "room_state").await;
    let version = state["version"].as_u64().expect("version");

    // The same join, at once (within the 50 ms interval): nothing.
    send(
        &mut ada,
        json!({"type": "join", "room": "doc-1", "meta": {"s": 1}}),
    )
    .await;
    // A change after the interval: the next version, and the first message either sees.
    clock.advance(Duration::from_millis(100));
    send(
        &mut ada,
        json!({"type": "update", "room": "doc-1", "meta": {"s": 2}}),
    )
    .await;
    let seen = room_messages(&mut watcher, "doc-1", |m| m["type"] == "room_updates").await;
    let update = seen.last().expect("an update");
    assert_eq!(
        (update["from"].as_u64(), update["to"].as_u64()),
        (Some(version + 1), Some(version + 1))
    );
    assert_eq!(update["members"][0]["sessions"][0]["meta"], json!({"s": 2}));
    let mine = room_messages(&mut ada, "doc-1", |m| m["type"] != "room_state").await;
    assert_eq!(
        mine.last().map(|m| m["type"].clone()),
        Some(json!("room_updates")),
        "{mine:?}"
    );
}

#[tokio::test]
async fn leaving_and_joining_again_does_not_get_around_the_metadata_interval() {
    let (hub, clock, url) = rooms_server().await;
    let mut ada = tab(
        &url,
        "ada",
        "a-1",
        Some(json!([{"room": "doc-1", "meta": {"s": 1}}])),
    )
    .await;
    next_of(&mut ada, "room_state").await;
    clock.advance(Duration::from_millis(100));
    send(&mut ada, json!({"type": "leave_room", "room": "doc-1"})).await;
    sync(&mut ada).await;
    clock.advance(Duration::from_millis(20));
    send(
        &mut ada,
        json!({"type": "join", "room": "doc-1", "meta": {"s": 2}}),
    )
    .await;
    let refused = next_of(&mut ada, "refused").await;
    assert_eq!(
        (refused["code"].as_str(), refused["room"].as_str()),
        (Some("metadata_too_frequent"), Some("doc-1"))
    );
    assert_eq!(refused["retry_after_ms"], 30);
    assert!(
        hub.tracker()
            .rooms()
            .of_session(&"a-1".to_string())
            .is_empty(),
        "the refused join changed nothing"
    );
    clock.advance(Duration::from_millis(30));
    send(
        &mut ada,
        json!({"type": "join", "room": "doc-1", "meta": {"s": 2}}),
    )
    .await;
    let state = next_of(&mut ada, "room_state").await;
    assert_eq!(state["members"][0]["sessions"][0]["meta"], json!({"s": 2}));
}

/// The sessions of a room state as the wire shows them.
fn shown_sessions(state: &Value) -> Vec<String> {
    let mut shown: Vec<String> = state["members"]
        .as_array()
        .expect("members")
        .iter()
        .flat_map(|m| m["sessions"].as_array().expect("sessions").iter())
        .map(|s| s["session"].as_str().expect("a string").to_string())
        .collect();
    shown.sort();
    shown
}

/// The first text message, whatever it is (`next` skips the welcome).
async fn first_text(c: &mut Client) -> Value {
    use futures_util::StreamExt;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), c.next())
            .await
            .expect("a message within 5 s")
            .expect("open")
            .expect("a frame");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            return serde_json::from_str(&t).expect("json");
        }
    }
}

#[tokio::test]
async fn room_states_show_handles_not_session_ids_and_each_connection_is_told_its_own() {
    let (_hub, _clock, url) = rooms_server().await;
    let mut handles = Vec::new();
    let mut tabs = Vec::new();
    for (user, session) in [("ada", "ada-secret-tab"), ("bob", "bob-secret-tab")] {
        let mut c = client(&url).await;
        let mut h = hello(Some(&format!("user:{user}")), Some(session));
        h["rooms"] = json!([{"room": "doc", "meta": {"n": 1}}]);
        send(&mut c, h).await;
        let welcome = first_text(&mut c).await;
        assert_eq!(welcome["type"], "welcome", "the welcome comes first");
        let handle = welcome["session"].as_str().expect("a handle").to_string();
        assert_eq!(handle.len(), 16);
        assert!(handle.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(handle, session);
        handles.push(handle);
        tabs.push(c);
    }
    // A watcher reads the room: the handles, never an id.
    let mut watcher = client(&url).await;
    send(&mut watcher, hello(None, None)).await;
    assert_eq!(
        first_text(&mut watcher).await["type"],
        "state",
        "no welcome without a session"
    );
    send(&mut watcher, json!({"type": "watch", "room": "doc"})).await;
    let state = next_of(&mut watcher, "room_state").await;
    let text = state.to_string();
    assert!(!text.contains("secret"), "no session id in {text}");
    handles.sort();
    assert_eq!(shown_sessions(&state), handles);

    // The same session has the same handle on its next connection.
    let mut again = client(&url).await;
    send(&mut again, hello(Some("user:ada"), Some("ada-secret-tab"))).await;
    let welcome = first_text(&mut again).await;
    assert!(handles.contains(&welcome["session"].as_str().expect("a handle").to_string()));
}

#[tokio::test]
async fn an_application_may_show_session_ids_instead() {
    let policy = Policy::builder()
        .max_metadata_bytes(256)
        .build()
        .expect("valid");
    let config = presence_tracker_server::HubConfig::default()
        .all_users_feed(true)
        .member_ids(presence_tracker_server::wire::MemberIds::raw());
    let (_hub, _clock, url) = support::server_config::<Meta>(policy, config).await;
    let mut c = client(&url).await;
    let mut h = hello(Some("user:ada"), Some("tab-a"));
    h["rooms"] = json!([{"room": "doc", "meta": {"n": 1}}]);
    send(&mut c, h).await;
    assert_eq!(
        first_text(&mut c).await["type"],
        "state",
        "no welcome for raw ids"
    );
    let state = next_of(&mut c, "room_state").await;
    assert_eq!(shown_sessions(&state), vec!["tab-a".to_string()]);
}
