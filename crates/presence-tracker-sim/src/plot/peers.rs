//! The plot against the peers: p95 departure latency against false offline, every peer, our
//! default and our recommendation labelled, the rest of our grid in grey.

use std::fmt::Write as _;

use super::{
    escape, nice_max, trim, y_axis_and_frame, DEFAULT, FEWEST_FLAPS, GREY, HEIGHT, LEFT,
    RECOMMENDED, TOP,
};
use crate::{Comparison, Report};

const WIDTH: f64 = 1000.0;
const RIGHT: f64 = 290.0;
const BOTTOM: f64 = 70.0;
/// The column left of the logarithmic axis where models with no false offline at all sit.
const ZERO_GAP: f64 = 56.0;

/// One colour per peer, in [`Peer::ALL`](crate::Peer::ALL)'s order.
const PEER_COLOURS: [&str; 6] = [
    "#d93025", "#8430ce", "#1a73e8", "#e37400", "#00897b", "#c2185b",
];

struct Point<'a> {
    name: String,
    report: &'a Report,
    colour: &'a str,
}

/// Renders the comparison's plot.
pub(crate) fn peers_svg(comparison: &Comparison) -> String {
    let mut labelled: Vec<Point<'_>> = comparison
        .peers
        .iter()
        .enumerate()
        .map(|(i, r)| Point {
            name: r.candidate.name.clone(),
            report: r,
            colour: PEER_COLOURS[i % PEER_COLOURS.len()],
        })
        .collect();
    let study = &comparison.study;
    let fewest = comparison
        .goal()
        .and_then(|goal| goal.ours)
        .and_then(|ours| {
            let same = |r: &&Report| r.candidate == ours.candidate;
            study.reports.iter().chain(&comparison.matched).find(same)
        });
    let ours = [
        (
            study.default_index().and_then(|i| study.reports.get(i)),
            "ours, default",
            DEFAULT,
        ),
        (
            study.recommended.and_then(|i| study.reports.get(i)),
            "ours, recommended",
            RECOMMENDED,
        ),
        (fewest, "ours, fewest flaps", FEWEST_FLAPS),
    ];
    for (report, name, colour) in ours {
        if let Some(report) = report {
            labelled.push(Point {
                name: name.to_string(),
                report,
                colour,
            });
        }
    }
    let false_offline = |r: &Report| r.metrics.false_offline_share * 100.0;
    let latency = |r: &Report| r.metrics.latency.all.p95.as_secs_f64();
    let everyone = || study.reports.iter().chain(&comparison.peers);

    // x: false offline in % on a logarithmic axis, whole decades; zero left of it.
    let positive = everyone().map(false_offline).filter(|&v| v > 0.0);
    let lowest = positive.clone().fold(f64::INFINITY, f64::min);
    let highest = positive.fold(0.0, f64::max);
    let (lo_decade, hi_decade) = if highest > 0.0 {
        (
            lowest.log10().floor() as i32,
            (highest.log10().ceil() as i32).max(lowest.log10().floor() as i32 + 1),
        )
    } else {
        (-3, 0)
    };
    let y_max = nice_max(everyone().map(latency).fold(0.0, f64::max), 1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let log_left = LEFT + ZERO_GAP;
    let sx = |v: f64| {
        if v <= 0.0 {
            LEFT + ZERO_GAP / 3.0
        } else {
            let span = f64::from(hi_decade - lo_decade);
            log_left + (v.log10() - f64::from(lo_decade)) / span * (LEFT + plot_w - log_left)
        }
    };
    let sy = |y: f64| TOP + plot_h - y / y_max * plot_h;
    let max_flaps = everyone()
        .map(|r| r.metrics.flaps_per_user_hour)
        .fold(0.0, f64::max);
    let radius = |r: &Report| {
        if max_flaps > 0.0 {
            3.5 + 7.0 * (r.metrics.flaps_per_user_hour / max_flaps).sqrt()
        } else {
            4.5
        }
    };

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif">"##
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let s = &study.scenario;
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="28" font-size="18" font-weight="bold">Against the peers: {} ({} users, {} h, seed {})</text>"##,
        escape(&s.name),
        s.users,
        s.hours,
        s.seed
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="50" font-size="12" fill="#555">Every model on the same simulated users. Lower left is better; a larger point flaps more. Grey: the rest of our grid.</text>"##
    );

    // Axes: decades on x, with the zero column apart.
    for decade in lo_decade..=hi_decade {
        let v = 10f64.powi(decade);
        let x = sx(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            trim(v)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">0</text><line x1="{log_left:.1}" y1="{TOP}" x2="{log_left:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="3 3"/>"##,
        sx(0.0),
        TOP + plot_h + 18.0,
        TOP + plot_h
    );
    y_axis_and_frame(
        &mut svg,
        (y_max, plot_w, plot_h),
        "false offline (% of the time users are there, logarithmic; 0 apart)",
        "p95 latency of departures (s)",
    );

    // Our grid in grey, then the labelled models on top.
    for r in &study.reports {
        let _ = writeln!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{GREY}" fill-opacity="0.5"><title>{}</title></circle>"##,
            sx(false_offline(r)),
            sy(latency(r)),
            escape(&r.candidate.label())
        );
    }
    let centres: Vec<(f64, f64, f64)> = labelled
        .iter()
        .map(|p| {
            let (x, y) = (sx(false_offline(p.report)), sy(latency(p.report)));
            (x, y, radius(p.report))
        })
        .collect();
    for (point, &(x, y, r)) in labelled.iter().zip(&centres) {
        let colour = point.colour;
        let _ = writeln!(
            svg,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="{r:.1}" fill="{colour}" fill-opacity="0.75" stroke="{colour}"><title>{} ({:.3} flaps/user-hour)</title></circle>"##,
            escape(&point.name),
            point.report.metrics.flaps_per_user_hour
        );
    }
    // Labels: the first of right, left, above, below that hits no other label or point and
    // stays inside the plot, else further down on the right.
    let mut placed: Vec<Boxed> = Vec::new();
    for (point, &(x, y, r)) in labelled.iter().zip(&centres) {
        let w = 7.0 * point.name.chars().count() as f64;
        let options = [
            (x + r + 4.0, y + 4.0, false),
            (x - r - 4.0, y + 4.0, true),
            (x - w / 2.0, y - r - 5.0, false),
            (x - w / 2.0, y + r + 14.0, false),
        ];
        let free = |b: &Boxed| {
            b.x0 >= LEFT
                && b.x1 <= LEFT + plot_w
                && b.y0 >= TOP
                && b.y1 <= TOP + plot_h
                && !placed.iter().any(|p| p.overlaps(b))
                && !centres.iter().any(|&(cx, cy, cr)| {
                    (cx, cy) != (x, y) && b.overlaps(&Boxed::around(cx, cy, cr))
                })
        };
        let mut chosen = options
            .iter()
            .map(|&(lx, ly, end)| (lx, ly, end, Boxed::label(lx, ly, w, end)))
            .find(|(_, _, _, b)| free(b));
        let mut ly = y + 4.0;
        while chosen.is_none() && ly < TOP + plot_h {
            ly += 13.0;
            let lx = x + r + 4.0;
            let b = Boxed::label(lx, ly, w, false);
            if free(&b) {
                chosen = Some((lx, ly, false, b));
            }
        }
        let (lx, ly, end, b) = chosen.unwrap_or((
            x + r + 4.0,
            y + 4.0,
            false,
            Boxed::label(x + r + 4.0, y + 4.0, w, false),
        ));
        placed.push(b);
        let anchor = if end { "end" } else { "start" };
        let _ = writeln!(
            svg,
            r##"<text x="{lx:.1}" y="{ly:.1}" font-size="12" font-weight="bold" fill="{}" text-anchor="{anchor}">{}</text>"##,
            point.colour,
            escape(&point.name)
        );
    }

    // Legend: each labelled model with its numbers.
    let lx = WIDTH - RIGHT + 18.0;
    let mut ly = TOP + 6.0;
    let _ = writeln!(
        svg,
        r##"<text x="{lx:.1}" y="{ly:.1}" font-size="12" font-weight="bold">false offline, p95, flaps/user-h</text>"##
    );
    for point in &labelled {
        ly += 18.0;
        let m = &point.report.metrics;
        let _ = writeln!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{}"/><text x="{:.1}" y="{ly:.1}" font-size="11">{}: {:.3}%, {:.0} s, {:.2}</text>"##,
            lx + 5.0,
            ly - 4.0,
            point.colour,
            lx + 16.0,
            escape(&point.name),
            m.false_offline_share * 100.0,
            m.latency.all.p95.as_secs_f64(),
            m.flaps_per_user_hour
        );
    }
    if let Some(r) = study.recommended.and_then(|i| study.reports.get(i)) {
        ly += 24.0;
        let _ = writeln!(
            svg,
            r##"<text x="{lx:.1}" y="{ly:.1}" font-size="11" fill="#555">recommended: {}</text>"##,
            escape(&r.candidate.label())
        );
    }
    if let Some(r) = fewest {
        ly += 16.0;
        let _ = writeln!(
            svg,
            r##"<text x="{lx:.1}" y="{ly:.1}" font-size="11" fill="#555">fewest flaps: {}</text>"##,
            escape(&r.candidate.label())
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A rectangle on the canvas.
#[derive(Clone, Copy, Debug)]
struct Boxed {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Boxed {
    /// A 12 px label of width `w` whose baseline starts (or, `end`, ends) at `(x, y)`.
    fn label(x: f64, y: f64, w: f64, end: bool) -> Boxed {
        let x0 = if end { x - w } else { x };
        Boxed {
            x0,
            y0: y - 11.0,
            x1: x0 + w,
            y1: y + 2.0,
        }
    }

    fn around(x: f64, y: f64, r: f64) -> Boxed {
        Boxed {
            x0: x - r,
            y0: y - r,
            x1: x + r,
            y1: y + r,
        }
    }

    fn overlaps(&self, other: &Boxed) -> bool {
        self.x0 < other.x1 && other.x0 < self.x1 && self.y0 < other.y1 && other.y0 < self.y1
    }
}
