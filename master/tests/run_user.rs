//! `run-user` / `run-group`: the child drops to the user after its fds are staged, before exec
//! (checked in /proc/PID/status); a missing user is a config error and nothing is bound.

mod util;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Group, User, getgrouplist};
use util::*;

/// True when the tests run as root; otherwise prints why the test is skipped.
fn root_or_skip(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        println!("{test}: skipped: dropping to another user needs the tests to run as root");
    }
    root
}

/// A setup whose config files the unprivileged child can read.
fn readable_setup() -> Setup {
    let s = Setup::new();
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    s
}

/// The values of the `field:` line of /proc/PID/status.
fn status(pid: i32, field: &str) -> Vec<u32> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in\n{text}"));
    line.split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn the_child_runs_as_nobody_with_nobodys_groups() {
    if !root_or_skip("the_child_runs_as_nobody_with_nobodys_groups") {
        return;
    }
    let nobody = User::from_name("nobody").unwrap().expect("a nobody user");
    let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    let s = readable_setup();
    let (master, kid) = s.serving_probe("run-user = nobody\n");
    assert_eq!(status(kid, "Uid"), [uid; 4]);
    assert_eq!(status(kid, "Gid"), [gid; 4]);
    let name = std::ffi::CString::new("nobody").unwrap();
    let mut want: Vec<u32> = getgrouplist(&name, nobody.gid)
        .unwrap()
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    want.sort();
    want.dedup();
    let mut groups = status(kid, "Groups");
    groups.sort();
    assert_eq!(groups, want);
    // The master keeps root (it binds and can still start children as anyone).
    assert_eq!(status(master.pid(), "Uid"), [0; 4]);
}

#[test]
fn a_dropped_child_still_dies_with_the_master() {
    if !root_or_skip("a_dropped_child_still_dies_with_the_master") {
        return;
    }
    // A server that does not watch fd 3, so only the parent-death signal can end it; the
    // kernel clears that signal at a credential change, so it must be set after setuid.
    let s = readable_setup();
    let script = s.path("sleeper");
    fs::write(
        &script,
        "#!/bin/sh
exec sleep 30
",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    s.write_cf(
        "sleeper",
        &format!(
            "server-command = {}\nserver-service = {}\nrun-user = nobody\n",
            script.display(),
            s.path("p.sock").display()
        ),
    );
    let mut master = s.start_master(&[]);
    let kid = master.wait_children(1)[0];
    wait_for(Duration::from_secs(10), "the sleeper to exec", || {
        (exe_name(kid) == "sleep" && status(kid, "Uid")[0] != 0).then_some(())
    });
    master.signal(Signal::SIGKILL);
    assert_eq!(master.wait_exit(Duration::from_secs(5)), None);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while is_alive(kid) {
        if std::time::Instant::now() > deadline {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(kid), Signal::SIGKILL);
            panic!("the child {kid} outlived its master");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_group_alone_changes_only_the_gid() {
    if !root_or_skip("run_group_alone_changes_only_the_gid") {
        return;
    }
    let group = Group::from_name("nogroup")
        .unwrap()
        .or_else(|| Group::from_name("nobody").unwrap())
        .expect("a nogroup or nobody group");
    let gid = group.gid.as_raw();
    let s = readable_setup();
    let (_master, kid) = s.serving_probe(&format!("run-group = {}\n", group.name));
    assert_eq!(status(kid, "Gid"), [gid; 4]);
    assert_eq!(status(kid, "Uid"), [0; 4]);
}

fn assert_refused(s: &Setup, sock: &Path, want: &str) {
    let mut master = s.start_master(&[]);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(1));
    let log = master.log_text();
    assert!(log.contains(want), "{log}");
    assert!(!sock.exists(), "a listener was bound: {log}");
}

#[test]
fn a_missing_user_or_group_is_a_located_config_error_and_nothing_is_bound() {
    let s = Setup::new();
    let sock = s.path("p.sock");
    let service = format!("p://{}", sock.display());
    s.probe_service("probe", &service, 1, "run-user = no-such-user-zm\n");
    assert_refused(
        &s,
        &sock,
        "probe.cf:4: run-user: no such user \"no-such-user-zm\"",
    );
    s.probe_service("probe", &service, 1, "\nrun-group = no-such-group-zm\n");
    assert_refused(
        &s,
        &sock,
        "probe.cf:5: run-group: no such group \"no-such-group-zm\"",
    );
}
