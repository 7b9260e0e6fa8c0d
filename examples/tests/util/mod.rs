//! Helpers for the example-server tests: the testkit's process guard, line client and fake
//! master, plus starting an example `alone` and waiting until it answers.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

pub use zmaster_testkit::ChildGuard as Server;
pub use zmaster_testkit::{
    FakeMaster, LineClient, LogPipe, PATIENCE, cloexec_pipe, fd_count, free_port, listens_on,
    non_loopback_ip, peer_closed, raise_fd_limit, rss_bytes, spawn_under_fake_master,
    spawn_under_fake_master_on, spawn_under_fake_master_unix, stage_fds,
};

/// Polls `cond` (with a short back-off) until it holds or `PATIENCE` passes.
pub fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    zmaster_testkit::wait_until(PATIENCE, what, cond);
}

/// Starts `bin alone -server-service 127.0.0.1:PORT extra...` and waits until it answers.
pub fn spawn_alone(bin: &str, extra: &[&str]) -> (Server, SocketAddr) {
    spawn_alone_with(bin, extra, |_| {})
}

/// As [`spawn_alone`], with `prepare` applied to the command first (limits, environment).
/// A free port can be taken by a parallel test before the server binds it: a server that
/// exits during start-up is started again on another port (a few times).
pub fn spawn_alone_with(
    bin: &str,
    extra: &[&str],
    prepare: impl Fn(&mut Command),
) -> (Server, SocketAddr) {
    spawn_alone_on_ports(bin, extra, prepare, free_port)
}

/// As [`spawn_alone_with`], each attempt on the port `next_port` gives.
pub fn spawn_alone_on_ports(
    bin: &str,
    extra: &[&str],
    prepare: impl Fn(&mut Command),
    mut next_port: impl FnMut() -> u16,
) -> (Server, SocketAddr) {
    for _ in 0..4 {
        let addr = SocketAddr::from(([127, 0, 0, 1], next_port()));
        let mut command = Command::new(bin);
        command
            .args(["alone", "-server-service", &addr.to_string()])
            .args(extra)
            .stdin(Stdio::null());
        prepare(&mut command);
        let child = command.spawn().expect("spawn the server");
        let mut server = Server { child };
        let mut exited = false;
        // A connect can reach a parallel test's server that took the port first: only a
        // listener this child holds counts, and this child then exits on its bind error.
        let pid = server.pid() as i32;
        wait_for("the server to accept connections", || {
            exited = !server.is_running();
            exited || (TcpStream::connect(addr).is_ok() && listens_on(pid, addr.port()))
        });
        if !exited {
            return (server, addr);
        }
    }
    panic!("{bin} exited during start-up four times (see its stderr above)");
}

/// Waits until a connect to `addr` succeeds (the server bound and listens).
pub fn wait_answering(server: &mut Server, addr: SocketAddr) {
    wait_for("the server to accept connections", || {
        assert!(server.is_running(), "the server exited during start-up");
        TcpStream::connect(addr).is_ok() && listens_on(server.pid() as i32, addr.port())
    });
}
