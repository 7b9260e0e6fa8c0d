//! `-log-service SOCK,DIR`: the socket path belongs to the master that bound it. A second master
//! does not take over a live one's socket, and stop removes the path only while it is still the
//! socket this master bound.

mod util;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use util::*;

/// Starts a master with one probe service and `-log-service sock,logs`; waits until it is up.
fn master_with_log_service(s: &Setup, sock: &Path, logs: &Path) -> Master {
    let listener = s.path("probe.sock");
    s.probe_service("probe", &format!("p://{}", listener.display()), 1, "");
    let arg = format!("{},{}", sock.display(), logs.display());
    let master = s.start_master(&["-log-service", &arg]);
    wait_for(Duration::from_secs(10), "the master to start", || {
        master.log_text().contains("started:").then_some(())
    });
    master
}

/// Everything the collector wrote into the `*.log` files of `logs`.
fn collected(logs: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(logs) else {
        return String::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

fn id(path: &Path) -> (u64, u64) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.dev(), meta.ino())
}

#[test]
fn a_second_master_does_not_steal_a_live_log_socket() {
    let first = Setup::new();
    let sock = first.path("log.sock");
    let logs = first.path("logs");
    let _master = master_with_log_service(&first, &sock, &logs);
    let bound = id(&sock);

    // Another config (its listeners are free), the same log socket: it must refuse to start.
    let second = Setup::new();
    let listener = second.path("probe.sock");
    second.probe_service("probe", &format!("p://{}", listener.display()), 1, "");
    let arg = format!("{},{}", sock.display(), second.path("logs").display());
    let mut intruder = second.start_master(&["-log-service", &arg]);
    assert_eq!(intruder.wait_exit(Duration::from_secs(10)), Some(1));
    let err = intruder.log_text();
    assert!(err.contains("live socket"), "{err}");
    assert_eq!(id(&sock), bound, "the live socket file was replaced");

    // Records still reach the first master's collector.
    let client = UnixDatagram::unbound().unwrap();
    client.send_to(b"smtpd,42,still mine", &sock).unwrap();
    wait_for(
        Duration::from_secs(10),
        "the record in the first log",
        || {
            collected(&logs)
                .contains("smtpd[42] still mine")
                .then_some(())
        },
    );
}

#[test]
fn stop_removes_its_own_log_socket() {
    let s = Setup::new();
    let sock = s.path("log.sock");
    let mut master = master_with_log_service(&s, &sock, &s.path("logs"));
    assert!(sock.exists());
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!sock.exists(), "the log socket was left behind");
}

#[test]
fn stop_keeps_a_log_socket_someone_else_bound_since() {
    let s = Setup::new();
    let sock = s.path("log.sock");
    let mut master = master_with_log_service(&s, &sock, &s.path("logs"));
    // Someone replaces the path with their own socket while the master runs.
    std::fs::remove_file(&sock).unwrap();
    let theirs = UnixDatagram::bind(&sock).unwrap();
    let their_id = id(&sock);
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(sock.exists(), "stop removed a socket that was not its own");
    assert_eq!(id(&sock), their_id);
    let client = UnixDatagram::unbound().unwrap();
    client.send_to(b"hello", &sock).unwrap();
    let mut buf = [0u8; 16];
    theirs
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = theirs.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
}
