//! A panic that escapes a coroutine's panic guard (its payload's `Drop` panics, or the logger
//! panics while reporting it) stays contained: the worker keeps running coroutines and later
//! destructors that yield during teardown do not use a dead coroutine's context. Each case
//! runs in a child process (this test binary re-executed), since the defect crashed it.

mod util;

use util::sched;

use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use zmaster_coro::{self as coroutine, sync::chan};

const CHILD_ENV: &str = "ZM_CORO_PANIC_ESCAPE_CHILD";
const WAIT: Duration = Duration::from_secs(20);

/// A panic payload whose destructor panics too.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("panic payload destructor panics");
    }
}

/// Yields in its destructor (run when the scheduler unwinds a parked coroutine), then reports.
struct YieldOnDrop(mpsc::Sender<&'static str>);

impl Drop for YieldOnDrop {
    fn drop(&mut self) {
        coroutine::yield_now();
        let _ = self.0.send("dropped");
    }
}

/// A logger that panics on the scheduler's "coroutine N panicked" record (as fern does when
/// stderr is a broken pipe).
struct PanickingLogger;

impl log::Log for PanickingLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.args().to_string().contains("panicked") {
            panic!("logger fails");
        }
    }
    fn flush(&self) {}
}

/// The child: a parked coroutine whose destructor yields, a coroutine whose panic escapes the
/// guard in the way `case` says, then a coroutine proving the worker still runs, then shutdown.
fn child(case: &str) {
    if case == "logger" {
        log::set_logger(&PanickingLogger).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    }
    let s = sched(1, 0);
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    s.handle().go(move || {
        let _g = YieldOnDrop(tx2.clone());
        let (_keep, wait) = chan::unbounded::<()>();
        tx2.send("parked").unwrap();
        let _ = wait.recv();
    });
    assert_eq!(rx.recv_timeout(WAIT), Ok("parked"));
    match case {
        "payload" => s.handle().go(|| std::panic::panic_any(PanicOnDrop)),
        _ => s.handle().go(|| panic!("deliberate test panic")),
    }
    let tx3 = tx.clone();
    s.handle().go(move || tx3.send("alive").unwrap());
    if rx.recv_timeout(WAIT) != Ok("alive") {
        eprintln!("child: worker no longer runs coroutines");
        std::process::exit(3);
    }
    s.shutdown();
    if rx.recv_timeout(WAIT) != Ok("dropped") {
        eprintln!("child: parked coroutine was not unwound");
        std::process::exit(4);
    }
    println!("child: clean exit");
    std::process::exit(0);
}

/// The child entry point; does nothing in a normal test run.
#[test]
fn panic_escape_child() {
    if let Ok(case) = std::env::var(CHILD_ENV) {
        child(&case);
    }
}

fn run_child(case: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "panic_escape_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, case)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("child: clean exit"),
        "case {case}: status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

#[test]
fn panicking_payload_destructor_is_contained() {
    run_child("payload");
}

#[test]
fn panicking_logger_is_contained() {
    run_child("logger");
}
