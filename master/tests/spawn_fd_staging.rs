//! fd staging after a reload freed low fd numbers: std's exec-error pipe then lands on a low
//! number, and must never be one of the targets 3, 4, 5.. (or a failed exec looks like a start).

mod util;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use util::*;

/// `n` unix socket addresses in the test dir (paths never collide, ports could) as a
/// `server-service` list `NAMEi://PATH; ...`, and the paths.
fn unix_services(s: &Setup, name: &str, n: usize) -> (String, Vec<PathBuf>) {
    let paths: Vec<PathBuf> = (0..n).map(|i| s.path(&format!("{name}{i}.sock"))).collect();
    let text = paths
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{name}{i}://{}", p.display()))
        .collect::<Vec<_>>()
        .join("; ");
    (text, paths)
}

/// An executable that exists (the master's validation accepts it) but whose exec fails: its
/// interpreter does not exist (ENOENT from execve, no shell fallback).
fn unexecutable(s: &Setup) -> PathBuf {
    let path = s.path("broken-server");
    std::fs::write(&path, "#!/no/such/interpreter\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_failed_exec_is_reported_after_a_reload_freed_low_fds() {
    let s = Setup::new();
    let (wide, _) = unix_services(&s, "w", 12);
    s.probe_service("wide", &wide, 1, "");
    let master = s.start_master(&[]);
    let first = master.wait_children(1);

    // The new config closes all twelve listeners (their low fds become free) and brings a
    // service whose exec fails and a good one. The broken one has so many listeners that its
    // targets 3..45 cover every freed number, whatever fds the test runner left open for us
    // (the exec-error pipe takes the lowest free numbers: freed ones).
    std::fs::remove_file(s.etc().join("wide.cf")).unwrap();
    let (bad, _) = unix_services(&s, "b", 40);
    let broken = unexecutable(&s);
    s.write_cf(
        "bad",
        &format!(
            "server-command = {}\nserver-service = {bad}\nserver-proc-count = 1\n",
            broken.display()
        ),
    );
    let (good, good_paths) = unix_services(&s, "g", 2);
    s.probe_service("good", &good, 1, "");
    master.signal(Signal::SIGHUP);

    // The good service starts and serves on both listeners.
    for path in &good_paths {
        let reply = wait_for(
            Duration::from_secs(10),
            "the good service to answer",
            || ask_unix(path, "hi").ok(),
        );
        assert!(!first.contains(&reply_pid(&reply)), "{reply}");
    }
    // The broken one is reported as a start failure, never as a child that started and died.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = master.log_text();
        if log.contains("service=bad cannot start a child") {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "the failed exec was never reported:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        log.contains("No such file or directory"),
        "the exec error must be the one reported:\n{log}"
    );
    assert!(
        !log.contains("service=bad pid="),
        "a failed exec was taken for a started child:\n{log}"
    );
}
