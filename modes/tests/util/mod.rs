//! Helpers for the runtime's tests: a server process (this test binary run again) under a fake
//! master, and the testkit's shared helpers.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use zmaster_testkit::LineClient as Client;
pub use zmaster_testkit::{
    ChildGuard, LogPipe, cloexec_pipe, free_port, stage_fds, wait_for, wait_until,
};

/// How long one wait may take before it counts as a hang.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A server process: this test binary run again as `--exact serve_child` with `env=style`,
/// fds 3, 4 and 5 staged as a master would (generation pipe, private pipe, a TCP listener on
/// 127.0.0.1). Killed and reaped on drop.
pub struct Served {
    /// The server (killed on drop).
    pub server: ChildGuard,
    /// The listener's address.
    pub addr: SocketAddr,
    /// The write end's peer: dropping it is what a master does on reload.
    pub generation: Option<OwnedFd>,
    _private: OwnedFd,
    log: LogPipe,
}

impl Served {
    /// Starts the server side of this test binary with `env` set to `style`.
    pub fn start(env: &str, style: &str) -> Served {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (gen_r, gen_w) = cloexec_pipe();
        let (priv_r, priv_w) = cloexec_pipe();
        let mut command = Command::new(std::env::current_exe().expect("test binary"));
        command
            .args(["--exact", "serve_child", "--nocapture", "--test-threads=1"])
            .env(env, style)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        stage_fds(
            &mut command,
            &[gen_w.as_fd(), priv_r.as_fd(), listener.as_fd()],
        );
        let mut child = command.spawn().expect("spawn the server");
        drop((gen_w, priv_r, listener)); // only the server holds them now, as under a master
        let log = LogPipe::new(child.stderr.take().expect("stderr piped"));
        Served {
            server: ChildGuard::new(child),
            addr,
            generation: Some(gen_r),
            _private: priv_w,
            log,
        }
    }

    /// Waits for a log line containing `what` (returns it).
    pub fn wait_log(&self, what: &str) -> String {
        self.log.wait_line(what, PATIENCE)
    }

    /// Waits for the server to exit; whether it exited 0.
    pub fn wait_exit(&mut self) -> bool {
        let child = &mut self.server.child;
        wait_for(PATIENCE, "the server to exit", || {
            child.try_wait().expect("try_wait")
        })
        .success()
    }
}

/// The drain scenario, the same for both modes: the server started with `env=style` serves
/// a held connection through a softstop (generation pipe closed) while refusing new ones,
/// then exits 0 once it is closed.
pub fn drains_the_open_connection_on_softstop(env: &str, style: &str) {
    let mut served = Served::start(env, style);
    let mut held = Client::connect(served.addr);
    assert_eq!(held.ask("before").as_deref(), Some("before"));
    drop(served.generation.take());
    // Logged after accepting stopped: from here on only the open connection is served.
    served.wait_log("softstop reason=");
    let refused = TcpStream::connect(served.addr).expect_err("accepting stopped");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(
        held.ask("during the drain").as_deref(),
        Some("during the drain")
    );
    drop(held);
    served.wait_log("drained: every connection finished");
    assert!(served.wait_exit(), "the server exits 0 once drained");
}

/// Hooks without a drain, the same for both modes: on softstop the server exits 0 at once
/// and the held connection is cut.
pub fn exits_at_once_on_softstop(env: &str, style: &str) {
    let mut served = Served::start(env, style);
    let mut held = Client::connect(served.addr);
    assert_eq!(held.ask("before").as_deref(), Some("before"));
    drop(served.generation.take());
    served.wait_log("softstop reason=");
    assert!(served.wait_exit(), "the server exits 0");
    assert_eq!(held.ask("after"), None, "the open connection was cut");
}

impl Served {
    /// Whether the server closed fd 4 (detached from its master): POLLERR on our write end.
    pub fn detached(&self) -> bool {
        zmaster_testkit::peer_closed(&self._private)
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.server.child.id()
    }
}

/// Asserts that a connection to `addr` made now is not served by the (only) server there:
/// its line gets no answer within half a second. Unanswered, or reset once a retiring server
/// closes the listener (this fake master holds no copy of it; a real one does, and a sibling
/// or the replacement takes the connection), both mean "not taken".
pub fn assert_not_served(addr: SocketAddr, why: &str) {
    use std::io::{ErrorKind, Read, Write};
    let gone = |e: &io::Error| {
        matches!(
            e.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        )
    };
    let mut stream = match TcpStream::connect(addr) {
        Err(e) if gone(&e) => return,
        other => other.expect("connect"),
    };
    match stream.write_all(b"not for you\n") {
        Err(e) if gone(&e) => return,
        other => other.expect("send"),
    }
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut got = [0u8; 16];
    match stream.read(&mut got) {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::ConnectionReset
            ) => {}
        other => panic!("{why}: the connection was served: {other:?}"),
    }
}
