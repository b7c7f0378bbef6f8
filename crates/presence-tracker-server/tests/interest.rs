//! Presence by interest: a subscription of some users is sent their state and their updates,
//! nothing of anyone else, in version order, and a fresh state of them whenever it falls
//! behind or changes what it wants. Each delivery's JSON is made once and is the JSON of the
//! server message it stands for. Time moves through a `ManualClock`; nothing sleeps.

use std::collections::HashMap;
use std::time::Duration;

use presence_tracker::{Activity, ManualClock, Policy, Presence, PresenceTracker};
use presence_tracker_server::wire::Scope;
use presence_tracker_server::{Delivery, Hub, HubConfig, Interest, Subscription};
use serde_json::Value;

type TestHub = Hub<String, String, ManualClock>;

fn hub_with(config: HubConfig) -> (TestHub, ManualClock) {
    let clock = ManualClock::new();
    let tracker = PresenceTracker::with_clock(Policy::default(), clock.clone());
    (Hub::new(tracker, config), clock)
}

fn users(names: &[&str]) -> Interest<String> {
    Interest::Users(names.iter().map(|n| n.to_string()).collect())
}

fn connect(hub: &TestHub, user: &str) {
    hub.connect(
        user.into(),
        format!("tab-{user}"),
        format!("c-{user}").as_str(),
        Activity::Active,
    )
    .expect("connects");
}

/// What a client of a users scope holds: the resync rule for a subscribed feed (versions
/// skip; an update at or below the version held is already in it).
#[derive(Debug, Default)]
struct Client {
    version: u64,
    users: HashMap<String, Presence>,
    states: usize,
    seen: Vec<String>,
}

impl Client {
    fn drain(&mut self, feed: &mut Subscription<String, String, ManualClock>) {
        while let Some(d) = feed.try_recv() {
            self.apply(&d);
        }
    }

    fn apply(&mut self, d: &Delivery<String>) {
        match d {
            Delivery::State(s) => {
                assert_eq!(s.scope, Scope::Users);
                self.states += 1;
                self.version = s.version;
                self.users = s
                    .users
                    .iter()
                    .map(|u| (u.user.clone(), u.presence))
                    .collect();
            }
            Delivery::Updates(b) => {
                assert!(b.from() > self.version, "an update already held");
                self.version = b.to();
                for u in b.users() {
                    self.seen.push(u.user.clone());
                    if u.presence == Presence::Offline {
                        self.users.remove(&u.user);
                    } else {
                        self.users.insert(u.user.clone(), u.presence);
                    }
                }
            }
        }
    }
}

/// The tracker's online users among `names`.
fn truth_of(hub: &TestHub, names: &[&str]) -> HashMap<String, Presence> {
    hub.tracker()
        .online()
        .into_iter()
        .filter(|(u, _)| names.contains(&u.as_str()))
        .map(|(u, v)| (u, v.presence))
        .collect()
}

#[test]
fn a_subscription_of_users_gets_their_state_and_their_updates_only() {
    let (hub, clock) = hub_with(HubConfig::default());
    connect(&hub, "ada");
    connect(&hub, "bob");
    let mut feed = hub.subscribe_to(users(&["ada", "cy", "ada"]));
    let mut client = Client::default();
    client.drain(&mut feed);
    assert_eq!(client.states, 1);
    assert_eq!(
        client.users,
        truth_of(&hub, &["ada", "cy"]),
        "bob is not asked for"
    );

    connect(&hub, "cy");
    connect(&hub, "dan");
    hub.heartbeat("tab-bob", Activity::Background)
        .expect("live");
    hub.heartbeat("tab-ada", Activity::Idle).expect("live");
    client.drain(&mut feed);
    assert_eq!(client.seen, ["cy", "ada"], "nobody else's updates");
    assert_eq!(client.users, truth_of(&hub, &["ada", "cy"]));

    // Time takes everyone down a step: the subscription hears of its users' steps only.
    clock.advance(Duration::from_secs(20));
    hub.tick();
    client.drain(&mut feed);
    assert_eq!(client.users, truth_of(&hub, &["ada", "cy"]));
    assert!(client.seen.iter().all(|u| u == "ada" || u == "cy"));
    assert_eq!(client.states, 1, "no state after the first");
}

#[test]
fn a_new_interest_replaces_the_old_with_a_state_of_its_own() {
    let (hub, _clock) = hub_with(HubConfig::default());
    for u in ["ada", "bob", "cy"] {
        connect(&hub, u);
    }
    let mut feed = hub.subscribe_to(users(&["ada"]));
    let mut client = Client::default();
    client.drain(&mut feed);
    hub.heartbeat("tab-ada", Activity::Idle).expect("live");
    feed.set_interest(users(&["bob", "cy"]));
    assert_eq!(feed.pending(), 0, "what was queued for ada is dropped");
    client.drain(&mut feed);
    assert_eq!(client.states, 2);
    assert!(
        client.seen.is_empty(),
        "the state came instead of the update"
    );
    assert_eq!(client.users, truth_of(&hub, &["bob", "cy"]));

    hub.heartbeat("tab-ada", Activity::Background)
        .expect("live");
    hub.heartbeat("tab-cy", Activity::Idle).expect("live");
    client.drain(&mut feed);
    assert_eq!(client.seen, ["cy"], "ada is no longer asked for");

    // From users to everyone: a state of every user, scope all.
    feed.set_interest(Interest::All);
    let Some(Delivery::State(state)) = feed.try_recv() else {
        panic!("a state of everyone")
    };
    assert_eq!((state.scope, state.users.len()), (Scope::All, 3));
    assert_eq!(feed.scope(), Scope::All);
}

#[test]
fn an_update_reaches_only_the_subscriptions_of_its_user() {
    let (hub, _clock) = hub_with(HubConfig::default());
    // A thousand subscriptions of other users, and one of ada.
    let mut others: Vec<_> = (0..1000)
        .map(|i| hub.subscribe_to(users(&[format!("user-{i}").as_str()])))
        .collect();
    let mut ada = hub.subscribe_to(users(&["ada"]));
    let mut everyone = hub.subscribe();
    for feed in others.iter_mut().chain([&mut ada, &mut everyone]) {
        assert!(matches!(feed.try_recv(), Some(Delivery::State(_))));
    }
    connect(&hub, "ada");
    assert_eq!(ada.pending(), 1);
    assert_eq!(everyone.pending(), 1);
    assert!(others.iter().all(|f| f.pending() == 0));
}

#[test]
fn a_subscription_that_falls_behind_gets_a_fresh_state_of_its_users() {
    let (hub, _clock) = hub_with(HubConfig::default().backlog(4));
    connect(&hub, "ada");
    let mut feed = hub.subscribe_to(users(&["ada"]));
    let mut client = Client::default();
    client.drain(&mut feed);
    for activity in [Activity::Idle, Activity::Active]
        .into_iter()
        .cycle()
        .take(9)
    {
        hub.heartbeat("tab-ada", activity).expect("live");
    }
    let Some(Delivery::State(state)) = feed.try_recv() else {
        panic!("a fresh state instead of the backlog")
    };
    assert_eq!(state.version, hub.version());
    client.apply(&Delivery::State(state));
    assert_eq!(client.users, truth_of(&hub, &["ada"]));
    assert!(feed.try_recv().is_none(), "nothing queued after the state");
}

#[test]
fn a_dropped_subscription_leaves_the_index() {
    let (hub, _clock) = hub_with(HubConfig::default());
    let feed = hub.subscribe_to(users(&["ada"]));
    drop(feed);
    // Publishing to nobody is fine, and a new subscription sees only what comes after it.
    connect(&hub, "ada");
    let mut again = hub.subscribe_to(users(&["ada"]));
    let Some(Delivery::State(state)) = again.try_recv() else {
        panic!("a state")
    };
    assert_eq!(state.users.len(), 1);
    assert!(again.try_recv().is_none());
}

/// A subscription made between publications of its user holds, from its state and the
/// updates after it, what the tracker holds, at the hub's version.
#[test]
fn a_state_and_the_updates_after_it_fit_together() {
    let (hub, _clock) = hub_with(HubConfig::default());
    let activities = [Activity::Idle, Activity::Background, Activity::Active];
    connect(&hub, "ada");
    connect(&hub, "bob");
    for round in 0..6 {
        let mut steps = activities.iter().cycle().skip(round);
        for activity in steps.by_ref().take(round % 3) {
            hub.heartbeat("tab-ada", *activity).expect("live");
        }
        let mut feed = hub.subscribe_to(users(&["ada"]));
        let mut everyone = hub.subscribe();
        for activity in steps.take(3) {
            hub.heartbeat("tab-ada", *activity).expect("live");
            hub.heartbeat("tab-bob", *activity).expect("live");
        }
        let mut client = Client::default();
        client.drain(&mut feed);
        assert_eq!(client.users, truth_of(&hub, &["ada"]), "round {round}");
        let mut adas = 0;
        while let Some(d) = everyone.try_recv() {
            if let Delivery::Updates(b) = d {
                adas += b.users().filter(|u| u.user == "ada").count();
            }
        }
        assert_eq!(
            client.seen.len(),
            adas,
            "round {round}: each of ada's changes once"
        );
        assert!(
            client.version < hub.version(),
            "bob's last update is not ada's"
        );
    }
}

/// The JSON a delivery is sent as is the JSON of the server message it stands for, and the
/// same bytes for every subscriber.
#[tokio::test]
async fn each_delivery_is_encoded_once_as_its_server_message() {
    let (hub, _clock) = hub_with(HubConfig::default());
    connect(&hub, "ada");
    let mut a = hub.subscribe();
    let mut b = hub.subscribe();
    let (Some(sa), Some(sb)) = (a.try_recv(), b.try_recv()) else {
        panic!("states")
    };
    let (ja, jb) = (sa.to_json().expect("json"), sb.to_json().expect("json"));
    assert_eq!(
        ja.as_ptr(),
        jb.as_ptr(),
        "one encoding of the state, shared"
    );
    assert_eq!(parse(&ja), serde_json::to_value(&sa).expect("json"));
    assert_eq!(parse(&ja)["scope"], "all");

    connect(&hub, "bob");
    let (Some(ua), Some(ub)) = (a.try_recv(), b.try_recv()) else {
        panic!("updates")
    };
    let (ja, jb) = (ua.to_json().expect("json"), ub.to_json().expect("json"));
    assert_eq!(
        ja.as_ptr(),
        jb.as_ptr(),
        "one encoding of the update, shared"
    );
    assert_eq!(parse(&ja), serde_json::to_value(&ua).expect("json"));

    // Several updates gathered: spliced from the shared encodings.
    connect(&hub, "cy");
    hub.heartbeat("tab-ada", Activity::Idle).expect("live");
    hub.heartbeat("tab-cy", Activity::Idle).expect("live");
    let Some(gathered) = a.recv_gathered(Duration::ZERO).await else {
        panic!("a batch")
    };
    let Delivery::Updates(batch) = &gathered else {
        panic!("updates")
    };
    assert_eq!(batch.users().count(), 2, "the latest of ada and of cy");
    assert_eq!(
        parse(&gathered.to_json().expect("json")),
        serde_json::to_value(&gathered).expect("json")
    );
}

fn parse(json: &[u8]) -> Value {
    serde_json::from_slice(json).expect("valid JSON")
}
