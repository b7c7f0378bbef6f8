//! The named scenarios and population presets.

use super::scenario::{Client, Network, Population, Restart, Scenario, Span};
use super::ScenarioError;

impl Population {
    /// The names [`Population::preset`] knows.
    pub const PRESETS: [&'static str; 4] = ["desk", "phone", "flaky", "steady"];

    /// A preset population:
    ///
    /// - `desk`: office workers in a browser, 1 to 4 tabs open for hours, idle spells, other
    ///   windows in front, a reload now and then; half the visits end with the tab closed, half
    ///   with a laptop lid (no close frame); a good network.
    /// - `phone`: a phone app in short foreground bursts, suspended by the OS in between
    ///   (seconds to a quarter of an hour), rarely closed cleanly, on a cellular network that
    ///   loses 2% of heartbeats and drops out about once an hour.
    /// - `flaky`: browser users on a bad link (a train, a crowded Wi-Fi): 5% of heartbeats
    ///   lost, three partitions an hour lasting seconds to minutes.
    /// - `steady`: an idealised client that never misbehaves: one foreground tab, a perfect
    ///   network, clean closes. A baseline that should show no false offline and no flaps.
    ///
    /// # Errors
    ///
    /// [`ScenarioError::UnknownPreset`] for another name.
    pub fn preset(name: &str) -> Result<Population, ScenarioError> {
        Ok(match name {
            "desk" => Population {
                name: "desk".to_string(),
                client: Client::Browser,
                tabs: [1, 4],
                visit_minutes: Span::new(90.0, 540.0),
                gap_minutes: Span::new(120.0, 900.0),
                active_minutes: Span::new(1.0, 30.0),
                idle_minutes: Span::new(1.0, 20.0),
                hidden_minutes: Span::new(0.5, 30.0),
                hide_share: 0.4,
                reloads_per_hour: 1.0,
                reload_seconds: Span::new(0.3, 3.0),
                close_frame: 0.5,
                network: Network {
                    drop: 0.002,
                    partitions_per_hour: 0.1,
                    partition_seconds: Span::new(2.0, 120.0),
                    ..Network::default()
                },
                ..Population::default()
            },
            "phone" => Population {
                name: "phone".to_string(),
                client: Client::Mobile,
                tabs: [1, 1],
                visit_minutes: Span::new(5.0, 120.0),
                gap_minutes: Span::new(10.0, 300.0),
                active_minutes: Span::new(0.3, 5.0),
                idle_minutes: Span::new(0.2, 2.0),
                hidden_minutes: Span::new(0.2, 15.0),
                hide_share: 0.6,
                reloads_per_hour: 0.0,
                close_frame: 0.1,
                background_signal: 0.6,
                jitter: 0.2,
                network: Network {
                    drop: 0.02,
                    partitions_per_hour: 1.0,
                    partition_seconds: Span::new(2.0, 90.0),
                    ..Network::default()
                },
                ..Population::default()
            },
            "flaky" => Population {
                name: "flaky".to_string(),
                client: Client::Browser,
                tabs: [1, 2],
                visit_minutes: Span::new(30.0, 300.0),
                gap_minutes: Span::new(60.0, 600.0),
                active_minutes: Span::new(1.0, 20.0),
                idle_minutes: Span::new(1.0, 10.0),
                hidden_minutes: Span::new(0.5, 20.0),
                hide_share: 0.3,
                reloads_per_hour: 1.0,
                close_frame: 0.5,
                network: Network {
                    drop: 0.05,
                    partitions_per_hour: 3.0,
                    partition_seconds: Span::new(3.0, 300.0),
                    reconnect_seconds: Span::new(1.0, 10.0),
                    ..Network::default()
                },
                ..Population::default()
            },
            "steady" => Population {
                name: "steady".to_string(),
                client: Client::Browser,
                tabs: [1, 1],
                visit_minutes: Span::new(30.0, 240.0),
                gap_minutes: Span::new(30.0, 240.0),
                active_minutes: Span::new(5.0, 60.0),
                idle_minutes: Span::new(1.0, 5.0),
                hidden_minutes: Span::fixed(1.0),
                hide_share: 0.0,
                reloads_per_hour: 0.0,
                close_frame: 1.0,
                jitter: 0.05,
                network: Network::default(),
                ..Population::default()
            },
            other => return Err(ScenarioError::UnknownPreset(other.to_string())),
        })
    }
}

impl Scenario {
    /// The names [`Scenario::named`] knows.
    pub const NAMES: [&'static str; 5] = [
        "office",
        "mobile",
        "flaky-network",
        "restart-storm",
        "mixed",
    ];

    /// A named scenario, 1000 users for 24 hours with seed 1 (change them with the `with_*`
    /// methods):
    ///
    /// - `office`: the `desk` population.
    /// - `mobile`: the `phone` population.
    /// - `flaky-network`: the `flaky` population.
    /// - `restart-storm`: 70% `desk`, 30% `phone`, and a server restart 30 minutes in and
    ///   every 4 hours after: everyone reconnects within 5 s, the old disconnects arrive up to
    ///   30 s late.
    /// - `mixed`: 50% `desk`, 30% `phone`, 20% `flaky`, and a restart 1 hour in and every
    ///   12 hours after.
    ///
    /// See [`Population::preset`] for the populations.
    ///
    /// # Errors
    ///
    /// [`ScenarioError::UnknownScenario`] for another name.
    pub fn named(name: &str) -> Result<Scenario, ScenarioError> {
        let preset = Population::preset;
        let scenario = Scenario::new(name);
        Ok(match name {
            "office" => scenario.with_population(preset("desk")?),
            "mobile" => scenario.with_population(preset("phone")?),
            "flaky-network" => scenario.with_population(preset("flaky")?),
            "restart-storm" => scenario
                .with_population(preset("desk")?.with_share(0.7))
                .with_population(preset("phone")?.with_share(0.3))
                .with_restart(Restart {
                    at_minutes: 30.0,
                    repeat_minutes: 240.0,
                    spread_seconds: 5.0,
                    late_disconnect_seconds: 30.0,
                }),
            "mixed" => scenario
                .with_population(preset("desk")?.with_share(0.5))
                .with_population(preset("phone")?.with_share(0.3))
                .with_population(preset("flaky")?.with_share(0.2))
                .with_restart(Restart {
                    at_minutes: 60.0,
                    repeat_minutes: 720.0,
                    spread_seconds: 5.0,
                    late_disconnect_seconds: 30.0,
                }),
            other => return Err(ScenarioError::UnknownScenario(other.to_string())),
        })
    }
}
