//! The hub: one total order of whole-user updates, subscribers that never see a silent gap,
//! and the tick driver's wake rule. Time moves through a `ManualClock` (and tokio's paused
//! clock for the driver); nothing sleeps for real.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use presence_tracker::{Activity, DisconnectKind, ManualClock, Policy, Presence, PresenceTracker};
use presence_tracker_server::wire::State;
use presence_tracker_server::{Batch, Delivery, Hub, HubConfig, Subscription, Ticking};

type TestHub = Hub<String, String, ManualClock>;

fn hub_with(config: HubConfig) -> (TestHub, ManualClock) {
    let clock = ManualClock::new();
    let tracker = PresenceTracker::with_clock(Policy::default(), clock.clone());
    (Hub::new(tracker, config), clock)
}

/// What a client holds: the resync rule of `wire`, applied to deliveries.
#[derive(Debug, Default)]
struct Client {
    epoch: u64,
    version: u64,
    users: HashMap<String, (Presence, usize, u64)>,
    states: usize,
    updates: usize,
}

impl Client {
    fn apply(&mut self, d: &Delivery<String>) {
        match d {
            Delivery::State(s) => self.replace(s),
            Delivery::Updates(b) => self.update(b),
        }
    }

    fn replace(&mut self, s: &State<String>) {
        self.states += 1;
        self.epoch = s.epoch;
        self.version = s.version;
        self.users = s
            .users
            .iter()
            .map(|u| (u.user.clone(), (u.presence, u.sessions, u.seq)))
            .collect();
    }

    fn update(&mut self, b: &Batch<String>) {
        self.updates += 1;
        assert_eq!(b.epoch(), self.epoch, "updates of another epoch");
        assert_eq!(
            b.from(),
            self.version + 1,
            "a version skipped without a state"
        );
        self.version = b.to();
        for u in b.users() {
            let known = self.users.get(&u.user).map_or(0, |&(_, _, seq)| seq);
            if u.seq <= known {
                continue; // old news
            }
            if u.presence == Presence::Offline {
                self.users.remove(&u.user);
            } else {
                self.users
                    .insert(u.user.clone(), (u.presence, u.sessions, u.seq));
            }
        }
    }

    fn drain(&mut self, feed: &mut Subscription<String, String, ManualClock>) {
        while let Some(d) = feed.try_recv() {
            self.apply(&d);
        }
    }

    /// What the client shows, comparable with the tracker's reads.
    fn shown(&self) -> HashMap<String, (Presence, usize)> {
        self.users
            .iter()
            .map(|(u, &(p, n, _))| (u.clone(), (p, n)))
            .collect()
    }
}

fn truth(hub: &TestHub) -> HashMap<String, (Presence, usize)> {
    hub.tracker()
        .online()
        .into_iter()
        .map(|(u, v)| (u, (v.presence, v.sessions)))
        .collect()
}

#[test]
fn a_subscriber_gets_the_state_then_every_change_of_presence_or_tabs() {
    let (hub, clock) = hub_with(HubConfig::default());
    let mut feed = hub.subscribe();
    let mut client = Client::default();
    client.drain(&mut feed);
    assert_eq!((client.states, client.users.len()), (1, 0));

    hub.connect("ada".into(), "tab-1".into(), "s1", Activity::Active)
        .expect("connects");
    client.drain(&mut feed);
    assert_eq!(client.shown()["ada"], (Presence::Active, 1));

    // A second tab changes no presence but the tab count: one update.
    hub.connect("ada".into(), "tab-2".into(), "s2", Activity::Background)
        .expect("connects");
    client.drain(&mut feed);
    assert_eq!(
        (client.updates, client.shown()["ada"]),
        (2, (Presence::Active, 2))
    );

    // A heartbeat that changes nothing publishes nothing.
    hub.heartbeat("tab-1", Activity::Active).expect("live");
    client.drain(&mut feed);
    assert_eq!(client.updates, 2);

    // Tab 1 leaves; after the leave grace a tick ends it: the user is away with one tab.
    hub.leave("tab-1", "s1").expect("live");
    clock.advance(Duration::from_secs(6));
    assert!(hub.tick() >= 1);
    client.drain(&mut feed);
    assert_eq!(client.shown()["ada"], (Presence::Away, 1));

    // The last tab goes silent: offline after the TTL, and gone from the state.
    clock.advance(Duration::from_secs(300));
    hub.tick();
    client.drain(&mut feed);
    assert!(client.users.is_empty());
    assert!(hub.state().users.is_empty());
    assert_eq!(client.shown(), truth(&hub));
    assert_eq!(client.version, hub.version());
}

#[test]
fn a_subscriber_that_falls_behind_gets_a_fresh_state_not_a_gap() {
    let (hub, _clock) = hub_with(HubConfig::default().backlog(4));
    let mut feed = hub.subscribe();
    let mut client = Client::default();
    client.drain(&mut feed);
    for i in 0..20 {
        hub.connect(
            format!("user-{i}"),
            format!("tab-{i}"),
            "s",
            Activity::Active,
        )
        .expect("connects");
    }
    client.drain(&mut feed);
    assert_eq!(client.states, 2, "the lag was answered with a state");
    assert_eq!(client.version, hub.version());
    assert_eq!(client.shown(), truth(&hub));
    assert_eq!(client.users.len(), 20);
}

#[test]
fn a_state_is_made_once_per_version_and_shared() {
    let (hub, _clock) = hub_with(HubConfig::default());
    hub.connect("ada".into(), "tab-1".into(), "s1", Activity::Active)
        .expect("connects");
    let a = hub.state();
    let b = hub.state();
    assert!(Arc::ptr_eq(&a, &b), "a connect storm shares one state");
    hub.connect("bob".into(), "tab-2".into(), "s2", Activity::Active)
        .expect("connects");
    let c = hub.state();
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!((c.version, c.users.len()), (a.version + 1, 2));
}

#[test]
fn a_restarted_hub_has_a_new_epoch_and_publishes_the_restored_users() {
    let (hub, clock) = hub_with(HubConfig::default());
    hub.connect("ada".into(), "tab-1".into(), "s1", Activity::Active)
        .expect("connects");
    let snapshot = hub.tracker().snapshot();
    let restored =
        PresenceTracker::restore(snapshot, Policy::default(), clock.clone()).expect("restores");
    let again = Hub::new(restored, HubConfig::default());
    assert_ne!(again.epoch(), hub.epoch());
    let state = again.state();
    assert_eq!(state.users.len(), 1);
    assert_eq!(state.users[0].user, "ada");

    // A client of the old server resyncs on the new epoch and shows what the new one has.
    let mut client = Client::default();
    client.replace(&hub.state());
    client.replace(&state);
    assert_eq!(client.shown(), truth(&again));
}

#[test]
fn concurrent_signals_end_with_every_subscriber_showing_the_tracker() {
    let (hub, clock) = hub_with(HubConfig::default().backlog(100_000));
    let mut feed = hub.subscribe();
    let activities = [Activity::Active, Activity::Idle, Activity::Background];
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let hub = hub.clone();
            scope.spawn(move || {
                for i in 0..2_000u64 {
                    // Users shared between threads, sessions per thread.
                    let user = format!("user-{}", i % 7);
                    let session = format!("tab-{t}-{}", i % 5);
                    let activity = activities[((i * 7 + t) % 3) as usize];
                    match i % 11 {
                        0 => {
                            let _ = hub.leave(&session, format!("c-{t}-{i}"));
                        }
                        1 => {
                            let _ = hub.disconnect(&session, "none", DisconnectKind::Lost);
                        }
                        _ => {
                            if hub.heartbeat(&session, activity).is_err() {
                                let _ = hub.connect(user, session, format!("c-{t}-{i}"), activity);
                            }
                        }
                    }
                }
            });
        }
        let hub = hub.clone();
        let clock = clock.clone();
        scope.spawn(move || {
            for _ in 0..200 {
                clock.advance(Duration::from_millis(200));
                hub.tick();
            }
        });
    });
    hub.tick();
    let mut client = Client::default();
    client.drain(&mut feed);
    assert_eq!(client.states, 1, "the backlog held everything");
    assert_eq!(client.version, hub.version());
    assert_eq!(client.shown(), truth(&hub));
    // And a newcomer's state agrees too.
    let mut late = Client::default();
    late.replace(&hub.state());
    assert_eq!(late.shown(), truth(&hub));
}

/// Lets spawned tasks run until they wait again.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// Moves both clocks: the tracker's and tokio's (paused).
async fn step(clock: &ManualClock, d: Duration) {
    clock.advance(d);
    tokio::time::advance(d).await;
    settle().await;
}

#[tokio::test(start_paused = true)]
async fn the_driver_publishes_downgrades_when_they_are_due() {
    let (hub, clock) = hub_with(HubConfig::default());
    let mut feed = hub.subscribe();
    let mut client = Client::default();
    client.drain(&mut feed);
    let driver = tokio::spawn(hub.clone().run_ticker());
    hub.connect("ada".into(), "tab-1".into(), "s1", Activity::Active)
        .expect("connects");
    settle().await;
    client.drain(&mut feed);
    assert_eq!(client.shown()["ada"].0, Presence::Active);

    // Active for 15 s: nothing at 14.9 s, idle right after 15 s.
    for _ in 0..149 {
        step(&clock, Duration::from_millis(100)).await;
    }
    client.drain(&mut feed);
    assert_eq!(client.shown()["ada"].0, Presence::Active);
    step(&clock, Duration::from_millis(200)).await;
    client.drain(&mut feed);
    assert_eq!(client.shown()["ada"].0, Presence::Idle);
    driver.abort();
}

#[tokio::test(start_paused = true)]
async fn a_signal_that_moves_the_deadline_earlier_wakes_the_driver() {
    // The driver may sleep an hour: only the wake rule can make it publish the leave on time.
    let config = HubConfig::default().ticking(Ticking::Deadline {
        max_wait: Duration::from_secs(3600),
    });
    let (hub, clock) = hub_with(config);
    let mut feed = hub.subscribe();
    let mut client = Client::default();
    client.drain(&mut feed);
    hub.connect("ada".into(), "tab-1".into(), "s1", Activity::Background)
        .expect("connects");
    let driver = tokio::spawn(hub.clone().run_ticker());
    settle().await; // the driver now sleeps until ada's next deadline (away ends at 180 s)

    // A clean close: offline at the leave grace (5 s), long before the sleeping deadline.
    hub.disconnect("tab-1", "s1", DisconnectKind::Clean)
        .expect("live");
    settle().await;
    for _ in 0..6 {
        step(&clock, Duration::from_secs(1)).await;
    }
    client.drain(&mut feed);
    assert!(client.users.is_empty(), "ada went offline at the grace");
    driver.abort();
}

#[tokio::test(start_paused = true)]
async fn an_interval_driver_ticks_every_period() {
    let config = HubConfig::default().ticking(Ticking::Interval {
        period: Duration::from_secs(1),
    });
    let (hub, clock) = hub_with(config);
    let mut feed = hub.subscribe();
    let mut client = Client::default();
    hub.connect("ada".into(), "tab-1".into(), "s1", Activity::Active)
        .expect("connects");
    let driver = tokio::spawn(hub.clone().run_ticker());
    for _ in 0..16 {
        step(&clock, Duration::from_secs(1)).await;
    }
    client.drain(&mut feed);
    assert_eq!(client.shown()["ada"].0, Presence::Idle);
    driver.abort();
}

#[tokio::test(start_paused = true)]
async fn a_burst_is_one_gathered_delivery_with_the_latest_of_each_user() {
    let (hub, _clock) = hub_with(HubConfig::default());
    let mut feed = hub.subscribe();
    let mut client = Client::default();
    client.apply(&feed.recv().await.expect("the state"));
    for i in 0..100 {
        hub.connect(
            format!("user-{i}"),
            format!("tab-{i}"),
            "s",
            Activity::Active,
        )
        .expect("connects");
    }
    // The same user three times: one entry, its latest state.
    hub.heartbeat("tab-0", Activity::Idle).expect("live");
    hub.heartbeat("tab-0", Activity::Background).expect("live");
    let Some(Delivery::Updates(batch)) = feed.recv_gathered(Duration::from_millis(50)).await else {
        panic!("updates");
    };
    assert_eq!((batch.from(), batch.to()), (1, 102));
    assert_eq!(batch.users().count(), 100);
    let ada = batch.users().find(|u| u.user == "user-0").expect("user-0");
    assert_eq!(ada.presence, Presence::Away);
    client.update(&batch);
    assert_eq!(client.shown(), truth(&hub));
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_gathering_keeps_what_it_had() {
    let (hub, _clock) = hub_with(HubConfig::default());
    let mut feed = hub.subscribe();
    let mut client = Client::default();
    client.apply(&feed.recv().await.expect("the state"));
    hub.connect("ada".into(), "tab-1".into(), "s1", Activity::Active)
        .expect("connects");
    // A select! that takes another branch while the gathering lingers drops its future.
    tokio::select! {
        _ = feed.recv_gathered(Duration::from_secs(1)) => panic!("the other branch is first"),
        () = tokio::time::sleep(Duration::from_millis(10)) => {}
    }
    hub.connect("bob".into(), "tab-2".into(), "s2", Activity::Active)
        .expect("connects");
    let Some(Delivery::Updates(batch)) = feed.recv_gathered(Duration::from_secs(1)).await else {
        panic!("updates");
    };
    assert_eq!((batch.from(), batch.to(), batch.users().count()), (1, 2, 2));
    client.update(&batch);
    assert_eq!(client.shown(), truth(&hub));
}
