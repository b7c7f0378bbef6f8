//! Command line and environment settings of the example servers, parsed with std only.
//!
//! Every flag `--some-name VALUE` can also be given as the environment variable
//! `PRESENCE_SOME_NAME`; the command line wins. Durations are in milliseconds, so a test can run
//! the whole policy scaled down (`--active-ms 1000 --ttl-ms 8000 ...`).

use std::path::PathBuf;
use std::time::Duration;

use presence_tracker::{Policy, PolicyBuilder};

/// What the servers are told at startup.
#[derive(Debug)]
pub(crate) struct Config {
    /// Port on 127.0.0.1.
    pub(crate) port: u16,
    /// The tracker's thresholds.
    pub(crate) policy: Policy,
    /// How often the transport pings the client (Socket.IO's `pingInterval`, a WebSocket ping).
    pub(crate) ping_interval: Duration,
    /// How long after a ping without an answer the connection counts as lost.
    pub(crate) ping_timeout: Duration,
    /// Where socket.io-client's browser bundle is read from, for `/socket.io.js`.
    pub(crate) socket_io_js: PathBuf,
    /// Where the tracker's snapshot is written at shutdown and read at start, if anywhere.
    pub(crate) snapshot: Option<PathBuf>,
    /// The key that signs sign-in tokens.
    pub(crate) secret: String,
    /// How the hub's driver ticks: at the deadlines (`None`), or every so often.
    pub(crate) tick_every: Option<Duration>,
    /// The Redis of the cluster this server is a node of, if any.
    pub(crate) redis: Option<String>,
    /// The start of the cluster's keys in Redis.
    pub(crate) redis_prefix: Option<String>,
    /// The node's lease in the cluster.
    pub(crate) lease: Option<Duration>,
    /// Whether a connection may be sent every user (the hub's all-users feed), and is when
    /// its hello names no users.
    pub(crate) all_users: bool,
    /// Whether a connection without a user (a page not signed in) may watch.
    pub(crate) watchers: bool,
    /// New connections let in per second, and at once: `None` for no limit.
    pub(crate) admission: Option<(u32, u32)>,
    /// Where Socket.IO refuses a connection over the rate: before its Engine.IO session (`http`,
    /// a 503) or at the namespace's connect (`namespace`, a `busy` refusal).
    #[allow(dead_code)] // the websocket example has one place: before the upgrade
    pub(crate) admit_at_namespace: bool,
    /// Above how many members a room is counted rather than listed, but in windows.
    pub(crate) big_room: usize,
    /// Whether the server runs with the public demo key (`--dev`): anyone may sign in as anyone.
    pub(crate) dev: bool,
    /// The most connections open at once, in all and from one address.
    pub(crate) max_connections: usize,
    pub(crate) max_per_address: usize,
}

/// The flags that take a value, with what they mean (printed by `--help`).
const FLAGS: &[(&str, &str)] = &[
    ("port", "port to listen on, on 127.0.0.1 (default 3000)"),
    (
        "active-ms",
        "age below which a session is active (default 15000)",
    ),
    (
        "idle-ms",
        "age below which a session is idle (default 60000)",
    ),
    (
        "away-ms",
        "age below which a session is away (default 180000)",
    ),
    (
        "ttl-ms",
        "age below which a session is stale, offline after (default 240000)",
    ),
    (
        "disconnect-grace-ms",
        "grace after a lost connection (default 120000)",
    ),
    (
        "leave-grace-ms",
        "grace after a clean close or a leave (default 5000)",
    ),
    (
        "metadata-interval-ms",
        "shortest time between two metadata changes of a tab in a room (default 50)",
    ),
    (
        "ping-interval-ms",
        "transport ping interval (default 25000)",
    ),
    ("ping-timeout-ms", "transport ping timeout (default 20000)"),
    (
        "socket-io-js",
        "path of socket.io.min.js (default: assets/vendor/socket.io.min.js)",
    ),
    (
        "snapshot",
        "file the tracker is saved to at shutdown and restored from at start (default: none)",
    ),
    (
        "secret",
        "key that signs sign-in tokens (required, but with --dev, which uses a public demo key)",
    ),
    (
        "max-connections",
        "connections open at once; more are closed as they are accepted (default 10000)",
    ),
    (
        "max-per-address",
        "connections open at once from one IP address (default: --max-connections, since the \
         demo listens on 127.0.0.1, where every client has the same address)",
    ),
    (
        "tick-ms",
        "tick every so many ms instead of at the deadlines (default 0: at the deadlines)",
    ),
    (
        "redis",
        "run as one node of a cluster on this Redis, e.g. redis://127.0.0.1:6379 (default: alone)",
    ),
    (
        "redis-prefix",
        "the start of the cluster's keys and channels in Redis (default pt)",
    ),
    (
        "lease-ms",
        "a node not heard from for this long is dead (default 10000; with --redis)",
    ),
    (
        "all-users",
        "on: a connection may be sent every user, and is when its hello names none; off: only \
         the users it subscribes to (default on, for the demo; off is what scales)",
    ),
    (
        "watchers",
        "on: a page that has not signed in may watch (the demo's default); off: such a \
         connection is refused, what a public endpoint wants unless it shows presence to anyone",
    ),
    (
        "big-room",
        "rooms of more members are counted, not listed, but to tabs that watch a window of \
         their members (default 1000)",
    ),
    (
        "admit-per-s",
        "new connections let in per second; over it an upgrade gets 503 (WebSocket) or a \
         `busy` refusal (Socket.IO) and comes back later (default 0: no limit)",
    ),
    (
        "admit-burst",
        "new connections let in at once (default: a quarter of --admit-per-s)",
    ),
    (
        "admit-at",
        "socketio: http (a 503 before the Engine.IO session, the cheap place) or namespace (a \
         `busy` refusal at the connect, with retry_after_ms) (default http)",
    ),
];

/// The demo's signing key with `--dev`: public (it is in this file), so anyone who can reach
/// the server can sign in as anyone.
pub(crate) const DEMO_SECRET: &str = "presence-tracker demo secret: set --secret";

/// The flags that take no value, with what they mean.
const SWITCHES: &[(&str, &str)] = &[(
    "dev",
    "sign tokens with a public demo key instead of --secret: anyone who reaches the server can \
     sign in as anyone (for trying it on this machine only)",
)];

/// One of the policy builder's duration setters.
type Setter = fn(PolicyBuilder, Duration) -> PolicyBuilder;

/// socket.io-client's browser bundle, vendored from npm (see assets/vendor/README.md).
const DEFAULT_SOCKET_IO_JS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../assets/vendor/socket.io.min.js"
);

impl Config {
    /// Reads the process's arguments and environment. `Ok(None)` means `--help` was printed.
    ///
    /// # Errors
    ///
    /// A message naming the flag that is unknown, lacks a value or has a bad one, or the
    /// policy's own error when the thresholds do not fit together.
    pub(crate) fn from_env_and_args(program: &str) -> Result<Option<Config>, String> {
        let mut values: Vec<(&str, String)> = Vec::new();
        for (name, _) in FLAGS.iter().chain(SWITCHES) {
            let var = format!("PRESENCE_{}", name.replace('-', "_").to_uppercase());
            if let Ok(value) = std::env::var(&var) {
                values.push((name, value));
            }
        }
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                print_help(program);
                return Ok(None);
            }
            if let Some((name, _)) = SWITCHES
                .iter()
                .find(|(name, _)| arg.strip_prefix("--") == Some(*name))
            {
                values.push((name, "on".to_string()));
                continue;
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
                None => (arg.clone(), None),
            };
            let name = flag
                .strip_prefix("--")
                .and_then(|n| FLAGS.iter().find(|(f, _)| *f == n).map(|(f, _)| *f))
                .ok_or_else(|| format!("unknown argument {arg:?} (try --help)"))?;
            let value = match inline {
                Some(value) => value,
                None => args
                    .next()
                    .ok_or_else(|| format!("--{name} needs a value"))?,
            };
            values.push((name, value));
        }
        // Later entries (the command line) override earlier ones (the environment).
        let get = |name: &str| {
            values
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
        };
        let millis = |name: &str| -> Result<Option<Duration>, String> {
            get(name)
                .map(|v| {
                    v.parse::<u64>()
                        .map(Duration::from_millis)
                        .map_err(|_| format!("--{name}: {v:?} is not a number of milliseconds"))
                })
                .transpose()
        };

        let port = match get("port") {
            Some(v) => v
                .parse::<u16>()
                .map_err(|_| format!("--port: {v:?} is not a port number"))?,
            None => 3000,
        };
        let mut builder = Policy::builder();
        let setters: [(&str, Setter); 7] = [
            ("active-ms", PolicyBuilder::active),
            ("idle-ms", PolicyBuilder::idle),
            ("away-ms", PolicyBuilder::away),
            ("ttl-ms", PolicyBuilder::ttl),
            ("disconnect-grace-ms", PolicyBuilder::disconnect_grace),
            ("leave-grace-ms", PolicyBuilder::leave_grace),
            ("metadata-interval-ms", PolicyBuilder::metadata_interval),
        ];
        for (name, set) in setters {
            if let Some(d) = millis(name)? {
                builder = set(builder, d);
            }
        }
        let policy = builder.build().map_err(|e| format!("policy: {e}"))?;
        Config {
            port,
            policy,
            ping_interval: millis("ping-interval-ms")?.unwrap_or(Duration::from_secs(25)),
            ping_timeout: millis("ping-timeout-ms")?.unwrap_or(Duration::from_secs(20)),
            socket_io_js: get("socket-io-js")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_IO_JS)),
            snapshot: get("snapshot").map(PathBuf::from),
            dev: match get("dev").map(String::as_str) {
                None | Some("" | "0" | "off" | "false") => false,
                Some(_) => true,
            },
            secret: get("secret").cloned().unwrap_or_default(),
            max_connections: match get("max-connections") {
                None => 10_000,
                Some(v) => match v.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--max-connections: {v:?} is not a count above 0")),
                },
            },
            max_per_address: match get("max-per-address") {
                None => 0, // --max-connections, once known
                Some(v) => match v.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--max-per-address: {v:?} is not a count above 0")),
                },
            },
            tick_every: millis("tick-ms")?.filter(|d| !d.is_zero()),
            redis: get("redis").cloned(),
            redis_prefix: get("redis-prefix").cloned(),
            lease: millis("lease-ms")?,
            big_room: match get("big-room") {
                None => 1000,
                Some(v) => match v.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--big-room: {v:?} is not a count above 0")),
                },
            },
            watchers: match get("watchers").map(String::as_str) {
                None | Some("on") => true,
                Some("off") => false,
                Some(v) => return Err(format!("--watchers: {v:?} is neither on nor off")),
            },
            all_users: match get("all-users").map(String::as_str) {
                None | Some("on") => true,
                Some("off") => false,
                Some(v) => return Err(format!("--all-users: {v:?} is neither on nor off")),
            },
            admission: {
                let count = |name: &str| -> Result<Option<u32>, String> {
                    get(name)
                        .map(|v| {
                            v.parse::<u32>()
                                .map_err(|_| format!("--{name}: {v:?} is not a count"))
                        })
                        .transpose()
                };
                match (
                    count("admit-per-s")?.filter(|&n| n > 0),
                    count("admit-burst")?,
                ) {
                    (Some(rate), burst) => Some((rate, burst.unwrap_or(rate / 4).max(1))),
                    (None, Some(_)) => return Err("--admit-burst needs --admit-per-s".into()),
                    (None, None) => None,
                }
            },
            admit_at_namespace: match get("admit-at").map(String::as_str) {
                None | Some("http") => false,
                Some("namespace") => true,
                Some(v) => return Err(format!("--admit-at: {v:?} is neither http nor namespace")),
            },
        }
        .checked()
        .map(Some)
    }

    /// Refuses flags that do not go together.
    fn checked(mut self) -> Result<Config, String> {
        if self.max_per_address == 0 {
            self.max_per_address = self.max_connections;
        }
        match (self.secret.is_empty(), self.dev) {
            (true, false) => {
                return Err(
                    "--secret is required: it signs the sign-in tokens. To try the demo \
                            on this machine, pass --dev instead (a public key: anyone who reaches \
                            the server can sign in as anyone)"
                        .into(),
                )
            }
            (true, true) => self.secret = DEMO_SECRET.to_string(),
            (false, true) => return Err("--dev and --secret do not go together".into()),
            (false, false) => {}
        }
        if self.redis.is_some() && self.snapshot.is_some() {
            return Err(
                "--snapshot and --redis do not go together: a node of a cluster hands \
                        its sessions off at shutdown, and its clients claim them again (a restored \
                        session would take its id back from the node its client moved to)"
                    .into(),
            );
        }
        if self.redis.is_none() && (self.redis_prefix.is_some() || self.lease.is_some()) {
            return Err("--redis-prefix and --lease-ms need --redis".into());
        }
        Ok(self)
    }

    /// One line describing the thresholds, for the startup banner.
    pub(crate) fn describe(&self) -> String {
        let p = &self.policy;
        format!(
            "active < {:?}, idle < {:?}, away < {:?}, ttl {:?}, grace {:?} (lost) / {:?} (clean, leave); users: {}",
            p.active(),
            p.idle(),
            p.away(),
            p.ttl(),
            p.disconnect_grace(),
            p.leave_grace(),
            if self.all_users { "every user by default (--all-users on)" } else { "by subscription only (--all-users off)" }
        )
    }
}

fn print_help(program: &str) {
    println!("usage: {program} [--flag VALUE]...\n");
    for (name, help) in FLAGS {
        let var = format!("PRESENCE_{}", name.replace('-', "_").to_uppercase());
        println!("  --{name:<22} {help}\n  {:24} (env {var})", "");
    }
    for (name, help) in SWITCHES {
        let var = format!("PRESENCE_{}", name.replace('-', "_").to_uppercase());
        println!("  --{name:<22} {help}\n  {:24} (env {var}=on)", "");
    }
}
