//! SIGTERM stops everything and cleans up; the pid file keeps a second master out.

mod util;

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use util::*;

#[test]
fn stop_terminates_children_and_removes_socket_files() {
    let s = Setup::new();
    let sock = s.path("p.sock");
    s.probe_service("probe", &format!("local:{}", sock.display()), 2, "");
    let mut master = s.start_master(&[]);
    let kids = master.wait_children(2);
    assert!(sock.exists());
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        kids.iter().all(|k| !is_alive(*k)),
        "children left after stop"
    );
    assert!(!sock.exists(), "unix socket file left after stop");
}

#[test]
fn the_pid_file_locks_out_a_second_master() {
    let s = Setup::new();
    let pid_file = s.path("m.pid");
    let pid_arg = pid_file.to_str().unwrap();
    s.probe_service("probe", &format!("127.0.0.1:{}", free_port()), 1, "");
    let try_lock = || {
        Command::new(ZMASTER)
            .args([
                "-C",
                s.etc().to_str().unwrap(),
                "-pid-file",
                pid_arg,
                "--try-lock",
            ])
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(try_lock(), Some(0));
    let mut master = s.start_master(&["-pid-file", pid_arg]);
    let kids = master.wait_children(1);
    let content = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(content.trim(), master.pid().to_string());
    assert_eq!(try_lock(), Some(1));

    let second = Command::new(ZMASTER)
        .args(["-C", s.etc().to_str().unwrap(), "-pid-file", pid_arg])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already running"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        content,
        "the pid file was changed"
    );
    assert_eq!(master.children(), kids);

    master.signal(Signal::SIGINT);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(try_lock(), Some(0));
}

#[test]
fn config_errors_exit_1_naming_file_and_line_before_binding() {
    let s = Setup::new();
    let sock = s.path("good.sock");
    s.probe_service("a-good", &format!("local:{}", sock.display()), 1, "");
    s.write_cf(
        "zz-bad",
        "# comment\n\nserver-command = /bin/true\nno equals here\n",
    );
    let out = Command::new(ZMASTER)
        .arg("-C")
        .arg(s.etc())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zz-bad.cf:4:"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!sock.exists(), "bound before validating");

    let missing = s.path("nope");
    let out = Command::new(ZMASTER)
        .arg("-C")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(missing.to_str().unwrap()));
}

#[test]
fn stop_kills_children_that_ignore_sigterm_after_the_grace_period() {
    let s = Setup::new();
    s.probe_service(
        "stubborn",
        &format!("127.0.0.1:{}", free_port()),
        2,
        "probe-ignore-term = yes\n",
    );
    let mut master = s.start_master(&["-master-stop-timeout", "500ms"]);
    let kids = master.wait_children(2);
    for kid in &kids {
        // The handler is installed after the report: wait for the listener report written after it.
        wait_for(Duration::from_secs(5), "the probe to be ready", || {
            s.path("rep")
                .join(format!("{kid}.addrs"))
                .exists()
                .then_some(())
        });
    }
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        kids.iter().all(|k| !is_alive(*k)),
        "children left after stop"
    );
    let log = master.log_text();
    assert!(log.contains("sending SIGKILL"), "{log}");
    assert!(log.contains("killed by SIGKILL"), "{log}");
}

#[test]
fn a_second_master_never_takes_over_a_live_unix_socket() {
    let s = Setup::new();
    let sock = s.path("p.sock");
    s.probe_service("probe", &format!("local:{}", sock.display()), 1, "");
    let master = s.start_master(&[]);
    master.wait_children(1);
    wait_for(Duration::from_secs(5), "an answer", || {
        ask_unix(&sock, "one").ok()
    });
    // No pid file: the second master gets as far as binding, and must refuse.
    let out = Command::new(ZMASTER)
        .arg("-C")
        .arg(s.etc())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("live socket"), "{err}");
    assert!(ask_unix(&sock, "two").unwrap().ends_with(" two"));
}
