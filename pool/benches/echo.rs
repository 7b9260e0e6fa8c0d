//! Echo micro-benchmark: zmaster-pool vs a tokio multi-thread echo, 50 connections doing
//! 64-byte line ping-pong over 127.0.0.1, with 1 and 2 server threads.
//!
//! Run: `cargo bench -p zmaster-pool --bench echo` (env `ECHO_BENCH_SECS`, default 3;
//! `ECHO_BENCH_ROUNDS`, default 3; `ECHO_BENCH_CONNS`, default 50; `ECHO_BENCH_WORKERS=1|2` and
//! `ECHO_BENCH_ONLY=pool|tokio` restrict the runs; `ECHO_BENCH_VERBOSE` prints each run).
//! The client is one thread on its own epoll loop, identical for both servers.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use zmaster_pool::{Conn, Listener, Pool};

const LINE: usize = 64;

fn on_line(conn: &mut Conn, r: io::Result<Option<Vec<u8>>>) {
    match r {
        Ok(Some(line)) => {
            conn.write(&line);
            conn.write(b"\n");
            conn.read_line(64 * 1024, on_line);
        }
        _ => conn.close(),
    }
}

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    let a = l.local_addr().expect("addr");
    (l, a)
}

struct Report {
    rps: f64,
    /// Server CPU time (its worker threads) per round trip, in microseconds.
    cpu_us: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

/// Total on-CPU time in nanoseconds of this process's threads whose name starts with
/// `prefix` (from `/proc/self/task/*/schedstat`).
fn threads_cpu_ns(prefix: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `conns` connections doing ping-pong for `secs` (after `warmup`), from one thread;
/// server CPU is sampled from the threads named `threads*`.
fn client(
    addr: SocketAddr,
    conns: usize,
    warmup: Duration,
    secs: Duration,
    threads: &str,
) -> Report {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
    let mut streams = Vec::with_capacity(conns);
    let mut msg = vec![b'x'; LINE - 1];
    msg.push(b'\n');
    for i in 0..conns {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.set_nonblocking(true).expect("nonblocking");
        epoll
            .add(s.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
            .expect("epoll add");
        streams.push(s);
    }
    let mut sent_at = vec![Instant::now(); conns];
    let mut got = vec![0usize; conns];
    for (i, s) in streams.iter_mut().enumerate() {
        s.write_all(&msg).expect("send");
        sent_at[i] = Instant::now();
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut events = vec![EpollEvent::empty(); 256];
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + secs;
    let mut count = 0u64;
    let mut cpu_start = None;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if cpu_start.is_none() && now >= measure_from {
            cpu_start = Some(threads_cpu_ns(threads));
        }
        let n = epoll
            .wait(&mut events, EpollTimeout::from(100u16))
            .expect("epoll wait");
        for ev in &events[..n] {
            let i = ev.data() as usize;
            let s = &mut streams[i];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => panic!("server closed connection {i}"),
                    Ok(k) => got[i] += k,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
            if got[i] >= LINE {
                assert_eq!(got[i], LINE, "one reply per request");
                got[i] = 0;
                let now = Instant::now();
                if now >= measure_from {
                    count += 1;
                    let us = now.duration_since(sent_at[i]).as_micros() as u64;
                    hist.record(us.max(1)).expect("record");
                }
                s.write_all(&msg).expect("send");
                sent_at[i] = Instant::now();
            }
        }
    }
    let cpu_ns = threads_cpu_ns(threads).saturating_sub(cpu_start.unwrap_or(0));
    Report {
        rps: count as f64 / secs.as_secs_f64(),
        cpu_us: cpu_ns as f64 / 1000.0 / count.max(1) as f64,
        p50_us: hist.value_at_quantile(0.50) as f64,
        p99_us: hist.value_at_quantile(0.99) as f64,
        max_us: hist.max() as f64,
    }
}

fn bench_pool(workers: usize, conns: usize, warmup: Duration, secs: Duration) -> Report {
    let (l, addr) = listener();
    let handler: zmaster_pool::Handler = Arc::new(|c: &mut Conn| c.read_line(64 * 1024, on_line));
    let pool = Pool::start(workers, vec![(Listener::Tcp(l), handler)]).expect("pool");
    let r = client(addr, conns, warmup, secs, "zm-worker");
    pool.shutdown();
    r
}

fn bench_tokio(workers: usize, conns: usize, warmup: Duration, secs: Duration) -> Report {
    let (l, addr) = listener();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("tokio-worker")
        .enable_all()
        .build()
        .expect("runtime");
    rt.spawn(async move {
        let l = tokio::net::TcpListener::from_std(l).expect("from_std");
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let (r, mut w) = s.split();
                let mut r = BufReader::new(r);
                let mut line = Vec::with_capacity(128);
                loop {
                    line.clear();
                    match r.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            if w.write_all(&line).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    let r = client(addr, conns, warmup, secs, "tokio-worker");
    rt.shutdown_timeout(Duration::from_secs(1));
    r
}

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Medians over the rounds (NaN when there were none).
fn summarize(runs: &[Report]) -> Report {
    Report {
        rps: median(runs.iter().map(|r| r.rps).collect()),
        cpu_us: median(runs.iter().map(|r| r.cpu_us).collect()),
        p50_us: median(runs.iter().map(|r| r.p50_us).collect()),
        p99_us: median(runs.iter().map(|r| r.p99_us).collect()),
        max_us: median(runs.iter().map(|r| r.max_us).collect()),
    }
}

fn print_row(name: &str, r: &Report) {
    println!(
        "{name:<18} {:>12.0} {:>10.2} {:>8.0} {:>8.0} {:>8.0}",
        r.rps, r.cpu_us, r.p50_us, r.p99_us, r.max_us
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it briefly as a smoke test.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let secs = Duration::from_secs(if smoke {
        1
    } else {
        env_num("ECHO_BENCH_SECS", 3)
    });
    let warmup = Duration::from_millis(if smoke { 100 } else { 500 });
    let conns = env_num("ECHO_BENCH_CONNS", 50) as usize;
    let rounds = if smoke {
        1
    } else {
        env_num("ECHO_BENCH_ROUNDS", 3).max(1) as usize
    };
    let verbose = std::env::var_os("ECHO_BENCH_VERBOSE").is_some();
    let only_workers = env_num("ECHO_BENCH_WORKERS", 0) as usize;
    let only = std::env::var("ECHO_BENCH_ONLY").unwrap_or_default();
    println!(
        "echo ping-pong: {conns} connections, {LINE}-byte lines, {} s per run, median of {rounds} \
         alternating runs",
        secs.as_secs()
    );
    println!(
        "{:<18} {:>12} {:>10} {:>8} {:>8} {:>8}",
        "server", "round trip/s", "cpu us/rt", "p50 us", "p99 us", "max us"
    );
    for workers in [1, 2]
        .into_iter()
        .filter(|&w| only_workers == 0 || w == only_workers)
    {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..rounds {
            if only != "tokio" {
                let r = bench_pool(workers, conns, warmup, secs);
                if verbose {
                    print_row(&format!("  run pool W={workers}"), &r);
                }
                ours.push(r);
            }
            if only != "pool" {
                let r = bench_tokio(workers, conns, warmup, secs);
                if verbose {
                    print_row(&format!("  run tokio W={workers}"), &r);
                }
                theirs.push(r);
            }
        }
        let (ours, theirs) = (summarize(&ours), summarize(&theirs));
        print_row(&format!("zmaster-pool W={workers}"), &ours);
        print_row(&format!("tokio W={workers}"), &theirs);
        println!(
            "W={workers}: pool/tokio throughput {:.2}x, cpu per round trip {:.2}x, p99 {:.2}x",
            ours.rps / theirs.rps,
            ours.cpu_us / theirs.cpu_us,
            ours.p99_us / theirs.p99_us
        );
    }
}
