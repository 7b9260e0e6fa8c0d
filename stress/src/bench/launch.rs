//! One bench row: start its server on a fresh port, probe it, load it, measure idle
//! connections, stop it by pid.

use std::fs::File;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::config::BenchConfig;
use super::idle::{self, IdleMeasure};
use super::rows::{Measure, Placement, RowSpec, Server};
use crate::load;
use crate::procs::{self, ChildGuard};
use crate::report::LoadReport;
use crate::svg::QUANTILES;
use crate::target::{Limit, Target};
use crate::{Error, Result};

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

/// The server command of `spec` listening on `addr`; zmaster gets its config dir written.
fn command(
    cfg: &BenchConfig,
    bin: &Path,
    spec: &RowSpec,
    addr: &str,
    tag: &str,
) -> std::result::Result<Command, String> {
    let threads = spec.workers.unwrap_or(1).to_string();
    Ok(match spec.server {
        Server::ZmasterAio | Server::ZmasterCoroutine => {
            let dir = cfg.out_dir.join("run").join(tag);
            std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            let cf = format!(
                "# written by zstress bench\nserver-command = {}\nserver-service = {addr}\nserver-proc-count = {}\nserver-proc-balance = yes\nserver-thread-count = {threads}\n",
                bin.join(spec.server.binaries()[1]).display(),
                spec.procs.unwrap_or(1),
            );
            std::fs::write(dir.join("echo.cf"), cf)
                .map_err(|e| format!("write {}/echo.cf: {e}", dir.display()))?;
            let mut c = Command::new(bin.join("zmaster"));
            c.arg("-C").arg(&dir);
            c
        }
        Server::Tokio | Server::May => {
            let mut c = Command::new(bin.join(spec.server.binaries()[0]));
            c.args([addr, "--threads", &threads]);
            c
        }
        Server::Epoll => {
            let mut c = Command::new(bin.join("echo-epoll"));
            c.arg(addr);
            c
        }
    })
}

/// Run one row once: the load, then (if `idle` > 0) the idle-connection measurement on the
/// same server, which is stopped afterwards whatever happened.
pub(super) fn run_one(
    cfg: &BenchConfig,
    bin: &Path,
    pl: Placement,
    spec: &RowSpec,
    idle: usize,
) -> std::result::Result<(Measure, Option<IdleMeasure>), String> {
    if let Some(missing) = spec
        .server
        .binaries()
        .iter()
        .find(|b| !bin.join(b).is_file())
    {
        return Err(format!(
            "skipped: not built ({} missing)",
            bin.join(missing).display()
        ));
    }
    let port = free_port().map_err(|e| e.to_string())?;
    let addr = format!("127.0.0.1:{port}");
    let tag = format!(
        "{}-{}-p{}-w{}-{}",
        pl.label(),
        spec.load.label(),
        spec.procs.unwrap_or(1),
        spec.workers.unwrap_or(1),
        spec.server.short()
    );
    let mut cmd = command(cfg, bin, spec, &addr, &tag)?;
    let log_path = cfg.out_dir.join("logs").join(format!("{tag}.log"));
    let log = File::create(&log_path).map_err(|e| format!("create {}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| format!("dup log: {e}"))?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
    let child = cmd
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", spec.server.label()))?;
    let mut guard = ChildGuard::new(child, spec.server.label());
    let sa = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    wait_ready(sa, &mut guard, Duration::from_secs(10))
        .map_err(|e| format!("{e} (log: {})", log_path.display()))?;
    let measured = measured_load(cfg, sa, spec, guard.pid());
    let idle = (measured.is_ok() && idle > 0).then(|| {
        idle::measure(
            sa,
            guard.pid(),
            idle,
            Duration::from_secs(5),
            idle::TIME_LIMIT,
        )
    });
    let _ = guard.stop(Duration::from_secs(5));
    measured.map(|m| (m, idle))
}

/// The warm-up as its own unmeasured run, then the measured run with the server's CPU time
/// (process and children) sampled around it.
fn measured_load(
    cfg: &BenchConfig,
    sa: SocketAddr,
    spec: &RowSpec,
    pid: i32,
) -> std::result::Result<Measure, String> {
    let mut lc = cfg.load_config(Target::Tcp(sa), spec.load);
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
        p90: r.percentile_us(0.9),
        p99: r.percentile_us(0.99),
        p999: r.percentile_us(0.999),
        max: r.max_us(),
        errors: r.errors.total(),
        server_cpu_us: None,
        client_wait: r.client_wait_share(),
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

/// Wait until `addr` echoes a probe line from a listener the child holds, or the child exits,
/// or `limit` passes. Another process may listen on a port `free_port` gave (a parallel run
/// took it first): its answer is not this child's, which then exits on its bind error.
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
        if probe(addr).is_ok() && crate::sockets::listens_on(child.pid(), addr.port()) {
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
