//! Presence by interest over the WebSocket route, driven by a client of another stack
//! (tungstenite): a connection is sent the users it names and nobody else; without the
//! all-users feed a hello that names nobody is sent nobody; subscriptions are bounded and the
//! application's hook leaves out whom a connection may not see.
#![cfg(feature = "axum")]

mod support;

use presence_tracker::Policy;
use presence_tracker_server::HubConfig;
use serde_json::{json, Value};
use support::{client, hello, next, send, server_config, Client};

async fn signed_in(url: &str, user: &str, users: Option<&[&str]>) -> (Client, Value) {
    let mut c = client(url).await;
    let mut h = hello(Some(&format!("user:{user}")), Some(&format!("tab-{user}")));
    if let Some(users) = users {
        h["users"] = json!(users);
    }
    send(&mut c, h).await;
    let state = next(&mut c).await;
    assert_eq!(state["type"], "state");
    (c, state)
}

fn names(state: &Value) -> Vec<String> {
    let mut names: Vec<String> = state["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["user"].as_str().expect("a name").to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_connection_is_sent_the_users_it_names_and_nobody_else() {
    let (_hub, _clock, url) = server_config::<()>(Policy::default(), HubConfig::default()).await;
    let (_bob, _) = signed_in(&url, "bob", None).await;
    let (_eve, _) = signed_in(&url, "eve", None).await;
    let (mut ada, state) = signed_in(&url, "ada", Some(&["bob", "cy"])).await;
    assert_eq!(state["scope"], "users");
    assert_eq!(names(&state), ["bob"], "cy is offline, eve not asked for");

    let (_dan, _) = signed_in(&url, "dan", None).await;
    let (_cy, _) = signed_in(&url, "cy", None).await;
    let update = next(&mut ada).await;
    assert_eq!(update["type"], "updates");
    assert_eq!(
        update["users"][0]["user"], "cy",
        "dan's arrival was not sent"
    );
    assert!(update["from"].as_u64() > state["version"].as_u64());

    // A new list replaces the old: a state of it comes next, then its users' updates only.
    send(
        &mut ada,
        json!({"type": "subscribe", "users": ["dan", "eve"]}),
    )
    .await;
    let again = next(&mut ada).await;
    assert_eq!(
        (again["type"].as_str(), names(&again)),
        (Some("state"), vec!["dan".into(), "eve".into()])
    );
    let (_fay, _) = signed_in(&url, "fay", None).await;
    send(&mut ada, json!({"type": "subscribe", "users": ["fay"]})).await;
    let last = next(&mut ada).await;
    assert_eq!(
        (last["type"].as_str(), names(&last)),
        (Some("state"), vec!["fay".into()]),
        "fay's arrival came before she was asked for: no update of her, a state"
    );
}

#[tokio::test]
async fn without_the_all_users_feed_nobody_is_sent_everyone() {
    let (_hub, _clock, url) = server_config::<()>(Policy::default(), HubConfig::default()).await;
    let (_bob, _) = signed_in(&url, "bob", None).await;
    let (mut ada, state) = signed_in(&url, "ada", None).await;
    assert_eq!(
        (state["scope"].as_str(), names(&state).len()),
        (Some("users"), 0)
    );

    send(&mut ada, json!({"type": "subscribe", "all_users": true})).await;
    let refused = next(&mut ada).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("refused"), Some("forbidden"))
    );

    // A hello asking for everyone starts with nobody, and is told why.
    let mut cy = client(&url).await;
    let mut h = hello(Some("user:cy"), Some("tab-cy"));
    h["all_users"] = json!(true);
    send(&mut cy, h).await;
    let state = next(&mut cy).await;
    assert_eq!(
        (state["scope"].as_str(), names(&state).len()),
        (Some("users"), 0)
    );
    assert_eq!(next(&mut cy).await["code"], "forbidden");
}

#[tokio::test]
async fn with_the_all_users_feed_a_hello_that_names_nobody_is_sent_everyone() {
    let config = HubConfig::default().all_users_feed(true);
    let (_hub, _clock, url) = server_config::<()>(Policy::default(), config).await;
    let (_bob, _) = signed_in(&url, "bob", None).await;
    let (mut ada, state) = signed_in(&url, "ada", None).await;
    assert_eq!(state["scope"], "all");
    assert_eq!(names(&state), ["ada", "bob"]);
    // And it may still narrow down to some users.
    send(&mut ada, json!({"type": "subscribe", "users": ["bob"]})).await;
    let narrow = next(&mut ada).await;
    assert_eq!(
        (narrow["scope"].as_str(), names(&narrow)),
        (Some("users"), vec!["bob".into()])
    );
}

#[tokio::test]
async fn subscriptions_are_bounded_and_the_hook_leaves_out_whom_it_hides() {
    let config = HubConfig::default().max_interest(3);
    let (_hub, _clock, url) = server_config::<()>(Policy::default(), config).await;
    let (_bob, _) = signed_in(&url, "bob", None).await;
    let (_hidden, _) = signed_in(&url, "hidden-x", None).await;
    let (mut ada, _) = signed_in(&url, "ada", Some(&["bob"])).await;

    send(
        &mut ada,
        json!({"type": "subscribe", "users": ["a", "b", "c", "d"]}),
    )
    .await;
    let refused = next(&mut ada).await;
    assert_eq!(refused["code"], "limit", "refused whole: {refused}");

    send(
        &mut ada,
        json!({"type": "subscribe", "users": ["bob", "hidden-x"]}),
    )
    .await;
    let (first, second) = (next(&mut ada).await, next(&mut ada).await);
    let (state, refused) = if first["type"] == "state" {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(names(&state), ["bob"], "hidden-x left out");
    assert_eq!(refused["code"], "forbidden");

    // Garbage changes nothing.
    send(&mut ada, json!({"type": "subscribe", "users": "bob"})).await;
    assert_eq!(next(&mut ada).await["code"], "bad_message");
}
