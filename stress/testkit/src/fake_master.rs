//! A fake master: starts a server as `MASTER` with the fds a master gives it (SPEC §5).

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};

use crate::ChildGuard;

/// Makes `command`'s child receive `fds` as fds 3, 4, 5, ... (in order), as a master stages
/// them. Keep every one open until `spawn` returns; a closed one makes `spawn` fail.
pub fn stage_fds(command: &mut Command, fds: &[BorrowedFd<'_>]) {
    crate::sys::stage(command, fds.iter().map(AsRawFd::as_raw_fd).collect());
}

/// A pipe (read end, write end) whose ends spawned children do not inherit.
pub fn cloexec_pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2")
}

/// Whether the other end of `fd` (a pipe write end) was closed: POLLERR right now.
pub fn peer_closed(fd: &impl AsFd) -> bool {
    use nix::poll::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::empty())];
    matches!(poll(&mut fds, 0u16), Ok(n) if n > 0)
}

/// A server started with the fds a master would give it: fd 3 = write end of a
/// "generation" pipe whose read end the test holds, fd 4 = read end of a private pipe whose
/// write end the test holds, fd 5 = a listener bound by the test.
pub struct FakeMaster {
    /// The server process (killed on drop).
    pub server: ChildGuard,
    /// The listener's address (unspecified for a unix listener).
    pub addr: SocketAddr,
    /// Dropping it is what a master does on reload.
    pub generation: Option<OwnedFd>,
    /// Reports POLLERR once the server closed fd 4 (exited or detached).
    pub private: OwnedFd,
    /// The server's stderr (its log).
    pub log: tempfile::NamedTempFile,
}

impl FakeMaster {
    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

/// Starts `bin MASTER -server-service :i5 extra...` under a fake master. The listener is
/// bound before the server runs, so a connect succeeds at once: wait for an answer instead.
pub fn spawn_under_fake_master(bin: &str, extra: &[&str]) -> FakeMaster {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    spawn_under_fake_master_on(bin, listener, extra)
}

/// [`spawn_under_fake_master`] on a TCP listener the test bound (any address).
pub fn spawn_under_fake_master_on(bin: &str, listener: TcpListener, extra: &[&str]) -> FakeMaster {
    let addr = listener.local_addr().expect("addr");
    spawn_with_listener(bin, OwnedFd::from(listener), ":i5", addr, extra)
}

/// [`spawn_under_fake_master`] on a unix listener (`addr` is then unspecified: connect to
/// the listener's path).
pub fn spawn_under_fake_master_unix(
    bin: &str,
    listener: UnixListener,
    extra: &[&str],
) -> FakeMaster {
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    spawn_with_listener(bin, OwnedFd::from(listener), ":u5", unspecified, extra)
}

fn spawn_with_listener(
    bin: &str,
    listener: OwnedFd,
    spec: &str,
    addr: SocketAddr,
    extra: &[&str],
) -> FakeMaster {
    let (gen_r, gen_w) = cloexec_pipe();
    let (priv_r, priv_w) = cloexec_pipe();
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut command = Command::new(bin);
    command
        .args(["MASTER", "-server-service", spec])
        .args(extra)
        .stdin(Stdio::null())
        .stderr(log.reopen().expect("log file"));
    stage_fds(
        &mut command,
        &[gen_w.as_fd(), priv_r.as_fd(), listener.as_fd()],
    );
    let child = command.spawn().expect("spawn the server");
    // Only the child may hold these ends (and the listener), as under a real master.
    drop((gen_w, priv_r, listener));
    FakeMaster {
        server: ChildGuard::new(child),
        addr,
        generation: Some(gen_r),
        private: priv_w,
        log,
    }
}
