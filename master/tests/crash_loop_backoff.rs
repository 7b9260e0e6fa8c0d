//! A service whose server dies at once is restarted with exponential backoff, not in a loop;
//! the backoff rises once per round of starts; a server that detaches at start-up is throttled
//! the same way.

mod util;

use std::time::{Duration, Instant};

use util::*;

fn crash_exits(master: &Master, service: &str) -> usize {
    master
        .log_text()
        .matches(&format!("service={service} pid="))
        .count()
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

/// Observes `check` every 50 ms for `period`; panics as soon as it fails.
fn hold_for(period: Duration, what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let end = Instant::now() + period;
    while Instant::now() < end {
        if let Err(seen) = check() {
            panic!("{what} stopped holding: {seen}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_crashing_service_is_started_only_a_handful_of_times_in_ten_seconds() {
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
    let probe = |m: &Master| {
        m.children()
            .into_iter()
            .filter(|k| exe_name(*k) == "zmaster-probe")
            .collect::<Vec<_>>()
    };
    let good = wait_for(Duration::from_secs(5), "the healthy child", || {
        probe(&master).first().copied()
    });
    // Starts at 0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3 s: at most 7 in 10 s (8 allows for slow CI).
    hold_for(Duration::from_secs(10), "at most 8 crash exits", || {
        let n = crash_exits(&master, "crash");
        if n <= 8 {
            Ok(())
        } else {
            Err(format!("{n} exits:\n{}", master.log_text()))
        }
    });
    assert!(crash_exits(&master, "crash") >= 5, "{}", master.log_text());
    assert!(
        master.log_text().contains("restarting in 1.6s"),
        "{}",
        master.log_text()
    );
    // The healthy service was never disturbed, and the master did not spin.
    assert_eq!(probe(&master), [good]);
    let cpu = master_cpu_seconds(master.pid());
    assert!(
        cpu < 0.5,
        "the master used {cpu} s of CPU during a crash loop"
    );
}

#[test]
fn children_crashing_in_one_round_raise_the_backoff_once() {
    let s = Setup::new();
    s.write_cf(
        "crash",
        &format!(
            "server-command = /bin/false\nserver-service = 127.0.0.1:{}\nserver-proc-count = 5\n",
            free_port()
        ),
    );
    let master = s.start_master(&[]);
    // Two rounds of five: the delay is 100 ms after the first, 200 ms after the second; per-exit
    // doubling would have reached 30 s.
    wait_for(Duration::from_secs(10), "ten crash exits", || {
        (crash_exits(&master, "crash") >= 10).then_some(())
    });
    let log = master.log_text();
    for line in log.lines().filter(|l| l.contains("service=crash")).take(10) {
        let delay = line.rsplit_once("restarting in ").map_or("", |(_, d)| d);
        // Durations as people read them (`12ms`, `1.6s`), not Debug's `0.012345s` / `0ns`.
        let lived = line
            .split_once(" after ")
            .and_then(|(_, rest)| rest.split_once(';'))
            .map_or("", |(d, _)| d);
        for d in [delay, lived] {
            let decimals = d.split_once('.').map_or(0, |(_, f)| f.len() - 1);
            assert!(
                !d.ends_with("ns") && !d.ends_with("µs") && decimals <= 1,
                "not a human duration {d:?}: {line}"
            );
        }
        let ms: f64 = match delay.strip_suffix("ms") {
            Some(ms) => ms.parse().unwrap(),
            None => delay.strip_suffix('s').unwrap().parse::<f64>().unwrap() * 1000.0,
        };
        assert!(ms <= 200.0, "delay {delay} after one or two rounds:\n{log}");
    }
}

#[test]
fn a_server_that_detaches_at_start_up_is_throttled() {
    let s = Setup::new();
    let script = s.path("detacher.sh");
    std::fs::write(&script, "#!/bin/sh\nexec 4<&-\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    s.write_cf(
        "detacher",
        &format!(
            "server-command = {}\nserver-service = 127.0.0.1:{}\n",
            script.display(),
            free_port()
        ),
    );
    let master = s.start_master(&[]);
    wait_for(Duration::from_secs(5), "the first detach", || {
        master
            .log_text()
            .contains("detached from the master")
            .then_some(())
    });
    // Without the backoff this forks ~20 processes a second; with it, 0, 0.1, 0.3, 0.7, 1.5 s.
    hold_for(
        Duration::from_secs(2),
        "at most 7 detached processes",
        || {
            let n = master.children().len();
            if n <= 7 {
                Ok(())
            } else {
                Err(format!("{n} children"))
            }
        },
    );
    // And it is restarted: the starts at 0, 0.1, 0.3, 0.7, 1.5 s have all happened by now (a
    // master that never replaced a detached child would stay at 1).
    wait_for(Duration::from_secs(10), "at least 5 processes", || {
        (master.children().len() >= 5).then_some(())
    });
}
