//! Rendering of [`BenchReport`]: the aligned text table, `bench.md` and the latency chart.

use std::fmt::Write as _;

use crate::bench::{BenchReport, Placement, Server};
use crate::report::fmt_us;
use crate::svg::{self, Panel, Series};

impl BenchReport {
    fn reference(&self, pl: Placement, server: Server, w: Option<usize>) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| {
                r.placement == pl
                    && r.server == server
                    && (server == Server::Epoll || r.workers == w)
            })
            .and_then(|r| r.outcome.as_ref().ok())
            .map(|m| m.rps)
            .filter(|&x| x > 0.0)
    }

    /// The cells of each row: placement, W, server, req/s, p50, p99, p99.9, errors, server
    /// CPU µs/req, ÷epoll, ÷tokio.
    fn cells(&self) -> Vec<[String; N]> {
        let ratio = |a: f64, b: Option<f64>| b.map_or("-".to_string(), |b| format!("{:.2}", a / b));
        self.rows
            .iter()
            .map(|r| {
                let head = [
                    r.placement.label().to_string(),
                    r.workers.map_or("1*".into(), |w| w.to_string()),
                    r.server.label().to_string(),
                ];
                let rest = match &r.outcome {
                    Ok(m) => [
                        format!("{:.0}", m.rps),
                        fmt_us(m.p50),
                        fmt_us(m.p99),
                        fmt_us(m.p999),
                        m.errors.to_string(),
                        m.server_cpu_us.map_or("-".into(), |c| format!("{c:.1}")),
                        ratio(m.rps, self.reference(r.placement, Server::Epoll, None)),
                        ratio(m.rps, self.reference(r.placement, Server::Tokio, r.workers)),
                    ],
                    Err(e) => [
                        e.clone(),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                    ],
                };
                let [a, b, c] = head;
                let [d, e, f, g, h, i, j, k] = rest;
                [a, b, c, d, e, f, g, h, i, j, k]
            })
            .collect()
    }

    /// The side-by-side table as aligned text.
    pub fn table_text(&self) -> String {
        let hdr = HEADERS.map(String::from);
        let cells = self.cells();
        let mut width = [0usize; N];
        for row in std::iter::once(&hdr).chain(&cells) {
            // A skipped/failed row has its message in column 3 and nothing after it.
            let n = if row[4].is_empty() { 3 } else { N };
            for (w, c) in width.iter_mut().zip(row).take(n) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut s = format!("{}\n", self.setup);
        for row in std::iter::once(&hdr).chain(&cells) {
            let line: Vec<String> = row
                .iter()
                .zip(width)
                .enumerate()
                .map(|(i, (c, w))| match i {
                    _ if i < 3 => format!("{c:<w$}"),
                    _ if row[4].is_empty() => c.clone(),
                    _ => format!("{c:>w$}"),
                })
                .collect();
            let _ = writeln!(s, "{}", line.join("  ").trim_end());
        }
        s.push_str("(1* = single-threaded reference; latency in µs unless marked; ratios are req/s over echo-epoll of the same placement and echo-tokio of the same W)\n");
        s
    }

    /// The table as markdown (what `bench.md` holds).
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# zstress bench\n\n{}\n\n| {} |\n|{}\n",
            self.setup,
            HEADERS.join(" | "),
            "---|".repeat(N)
        );
        for row in self.cells() {
            let _ = writeln!(s, "| {} |", row.join(" | "));
        }
        s.push_str("\n`1*`: echo-epoll is single-threaded; it is the ÷epoll reference for every W of its placement. Latency in µs unless marked. ÷tokio compares with echo-tokio at the same W.\n\n![latency](latency.svg)\n");
        s
    }

    /// The latency chart: one panel per placement and W.
    pub fn svg(&self) -> String {
        let mut panels: Vec<Panel> = Vec::new();
        for r in &self.rows {
            let Ok(m) = &r.outcome else { continue };
            let ws: Vec<Option<usize>> = if r.workers.is_none() {
                let mut v: Vec<Option<usize>> = self
                    .rows
                    .iter()
                    .filter(|x| x.placement == r.placement && x.workers.is_some())
                    .map(|x| x.workers)
                    .collect();
                v.dedup();
                if v.is_empty() { vec![None] } else { v }
            } else {
                vec![r.workers]
            };
            for w in ws {
                let title = format!(
                    "{}, W={}",
                    r.placement.label(),
                    w.map_or("1".into(), |w| w.to_string())
                );
                let idx = panels
                    .iter()
                    .position(|p| p.title == title)
                    .unwrap_or_else(|| {
                        panels.push(Panel {
                            title,
                            series: Vec::new(),
                        });
                        panels.len() - 1
                    });
                panels[idx].series.push(Series {
                    name: r.server.label().to_string(),
                    points: m.curve.clone(),
                });
            }
        }
        svg::latency_chart("echo latency percentiles (log scale)", &self.setup, &panels)
    }
}

const N: usize = 11;
const HEADERS: [&str; N] = [
    "placement",
    "W",
    "server",
    "req/s",
    "p50",
    "p99",
    "p99.9",
    "errors",
    "srv CPU µs/req",
    "÷epoll",
    "÷tokio",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{BenchRow, Measure};

    fn row(pl: Placement, w: Option<usize>, server: Server, rps: f64) -> BenchRow {
        let m = Measure {
            rps,
            p50: 100,
            p99: 900,
            p999: 20_000,
            errors: 0,
            curve: vec![(0.5, 100), (1.0, 30_000)],
            server_cpu_us: Some(12.5),
        };
        BenchRow {
            placement: pl,
            workers: w,
            server,
            outcome: Ok(m),
        }
    }

    #[test]
    fn ratios_skips_and_outputs() {
        let skipped = BenchRow {
            placement: Placement::Cpu0,
            workers: Some(1),
            server: Server::ZmasterCoroutine,
            outcome: Err("skipped: not built".into()),
        };
        let r = BenchReport {
            rows: vec![
                row(Placement::Cpu0, Some(1), Server::ZmasterAio, 50.0),
                skipped,
                row(Placement::Cpu0, Some(1), Server::Tokio, 40.0),
                row(Placement::Cpu0, None, Server::Epoll, 100.0),
            ],
            setup: "test setup".into(),
        };
        let md = r.markdown();
        assert!(
            md.contains(
                "| cpu0 | 1 | zmaster+echo-aio | 50 | 100 | 900 | 20.0ms | 0 | 12.5 | 0.50 | 1.25 |"
            ),
            "{md}"
        );
        assert!(md.contains("| cpu0 | 1* | echo-epoll | 100 |"), "{md}");
        assert!(md.contains("skipped: not built"), "{md}");
        let text = r.table_text();
        assert!(
            text.lines()
                .any(|l| l.contains("zmaster+echo-coroutine") && l.ends_with("skipped: not built")),
            "{text}"
        );
        let svg = r.svg();
        assert_eq!(
            svg.matches("<polyline").count(),
            3,
            "epoll joins the W=1 panel"
        );
    }
}
