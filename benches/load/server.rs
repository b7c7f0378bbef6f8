//! The server under test, a child process: ours (an example binary) or the Node.js peer; its
//! resident memory and CPU time read from /proc.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::ValueEnum;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How long a server may take to print that it listens.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How many of its last output lines are kept, for a failure's message.
const KEPT_LINES: usize = 20;

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub(crate) enum Kind {
    /// `target/release/examples/websocket`, clients on `/ws`.
    Websocket,
    /// `target/release/examples/socketio`, clients on Socket.IO.
    Socketio,
    /// The Node.js peer, `benches/load/seed-peer.mjs`, clients on `/ws`.
    Peer,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Websocket => "websocket",
            Kind::Socketio => "socketio",
            Kind::Peer => "peer",
        }
    }
}

/// How to start a server: what every start passes.
#[derive(Clone, Debug)]
pub(crate) struct Launch {
    pub(crate) kind: Kind,
    pub(crate) examples_dir: PathBuf,
    pub(crate) node: String,
    /// `--active-ms 10000 ...`: the thresholds, for ours and the peer alike.
    pub(crate) flags: Vec<(String, u64)>,
    /// More arguments, as they are (ours only).
    pub(crate) args: Vec<String>,
    /// Environment variables the server is started with.
    pub(crate) env: Vec<(String, String)>,
}

/// A running server.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) port: u16,
    output: Arc<Mutex<VecDeque<String>>>,
}

/// A free port on 127.0.0.1 (the kernel's pick, released for the server to take).
pub(crate) fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("free port: {e}"))?;
    Ok(listener
        .local_addr()
        .map_err(|e| format!("free port: {e}"))?
        .port())
}

/// The peer's folder: the script, its package.json and lock.
pub(crate) fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("load")
}

/// Runs `npm ci` in the peer's folder unless `ws` is installed there already.
pub(crate) async fn ensure_peer_deps() -> Result<(), String> {
    let dir = peer_dir();
    if dir.join("node_modules/ws/package.json").exists() {
        return Ok(());
    }
    eprintln!("load: npm ci in {}", dir.display());
    let run = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--silent"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(Duration::from_secs(180), run).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("npm ci in {}: {status}", dir.display())),
        Ok(Err(e)) => Err(format!("npm ci in {}: {e}", dir.display())),
        Err(_) => Err(format!("npm ci in {}: over 180 s", dir.display())),
    }
}

impl Server {
    /// Starts the server on `port` and waits until it says it listens there.
    pub(crate) async fn start(launch: &Launch, port: u16) -> Result<Server, String> {
        let mut command = match launch.kind {
            Kind::Websocket | Kind::Socketio => {
                let bin = launch.examples_dir.join(launch.kind.name());
                if !bin.exists() {
                    return Err(format!(
                        "{} is missing: cargo build --release --all-features --example websocket --example socketio",
                        bin.display()
                    ));
                }
                let mut command = Command::new(bin);
                // The public demo key (a token stays good across the restarts of a storm), and
                // room for every client of the run: they all come from loopback addresses.
                command.args(&launch.args).arg("--dev").args([
                    "--max-connections",
                    "60000",
                    "--max-per-address",
                    "60000",
                ]);
                command
            }
            Kind::Peer => {
                let mut command = Command::new(&launch.node);
                command.arg(peer_dir().join("seed-peer.mjs"));
                command
            }
        };
        command.arg("--port").arg(port.to_string());
        command.envs(launch.env.iter().map(|(k, v)| (k, v)));
        for (flag, value) in &launch.flags {
            command.arg(format!("--{flag}")).arg(value.to_string());
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{}: spawn: {e}", launch.kind.name()))?;
        let pid = child.id().ok_or("the server exited at once")?;
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let (listening, mut listening_rx) = watch::channel(false);
        let listening = Arc::new(listening);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(drain(
                out,
                Arc::clone(&output),
                Some(Arc::clone(&listening)),
            ));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(drain(err, Arc::clone(&output), None));
        }
        let mut server = Server {
            child,
            pid,
            port,
            output,
        };
        let ready = tokio::time::timeout(START_TIMEOUT, listening_rx.wait_for(|l| *l)).await;
        match ready {
            Ok(Ok(_)) => Ok(server),
            _ => {
                let status = server.child.try_wait().ok().flatten();
                Err(format!(
                    "{} did not start on port {port} within {START_TIMEOUT:?} ({status:?}): {}",
                    launch.kind.name(),
                    server.output_tail()
                ))
            }
        }
    }

    /// The server's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Its last lines of output.
    pub(crate) fn output_tail(&self) -> String {
        let lines = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        lines.iter().cloned().collect::<Vec<_>>().join(" | ")
    }

    /// `Some(status)` if it exited.
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// SIGKILL, and waits for it to be gone.
    pub(crate) async fn kill(mut self) -> Result<(), String> {
        self.child.start_kill().map_err(|e| format!("kill: {e}"))?;
        self.child
            .wait()
            .await
            .map(|_| ())
            .map_err(|e| format!("wait: {e}"))
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub(crate) async fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.kill().await;
        }
    }

    /// Resident memory, from /proc/PID/status (`VmRSS`), in bytes.
    pub(crate) fn rss(&self) -> Result<u64, String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .map_err(|e| format!("/proc/{}/status: {e}", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| format!("no VmRSS in /proc/{}/status", self.pid))
    }

    /// CPU time so far (user + system), from /proc/PID/stat, in microseconds.
    pub(crate) fn cpu_us(&self, clock_ticks: u64) -> Result<u64, String> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .map_err(|e| format!("/proc/{}/stat: {e}", self.pid))?;
        // The command name may hold spaces: fields are counted after its closing parenthesis.
        let rest = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest)
            .ok_or("bad /proc stat")?;
        let fields: Vec<&str> = rest.split(' ').collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
        match (ticks(11), ticks(12)) {
            (Some(user), Some(system)) => Ok((user + system) * 1_000_000 / clock_ticks.max(1)),
            _ => Err("bad /proc stat fields".into()),
        }
    }
}

/// Reads a pipe of the child line by line, keeping the last lines and raising `listening`
/// when it says so.
async fn drain(
    pipe: impl AsyncRead + Unpin,
    output: Arc<Mutex<VecDeque<String>>>,
    listening: Option<Arc<watch::Sender<bool>>>,
) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(listening) = &listening {
            if line.starts_with("listening on http://127.0.0.1:") {
                listening.send_replace(true);
            }
        }
        let mut kept = output.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() == KEPT_LINES {
            kept.pop_front();
        }
        kept.push_back(line);
    }
}
