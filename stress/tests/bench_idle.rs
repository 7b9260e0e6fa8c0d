//! `--idle N` on its own: idle connections against a real peer, and its failure paths.

mod util;

use std::process::{Command, Stdio};
use std::time::Duration;

use zmaster_stress::bench::{measure_idle, wait_ready};
use zmaster_stress::procs::ChildGuard;
use zmaster_testkit::free_port;

fn tokio_peer() -> (ChildGuard, std::net::SocketAddr) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_echo-tokio"))
        .args([addr.as_str(), "--threads", "1"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn echo-tokio");
    let mut g = ChildGuard::new(child, "echo-tokio");
    let sa = ([127, 0, 0, 1], port).into();
    wait_ready(sa, &mut g, Duration::from_secs(10)).expect("echo-tokio ready");
    (g, sa)
}

#[test]
fn idle_connections_grow_the_server_rss() {
    let (mut g, sa) = tokio_peer();
    let m = measure_idle(
        sa,
        g.pid(),
        300,
        Duration::from_secs(5),
        Duration::from_secs(60),
    );
    assert_eq!(
        (m.wanted, m.opened, m.error.as_deref()),
        (300, 300, None),
        "{m:?}"
    );
    // Every connection is a spawned task with its buffers: the RSS must grow.
    assert!(m.rss_before > 0 && m.rss_after > m.rss_before, "{m:?}");
    assert!(m.bytes_per_conn().is_some_and(|b| b > 0.0), "{m:?}");
    // The idle connections were closed: the server still answers new ones.
    let again = measure_idle(
        sa,
        g.pid(),
        5,
        Duration::from_secs(5),
        Duration::from_secs(60),
    );
    assert_eq!(again.opened, 5, "{again:?}");
    assert!(g.stop(Duration::from_secs(5)).is_some());
}

#[test]
fn idle_failures_are_reported_not_fatal() {
    let (mut g, sa) = tokio_peer();
    let cut = measure_idle(sa, g.pid(), 10, Duration::from_secs(5), Duration::ZERO);
    assert_eq!(cut.opened, 0, "{cut:?}");
    assert!(
        cut.error
            .as_deref()
            .is_some_and(|e| e.starts_with("stopped after")),
        "{cut:?}"
    );
    assert_eq!(cut.bytes_per_conn(), None);
    let pid = g.pid();
    assert!(g.stop(Duration::from_secs(5)).is_some());
    let closed = ([127, 0, 0, 1], util::closed_port()).into();
    let gone = measure_idle(
        closed,
        pid,
        10,
        Duration::from_secs(5),
        Duration::from_secs(60),
    );
    assert!(
        gone.error.as_deref().is_some_and(|e| e.contains("RSS")),
        "{gone:?}"
    );
    let me = i32::try_from(std::process::id()).expect("pid");
    let refused = measure_idle(
        closed,
        me,
        10,
        Duration::from_secs(5),
        Duration::from_secs(60),
    );
    assert_eq!(refused.opened, 0, "{refused:?}");
    assert!(
        refused
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("connection 1: ")),
        "{refused:?}"
    );
}
