//! Rendering of [`BenchReport`]: the aligned text table, `bench.md` and the latency chart.

use std::fmt::Write as _;

use super::{BenchReport, BenchRow, IdleMeasure, LoadKind, Placement, Server};
use crate::report::fmt_us;
use crate::svg::{self, Panel, Series};

impl BenchReport {
    /// The req/s of `server` in the same placement and load kind as `row` (for tokio: with
    /// the row's total thread count; epoll has one row per placement and load kind).
    pub(super) fn reference(&self, row: &BenchRow, server: Server) -> Option<f64> {
        if server == Server::Tokio && row.spec.workers.is_none() {
            return None;
        }
        self.rows
            .iter()
            .find(|r| {
                r.placement == row.placement
                    && r.spec.load == row.spec.load
                    && r.spec.server == server
                    && (server == Server::Epoll
                        || r.spec.total_threads() == row.spec.total_threads())
            })
            .and_then(|r| r.outcome.as_ref().ok())
            .map(|m| m.rps)
            .filter(|&x| x > 0.0)
    }

    /// The cells of each row (see [`HEADERS`]); a row without figures has its message in
    /// the first figure column and nothing after it.
    fn cells(&self) -> Vec<[String; N]> {
        let ratio = |a: f64, b: Option<f64>| b.map_or("-".to_string(), |b| format!("{:.2}", a / b));
        self.rows
            .iter()
            .map(|r| {
                let mut c: [String; N] = Default::default();
                c[0] = r.placement.label().to_string();
                c[1] = r.spec.load.label().to_string();
                c[2] = r.spec.shape();
                c[3] = r.spec.server.label().to_string();
                match &r.outcome {
                    Ok(m) => {
                        let figures = [
                            format!("{:.0}", m.rps),
                            spread(&r.runs_rps, m.rps)
                                .map_or("-".into(), |f| format!("±{:.0}%", f * 100.0)),
                            fmt_us(m.p50),
                            fmt_us(m.p99),
                            fmt_us(m.p999),
                            m.errors.to_string(),
                            m.server_cpu_us.map_or("-".into(), |c| format!("{c:.1}")),
                            m.client_wait
                                .map_or("-".into(), |w| format!("{:.1}%", w * 100.0)),
                            idle_cell(r.idle.as_ref()),
                            ratio(m.rps, self.reference(r, Server::Epoll)),
                            ratio(m.rps, self.reference(r, Server::Tokio)),
                        ];
                        for (cell, f) in c[HEAD..].iter_mut().zip(figures) {
                            *cell = f;
                        }
                    }
                    Err(e) => c[HEAD] = e.clone(),
                }
                c
            })
            .collect()
    }

    /// The side-by-side table as aligned text.
    pub fn table_text(&self) -> String {
        let hdr = HEADERS.map(String::from);
        let cells = self.cells();
        let mut width = [0usize; N];
        for row in std::iter::once(&hdr).chain(&cells) {
            // A skipped/failed row's message does not widen the req/s column.
            let n = if row[HEAD + 1].is_empty() { HEAD } else { N };
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
                    _ if i < HEAD => format!("{c:<w$}"),
                    _ if row[HEAD + 1].is_empty() => c.clone(),
                    _ => format!("{c:>w$}"),
                })
                .collect();
            let _ = writeln!(s, "{}", line.join("  ").trim_end());
        }
        s.push_str(NOTE);
        s.push('\n');
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
        let _ = write!(s, "\n{NOTE}\n\n![latency](latency.svg)\n");
        s
    }

    /// The latency chart: one panel per placement, load kind and server thread count
    /// (P × W); the epoll reference joins every panel of its placement and load kind.
    pub fn svg(&self) -> String {
        svg::latency_chart(
            "echo latency percentiles (log scale)",
            &self.setup,
            &self.panels(),
        )
    }

    /// The chart's panels, in the order their first row ran.
    fn panels(&self) -> Vec<Panel> {
        let mut panels: Vec<(Placement, LoadKind, Option<usize>, Panel)> = Vec::new();
        let mut refs: Vec<&BenchRow> = Vec::new();
        for r in &self.rows {
            if r.outcome.is_err() {
                continue;
            }
            if r.spec.workers.is_none() {
                refs.push(r);
                continue;
            }
            let key = (r.placement, r.spec.load, Some(r.spec.total_threads()));
            panel_of(&mut panels, key).push(series(r));
        }
        for r in refs {
            let mut joined = false;
            for (pl, load, _, p) in &mut panels {
                if *pl == r.placement && *load == r.spec.load {
                    p.series.push(series(r));
                    joined = true;
                }
            }
            if !joined {
                panel_of(&mut panels, (r.placement, r.spec.load, None)).push(series(r));
            }
        }
        panels.into_iter().map(|(.., p)| p).collect()
    }
}

fn panel_of(
    panels: &mut Vec<(Placement, LoadKind, Option<usize>, Panel)>,
    key: (Placement, LoadKind, Option<usize>),
) -> &mut Vec<Series> {
    let idx = panels
        .iter()
        .position(|(pl, l, t, _)| (*pl, *l, *t) == key)
        .unwrap_or_else(|| {
            let (pl, load, threads) = key;
            let title = format!(
                "{}, {}, {} server thread(s)",
                pl.label(),
                load.label(),
                threads.unwrap_or(1)
            );
            panels.push((
                pl,
                load,
                threads,
                Panel {
                    title,
                    series: Vec::new(),
                },
            ));
            panels.len() - 1
        });
    &mut panels[idx].3.series
}

fn series(r: &BenchRow) -> Series {
    let name = match (r.spec.procs, r.spec.workers) {
        (Some(_), _) => format!("{} {}", r.spec.server.label(), r.spec.shape()),
        _ => r.spec.server.label().to_string(),
    };
    Series {
        name,
        points: r
            .outcome
            .as_ref()
            .map(|m| m.curve.clone())
            .unwrap_or_default(),
    }
}

/// Half the range of the runs' req/s over the kept (median) run's: `None` with fewer than
/// two runs or no throughput.
fn spread(runs: &[f64], median: f64) -> Option<f64> {
    let lo = runs.iter().copied().reduce(f64::min)?;
    let hi = runs.iter().copied().reduce(f64::max)?;
    (runs.len() > 1 && median > 0.0).then(|| (hi - lo) / 2.0 / median)
}

/// The idle column: KiB of server RSS per idle connection; `(opened/wanted)` when fewer
/// than asked could be opened; `-` when not measured.
fn idle_cell(idle: Option<&IdleMeasure>) -> String {
    let Some(i) = idle else {
        return "-".into();
    };
    let v = i
        .bytes_per_conn()
        .map_or("err".to_string(), |b| format!("{:.1}", b / 1024.0));
    if i.opened < i.wanted {
        format!("{v} ({}/{})", i.opened, i.wanted)
    } else {
        v
    }
}

const NOTE: &str = "P×W: zmaster server-proc-count × server-thread-count; a peer's thread count (P × W); 1* = the single-threaded epoll reference. Load: echo = persistent connections (ping-pong), connect = connect, one line, close. ±: half the range of the runs' req/s (--repeat) over the median's, this machine's noise: a ratio nearer 1 than its two rows' ± together does not tell them apart. Latency in µs unless marked. client wait: the share of their time the load generator's threads were runnable and waited for a CPU (a latency tail can be that wait, not the server's). idle KiB/conn: server RSS growth (process tree) per idle connection. ÷epoll: req/s over echo-epoll of the same placement and load; ÷tokio: over echo-tokio with the same thread count.";

/// Columns before the figures (placement, load, P×W, server).
const HEAD: usize = 4;
const N: usize = 15;
const HEADERS: [&str; N] = [
    "placement",
    "load",
    "P×W",
    "server",
    "req/s",
    "±",
    "p50",
    "p99",
    "p99.9",
    "errors",
    "srv CPU µs/req",
    "client wait",
    "idle KiB/conn",
    "÷epoll",
    "÷tokio",
];

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::bench::{Measure, RowSpec};

    fn row(
        pl: Placement,
        load: LoadKind,
        procs: Option<usize>,
        workers: Option<usize>,
        server: Server,
        rps: f64,
    ) -> BenchRow {
        let m = Measure {
            rps,
            p50: 100,
            p90: 500,
            p99: 900,
            p999: 20_000,
            max: 30_000,
            errors: 0,
            curve: vec![(0.5, 100), (1.0, 30_000)],
            server_cpu_us: Some(12.5),
            client_wait: Some(0.25),
        };
        BenchRow {
            placement: pl,
            spec: RowSpec {
                load,
                server,
                procs,
                workers,
            },
            outcome: Ok(m),
            idle: None,
            runs_rps: vec![rps],
        }
    }

    pub(crate) fn report() -> BenchReport {
        use LoadKind::{Connect, Echo};
        use Placement::{Cpu0, Free};
        let mut skipped = row(Cpu0, Echo, Some(1), Some(1), Server::ZmasterCoroutine, 0.0);
        skipped.outcome = Err("skipped: not built".into());
        let mut aio = row(Cpu0, Echo, Some(2), Some(1), Server::ZmasterAio, 50.0);
        aio.runs_rps = vec![55.0, 50.0, 45.0];
        aio.idle = Some(IdleMeasure {
            wanted: 10,
            opened: 10,
            rss_before: 1 << 20,
            rss_after: (1 << 20) + 10 * 4608,
            error: None,
        });
        let mut short = row(Cpu0, Echo, Some(1), Some(2), Server::ZmasterAio, 60.0);
        short.idle = Some(IdleMeasure {
            wanted: 10,
            opened: 4,
            rss_before: 1 << 20,
            rss_after: (1 << 20) + 4 * 2048,
            error: Some("connection 5: refused".into()),
        });
        BenchReport {
            rows: vec![
                aio,
                short,
                skipped,
                row(Cpu0, Echo, None, Some(2), Server::Tokio, 40.0),
                row(Cpu0, Echo, None, None, Server::Epoll, 100.0),
                row(Cpu0, Connect, Some(2), Some(1), Server::ZmasterAio, 9.0),
                row(Cpu0, Connect, None, None, Server::Epoll, 10.0),
                row(Free, Echo, Some(1), Some(1), Server::ZmasterAio, 30.0),
                row(Free, Echo, None, Some(1), Server::Tokio, 20.0),
                row(Free, Connect, Some(1), Some(1), Server::ZmasterAio, 5.0),
                // A reference without throughput gives no ratio (not inf).
                row(Free, Connect, None, None, Server::Epoll, 0.0),
            ],
            setup: "test setup".into(),
        }
    }

    #[test]
    fn ratios_shapes_idle_and_skips() {
        let r = report();
        let md = r.markdown();
        for needle in [
            "| placement | load | P×W | server | req/s | ± | p50 | p99 | p99.9 | errors | srv CPU µs/req | client wait | idle KiB/conn | ÷epoll | ÷tokio |",
            // tokio with 2 threads is the ÷tokio reference of both 2×1 and 1×2.
            "| cpu0 | echo | 2×1 | zmaster+echo-aio | 50 | ±10% | 100 | 900 | 20.0ms | 0 | 12.5 | 25.0% | 4.5 | 0.50 | 1.25 |",
            "| cpu0 | echo | 1×2 | zmaster+echo-aio | 60 | - | 100 | 900 | 20.0ms | 0 | 12.5 | 25.0% | 2.0 (4/10) | 0.60 | 1.50 |",
            "| cpu0 | echo | 2 | echo-tokio | 40 | - | 100 | 900 | 20.0ms | 0 | 12.5 | 25.0% | - | 0.40 | 1.00 |",
            "| cpu0 | echo | 1* | echo-epoll | 100 | - | 100 | 900 | 20.0ms | 0 | 12.5 | 25.0% | - | 1.00 | - |",
            // connect rows compare with the connect reference, and there is no tokio there.
            "| cpu0 | connect | 2×1 | zmaster+echo-aio | 9 | - | 100 | 900 | 20.0ms | 0 | 12.5 | 25.0% | - | 0.90 | - |",
            // no epoll row in the unpinned placement; tokio at 1 thread there.
            "| unpinned | echo | 1×1 | zmaster+echo-aio | 30 | - | 100 | 900 | 20.0ms | 0 | 12.5 | 25.0% | - | - | 1.50 |",
            "| unpinned | connect | 1×1 | zmaster+echo-aio | 5 | - | 100 | 900 | 20.0ms | 0 | 12.5 | 25.0% | - | - | - |",
            "skipped: not built",
        ] {
            assert!(md.contains(needle), "{needle}\nmissing in\n{md}");
        }
        let text = r.table_text();
        assert!(
            text.lines()
                .any(|l| l.contains("zmaster+echo-coroutine") && l.ends_with("skipped: not built")),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l.starts_with("placement  load")),
            "{text}"
        );
        let panels: Vec<(String, Vec<String>)> = r
            .panels()
            .into_iter()
            .map(|p| (p.title, p.series.into_iter().map(|s| s.name).collect()))
            .collect();
        let want = [
            (
                "cpu0, echo, 2 server thread(s)",
                &[
                    "zmaster+echo-aio 2×1",
                    "zmaster+echo-aio 1×2",
                    "echo-tokio",
                    "echo-epoll",
                ][..],
            ),
            (
                "cpu0, connect, 2 server thread(s)",
                &["zmaster+echo-aio 2×1", "echo-epoll"],
            ),
            (
                "unpinned, echo, 1 server thread(s)",
                &["zmaster+echo-aio 1×1", "echo-tokio"],
            ),
            // A reference row without throughput still has its latency curve.
            (
                "unpinned, connect, 1 server thread(s)",
                &["zmaster+echo-aio 1×1", "echo-epoll"],
            ),
        ];
        let want: Vec<(String, Vec<String>)> = want
            .iter()
            .map(|(t, s)| (t.to_string(), s.iter().map(|n| n.to_string()).collect()))
            .collect();
        assert_eq!(panels, want);
        let svg = r.svg();
        assert_eq!(svg.matches("<polyline").count(), 10, "{svg}");
    }

    #[test]
    fn spread_is_half_the_range_over_the_median() {
        assert_eq!(spread(&[110.0, 90.0, 100.0], 100.0), Some(0.1));
        assert_eq!(spread(&[100.0, 100.0], 100.0), Some(0.0));
        assert_eq!(
            spread(&[80.0, 100.0], 80.0),
            Some(0.125),
            "over the kept run"
        );
        assert_eq!(spread(&[100.0], 100.0), None, "one run: no spread");
        assert_eq!(spread(&[], 100.0), None);
        assert_eq!(spread(&[0.0, 0.0], 0.0), None, "no throughput");
    }

    #[test]
    fn text_table_alignment() {
        let text = report().table_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "test setup");
        // Head columns left-aligned, figures right-aligned, two spaces apart; the skipped
        // row's message does not widen the req/s column.
        let want = [
            "placement  load     P×W  server                  req/s     ±  p50  p99   p99.9  errors  srv CPU µs/req  client wait  idle KiB/conn  ÷epoll  ÷tokio",
            "cpu0       echo     2×1  zmaster+echo-aio           50  ±10%  100  900  20.0ms       0            12.5        25.0%            4.5    0.50    1.25",
            "cpu0       echo     1×2  zmaster+echo-aio           60     -  100  900  20.0ms       0            12.5        25.0%     2.0 (4/10)    0.60    1.50",
            "cpu0       echo     1×1  zmaster+echo-coroutine  skipped: not built",
        ];
        assert_eq!(lines[1..5], want, "{text}");
        assert!(
            lines[5].starts_with("cpu0       echo     2    echo-tokio    "),
            "{text}"
        );
        assert!(
            lines.last().is_some_and(|l| l.starts_with("P×W: ")),
            "{text}"
        );
    }

    #[test]
    fn short_message_stays_left_aligned() {
        let mut failed = row(
            Placement::Cpu0,
            LoadKind::Echo,
            None,
            None,
            Server::Epoll,
            0.0,
        );
        failed.outcome = Err("no run".into());
        let ok = row(
            Placement::Cpu0,
            LoadKind::Echo,
            None,
            Some(1),
            Server::Tokio,
            1234567.0,
        );
        let r = BenchReport {
            rows: vec![ok, failed],
            setup: "s".into(),
        };
        let text = r.table_text();
        assert!(
            text.lines()
                .any(|l| l == "cpu0       echo  1*   echo-epoll  no run"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("cpu0       echo  1    echo-tokio  1234567  ")),
            "{text}"
        );
    }

    #[test]
    fn epoll_alone_gets_its_own_panel() {
        let r = BenchReport {
            rows: vec![row(
                Placement::Free,
                LoadKind::Connect,
                None,
                None,
                Server::Epoll,
                10.0,
            )],
            setup: "s".into(),
        };
        let svg = r.svg();
        assert_eq!(svg.matches("<polyline").count(), 1, "{svg}");
        assert!(
            svg.contains("unpinned, connect, 1 server thread(s)"),
            "{svg}"
        );
    }
}
