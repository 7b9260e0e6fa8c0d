//! Helpers for the example-server tests: process guards, a line client, fd staging for a fake master.
#![allow(dead_code, unreachable_pub)]

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait in these tests may take before it counts as a failure.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Polls `cond` (with a short back-off) until it holds or `PATIENCE` passes.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Server {
    pub child: Child,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself (fails after `PATIENCE`).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut status = None;
        wait_for("the server to exit", || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        status.expect("exited")
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// CPU time the process used so far (user + system), in clock ticks (from /proc).
    pub fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        tick(11) + tick(12)
    }

    /// The number of threads of the process (from /proc).
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid())).map_or(0, Iterator::count)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin alone -server-service 127.0.0.1:PORT extra...` and waits until it answers.
pub fn spawn_alone(bin: &str, extra: &[&str]) -> (Server, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
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

/// A line-oriented client with a read timeout (a hung server fails the test, never hangs it).
pub struct LineClient {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl LineClient {
    pub fn connect(addr: SocketAddr) -> LineClient {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let writer = stream.try_clone().expect("clone");
        LineClient {
            reader: BufReader::new(stream),
            writer,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send");
    }

    pub fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\n").as_bytes());
    }

    /// The next line without its `\n`; `None` at EOF.
    pub fn read_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line.strip_suffix('\n').unwrap_or(&line).to_owned()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("read a line: {e}"),
        }
    }

    pub fn expect_echo(&mut self, line: &str) {
        self.send_line(line);
        assert_eq!(self.read_line().as_deref(), Some(line));
    }

    /// Asserts the server closes the connection (EOF or reset) without sending anything.
    /// Whether a line (or EOF) is already waiting, without blocking.
    pub fn has_reply_now(&mut self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        self.reader
            .get_ref()
            .set_nonblocking(true)
            .expect("nonblocking");
        let got = std::io::BufRead::fill_buf(&mut self.reader).map(|b| b.len());
        self.reader
            .get_ref()
            .set_nonblocking(false)
            .expect("blocking");
        !matches!(got, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    pub fn expect_closed(&mut self) {
        assert_eq!(self.read_line(), None, "expected the server to close");
    }
}

/// A server started with the fds a master would give it (SPEC §5): fd 3 = write end of a
/// "generation" pipe whose read end the test holds, fd 4 = read end of a private pipe whose
/// write end the test holds, fd 5 = a listener bound by the test.
pub struct FakeMaster {
    pub server: Server,
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
    listener: std::os::unix::net::UnixListener,
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
    let sources: [RawFd; 3] = [gen_w.as_raw_fd(), priv_r.as_raw_fd(), listener.as_raw_fd()];
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut command = Command::new(bin);
    command
        .args(["MASTER", "-server-service", spec])
        .args(extra)
        .stdin(Stdio::null())
        .stderr(log.reopen().expect("log file"));
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl and
    // dup2, which are async-signal-safe; it touches no memory shared with other threads.
    unsafe {
        command.pre_exec(move || stage_fds(&sources));
    }
    let child = command.spawn().expect("spawn the server");
    // Only the child may hold these ends (and the listener), as under a real master.
    drop((gen_w, priv_r, listener));
    let server = Server { child };
    FakeMaster {
        server,
        addr,
        generation: Some(gen_r),
        private: priv_w,
        log,
    }
}

/// In the child: moves `sources` to fds 3, 4, 5, ... without overwriting a source.
fn stage_fds(sources: &[RawFd]) -> io::Result<()> {
    let mut high = [0 as RawFd; 8];
    for (slot, &fd) in high.iter_mut().zip(sources) {
        // SAFETY: F_DUPFD_CLOEXEC on an fd the parent keeps open across the fork; async-signal-safe.
        *slot = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64) };
        if *slot == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    for (target, &fd) in (3..).zip(&high[..sources.len()]) {
        // SAFETY: dup2 between fds of this (child) process; async-signal-safe. The copy at
        // `target` has no FD_CLOEXEC, so it survives exec; the high copies close at exec.
        if unsafe { libc::dup2(fd, target) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether the other end of `fd` (a pipe write end) was closed: POLLERR right now.
pub fn peer_closed(fd: &impl std::os::fd::AsFd) -> bool {
    use nix::poll::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::empty())];
    matches!(poll(&mut fds, 0u16), Ok(n) if n > 0)
}

/// Raises this process's soft RLIMIT_NOFILE to at least `want` (capped by the hard limit);
/// children spawned afterwards inherit it. Returns the soft limit now in force.
pub fn raise_fd_limit(want: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft >= want {
        return soft;
    }
    let new = want.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, new, hard).expect("setrlimit");
    new
}

/// A pipe (read end, write end) whose ends other spawned children do not inherit.
pub fn cloexec_pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2")
}

/// An address of this host that is not loopback (the source address of the default route),
/// to connect from as a "remote" peer; `None` on a host with no such address.
pub fn non_loopback_ip() -> Option<std::net::IpAddr> {
    // A UDP connect sends nothing: it only picks the route and the source address.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}
