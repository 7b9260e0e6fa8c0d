//! The load engine as a library: a stop flag ends a long run early, warm-up is not counted.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
