//! Stack sizes are validated where they are given (a clear panic or error at the call site,
//! never on a worker), and a worker that still dies does not silently swallow the coroutines
//! placed on it. The worker-death cases run in child processes (this binary re-executed) with
//! a small address-space limit so that a stack allocation fails on the worker.

mod util;

use util::sched;

use std::panic::{self, AssertUnwindSafe};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zmaster_coro::{self as coroutine, Config, MAX_STACK_SIZE, Scheduler};

/// Coroutine stack size of this file's schedulers (0: the default).
const STACK: usize = 0;

const CHILD_ENV: &str = "ZM_CORO_STACK_SIZE_CHILD";
const WAIT: Duration = Duration::from_secs(20);

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Waits (bounded) until the scheduler has no live coroutine.
fn drained(s: &Scheduler) -> bool {
    let end = Instant::now() + WAIT;
    while s.live_coroutines() != 0 {
        if Instant::now() > end {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

#[test]
fn huge_stack_from_a_handle_panics_at_the_call_site() {
    let s = sched(2, STACK);
    for size in [usize::MAX - 5000, usize::MAX, MAX_STACK_SIZE + 1] {
        let r = panic::catch_unwind(AssertUnwindSafe(|| s.handle().go_with_stack(size, || {})));
        let msg = panic_text(&*r.expect_err("an oversized stack must be refused"));
        assert!(msg.contains("stack size"), "{msg}");
    }
    // Every worker still runs coroutines, and nothing is counted live forever.
    let (tx, rx) = mpsc::channel();
    for i in 0..20 {
        let tx = tx.clone();
        s.handle().go(move || tx.send(i).unwrap());
    }
    for _ in 0..20 {
        rx.recv_timeout(WAIT).expect("coroutine ran");
    }
    assert!(drained(&s), "live={}", s.live_coroutines());
}

#[test]
fn huge_stack_from_a_coroutine_panics_in_the_caller() {
    let s = sched(2, STACK);
    let (tx, rx) = mpsc::channel();
    s.handle().go(move || {
        let r = panic::catch_unwind(|| coroutine::go_with_stack(usize::MAX - 5000, || {}));
        tx.send(r.map_err(|p| panic_text(&*p))).unwrap();
    });
    let msg = rx.recv_timeout(WAIT).unwrap().expect_err("must panic");
    assert!(msg.contains("stack size"), "{msg}");
    assert!(drained(&s), "live={}", s.live_coroutines());
}

#[test]
fn the_largest_stack_is_accepted() {
    let s = sched(1, STACK);
    let (tx, rx) = mpsc::channel();
    s.handle()
        .go_with_stack(MAX_STACK_SIZE, move || tx.send(()).unwrap());
    rx.recv_timeout(WAIT)
        .expect("coroutine with the largest stack ran");
}

#[test]
fn huge_default_stack_is_a_start_error() {
    for size in [usize::MAX, usize::MAX - 5000, MAX_STACK_SIZE + 1] {
        let r = Scheduler::start(Config {
            threads: 1,
            stack_size: size,
            ..Config::default()
        });
        let e = r.err().expect("must be refused");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("stack size"), "{e}");
    }
}

/// Panics when dropped.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("closure destructor panics");
    }
}

/// Panics on the worker's "stack allocation failed" record.
struct PanickingLogger;

impl log::Log for PanickingLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.args().to_string().contains("allocation failed") {
            panic!("logger fails");
        }
    }
    fn flush(&self) {}
}

/// Limits the address space to what is mapped now plus `extra` bytes.
fn limit_address_space(extra: u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let lim = libc::rlimit {
        rlim_cur: kb * 1024 + extra,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
}

/// The child: one worker whose next stack allocation fails, with either a closure whose drop
/// panics or a logger that panics; then a coroutine that must still run.
fn child(case: &str) {
    if case == "logger" {
        log::set_logger(&PanickingLogger).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    }
    let s = sched(1, STACK);
    let (tx, rx) = mpsc::channel();
    let warm = tx.clone();
    s.handle().go(move || warm.send("warm").unwrap());
    assert_eq!(rx.recv_timeout(WAIT), Ok("warm"));
    limit_address_space(64 << 20);
    if case == "drop" {
        let guard = PanicOnDrop;
        s.handle()
            .go_with_stack(MAX_STACK_SIZE, move || drop(guard));
    } else {
        s.handle().go_with_stack(MAX_STACK_SIZE, || {});
    }
    s.handle().go(move || tx.send("alive").unwrap());
    if rx.recv_timeout(WAIT) != Ok("alive") {
        eprintln!("child: coroutine never ran");
        std::process::exit(3);
    }
    std::mem::forget(s);
    println!("child: clean exit");
    std::process::exit(0);
}

/// The child entry point; does nothing in a normal test run.
#[test]
fn stack_size_child() {
    if let Ok(case) = std::env::var(CHILD_ENV) {
        child(&case);
    }
}

fn run_child(case: &str) -> (std::process::ExitStatus, String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "stack_size_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, case)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status, stdout, stderr)
}

#[test]
fn failed_stack_allocation_with_panicking_drop_keeps_the_worker() {
    let (status, stdout, stderr) = run_child("drop");
    assert!(
        status.success() && stdout.contains("child: clean exit"),
        "status {status:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[test]
fn a_worker_that_dies_aborts_the_process_loudly() {
    use std::os::unix::process::ExitStatusExt;
    let (status, stdout, stderr) = run_child("logger");
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "status {status:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("coroutine worker 0 panicked outside a coroutine"),
        "{stderr}"
    );
}
