//! `coroutine::serve`'s hooks in a real server process under a fake master (SPEC §5 fds):
//! every listener is served by the one handler in coroutines, and a softstop drains the open
//! connection without a `before_softstop` hook, and plain hooks exit at once.
//!
//! The server process is this test binary run again with `--exact serve_child`: the
//! `serve_child` test serves only when `ZM_CO_SERVE_CHILD` is set (otherwise it returns at
//! once), with fds 3, 4 and 5 staged by the parent as a master would.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use zmaster_modes::coroutine::{self, Connection, Hooks};

/// How long one wait may take before it counts as a hang.
const PATIENCE: Duration = Duration::from_secs(30);
const CHILD_ENV: &str = "ZM_CO_SERVE_CHILD";

fn echo(conn: Connection) {
    let (mut lines, mut line) = (BufReader::new(&conn), String::new());
    while lines.read_line(&mut line).unwrap_or(0) > 0 {
        if (&conn).write_all(line.as_bytes()).is_err() {
            return;
        }
        line.clear();
    }
}

/// The server side: `drain` = `coroutine::serve_hooks`; otherwise plain hooks, no drain.
#[test]
fn serve_child() {
    let Ok(style) = std::env::var(CHILD_ENV) else {
        return;
    };
    let hooks = match style.as_str() {
        "drain" => coroutine::serve_hooks(echo),
        _ => Hooks::new()
            .service_register(|_name, listener, _kind| coroutine::general_register(listener, echo)),
    };
    let args = ["co-serve", "MASTER", "-server-service", ":i5"];
    let code = coroutine::server_main(args, hooks);
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
}

/// A server process; killed and reaped on drop.
struct Served {
    child: Child,
    addr: SocketAddr,
    /// The write end's peer: dropping it is what a master does on reload.
    generation: Option<OwnedFd>,
    _private: OwnedFd,
    log: Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(style: &str) -> Served {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (gen_r, gen_w) = cloexec_pipe();
        let (priv_r, priv_w) = cloexec_pipe();
        let sources = [gen_w.as_raw_fd(), priv_r.as_raw_fd(), listener.as_raw_fd()];
        let mut command = Command::new(std::env::current_exe().expect("test binary"));
        command
            .args(["--exact", "serve_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, style)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only calls fcntl and
        // dup2 (async-signal-safe) on fds the parent keeps open; it touches no shared memory.
        unsafe {
            command.pre_exec(move || stage_fds(&sources));
        }
        let mut child = command.spawn().expect("spawn the server");
        drop((gen_w, priv_r, listener)); // only the server holds them now, as under a master
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, log) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(io::Result::ok) {
                let _ = tx.send(line);
            }
        });
        Served {
            child,
            addr,
            generation: Some(gen_r),
            _private: priv_w,
            log,
        }
    }

    /// Waits for a log line containing `what` (returns it).
    fn wait_log(&self, what: &str) -> String {
        loop {
            match self.log.recv_timeout(PATIENCE) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {what:?}: {e}"),
            }
        }
    }

    fn wait_exit(&mut self) -> bool {
        let status = self.child.wait().expect("wait");
        status.success()
    }
}

/// In the child: moves `sources` to fds 3, 4, 5 without overwriting a source.
fn stage_fds(sources: &[RawFd; 3]) -> io::Result<()> {
    let mut high = [0 as RawFd; 3];
    for (slot, &fd) in high.iter_mut().zip(sources) {
        // SAFETY: F_DUPFD_CLOEXEC on an fd open across the fork; async-signal-safe.
        *slot = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64) };
        if *slot == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    for (target, &fd) in (3..).zip(&high) {
        // SAFETY: dup2 between fds of this (child) process; async-signal-safe. The copy at
        // `target` has no FD_CLOEXEC, so it survives exec; the high copies close at exec.
        if unsafe { libc::dup2(fd, target) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn cloexec_pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2")
}

/// A line client with generous timeouts (a hang fails instead of blocking the suite).
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// Sends `line` and returns the answer line (`None`: the server closed).
    fn ask(&mut self, line: &str) -> Option<String> {
        let sent = writeln!(self.reader.get_mut(), "{line}");
        let mut answer = String::new();
        match (sent, self.reader.read_line(&mut answer)) {
            (Ok(()), Ok(n)) if n > 0 => Some(answer.trim_end().to_owned()),
            (_, Err(e)) if e.kind() == io::ErrorKind::WouldBlock => panic!("no answer: {e}"),
            _ => None,
        }
    }
}

#[test]
fn serve_drains_the_open_connection_on_softstop() {
    let mut served = Served::start("drain");
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

#[test]
fn hooks_without_a_drain_exit_at_once_on_softstop() {
    let mut served = Served::start("exit");
    let mut held = Client::connect(served.addr);
    assert_eq!(held.ask("before").as_deref(), Some("before"));
    drop(served.generation.take());
    served.wait_log("softstop reason=");
    assert!(served.wait_exit(), "the server exits 0");
    assert_eq!(held.ask("after"), None, "the open connection was cut");
}
