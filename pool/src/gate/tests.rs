//! Unit tests of the connection gate: counting, the limit, waiters, idle tracking.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::ConnGate;

fn wake_counter(gate: &ConnGate) -> (Arc<AtomicUsize>, super::LimitWaiter<'_>) {
    let woken = Arc::new(AtomicUsize::new(0));
    let w = Arc::clone(&woken);
    let waiter = gate.waiter(move || {
        w.fetch_add(1, Ordering::SeqCst);
    });
    (woken, waiter)
}

#[test]
fn no_limit_unless_positive() {
    for off in [None, Some(0)] {
        let gate = ConnGate::new(off);
        assert_eq!(gate.max_connections(), None, "{off:?}");
        for _ in 0..1000 {
            gate.enter();
        }
        assert!(!gate.at_limit(), "{off:?}");
    }
    assert_eq!(ConnGate::new(Some(3)).max_connections(), Some(3));
}

#[test]
fn counts_and_limit() {
    let gate = ConnGate::new(Some(2));
    assert_eq!((gate.active(), gate.accepted_total()), (0, 0));
    assert!(!gate.at_limit());
    gate.enter();
    assert!(!gate.at_limit(), "1 of 2");
    let guard = gate.guard();
    assert!(gate.at_limit(), "2 of 2");
    assert_eq!((gate.active(), gate.accepted_total()), (2, 2));
    gate.enter();
    assert!(
        gate.at_limit(),
        "above the limit (counted elsewhere) is at it too"
    );
    gate.release();
    drop(guard);
    assert_eq!(gate.active(), 1);
    assert!(!gate.at_limit());
    assert_eq!(gate.accepted_total(), 3, "releases do not lower the total");
    assert!(format!("{gate:?}").contains("active: 1"));
}

#[test]
fn a_release_below_the_limit_wakes_waiters_until_they_are_dropped() {
    let gate = ConnGate::new(Some(2));
    for _ in 0..3 {
        gate.enter();
    }
    let (woken, waiter) = wake_counter(&gate);
    let (woken2, waiter2) = wake_counter(&gate);
    gate.release();
    assert_eq!(
        woken.load(Ordering::SeqCst),
        0,
        "3 -> 2: still at the limit"
    );
    gate.release();
    assert_eq!(woken.load(Ordering::SeqCst), 1, "2 -> 1: below");
    assert_eq!(woken2.load(Ordering::SeqCst), 1, "every waiter");
    drop(waiter2);
    gate.release();
    assert_eq!(woken.load(Ordering::SeqCst), 2, "1 -> 0: still below");
    assert_eq!(
        woken2.load(Ordering::SeqCst),
        1,
        "a dropped waiter is not woken"
    );
    drop(waiter);
    gate.enter();
    gate.enter();
    gate.release();
    assert_eq!(woken.load(Ordering::SeqCst), 2, "no waiter left");
}

#[test]
fn without_a_limit_waiters_are_still_woken() {
    let gate = ConnGate::new(None);
    gate.enter();
    let (woken, _waiter) = wake_counter(&gate);
    gate.release();
    // A release with no limit leaves the count below it: waiters (if any) are woken.
    assert_eq!(woken.load(Ordering::SeqCst), 1);
}

#[test]
fn last_accept_and_idle_since() {
    let before = Instant::now();
    let gate = ConnGate::new(None);
    assert_eq!(gate.last_accept(), None);
    let idle = gate.idle_since().expect("idle from the start");
    let ms = Duration::from_millis(1);
    assert!(idle + ms >= before && idle <= Instant::now(), "{idle:?}");

    // Let the clock move past the creation time (polled, not assumed).
    while Instant::now() < before + 5 * ms {
        std::thread::sleep(ms);
    }
    let t_accept = Instant::now();
    let guard = gate.guard();
    let accepted = gate.last_accept().expect("accepted");
    assert!(accepted + ms >= t_accept && accepted <= Instant::now());
    assert_eq!(gate.idle_since(), None, "a connection is open");

    while Instant::now() < t_accept + 5 * ms {
        std::thread::sleep(ms);
    }
    let t_close = Instant::now();
    drop(guard);
    let idle = gate.idle_since().expect("idle again");
    assert!(
        idle + ms >= t_close && idle <= Instant::now(),
        "idle since the close"
    );
    assert!(idle > accepted, "the close, not the accept");

    // A close stamped earlier than the last accept (another thread's older clock read):
    // idle counts from the accept.
    gate.enter();
    gate.release_at(before);
    assert!(gate.idle_since().expect("idle") >= gate.last_accept().expect("accepted"));
}

#[test]
fn wait_idle_returns_when_the_last_connection_closes() {
    let gate = ConnGate::new(None);
    assert!(gate.wait_idle(None), "idle already");
    gate.enter();
    gate.enter();
    assert!(!gate.wait_idle(Some(Instant::now() + Duration::from_millis(10))));
    let g = Arc::clone(&gate);
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(nix::unistd::gettid());
        g.wait_idle(None)
    });
    let tid = rx.recv().expect("waiter tid");
    // Release only once the waiter sleeps in `wait_idle` (state S), so the wake-up at zero
    // is what ends its wait.
    let stat = format!("/proc/self/task/{tid}/stat");
    loop {
        let s = std::fs::read_to_string(&stat).expect("waiter stat");
        if s[s.rfind(')').expect("comm end") + 2..].starts_with('S') {
            break;
        }
        std::thread::yield_now();
    }
    gate.release();
    gate.release();
    assert!(t.join().expect("waiter thread"), "woken at zero");
}

#[test]
fn the_accept_budget_stops_the_gate_for_good() {
    for off in [None, Some(0)] {
        let gate = ConnGate::with_limits(None, off);
        for _ in 0..1000 {
            gate.enter();
        }
        assert!(!gate.at_limit() && !gate.budget_spent(), "{off:?}");
    }
    let gate = ConnGate::with_limits(Some(10), Some(3));
    gate.enter();
    gate.enter();
    assert!(!gate.at_limit() && !gate.budget_spent(), "2 of 3 accepts");
    gate.release();
    gate.enter();
    assert!(gate.budget_spent(), "3 of 3 accepts, one already closed");
    assert!(gate.at_limit(), "the acceptor must pause with 2 open of 10");
    gate.release();
    gate.release();
    assert_eq!(gate.active(), 0);
    assert!(gate.at_limit(), "no release reopens a spent budget");
    // The open-connection limit still works beside it.
    let both = ConnGate::with_limits(Some(1), Some(5));
    both.enter();
    assert!(both.at_limit() && !both.budget_spent());
}

#[test]
fn the_spent_budget_hook_runs_on_the_spending_enter_or_at_once() {
    let gate = ConnGate::with_limits(None, Some(2));
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    gate.on_budget_spent(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    gate.enter();
    assert_eq!(runs.load(Ordering::SeqCst), 0, "1 of 2");
    gate.enter();
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the spending enter runs it");
    gate.enter();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "once, not on every later enter"
    );
    // Installed after the budget was spent: runs at once.
    let late = ConnGate::with_limits(None, Some(1));
    late.enter();
    let r = Arc::clone(&runs);
    late.on_budget_spent(move || {
        r.fetch_add(10, Ordering::SeqCst);
    });
    assert_eq!(runs.load(Ordering::SeqCst), 11);
    // No budget: never.
    let none = ConnGate::new(None);
    let r = Arc::clone(&runs);
    none.on_budget_spent(move || {
        r.fetch_add(100, Ordering::SeqCst);
    });
    for _ in 0..10 {
        none.enter();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 11);
}
