//! A service whose server dies at once is restarted with exponential backoff, not in a loop.

mod util;

use std::time::{Duration, Instant};

use util::*;

#[test]
fn a_crashing_service_is_started_only_a_handful_of_times() {
    let s = Setup::new();
    s.write_cf(
        "crash",
        &format!(
            "server-command = /bin/false\nserver-service = 127.0.0.1:{}\n",
            free_port()
        ),
    );
    s.probe_service("good", &format!("127.0.0.1:{}", free_port()), 1, "");
    let master = s.start_master(&[]);
    let started = Instant::now();
    let probe = |m: &Master| {
        m.children()
            .into_iter()
            .filter(|k| exe_name(*k) == "zmaster-probe")
            .collect::<Vec<_>>()
    };
    let good = wait_for(Duration::from_secs(5), "the healthy child", || {
        probe(&master).first().copied()
    });
    // Starts at 0, 0.1, 0.3, 0.7, 1.5, 3.1 s: wait for the fifth exit, then look at the count.
    wait_for(Duration::from_secs(10), "five crash exits", || {
        (master.log_text().matches("service=crash pid=").count() >= 5).then_some(())
    });
    let exits = |text: &str| text.matches("service=crash pid=").count();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(700),
        "five crashes after only {elapsed:?}: no backoff"
    );
    let log = master.log_text();
    assert!(
        log.contains("restarting in 1.6s") || log.contains("restarting in 800ms"),
        "{log}"
    );
    assert!(exits(&log) <= 6, "{log}");
    // The healthy service was never disturbed.
    assert_eq!(probe(&master), [good]);
    let cpu = master_cpu_seconds(master.pid());
    assert!(
        cpu < 0.5,
        "the master used {cpu} s of CPU during a crash loop"
    );
}

fn master_cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}
