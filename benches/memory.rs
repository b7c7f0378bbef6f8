//! Question 6 of the benchmarks: how many bytes does a session cost, and a room membership?
//!
//! Counts the heap through a counting global allocator (`stats_alloc`, since this crate forbids
//! `unsafe` code of its own) and reports the live bytes a structure holds after 10^6 sessions were
//! inserted, minus the live bytes before, divided by the sessions, for:
//! - the tracker (`PresenceTracker<u64, u64>`, one session per user; and with UUID strings);
//! - a raw `hashbrown::HashMap<K, (u8, u64)>` with foldhash (the limit);
//! - a `moka::sync::Cache<K, (u8, u64)>` with `time_to_idle` and an eviction listener (the peer).
//!
//! And what a room membership costs: `tracker_rooms` is the tracker with the same sessions, each
//! also in 5 rooms of 10 members (room ids of the same type, metadata `()`); its bytes minus the
//! plain tracker's, divided by the memberships, are the bytes per room membership.
//!
//! It also counts the allocations made by 10^5 heartbeats on the live tracker (the design says
//! none). Bytes are the sizes requested from the allocator; the allocator's own per-block overhead
//! (about 8-16 bytes a block with glibc) comes on top, so the block count is printed too.
//!
//! ```text
//! cargo run --release --example memory                 # a table
//! cargo run --release --example memory -- --json       # JSON, for scripts/bench-report.py
//! cargo run --release --example memory -- --sessions 10000
//! ```

use std::{alloc::System, hint::black_box, sync::Arc, time::Duration};

use presence_tracker::{Activity, Id, ManualClock, Policy, PresenceTracker, Timestamp};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// One measured structure.
struct Row {
    structure: String,
    ids: String,
    sessions: usize,
    /// Room memberships held (`tracker_rooms` only).
    memberships: usize,
    /// Live bytes requested from the allocator.
    bytes: i64,
    /// Live blocks.
    blocks: i64,
    /// Growth of the resident set, in bytes (includes the allocator's overhead).
    rss: i64,
}

impl Row {
    fn per_session(&self, total: i64) -> f64 {
        total as f64 / self.sessions as f64
    }

    fn to_json(&self) -> String {
        format!(
            "{{\"structure\":\"{}\",\"ids\":\"{}\",\"sessions\":{},\"memberships\":{},\"bytes\":{},\"blocks\":{},\"rss_bytes\":{},\"bytes_per_session\":{:.2},\"rss_per_session\":{:.2}}}",
            self.structure,
            self.ids,
            self.sessions,
            self.memberships,
            self.bytes,
            self.blocks,
            self.rss,
            self.per_session(self.bytes),
            self.per_session(self.rss)
        )
    }

    fn from_json(v: &serde_json::Value) -> Option<Row> {
        Some(Row {
            structure: v.get("structure")?.as_str()?.to_string(),
            ids: v.get("ids")?.as_str()?.to_string(),
            sessions: usize::try_from(v.get("sessions")?.as_u64()?).ok()?,
            memberships: usize::try_from(v.get("memberships")?.as_u64()?).ok()?,
            bytes: v.get("bytes")?.as_i64()?,
            blocks: v.get("blocks")?.as_i64()?,
            rss: v.get("rss_bytes")?.as_i64()?,
        })
    }
}

/// The resident set size in bytes (Linux), 0 where unknown.
fn rss() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Live bytes and blocks allocated by `build`, counting only what its result still holds.
fn measure<T>(structure: &str, ids: &str, sessions: usize, build: impl FnOnce() -> T) -> (Row, T) {
    let rss_before = rss();
    let region = Region::new(GLOBAL);
    let value = build();
    let change = region.change();
    let rss_after = rss();
    let bytes = change.bytes_allocated as i64 - change.bytes_deallocated as i64;
    let blocks = change.allocations as i64 - change.deallocations as i64;
    let row = Row {
        structure: structure.to_string(),
        ids: ids.to_string(),
        sessions,
        memberships: 0,
        bytes,
        blocks,
        rss: rss_after - rss_before,
    };
    (row, value)
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn uuid(i: usize) -> Arc<str> {
    let hi = mix(i as u64);
    let lo = mix(hi ^ 0x5151_5151_5151_5151);
    Arc::from(format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0xFFF,
        (lo >> 48) & 0x3FFF | 0x8000,
        lo & 0xFFFF_FFFF_FFFF
    ))
}

const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// `tracker_rooms`: rooms each session is in, and members of each room.
const ROOMS_PER_SESSION: usize = 5;
const MEMBERS_PER_ROOM: usize = 10;
/// Room `r` has the id `make(ROOM_IDS + r)`: no session's.
const ROOM_IDS: usize = 1 << 40;

/// The rooms of each of `n` sessions: in each of [`ROOMS_PER_SESSION`] layers, the sessions in a
/// random order cut into rooms of [`MEMBERS_PER_ROOM`].
fn room_layers(n: usize) -> Vec<[usize; ROOMS_PER_SESSION]> {
    let per_layer = n.div_ceil(MEMBERS_PER_ROOM);
    // A random permutation per layer (xorshift-driven Fisher-Yates, fixed seeds).
    let orders = (0..ROOMS_PER_SESSION).map(|layer| {
        let mut order: Vec<usize> = (0..n).collect();
        let mut state = mix(layer as u64 + 1) | 1;
        for i in (1..n).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            order.swap(i, (state % (i as u64 + 1)) as usize);
        }
        order
    });
    let mut rooms = vec![[0; ROOMS_PER_SESSION]; n];
    for (layer, order) in orders.enumerate() {
        for (p, &i) in order.iter().enumerate() {
            rooms[i][layer] = layer * per_layer + p / MEMBERS_PER_ROOM;
        }
    }
    rooms
}

/// Fills one structure (`tracker`, `hashbrown` or `moka`) with `n` sessions whose ids `make`
/// creates inside the measured region (so string ids count their bytes once per structure), and
/// measures it.
fn measure_structure<K: Id>(
    structure: &str,
    ids: &'static str,
    n: usize,
    make: impl Fn(usize) -> K,
) -> Row {
    let now = Timestamp::from_millis(T0);
    match structure {
        "tracker" => {
            let (row, tracker) = measure("tracker", ids, n, || {
                let tracker: PresenceTracker<K, K, ManualClock> =
                    PresenceTracker::with_clock(Policy::default(), ManualClock::starting_at(now));
                for i in 0..n {
                    let id = make(i);
                    if let Err(e) = tracker.connect(id.clone(), id, i as u64, Activity::Active) {
                        panic!("memory: connect failed: {e}");
                    }
                }
                tracker
            });
            black_box(&tracker);
            row
        }
        "tracker_rooms" => {
            // Made before the measured region: not counted.
            let layers = room_layers(n);
            let (mut row, tracker) = measure("tracker_rooms", ids, n, || {
                let tracker: PresenceTracker<K, K, ManualClock, K, ()> =
                    PresenceTracker::with_clock(Policy::default(), ManualClock::starting_at(now));
                for (i, rooms) in layers.iter().enumerate() {
                    let id = make(i);
                    if let Err(e) =
                        tracker.connect(id.clone(), id.clone(), i as u64, Activity::Active)
                    {
                        panic!("memory: connect failed: {e}");
                    }
                    for &room in rooms {
                        if let Err(e) = tracker.rooms().join(&id, make(ROOM_IDS + room), ()) {
                            panic!("memory: join failed: {e}");
                        }
                    }
                }
                tracker
            });
            row.memberships = n * ROOMS_PER_SESSION;
            black_box(&tracker);
            row
        }
        "hashbrown" => {
            let (row, map) = measure("hashbrown", ids, n, || {
                let mut map: hashbrown::HashMap<K, (u8, u64)> = hashbrown::HashMap::default();
                for i in 0..n {
                    map.insert(make(i), (4, T0));
                }
                map
            });
            black_box(&map);
            row
        }
        "moka" => {
            let (row, cache) = measure("moka", ids, n, || {
                let cache: moka::sync::Cache<K, (u8, u64)> = moka::sync::Cache::builder()
                    .time_to_idle(Duration::from_secs(240))
                    .eviction_listener(|key, _value, _cause| {
                        black_box(key);
                    })
                    .build();
                for i in 0..n {
                    cache.insert(make(i), (4, T0));
                }
                cache.run_pending_tasks();
                cache
            });
            black_box(&cache);
            row
        }
        other => panic!("unknown structure {other:?}"),
    }
}

/// Allocations made by `count` heartbeats on a tracker holding `n` live sessions.
fn heartbeat_allocations(n: usize, count: usize) -> (usize, usize) {
    let now = Timestamp::from_millis(T0);
    let clock = ManualClock::starting_at(now);
    let tracker: PresenceTracker<u64, u64, ManualClock> =
        PresenceTracker::with_clock(Policy::default(), clock.clone());
    for i in 0..n {
        let id = mix(i as u64);
        if let Err(e) = tracker.connect(id, id, i as u64, Activity::Active) {
            panic!("memory: connect failed: {e}");
        }
    }
    clock.set(Timestamp::from_millis(T0 + 1_000));
    let region = Region::new(GLOBAL);
    for i in 0..count {
        let _ = black_box(tracker.heartbeat(&mix((i % n) as u64), Activity::Active));
    }
    (region.change().allocations, count)
}

const STRUCTURES: [&str; 4] = ["tracker", "tracker_rooms", "hashbrown", "moka"];

/// Bytes (requested, and resident) per room membership: `tracker_rooms` minus `tracker`, per
/// membership, for each id type measured.
fn per_membership(rows: &[Row]) -> Vec<(String, usize, f64, f64)> {
    rows.iter()
        .filter(|r| r.structure == "tracker_rooms" && r.memberships > 0)
        .filter_map(|with| {
            let without = rows
                .iter()
                .find(|r| r.structure == "tracker" && r.ids == with.ids)?;
            let m = with.memberships as f64;
            Some((
                with.ids.clone(),
                with.memberships,
                (with.bytes - without.bytes) as f64 / m,
                (with.rss - without.rss) as f64 / m,
            ))
        })
        .collect()
}
const ID_KINDS: [&str; 2] = ["u64", "uuid36"];

/// Measures each structure in a process of its own, so the resident-set growth of one is not
/// hidden by memory an earlier one freed.
fn measure_in_children(sessions: usize) -> Vec<Row> {
    let exe = std::env::current_exe().expect("memory: the path of this program");
    let mut rows = Vec::new();
    for ids in ID_KINDS {
        for structure in STRUCTURES {
            let out = std::process::Command::new(&exe)
                .args([
                    "--only",
                    &format!("{structure}:{ids}"),
                    "--sessions",
                    &sessions.to_string(),
                ])
                .output()
                .expect("memory: run a measuring child");
            let row = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .as_ref()
                .and_then(Row::from_json);
            match row {
                Some(row) => rows.push(row),
                None => panic!(
                    "memory: child for {structure}:{ids} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
    }
    rows
}

fn main() {
    let mut json = false;
    let mut only = None;
    let mut sessions = 1_000_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--only" => only = Some(args.next().expect("--only takes STRUCTURE:IDS")),
            "--sessions" => {
                sessions = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|&n| n > 0)
                    .expect("--sessions takes a positive number");
            }
            other => panic!("unknown argument {other:?} (try --json, --sessions N)"),
        }
    }

    if let Some(only) = only {
        let row = match only.split_once(':') {
            Some((structure, "u64")) => {
                measure_structure(structure, "u64", sessions, |i| mix(i as u64))
            }
            Some((structure, "uuid36")) => measure_structure(structure, "uuid36", sessions, uuid),
            _ => panic!("--only takes STRUCTURE:IDS, IDS one of u64, uuid36"),
        };
        println!("{}", row.to_json());
        return;
    }

    let rows = measure_in_children(sessions);
    let (allocations, heartbeats) = heartbeat_allocations(sessions, 100_000);

    if json {
        let memberships: Vec<String> = per_membership(&rows)
            .iter()
            .map(|(ids, m, bytes, rss)| {
                format!(
                    "{{\"ids\":\"{ids}\",\"memberships\":{m},\"rooms_per_session\":{ROOMS_PER_SESSION},\"members_per_room\":{MEMBERS_PER_ROOM},\"bytes_per_membership\":{bytes:.2},\"rss_per_membership\":{rss:.2}}}"
                )
            })
            .collect();
        let rows: Vec<String> = rows.iter().map(Row::to_json).collect();
        println!(
            "{{\"sessions\":{sessions},\"rows\":[{}],\"room_memberships\":[{}],\"heartbeats\":{heartbeats},\"heartbeat_allocations\":{allocations}}}",
            rows.join(","),
            memberships.join(",")
        );
    } else {
        println!(
            "{:<13} {:<7} {:>10} {:>14} {:>10} {:>14} {:>14}",
            "structure", "ids", "sessions", "live bytes", "blocks", "bytes/session", "rss/session"
        );
        for r in &rows {
            println!(
                "{:<13} {:<7} {:>10} {:>14} {:>10} {:>14.1} {:>14.1}",
                r.structure,
                r.ids,
                r.sessions,
                r.bytes,
                r.blocks,
                r.per_session(r.bytes),
                r.per_session(r.rss)
            );
        }
        for (ids, m, bytes, rss) in per_membership(&rows) {
            println!(
                "room membership ({ids}, {m} memberships: {ROOMS_PER_SESSION} rooms a session, {MEMBERS_PER_ROOM} members a room): {bytes:.1} bytes, {rss:.1} rss (tracker_rooms - tracker)"
            );
        }
        println!("allocations by {heartbeats} heartbeats on live sessions: {allocations}");
    }
}
