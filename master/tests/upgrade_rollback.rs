//! Binary upgrade rollback (SPEC §14): the binary at the master's path replaced by a script
//! that exits 1, and by one that never becomes ready. The old master kills what it started,
//! logs why and keeps serving as before (pid file, control socket, listeners, children), with
//! no request refused meanwhile; a second SIGUSR2 during an upgrade is refused with a log line.

mod upgrade_util;
mod util;

use std::time::Duration;

use nix::sys::signal::Signal;
use upgrade_util::*;
use util::*;
use zmaster::control::{self, Request};

#[test]
fn drain_server() {
    drain_server_main();
}

/// Starts the copied master on a draining service under load, swaps `replacement` in at its
/// path, sends SIGUSR2 (twice when `twice`) and waits for `failure` in the log. Checks that
/// the old master served on untouched; returns its log.
fn rolled_back(replacement: &str, timeout: &str, failure: &str, twice: bool) -> String {
    become_subreaper();
    let port = free_port();
    let s = drain_setup(port, 2);
    let mut masters = Masters::default();
    let program = copy_master(&s);
    let pid_file = s.path("m.pid");
    let args = [
        "-pid-file",
        pid_file.to_str().expect("utf-8"),
        "-master-upgrade-timeout",
        timeout,
    ];
    let mut master = start_master_from(&s, &program, &args);
    masters.0.push(master.pid());
    let kids = master.wait_children(2);
    wait_for(Duration::from_secs(10), "the servers", || {
        ask_tcp(port, "up").ok()
    });
    wait_for(Duration::from_secs(10), "the pid file", || {
        (read_pid(&pid_file) == Some(master.pid())).then_some(())
    });
    let mut long = Conn::open(port);
    let load = Load::start(port, 2);
    load.wait_more(50);

    swap_program(&program, replacement.as_bytes());
    master.signal(Signal::SIGUSR2);
    if twice {
        wait_log_line(
            &master.log,
            "SIGUSR2: upgrade: starting",
            Duration::from_secs(10),
        );
        master.signal(Signal::SIGUSR2);
        wait_log_line(
            &master.log,
            "an upgrade is already in progress",
            Duration::from_secs(10),
        );
    }
    let line = wait_log_line(&master.log, "upgrade failed", Duration::from_secs(20));
    assert!(line.contains(failure), "{line}");
    assert!(line.contains("this master keeps serving"), "{line}");
    load.wait_more(50);

    // Untouched: the same children, pid file, lock, control socket and listeners.
    assert!(is_alive(master.pid()));
    let server = long.server;
    assert_eq!(long.talk("after the rollback"), server);
    assert_eq!(master.children(), kids, "{}", master.log_text());
    assert_eq!(read_pid(&pid_file), Some(master.pid()));
    assert_eq!(zmaster::try_lock(&pid_file), zmaster::LockState::Running);
    let reply = control::request(
        &s.path("m.pid.ctl"),
        &Request::Status,
        Duration::from_secs(5),
    )
    .expect("status");
    assert_eq!(
        reply.status.expect("status").master.pid,
        master.pid() as u32
    );
    let counts = load.stop();
    assert_eq!(
        counts.failures(),
        (0, 0, 0),
        "refused/reset/short requests over the rollback:\n{}",
        master.log_text()
    );
    // And it still stops as its own: the socket files it made go.
    drop(long);
    master.signal(Signal::SIGQUIT);
    assert_eq!(master.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(!s.path("m.pid.ctl").exists());
    master.log_text()
}

#[test]
fn a_new_binary_that_exits_1_is_rolled_back() {
    let log = rolled_back("#!/bin/sh\nexit 1\n", "20s", "exit status 1", false);
    assert!(log.contains("before it was ready"), "{log}");
}

#[test]
fn a_new_binary_never_ready_is_killed_at_the_upgrade_timeout() {
    let log = rolled_back(
        "#!/bin/sh\nexec sleep 600\n",
        "1s",
        "was not ready within 1s",
        true,
    );
    assert!(log.contains("killed by SIGKILL"), "{log}");
    // No `sleep` is left behind.
    let sleeping = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| is_alive(*pid))
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains("sleep\u{0}600")
        })
        .count();
    assert_eq!(sleeping, 0);
}
