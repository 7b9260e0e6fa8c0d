//! 20 binary upgrades in a row (SPEC §14) leak no fd and no process: every master in the chain
//! holds the same fds (by kind) once its predecessor is gone, every predecessor and its
//! children are gone, and the last master still serves and stops cleanly.

mod upgrade_util;
mod util;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use upgrade_util::*;
use util::*;

const ROUNDS: usize = 20;

/// The master's fds once it settled (one child serving, no upgrade going on): what each
/// one is, in fd order.
fn settled_fds(master: i32) -> Vec<String> {
    wait_for(Duration::from_secs(10), "the master to settle", || {
        (children_of(master).len() == 1).then_some(())
    });
    let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{master}/fd"))
        .expect("fds")
        .filter_map(|e| {
            let e = e.ok()?;
            let fd = e.file_name().to_str()?.parse().ok()?;
            let what = std::fs::read_link(e.path()).ok()?.display().to_string();
            // Sockets and pipes differ by inode from master to master: keep the kind.
            Some((fd, what.split(':').next().unwrap_or_default().to_owned()))
        })
        .collect();
    fds.sort();
    fds.into_iter().map(|(_, what)| what).collect()
}

#[test]
fn twenty_upgrades_in_a_row_leak_no_fd_and_no_process() {
    become_subreaper();
    let s = Setup::new();
    let port = free_port();
    s.probe_service("probe", &format!("127.0.0.1:{port}"), 1, "");
    let program = copy_master(&s);
    let pid_file = s.path("m.pid");
    let mut first = start_master_from(
        &s,
        &program,
        &[
            "-pid-file",
            pid_file.to_str().expect("utf-8"),
            "-master-upgrade-timeout",
            "10s",
        ],
    );
    let mut masters = Masters::default();
    masters.0.push(first.pid());
    wait_for(Duration::from_secs(10), "the probe", || {
        ask_tcp(port, "up").ok()
    });
    wait_for(Duration::from_secs(10), "the pid file", || {
        (read_pid(&pid_file) == Some(first.pid())).then_some(())
    });
    // The first master also holds what the test process left open to it (marked close-on-exec
    // at start, so no successor gets them): the chain is compared with the first successor.
    let started = settled_fds(first.pid());
    let mut fds: Vec<String> = Vec::new();
    let mut current = first.pid();
    let mut gone_pids = Vec::new();
    let t0 = Instant::now();
    for round in 0..ROUNDS {
        let old_kids = children_of(current);
        signal(current, Signal::SIGUSR2);
        let new = wait_new_master(&pid_file, current, &first);
        masters.0.push(new);
        if round == 0 {
            assert_eq!(first.wait_exit(Duration::from_secs(20)), Some(0));
        } else {
            wait_gone(current, Duration::from_secs(20));
        }
        gone_pids.push(current);
        gone_pids.extend(old_kids);
        let mut now = settled_fds(new);
        now.sort();
        if round == 0 {
            assert!(now.len() <= started.len(), "{now:?} vs {started:?}");
            fds = now;
        } else {
            // A leak stays; a pipe of a spawn in progress (std's exec-status pipe until the
            // child's exec) goes: look again for a while before calling it a leak.
            let deadline = Instant::now() + Duration::from_secs(5);
            while now != fds && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                now = settled_fds(new);
                now.sort();
            }
            assert_eq!(
                now,
                fds,
                "round {round}: master {new}\n{}",
                first.log_text()
            );
        }
        current = new;
    }
    let took = t0.elapsed();
    assert!(
        gone_pids.iter().all(|p| !is_alive(*p)),
        "a process of an old generation is left"
    );
    let reply = ask_tcp(port, "last").expect("the last master serves");
    assert!(children_of(current).contains(&reply_pid(&reply)));
    assert_eq!(read_pid(&pid_file), Some(current));
    eprintln!(
        "{ROUNDS} upgrades took {took:?}; every master held {} fds",
        fds.len()
    );
    signal(current, Signal::SIGTERM);
    wait_gone(current, Duration::from_secs(20));
    assert_eq!(zmaster::try_lock(&pid_file), zmaster::LockState::NotRunning);
    assert!(!s.path("m.pid.ctl").exists());
}
