//! Helpers shared by the benchmark modules: deterministic ids, shuffled access orders, the sizes to
//! run, the baselines' value type, the rounds of an interleaved comparison, a cache evictor, and a
//! record of how each run was started and ended (read by `scripts/bench-report.py`).

use std::{
    fs,
    hint::black_box,
    path::{Path, PathBuf},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use presence_tracker::{ManualClock, Policy, PresenceTracker, Timestamp};

/// Set to any value to add 10^7 sessions to the sizes of the heartbeat benchmark.
pub(crate) const HUGE_ENV: &str = "PRESENCE_BENCH_1E7";

/// The state byte the baselines store; the tracker's own states are richer.
pub(crate) const ACTIVE: u8 = 4;

/// The value a hand-written baseline keeps per session: (published state, last_seen in ms).
pub(crate) type Slot = (u8, u64);

/// The raw-map limit: hashbrown with its default hasher (foldhash), as the tracker uses.
pub(crate) type RawMap<K> = hashbrown::HashMap<K, Slot, hashbrown::DefaultHashBuilder>;

/// A tracker driven in virtual time.
pub(crate) type Tracker<K> = PresenceTracker<K, K, ManualClock>;

/// Rounds of an interleaved comparison (questions 1, 2 and 3): every variant is set up once and
/// kept, then each round runs every variant once, so the ratio of two variants can be taken
/// within a round, from measurements made seconds apart, and its spread over the rounds shows how
/// far this machine's drift moves it.
pub(crate) const ROUNDS: usize = 5;

/// `<value>_r<round>`: a benchmark's value with its round, as the report splits it
/// (`rounds_of` in `scripts/bench-report.py`).
pub(crate) fn in_round(value: &str, round: usize) -> String {
    format!("{value}_r{round}")
}

/// The order in which `len` variants run in `round` (from 1): as listed in odd rounds, backwards
/// in even ones, so no variant always runs right after the same other one.
pub(crate) fn round_order(len: usize, round: usize) -> Vec<usize> {
    if round % 2 == 1 {
        (0..len).collect()
    } else {
        (0..len).rev().collect()
    }
}

/// The size of the largest CPU cache in bytes, from sysfs (Linux), if it can be read.
pub(crate) fn llc_bytes() -> Option<usize> {
    let mut largest: Option<(u32, usize)> = None;
    for index in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{index}");
        let (Ok(level), Ok(size)) = (
            fs::read_to_string(format!("{dir}/level")),
            fs::read_to_string(format!("{dir}/size")),
        ) else {
            continue;
        };
        let (Ok(level), Some(bytes)) = (level.trim().parse::<u32>(), parse_size(size.trim()))
        else {
            continue;
        };
        if largest.is_none_or(|(l, _)| level > l) {
            largest = Some((level, bytes));
        }
    }
    largest.map(|(_, bytes)| bytes)
}

/// `32768K`, `32M`, `1024`: a sysfs cache size in bytes.
fn parse_size(s: &str) -> Option<usize> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: usize = digits.parse().ok()?;
    match unit {
        "" => Some(n),
        "K" => n.checked_mul(1 << 10),
        "M" => n.checked_mul(1 << 20),
        "G" => n.checked_mul(1 << 30),
        _ => None,
    }
}

/// Evicts the CPU caches by reading a buffer twice the size of the last-level cache, one word per
/// 64-byte line: whatever a measured call touches next comes from memory, as after other work.
pub(crate) struct Evictor {
    /// Non-zero, so every page is really mapped (a zeroed allocation could map the zero page).
    buffer: Vec<u64>,
}

impl Evictor {
    /// Twice the last-level cache ([`llc_bytes`]), or 64 MiB if its size cannot be read.
    pub(crate) fn new() -> Self {
        let bytes = 2 * llc_bytes().unwrap_or(32 << 20);
        Evictor {
            buffer: vec![1; bytes / 8],
        }
    }

    /// The buffer's size in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.buffer.len() * 8
    }

    /// Reads one word of every cache line of the buffer.
    pub(crate) fn evict(&self) {
        let mut sum = 0u64;
        for line in self.buffer.chunks_exact(8) {
            sum = sum.wrapping_add(line[0]);
        }
        black_box(sum);
    }
}

/// A bijection on u64 (splitmix64's finaliser): distinct inputs give distinct, random-looking ids.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The ids the benchmarks use: u64s and 36-character UUID strings.
pub(crate) trait BenchId: presence_tracker::Id + Ord {
    /// Short name of the id type, used as the benchmark variant.
    const NAME: &'static str;
    /// The `i`-th id; distinct for distinct `i`.
    fn nth(i: usize) -> Self;
    /// An equal id in its own allocation, as a request handler would hold it (so no comparison
    /// can short-cut on pointer equality with the map's copy).
    fn fresh_copy(&self) -> Self;
}

impl BenchId for u64 {
    const NAME: &'static str = "u64";
    fn nth(i: usize) -> Self {
        mix(i as u64)
    }
    fn fresh_copy(&self) -> Self {
        *self
    }
}

impl BenchId for Arc<str> {
    const NAME: &'static str = "uuid36";
    fn nth(i: usize) -> Self {
        let hi = mix(i as u64);
        let lo = mix(hi ^ 0x5151_5151_5151_5151);
        // Version-4 layout: xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx.
        let hi = (hi & !0xF000) | 0x4000;
        let lo = (lo & !(0xC << 60)) | (0x8 << 60);
        let s = format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xFFFF,
            hi & 0xFFFF,
            lo >> 48,
            lo & 0xFFFF_FFFF_FFFF
        );
        debug_assert_eq!(s.len(), 36);
        Arc::from(s)
    }
    fn fresh_copy(&self) -> Self {
        Arc::from(String::from(&**self))
    }
}

/// A random permutation of `0..n` (xorshift-driven Fisher-Yates, fixed seed).
pub(crate) fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = mix(seed) | 1;
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// The `len` elements of `order` from `pos` on, wrapping around its end: the part up to the end
/// and the part from the start (empty unless the window wraps). `len` is at most `order.len()`.
pub(crate) fn cyclic_window<T>(order: &[T], pos: usize, len: usize) -> (&[T], &[T]) {
    assert!(
        len <= order.len() && pos < order.len(),
        "cyclic_window: a window of {len} at {pos} in {}",
        order.len()
    );
    if pos + len <= order.len() {
        (&order[pos..pos + len], &[])
    } else {
        (&order[pos..], &order[..pos + len - order.len()])
    }
}

/// `n` ids and the same ids again, in their own allocations, in a random order.
pub(crate) fn ids_and_order<K: BenchId>(n: usize) -> (Vec<K>, Vec<K>) {
    let ids: Vec<K> = (0..n).map(K::nth).collect();
    let order = shuffled(n, n as u64)
        .into_iter()
        .map(|i| ids[i].fresh_copy())
        .collect();
    (ids, order)
}

/// The sizes a scaling benchmark runs at: 10^4 and 10^6, plus 10^7 when [`HUGE_ENV`] is set.
pub(crate) fn sizes() -> Vec<usize> {
    let mut sizes = vec![10_000, 1_000_000];
    if std::env::var_os(HUGE_ENV).is_some() {
        sizes.push(10_000_000);
    }
    sizes
}

/// `1e4`, `1e6`: a size as a benchmark name.
pub(crate) fn size_label(n: usize) -> String {
    let exp = (n as f64).log10().round() as u32;
    if 10usize.pow(exp) == n {
        format!("1e{exp}")
    } else {
        n.to_string()
    }
}

/// Where the ManualClock starts, in ms since the epoch.
pub(crate) fn t0() -> u64 {
    ManualClock::new().now().as_millis()
}

/// A timestamp `ms` after [`t0`].
pub(crate) fn at(t0: u64, ms: u64) -> Timestamp {
    Timestamp::from_millis(t0 + ms)
}

/// A tracker in virtual time with `ids[i]` connected as session `i` of user `ids[i]` at `now`.
///
/// Its clock is a [`ManualClock`]: the benchmarks move it once per batch of calls
/// ([`set_time`]), as a server's `CoarseClock` is refreshed every few milliseconds, so a call
/// reads the time with one atomic load.
pub(crate) fn tracker_with<K: BenchId>(ids: &[K], now: Timestamp) -> Tracker<K> {
    let tracker = PresenceTracker::with_clock(Policy::default(), ManualClock::starting_at(now));
    for (i, id) in ids.iter().enumerate() {
        if let Err(e) = tracker.connect(
            id.clone(),
            id.clone(),
            i as u64,
            presence_tracker::Activity::Active,
        ) {
            panic!("benchmark setup: connect failed: {e}");
        }
    }
    tracker
}

/// Moves `tracker`'s clock to `now_ms`, if it is not there already (once per batch).
pub(crate) fn set_time<K: BenchId>(tracker: &Tracker<K>, last: &mut u64, now_ms: u64) {
    if *last != now_ms {
        tracker.clock().set(Timestamp::from_millis(now_ms));
        *last = now_ms;
    }
}

/// Writes `<criterion dir>/presence-meta/<bench>.json`: the command line, the opt-in environment,
/// the machine and the time, so the report can say exactly what produced each table.
///
/// A run with [`HUGE_ENV`] set is recorded apart (`<bench>-1e7.json`), as it is usually filtered
/// to the 10^7 group and must not be taken for the command behind the other groups.
pub(crate) fn record_run(bench: &str) {
    let dir = criterion_dir().join("presence-meta");
    let huge = std::env::var_os(HUGE_ENV).is_some();
    let record = if huge {
        format!("{bench}-1e7")
    } else {
        bench.to_string()
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut command = String::new();
    if huge {
        command.push_str(HUGE_ENV);
        command.push_str("=1 ");
    }
    command.push_str("cargo bench --bench ");
    command.push_str(bench);
    if !args.is_empty() {
        command.push_str(" -- ");
        command.push_str(&args.join(" "));
    }
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let json = format!(
        "{{\"bench\":{},\"command\":{},\"cpu\":{},\"cores\":{},\"unix_time\":{},\"load\":{},\"llc_bytes\":{},\"commit\":{}}}\n",
        json_str(bench),
        json_str(&command),
        json_str(&cpu),
        cores,
        secs,
        json_str(&load_average()),
        llc_bytes().unwrap_or(0),
        json_str(&commit()),
    );
    // The record is for the report only: a benchmark still runs if it cannot be written.
    if fs::create_dir_all(&dir).is_ok() {
        let _ = fs::write(dir.join(format!("{record}.json")), json);
    }
}

/// Writes `<criterion dir>/presence-meta/<bench>-end.json` (`<bench>-1e7-end.json` as for
/// [`record_run`]): when the run ended and the load average then, so the report can say how long
/// a run took and how busy the machine was.
pub(crate) fn record_end(bench: &str) {
    let record = if std::env::var_os(HUGE_ENV).is_some() {
        format!("{bench}-1e7-end")
    } else {
        format!("{bench}-end")
    };
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    write_meta(
        &record,
        &format!(
            "{{\"unix_time\":{secs},\"load\":{}}}\n",
            json_str(&load_average())
        ),
    );
}

/// The first three fields of `/proc/loadavg` (1, 5 and 15 minutes), or `unknown`.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_string())
}

/// The commit the benches were built from (`git rev-parse --short HEAD` in the crate's
/// directory, with `+dirty` if tracked files differ from it), or `unknown`.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head}+dirty")
            } else {
                head
            }
        }
        None => "unknown".to_string(),
    }
}

/// Writes `<criterion dir>/presence-meta/<name>.json`: a measurement a bench makes besides
/// criterion's, for the report. Not written is not fatal, as for [`record_run`].
pub(crate) fn write_meta(name: &str, json: &str) {
    let dir = criterion_dir().join("presence-meta");
    if fs::create_dir_all(&dir).is_ok() {
        let _ = fs::write(dir.join(format!("{name}.json")), json);
    }
}

/// The directory criterion writes to, found the way criterion finds it, but without running
/// `cargo metadata`: with neither variable set, the workspace's `target/criterion` (criterion asks
/// cargo for the target directory; the benches run in `benches/`, so a relative `target` would be
/// `benches/target`, where the report does not look).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        PathBuf::from(home)
    } else if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        PathBuf::from(target).join("criterion")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Checks, before timing, that a heartbeat batch of `keys` at `now` hits live sessions only and
/// changes nothing: otherwise a benchmark would time errors or event allocation instead of the
/// update.
pub(crate) fn assert_quiet_batch<'a, K: presence_tracker::Id>(
    tracker: &Tracker<K>,
    keys: impl Iterator<Item = &'a K>,
    now: Timestamp,
) {
    tracker.clock().set(now);
    let outcome = tracker.heartbeat_batch(keys.map(|k| (k, presence_tracker::Activity::Active)));
    assert!(
        outcome.events.is_empty(),
        "setup: heartbeat batch emitted {:?}",
        outcome.events
    );
    assert!(
        outcome.errors.is_empty(),
        "setup: heartbeat batch refused {:?}",
        outcome.errors
    );
}
