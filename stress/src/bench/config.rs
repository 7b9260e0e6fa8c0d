//! The parameters of `zstress bench` ([`BenchConfig`]), their checks, and the rows they plan.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use nix::sched::CpuSet;

use super::rows::{LoadKind, RowSpec, Server};
use crate::load::{LoadConfig, MAX_CONNS};
use crate::procs;
use crate::target::{Limit, Target};
use crate::{Error, Result};

/// Whether `zstress bench` adds connection-rate rows (`--connect-per-request[=only]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectRows {
    /// Ping-pong rows only (the default).
    Off,
    /// Ping-pong rows and connect-per-request rows (`--connect-per-request`).
    Also,
    /// Connect-per-request rows only (`--connect-per-request=only`).
    Only,
}

/// The parameters of `zstress bench`.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Measured time per server (`--duration`, default 5 s).
    pub duration: Duration,
    /// Unmeasured warm-up per server (`--warmup`, default 1 s).
    pub warmup: Duration,
    /// Client connections of the ping-pong rows (`--conns`, default 32).
    pub conns: usize,
    /// Client connections of the connect-per-request rows (`--connect-conns`, default 10).
    pub connect_conns: usize,
    /// Client threads (`--client-threads`, default 1).
    pub client_threads: usize,
    /// Request payload bytes (`--size`, default 64; `16k` style accepted).
    pub size: usize,
    /// Where `zmaster`, `echo-aio`, `echo-coroutine` and the baselines are (`--bin-dir`,
    /// default `target/release`, relative to the current directory).
    pub bin_dir: PathBuf,
    /// Where `bench.md`, `bench.json`, `latency.svg`, server logs and config dirs go
    /// (`--out`, default `target/zstress-bench`).
    pub out_dir: PathBuf,
    /// zmaster process counts P (`--procs`, default `1`): `server-proc-count`.
    pub procs: Vec<usize>,
    /// Worker counts W (`--workers`, default `1,2`): zmaster's `server-thread-count`; the
    /// peers run with P × W threads.
    pub workers: Vec<usize>,
    /// Connect-per-request rows (`--connect-per-request[=only]`).
    pub connect: ConnectRows,
    /// Idle connections opened to every server to measure its RSS per connection
    /// (`--idle N`, default 0 = not measured).
    pub idle: usize,
    /// Only these servers (`--only aio,coroutine,tokio,may,epoll`).
    pub only: Option<Vec<String>>,
    /// Runs per row; the run with the median throughput is kept (`--repeat`, default 1).
    pub repeat: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            conns: 32,
            connect_conns: 10,
            client_threads: 1,
            size: 64,
            bin_dir: PathBuf::from("target/release"),
            out_dir: PathBuf::from("target/zstress-bench"),
            procs: vec![1],
            workers: vec![1, 2],
            connect: ConnectRows::Off,
            idle: 0,
            only: None,
            repeat: 1,
        }
    }
}

/// Most zmaster processes or workers per row.
const MAX_COUNT: usize = 256;

impl BenchConfig {
    /// Check the ranges and `--only` names.
    ///
    /// # Errors
    /// A usage error naming the bad option.
    pub fn validate(&self) -> Result<()> {
        if self.repeat == 0 || self.repeat > 100 {
            return Err(Error::usage("--repeat must be 1..=100"));
        }
        if self.duration.is_zero() {
            return Err(Error::usage("--duration must be > 0"));
        }
        let bad_counts = |v: &[usize]| v.is_empty() || v.iter().any(|&n| n == 0 || n > MAX_COUNT);
        if bad_counts(&self.workers) {
            return Err(Error::usage("--workers must list counts in 1..=256"));
        }
        if bad_counts(&self.procs) {
            return Err(Error::usage("--procs must list counts in 1..=256"));
        }
        if self.idle > MAX_CONNS {
            return Err(Error::usage(format!("--idle must be 0..={MAX_CONNS}")));
        }
        if let Some(only) = &self.only
            && let Some(bad) = only
                .iter()
                .find(|n| !Server::ALL.iter().any(|s| s.short() == n.as_str()))
        {
            return Err(Error::usage(format!(
                "--only: unknown server {bad:?} (aio, coroutine, tokio, may, epoll)"
            )));
        }
        let probe = Target::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)));
        for load in self.loads() {
            self.load_config(probe.clone(), load)
                .validate()
                .map_err(|e| match load {
                    LoadKind::Echo => e,
                    LoadKind::Connect => Error::usage(format!("connect rows: {e}")),
                })?;
        }
        Ok(())
    }

    /// The load kinds this bench runs, in table order.
    pub fn loads(&self) -> Vec<LoadKind> {
        match self.connect {
            ConnectRows::Off => vec![LoadKind::Echo],
            ConnectRows::Also => vec![LoadKind::Echo, LoadKind::Connect],
            ConnectRows::Only => vec![LoadKind::Connect],
        }
    }

    pub(super) fn load_config(&self, target: Target, load: LoadKind) -> LoadConfig {
        let mut c = LoadConfig::new(target);
        c.conns = match load {
            LoadKind::Echo => self.conns,
            LoadKind::Connect => self.connect_conns,
        };
        c.connect_per_request = load == LoadKind::Connect;
        c.limit = Limit::Duration(self.duration);
        c.warmup = self.warmup;
        c.size = self.size;
        c.threads = self.client_threads;
        c.keep_failures = 100;
        c
    }

    fn wants(&self, s: Server) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|n| n == s.short()))
    }

    /// The rows of one placement, in table order: per load kind, each zmaster mode at every
    /// P × W, each multi-threaded peer once per distinct thread count P × W, and the
    /// single-threaded epoll reference once.
    pub fn plan(&self) -> Vec<RowSpec> {
        let mut totals: Vec<usize> = self
            .procs
            .iter()
            .flat_map(|&p| self.workers.iter().map(move |&w| p * w))
            .collect();
        totals.sort_unstable();
        totals.dedup();
        let mut rows = Vec::new();
        for load in self.loads() {
            for server in Server::ALL.into_iter().filter(|s| self.wants(*s)) {
                let spec = |procs, workers| RowSpec {
                    load,
                    server,
                    procs,
                    workers,
                };
                match server {
                    Server::ZmasterAio | Server::ZmasterCoroutine => {
                        for &p in &self.procs {
                            rows.extend(self.workers.iter().map(|&w| spec(Some(p), Some(w))));
                        }
                    }
                    Server::Tokio | Server::May => {
                        rows.extend(totals.iter().map(|&t| spec(None, Some(t))));
                    }
                    Server::Epoll => rows.push(spec(None, None)),
                }
            }
        }
        rows
    }

    /// A one-line description of the machine and the load.
    pub(super) fn setup_line(&self) -> String {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let ncpu = procs::affinity().map_or(0, |s| {
            (0..CpuSet::count())
                .filter(|&i| s.is_set(i).unwrap_or(false))
                .count()
        });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load = load.split_whitespace().next().unwrap_or("?").to_string();
        let repeat = if self.repeat > 1 {
            format!(", median of {}", self.repeat)
        } else {
            String::new()
        };
        let connect = if self.connect == ConnectRows::Off {
            String::new()
        } else {
            format!(", {} conns in connect rows", self.connect_conns)
        };
        let idle = if self.idle > 0 {
            format!(", {} idle conns per server", self.idle)
        } else {
            String::new()
        };
        format!(
            "{ncpu} CPU ({cpu}), Linux {}, load avg {load} at start; {} conns{connect}, {} client thread(s), {} B lines, {:?} warm-up + {:?} measured per server{repeat}{idle}",
            kernel.trim(),
            self.conns,
            self.client_threads,
            self.size,
            self.warmup,
            self.duration
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(cfg: &BenchConfig, load: LoadKind, server: Server) -> Vec<String> {
        cfg.plan()
            .iter()
            .filter(|r| r.load == load && r.server == server)
            .map(RowSpec::shape)
            .collect()
    }

    #[test]
    fn plan_crosses_procs_and_workers_and_dedups_peer_threads() {
        let cfg = BenchConfig {
            procs: vec![1, 2],
            workers: vec![1, 2],
            connect: ConnectRows::Also,
            ..BenchConfig::default()
        };
        let plan = cfg.plan();
        assert_eq!(plan.len(), 2 * (4 + 4 + 3 + 3 + 1), "{plan:?}");
        for load in [LoadKind::Echo, LoadKind::Connect] {
            for s in [Server::ZmasterAio, Server::ZmasterCoroutine] {
                assert_eq!(shapes(&cfg, load, s), ["1×1", "1×2", "2×1", "2×2"]);
            }
            for s in [Server::Tokio, Server::May] {
                assert_eq!(shapes(&cfg, load, s), ["1", "2", "4"]);
            }
            assert_eq!(shapes(&cfg, load, Server::Epoll), ["1*"]);
        }
        // Echo rows first, then connect rows; servers in table order within each.
        assert!(plan[..15].iter().all(|r| r.load == LoadKind::Echo));
        assert_eq!(plan[15].server, Server::ZmasterAio);
        assert_eq!(plan[14].server, Server::Epoll);
        let total: Vec<usize> = plan[..4].iter().map(RowSpec::total_threads).collect();
        assert_eq!(total, [1, 2, 2, 4]);
    }

    #[test]
    fn plan_defaults_only_and_connect_only() {
        let d = BenchConfig::default();
        assert_eq!(d.loads(), [LoadKind::Echo]);
        assert_eq!(
            shapes(&d, LoadKind::Echo, Server::ZmasterAio),
            ["1×1", "1×2"]
        );
        assert_eq!(d.plan().len(), 2 + 2 + 2 + 2 + 1);
        let c = BenchConfig {
            connect: ConnectRows::Only,
            only: Some(vec!["epoll".into(), "tokio".into()]),
            workers: vec![3],
            ..BenchConfig::default()
        };
        let plan = c.plan();
        assert_eq!(plan.len(), 2, "{plan:?}");
        assert!(plan.iter().all(|r| r.load == LoadKind::Connect));
        assert_eq!(shapes(&c, LoadKind::Connect, Server::Tokio), ["3"]);
        let lc = c.load_config(Target::Unix("x".into()), LoadKind::Connect);
        assert!(lc.connect_per_request);
        assert_eq!(lc.conns, 10);
        let le = c.load_config(Target::Unix("x".into()), LoadKind::Echo);
        assert!(!le.connect_per_request);
        assert_eq!((le.conns, le.size, le.threads), (32, 64, 1));
    }

    #[test]
    fn setup_line_names_the_options_in_use() {
        let d = BenchConfig::default().setup_line();
        assert!(
            d.contains(
                "; 32 conns, 1 client thread(s), 64 B lines, 1s warm-up + 5s measured per server"
            ),
            "{d}"
        );
        assert!(d.ends_with("measured per server"), "{d}");
        assert!(d.contains(" CPU (") && d.contains(", Linux "), "{d}");
        let c = BenchConfig {
            repeat: 3,
            idle: 50,
            connect: ConnectRows::Only,
            connect_conns: 7,
            ..BenchConfig::default()
        }
        .setup_line();
        assert!(
            c.contains("; 32 conns, 7 conns in connect rows, 1 client thread(s),"),
            "{c}"
        );
        assert!(
            c.ends_with("per server, median of 3, 50 idle conns per server"),
            "{c}"
        );
        let one = BenchConfig {
            idle: 1,
            connect: ConnectRows::Also,
            ..BenchConfig::default()
        }
        .setup_line();
        assert!(
            one.ends_with("per server, 1 idle conns per server"),
            "{one}"
        );
        assert!(one.contains("10 conns in connect rows"), "{one}");
    }

    #[test]
    fn validate_ranges() {
        let ok = BenchConfig::default();
        assert!(ok.validate().is_ok());
        let bad = [
            BenchConfig {
                procs: vec![],
                ..ok.clone()
            },
            BenchConfig {
                procs: vec![1, 0],
                ..ok.clone()
            },
            BenchConfig {
                procs: vec![257],
                ..ok.clone()
            },
            BenchConfig {
                workers: vec![257],
                ..ok.clone()
            },
            BenchConfig {
                idle: MAX_CONNS + 1,
                ..ok.clone()
            },
            BenchConfig {
                repeat: 0,
                ..ok.clone()
            },
            BenchConfig {
                repeat: 101,
                ..ok.clone()
            },
            BenchConfig {
                size: 0,
                ..ok.clone()
            },
            BenchConfig {
                duration: Duration::ZERO,
                ..ok.clone()
            },
            BenchConfig {
                only: Some(vec!["nginx".into()]),
                ..ok.clone()
            },
            BenchConfig {
                connect: ConnectRows::Also,
                connect_conns: 0,
                ..ok.clone()
            },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?} should be refused");
        }
        for good in [
            BenchConfig {
                procs: vec![256],
                workers: vec![256],
                ..ok.clone()
            },
            BenchConfig {
                idle: MAX_CONNS,
                repeat: 100,
                ..ok.clone()
            },
            // The connect rows' connection count only matters when they run.
            BenchConfig {
                connect_conns: 0,
                ..ok.clone()
            },
        ] {
            assert!(good.validate().is_ok(), "{good:?} should be accepted");
        }
        let e = BenchConfig {
            connect: ConnectRows::Only,
            connect_conns: 0,
            ..ok
        };
        assert!(
            e.validate()
                .is_err_and(|e| e.to_string().starts_with("connect rows: "))
        );
    }
}
