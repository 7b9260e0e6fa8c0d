//! `Config::pool_stacks` bounds the stacks a worker keeps after a burst. In its own test
//! binary: it counts this process's stack mappings in `/proc/self/maps`, which other tests'
//! mappings running alongside in one process disturbed (a neighbouring read-write mapping
//! merged with a stack's: 39 of 40 counted).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zmaster_coro::{Config, Scheduler, yield_now};

const SIZE: usize = 196 * 1024;
const WAIT: Duration = Duration::from_secs(30);

/// Read-write mappings of exactly `SIZE` bytes holding one of `addrs` (an address on each
/// of this test's coroutine stacks; the guard page is a separate, inaccessible mapping):
/// the test's stacks still mapped, resident or released, whatever other tests map.
fn stacks_mapped(addrs: &Mutex<Vec<usize>>) -> usize {
    let addrs = addrs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|p| p.starts_with("rw"))
        })
        .filter_map(|l| l.split_whitespace().next()?.split_once('-'))
        .filter_map(|(a, b)| {
            Some((
                usize::from_str_radix(a, 16).ok()?,
                usize::from_str_radix(b, 16).ok()?,
            ))
        })
        .filter(|&(a, b)| b - a == SIZE && addrs.iter().any(|&x| (a..b).contains(&x)))
        .count()
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let end = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn pool_stacks_bounds_the_stacks_kept_after_a_burst() {
    const LIVE: usize = 40;
    const KEEP: usize = 5;
    let sched = Scheduler::start(Config {
        threads: 1,
        stack_size: SIZE,
        pool_stacks: KEEP,
    })
    .expect("scheduler");
    let (started, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let go = Arc::new(AtomicBool::new(false));
    let addrs = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..LIVE {
        let (started, finished, go) = (started.clone(), finished.clone(), go.clone());
        let addrs = addrs.clone();
        sched.handle().go(move || {
            let marker = std::hint::black_box(0u8);
            addrs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(std::ptr::addr_of!(marker) as usize);
            started.fetch_add(1, Ordering::SeqCst);
            while !go.load(Ordering::SeqCst) {
                yield_now();
            }
            finished.fetch_add(1, Ordering::SeqCst);
        });
    }
    wait_for("every coroutine to start", || {
        started.load(Ordering::SeqCst) == LIVE
    });
    assert_eq!(stacks_mapped(&addrs), LIVE, "one stack per live coroutine");
    go.store(true, Ordering::SeqCst);
    wait_for("every coroutine to finish", || {
        finished.load(Ordering::SeqCst) == LIVE && sched.live_coroutines() == 0
    });
    // Before `pool_stacks` reached the workers' pools, all 40 stayed mapped (limit 256).
    let end = Instant::now() + WAIT;
    while stacks_mapped(&addrs) != KEEP {
        assert!(
            Instant::now() < end,
            "{} stacks of this test still mapped after the burst, expected {KEEP}",
            stacks_mapped(&addrs)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
