//! Helpers for the example-server tests: the testkit's process guard, line client and fake
//! master, plus starting an example `alone` and waiting until it answers.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

pub use zmaster_testkit::ChildGuard as Server;
pub use zmaster_testkit::{
    FakeMaster, LineClient, LogPipe, PATIENCE, cloexec_pipe, fd_count, free_port, non_loopback_ip,
    peer_closed, raise_fd_limit, rss_bytes, spawn_under_fake_master, spawn_under_fake_master_on,
    spawn_under_fake_master_unix, stage_fds,
};

/// Polls `cond` (with a short back-off) until it holds or `PATIENCE` passes.
pub fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    zmaster_testkit::wait_until(PATIENCE, what, cond);
}

/// Starts `bin alone -server-service 127.0.0.1:PORT extra...` and waits until it answers.
pub fn spawn_alone(bin: &str, extra: &[&str]) -> (Server, SocketAddr) {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = Command::new(bin)
        .args(["alone", "-server-service", &addr.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn the server");
    let mut server = Server { child };
    wait_answering(&mut server, addr);
    (server, addr)
}

/// Waits until a connect to `addr` succeeds (the server bound and listens).
pub fn wait_answering(server: &mut Server, addr: SocketAddr) {
    wait_for("the server to accept connections", || {
        assert!(server.is_running(), "the server exited during start-up");
        TcpStream::connect(addr).is_ok()
    });
}
