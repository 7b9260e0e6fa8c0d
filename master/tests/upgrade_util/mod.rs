//! Helpers for the binary-upgrade tests: a draining server (the test binary itself), a master
//! started from a given program path, connect-per-request load with its failures counted,
//! long-lived connections, and a guard that kills every master an upgrade left behind.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use crate::util::{Master, Setup, descendants_of, is_alive, wait_for};

/// The environment variable that turns the test binary into [`drain_server_main`].
pub const DRAIN_ENV: &str = "ZM_UPGRADE_DRAIN";

/// Not a test: the server the master starts (fd 3 generation pipe, fd 5 one inet listener).
/// It answers `PID <pid> <line>` per line; at softstop it stops accepting, closes its listener
/// and exits 0 once every open connection ended.
pub fn drain_server_main() {
    if std::env::var_os(DRAIN_ENV).is_none() {
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: started by the master (SPEC §5): fd 5 is this process's listener, owned here only.
    let listener = std::net::TcpListener::from(unsafe { OwnedFd::from_raw_fd(5) });
    #[allow(unsafe_code)]
    // SAFETY: fd 3 is the generation pipe the master passed; borrowed for the process's life.
    let generation = unsafe { BorrowedFd::borrow_raw(3) };
    let mut open = Vec::new();
    loop {
        let mut fds = [
            PollFd::new(generation, PollFlags::empty()),
            PollFd::new(std::os::fd::AsFd::as_fd(&listener), PollFlags::POLLIN),
        ];
        let _ = poll(&mut fds, PollTimeout::from(100u16));
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            break;
        }
        while let Ok((stream, _)) = listener.accept() {
            let _ = stream.set_nonblocking(false);
            open.push(std::thread::spawn(move || echo(stream)));
        }
    }
    drop(listener);
    for t in open {
        let _ = t.join();
    }
    std::process::exit(0);
}

fn echo(stream: TcpStream) {
    let pid = std::process::id();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
        let reply = format!("PID {pid} {line}");
        if reader.get_mut().write_all(reply.as_bytes()).is_err() {
            break;
        }
        line.clear();
    }
}

/// Makes this test process the reaper of orphans: a new master outlives the old one, its
/// parent, and is then this process's child (reaped by [`Masters`]).
pub fn become_subreaper() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
}

/// A config dir whose one service runs the draining server on `port` with `count` processes.
pub fn drain_setup(port: u16, count: usize) -> Setup {
    let s = Setup::new();
    let exe = std::env::current_exe().expect("test binary");
    let script = s.path("drain.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{DRAIN_ENV}=1 exec {} --exact drain_server --test-threads=1 -q\n",
            exe.display()
        ),
    )
    .expect("write drain.sh");
    make_executable(&script);
    s.write_cf(
        "drain",
        &format!(
            "server-command = {}\nserver-service = 127.0.0.1:{port}\nserver-proc-count = {count}\n",
            script.display()
        ),
    );
    s
}

pub fn make_executable(path: &Path) {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
}

/// Copies the zmaster binary to `DIR/bin/zmaster` (a program path the test may swap).
pub fn copy_master(s: &Setup) -> PathBuf {
    let bin = s.path("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    let program = bin.join("zmaster");
    std::fs::copy(crate::util::ZMASTER, &program).expect("copy zmaster");
    make_executable(&program);
    program
}

/// Replaces `program` on disk by a file with `contents`, as a package manager does (a new
/// file renamed over the path: the running binary keeps its inode).
pub fn swap_program(program: &Path, contents: &[u8]) {
    let next = program.with_extension("next");
    std::fs::write(&next, contents).expect("write the new program");
    make_executable(&next);
    std::fs::rename(&next, program).expect("swap the program");
}

/// Starts `program -C etc/ args...`; stderr (the old and the new master's) goes to
/// `master.log`.
pub fn start_master_from(s: &Setup, program: &Path, args: &[&str]) -> Master {
    let log = s.path("master.log");
    // `program` was just written by this process: a sibling test thread's fork can hold the
    // write fd until its exec, and exec then fails with ETXTBSY for a moment (a known race
    // of fork and exec in threaded programs): try again shortly.
    let mut tries = 0;
    let child = loop {
        let spawned = Command::new(program)
            .arg("-C")
            .arg(s.etc())
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(s.path("master.out")).expect("master.out"))
            .stderr(std::fs::File::create(&log).expect("master.log"))
            .spawn();
        match spawned {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other.expect("start zmaster"),
        }
    };
    Master {
        child: Some(child),
        log,
    }
}

pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Waits until the pid file names a live master other than `old`; returns it.
pub fn wait_new_master(pid_file: &Path, old: i32, master: &Master) -> i32 {
    wait_for(
        Duration::from_secs(20),
        "a new master in the pid file",
        || read_pid(pid_file).filter(|p| *p != old && is_alive(*p)),
    );
    let new = read_pid(pid_file).expect("pid");
    assert_ne!(new, old, "{}", master.log_text());
    new
}

/// Every master pid a test saw: on drop each one and its descendants are SIGKILLed and the
/// masters reaped (they are this process's children once their parent exited).
#[derive(Default)]
pub struct Masters(pub Vec<i32>);

impl Drop for Masters {
    fn drop(&mut self) {
        for &pid in &self.0 {
            for kid in descendants_of(pid) {
                zmaster_testkit::kill_pid(kid);
            }
            zmaster_testkit::kill_pid(pid);
        }
        for &pid in &self.0 {
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                    Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    _ => break,
                }
            }
        }
    }
}

/// Waits for a master that is this process's orphaned child (not a `Child`) to exit.
pub fn wait_gone(pid: i32, timeout: Duration) {
    wait_for(timeout, &format!("pid {pid} to exit"), || {
        let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        (!is_alive(pid)).then_some(())
    });
}

pub fn signal(pid: i32, sig: Signal) {
    kill(Pid::from_raw(pid), sig).expect("kill");
}

/// The failures a connect-per-request client counts.
#[derive(Debug, Default)]
pub struct Counts {
    pub ok: AtomicUsize,
    pub refused: AtomicUsize,
    pub reset: AtomicUsize,
    pub short: AtomicUsize,
    /// The pids that answered, in order of first answer.
    pub pids: std::sync::Mutex<Vec<i32>>,
}

impl Counts {
    pub fn failures(&self) -> (usize, usize, usize) {
        (
            self.refused.load(Ordering::SeqCst),
            self.reset.load(Ordering::SeqCst),
            self.short.load(Ordering::SeqCst),
        )
    }
}

/// `threads` clients that each connect, send one line, read the whole reply and close, in a
/// loop until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub counts: Arc<Counts>,
}

impl Load {
    pub fn start(port: u16, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let threads = (0..threads)
            .map(|t| {
                let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        one_request(port, &format!("req {t}.{n}"), &counts);
                    }
                })
            })
            .collect();
        Load {
            stop,
            threads,
            counts,
        }
    }

    /// Waits until `n` more requests succeeded.
    pub fn wait_more(&self, n: usize) {
        let start = self.counts.ok.load(Ordering::SeqCst);
        wait_for(Duration::from_secs(20), "requests to succeed", || {
            (self.counts.ok.load(Ordering::SeqCst) >= start + n).then_some(())
        });
    }

    /// Waits until a request is answered by a child of `master`.
    pub fn wait_answer_from_children_of(&self, master: i32) {
        wait_for(
            Duration::from_secs(20),
            "an answer from the new generation",
            || {
                let kids = zmaster_testkit::children_of(master);
                let pids = self.counts.pids.lock().expect("pids");
                pids.iter().any(|p| kids.contains(p)).then_some(())
            },
        );
    }

    pub fn stop(mut self) -> Arc<Counts> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().expect("load thread");
        }
        Arc::clone(&self.counts)
    }
}

fn one_request(port: u16, line: &str, counts: &Counts) {
    let stream = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => s,
        Err(_) => {
            counts.refused.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut conn = BufReader::new(stream);
    if conn
        .get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .is_err()
    {
        counts.reset.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let mut reply = String::new();
    match conn.read_line(&mut reply) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {
            counts.reset.fetch_add(1, Ordering::SeqCst);
        }
        Ok(_) if reply.ends_with(&format!(" {line}\n")) && reply.starts_with("PID ") => {
            counts.ok.fetch_add(1, Ordering::SeqCst);
            let pid = reply.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            let mut pids = counts.pids.lock().expect("pids");
            if let Some(pid) = pid.filter(|p| !pids.contains(p)) {
                pids.push(pid);
            }
        }
        _ => {
            counts.short.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A long-lived connection: one line at a time, answered by the same server process.
pub struct Conn {
    conn: BufReader<TcpStream>,
    pub server: i32,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut conn = Conn {
            conn: BufReader::new(stream),
            server: 0,
        };
        conn.server = conn.talk("hello");
        conn
    }

    /// Sends `line` and returns the pid that answered it (the whole line must come back).
    pub fn talk(&mut self, line: &str) -> i32 {
        self.conn
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .expect("write on a long-lived connection");
        let mut reply = String::new();
        self.conn
            .read_line(&mut reply)
            .expect("read on a long-lived connection");
        assert!(
            reply.ends_with(&format!(" {line}\n")),
            "short reply {reply:?}"
        );
        reply
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("PID in the reply")
    }
}
