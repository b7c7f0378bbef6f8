//! Many candidates on one scenario: [`run_many`], the Pareto front, a recommendation, tables.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::candidate::secs;
use super::{run, Candidate, Report, Scenario, ScenarioError};

/// Runs every candidate on the scenario, on up to `threads` threads (at least one), and returns
/// the reports in the candidates' order.
///
/// # Errors
///
/// As [`run`], checked for the scenario and every candidate before anything runs.
pub fn run_many(
    scenario: &Scenario,
    candidates: &[Candidate],
    threads: usize,
) -> Result<Vec<Report>, ScenarioError> {
    scenario.validate()?;
    for candidate in candidates {
        candidate.policy()?;
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Report, ScenarioError>>>> =
        Mutex::new(vec![None; candidates.len()]);
    let threads = threads.clamp(1, candidates.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(candidate) = candidates.get(index) else {
                    break;
                };
                let report = run(scenario, candidate);
                if let Ok(mut results) = results.lock() {
                    results[index] = Some(report);
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| ScenarioError::Invalid("a simulation thread panicked".to_string()))?;
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(ScenarioError::Invalid(
                    "a simulation did not finish".to_string(),
                ))
            })
        })
        .collect()
}

/// Which points are Pareto-optimal when every coordinate is to be minimised: no other point is
/// at least as good in every coordinate and better in one. Equal points are all kept. A NaN
/// counts as worse than any number.
///
/// # Examples
///
/// ```
/// use presence_tracker_sim::pareto_front;
///
/// let points = [[1.0, 5.0, 0.0], [2.0, 2.0, 0.0], [3.0, 3.0, 0.0], [5.0, 1.0, 0.0]];
/// assert_eq!(pareto_front(&points), [true, true, false, true]);
/// ```
pub fn pareto_front(points: &[[f64; 3]]) -> Vec<bool> {
    let key = |v: f64| if v.is_nan() { f64::INFINITY } else { v };
    points
        .iter()
        .map(|p| {
            !points.iter().any(|q| {
                let no_worse = (0..3).all(|i| key(q[i]) <= key(p[i]));
                let better = (0..3).any(|i| key(q[i]) < key(p[i]));
                no_worse && better
            })
        })
        .collect()
}

/// The objectives the front is computed on, all minimised: p95 detection latency (seconds),
/// false-offline share, flaps per user-hour.
pub fn objectives(report: &Report) -> [f64; 3] {
    let m = &report.metrics;
    [
        m.latency.all.p95.as_secs_f64(),
        m.false_offline_share,
        m.flaps_per_user_hour,
    ]
}

/// The accuracy a recommended candidate must keep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    /// The highest acceptable [`false_offline_share`](super::Metrics::false_offline_share).
    pub max_false_offline_share: f64,
    /// The highest acceptable [`flaps_per_user_hour`](super::Metrics::flaps_per_user_hour).
    pub max_flaps_per_user_hour: f64,
}

impl Default for Budget {
    /// False offline at most 0.1% of the time users are there, at most 0.05 flaps per user-hour (one a
    /// day for a user online 20 hours).
    fn default() -> Self {
        Budget {
            max_false_offline_share: 0.001,
            max_flaps_per_user_hour: 0.05,
        }
    }
}

impl Budget {
    /// Whether a report keeps within the budget.
    pub fn admits(&self, report: &Report) -> bool {
        report.metrics.false_offline_share <= self.max_false_offline_share
            && report.metrics.flaps_per_user_hour <= self.max_flaps_per_user_hour
    }
}

/// The recommendation rule: among the reports on the front that keep within the budget, the
/// one with the lowest p95 detection latency (ties: fewer flaps, less false offline, fewer
/// events). If none keeps within the budget, the front's report that exceeds it by the smallest
/// factor (the larger of its false-offline share and its flap rate, each divided by its limit),
/// ties again by latency.
pub fn recommend(reports: &[Report], front: &[bool], budget: &Budget) -> Option<usize> {
    let on_front = || (0..reports.len()).filter(|&i| front.get(i).copied().unwrap_or(false));
    let key = |i: usize| {
        let m = &reports[i].metrics;
        (
            m.latency.all.p95,
            ordered(m.flaps_per_user_hour),
            ordered(m.false_offline_share),
            m.user_events,
        )
    };
    let excess = |i: usize| {
        let m = &reports[i].metrics;
        let ratio = |value: f64, limit: f64| {
            if limit > 0.0 {
                value / limit
            } else if value > 0.0 {
                f64::INFINITY
            } else {
                0.0
            }
        };
        ordered(
            ratio(m.false_offline_share, budget.max_false_offline_share)
                .max(ratio(m.flaps_per_user_hour, budget.max_flaps_per_user_hour)),
        )
    };
    on_front()
        .filter(|&i| budget.admits(&reports[i]))
        .min_by_key(|&i| key(i))
        .or_else(|| on_front().min_by_key(|&i| (excess(i), key(i))))
}

/// A total order on non-negative floats (NaN last), for sorting keys.
fn ordered(v: f64) -> u64 {
    if v.is_nan() {
        u64::MAX
    } else {
        v.max(0.0).to_bits()
    }
}

/// A grid of candidates run on one scenario, with its front and recommendation.
#[derive(Clone, Debug)]
pub struct Study {
    /// The scenario.
    pub scenario: Scenario,
    /// One report per candidate, in order.
    pub reports: Vec<Report>,
    /// Whether each report is on the Pareto front of [`objectives`].
    pub front: Vec<bool>,
    /// The recommended report, by [`recommend`].
    pub recommended: Option<usize>,
    /// The budget the recommendation kept.
    pub budget: Budget,
    /// Wall-clock time of the whole study.
    pub wall: Duration,
    /// Threads used.
    pub threads: usize,
}

impl Study {
    /// Runs the candidates and analyses the reports.
    ///
    /// # Errors
    ///
    /// As [`run_many`].
    pub fn run(
        scenario: &Scenario,
        candidates: &[Candidate],
        budget: Budget,
        threads: usize,
    ) -> Result<Study, ScenarioError> {
        let started = Instant::now();
        let reports = run_many(scenario, candidates, threads)?;
        let threads = threads.clamp(1, candidates.len().max(1));
        Ok(Study::analyse(
            scenario,
            reports,
            budget,
            started.elapsed(),
            threads,
        ))
    }

    /// Marks the front and the recommendation among reports already run.
    pub(crate) fn analyse(
        scenario: &Scenario,
        reports: Vec<Report>,
        budget: Budget,
        wall: Duration,
        threads: usize,
    ) -> Study {
        let points: Vec<[f64; 3]> = reports.iter().map(objectives).collect();
        let front = pareto_front(&points);
        let recommended = recommend(&reports, &front, &budget);
        Study {
            scenario: scenario.clone(),
            reports,
            front,
            recommended,
            budget,
            wall,
            threads,
        }
    }

    /// The index of the default candidate, if it was among them.
    pub fn default_index(&self) -> Option<usize> {
        self.reports.iter().position(|r| r.candidate.is_default())
    }

    /// The table of every candidate: its settings, its metrics, and marks for the front (`*`),
    /// the default (`D`) and the recommendation (`R`).
    pub fn table(&self) -> String {
        let s = &self.scenario;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {}: {} users, {} h, seed {}; {} candidates in {:.1} s on {} threads",
            s.name,
            s.users,
            s.hours,
            s.seed,
            self.reports.len(),
            self.wall.as_secs_f64(),
            self.threads
        );
        let _ = writeln!(
            out,
            "{:>3} {:<4} {:>5} {:>5} {:>5} {:>6} {:>6} {:>5} {:>4} | {:>9} {:>8} {:>8} {:>8} | {:>7} {:>7} {:>7} {:>8} | {:>8}",
            "#", "mark", "ttl", "idle", "away", "dgrace", "lgrace", "dwell", "hb", "false-off", "hid-off", "fo-ep/h", "flaps/h",
            "lat-p50", "lat-p95", "lat-p99", "lost-p95", "ev/s/1k"
        );
        let default = self.default_index();
        for (i, r) in self.reports.iter().enumerate() {
            let mut mark = String::new();
            if self.front.get(i).copied().unwrap_or(false) {
                mark.push('*');
            }
            if Some(i) == default {
                mark.push('D');
            }
            if Some(i) == self.recommended {
                mark.push('R');
            }
            let c = &r.candidate;
            let m = &r.metrics;
            let _ = writeln!(
                out,
                "{:>3} {:<4} {:>5} {:>5} {:>5} {:>6} {:>6} {:>5} {:>4} | {:>8.3}% {:>7.3}% {:>8.3} {:>8.3} | {:>7} {:>7} {:>7} {:>8} | {:>8.2}",
                i + 1,
                mark,
                secs(c.ttl),
                secs(c.idle),
                secs(c.away),
                secs(c.disconnect_grace),
                secs(c.leave_grace),
                secs(c.dwell),
                secs(c.heartbeat),
                m.false_offline_share * 100.0,
                m.hidden_offline_share * 100.0,
                m.false_offline_episodes_per_user_hour,
                m.flaps_per_user_hour,
                secs_1(m.latency.all.p50),
                secs_1(m.latency.all.p95),
                secs_1(m.latency.all.p99),
                secs_1(m.latency.lost.p95),
                m.user_events_per_second_per_1k_users,
            );
        }
        let _ = writeln!(
            out,
            "marks: * Pareto front (p95 latency, false offline, flaps), D default, R recommended \
             (false offline <= {}%, flaps <= {}/user-hour); false-off: there (active or idle) \
             but shown offline; hid-off: all sessions hidden and shown offline; rates per open user-hour; ev/s/1k: user events per second per 1000 users",
            self.budget.max_false_offline_share * 100.0,
            self.budget.max_flaps_per_user_hour
        );
        out
    }

    /// One paragraph: the recommended candidate against the default.
    pub fn recommendation(&self) -> String {
        let Some(best) = self.recommended.and_then(|i| self.reports.get(i)) else {
            return "no recommendation: no candidates".to_string();
        };
        let describe = |r: &Report| {
            let m = &r.metrics;
            format!(
                "p95 latency {}, false offline {:.3}%, {:.3} flaps/user-hour, {:.2} events/s/1k users",
                secs_1(m.latency.all.p95),
                m.false_offline_share * 100.0,
                m.flaps_per_user_hour,
                m.user_events_per_second_per_1k_users
            )
        };
        let within = if self.budget.admits(best) {
            "the fastest detection within the budget"
        } else {
            "nothing met the budget; the closest to it on the front"
        };
        let mut text = format!(
            "recommended for {}: {} (#{}; {}): {}",
            self.scenario.name,
            best.candidate.label(),
            self.recommended.map_or(0, |i| i + 1),
            within,
            describe(best)
        );
        if let Some(default) = self.default_index().and_then(|i| self.reports.get(i)) {
            let _ = write!(
                text,
                "\n                 the default: {}",
                describe(default)
            );
        }
        text
    }

    /// The trade-off plot as an SVG document.
    pub fn svg(&self) -> String {
        super::plot::tradeoff_svg(self)
    }
}

/// A table with one row per report (say, the default candidate across scenarios).
pub fn summary_table(reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | false offline (hidden shown offline) | episodes /user-h | flaps /user-h | latency p50 / p95 / p99 | lost p95 | events /s /1k users (truth) | session-h /wall s |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for r in reports {
        let m = &r.metrics;
        let _ = writeln!(
            out,
            "| {} | {:.3}% ({:.3}%) | {:.3} | {:.3} | {} / {} / {} | {} | {:.2} ({:.2}) | {:.0} |",
            r.scenario,
            m.false_offline_share * 100.0,
            m.hidden_offline_share * 100.0,
            m.false_offline_episodes_per_user_hour,
            m.flaps_per_user_hour,
            secs_1(m.latency.all.p50),
            secs_1(m.latency.all.p95),
            secs_1(m.latency.all.p99),
            secs_1(m.latency.lost.p95),
            m.user_events_per_second_per_1k_users,
            m.truth_changes_per_second_per_1k_users,
            r.session_hours_per_second(),
        );
    }
    out
}

/// Where each report's flaps came from, per open user-hour: by source (what the user's clients
/// and network were doing, see [`FlapSources`](super::FlapSources)) and the most frequent
/// kinds (`expected: from → to`), with the first sign of a departure beside the detection
/// latency.
pub fn flap_table(reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | policy | flaps /user-h | restart | partition | suspended phone | hidden tab | lost or late heartbeat | most frequent (expected: from → to, /user-h) | first sign p50 / p95 | offline p95 |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in reports {
        let m = &r.metrics;
        let rate = |n: u64| {
            if m.open_user_hours > 0.0 {
                n as f64 / m.open_user_hours
            } else {
                0.0
            }
        };
        let s = &m.flap_sources;
        let kinds: Vec<String> = m
            .flap_kinds
            .iter()
            .take(3)
            .map(|k| format!("{}: {} → {} {:.3}", k.expected, k.from, k.to, rate(k.count)))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} / {} | {} |",
            r.scenario,
            r.candidate.label(),
            m.flaps_per_user_hour,
            rate(s.restart),
            rate(s.partition),
            rate(s.suspended),
            rate(s.hidden_tab),
            rate(s.heartbeat),
            kinds.join("; "),
            secs_1(m.first_sign.p50),
            secs_1(m.first_sign.p95),
            secs_1(m.latency.all.p95),
        );
    }
    out
}

/// Seconds with one decimal.
pub(crate) fn secs_1(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
