//! `zstress bench`: zmaster's echo examples and the baseline peers, one after another on the
//! same placement, compared side by side (text table, `bench.md`, `bench.json`, `latency.svg`).
//!
//! For every placement (server and client on CPU 0; no pinning) and every planned row
//! ([`BenchConfig::plan`]: load kind × server × processes P × workers W), the server is
//! started on a fresh 127.0.0.1 port, probed (connect + one echo) until it answers, loaded
//! for `--warmup` + `--duration`, optionally measured with `--idle N` idle connections, then
//! stopped by pid (SIGTERM, wait, SIGKILL after 5 s). Pinning sets this thread's affinity
//! before the server is spawned and before the client threads start, so both inherit it.
//! `echo-epoll` is single-threaded: it runs once per placement and load kind and is the
//! reference ("÷epoll") of every row of that placement and load kind — for the
//! connect-per-request rows it is the single-threaded accept-and-serve reference.

mod config;
mod idle;
mod json;
mod launch;
mod rows;
mod table;

use std::path::Path;

pub use config::{BenchConfig, ConnectRows};
pub use idle::{IdleMeasure, measure as measure_idle};
pub use launch::{free_port, wait_ready};
pub use rows::{LoadKind, Measure, Placement, RowSpec, Server};

use crate::procs;
use crate::{Error, Result};

/// One row of the bench table.
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// The placement.
    pub placement: Placement,
    /// What ran.
    pub spec: RowSpec,
    /// The figures, or why there are none (`skipped: not built`, a start failure).
    pub outcome: std::result::Result<Measure, String>,
    /// The `--idle N` measurement (first run of the row only; `None` without `--idle`).
    pub idle: Option<IdleMeasure>,
    /// The req/s of every run of the row (`--repeat`), in run order: their spread is how far
    /// this machine's noise moves a figure.
    pub runs_rps: Vec<f64>,
}

/// All rows of a bench run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The rows in run order.
    pub rows: Vec<BenchRow>,
    /// A one-line description of the machine and the load.
    pub setup: String,
}

/// Run the bench; writes `bench.md`, `bench.json` and `latency.svg` into `out_dir`.
///
/// # Errors
/// The output directory or affinity cannot be set up. A server that fails to start is a
/// row with an error, not an error of the bench.
pub fn run(cfg: &BenchConfig) -> Result<BenchReport> {
    cfg.validate()?;
    let bin_dir = std::path::absolute(&cfg.bin_dir)
        .map_err(|e| Error::io(format!("resolve {}", cfg.bin_dir.display()), e))?;
    let out = &cfg.out_dir;
    for d in [out.clone(), out.join("logs"), out.join("run")] {
        std::fs::create_dir_all(&d).map_err(|e| Error::io(format!("create {}", d.display()), e))?;
    }
    let setup = cfg.setup_line();
    let orig = procs::affinity().map_err(|e| Error::io("sched_getaffinity", e))?;
    let plan = cfg.plan();
    // The idle measurement runs on the first load kind's rows (ping-pong if there is one).
    let idle_load = cfg.loads().first().copied();
    let mut rows = Vec::new();
    for placement in [Placement::Cpu0, Placement::Free] {
        let set = match placement {
            Placement::Cpu0 => procs::single_cpu(0).map_err(|e| Error::io("cpu set", e))?,
            Placement::Free => orig,
        };
        procs::set_affinity(&set)
            .map_err(|e| Error::io(format!("sched_setaffinity ({})", placement.label()), e))?;
        // Repetitions go round the whole list (A B C A B C …) so that a burst of outside
        // load hits every server rather than all runs of one.
        let mut runs: Vec<Vec<Measure>> = vec![Vec::new(); plan.len()];
        let mut idles: Vec<Option<IdleMeasure>> = vec![None; plan.len()];
        let mut errors: Vec<Option<String>> = vec![None; plan.len()];
        for rep in 0..cfg.repeat.max(1) {
            for (i, spec) in plan.iter().enumerate() {
                if errors[i].is_some() {
                    continue;
                }
                eprintln!(
                    "bench: {} {} P×W={} {} (run {}/{}) ...",
                    placement.label(),
                    spec.load.label(),
                    spec.shape(),
                    spec.server.label(),
                    rep + 1,
                    cfg.repeat.max(1)
                );
                let idle = if rep == 0 && Some(spec.load) == idle_load {
                    cfg.idle
                } else {
                    0
                };
                match launch::run_one(cfg, &bin_dir, placement, spec, idle) {
                    Ok((m, im)) => {
                        runs[i].push(m);
                        if let Some(im) = im {
                            if let Some(e) = &im.error {
                                eprintln!(
                                    "bench:   idle: {e} ({} of {} open)",
                                    im.opened, im.wanted
                                );
                            }
                            idles[i] = Some(im);
                        }
                    }
                    Err(e) => {
                        eprintln!("bench:   {e}");
                        errors[i] = Some(e);
                    }
                }
            }
        }
        for (i, spec) in plan.iter().enumerate() {
            let runs_rps = runs[i].iter().map(|m| m.rps).collect();
            let outcome = match errors[i].take() {
                Some(e) => Err(e),
                None => median(std::mem::take(&mut runs[i])).ok_or_else(|| "no run".to_string()),
            };
            rows.push(BenchRow {
                placement,
                spec: *spec,
                outcome,
                idle: idles[i].take(),
                runs_rps,
            });
        }
    }
    procs::set_affinity(&orig).map_err(|e| Error::io("restore affinity", e))?;
    let report = BenchReport { rows, setup };
    write_file(&out.join("bench.md"), &report.markdown())?;
    write_file(&out.join("bench.json"), &format!("{}\n", report.to_json()))?;
    write_file(&out.join("latency.svg"), &report.svg())?;
    Ok(report)
}

fn write_file(p: &Path, text: &str) -> Result<()> {
    std::fs::write(p, text).map_err(|e| Error::io(format!("write {}", p.display()), e))
}

/// The run with the median throughput.
fn median(mut runs: Vec<Measure>) -> Option<Measure> {
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mid = runs.len() / 2;
    (mid < runs.len()).then(|| runs.swap_remove(mid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rps: f64) -> Measure {
        Measure {
            rps,
            p50: 0,
            p90: 0,
            p99: 0,
            p999: 0,
            max: 0,
            errors: 0,
            curve: Vec::new(),
            server_cpu_us: None,
            client_wait: None,
        }
    }

    #[test]
    fn median_run_by_throughput() {
        let pick = |v: &[f64]| median(v.iter().map(|&r| m(r)).collect()).map(|x| x.rps);
        assert_eq!(pick(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(pick(&[5.0, 9.0, 1.0, 7.0, 3.0]), Some(5.0));
        assert_eq!(
            pick(&[2.0, 1.0]),
            Some(2.0),
            "the upper middle of an even count"
        );
        assert_eq!(pick(&[4.0]), Some(4.0));
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn shapes_and_labels() {
        let spec = |procs, workers| RowSpec {
            load: LoadKind::Connect,
            server: Server::ZmasterAio,
            procs,
            workers,
        };
        assert_eq!(spec(Some(2), Some(3)).shape(), "2×3");
        assert_eq!(spec(Some(2), Some(3)).total_threads(), 6);
        assert_eq!(spec(None, Some(4)).shape(), "4");
        assert_eq!(spec(None, Some(4)).total_threads(), 4);
        assert_eq!(spec(None, None).shape(), "1*");
        assert_eq!(spec(None, None).total_threads(), 1);
        assert_eq!(spec(Some(3), None).total_threads(), 3);
        assert_eq!(spec(Some(3), None).shape(), "3×1");
        assert_eq!(
            (LoadKind::Echo.label(), LoadKind::Connect.label()),
            ("echo", "connect")
        );
    }
}
