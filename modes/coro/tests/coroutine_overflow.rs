//! A coroutine stack overflow hits the guard page and is reported — checked in a child
//! process (this test binary re-executed), since the process exits.

mod util;

use util::sched;

use std::hint::black_box;
use std::process::Command;
use std::time::Duration;

const CHILD_ENV: &str = "ZM_CORO_OVERFLOW_CHILD";

fn recurse(depth: u64) -> u64 {
    let buf = black_box([depth as u8; 512]);
    if depth == u64::MAX {
        return 0;
    }
    black_box(recurse(depth + 1)) + u64::from(buf[7])
}

/// The child's body: overflow a 32 KiB coroutine stack. Does nothing in a normal test run.
#[test]
fn overflow_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let s = sched(2, 32 * 1024);
    s.handle().go(|| {
        black_box(recurse(0));
    });
    // The process exits from the signal handler; never reached in a passing run.
    std::thread::sleep(Duration::from_secs(60));
    std::process::exit(0);
}

#[test]
fn stack_overflow_is_reported_and_exits_nonzero() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "overflow_child",
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

#[test]
fn main_thread_overflow_still_handled_by_std() {
    // Faults outside coroutine stacks are passed on: a plain thread overflowing its own stack
    // gets Rust's usual report and SIGABRT, not our message.
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "thread_overflow_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ZM_CORO_THREAD_OVERFLOW_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("coroutine stack overflow"), "{stderr}");
    assert!(stderr.contains("has overflowed its stack"), "{stderr}");
}

#[test]
fn thread_overflow_child() {
    if std::env::var_os("ZM_CORO_THREAD_OVERFLOW_CHILD").is_none() {
        return;
    }
    let _s = sched(1, 0);
    let t = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(|| black_box(recurse(0)))
        .unwrap();
    let _ = t.join();
}
