//! The WebSocket integration, driven over loopback by another client stack (tungstenite): the
//! hello and its refusals, close codes for garbage, ordering of one connection's signals,
//! watchers, and the connection fence of `leave`.
#![cfg(feature = "axum")]

use std::time::Duration;

use futures_util::SinkExt;
use presence_tracker::{Activity, Policy, Presence};
use presence_tracker_server::ws::WsOptions;
use presence_tracker_server::{HubConfig, RateLimit};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::{client, closed, hello, next, send, server, server_config, server_options, sync};

#[tokio::test]
async fn a_hello_gets_the_state_and_others_get_the_update() {
    let (_hub, _clock, url) = server().await;
    let mut watcher = client(&url).await;
    send(&mut watcher, hello(None, None)).await;
    let state = next(&mut watcher).await;
    assert_eq!(
        (state["type"].as_str(), state["version"].as_u64()),
        (Some("state"), Some(0))
    );

    let mut ada = client(&url).await;
    send(&mut ada, hello(Some("user:ada"), Some("tab-1"))).await;
    assert_eq!(next(&mut ada).await["type"], "state");
    let update = next(&mut watcher).await;
    assert_eq!(update["type"], "updates");
    assert_eq!(
        (update["from"].as_u64(), update["to"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(update["epoch"], state["epoch"]);
    assert_eq!(update["users"][0]["user"], "ada");
    assert_eq!(update["users"][0]["presence"], "active");
    assert_eq!(update["users"][0]["sessions"], 1);
}

#[tokio::test]
async fn one_connections_signals_apply_in_the_order_sent() {
    // Without the rate limits: 200 signals at one instant of the manual clock.
    let config = HubConfig::default()
        .all_users_feed(true)
        .client_rate(None)
        .session_rate(None);
    let (hub, _clock, url) = server_config::<()>(Policy::default(), config).await;
    let mut ada = client(&url).await;
    send(&mut ada, hello(Some("user:ada"), Some("tab-1"))).await;
    next(&mut ada).await;
    let activities = ["idle", "active", "background", "active", "idle"];
    for i in 0..200 {
        send(
            &mut ada,
            json!({"type": "heartbeat", "activity": activities[i % 5]}),
        )
        .await;
    }
    // A watcher connecting after the last heartbeat was handled sees the final activity.
    send(&mut ada, json!({"type": "resync"})).await;
    loop {
        let m = next(&mut ada).await;
        if m["type"] == "state" {
            break;
        }
    }
    let view = hub.tracker().session("tab-1").expect("live");
    assert_eq!(
        view.activity,
        Activity::Idle,
        "the last heartbeat sent was idle"
    );
    // Each heartbeat whose activity differs from the one before moved the presence and
    // published one update (plus the connect's): applied out of order, some would not have.
    let changes = (0..200)
        .filter(|&i| {
            let before = if i == 0 {
                "active"
            } else {
                activities[(i - 1) % 5]
            };
            activities[i % 5] != before
        })
        .count() as u64;
    assert_eq!(hub.version(), 1 + changes);
}

#[tokio::test]
async fn garbage_gets_a_clear_close() {
    let (hub, _clock, url) = server().await;

    let mut c = client(&url).await;
    c.send(Message::binary(vec![1, 2, 3])).await.expect("sends");
    assert_eq!(closed(&mut c).await.0, CloseCode::Unsupported);

    let mut c = client(&url).await;
    send(&mut c, json!({"type": "heartbeat", "activity": "active"})).await;
    let (code, reason) = closed(&mut c).await;
    assert_eq!(u16::from(code), 4000);
    assert!(reason.contains("hello"), "{reason}");

    let mut c = client(&url).await;
    send(
        &mut c,
        json!({"type": "hello", "protocol": 99, "session": "x"}),
    )
    .await;
    assert_eq!(u16::from(closed(&mut c).await.0), 4002);

    let mut c = client(&url).await;
    c.send(Message::text("x".repeat(100_000)))
        .await
        .expect("sends");
    assert_eq!(closed(&mut c).await.0, CloseCode::Size);

    // Silent: closed at the hello timeout.
    let mut c = client(&url).await;
    let (code, reason) = closed(&mut c).await;
    assert_eq!((u16::from(code), reason.contains("timeout")), (4000, true));

    // Refused by the hook: told why, then closed with 1008. Nothing recorded.
    let mut c = client(&url).await;
    send(&mut c, hello(Some("forged"), Some("tab-9"))).await;
    let refused = next(&mut c).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("refused"), Some("unauthorized"))
    );
    assert_eq!(closed(&mut c).await.0, CloseCode::Policy);
    assert_eq!(hub.tracker().census().sessions.total(), 0);

    // After a hello, bad messages are refused, not fatal.
    let mut c = client(&url).await;
    send(&mut c, hello(Some("user:bob"), Some("tab-2"))).await;
    next(&mut c).await;
    send(&mut c, json!({"type": "heartbeat", "activity": "dancing"})).await;
    assert_eq!(next(&mut c).await["code"], "bad_message");
    send(&mut c, json!({"type": "heartbeat", "activity": "idle"})).await;
    let update = next(&mut c).await;
    assert_eq!(update["users"][0]["presence"], "idle");
}

#[tokio::test]
async fn another_users_session_id_is_refused() {
    let (_hub, _clock, url) = server().await;
    let mut ada = client(&url).await;
    send(&mut ada, hello(Some("user:ada"), Some("tab-1"))).await;
    next(&mut ada).await;
    let mut eve = client(&url).await;
    send(&mut eve, hello(Some("user:eve"), Some("tab-1"))).await;
    assert_eq!(next(&mut eve).await["code"], "session_taken");
    assert_eq!(closed(&mut eve).await.0, CloseCode::Policy);
}

#[tokio::test]
async fn a_watcher_watches_and_may_not_signal() {
    let (hub, _clock, url) = server().await;
    let mut w = client(&url).await;
    send(&mut w, hello(None, Some("tab-1"))).await;
    assert_eq!(next(&mut w).await["type"], "state");
    send(&mut w, json!({"type": "heartbeat", "activity": "active"})).await;
    assert_eq!(next(&mut w).await["code"], "watch_only");
    assert_eq!(hub.tracker().census().sessions.total(), 0);
}

#[tokio::test]
async fn a_late_leave_from_the_replaced_connection_ends_nothing() {
    let (hub, clock, url) = server().await;
    let mut old = client(&url).await;
    send(&mut old, hello(Some("user:ada"), Some("tab-1"))).await;
    next(&mut old).await;
    // The reload: the new page connects the same session before the old one's leave arrives.
    let mut new = client(&url).await;
    send(&mut new, hello(Some("user:ada"), Some("tab-1"))).await;
    next(&mut new).await;
    send(&mut old, json!({"type": "leave"})).await;
    old.close(None).await.expect("closes");
    // Let the server handle both before time moves.
    send(&mut new, json!({"type": "resync"})).await;
    while next(&mut new).await["type"] != "state" {}
    clock.advance(Duration::from_secs(30));
    hub.tick();
    assert_eq!(hub.tracker().user("ada").presence, Presence::Idle);
    assert!(
        hub.tracker().session("tab-1").is_some(),
        "the session lives on"
    );
}

#[tokio::test]
async fn a_clean_close_ends_the_session_after_the_leave_grace() {
    let (hub, clock, url) = server().await;
    let mut w = client(&url).await;
    send(&mut w, hello(None, None)).await;
    next(&mut w).await;
    let mut ada = client(&url).await;
    send(&mut ada, hello(Some("user:ada"), Some("tab-1"))).await;
    next(&mut ada).await;
    assert_eq!(next(&mut w).await["users"][0]["presence"], "active");
    ada.close(None).await.expect("closes");
    // The server records the disconnect when it reads the close frame: let it run (the
    // runtime polls the sockets between yields; no sleeping).
    let mut yields = 0;
    while hub.tracker().session("tab-1").is_some_and(|s| s.connected) {
        tokio::task::yield_now().await;
        yields += 1;
        assert!(yields < 1_000_000, "the close was never handled");
    }
    clock.advance(Duration::from_secs(6));
    hub.tick();
    let update = next(&mut w).await;
    assert_eq!(update["users"][0]["presence"], "offline");
    assert_eq!(update["users"][0]["sessions"], 0);
}

#[tokio::test]
async fn a_heartbeat_after_the_session_expired_on_an_open_socket_connects_it_again() {
    let (hub, clock, url) = server().await;
    let mut rita = client(&url).await;
    send(&mut rita, hello(Some("user:rita"), Some("r-1"))).await;
    next(&mut rita).await;
    // The session ends while the socket stays open (a laptop asleep past the TTL).
    clock.advance(Duration::from_secs(300));
    hub.tick();
    assert!(hub.tracker().session("r-1").is_none());
    send(&mut rita, json!({"type": "heartbeat", "activity": "idle"})).await;
    // Its update says rita is back, idle (never active on the way).
    loop {
        let m = next(&mut rita).await;
        if m["type"] == "updates" && m["users"][0]["presence"] == "idle" {
            break;
        }
        assert_ne!(m["type"], "refused", "{m}");
    }
    let view = hub.tracker().session("r-1").expect("connected again");
    assert_eq!(view.activity, Activity::Idle);
}

/// Over the admission's rate an upgrade is answered 503 with `Retry-After`, before any work:
/// the refused never reach the hub.
#[tokio::test]
async fn upgrades_over_the_admission_rate_get_503_and_change_nothing() {
    use presence_tracker_server::ws::WsOptions;
    use presence_tracker_server::{Admission, HubConfig};
    use tokio_tungstenite::tungstenite::Error as WsError;

    // Two at once, then one a second: of five immediate attempts, two or three come in.
    let options = WsOptions::default().admission(Admission::new(1, 2));
    let (hub, _clock, url) = support::server_options::<()>(
        presence_tracker::Policy::default(),
        HubConfig::default(),
        options,
    )
    .await;
    let (mut admitted, mut refused) = (Vec::new(), 0);
    for _ in 0..5 {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((c, _)) => admitted.push(c),
            Err(WsError::Http(response)) => {
                assert_eq!(response.status(), 503);
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                assert_eq!(retry_after, Some(1));
                refused += 1;
            }
            Err(e) => panic!("neither admitted nor refused: {e}"),
        }
    }
    assert!(
        (2..=3).contains(&admitted.len()),
        "{} admitted",
        admitted.len()
    );
    assert_eq!(admitted.len() + refused, 5);
    // The admitted work as ever.
    let mut ada = admitted.pop().expect("one");
    send(&mut ada, hello(Some("user:ada"), Some("tab-1"))).await;
    assert_eq!(next(&mut ada).await["type"], "state");
    assert!(hub.tracker().session("tab-1").is_some());
}

#[tokio::test]
async fn a_flood_is_refused_once_then_dropped_until_the_rate_allows() {
    let config = HubConfig::default()
        .all_users_feed(true)
        .client_rate(Some(RateLimit::new(10, 20)));
    let (hub, clock, url) = server_config::<()>(Policy::default(), config).await;
    let mut ada = client(&url).await;
    send(&mut ada, hello(Some("user:ada"), Some("tab-1"))).await;
    next(&mut ada).await;
    let before = hub.version();
    // 100 activity flips at one instant: the burst of 20 is taken, each a change.
    for i in 0..100 {
        let activity = if i % 2 == 0 { "idle" } else { "active" };
        send(&mut ada, json!({"type": "heartbeat", "activity": activity})).await;
    }
    // Every message read by the server (a ping is answered once the server reads it, after
    // the flood): what was refused is settled before the clock moves.
    let mut refusals: Vec<_> = sync(&mut ada)
        .await
        .into_iter()
        .filter(|m| m["type"] == "refused")
        .collect();
    // A second later (10 tokens), a resync: its state comes after every refusal sent.
    clock.advance(Duration::from_secs(1));
    send(&mut ada, json!({"type": "resync"})).await;
    loop {
        let m = next(&mut ada).await;
        match m["type"].as_str() {
            Some("state") => break,
            Some("refused") => refusals.push(m),
            _ => {}
        }
    }
    assert_eq!(
        refusals.len(),
        1,
        "one refusal for 80 over the rate: {refusals:?}"
    );
    assert_eq!(refusals[0]["code"], "rate_limited");
    assert_eq!(refusals[0]["retry_after_ms"], 100);
    assert_eq!(
        hub.version(),
        before + 20,
        "only the burst changed anything"
    );
    assert_eq!(
        hub.tracker().session("tab-1").expect("live").activity,
        Activity::Active,
        "the 20th flip, the last taken"
    );
}

#[tokio::test]
async fn a_connection_without_a_user_is_refused_unless_watchers_are_on() {
    let options = WsOptions::default().hello_timeout(Duration::from_millis(300));
    let (hub, _clock, url) =
        server_options::<()>(Policy::default(), HubConfig::default(), options).await;
    let mut c = client(&url).await;
    send(&mut c, hello(None, None)).await;
    let refused = next(&mut c).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("refused"), Some("unauthorized"))
    );
    assert_eq!(u16::from(closed(&mut c).await.0), 1008);
    // A user still comes in.
    let mut ada = client(&url).await;
    send(&mut ada, hello(Some("user:ada"), Some("tab-1"))).await;
    assert_eq!(next(&mut ada).await["type"], "state");
    assert!(hub.tracker().session("tab-1").is_some());
}

#[tokio::test]
async fn a_connection_that_floods_is_closed_and_its_session_stays_until_its_grace() {
    let config = HubConfig::default().client_rate(Some(RateLimit::new(10, 20)));
    let (hub, _clock, url) = server_config::<()>(Policy::default(), config).await;
    let mut ada = client(&url).await;
    send(&mut ada, hello(Some("user:ada"), Some("tab-1"))).await;
    next(&mut ada).await;
    // 20 taken, then over ten times the rate (100) dropped within the second: closed.
    for i in 0..130 {
        let activity = if i % 2 == 0 { "idle" } else { "active" };
        send(&mut ada, json!({"type": "heartbeat", "activity": activity})).await;
    }
    let (code, reason) = closed(&mut ada).await;
    assert_eq!(u16::from(code), 1008);
    assert!(reason.contains("too many"), "{reason}");
    // A lost connection: the session waits out its grace, as for any connection lost.
    assert!(hub.tracker().session("tab-1").is_some());
}

#[tokio::test]
async fn a_session_s_rate_is_not_renewed_by_reconnecting() {
    // Connections may send 100 at once; the session 5 (hellos included).
    let config = HubConfig::default()
        .client_rate(Some(RateLimit::new(100, 100)))
        .session_rate(Some(RateLimit::new(1, 5)));
    let (hub, clock, url) = server_config::<()>(Policy::default(), config).await;
    // Five hellos at one instant: each a fresh connection, all taken.
    for _ in 0..5 {
        let mut tab = client(&url).await;
        send(&mut tab, hello(Some("user:ada"), Some("tab-1"))).await;
        assert_eq!(next(&mut tab).await["type"], "state");
    }
    // The sixth is refused before it connects, and says when to come back.
    let mut tab = client(&url).await;
    send(&mut tab, hello(Some("user:ada"), Some("tab-1"))).await;
    let refused = next(&mut tab).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("refused"), Some("rate_limited"))
    );
    assert_eq!(refused["retry_after_ms"], 1000);
    assert_eq!(u16::from(closed(&mut tab).await.0), 1008);
    // Another session is not held back by it.
    let mut other = client(&url).await;
    send(&mut other, hello(Some("user:ada"), Some("tab-2"))).await;
    assert_eq!(next(&mut other).await["type"], "state");
    // A second later, one more hello is taken; its heartbeats then count against the session.
    clock.advance(Duration::from_secs(1));
    let mut tab = client(&url).await;
    send(&mut tab, hello(Some("user:ada"), Some("tab-1"))).await;
    assert_eq!(next(&mut tab).await["type"], "state");
    send(&mut tab, json!({"type": "heartbeat", "activity": "idle"})).await;
    let refused: Vec<_> = sync(&mut tab)
        .await
        .into_iter()
        .filter(|m| m["type"] == "refused")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["code"], "rate_limited");
    assert_eq!(
        hub.tracker().session("tab-1").expect("live").activity,
        Activity::Active,
        "the heartbeat over the session's rate changed nothing"
    );
}
