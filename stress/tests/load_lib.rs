//! The load engine as a library: a stop flag ends a long run early, warm-up is not counted.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zmaster_stress::args::{Limit, Target};
use zmaster_stress::load::{self, LoadConfig};

/// An echo server that counts the lines it echoed.
fn counting_server(count: Arc<AtomicU64>) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                let mut r = BufReader::new(s);
                let mut line = Vec::new();
                while matches!(r.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                    if r.get_mut().write_all(&line).is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    line.clear();
                }
            });
        }
    });
    addr
}

#[test]
fn stop_flag_ends_a_long_run() {
    let count = Arc::new(AtomicU64::new(0));
    let addr = counting_server(Arc::clone(&count));
    let mut cfg = LoadConfig::new(Target::Tcp(addr));
    cfg.conns = 2;
    cfg.threads = 1;
    cfg.limit = Limit::Duration(Duration::from_secs(60));
    let stop = AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        let h = s.spawn(|| load::run(&cfg, Some(&stop)));
        while count.load(Ordering::Relaxed) < 200 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        h.join().expect("join")
    })
    .expect("load runs");
    assert!(report.ok >= 150, "{}", report.summary_table());
    assert!(report.elapsed < Duration::from_secs(60));
    assert!(!report.capped);
    assert_eq!(report.requests(), report.ok + report.errors.total());
}

#[test]
fn requests_mode_counts_only_after_warmup() {
    let count = Arc::new(AtomicU64::new(0));
    let addr = counting_server(Arc::clone(&count));
    let mut cfg = LoadConfig::new(Target::Tcp(addr));
    cfg.conns = 3;
    cfg.limit = Limit::Requests(300);
    cfg.warmup = Duration::from_millis(100);
    let r = load::run(&cfg, None).expect("load runs");
    assert_eq!(r.ok, 300);
    assert_eq!(r.hist.len(), 300);
    // The server also saw the warm-up requests.
    assert!(count.load(Ordering::Relaxed) >= 300);
}

/// A server that echoes one line per connection and closes at once (reply and FIN can
/// reach the client in one read), recording each peer's IP.
fn one_line_server(peers: Arc<Mutex<Vec<IpAddr>>>) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            if let Ok(p) = s.peer_addr() {
                peers.lock().expect("lock").push(p.ip());
            }
            let mut r = BufReader::new(s);
            let mut line = Vec::new();
            if matches!(r.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let _ = r.get_mut().write_all(&line);
            }
        }
    });
    addr
}

/// A reply followed by the server's close is a complete request: the FIN seen in the same
/// read as the reply must not fail the next connection the client has already opened.
#[test]
fn connect_per_request_to_a_server_that_closes_after_replying_has_no_errors() {
    let addr = one_line_server(Arc::new(Mutex::new(Vec::new())));
    let mut cfg = LoadConfig::new(Target::Tcp(addr));
    cfg.conns = 2;
    cfg.threads = 1;
    cfg.connect_per_request = true;
    cfg.limit = Limit::Requests(200);
    let r = load::run(&cfg, None).expect("load runs");
    assert_eq!(r.ok, 200, "{}", r.summary_table());
}

/// A connect loop from one source address is capped by TIME_WAIT reuse (~14,000/s on Linux),
/// so connect-per-request spreads its connects over 127.0.0.1–127.0.0.8.
#[test]
fn connect_per_request_spreads_its_source_addresses() {
    let peers = Arc::new(Mutex::new(Vec::new()));
    let addr = one_line_server(Arc::clone(&peers));
    let mut cfg = LoadConfig::new(Target::Tcp(addr));
    cfg.conns = 2;
    cfg.threads = 1;
    cfg.connect_per_request = true;
    cfg.limit = Limit::Requests(64);
    let r = load::run(&cfg, None).expect("load runs");
    assert_eq!(r.ok, 64, "{}", r.summary_table());
    let mut seen = peers.lock().expect("lock").clone();
    seen.sort();
    seen.dedup();
    let want: Vec<IpAddr> = (1..=8)
        .map(|k| Ipv4Addr::new(127, 0, 0, k).into())
        .collect();
    assert_eq!(seen, want);
}
