//! Rooms across nodes, against a real redis-server: a room's members are the users with a
//! session there on any node, at the highest presence of those sessions, with every
//! session's metadata; a member moving nodes flaps nothing; a crashed node's members leave
//! after the grace.

#![cfg(feature = "redis")]

mod support {
    pub mod cluster;
    #[allow(unreachable_pub, dead_code)]
    pub mod redis;
}

use std::time::Duration;

use presence_tracker::{Policy, Presence, RoomChange};
use presence_tracker_server::cluster::{ClusterCause, RefusalReason};
use support::cluster::*;
use support::redis::RedisServer;

fn s(a: &str, b: &str) -> (String, String) {
    (a.into(), b.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spans_nodes() {
    let redis = RedisServer::start();
    let (a, b, mut c) = three(&redis).await;
    a.connect("ada", "tab-1", "s1");
    b.connect("bob", "tab-b", "s2");
    a.join("tab-1", "doc", "ada on a");
    b.join("tab-b", "doc", "bob on b");
    eventually("both members everywhere", CONVERGE, || {
        c.room("doc").len() == 2 && a.room("doc").len() == 2 && b.room("doc").len() == 2
    })
    .await;

    // Ada's second tab, on node b, joins too: one member, two sessions.
    b.connect("ada", "tab-2", "s3");
    b.join("tab-2", "doc", "ada on b");
    eventually("ada with two sessions", CONVERGE, || {
        c.room("doc").first().is_some_and(|m| m.2.len() == 2)
    })
    .await;
    assert_eq!(
        c.room("doc"),
        [
            (
                "ada".into(),
                Presence::Active,
                vec![s("tab-1", "ada on a"), s("tab-2", "ada on b")]
            ),
            ("bob".into(), Presence::Active, vec![s("tab-b", "bob on b")]),
        ]
    );
    // Bob's metadata changes: one update; ada's first tab leaves the room: ada stays.
    b.advance(Policy::default().metadata_interval()); // the core's rate bound on metadata
    b.update_room("tab-b", "doc", "bob typing");
    a.leave_room("tab-1", "doc");
    eventually("bob updated, ada on one tab", CONVERGE, || {
        c.room("doc")
            == [
                ("ada".into(), Presence::Active, vec![s("tab-2", "ada on b")]),
                (
                    "bob".into(),
                    Presence::Active,
                    vec![s("tab-b", "bob typing")],
                ),
            ]
    })
    .await;
    // Node b's tabs (bob's, ada's second) fall idle: their presence in the room follows.
    b.advance(Duration::from_secs(20));
    eventually("bob idle in the room", CONVERGE, || {
        c.room("doc").get(1).is_some_and(|m| m.1 == Presence::Idle)
    })
    .await;
    b.leave_room("tab-b", "doc");
    eventually("bob left", CONVERGE, || c.room("doc").len() == 1).await;

    let events = c.room_events("doc");
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    let expected: Vec<u64> = (1..=versions.len() as u64).collect();
    assert_eq!(versions, expected, "gap-free: {events:?}");
    let bob: Vec<RoomChange> = events
        .iter()
        .filter(|e| e.user == "bob")
        .map(|e| e.change)
        .collect();
    assert_eq!(
        bob,
        [
            RoomChange::Joined,
            RoomChange::Updated,
            RoomChange::Presence,
            RoomChange::Left
        ]
    );
    let ada: Vec<RoomChange> = events
        .iter()
        .filter(|e| e.user == "ada")
        .map(|e| e.change)
        .collect();
    assert_eq!(
        ada,
        [
            RoomChange::Joined,
            RoomChange::Updated,
            RoomChange::Updated,
            RoomChange::Presence
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_moving_nodes_flaps_nothing_in_the_room() {
    let redis = RedisServer::start();
    let (mut a, b, mut c) = three(&redis).await;
    a.connect("ada", "tab-1", "s1");
    a.join("tab-1", "doc", "ada");
    eventually("ada in the room", CONVERGE, || c.room("doc").len() == 1).await;
    a.flush().await;

    // The tab reconnects to b and joins its room again there.
    b.connect("ada", "tab-1", "s2");
    b.join("tab-1", "doc", "ada");
    b.flush().await;
    // Node a decays and ends its copy of the session late: refused, in the room too.
    a.disconnect("tab-1", "s1");
    a.advance(Duration::from_secs(20));
    a.advance(Policy::default().disconnect_grace());
    eventually("a's late writes refused", CONVERGE, || {
        a.refusals(RefusalReason::Superseded) >= 1
    })
    .await;
    a.flush().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        c.room("doc"),
        [("ada".into(), Presence::Active, vec![s("tab-1", "ada")])]
    );
    let changes: Vec<RoomChange> = c.room_events("doc").iter().map(|e| e.change).collect();
    assert_eq!(
        changes,
        [RoomChange::Joined],
        "no leave, no presence change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_nodes_members_leave_after_the_grace() {
    let redis = RedisServer::start();
    let (a, b, mut c) = three(&redis).await;
    a.connect("ada", "tab-1", "s1");
    a.join("tab-1", "doc", "ada");
    b.connect("bob", "tab-b", "s2");
    b.join("tab-b", "doc", "bob");
    eventually("both in the room", CONVERGE, || c.room("doc").len() == 2).await;
    a.flush().await;

    drop(a);
    let bound = config(&redis).offline_bound();
    eventually("ada left the room after the crash", bound + SLACK, || {
        c.room("doc").len() == 1
    })
    .await;
    assert_eq!(
        c.room("doc"),
        [("bob".into(), Presence::Active, vec![s("tab-b", "bob")])]
    );
    let left = c.room_events("doc");
    let last = left.last().expect("events");
    assert_eq!(
        (last.user.as_str(), last.change, last.cause),
        ("ada", RoomChange::Left, ClusterCause::Expired)
    );
}
