//! With more than 256 scheduler threads in the process, a coroutine stack overflow is still
//! reported (the per-thread attribution table grows) — checked in a child process (this test
//! binary re-executed), since the process exits.

mod util;

use util::sched;

use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "ZM_CORO_OVERFLOW_MANY_CHILD";
/// Threads of the first scheduler: every one of the former fixed table's slots.
const BUSY: usize = 256;

fn recurse(depth: u64) -> u64 {
    let buf = black_box([depth as u8; 512]);
    if depth == u64::MAX {
        return 0;
    }
    black_box(recurse(depth + 1)) + u64::from(buf[7])
}

/// The child: 256 workers, each held busy by a blocking coroutine (so each has claimed its
/// slot), then a second scheduler whose coroutine overflows. Does nothing in a normal run.
#[test]
fn overflow_many_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let busy = sched(BUSY, 0);
    let started = Arc::new(AtomicUsize::new(0));
    let hold = Arc::new((Mutex::new(()), Condvar::new()));
    for _ in 0..BUSY {
        let (started, hold) = (started.clone(), hold.clone());
        busy.handle().go(move || {
            started.fetch_add(1, Ordering::SeqCst);
            // Blocks this worker thread on purpose, forever.
            let mut g = hold.0.lock().unwrap();
            loop {
                g = hold.1.wait(g).unwrap();
            }
        });
    }
    let end = Instant::now() + Duration::from_secs(60);
    while started.load(Ordering::SeqCst) < BUSY {
        if Instant::now() > end {
            eprintln!(
                "child: only {} workers busy",
                started.load(Ordering::SeqCst)
            );
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = sched(1, 32 * 1024);
    s.handle().go(|| {
        black_box(recurse(0));
    });
    // The process exits from the signal handler; never reached in a passing run.
    std::thread::sleep(Duration::from_secs(60));
    std::process::exit(0);
}

#[test]
fn overflow_is_reported_beyond_256_threads() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "overflow_many_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(70),
        "status {:?}, stderr:\n{stderr}",
        out.status
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("coroutine stack overflow (coroutine "))
        .unwrap_or_else(|| panic!("no overflow line in:\n{stderr}"));
    assert!(line.ends_with(", stack size 32768)"), "{line}");
}
