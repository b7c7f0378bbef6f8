//! Against the peers: [`Comparison`] runs every peer model and a grid of our candidates on one
//! scenario and sets the peers, our default and our recommendation side by side.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::goal;
use super::study::secs_1;
use super::{
    run_many, Budget, Candidate, Goal, Latency, Peer, Report, Scenario, ScenarioError, Study,
};

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
/// // The peers, our default, our recommendation (and our fewest flaps within the goal's
/// // bounds, if any keeps within them).
/// assert_eq!(rows[Peer::ALL.len()].0, "ours, default");
/// assert!(rows[Peer::ALL.len() + 1].0.starts_with("ours, recommended"));
/// assert!(comparison.table().contains("| phoenix |"));
/// # Ok::<(), presence_tracker_sim::ScenarioError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Comparison {
    /// Our candidates on the scenario, with the front and the recommendation marked.
    pub study: Study,
    /// One report per peer, in the order given.
    pub peers: Vec<Report>,
    /// The grid's candidate with the fewest flaps within [the goal](Comparison::goal)'s
    /// bounds, its disconnect grace stretched to the best peer's latency: the comparison at an
    /// equal latency. `None` when nothing of the grid keeps within the bounds, or the grace
    /// could not be longer.
    pub matched: Option<Report>,
    /// Wall-clock time of all the runs.
    pub wall: Duration,
    /// Threads used.
    pub threads: usize,
}

impl Comparison {
    /// Runs `grid` (our candidates; include [`Candidate::default`] to get its row) and the
    /// peers on the scenario, all in one pool of up to `threads` threads, then
    /// [`matched`](Comparison::matched) (a few runs more). The peers take no part in the
    /// study's front or recommendation.
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
        let matched = goal::match_latency(scenario, &peers, &reports, threads)?;
        let wall = started.elapsed();
        let threads = threads.clamp(1, candidates.len().max(1));
        Ok(Comparison {
            study: Study::analyse(scenario, reports, budget, wall, threads),
            peers,
            matched,
            wall,
            threads,
        })
    }

    /// Issue 13's goal on this scenario, and the candidate of ours that comes closest; `None`
    /// without peers.
    pub fn goal(&self) -> Option<Goal> {
        Goal::of(self)
    }

    /// The rows of the table: each peer by name, then `ours, default`, `ours, recommended`
    /// and `ours, fewest flaps within the goal's bounds` (see [`Comparison::goal`]; when the
    /// grid gave them), with their reports.
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
        if let Some(ours) = self.goal().and_then(|goal| goal.ours) {
            let same = |r: &&Report| r.candidate == ours.candidate;
            if let Some(r) = self.study.reports.iter().chain(&self.matched).find(same) {
                rows.push((format!("ours, fewest flaps: {}", r.candidate.label()), r));
            }
        }
        rows
    }

    /// The side-by-side table in Markdown, headed by the scenario.
    pub fn table(&self) -> String {
        let s = &self.study.scenario;
        let mut out = String::new();
        let departures = self
            .study
            .recommended
            .and_then(|i| self.study.reports.get(i))
            .map(|r| (r.metrics.latency.clean.count, r.metrics.latency.lost.count));
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
            self.study.reports.len() + self.peers.len() + usize::from(self.matched.is_some()),
            self.wall.as_secs_f64(),
            self.threads
        );
        let _ = writeln!(
            out,
            "| model | false offline (hidden shown offline) | false-offline episodes /user-h | flaps /user-h (to or from offline) | clean departure p50 / p95 / p99 | lost departure p50 / p95 / p99 | first sign p50 / p95 | events /s /1k users |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for (name, r) in self.rows() {
            let m = &r.metrics;
            let _ = writeln!(
                out,
                "| {} | {:.3}% ({:.1}%) | {:.3} | {:.3} ({:.3}) | {} | {} | {} / {} | {:.2} |",
                name,
                m.false_offline_share * 100.0,
                m.hidden_offline_share * 100.0,
                m.false_offline_episodes_per_user_hour,
                m.flaps_per_user_hour,
                m.offline_flaps_per_user_hour,
                percentiles(&m.latency.clean),
                percentiles(&m.latency.lost),
                secs_1(m.first_sign.p50),
                secs_1(m.first_sign.p95),
                m.user_events_per_second_per_1k_users,
            );
        }
        if let Some(goal) = self.goal() {
            let _ = writeln!(out, "\n{}", goal.summary());
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
