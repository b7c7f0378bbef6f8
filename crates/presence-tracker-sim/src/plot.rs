//! The trade-off plot, as a hand-written SVG: detection latency against false offline, one
//! point per candidate; and the same axes against the peers (`peers`).

mod peers;

use std::fmt::Write as _;

use super::candidate::secs;
use super::Study;

pub(crate) use peers::peers_svg;

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 620.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 300.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 70.0;

const GREY: &str = "#9aa0a6";
const FRONT: &str = "#e8710a";
const DEFAULT: &str = "#1a1a1a";
const RECOMMENDED: &str = "#188038";
/// Our candidate with the fewest flaps within the goal's bounds.
const FEWEST_FLAPS: &str = "#f9ab00";

/// Renders the study's trade-off plot.
pub(crate) fn tradeoff_svg(study: &Study) -> String {
    let points: Vec<(f64, f64)> = study
        .reports
        .iter()
        .map(|r| {
            (
                r.metrics.false_offline_share * 100.0,
                r.metrics.latency.all.p95.as_secs_f64(),
            )
        })
        .collect();
    let x_max = nice_max(points.iter().map(|p| p.0).fold(0.0, f64::max), 0.01);
    let y_max = nice_max(points.iter().map(|p| p.1).fold(0.0, f64::max), 1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + x / x_max * plot_w;
    let sy = |y: f64| TOP + plot_h - y / y_max * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif">"##
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let s = &study.scenario;
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="28" font-size="18" font-weight="bold">Presence trade-off: {} ({} users, {} h, seed {})</text>"##,
        escape(&s.name),
        s.users,
        s.hours,
        s.seed
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="50" font-size="12" fill="#555">One point per candidate (numbers as in the table). Lower left is better: departures shown sooner, users who are there shown offline less.</text>"##
    );

    // Grid and axes.
    for tick in ticks(x_max) {
        let x = sx(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            trim(tick)
        );
    }
    y_axis_and_frame(
        &mut svg,
        (y_max, plot_w, plot_h),
        "false offline (% of the time users are there: active or idle)",
        "p95 detection latency of departures (s)",
    );

    // Points: the dominated first, so the front is drawn on top. A point's area grows with
    // its flaps, the third objective.
    let on_front = |i: usize| study.front.get(i).copied().unwrap_or(false);
    let max_flaps = study
        .reports
        .iter()
        .map(|r| r.metrics.flaps_per_user_hour)
        .fold(0.0, f64::max);
    let radius = |i: usize| {
        let flaps = study.reports[i].metrics.flaps_per_user_hour;
        if max_flaps > 0.0 {
            3.5 + 7.0 * (flaps / max_flaps).sqrt()
        } else {
            4.5
        }
    };
    let mut order: Vec<usize> = (0..points.len()).filter(|&i| !on_front(i)).collect();
    order.extend((0..points.len()).filter(|&i| on_front(i)));
    for &i in &order {
        let (x, y) = points[i];
        let (fill, stroke, opacity) = if on_front(i) {
            (FRONT, "#7a3b00", 0.85)
        } else {
            (GREY, "#5f6368", 0.6)
        };
        let _ = writeln!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="{:.1}" fill="{fill}" fill-opacity="{opacity}" stroke="{stroke}"><title>#{} {} ({:.3} flaps/user-hour)</title></circle>"##,
            sx(x),
            sy(y),
            radius(i),
            i + 1,
            escape(&study.reports[i].candidate.label()),
            study.reports[i].metrics.flaps_per_user_hour
        );
    }
    // One label per spot: front members that land within a few pixels share it.
    let mut spots: Vec<((f64, f64), Vec<usize>)> = Vec::new();
    for i in (0..points.len()).filter(|&i| on_front(i)) {
        let at = (sx(points[i].0), sy(points[i].1));
        match spots
            .iter_mut()
            .find(|(p, _)| (p.0 - at.0).abs() < 12.0 && (p.1 - at.1).abs() < 10.0)
        {
            Some((_, members)) => members.push(i + 1),
            None => spots.push((at, vec![i + 1])),
        }
    }
    // Labels go right of their point, or left of it near the right edge.
    let right_edge = LEFT + 0.85 * plot_w;
    for ((x, y), members) in spots {
        let names: Vec<String> = members.iter().map(ToString::to_string).collect();
        let (lx, anchor) = if x > right_edge {
            (x - 10.0, "end")
        } else {
            (x + 10.0, "start")
        };
        let _ = writeln!(
            svg,
            r##"<text x="{lx:.1}" y="{:.1}" font-size="11" fill="#7a3b00" text-anchor="{anchor}">{}</text>"##,
            y - 8.0,
            names.join(",")
        );
    }
    let rings = [
        (study.default_index(), DEFAULT, "default", 22.0),
        (study.recommended, RECOMMENDED, "recommended", -16.0),
    ];
    for (index, colour, name, dy) in rings {
        if let Some(i) = index {
            let (x, y) = (sx(points[i].0), sy(points[i].1));
            let r = radius(i) + 5.0;
            // Left of the ring, unless that would run into the axis.
            let (lx, anchor) = if x < LEFT + 0.3 * plot_w {
                (x + r + 4.0, "start")
            } else {
                (x - r - 4.0, "end")
            };
            let _ = writeln!(
                svg,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="{r:.1}" fill="none" stroke="{colour}" stroke-width="2.5"/><text x="{lx:.1}" y="{:.1}" font-size="12" font-weight="bold" fill="{colour}" text-anchor="{anchor}">{name}</text>"##,
                y + dy
            );
        }
    }

    // Legend, and the front's members spelled out.
    let lx = WIDTH - RIGHT + 20.0;
    let mut ly = TOP + 10.0;
    let legend = [
        (
            format!(
                r##"<circle cx="{:.1}" cy="{:.1}" r="4.5" fill="{GREY}"/>"##,
                lx + 6.0,
                ly - 4.0
            ),
            "dominated candidate",
        ),
        (
            format!(
                r##"<circle cx="{:.1}" cy="{:.1}" r="6" fill="{FRONT}" stroke="#7a3b00"/>"##,
                lx + 6.0,
                ly + 16.0
            ),
            "on the Pareto front",
        ),
        (
            format!(
                r##"<circle cx="{:.1}" cy="{:.1}" r="9" fill="none" stroke="{DEFAULT}" stroke-width="2.5"/>"##,
                lx + 6.0,
                ly + 36.0
            ),
            "the default policy",
        ),
        (
            format!(
                r##"<circle cx="{:.1}" cy="{:.1}" r="9" fill="none" stroke="{RECOMMENDED}" stroke-width="2.5"/>"##,
                lx + 6.0,
                ly + 56.0
            ),
            "recommended",
        ),
    ];
    for (k, (symbol, text)) in legend.iter().enumerate() {
        let y = ly + 20.0 * k as f64;
        let _ = writeln!(
            svg,
            r##"{symbol}<text x="{:.1}" y="{:.1}" font-size="12">{}</text>"##,
            lx + 20.0,
            y,
            escape(text)
        );
    }
    for (k, note) in [
        "front: no candidate is better in p95 latency,",
        "false offline and flaps at once;",
        "a larger point flaps more",
    ]
    .iter()
    .enumerate()
    {
        let _ = writeln!(
            svg,
            r##"<text x="{lx:.1}" y="{:.1}" font-size="11" fill="#555">{note}</text>"##,
            ly + 84.0 + 14.0 * k as f64
        );
    }
    ly += 140.0;
    let _ = writeln!(
        svg,
        r##"<text x="{lx:.1}" y="{ly:.1}" font-size="12" font-weight="bold">On the front (flaps per user-hour):</text>"##
    );
    let members: Vec<usize> = (0..points.len()).filter(|&i| on_front(i)).collect();
    let room = ((HEIGHT - BOTTOM - ly) / 15.0).max(1.0) as usize;
    for (k, &i) in members.iter().take(room.saturating_sub(1)).enumerate() {
        let c = &study.reports[i].candidate;
        let _ = writeln!(
            svg,
            r##"<text x="{lx:.1}" y="{:.1}" font-size="11" font-family="monospace">#{:<3} ttl {} dg {} lg {} hb {} ({:.3})</text>"##,
            ly + 16.0 + 15.0 * k as f64,
            i + 1,
            secs(c.ttl),
            secs(c.disconnect_grace),
            secs(c.leave_grace),
            secs(c.heartbeat),
            study.reports[i].metrics.flaps_per_user_hour
        );
    }
    if members.len() + 1 > room {
        let _ = writeln!(
            svg,
            r##"<text x="{lx:.1}" y="{:.1}" font-size="11">... and {} more (see the table)</text>"##,
            ly + 16.0 + 15.0 * (room - 1) as f64,
            members.len() + 1 - room
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A round axis maximum at or above `max` (at least `floor`).
/// What both plots draw alike: the y axis's grid lines and labels (0 to `y_max`), the frame of
/// the plot area (`plot_w` by `plot_h` at [`LEFT`], [`TOP`]) and the two axis titles.
fn y_axis_and_frame(
    svg: &mut String,
    (y_max, plot_w, plot_h): (f64, f64, f64),
    x_title: &str,
    y_title: &str,
) {
    let sy = |y: f64| TOP + plot_h - y / y_max * plot_h;
    for tick in ticks(y_max) {
        let y = sy(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 8.0,
            y + 4.0,
            trim(tick)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle">{x_title}</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 25.0
    );
    let _ = writeln!(
        svg,
        r##"<text x="22" y="{:.1}" font-size="13" text-anchor="middle" transform="rotate(-90 22 {:.1})">{y_title}</text>"##,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
}

fn nice_max(max: f64, floor: f64) -> f64 {
    let max = if max.is_finite() {
        max.max(floor)
    } else {
        floor
    };
    let step = nice_step(max / 5.0);
    ((max / step) - 1e-9).ceil() * step
}

/// 1, 2, 2.5 or 5 times a power of ten, at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power)
}

/// Axis ticks from 0 to `max` inclusive.
fn ticks(max: f64) -> Vec<f64> {
    let step = nice_step(max / 5.0);
    (0..=((max / step).round() as usize))
        .map(|k| k as f64 * step)
        .collect()
}

/// A tick label without float noise.
fn trim(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_helpers() {
        assert!((nice_max(0.0, 0.01) - 0.01).abs() < 1e-12);
        assert_eq!(nice_max(173.0, 1.0), 200.0);
        assert_eq!(ticks(200.0), [0.0, 50.0, 100.0, 150.0, 200.0]);
        assert_eq!(trim(0.25), "0.25");
        assert_eq!(trim(40.0), "40");
        assert_eq!(escape("a<b&c"), "a&lt;b&amp;c");
    }
}
