//! echo-aio with a master's fds (SPEC §5) but no master: softstop on fd 3, DETACH via fd 4.

mod util;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::process::{Command, Stdio};

use util::{LineClient, peer_closed, spawn_under_fake_master, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_echo-aio");

fn refused(addr: std::net::SocketAddr) -> bool {
    matches!(TcpStream::connect(addr), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

#[test]
fn softstop_stops_accepting_and_drains_the_open_connection() {
    let mut fake = spawn_under_fake_master(BIN, &[]);
    let mut held = LineClient::connect(fake.addr);
    held.expect_echo("before reload");
    drop(fake.generation.take()); // what the master does on reload
    wait_for("new connections to be refused", || refused(fake.addr));
    held.expect_echo("during the drain");
    assert!(fake.server.is_running());
    held.send_line("exit");
    held.expect_closed();
    assert!(fake.server.wait_exit().success());
}

#[test]
fn idle_server_exits_at_once_on_softstop() {
    let mut fake = spawn_under_fake_master(BIN, &[]);
    LineClient::connect(fake.addr).expect_echo("one");
    drop(fake.generation.take());
    assert!(fake.server.wait_exit().success());
}

#[test]
fn drain_deadline_ends_a_held_connection() {
    let mut fake = spawn_under_fake_master(BIN, &["-server-stop-on-softstop-after", "100ms"]);
    let mut held = LineClient::connect(fake.addr);
    held.expect_echo("held");
    drop(fake.generation.take());
    assert!(fake.server.wait_exit().success());
    held.expect_closed();
}

#[test]
fn detach_closes_fd_4_keeps_serving_then_exits() {
    let mut fake = spawn_under_fake_master(BIN, &[]);
    let mut client = LineClient::connect(fake.addr);
    client.expect_echo("before DETACH");
    assert!(!peer_closed(&fake.private));
    client.expect_echo("DETACH");
    wait_for("fd 4 to be closed", || peer_closed(&fake.private));
    wait_for("new connections to be refused", || refused(fake.addr));
    client.expect_echo("after DETACH");
    // Later reloads are ignored: the detached process keeps its connection.
    drop(fake.generation.take());
    client.expect_echo("after a reload");
    assert!(fake.server.is_running());
    drop(client);
    assert!(fake.server.wait_exit().success());
}

#[test]
fn server_thread_count_sets_the_workers() {
    let fake = spawn_under_fake_master(BIN, &["-server-thread-count", "7"]);
    wait_for("7 worker threads", || fake.server.threads() >= 7);
}

#[test]
fn master_mode_without_the_fds_is_an_error() {
    let out = Command::new(BIN)
        .args(["MASTER", "-server-service", ":i5"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fd 3"), "{stderr}");
}
