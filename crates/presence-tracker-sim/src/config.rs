//! Scenarios as JSON, with presets to start from.

use serde_json::Value;

use super::{Population, Scenario, ScenarioError};

impl Scenario {
    /// Reads a scenario from JSON.
    ///
    /// Every field is optional and takes its value from a starting point: the named scenario
    /// in `"base"` if given (see [`Scenario::named`]), else [`Scenario::default`]. Each
    /// population likewise starts from the preset named in its `"preset"` (see
    /// [`Population::preset`]), else [`Population::default`], and the fields given override it,
    /// nested objects field by field. A `"populations"` array replaces the base's populations.
    /// Unknown fields are refused, so a typo does not silently fall back to a default.
    ///
    /// Durations carry their unit in the field name; a span is `[lo, hi]`.
    ///
    /// # Examples
    ///
    /// ```
    /// use presence_tracker_sim::Scenario;
    ///
    /// let scenario = Scenario::from_json(r#"{
    ///     "name": "my-traffic",
    ///     "users": 500,
    ///     "hours": 8,
    ///     "populations": [
    ///         { "preset": "desk", "share": 0.6 },
    ///         { "preset": "phone", "share": 0.4, "network": { "drop": 0.05 } }
    ///     ],
    ///     "restarts": [ { "at_minutes": 120 } ]
    /// }"#)?;
    /// assert_eq!(scenario.populations[1].network.drop, 0.05);
    /// assert_eq!(scenario.populations[1].network.partitions_per_hour, 1.0); // from the preset
    /// # Ok::<(), presence_tracker_sim::ScenarioError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ScenarioError::Json`] for text that is not such JSON, [`ScenarioError::UnknownScenario`]
    /// or [`ScenarioError::UnknownPreset`] for a bad name, [`ScenarioError::Invalid`] for a value
    /// out of range.
    pub fn from_json(text: &str) -> Result<Scenario, ScenarioError> {
        let value: Value = serde_json::from_str(text).map_err(json_error)?;
        let Value::Object(mut top) = value else {
            return Err(ScenarioError::Json("expected an object".to_string()));
        };
        let base = match top.remove("base") {
            None => Scenario::default(),
            Some(Value::String(name)) => Scenario::named(&name)?,
            Some(_) => {
                return Err(ScenarioError::Json(
                    "base must be a scenario name".to_string(),
                ))
            }
        };
        let mut merged = serde_json::to_value(&base).map_err(json_error)?;
        if let Some(populations) = top.remove("populations") {
            let Value::Array(items) = populations else {
                return Err(ScenarioError::Json(
                    "populations must be an array".to_string(),
                ));
            };
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let Value::Object(mut fields) = item else {
                    return Err(ScenarioError::Json(
                        "each population must be an object".to_string(),
                    ));
                };
                let start = match fields.remove("preset") {
                    None => Population::default(),
                    Some(Value::String(name)) => Population::preset(&name)?,
                    Some(_) => {
                        return Err(ScenarioError::Json(
                            "preset must be a preset name".to_string(),
                        ))
                    }
                };
                let mut population = serde_json::to_value(&start).map_err(json_error)?;
                merge(&mut population, Value::Object(fields));
                out.push(population);
            }
            if let Value::Object(fields) = &mut merged {
                fields.insert("populations".to_string(), Value::Array(out));
            }
        }
        merge(&mut merged, Value::Object(top));
        let scenario: Scenario = serde_json::from_value(merged).map_err(json_error)?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// The scenario as pretty-printed JSON, every field spelled out: a starting point for a
    /// custom traffic file that [`Scenario::from_json`] reads back.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

fn json_error(e: serde_json::Error) -> ScenarioError {
    ScenarioError::Json(e.to_string())
}

/// Overlays `over` on `base`: objects field by field, anything else replaced.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_scenarios_round_trip_through_json() {
        for name in Scenario::NAMES {
            let scenario = Scenario::named(name).expect("a known name");
            let back = Scenario::from_json(&scenario.to_json()).expect("its own json");
            assert_eq!(back, scenario, "{name}");
        }
    }

    #[test]
    fn base_and_presets_are_overridden_field_by_field() {
        let scenario = Scenario::from_json(
            r#"{"base": "mobile", "users": 7, "populations": [{"preset": "phone", "network": {"drop": 0.5}}]}"#,
        )
        .expect("valid");
        assert_eq!(scenario.users, 7);
        assert_eq!(scenario.name, "mobile");
        assert_eq!(scenario.populations.len(), 1);
        assert_eq!(scenario.populations[0].network.drop, 0.5);
        let phone = Population::preset("phone").expect("preset");
        assert_eq!(
            scenario.populations[0].network.partitions_per_hour,
            phone.network.partitions_per_hour
        );
        assert_eq!(scenario.populations[0].hidden_minutes, phone.hidden_minutes);
    }

    #[test]
    fn typos_and_bad_values_are_refused() {
        let typo = Scenario::from_json(r#"{"populations": [{"preset": "desk", "dorp": 0.1}]}"#);
        assert!(matches!(typo, Err(ScenarioError::Json(m)) if m.contains("dorp")));
        let bad = Scenario::from_json(r#"{"populations": [{"preset": "desk", "close_frame": 2}]}"#);
        assert!(matches!(bad, Err(ScenarioError::Invalid(m)) if m.contains("close_frame")));
        let preset = Scenario::from_json(r#"{"populations": [{"preset": "tablet"}]}"#);
        assert_eq!(
            preset,
            Err(ScenarioError::UnknownPreset("tablet".to_string()))
        );
        assert!(Scenario::from_json("[1, 2]").is_err());
        assert!(
            Scenario::from_json(r#"{"users": 10}"#).is_err(),
            "no populations"
        );
    }
}
