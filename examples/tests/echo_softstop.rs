//! echo-aio and echo-coroutine with a master's fds (SPEC §5) but no master: softstop on fd 3
//! or SIGHUP (the master's parent-death signal), DETACH via fd 4, thread count.

mod util;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use util::{LineClient, peer_closed, spawn_alone, spawn_under_fake_master, wait_for};

/// Both example echo servers: every behaviour here holds for each mode.
const BINS: [&str; 2] = [
    env!("CARGO_BIN_EXE_echo-aio"),
    env!("CARGO_BIN_EXE_echo-coroutine"),
];

fn refused(addr: std::net::SocketAddr) -> bool {
    matches!(TcpStream::connect(addr), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

#[test]
fn softstop_stops_accepting_and_drains_the_open_connection() {
    for bin in BINS {
        let mut fake = spawn_under_fake_master(bin, &[]);
        let mut held = LineClient::connect(fake.addr);
        held.expect_echo("before reload");
        drop(fake.generation.take()); // what the master does on reload
        wait_for("new connections to be refused", || refused(fake.addr));
        held.expect_echo("during the drain");
        assert!(fake.server.is_running(), "{bin}");
        held.send_line("exit");
        held.expect_closed();
        assert!(fake.server.wait_exit().success(), "{bin}");
    }
}

#[test]
fn sighup_drains_like_a_reload_under_a_master() {
    for bin in BINS {
        let mut fake = spawn_under_fake_master(bin, &[]);
        let mut held = LineClient::connect(fake.addr);
        held.expect_echo("before SIGHUP");
        // PR_SET_PDEATHSIG(SIGHUP) arrives when the master dies: a softstop, not death.
        kill(Pid::from_raw(fake.server.pid() as i32), Signal::SIGHUP).expect("kill");
        wait_for("new connections to be refused", || refused(fake.addr));
        held.expect_echo("after SIGHUP");
        held.send_line("exit");
        held.expect_closed();
        assert!(fake.server.wait_exit().success(), "{bin}");
        assert!(
            fake.log_text().contains("softstop reason=\"SIGHUP"),
            "{bin}: {}",
            fake.log_text()
        );
    }
}

#[test]
fn alone_servers_keep_the_default_sighup_and_ignore_detach() {
    for bin in BINS {
        let (mut server, addr) = spawn_alone(bin, &[]);
        let mut client = LineClient::connect(addr);
        // Not under a master: DETACH must not stop the server.
        client.expect_echo("DETACH");
        drop(client);
        LineClient::connect(addr).expect_echo("still accepting");
        kill(Pid::from_raw(server.pid() as i32), Signal::SIGHUP).expect("kill");
        assert!(
            !server.wait_exit().success(),
            "{bin}: SIGHUP should end an alone server"
        );
    }
}

#[test]
fn idle_server_exits_at_once_on_softstop() {
    for bin in BINS {
        let mut fake = spawn_under_fake_master(bin, &[]);
        LineClient::connect(fake.addr).expect_echo("one");
        drop(fake.generation.take());
        assert!(fake.server.wait_exit().success(), "{bin}");
    }
}

#[test]
fn drain_deadline_ends_a_held_connection() {
    for bin in BINS {
        let mut fake = spawn_under_fake_master(bin, &["-server-stop-on-softstop-after", "300ms"]);
        let mut held = LineClient::connect(fake.addr);
        held.expect_echo("held");
        drop(fake.generation.take());
        // Still served during the drain, then cut at the deadline.
        wait_for("new connections to be refused", || refused(fake.addr));
        held.expect_echo("while draining");
        assert!(fake.server.wait_exit().success(), "{bin}");
        held.expect_closed();
        assert!(
            fake.log_text().contains("drain deadline passed"),
            "{bin}: {}",
            fake.log_text()
        );
    }
}

#[test]
fn detach_closes_fd_4_keeps_serving_then_exits() {
    for bin in BINS {
        let mut fake = spawn_under_fake_master(bin, &[]);
        let mut client = LineClient::connect(fake.addr);
        client.expect_echo("before DETACH");
        assert!(!peer_closed(&fake.private));
        client.expect_echo("DETACH");
        wait_for("fd 4 to be closed", || peer_closed(&fake.private));
        wait_for("new connections to be refused", || refused(fake.addr));
        client.expect_echo("after DETACH");
        // Later reloads are ignored: no softstop, and the connection stays.
        drop(fake.generation.take());
        client.expect_echo("after a reload");
        assert!(fake.server.is_running(), "{bin}");
        drop(client);
        assert!(fake.server.wait_exit().success(), "{bin}");
        let log = fake.log_text();
        assert!(
            !log.contains("softstop reason="),
            "{bin}: a reload after DETACH was not ignored: {log}"
        );
    }
}

#[test]
fn server_thread_count_sets_the_workers() {
    for bin in BINS {
        let fake = spawn_under_fake_master(bin, &["-server-thread-count", "7"]);
        wait_for("7 worker threads", || fake.server.threads() >= 7);
    }
}

#[test]
fn master_mode_without_the_fds_is_an_error() {
    for bin in BINS {
        let out = Command::new(bin)
            .args(["MASTER", "-server-service", ":i5"])
            .stdin(Stdio::null())
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{bin}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("fd 3"), "{bin}: {stderr}");
    }
}
