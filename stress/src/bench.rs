//! `zstress bench`: zmaster's echo examples and the baseline peers, one after another on the
//! same placement, compared side by side (text table, `bench.md`, `latency.svg`).
//!
//! For every placement (server and client on CPU 0; no pinning) and worker count W, each
//! server is started on a fresh 127.0.0.1 port, probed (connect + one echo) until it
//! answers, loaded for `--warmup` + `--duration`, then stopped by pid (SIGTERM, wait, SIGKILL
//! after 5 s). Pinning sets this thread's affinity before the server is spawned and before
//! the client threads start, so both inherit it. `echo-epoll` is single-threaded, so it runs
//! once per placement and is the reference ("÷epoll") for every W of that placement.

use std::fs::File;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::CpuSet;

use crate::args::{Limit, Target};
use crate::load::{self, LoadConfig};
use crate::procs::{self, ChildGuard};
use crate::report::LoadReport;
use crate::svg::QUANTILES;
use crate::{Error, Result};

/// The parameters of `zstress bench`.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Measured time per server (`--duration`, default 5 s).
    pub duration: Duration,
    /// Unmeasured warm-up per server (`--warmup`, default 1 s).
    pub warmup: Duration,
    /// Client connections (`--conns`, default 32).
    pub conns: usize,
    /// Client threads (`--client-threads`, default 1).
    pub client_threads: usize,
    /// Request payload bytes (`--size`, default 64).
    pub size: usize,
    /// Where `zmaster`, `echo-aio`, `echo-coroutine` and the baselines are (`--bin-dir`,
    /// default `target/release`, relative to the current directory).
    pub bin_dir: PathBuf,
    /// Where `bench.md`, `latency.svg`, server logs and config dirs go (`--out`, default `target/zstress-bench`).
    pub out_dir: PathBuf,
    /// Worker counts W to run (`--workers`, default `1,2`).
    pub workers: Vec<usize>,
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
            client_threads: 1,
            size: 64,
            bin_dir: PathBuf::from("target/release"),
            out_dir: PathBuf::from("target/zstress-bench"),
            workers: vec![1, 2],
            only: None,
            repeat: 1,
        }
    }
}

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
        if self.workers.is_empty() || self.workers.iter().any(|&w| w == 0 || w > 256) {
            return Err(Error::usage("--workers must list counts in 1..=256"));
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
        self.load_config(Target::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 1))))
            .validate()
    }

    fn load_config(&self, target: Target) -> LoadConfig {
        let mut c = LoadConfig::new(target);
        c.conns = self.conns;
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
}

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// `zmaster` running `echo-aio`.
    ZmasterAio,
    /// `zmaster` running `echo-coroutine`.
    ZmasterCoroutine,
    /// The tokio baseline.
    Tokio,
    /// The `may` baseline.
    May,
    /// The single-threaded epoll baseline (the reference).
    Epoll,
}

impl Server {
    /// Every server, in table order.
    pub const ALL: [Server; 5] = [
        Server::ZmasterAio,
        Server::ZmasterCoroutine,
        Server::Tokio,
        Server::May,
        Server::Epoll,
    ];

    /// The table label.
    pub fn label(self) -> &'static str {
        match self {
            Server::ZmasterAio => "zmaster+echo-aio",
            Server::ZmasterCoroutine => "zmaster+echo-coroutine",
            Server::Tokio => "echo-tokio",
            Server::May => "echo-may",
            Server::Epoll => "echo-epoll",
        }
    }

    /// The `--only` name.
    pub fn short(self) -> &'static str {
        match self {
            Server::ZmasterAio => "aio",
            Server::ZmasterCoroutine => "coroutine",
            Server::Tokio => "tokio",
            Server::May => "may",
            Server::Epoll => "epoll",
        }
    }

    fn binaries(self) -> &'static [&'static str] {
        match self {
            Server::ZmasterAio => &["zmaster", "echo-aio"],
            Server::ZmasterCoroutine => &["zmaster", "echo-coroutine"],
            Server::Tokio => &["echo-tokio"],
            Server::May => &["echo-may"],
            Server::Epoll => &["echo-epoll"],
        }
    }
}

/// Where server and client run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Server and client threads all pinned to CPU 0.
    Cpu0,
    /// No pinning (the affinity `zstress` started with).
    Free,
}

impl Placement {
    /// The table label.
    pub fn label(self) -> &'static str {
        match self {
            Placement::Cpu0 => "cpu0",
            Placement::Free => "unpinned",
        }
    }
}

/// The figures of one measured run.
#[derive(Debug, Clone)]
pub struct Measure {
    /// Successful requests per second.
    pub rps: f64,
    /// Latency percentiles in µs: p50, p99, p99.9.
    pub p50: u64,
    /// p99 in µs.
    pub p99: u64,
    /// p99.9 in µs.
    pub p999: u64,
    /// Failed requests.
    pub errors: u64,
    /// The chart points.
    pub curve: Vec<(f64, u64)>,
    /// Server CPU time (all its processes) per successful request, in µs: a cost figure
    /// that other load on the machine disturbs much less than req/s.
    pub server_cpu_us: Option<f64>,
}

/// One row of the bench table.
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// The placement.
    pub placement: Placement,
    /// Worker threads W (`None` for the single-threaded epoll reference).
    pub workers: Option<usize>,
    /// The server.
    pub server: Server,
    /// The figures, or why there are none (`skipped: not built`, a start failure).
    pub outcome: std::result::Result<Measure, String>,
}

/// All rows of a bench run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The rows in run order.
    pub rows: Vec<BenchRow>,
    /// A one-line description of the machine and the load.
    pub setup: String,
}

/// Run the bench; writes `bench.md` and `latency.svg` into `out_dir`.
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
    let orig = procs::affinity().map_err(|e| Error::io("sched_getaffinity", e))?;
    let mut rows = Vec::new();
    for placement in [Placement::Cpu0, Placement::Free] {
        let set = match placement {
            Placement::Cpu0 => procs::single_cpu(0).map_err(|e| Error::io("cpu set", e))?,
            Placement::Free => orig,
        };
        procs::set_affinity(&set)
            .map_err(|e| Error::io(format!("sched_setaffinity ({})", placement.label()), e))?;
        let mut plan: Vec<(Server, Option<usize>)> = Vec::new();
        for server in Server::ALL.into_iter().filter(|s| cfg.wants(*s)) {
            if server == Server::Epoll {
                plan.push((server, None));
            } else {
                plan.extend(cfg.workers.iter().map(|&w| (server, Some(w))));
            }
        }
        // Repetitions go round the whole list (A B C A B C …) so that a burst of outside
        // load hits every server rather than all runs of one.
        let mut runs: Vec<Vec<Measure>> = vec![Vec::new(); plan.len()];
        let mut errors: Vec<Option<String>> = vec![None; plan.len()];
        for rep in 0..cfg.repeat.max(1) {
            for (i, &(server, workers)) in plan.iter().enumerate() {
                if errors[i].is_some() {
                    continue;
                }
                eprintln!(
                    "bench: {} W={} {} (run {}/{}) ...",
                    placement.label(),
                    workers.map_or("-".into(), |w| w.to_string()),
                    server.label(),
                    rep + 1,
                    cfg.repeat.max(1)
                );
                match run_one(cfg, &bin_dir, placement, server, workers) {
                    Ok(m) => runs[i].push(m),
                    Err(e) => {
                        eprintln!("bench:   {e}");
                        errors[i] = Some(e);
                    }
                }
            }
        }
        for (i, (server, workers)) in plan.into_iter().enumerate() {
            let outcome = match errors[i].take() {
                Some(e) => Err(e),
                None => median(std::mem::take(&mut runs[i])).ok_or_else(|| "no run".to_string()),
            };
            rows.push(BenchRow {
                placement,
                workers,
                server,
                outcome,
            });
        }
    }
    procs::set_affinity(&orig).map_err(|e| Error::io("restore affinity", e))?;
    let report = BenchReport {
        rows,
        setup: setup_line(cfg),
    };
    write_file(&out.join("bench.md"), &report.markdown())?;
    write_file(&out.join("latency.svg"), &report.svg())?;
    Ok(report)
}

fn write_file(p: &Path, text: &str) -> Result<()> {
    std::fs::write(p, text).map_err(|e| Error::io(format!("write {}", p.display()), e))
}

/// A port that was free a moment ago on 127.0.0.1.
///
/// # Errors
/// Binding 127.0.0.1:0 failed.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::io("bind 127.0.0.1:0", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("local_addr", e))
}

/// The run with the median throughput.
fn median(mut runs: Vec<Measure>) -> Option<Measure> {
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mid = runs.len() / 2;
    (mid < runs.len()).then(|| runs.swap_remove(mid))
}

fn run_one(
    cfg: &BenchConfig,
    bin: &Path,
    pl: Placement,
    server: Server,
    w: Option<usize>,
) -> std::result::Result<Measure, String> {
    if let Some(missing) = server.binaries().iter().find(|b| !bin.join(b).is_file()) {
        return Err(format!(
            "skipped: not built ({} missing)",
            bin.join(missing).display()
        ));
    }
    let port = free_port().map_err(|e| e.to_string())?;
    let addr = format!("127.0.0.1:{port}");
    let tag = format!("{}-w{}-{}", pl.label(), w.unwrap_or(1), server.short());
    let threads = w.unwrap_or(1).to_string();
    let mut cmd = match server {
        Server::ZmasterAio | Server::ZmasterCoroutine => {
            let dir = cfg.out_dir.join("run").join(&tag);
            std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            let cf = format!(
                "# written by zstress bench\nserver-command = {}\nserver-service = {addr}\nserver-proc-count = 1\nserver-thread-count = {threads}\n",
                bin.join(server.binaries()[1]).display()
            );
            std::fs::write(dir.join("echo.cf"), cf)
                .map_err(|e| format!("write {}/echo.cf: {e}", dir.display()))?;
            let mut c = Command::new(bin.join("zmaster"));
            c.arg("-C").arg(&dir);
            c
        }
        Server::Tokio | Server::May => {
            let mut c = Command::new(bin.join(server.binaries()[0]));
            c.args([addr.as_str(), "--threads", &threads]);
            c
        }
        Server::Epoll => {
            let mut c = Command::new(bin.join("echo-epoll"));
            c.arg(&addr);
            c
        }
    };
    let log_path = cfg.out_dir.join("logs").join(format!("{tag}.log"));
    let log = File::create(&log_path).map_err(|e| format!("create {}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| format!("dup log: {e}"))?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
    let child = cmd
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", server.label()))?;
    let mut guard = ChildGuard::new(child, server.label());
    let sa = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    wait_ready(sa, &mut guard, Duration::from_secs(10))
        .map_err(|e| format!("{e} (log: {})", log_path.display()))?;
    let report = measured_load(cfg, sa, guard.pid());
    let _ = guard.stop(Duration::from_secs(5));
    report
}

/// The warm-up as its own unmeasured run, then the measured run with the server's CPU time
/// (process and children) sampled around it.
fn measured_load(
    cfg: &BenchConfig,
    sa: SocketAddr,
    pid: i32,
) -> std::result::Result<Measure, String> {
    let mut lc = cfg.load_config(Target::Tcp(sa));
    if !lc.warmup.is_zero() {
        let mut warm = lc.clone();
        warm.limit = Limit::Duration(lc.warmup);
        warm.warmup = Duration::ZERO;
        load::run(&warm, None).map_err(|e| e.to_string())?;
    }
    lc.warmup = Duration::ZERO;
    let cpu0 = procs::tree_cpu_time(pid);
    let r = load::run(&lc, None).map_err(|e| e.to_string())?;
    let cpu1 = procs::tree_cpu_time(pid);
    let mut m = measure(&r);
    if let (Some(a), Some(b)) = (cpu0, cpu1)
        && r.ok > 0
    {
        m.server_cpu_us = Some(b.saturating_sub(a).as_secs_f64() * 1e6 / r.ok as f64);
    }
    Ok(m)
}

fn measure(r: &LoadReport) -> Measure {
    Measure {
        rps: r.throughput(),
        p50: r.percentile_us(0.5),
        p99: r.percentile_us(0.99),
        p999: r.percentile_us(0.999),
        errors: r.errors.total(),
        server_cpu_us: None,
        curve: QUANTILES
            .iter()
            .map(|&q| {
                (
                    q,
                    if q >= 1.0 {
                        r.max_us()
                    } else {
                        r.percentile_us(q)
                    },
                )
            })
            .collect(),
    }
}

/// Wait until `addr` echoes a probe line, or the child exits, or `limit` passes.
///
/// # Errors
/// A message saying which of the two happened.
pub fn wait_ready(
    addr: SocketAddr,
    child: &mut ChildGuard,
    limit: Duration,
) -> std::result::Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait() {
            return Err(format!("{} exited before answering: {st}", child.name));
        }
        if probe(addr).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} did not answer on {addr} within {limit:?}",
                child.name
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn probe(addr: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(b"zstress-probe\n")?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    if line == "zstress-probe\n" {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "probe reply differs",
        ))
    }
}

fn setup_line(cfg: &BenchConfig) -> String {
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
    let repeat = if cfg.repeat > 1 {
        format!(", median of {}", cfg.repeat)
    } else {
        String::new()
    };
    format!(
        "{ncpu} CPU ({cpu}), Linux {}, load avg {load} at start; {} conns, {} client thread(s), {} B lines, {:?} warm-up + {:?} measured per server{repeat}",
        kernel.trim(),
        cfg.conns,
        cfg.client_threads,
        cfg.size,
        cfg.warmup,
        cfg.duration
    )
}
