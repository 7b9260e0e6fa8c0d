//! Scheduler teardown and stop(): wake-ups handed to coroutines being unwound are passed on,
//! a destructor locking a held Mutex at shutdown aborts instead of hanging, and stop() reaches
//! accepts parked in a coroutine or blocked on a plain thread.

mod util;

use util::sched;

use std::process::{Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use zmaster_coro::net::TcpListener;
use zmaster_coro::sync::{Mutex, chan};

const WAIT: Duration = Duration::from_secs(20);

/// Set in the child process that runs the deadlocking scenario.
const CHILD: &str = "ZMASTER_CORO_TEARDOWN_CHILD";

/// The child's scenario: a destructor run at teardown locks a Mutex held by a coroutine of the
/// same worker that is not unwound yet. Without a bound this hangs shutdown forever.
fn destructor_locks_mutex_held_by_later_coroutine() {
    struct D(Arc<Mutex<u32>>);
    impl Drop for D {
        fn drop(&mut self) {
            *self.0.lock() += 1;
        }
    }
    let m = Arc::new(Mutex::new(0u32));
    let s = sched(1, 0);
    let (tx, started) = mpsc::channel();
    let (m1, tx1) = (m.clone(), tx.clone());
    s.handle().go(move || {
        let _d = D(m1);
        tx1.send(()).unwrap();
        zmaster_coro::sleep(Duration::MAX);
    });
    started.recv_timeout(WAIT).unwrap();
    let m2 = m.clone();
    s.handle().go(move || {
        let _g = m2.lock();
        tx.send(()).unwrap();
        zmaster_coro::sleep(Duration::MAX);
    });
    started.recv_timeout(WAIT).unwrap();
    assert!(m.try_lock().is_none(), "held by the second coroutine");
    s.shutdown();
}

#[test]
fn destructor_locking_a_held_mutex_at_teardown_aborts_instead_of_hanging() {
    if std::env::var_os(CHILD).is_some() {
        destructor_locks_mutex_held_by_later_coroutine();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "destructor_locking_a_held_mutex_at_teardown_aborts_instead_of_hanging",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shutdown hung on the destructor's lock");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "the child aborted: {status:?}");
    assert!(
        err.contains("aborting instead of hanging"),
        "the abort says why: {err}"
    );
}

#[test]
fn chan_wake_handed_to_a_receiver_unwound_at_teardown_is_passed_on() {
    struct S(chan::Sender<u32>);
    impl Drop for S {
        fn drop(&mut self) {
            let _ = self.0.send(1);
        }
    }
    let (tx, rx) = chan::unbounded::<u32>();
    let s = sched(1, 0);
    let (started_tx, started) = mpsc::channel();
    let (tx1, st1) = (tx.clone(), started_tx.clone());
    s.handle().go(move || {
        let _s = S(tx1);
        st1.send(()).unwrap();
        zmaster_coro::sleep(Duration::MAX);
    });
    started.recv_timeout(WAIT).unwrap();
    let rx1 = rx.clone();
    s.handle().go(move || {
        started_tx.send(()).unwrap();
        let _ = rx1.recv();
    });
    started.recv_timeout(WAIT).unwrap();
    let (done_tx, done) = mpsc::channel();
    let rx2 = rx.clone();
    std::thread::spawn(move || {
        let _ = done_tx.send(rx2.recv());
    });
    // No public view of the receiver queue: give the coroutine and the thread time to park
    // (too short only makes this test pass without proving anything, never fail).
    std::thread::sleep(Duration::from_millis(200));
    // Unwinds the sender's owner (its destructor sends, waking the coroutine receiver), then
    // that receiver: the thread must hear of the message.
    s.shutdown();
    let got = done.recv_timeout(WAIT);
    assert_eq!(got.ok(), Some(Ok(1)), "plain receiver got the message");
    drop(tx);
}

#[test]
fn stop_racing_a_parking_accept_is_seen() {
    let s = sched(1, 0);
    let mut hung = 0;
    let n = 3000;
    for i in 0..n {
        let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let l2 = l.clone();
        s.handle().go(move || {
            let _ = ready_tx.send(());
            let r = l2.accept().map(drop);
            let _ = tx.send(r);
        });
        ready.recv().unwrap();
        // Vary where stop() lands relative to the coroutine's park.
        for _ in 0..(i * 7919) % 4000 {
            std::hint::spin_loop();
        }
        l.stop();
        if rx.recv_timeout(WAIT).is_err() {
            hung += 1;
            break;
        }
    }
    assert_eq!(hung, 0, "an accept stayed parked after stop()");
}

#[test]
fn stop_wakes_a_plain_thread_blocked_in_accept() {
    let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    let (tx, rx) = mpsc::channel();
    let l2 = l.clone();
    let (ready_tx, ready) = mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        ready_tx.send(unsafe { libc::gettid() }).unwrap();
        let _ = tx.send(l2.accept().map(drop));
    });
    let tid = ready.recv().unwrap();
    // Stop only once the thread sleeps in poll(2), past its first look at `stopped`.
    let end = Instant::now() + WAIT;
    while !sleeping(tid) {
        assert!(Instant::now() < end, "the thread never blocked in accept");
        std::thread::yield_now();
    }
    l.stop();
    let r = rx
        .recv_timeout(WAIT)
        .expect("stop() reached the blocked thread");
    assert!(r.is_err(), "the accept failed as stopped");
}

/// Whether thread `tid` of this process is asleep in a system call.
fn sleeping(tid: libc::pid_t) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    let syscall =
        std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).unwrap_or_default();
    // 7 is poll(2) on x86_64; ppoll may be used elsewhere, so accept any sleeping syscall.
    state == Some('S') && !syscall.starts_with("running")
}
