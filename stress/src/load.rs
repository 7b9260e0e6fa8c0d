//! `zstress load`: run N connections from K client threads and merge their results.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::conn::{self, Plan, Shared};
use crate::procs;
use crate::report::LoadReport;
use crate::target::{Limit, Target};
use crate::{Error, Result};

/// Most connections one run may open.
pub const MAX_CONNS: usize = 100_000;
/// Longest request line (`--size`).
pub const MAX_SIZE: usize = 16 << 20;

/// The parameters of one load run (the `zstress load` options).
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Where to connect.
    pub target: Target,
    /// Client connections (`--conns`, default 10).
    pub conns: usize,
    /// When to stop (`--duration`, default 10 s, or `--requests`).
    pub limit: Limit,
    /// Unmeasured warm-up before the measured part (`--warmup`, default 0).
    pub warmup: Duration,
    /// Request payload bytes; the line sent is this plus `\n` (`--size`, default 64).
    pub size: usize,
    /// Client threads (`--threads`; 0 = min(conns, CPUs)).
    pub threads: usize,
    /// Banner lines to read after each connect before the first request (`--banner`).
    pub banner: usize,
    /// Connect, send one request, read the reply, close (`--connect-per-request`).
    pub connect_per_request: bool,
    /// Per-request (and per-connect) timeout (`--timeout`, default 5 s).
    pub timeout: Duration,
    /// Hard cap on the whole run with `--requests` (`--max-time`, default 60 s).
    pub max_time: Duration,
    /// Show a live progress line on stderr.
    pub progress: bool,
    /// How many failed requests to keep in [`LoadReport::failures`] (default 100 000).
    pub keep_failures: usize,
}

impl LoadConfig {
    /// The defaults, loading `target`.
    pub fn new(target: Target) -> Self {
        LoadConfig {
            target,
            conns: 10,
            limit: Limit::Duration(Duration::from_secs(10)),
            warmup: Duration::ZERO,
            size: 64,
            threads: 0,
            banner: 0,
            connect_per_request: false,
            timeout: Duration::from_secs(5),
            max_time: Duration::from_secs(60),
            progress: false,
            keep_failures: 100_000,
        }
    }

    /// Check the ranges.
    ///
    /// # Errors
    /// A usage error naming the bad option.
    pub fn validate(&self) -> Result<()> {
        if self.conns == 0 || self.conns > MAX_CONNS {
            return Err(Error::usage(format!("--conns must be 1..={MAX_CONNS}")));
        }
        if self.size == 0 || self.size > MAX_SIZE {
            return Err(Error::usage(format!("--size must be 1..={MAX_SIZE} bytes")));
        }
        if self.threads > 1024 {
            return Err(Error::usage("--threads must be at most 1024"));
        }
        match self.limit {
            Limit::Duration(d) if d.is_zero() => {
                return Err(Error::usage("--duration must be > 0"));
            }
            Limit::Requests(0) => return Err(Error::usage("--requests must be > 0")),
            _ => {}
        }
        if self.timeout.is_zero() || self.max_time.is_zero() {
            return Err(Error::usage("--timeout and --max-time must be > 0"));
        }
        Ok(())
    }

    /// The client thread count actually used.
    pub fn effective_threads(&self) -> usize {
        let auto = std::thread::available_parallelism().map_or(1, |n| n.get());
        let t = if self.threads == 0 {
            auto
        } else {
            self.threads
        };
        t.clamp(1, self.conns.max(1))
    }
}

/// Run the load described by `cfg`; `stop`, when set by another thread, ends it early.
///
/// The run is bounded: with [`Limit::Duration`] it ends at warm-up + duration; with
/// [`Limit::Requests`] after that many measured requests or at `max_time`, whichever is first.
///
/// # Errors
/// Invalid configuration, or the OS refusing a thread or an epoll instance. Failed
/// requests are not errors: they are counted in the report.
pub fn run(cfg: &LoadConfig, stop: Option<&AtomicBool>) -> Result<LoadReport> {
    cfg.validate()?;
    let threads = cfg.effective_threads();
    let start = Instant::now();
    let warmup_end = start + cfg.warmup;
    let (deadline, max_requests) = match cfg.limit {
        Limit::Duration(d) => (warmup_end + d, None),
        Limit::Requests(k) => (
            start + cfg.max_time.max(cfg.warmup + Duration::from_millis(1)),
            Some(k),
        ),
    };
    let plan = Arc::new(Plan {
        target: cfg.target.clone(),
        size: cfg.size,
        banner: cfg.banner,
        connect_per_request: cfg.connect_per_request,
        timeout: cfg.timeout,
        start,
        warmup_end,
        deadline,
        max_requests,
        keep_failures: cfg.keep_failures.div_ceil(threads),
    });
    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let ids: Vec<usize> = (t..cfg.conns).step_by(threads).collect();
        let (plan, shared, tx) = (Arc::clone(&plan), Arc::clone(&shared), tx.clone());
        let h = std::thread::Builder::new()
            .name(format!("zstress-{t}"))
            .spawn(move || {
                let (began, wait0) = (Instant::now(), procs::thread_runq_wait());
                let r = conn::run_thread(&plan, &shared, &ids);
                let waited = wait0
                    .zip(procs::thread_runq_wait())
                    .map(|(a, b)| b.saturating_sub(a));
                if r.is_err() {
                    shared.stop.store(true, Ordering::Relaxed);
                }
                let _ = tx.send(());
                (r, waited, began.elapsed())
            })
            .map_err(|e| Error::io("spawn client thread", e))?;
        handles.push(h);
    }
    drop(tx);
    let bar = cfg.progress.then(|| progress_bar(cfg));
    let mut finished = 0;
    while finished < threads {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(()) => finished += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            shared.stop.store(true, Ordering::Relaxed);
        }
        if let Some(b) = &bar {
            update_bar(b, &shared, warmup_end);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut report = LoadReport::empty(cfg.target.to_string(), cfg.conns, threads, cfg.size);
    report.connect_per_request = cfg.connect_per_request;
    let mut end = warmup_end;
    report.client_runq_wait = Some(Duration::ZERO);
    for h in handles {
        let (r, waited, lived) = h
            .join()
            .map_err(|_| Error::server("a client thread panicked"))?;
        let r = r.map_err(|e| Error::io("client event loop", e))?;
        report.client_runq_wait = report.client_runq_wait.zip(waited).map(|(a, b)| a + b);
        report.client_thread_time += lived;
        report.ok += r.ok;
        report.errors.merge(&r.errors);
        let _ = report.hist.add(&r.hist);
        report.failures.extend(r.failures);
        report.failures_dropped += r.dropped;
        end = end.max(r.end);
    }
    report.failures.sort_by_key(|f| f.at);
    report.elapsed = end.saturating_duration_since(warmup_end);
    report.capped = matches!(max_requests, Some(k) if report.requests() < k)
        && !shared.stop.load(Ordering::Relaxed);
    Ok(report)
}

/// Whether a live progress line makes sense (stderr is a terminal).
pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

fn progress_bar(cfg: &LoadConfig) -> ProgressBar {
    let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}") {
        b.set_style(style);
    }
    b.set_message(format!("{} conns to {}", cfg.conns, cfg.target));
    b
}

fn update_bar(b: &ProgressBar, shared: &Shared, warmup_end: Instant) {
    let now = Instant::now();
    let ok = shared.ok.load(Ordering::Relaxed);
    let failed = shared.failed.load(Ordering::Relaxed);
    if now < warmup_end {
        b.set_message(format!(
            "warming up ({:.1} s left)",
            (warmup_end - now).as_secs_f64()
        ));
    } else {
        let secs = now.duration_since(warmup_end).as_secs_f64().max(1e-3);
        b.set_message(format!(
            "ok {ok}  {:.0} req/s  errors {failed}",
            ok as f64 / secs
        ));
    }
    b.tick();
}
