//! A few users and tabs on a manual clock, printing the transitions as time passes.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::time::Duration;

use presence_tracker::{
    Activity, DisconnectKind, ManualClock, Policy, PresenceTracker, Subject, Transitions,
};

type Tracker = PresenceTracker<&'static str, &'static str, ManualClock>;

fn main() -> Result<(), presence_tracker::Error> {
    let clock = ManualClock::new();
    let tracker = Tracker::with_clock(Policy::default(), clock.clone());
    let start = clock.now();
    let show = |what: &str, events: Transitions<&str, &str>| {
        if what == "tick" && events.is_empty() {
            return;
        }
        let t = clock.now().saturating_duration_since(start).as_secs();
        println!("t={t:>4}s  {what}");
        for e in events {
            let subject = match e.subject {
                Subject::User { user } => format!("user {user}"),
                Subject::Session { user, session } => format!("  {user}/{session}"),
            };
            println!(
                "          {subject:<18} {:>7} -> {:<7} ({:?}, seq {}, {} sessions)",
                e.from, e.to, e.cause, e.seq, e.sessions
            );
        }
    };

    show("ada opens two tabs", {
        let mut e = tracker.connect("ada", "ada-tab1", "sid-1", Activity::Active)?;
        e.append(&mut tracker.connect("ada", "ada-tab2", "sid-2", Activity::Active)?);
        e
    });
    show(
        "bob opens the app on his phone",
        tracker.connect("bob", "bob-phone", "sid-3", Activity::Active)?,
    );
    show(
        "ada hides tab 2",
        tracker.heartbeat("ada-tab2", Activity::Background)?,
    );

    clock.advance(Duration::from_secs(5));
    show("ada reloads tab 1 (clean close, reconnect 1 s later)", {
        let mut e = tracker.disconnect("ada-tab1", "sid-1", DisconnectKind::Clean)?;
        clock.advance(Duration::from_secs(1));
        e.append(&mut tracker.connect("ada", "ada-tab1", "sid-4", Activity::Active)?);
        e
    });
    show("heartbeats that change nothing", {
        let mut e = tracker.heartbeat("ada-tab1", Activity::Active)?;
        e.append(&mut tracker.heartbeat("bob-phone", Activity::Active)?);
        e
    });

    // Bob's phone is locked in his pocket: no close frame, no heartbeat. Ada keeps typing.
    // A server calls tick at next_deadline(); here virtual time jumps there directly.
    while clock.now().saturating_duration_since(start) < Duration::from_secs(55) {
        let Some(next) = tracker.next_deadline() else {
            break;
        };
        clock.set(next.max(clock.now()));
        let mut e = tracker.heartbeat("ada-tab1", Activity::Active)?;
        e.append(&mut tracker.tick());
        show("tick", e);
    }

    show(
        "ada closes tab 1",
        tracker.disconnect("ada-tab1", "sid-4", DisconnectKind::Clean)?,
    );
    clock.advance(Duration::from_secs(6));
    show(
        "tick (tab 1's grace ran out; tab 2 keeps ada online)",
        tracker.tick(),
    );

    // Nobody sends anything any more: follow the deadlines down to offline.
    while let Some(next) = tracker.next_deadline() {
        if tracker.census().sessions.online() == 0 {
            break;
        }
        clock.set(next.max(clock.now()));
        show("tick", tracker.tick());
    }
    let ada = tracker.user("ada");
    println!(
        "\nada is {} with {} sessions, last seen {} s ago",
        ada.presence,
        ada.sessions,
        ada.last_seen
            .map_or(0, |t| clock.now().saturating_duration_since(t).as_secs())
    );
    println!("census: {:?}", tracker.census());
    Ok(())
}
