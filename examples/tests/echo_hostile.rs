//! The echo examples against hostile peers (SPEC §15, issue 14), in both modes, each server
//! started `alone` with its bounds in a `.cf`: slowloris is cut at the idle timeout while a
//! normal client is served, a peer that never reads is cut with the server's memory bounded,
//! an endless line gets `ERR line too long`, and 10,000 idle connections cost memory only
//! while they are open. The figures are printed (`cargo test --test echo_hostile --
//! --nocapture`); only generous hang bounds are asserted on time.

mod util;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use util::{
    LineClient, LogPipe, PATIENCE, Server, fd_count, free_port, raise_fd_limit, rss_bytes,
    wait_answering, wait_for,
};

/// Both example echo servers: every behaviour here holds for each mode.
const BINS: [&str; 2] = [
    env!("CARGO_BIN_EXE_echo-aio"),
    env!("CARGO_BIN_EXE_echo-coroutine"),
];

const MIB: u64 = 1 << 20;

/// The tests hold thousands of fds of this process: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn name(bin: &str) -> &str {
    bin.rsplit('/').next().unwrap_or(bin)
}

/// An echo server started `alone` with `cf` as its `-config` file, its stderr as a log.
struct Echo {
    server: Server,
    addr: SocketAddr,
    log: LogPipe,
    _dir: tempfile::TempDir,
}

impl Echo {
    fn start(bin: &str, cf: &str) -> Echo {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("echo.cf");
        std::fs::write(&path, cf).expect("write the .cf");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut child = Command::new(bin)
            .args(["alone", "-server-service", &addr.to_string(), "-config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the server");
        let log = LogPipe::new(child.stderr.take().expect("stderr"));
        let mut server = Server { child };
        wait_answering(&mut server, addr);
        Echo {
            server,
            addr,
            log,
            _dir: dir,
        }
    }

    fn pid(&self) -> i32 {
        self.server.pid() as i32
    }

    /// Waits until the server holds no more fds than `fds` (its connections are closed).
    fn wait_fds_down_to(&self, fds: usize) {
        wait_for("the server to close its connections", || {
            fd_count(self.pid()) <= fds
        });
    }
}

/// `want` connections if this process (and the server it starts, which inherits its limit)
/// may open `per_conn` fds for each; else as many as fit, with a message.
fn fd_budget(want: usize, per_conn: usize) -> usize {
    let soft = raise_fd_limit(u64::MAX);
    let fit = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(200)
        / per_conn;
    if fit < want {
        println!("RLIMIT_NOFILE {soft}: scaled down from {want} to {fit} connections");
    }
    want.min(fit)
}

/// Whether a read result means the server closed the connection.
fn closed(r: &io::Result<usize>) -> bool {
    match r {
        Ok(0) => true,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
        ),
        Ok(_) => false,
    }
}

/// The p-th percentile (0..=100) of `samples` (sorted in place).
fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    let i = (samples.len() * p / 100).min(samples.len().saturating_sub(1));
    samples.get(i).copied().unwrap_or_default()
}

#[test]
fn slowloris_is_cut_at_the_idle_timeout_while_a_client_is_served() {
    let _one = one_at_a_time();
    for bin in BINS {
        let echo = Echo::start(bin, "echo-idle-timeout = 2s\nserver-thread-count = 2\n");
        let n = fd_budget(1000, 2);
        let start = Instant::now();
        let mut readers = Vec::with_capacity(n);
        let mut writers = Vec::with_capacity(n);
        for _ in 0..n {
            let s = TcpStream::connect(echo.addr).expect("connect");
            s.set_read_timeout(Some(PATIENCE)).expect("timeout");
            writers.push(s.try_clone().expect("clone"));
            readers.push(s);
        }
        // A byte a second per connection, never a newline: faster than the idle timeout, so
        // a per-read timeout alone would keep them forever; the whole line must be on time.
        let stop = Arc::new(AtomicBool::new(false));
        let trickle = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut live = writers;
                while !stop.load(Ordering::Relaxed) && !live.is_empty() {
                    live.retain_mut(|w| w.write_all(b"x").is_ok());
                    thread::sleep(Duration::from_secs(1));
                }
            })
        };
        // Wait for every slow connection to be cut, on a thread, while a normal client
        // keeps being served.
        let cut = thread::spawn(move || {
            let mut last = Duration::ZERO;
            for (i, mut r) in readers.into_iter().enumerate() {
                let mut buf = [0u8; 16];
                let got = r.read(&mut buf);
                assert!(closed(&got), "slow connection {i} not cut: {got:?}");
                last = start.elapsed();
            }
            last
        });
        let mut normal = LineClient::tcp(echo.addr);
        let mut latencies = Vec::new();
        while !cut.is_finished() {
            let t = Instant::now();
            normal.expect_echo("a normal request");
            latencies.push(t.elapsed());
        }
        let last_cut = cut.join().expect("every slow connection is cut");
        stop.store(true, Ordering::Relaxed);
        trickle.join().expect("trickle");
        normal.expect_echo("still served after the cut");
        let p99 = percentile(&mut latencies, 99);
        println!(
            "figure: {} slowloris {n} conns (a byte/s, echo-idle-timeout 2s): all cut {:.1}s \
             after connecting; normal client {} requests meanwhile, p50 {:?} p99 {:?}",
            name(bin),
            last_cut.as_secs_f64(),
            latencies.len(),
            percentile(&mut latencies, 50),
            p99
        );
        assert!(!latencies.is_empty(), "{}", name(bin));
    }
}

#[test]
fn a_peer_that_never_reads_is_cut_at_the_pending_bound_with_memory_bounded() {
    const PEERS: usize = 8;
    let _one = one_at_a_time();
    for bin in BINS {
        // The idle timeout is far beyond the hang bound: a cut can only come from the
        // pending bound (the output unsent, the kernel's send queue included).
        let echo = Echo::start(
            bin,
            "echo-idle-timeout = 60s\necho-max-pending = 256k\nserver-thread-count = 2\n",
        );
        let before = rss_bytes(echo.pid());
        let start = Instant::now();
        let senders: Vec<_> = (0..PEERS)
            .map(|_| {
                let mut s = TcpStream::connect(echo.addr).expect("connect");
                // A hang bound: a server that never cuts it fails the test with WouldBlock.
                s.set_write_timeout(Some(PATIENCE)).expect("timeout");
                thread::spawn(move || {
                    let mut line = vec![b'n'; 1023];
                    line.push(b'\n');
                    let mut sent = 0u64;
                    loop {
                        if let Err(e) = s.write_all(&line) {
                            return (sent, e.kind());
                        }
                        sent += line.len() as u64;
                    }
                })
            })
            .collect();
        // Sample the server's memory while the peers push.
        let mut peak = before;
        while !senders.iter().all(|s| s.is_finished()) {
            peak = peak.max(rss_bytes(echo.pid()));
            assert!(
                start.elapsed() < PATIENCE * 2,
                "{}: peers not cut at the pending bound",
                name(bin)
            );
            thread::sleep(Duration::from_millis(20));
        }
        let cut_after = start.elapsed();
        let results: Vec<(u64, ErrorKind)> = senders
            .into_iter()
            .map(|s| s.join().expect("sender"))
            .collect();
        for (sent, kind) in &results {
            assert!(
                matches!(
                    kind,
                    ErrorKind::ConnectionReset
                        | ErrorKind::BrokenPipe
                        | ErrorKind::ConnectionAborted
                ),
                "{}: a never-reading peer was not cut (sent {sent} bytes, then {kind:?})",
                name(bin)
            );
        }
        for _ in 0..PEERS {
            echo.log.wait_line("over echo-max-pending", PATIENCE);
        }
        let grown = peak.saturating_sub(before);
        println!(
            "figure: {} {PEERS} never-reading peers (echo-max-pending 256k, echo-idle-timeout \
             60s): cut {:.1}s after connecting, {} KiB sent each (mean), server RSS grew at \
             most {} KiB",
            name(bin),
            cut_after.as_secs_f64(),
            results.iter().map(|r| r.0).sum::<u64>() / PEERS as u64 / 1024,
            grown / 1024
        );
        // Each peer may hold up to echo-max-pending + a line of output and a line of input.
        let bound = PEERS as u64 * MIB + 16 * MIB;
        assert!(grown < bound, "{}: RSS grew {grown} bytes", name(bin));
        LineClient::tcp(echo.addr).expect_echo("others are still served");
    }
}

#[test]
fn an_endless_line_gets_line_too_long_and_a_close() {
    let _one = one_at_a_time();
    for bin in BINS {
        // Every bound at its default: echo-max-line is 1m.
        let echo = Echo::start(bin, "# defaults\n");
        let before = rss_bytes(echo.pid());
        let mut client = LineClient::tcp(echo.addr);
        let mut writer = client.writer.try_clone().expect("clone");
        writer.set_write_timeout(Some(PATIENCE)).expect("timeout");
        let sender = thread::spawn(move || {
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0u64;
            while writer.write_all(&chunk).is_ok() {
                sent += chunk.len() as u64;
            }
            sent
        });
        assert_eq!(
            client.read_line().as_deref(),
            Some("ERR line too long"),
            "{}",
            name(bin)
        );
        let sent = sender.join().expect("sender");
        client.expect_closed();
        let grown = rss_bytes(echo.pid()).saturating_sub(before);
        println!(
            "figure: {} endless line: ERR line too long after {} KiB sent, RSS grew {} KiB",
            name(bin),
            sent / 1024,
            grown / 1024
        );
        assert!(grown < 16 * MIB, "{}: RSS grew {grown} bytes", name(bin));
        LineClient::tcp(echo.addr).expect_echo("others are still served");
    }
}

#[test]
fn idle_connections_cost_memory_only_while_open() {
    let _one = one_at_a_time();
    for bin in BINS {
        let echo = Echo::start(bin, "server-thread-count = 2\n");
        let n = fd_budget(10_000, 1);
        // A first connection warms the server up (its threads, buffers and pools).
        let mut warm = LineClient::tcp(echo.addr);
        warm.expect_echo("warm up");
        let baseline_fds = fd_count(echo.pid()).saturating_sub(1);
        drop(warm);
        echo.wait_fds_down_to(baseline_fds);
        let start = rss_bytes(echo.pid());
        let mut conns: Vec<TcpStream> = (0..n)
            .map(|_| TcpStream::connect(echo.addr).expect("connect"))
            .collect();
        // One echo on each: every connection is being served (its coroutine started).
        for c in &mut conns {
            c.write_all(b"hi\n").expect("send");
        }
        for c in &mut conns {
            c.set_read_timeout(Some(PATIENCE)).expect("timeout");
            let mut buf = [0u8; 3];
            c.read_exact(&mut buf).expect("echo");
            assert_eq!(&buf, b"hi\n");
        }
        let open = rss_bytes(echo.pid());
        drop(conns);
        echo.wait_fds_down_to(baseline_fds);
        // Polled: the RSS settles once the freed memory is given back (bounded by PATIENCE).
        let settle = Instant::now();
        let mut after = rss_bytes(echo.pid());
        while after > start + 10_000_000 && settle.elapsed() < PATIENCE {
            thread::sleep(Duration::from_millis(50));
            after = rss_bytes(echo.pid());
        }
        println!(
            "figure: {} {n} idle connections: {:.1} KiB each while open (RSS {} -> {} KiB), \
             {} KiB after they closed ({:+} KiB vs the start)",
            name(bin),
            open.saturating_sub(start) as f64 / n as f64 / 1024.0,
            start / 1024,
            open / 1024,
            after / 1024,
            (after as i64 - start as i64) / 1024
        );
        assert!(
            after <= start + 10_000_000,
            "{}: RSS {after} after the close, {start} at the start",
            name(bin)
        );
        LineClient::tcp(echo.addr).expect_echo("still serving");
    }
}
