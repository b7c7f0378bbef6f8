//! Against the peers: [`Comparison`] runs every peer model and a grid of our candidates on one
//! scenario and sets the peers, our default and our recommendation side by side.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::study::secs_1;
use super::{run_many, Budget, Candidate, Latency, Peer, Report, Scenario, ScenarioError, Study};

/// The peers, our default and our recommended candidate, measured on one scenario.
///
/// # Examples
///
/// ```
/// use presence_tracker_sim::{Budget, Candidate, Comparison, Peer, Scenario};
///
/// let scenario = Scenario::named("office")?.with_users(40).with_hours(2.0);
/// let grid = [Candidate::default()];
/// let comparison = Comparison::run(&scenario, &grid, &Peer::ALL, Budget::default(), 2)?;
/// let rows = comparison.rows();
/// assert_eq!(rows.len(), Peer::ALL.len() + 2); // the peers, our default, our recommendation
/// assert!(comparison.table().contains("| phoenix |"));
/// # Ok::<(), presence_tracker_sim::ScenarioError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Comparison {
    /// Our candidates on the scenario, with the front and the recommendation marked.
    pub study: Study,
    /// One report per peer, in the order given.
    pub peers: Vec<Report>,
    /// Wall-clock time of all the runs.
    pub wall: Duration,
    /// Threads used.
    pub threads: usize,
}

impl Comparison {
    /// Runs `grid` (our candidates; include [`Candidate::default`] to get its row) and the
    /// peers on the scenario, all in one pool of up to `threads` threads. The peers take no
    /// part in the study's front or recommendation.
    ///
    /// # Errors
    ///
    /// As [`run_many`].
    pub fn run(
        scenario: &Scenario,
        grid: &[Candidate],
        peers: &[Peer],
        budget: Budget,
        threads: usize,
    ) -> Result<Comparison, ScenarioError> {
        let started = Instant::now();
        let mut candidates = grid.to_vec();
        candidates.extend(peers.iter().map(|&peer| Candidate::peer(peer)));
        let mut reports = run_many(scenario, &candidates, threads)?;
        let peers = reports.split_off(grid.len());
        let wall = started.elapsed();
        let threads = threads.clamp(1, candidates.len().max(1));
        Ok(Comparison {
            study: Study::analyse(scenario, reports, budget, wall, threads),
            peers,
            wall,
            threads,
        })
    }

    /// The rows of the table: each peer by name, then `ours, default` and `ours, recommended`
    /// (when the grid gave them), with their reports.
    pub fn rows(&self) -> Vec<(String, &Report)> {
        let mut rows: Vec<(String, &Report)> = self
            .peers
            .iter()
            .map(|r| (r.candidate.name.clone(), r))
            .collect();
        if let Some(r) = self
            .study
            .default_index()
            .and_then(|i| self.study.reports.get(i))
        {
            rows.push(("ours, default".to_string(), r));
        }
        if let Some(r) = self
            .study
            .recommended
            .and_then(|i| self.study.reports.get(i))
        {
            rows.push((format!("ours, recommended: {}", r.candidate.label()), r));
        }
        rows
    }

    /// The side-by-side table in Markdown, headed by the scenario.
    pub fn table(&self) -> String {
        let s = &self.study.scenario;
        let mut out = String::new();
        let departures = self
            .rows()
            .last()
            .map(|(_, r)| (r.metrics.latency.clean.count, r.metrics.latency.lost.count));
        let _ = write!(
            out,
            "**{}**: {} users, {} h, seed {}",
            s.name, s.users, s.hours, s.seed
        );
        if let Some((clean, lost)) = departures {
            let _ = write!(out, "; {clean} clean and {lost} lost departures");
        }
        let _ = writeln!(
            out,
            "; {} runs in {:.1} s on {} threads\n",
            self.study.reports.len() + self.peers.len(),
            self.wall.as_secs_f64(),
            self.threads
        );
        let _ = writeln!(
            out,
            "| model | false offline (hidden shown offline) | false-offline episodes /user-h | flaps /user-h (to or from offline) | clean departure p50 / p95 / p99 | lost departure p50 / p95 / p99 | events /s /1k users |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for (name, r) in self.rows() {
            let m = &r.metrics;
            let _ = writeln!(
                out,
                "| {} | {:.3}% ({:.1}%) | {:.3} | {:.3} ({:.3}) | {} | {} | {:.2} |",
                name,
                m.false_offline_share * 100.0,
                m.hidden_offline_share * 100.0,
                m.false_offline_episodes_per_user_hour,
                m.flaps_per_user_hour,
                m.offline_flaps_per_user_hour,
                percentiles(&m.latency.clean),
                percentiles(&m.latency.lost),
                m.user_events_per_second_per_1k_users,
            );
        }
        out
    }

    /// The plot of p95 departure latency against false offline, every peer and our default
    /// and recommendation labelled, the rest of our grid in grey, as an SVG document.
    pub fn svg(&self) -> String {
        super::plot::peers_svg(self)
    }
}

/// `p50 / p95 / p99` in seconds, or a dash when there were no departures.
fn percentiles(latency: &Latency) -> String {
    if latency.count == 0 {
        return "–".to_string();
    }
    format!(
        "{} / {} / {}",
        secs_1(latency.p50),
        secs_1(latency.p95),
        secs_1(latency.p99)
    )
}
