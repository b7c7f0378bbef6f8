//! What both servers do besides their transport: the tracker (restored from a snapshot if one
//! was saved), the hub and its tick driver, a log of what was published, and serving until a
//! signal, then saving the snapshot. With `--redis`, the server is one node of a cluster: the
//! hub publishes the cluster's users and rooms, and at a signal the node hands its sessions off
//! instead of saving a snapshot.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use std::collections::HashMap;

use presence_tracker::{Presence, PresenceTracker, Snapshot, SystemClock, Timestamp};
use presence_tracker_server::cluster::{ClusterConfig, ClusterNode};
use presence_tracker_server::net::{ConnectionLimits, GuardedListener, Peer};
use presence_tracker_server::{Delivery, Hub, HubConfig, Meta, Ticking};
use serde::Serialize;

use super::auth::Signer;
use super::config::Config;

/// The hub both servers use: users, sessions and rooms named by strings, with JSON metadata
/// in rooms (the demo's: a name, a colour, the section being edited).
pub(crate) type AppHub = Hub<String, String, SystemClock, String, Meta>;

/// The cluster node both servers use with `--redis`, of the hub's types.
pub(crate) type AppCluster = ClusterNode<String, String, String, Meta>;

/// How many published updates `/api/events` keeps (the oldest are dropped).
const LOG_LEN: usize = 100_000;

/// The running server's shared parts.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) hub: AppHub,
    pub(crate) signer: Signer,
    /// Every update published, oldest first: what `/api/events` shows.
    pub(crate) log: Arc<Mutex<VecDeque<LogEntry>>>,
    /// The cluster this server is a node of (`--redis`).
    pub(crate) cluster: Option<AppCluster>,
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
    /// The tracker (from the snapshot file if there is one), the cluster node (`--redis`), the
    /// hub, its driver and its log.
    ///
    /// # Errors
    ///
    /// A snapshot file that cannot be read or restored; a cluster node that cannot start.
    pub(crate) async fn start(config: &Config) -> Result<App, String> {
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
        let hub_config = HubConfig::default()
            .ticking(ticking)
            .all_users_feed(config.all_users)
            .watchers(config.watchers)
            .big_room(config.big_room);
        let (hub, cluster) = match &config.redis {
            Some(url) => {
                let cluster = start_node(url, config).await?;
                let hub = Hub::with_cluster(tracker, hub_config, cluster.clone());
                (hub, Some(cluster))
            }
            None => (Hub::new(tracker, hub_config), None),
        };
        tokio::spawn(hub.clone().run_ticker());
        let log = Arc::new(Mutex::new(VecDeque::new()));
        tokio::spawn(record(hub.clone(), Arc::clone(&log)));
        Ok(App {
            hub,
            signer: Signer::new(&config.secret)?,
            log,
            cluster,
        })
    }

    /// What `/api/cluster` shows: this node's id, health and counters (`null` alone).
    pub(crate) fn cluster_status(&self) -> Option<ClusterStatus> {
        let cluster = self.cluster.as_ref()?;
        let stats = cluster.stats();
        Some(ClusterStatus {
            node: cluster.node_id(),
            healthy: cluster.health().is_healthy(),
            commands: stats.commands,
            writes: stats.writes,
            refused: stats.refused,
            messages: stats.messages,
            nodes_reaped: stats.nodes_reaped,
            garbage: stats.garbage,
        })
    }

    /// The published updates after version `after`, oldest first, at most `limit`.
    pub(crate) fn events(&self, after: u64, limit: usize) -> Vec<LogEntry> {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        // Oldest first, by version: the first after `after` is found by halving.
        let start = log.partition_point(|e| e.version <= after);
        log.range(start..).take(limit).cloned().collect()
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
        // Every connection bounded in time, and their number bounded.
        let limits = ConnectionLimits::default()
            .connections(config.max_connections, config.max_per_address)
            .timeouts(
                Duration::from_secs(10),
                config.ping_timeout.max(Duration::from_secs(1)),
                // Longer than a quiet connection goes between the server's pings and a long poll.
                (config.ping_interval + config.ping_timeout) * 2,
            );
        let listener = GuardedListener::new(listener, limits);
        if config.dev {
            println!(
                "--dev: sign-in tokens are signed with a public key; anyone who reaches this server \
                 can sign in as anyone. Give --secret instead for anything but a try on this machine"
            );
        }
        // Tests read this line to learn the port.
        println!("listening on http://{addr}");
        tokio::select! {
            served = axum::serve(listener, router.into_make_service_with_connect_info::<Peer>()) => served.map_err(|e| e.to_string())?,
            () = shutdown_signal() => {}
        }
        if let Some(cluster) = &self.cluster {
            // Hand the sessions off: clients that reconnect to another node flap nothing.
            cluster
                .clone()
                .shutdown()
                .await
                .map_err(|e| format!("cluster handoff: {e}"))?;
            println!("handed this node's sessions off to the cluster");
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

/// This node of the cluster, as `/api/cluster` shows it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ClusterStatus {
    node: String,
    healthy: bool,
    /// Commands sent to Redis since the start (leases, writes, reads).
    commands: u64,
    writes: u64,
    refused: u64,
    messages: u64,
    nodes_reaped: u64,
    garbage: u64,
}

/// Joins the cluster on the Redis at `url`: the policy's graces, the lease and prefix given.
async fn start_node(url: &str, config: &Config) -> Result<AppCluster, String> {
    let mut cluster = ClusterConfig::new(url.to_string())
        .policy(&config.policy)
        .on_diagnostic(|d| eprintln!("cluster: {d:?}"));
    if let Some(prefix) = &config.redis_prefix {
        cluster = cluster.prefix(prefix.clone());
    }
    if let Some(lease) = config.lease {
        // A shorter lease asks for a shorter response timeout (at most a third of it) and
        // looks for lapsed nodes more often.
        cluster = cluster
            .lease_ttl(lease)
            .response_timeout((lease / 3).min(Duration::from_secs(2)))
            .reap_interval((lease / 5).min(Duration::from_secs(1)));
    }
    let bound = cluster.offline_bound();
    let node = ClusterNode::start(cluster)
        .await
        .map_err(|e| format!("--redis {url}: {e}"))?;
    println!(
        "node {} of the cluster on {url}: a crashed node's users offline within {bound:?}",
        node.node_id()
    );
    Ok(node)
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
