//! Coroutine scheduler micro-benchmarks: spawn+run+finish, yield round trip / switch, channel
//! ping-pong. Prints one line per measurement. Echo load over sockets is `zstress bench`'s
//! job (one harness), not this file's.
//!
//! Run: `cargo bench -p zmaster-modes --bench coroutine_bench` (optional args: a filter
//! substring).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zmaster_modes::coroutine::sync::chan;
use zmaster_modes::coroutine::{self, Config, Scheduler};

fn sched(threads: usize) -> Scheduler {
    Scheduler::start(Config {
        threads,
        stack_size: 0,
        ..Config::default()
    })
    .expect("start scheduler")
}

fn report(name: &str, total: Duration, n: usize) {
    let per = total.as_nanos() as f64 / n as f64;
    println!("{name:<44} {per:>10.1} ns/op  ({n} ops in {total:.2?})");
}

/// Like `report`, adding the worker thread's CPU time per op (robust against the machine
/// being busy with other processes: preemption does not count).
fn report_cpu(name: &str, (wall, cpu): (Duration, Duration), n: usize) {
    let per = wall.as_nanos() as f64 / n as f64;
    let per_cpu = cpu.as_nanos() as f64 / n as f64;
    println!("{name:<44} {per:>10.1} ns/op  cpu {per_cpu:>7.1} ns/op  ({n} ops in {wall:.2?})");
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
    let tv =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    tv(u.user_time()) + tv(u.system_time())
}

/// Runs `body` in a coroutine; returns the wall time and the worker thread's CPU time it took
/// (meaningful when all the work stays on that worker: one worker thread).
fn in_coroutine(s: &Scheduler, body: impl FnOnce() + Send + 'static) -> (Duration, Duration) {
    let (tx, rx) = mpsc::channel();
    s.handle().go(move || {
        let (t, c) = (Instant::now(), thread_cpu());
        body();
        tx.send((t.elapsed(), thread_cpu() - c)).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("benchmark timed out")
}

fn spawn_run_finish(threads: usize, n: usize) {
    let s = sched(threads);
    // Warm the stack pools.
    for _ in 0..2 {
        in_coroutine(&s, move || spawn_batch(n));
    }
    let took = in_coroutine(&s, move || spawn_batch(n));
    if threads == 1 {
        report_cpu("spawn+run+finish (in coroutine, 1 thr)", took, n);
    } else {
        let name = format!("spawn+run+finish (in coroutine, {threads} thr)");
        report(&name, took.0, n);
    }
}

/// Spawns `n` coroutines in waves of 64 (spawn 64, park until the last one finishes), so the
/// measurement is the steady state: pooled stacks, short queues, one wake-up per wave.
fn spawn_batch(n: usize) {
    let (tx, rx) = chan::unbounded::<()>();
    let mut spawned = 0;
    while spawned < n {
        let wave = (n - spawned).min(64);
        let wave_state = Arc::new((AtomicUsize::new(wave), tx.clone()));
        for _ in 0..wave {
            let st = wave_state.clone();
            coroutine::go(move || {
                if st.0.fetch_sub(1, Ordering::Relaxed) == 1 {
                    st.1.send(()).unwrap();
                }
            });
        }
        spawned += wave;
        rx.recv().unwrap();
    }
}

fn spawn_from_thread(threads: usize, n: usize) {
    let s = sched(threads);
    let mut took = Duration::ZERO;
    for _ in 0..3 {
        let done = Arc::new(AtomicUsize::new(0));
        let h = s.handle();
        let t = Instant::now();
        for _ in 0..n {
            let done = done.clone();
            h.go(move || {
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
        while done.load(Ordering::Relaxed) < n {
            std::hint::spin_loop();
        }
        took = t.elapsed();
    }
    report(
        &format!("Handle::go from a thread (+run, {threads} thr)"),
        took,
        n,
    );
}

/// Baseline: a bare corosensei resume + suspend, no scheduler.
fn raw_switch(n: usize) {
    let mut co = corosensei::Coroutine::new(move |y: &corosensei::Yielder<(), ()>, ()| {
        loop {
            y.suspend(());
        }
    });
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(co.resume(()));
    }
    report("raw corosensei resume+suspend (baseline)", t.elapsed(), n);
}

fn yield_round_trip(n: usize) {
    raw_switch(n);
    let s = sched(1);
    let took = in_coroutine(&s, move || {
        for _ in 0..n {
            coroutine::yield_now();
        }
    });
    report_cpu("yield round trip (1 coroutine, 1 thr)", took, n);
    // Two coroutines taking turns: every yield goes through the run queue.
    let took = in_coroutine(&s, move || {
        let other_done = Arc::new(AtomicUsize::new(0));
        let flag = other_done.clone();
        coroutine::go(move || {
            for _ in 0..n / 2 {
                coroutine::yield_now();
            }
            flag.store(1, Ordering::Release);
        });
        for _ in 0..n / 2 {
            coroutine::yield_now();
        }
        while other_done.load(Ordering::Acquire) == 0 {
            coroutine::yield_now();
        }
    });
    report_cpu("yield switch (2 coroutines, 1 thr)", took, n);
}

fn chan_ping_pong(threads: usize, n: usize) {
    let s = sched(threads);
    let (a_tx, a_rx) = chan::unbounded::<u32>();
    let (b_tx, b_rx) = chan::unbounded::<u32>();
    s.handle().go(move || {
        while let Ok(v) = a_rx.recv() {
            if b_tx.send(v).is_err() {
                break;
            }
        }
    });
    let took = in_coroutine(&s, move || {
        for i in 0..n as u32 {
            a_tx.send(i).unwrap();
            b_rx.recv().unwrap();
        }
    });
    if threads == 1 {
        report_cpu("chan ping-pong round trip (1 thr)", took, n);
    } else {
        report(
            &format!("chan ping-pong round trip ({threads} thr)"),
            took.0,
            n,
        );
    }
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let want = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    if filter.as_deref() == Some("switch") {
        let s = sched(1);
        let n = 10_000_000;
        let took = in_coroutine(&s, move || {
            coroutine::go(move || {
                for _ in 0..n / 2 {
                    coroutine::yield_now();
                }
            });
            for _ in 0..n / 2 {
                coroutine::yield_now();
            }
        });
        report_cpu("yield switch (2 coroutines, 1 thr)", took, n);
        return;
    }
    if filter.as_deref() == Some("xwake") {
        // Round trips between a plain thread and a coroutine: every wake crosses threads.
        let s = sched(1);
        let (a_tx, a_rx) = chan::bounded::<u32>(1);
        let (b_tx, b_rx) = chan::bounded::<u32>(1);
        s.handle().go(move || {
            while let Ok(v) = a_rx.recv() {
                if b_tx.send(v).is_err() {
                    break;
                }
            }
        });
        let n = 20_000;
        let t = Instant::now();
        for i in 0..n as u32 {
            a_tx.send(i).unwrap();
            b_rx.recv().unwrap();
        }
        report("thread <-> coroutine round trip", t.elapsed(), n);
        return;
    }
    if filter.as_deref() == Some("spawn1") {
        spawn_run_finish(1, 1_000_000);
        return;
    }
    // Under `cargo test --all-targets` this binary is built with cfg(test): a quick smoke run.
    let k = if cfg!(test) { 100 } else { 1 };
    if want("spawn") {
        spawn_run_finish(1, 200_000 / k);
        spawn_run_finish(2, 200_000 / k);
        spawn_from_thread(1, 200_000 / k);
        spawn_from_thread(2, 200_000 / k);
    }
    if want("yield") {
        yield_round_trip(2_000_000 / k);
    }
    if want("chan") {
        chan_ping_pong(1, 200_000 / k);
        chan_ping_pong(2, 200_000 / k);
    }
}
