//! SPEC §13 `server-max-use` under the master: 2 processes retiring after 1..5 connections
//! (`server-max-use = 1`, jitter 4) serve at least 1,000 connect/echo/close round trips, and
//! on until 20 were replaced, with zero failures; the status says `retired (max-use)` and the
//! service never backs off (a retirement is never a young death).
//!
//! The server checks its count every 5 ms while connections arrive (100 ms when quiet), so a
//! busy process overshoots its max-use by what it accepts in that time; the test prints the
//! connections per process life it saw.

mod lifecycle_util;
mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use lifecycle_util::{echo_servers, echo_service, service, status};
use util::{Setup, ask_unix, wait_for};

const ROUND_TRIPS: usize = 1_000;
const CLIENTS: usize = 4;
const RECYCLES: u64 = 20;

#[test]
fn max_use_recycles_without_a_failure_or_a_backoff() {
    let [echo, _] = echo_servers();
    let setup = Setup::new();
    let sock = echo_service(
        &setup,
        &echo,
        2,
        "server-max-use = 1\nserver-max-use-jitter = 4\n",
    );
    let control = setup.path("m.ctl");
    let master = setup.start_master(&["-control", control.to_str().unwrap()]);
    wait_for(
        Duration::from_secs(20),
        "the echo service to answer",
        || (ask_unix(&sock, "hi").ok()? == "hi").then_some(()),
    );
    let before = service(&status(&control), "echo")["restarts"]
        .as_u64()
        .unwrap_or(0);

    // The status is watched while the load runs: a backoff, however short, is seen.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (done, control) = (Arc::clone(&done), control.clone());
        thread::spawn(move || {
            let mut backoffs = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let now = status(&control);
                let echo = service(&now, "echo");
                if echo["state"] != "running" || echo["backoff_ms"] != 0 {
                    backoffs.push(echo.to_string());
                }
                thread::sleep(Duration::from_millis(10));
            }
            backoffs
        })
    };
    let started = Instant::now();
    let trips = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (sock, done, trips) = (sock.clone(), Arc::clone(&done), Arc::clone(&trips));
            thread::spawn(move || {
                let mut failures = Vec::new();
                let mut i = 0;
                while !done.load(Ordering::Relaxed) {
                    let line = format!("c{c} #{i}");
                    match ask_unix(&sock, &line) {
                        Ok(answer) if answer == line => {}
                        other => failures.push(format!("{line}: {other:?}")),
                    }
                    trips.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                failures
            })
        })
        .collect();
    // At least ROUND_TRIPS, and on until RECYCLES processes were replaced under the load.
    wait_for(Duration::from_secs(60), "round trips and recycles", || {
        let restarts = service(&status(&control), "echo")["restarts"].as_u64()?;
        (trips.load(Ordering::Relaxed) >= ROUND_TRIPS && restarts - before >= RECYCLES)
            .then_some(())
    });
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client thread"))
        .collect();
    let trips = trips.load(Ordering::Relaxed);
    let backoffs = watcher.join().expect("status watcher");

    let now = status(&control);
    let echo = service(&now, "echo");
    let recycles = echo["restarts"].as_u64().unwrap_or(0) - before;
    println!(
        "{trips} round trips in {elapsed:?}: {} failures, {recycles} recycles \
         ({:.1} recycles/s, {} connections per process), last exit: {}",
        failures.len(),
        recycles as f64 / elapsed.as_secs_f64(),
        trips as u64 / recycles.max(1),
        echo["last_exit"]
    );
    let log = master.log_text();
    assert!(failures.is_empty(), "{failures:?}\n{log}");
    assert!(
        backoffs.is_empty(),
        "the service backed off: {backoffs:?}\n{log}"
    );
    let reason = wait_for(Duration::from_secs(20), "a retired child's exit", || {
        let now = status(&control);
        let reason = service(&now, "echo")["last_exit"]["reason"]
            .as_str()?
            .to_owned();
        reason.starts_with("retired (max-use), ").then_some(reason)
    });
    assert_eq!(reason, "retired (max-use), exit status 0");
    // Every replacement started at once, whether the master saw the detach or, for one that
    // had no connection left to finish, the exit first.
    let replaced: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("replacement in ") || l.contains("restarting in "))
        .collect();
    assert!(
        replaced.len() as u64 >= recycles,
        "{recycles} recycles, {replaced:?}"
    );
    let delayed: Vec<&&str> = replaced.iter().filter(|l| !l.ends_with(" in 0s")).collect();
    assert!(delayed.is_empty(), "delayed replacements: {delayed:?}");
    assert!(
        replaced.iter().all(|l| l.contains("retired")),
        "a child left without its reason: {replaced:?}"
    );
}
