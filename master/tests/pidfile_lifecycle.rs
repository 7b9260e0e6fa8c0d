//! The pid file: written only once the master is up, never followed through a symlink, and
//! `--try-lock` probes without taking the exclusive lock.

mod util;

use std::fs::{self, File};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use util::*;

fn try_lock(s: &Setup, pid_file: &std::path::Path) -> Option<i32> {
    Command::new(ZMASTER)
        .arg("-C")
        .arg(s.etc())
        .arg("-pid-file")
        .arg(pid_file)
        .arg("--try-lock")
        .status()
        .unwrap()
        .code()
}

#[test]
fn a_start_that_fails_to_bind_leaves_the_pid_file_as_it_was() {
    let s = Setup::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    s.probe_service("probe", &format!("127.0.0.1:{port}"), 1, "");
    let pid_file = s.path("m.pid");
    fs::write(&pid_file, "4242\n").unwrap();
    let mut master = s.start_master(&["-pid-file", pid_file.to_str().unwrap()]);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(1));
    let log = master.log_text();
    assert!(log.contains(&format!("bind 127.0.0.1:{port}")), "{log}");
    assert_eq!(fs::read_to_string(&pid_file).unwrap(), "4242\n", "{log}");
}

#[test]
fn a_symlinked_pid_file_is_refused_and_its_target_untouched() {
    let s = Setup::new();
    s.probe_service("probe", &format!("127.0.0.1:{}", free_port()), 1, "");
    let target = s.path("precious");
    fs::write(&target, "keep me\n").unwrap();
    let pid_file = s.path("m.pid");
    std::os::unix::fs::symlink(&target, &pid_file).unwrap();
    let mut master = s.start_master(&["-pid-file", pid_file.to_str().unwrap()]);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(1));
    let log = master.log_text();
    assert!(
        log.contains(&format!("open pid file {}", pid_file.display())),
        "{log}"
    );
    assert_eq!(log.lines().count(), 1, "{log}");
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep me\n");
    assert_eq!(try_lock(&s, &pid_file), Some(1), "a symlink is unusable");
}

#[test]
fn try_lock_only_takes_a_shared_lock() {
    let s = Setup::new();
    s.probe_service("probe", &format!("127.0.0.1:{}", free_port()), 1, "");
    let pid_file = s.path("m.pid");
    fs::write(&pid_file, "").unwrap();
    // Another probe holds a shared lock: an exclusive probe would fail and say "running".
    let probe = File::open(&pid_file).unwrap();
    probe.lock_shared().unwrap();
    assert_eq!(try_lock(&s, &pid_file), Some(0));
    // And a master that starts while a probe holds its shared lock waits for it instead of
    // failing with "already running".
    let master = s.start_master(&["-pid-file", pid_file.to_str().unwrap()]);
    wait_for(
        Duration::from_secs(10),
        "the master to see the shared lock",
        || master.log_text().contains("share-locked").then_some(()),
    );
    drop(probe);
    master.wait_children(1);
    assert_eq!(
        fs::read_to_string(&pid_file).unwrap().trim(),
        master.pid().to_string()
    );
    assert_eq!(try_lock(&s, &pid_file), Some(1));
    master.signal(Signal::SIGTERM);
}
