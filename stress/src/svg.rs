//! A hand-written SVG line chart of latency percentiles (one panel per placement/workers group).
//!
//! X axis: the percentile on the usual "nines" scale, position `log10(1 / (1 - q))`
//! (p50, p90, p99, p99.9 …, with `max` one step past the last nine). Y axis: latency on a
//! log10 scale with a grid line per decade. One coloured line per server, same colour in
//! every panel, and a legend.

use std::fmt::Write as _;

/// The quantiles sampled for the chart (1.0 = max).
pub const QUANTILES: [f64; 8] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0];

/// One server's latency curve: `(quantile, microseconds)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend label.
    pub name: String,
    /// Points in increasing quantile order; quantile 1.0 means max.
    pub points: Vec<(f64, u64)>,
}

/// A titled panel of series.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Panel title (placement and worker count).
    pub title: String,
    /// The curves.
    pub series: Vec<Series>,
}

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const PW: f64 = 560.0;
const PH: f64 = 340.0;
const ML: f64 = 64.0;
const MR: f64 = 28.0;
const TOP: f64 = 56.0;
const MT: f64 = 36.0;
const MB: f64 = 44.0;

fn xpos(q: f64) -> f64 {
    if q >= 1.0 {
        5.0
    } else {
        (1.0 / (1.0 - q)).log10()
    }
}

fn qlabel(q: f64) -> String {
    if q >= 1.0 {
        "max".to_string()
    } else {
        let p = q * 100.0;
        let s = format!("{p:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        format!("p{s}")
    }
}

fn ylabel(us: f64) -> String {
    if us >= 1e6 {
        format!("{}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{}ms", us / 1e3)
    } else {
        format!("{us}µs")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Render the panels (two per row) under a title and a smaller subtitle line, with a shared
/// legend, as one SVG document.
pub fn latency_chart(title: &str, subtitle: &str, panels: &[Panel]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for s in panels.iter().flat_map(|p| &p.series) {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    let color = |n: &str| PALETTE[names.iter().position(|x| *x == n).unwrap_or(0) % PALETTE.len()];
    let cols = panels.len().clamp(1, 2);
    let rows = panels.len().div_ceil(cols).max(1);
    let legend_h = 24.0 * names.len().div_ceil(3) as f64 + 16.0;
    let (w, h) = (PW * cols as f64, TOP + PH * rows as f64 + legend_h);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="16">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="44" text-anchor="middle" font-size="11" fill="#444">{}</text>"##,
        w / 2.0,
        esc(subtitle)
    );
    for (i, p) in panels.iter().enumerate() {
        let (ox, oy) = ((i % cols) as f64 * PW, TOP + (i / cols) as f64 * PH);
        panel(&mut s, p, ox, oy, &color);
    }
    let ly = TOP + PH * rows as f64;
    for (i, n) in names.iter().enumerate() {
        let (x, y) = (
            ML + (i % 3) as f64 * 200.0,
            ly + 16.0 + (i / 3) as f64 * 24.0,
        );
        let c = color(n);
        let _ = writeln!(
            s,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{c}" stroke-width="3"/>"#,
            x + 24.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{}</text>"#,
            x + 30.0,
            y + 4.0,
            esc(n)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn panel(s: &mut String, p: &Panel, ox: f64, oy: f64, color: &dyn Fn(&str) -> &'static str) {
    let vals = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|pt| pt.1.max(1) as f64));
    let (lo, hi) = vals.fold((f64::MAX, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lo = if lo == f64::MAX { 1.0 } else { lo };
    let (d0, d1) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let (pw, ph) = (PW - ML - MR, PH - MT - MB);
    let x = |q: f64| ox + ML + xpos(q) / 5.0 * pw;
    let y = |us: f64| oy + MT + ph - (us.max(1.0).log10() - d0) / (d1 - d0) * ph;
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">{}</text>"#,
        ox + ML + pw / 2.0,
        oy + 20.0,
        esc(&p.title)
    );
    let _ = writeln!(
        s,
        r##"<rect x="{}" y="{}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##,
        ox + ML,
        oy + MT
    );
    let mut d = d0;
    while d <= d1 + 1e-9 {
        let yy = y(10f64.powf(d));
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{yy}" x2="{}" y2="{yy}" stroke="#ddd"/>"##,
            ox + ML,
            ox + ML + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            ox + ML - 6.0,
            yy + 4.0,
            ylabel(10f64.powf(d))
        );
        d += 1.0;
    }
    for q in QUANTILES {
        let xx = x(q);
        let _ = writeln!(
            s,
            r##"<line x1="{xx}" y1="{}" x2="{xx}" y2="{}" stroke="#eee"/>"##,
            oy + MT,
            oy + MT + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{xx}" y="{}" text-anchor="middle" font-size="10">{}</text>"#,
            oy + MT + ph + 14.0,
            qlabel(q)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        ox + ML + pw / 2.0,
        oy + PH - 8.0
    );
    for ser in &p.series {
        let pts: Vec<String> = ser
            .points
            .iter()
            .map(|&(q, us)| format!("{:.1},{:.1}", x(q), y(us as f64)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let c = color(&ser.name);
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        for pt in &pts {
            if let Some((cx, cy)) = pt.split_once(',') {
                let _ = writeln!(s, r#"<circle cx="{cx}" cy="{cy}" r="2.5" fill="{c}"/>"#);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_positions() {
        assert_eq!(qlabel(0.5), "p50");
        assert_eq!(qlabel(0.999), "p99.9");
        assert_eq!(qlabel(1.0), "max");
        assert!((xpos(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(ylabel(1000.0), "1ms");
    }

    #[test]
    fn chart_is_well_formed() {
        let ser = |n: &str, k: u64| Series {
            name: n.into(),
            points: QUANTILES
                .iter()
                .map(|&q| (q, k * (1 + (q * 10.0) as u64)))
                .collect(),
        };
        let panels = vec![
            Panel {
                title: "a <1>".into(),
                series: vec![ser("x", 50), ser("y", 80)],
            },
            Panel {
                title: "b".into(),
                series: vec![ser("x", 60)],
            },
        ];
        let svg = latency_chart("t", "sub", &panels);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("a &lt;1&gt;"));
        assert!(!svg.contains("NaN"));
    }
}
