//! What both servers do besides their transport: the tracker (restored from a snapshot if one
//! was saved), the hub and its tick driver, a log of what was published, and serving until a
//! signal, then saving the snapshot.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use std::collections::HashMap;

use presence_tracker::{Presence, PresenceTracker, Snapshot, SystemClock, Timestamp};
use presence_tracker_server::{Delivery, Hub, HubConfig, Meta, Ticking};
use serde::Serialize;

use super::auth::Signer;
use super::config::Config;

/// The hub both servers use: users, sessions and rooms named by strings, with JSON metadata
/// in rooms (the demo's: a name, a colour, the section being edited).
pub(crate) type AppHub = Hub<String, String, SystemClock, String, Meta>;

/// How many published updates `/api/events` keeps (the oldest are dropped).
const LOG_LEN: usize = 100_000;

/// The running server's shared parts.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) hub: AppHub,
    pub(crate) signer: Signer,
    /// Every update published, oldest first: what `/api/events` shows.
    pub(crate) log: Arc<Mutex<VecDeque<LogEntry>>>,
}

/// One published update, with the presence it changed from.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LogEntry {
    epoch: u64,
    version: u64,
    user: String,
    from: Presence,
    to: Presence,
    sessions: usize,
    last_seen: Timestamp,
}

impl App {
    /// The tracker (from the snapshot file if there is one), the hub, its driver and its log.
    ///
    /// # Errors
    ///
    /// A snapshot file that cannot be read or restored.
    pub(crate) fn start(config: &Config) -> Result<App, String> {
        let tracker = match &config.snapshot {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("snapshot {}: {e}", path.display()))?;
                let snapshot: Snapshot<String, String, String, Meta> = serde_json::from_str(&text)
                    .map_err(|e| format!("snapshot {}: {e}", path.display()))?;
                PresenceTracker::restore(snapshot, config.policy.clone(), Default::default())
                    .map_err(|e| format!("snapshot {}: {e}", path.display()))?
            }
            _ => PresenceTracker::new(config.policy.clone()),
        };
        let ticking = match config.tick_every {
            Some(period) => Ticking::Interval { period },
            None => Ticking::default(),
        };
        let hub = Hub::new(tracker, HubConfig::default().ticking(ticking));
        tokio::spawn(hub.clone().run_ticker());
        let log = Arc::new(Mutex::new(VecDeque::new()));
        tokio::spawn(record(hub.clone(), Arc::clone(&log)));
        Ok(App {
            hub,
            signer: Signer::new(&config.secret)?,
            log,
        })
    }

    /// The published updates so far.
    pub(crate) fn events(&self) -> Vec<LogEntry> {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.iter().cloned().collect()
    }

    /// Binds 127.0.0.1:`port` (0 picks a free port), prints the URL, and serves `router` until
    /// SIGTERM or Ctrl-C; then saves the snapshot (while the sockets are still open, as the
    /// graceful-shutdown order of `PresenceTracker::snapshot` says) and exits.
    ///
    /// # Errors
    ///
    /// Binding, serving or saving failed.
    pub(crate) async fn serve(&self, router: Router, config: &Config) -> Result<(), String> {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, config.port)))
                .await
                .map_err(|e| format!("bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        // Tests read this line to learn the port.
        println!("listening on http://{addr}");
        tokio::select! {
            served = axum::serve(listener, router) => served.map_err(|e| e.to_string())?,
            () = shutdown_signal() => {}
        }
        if let Some(path) = &config.snapshot {
            let json =
                serde_json::to_string(&self.hub.tracker().snapshot()).map_err(|e| e.to_string())?;
            std::fs::write(path, json).map_err(|e| format!("snapshot {}: {e}", path.display()))?;
            println!("saved the snapshot to {}", path.display());
        }
        Ok(())
    }
}

/// Keeps the last [`LOG_LEN`] published updates.
async fn record(hub: AppHub, log: Arc<Mutex<VecDeque<LogEntry>>>) {
    let mut feed = hub.subscribe();
    let mut shown: HashMap<String, Presence> = HashMap::new();
    while let Some(delivery) = feed.recv().await {
        match delivery {
            Delivery::State(state) => {
                shown = state
                    .users
                    .iter()
                    .map(|u| (u.user.clone(), u.presence))
                    .collect();
            }
            // One update at a time (`recv`, not gathered).
            Delivery::Updates(batch) => {
                let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                for update in batch.updates() {
                    let u = &update.user;
                    let from = shown
                        .insert(u.user.clone(), u.presence)
                        .unwrap_or(Presence::Offline);
                    if u.presence == Presence::Offline {
                        shown.remove(&u.user);
                    }
                    if log.len() == LOG_LEN {
                        log.pop_front();
                    }
                    log.push_back(LogEntry {
                        epoch: update.epoch,
                        version: update.version,
                        user: u.user.clone(),
                        from,
                        to: u.presence,
                        sessions: u.sessions,
                        last_seen: u.last_seen,
                    });
                }
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        // No handler to install: then only SIGTERM stops it.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
