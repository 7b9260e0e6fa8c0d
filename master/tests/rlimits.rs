//! `server-rlimit-nofile` and `server-core-file-size` are set in the child before exec (seen in
//! /proc/PID/limits); unset, the child inherits the master's limits.

mod lifecycle_util;
mod util;

use std::fs;
use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit};
use util::*;

/// (soft, hard) of the /proc/PID/limits row starting with `name`; `None` = unlimited.
fn limit(pid: i32, name: &str) -> (Option<u64>, Option<u64>) {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let row = text
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"));
    let mut values = row
        .split_whitespace()
        .map(|v| (v != "unlimited").then(|| v.parse().unwrap()));
    (values.next().unwrap(), values.next().unwrap())
}

fn finite(v: u64) -> Option<u64> {
    (v != u64::MAX).then_some(v)
}

#[test]
fn nofile_and_core_size_reach_the_child() {
    let (_, core_hard) = getrlimit(Resource::RLIMIT_CORE).unwrap();
    let s = Setup::new();
    let (_master, kid) = s.serving_probe("server-rlimit-nofile = 777\nserver-core-file-size = 0\n");
    // Both nofile limits are set (a zmaster server raises its soft limit to the hard one, so
    // the soft one alone would not stick); for the core size a hard limit above it is kept.
    assert_eq!(limit(kid, "Max open files"), (Some(777), Some(777)));
    assert_eq!(
        limit(kid, "Max core file size"),
        (Some(0), finite(core_hard))
    );
}

#[test]
fn a_size_with_a_unit_and_unlimited() {
    let (nofile_soft, nofile_hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let (_, core_hard) = getrlimit(Resource::RLIMIT_CORE).unwrap();
    let s = Setup::new();
    let (_master, kid) = s.serving_probe("server-core-file-size = 8m\n");
    assert_eq!(
        limit(kid, "Max core file size"),
        (Some(8 << 20), finite(core_hard.max(8 << 20)))
    );
    // Unset: inherited.
    assert_eq!(
        limit(kid, "Max open files"),
        (finite(nofile_soft), finite(nofile_hard))
    );
    if core_hard == u64::MAX || nix::unistd::geteuid().is_root() {
        let s = Setup::new();
        let (_master, kid) = s.serving_probe("server-core-file-size = unlimited\n");
        assert_eq!(limit(kid, "Max core file size"), (None, None));
    }
}

#[test]
fn a_bad_limit_is_a_located_config_error() {
    let s = Setup::new();
    let sock = s.path("p.sock");
    s.probe_service(
        "probe",
        &format!("p://{}", sock.display()),
        1,
        "server-rlimit-nofile = many\n",
    );
    let mut master = s.start_master(&[]);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(1));
    let log = master.log_text();
    assert!(log.contains("probe.cf:4") && log.contains("many"), "{log}");
    assert!(!sock.exists(), "a listener was bound: {log}");
}

/// A zmaster server raises its soft nofile limit to the hard one at start: the configured
/// value must still be what it runs with (both limits are set).
#[test]
fn a_zmaster_server_keeps_the_configured_nofile_limit() {
    let s = Setup::new();
    for bin in lifecycle_util::echo_servers() {
        let sock = s.path("e.sock");
        let _ = fs::remove_file(&sock);
        s.write_cf(
            "echo",
            &format!(
                "server-command = {}\nserver-service = echo://{}\nserver-proc-count = 1\n\
                 server-thread-count = 1\nserver-rlimit-nofile = 300\n",
                bin.display(),
                sock.display()
            ),
        );
        let master = s.start_master(&[]);
        let kid = wait_for(Duration::from_secs(20), "the echo child answering", || {
            let kid = *master.children().first()?;
            (ask_unix(&sock, "hi").ok()? == "hi").then_some(kid)
        });
        assert_eq!(
            limit(kid, "Max open files"),
            (Some(300), Some(300)),
            "{}",
            bin.display()
        );
        drop(master);
    }
}
