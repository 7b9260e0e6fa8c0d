//! Coroutine scheduler behaviour: spawning, yielding, sleeping, panics, thread affinity,
//! spawn_blocking, the coroutine mutex and shutdown.

mod util;

use util::sched;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zmaster_coro::{self as coroutine, Scheduler, sync};

/// Coroutine stack size of this file's schedulers (0: the default).
const STACK: usize = 64 * 1024;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn spawn_from_thread_and_from_coroutine() {
    let s = sched(2, STACK);
    let (tx, rx) = mpsc::channel();
    s.handle().go(move || {
        for i in 0..100 {
            let tx = tx.clone();
            coroutine::go(move || tx.send(i).unwrap());
        }
    });
    let mut got: Vec<i32> = (0..100).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    s.shutdown();
}

#[test]
fn workers_are_named_threads() {
    let s = sched(3, STACK);
    assert_eq!(s.threads(), 3);
    let (tx, rx) = mpsc::channel();
    for _ in 0..30 {
        let tx = tx.clone();
        s.handle().go(move || {
            let name = std::thread::current().name().map(str::to_owned);
            tx.send(name).unwrap();
        });
    }
    for _ in 0..30 {
        let name = rx.recv_timeout(WAIT).unwrap().unwrap();
        assert!(name.starts_with("zm-coro-"), "{name}");
    }
}

#[test]
fn started_coroutine_never_changes_thread() {
    let s = sched(2, STACK);
    let (tx, rx) = mpsc::channel();
    let n = 200;
    for _ in 0..n {
        let tx = tx.clone();
        s.handle().go(move || {
            let first = std::thread::current().id();
            let mut moved = false;
            for i in 0..200 {
                if i % 3 == 0 {
                    coroutine::sleep(Duration::from_micros(50));
                } else {
                    coroutine::yield_now();
                }
                moved |= std::thread::current().id() != first;
            }
            tx.send(moved).unwrap();
        });
    }
    for _ in 0..n {
        assert!(!rx.recv_timeout(WAIT).unwrap(), "a coroutine migrated");
    }
}

#[test]
fn yield_interleaves_on_one_thread() {
    let s = sched(1, STACK);
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let gate = Arc::new(AtomicUsize::new(0));
    for id in 0..2 {
        let (log, tx, gate) = (log.clone(), tx.clone(), gate.clone());
        s.handle().go(move || {
            gate.fetch_add(1, Ordering::SeqCst);
            while gate.load(Ordering::SeqCst) < 2 {
                coroutine::yield_now();
            }
            for _ in 0..3 {
                log.lock().unwrap().push(id);
                coroutine::yield_now();
            }
            tx.send(()).unwrap();
        });
    }
    rx.recv_timeout(WAIT).unwrap();
    rx.recv_timeout(WAIT).unwrap();
    let log = log.lock().unwrap().clone();
    // Strict alternation: each yield hands over to the other coroutine.
    assert!(log.windows(2).all(|w| w[0] != w[1]), "{log:?}");
}

#[test]
fn sleep_is_roughly_accurate() {
    let s = sched(2, STACK);
    let (tx, rx) = mpsc::channel();
    for ms in [1u64, 20, 50] {
        let tx = tx.clone();
        s.handle().go(move || {
            let t = Instant::now();
            coroutine::sleep(Duration::from_millis(ms));
            tx.send((ms, t.elapsed())).unwrap();
        });
    }
    for _ in 0..3 {
        let (ms, took) = rx.recv_timeout(WAIT).unwrap();
        assert!(
            took >= Duration::from_millis(ms),
            "slept {took:?} < {ms} ms"
        );
        assert!(
            took < Duration::from_millis(ms) + Duration::from_secs(5),
            "{took:?}"
        );
    }
}

#[test]
fn panic_ends_only_that_coroutine() {
    let s = sched(1, STACK);
    let (tx, rx) = mpsc::channel();
    s.handle().go(|| panic!("deliberate test panic"));
    let tx2 = tx.clone();
    s.handle().go(move || {
        coroutine::yield_now();
        tx2.send("alive").unwrap();
    });
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "alive");
    // The worker survived the panic: it still runs new coroutines.
    s.handle().go(move || tx.send("after").unwrap());
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "after");
    let deadline = Instant::now() + WAIT;
    while s.live_coroutines() != 0 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(s.live_coroutines(), 0);
}

#[test]
fn live_count_tracks_parked_coroutines_and_shutdown_drops_them() {
    let s = sched(2, STACK);
    let (tx, rx) = mpsc::channel::<()>();
    let dropped = Arc::new(AtomicUsize::new(0));
    struct OnDrop(Arc<AtomicUsize>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let (_keep_tx, keep_rx) = sync::chan::unbounded::<()>();
    for _ in 0..10 {
        let (tx, keep_rx, d) = (tx.clone(), keep_rx.clone(), OnDrop(dropped.clone()));
        s.handle().go(move || {
            let _d = d;
            tx.send(()).unwrap();
            let _ = keep_rx.recv(); // parks forever
        });
    }
    for _ in 0..10 {
        rx.recv_timeout(WAIT).unwrap();
    }
    assert_eq!(s.live_coroutines(), 10);
    s.shutdown();
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        10,
        "parked coroutines unwound"
    );
}

#[test]
#[should_panic(expected = "outside a coroutine")]
fn go_outside_a_coroutine_panics() {
    coroutine::go(|| {});
}

#[test]
fn spawn_blocking_runs_off_the_worker() {
    let s = sched(1, STACK);
    let (tx, rx) = mpsc::channel();
    s.handle().go(move || {
        let me = std::thread::current().id();
        let (v, other) = coroutine::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(10));
            (42, std::thread::current().id())
        });
        tx.send((v, me != other)).unwrap();
    });
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), (42, true));
    // Outside a coroutine it just runs inline.
    assert_eq!(coroutine::spawn_blocking(|| 7), 7);
}

#[test]
fn mutex_parks_coroutines_and_excludes() {
    let s = sched(2, STACK);
    let m = Arc::new(sync::Mutex::new(0u64));
    let (tx, rx) = mpsc::channel();
    let n = 50;
    for _ in 0..n {
        let (m, tx) = (m.clone(), tx.clone());
        s.handle().go(move || {
            for _ in 0..100 {
                let mut g = m.lock();
                let v = *g;
                coroutine::yield_now(); // hold the lock across a yield
                *g = v + 1;
            }
            tx.send(()).unwrap();
        });
    }
    // A plain thread contends too (it blocks).
    for _ in 0..100 {
        *m.lock() += 1;
    }
    for _ in 0..n {
        rx.recv_timeout(WAIT).unwrap();
    }
    assert_eq!(*m.lock(), n * 100 + 100);
}

#[test]
fn many_coroutines_spread_over_workers() {
    let s = sched(2, STACK);
    let (tx, rx) = mpsc::channel();
    let h = s.handle();
    for _ in 0..2000 {
        let tx = tx.clone();
        h.go(move || {
            coroutine::sleep(Duration::from_millis(1));
            tx.send(std::thread::current().name().map(str::to_owned))
                .unwrap();
        });
    }
    let names: HashSet<_> = (0..2000).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
    assert!(!names.is_empty());
    assert!(coroutine::current_id().is_none());
}

#[test]
fn public_types_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<coroutine::Handle>();
    send::<Scheduler>();
    send_sync::<coroutine::net::TcpStream>();
    send_sync::<coroutine::net::TcpListener>();
    send_sync::<coroutine::net::UnixStream>();
    send_sync::<coroutine::net::UnixListener>();
    send_sync::<sync::Mutex<Vec<u8>>>();
    send_sync::<sync::chan::Sender<String>>();
    send_sync::<sync::chan::Receiver<String>>();
}

#[test]
fn handle_from_inside_and_thread_locals_stay_put() {
    thread_local! {
        static MARK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    let s = sched(2, STACK);
    let (tx, rx) = mpsc::channel();
    s.handle().go(move || {
        let h = coroutine::Handle::try_current().expect("inside a coroutine");
        let id = coroutine::current_id().expect("has an id");
        MARK.set(id);
        let tx2 = tx.clone();
        h.go(move || tx2.send(coroutine::in_coroutine()).unwrap());
        for _ in 0..100 {
            coroutine::yield_now();
            coroutine::sleep(Duration::from_micros(10));
        }
        // No migration: the thread-local written before the yields is still ours (no other
        // coroutine in this test writes MARK).
        tx.send(MARK.get() == id).unwrap();
    });
    assert!(rx.recv_timeout(WAIT).unwrap());
    assert!(rx.recv_timeout(WAIT).unwrap());
    assert!(coroutine::Handle::try_current().is_none());
}
