//! Signals an operator sends by habit never kill or stop the master: SIGUSR1 reopens logs,
//! SIGPIPE is ignored, and SIGTTIN/SIGTTOU add / remove one process per service until the next
//! reload. (SIGUSR2, the binary upgrade, has tests of its own: upgrade*.rs.)

mod util;

use std::time::Duration;

use nix::sys::signal::Signal;
use util::*;

/// The state letter of `/proc/PID/stat` (`S`, `R`, `T` = stopped, `Z`, ...).
fn proc_state(pid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .unwrap_or('?')
}

fn wait_log(master: &Master, line: &str) {
    wait_for(Duration::from_secs(5), line, || {
        master.log_text().contains(line).then_some(())
    });
}

#[test]
fn stray_signals_are_logged_and_the_master_keeps_serving() {
    let s = Setup::new();
    let port = free_port();
    s.probe_service("probe", &format!("127.0.0.1:{port}"), 2, "");
    let mut master = s.start_master(&[]);
    let kids = master.wait_children(2);
    wait_for(Duration::from_secs(5), "an answer", || {
        ask_tcp(port, "before").ok()
    });
    for (sig, name, line) in [
        (
            Signal::SIGUSR1,
            "SIGUSR1",
            Some("SIGUSR1: no log file open"),
        ),
        (Signal::SIGPIPE, "SIGPIPE", None),
    ] {
        master.signal(sig);
        if let Some(line) = line {
            wait_log(&master, line);
        }
        // The children answer whatever the master's state; the master must be neither dead
        // nor stopped (T).
        let reply = wait_for(Duration::from_secs(5), "an answer", || {
            ask_tcp(port, name).ok()
        });
        assert!(reply.ends_with(name), "{reply}");
        assert!(
            is_alive(master.pid()) && proc_state(master.pid()) != 'T',
            "{name} killed or stopped the master (state {}):\n{}",
            proc_state(master.pid()),
            master.log_text()
        );
    }
    assert!(
        !master
            .log_text()
            .contains("SIGUSR1 received: not implemented")
    );
    // Nothing else happened (the same children), and the supervision loop still runs: a killed
    // child is replaced, SIGTERM stops cleanly.
    assert_eq!(master.children(), kids);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(kids[0]), Signal::SIGKILL).unwrap();
    wait_for(Duration::from_secs(5), "a replacement child", || {
        let now = master.children();
        (now.len() == 2 && !now.contains(&kids[0])).then_some(())
    });
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn ttin_and_ttou_change_every_service_until_the_next_reload() {
    let s = Setup::new();
    let port = free_port();
    let dir = s.path("sock");
    s.probe_service("web", &format!("127.0.0.1:{port}"), 2, "");
    s.probe_service("mail", &format!("local:{}", dir.display()), 1, "");
    s.probe_service("idle", "local:/tmp/zm-ops-idle-never-used", 0, "");
    let mut master = s.start_master(&[]);
    let first = master.wait_children(3);
    for (sig, want) in [
        (Signal::SIGTTIN, 5),
        (Signal::SIGTTIN, 7),
        (Signal::SIGTTOU, 5),
        (Signal::SIGTTOU, 3),
        // Never below one process per service, and `idle` (0 configured) stays at zero.
        (Signal::SIGTTOU, 2),
        (Signal::SIGTTOU, 2),
    ] {
        master.signal(sig);
        master.wait_children(want);
        assert!(proc_state(master.pid()) != 'T', "{sig} stopped the master");
    }
    let log = master.log_text();
    assert!(log.contains("service=web scaled from 2 to 3"), "{log}");
    assert!(log.contains("retiring: scaled down"), "{log}");
    assert!(!log.contains("service=idle scaled"), "{log}");
    // The processes left answer; the retired ones were not replaced.
    let reply = ask_tcp(port, "still").unwrap();
    assert!(reply.ends_with("still"), "{reply}");
    assert!(
        !master.log_text().contains("restarting in"),
        "{}",
        master.log_text()
    );
    // A reload goes back to the configured counts (2 + 1).
    master.signal(Signal::SIGHUP);
    wait_for(
        Duration::from_secs(10),
        "the configured count again",
        || {
            let kids = master.children();
            (kids.len() == 3 && kids.iter().all(|k| !first.contains(k))).then_some(())
        },
    );
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
}
