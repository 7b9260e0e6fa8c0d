//! The control server when accept fails (`EMFILE`): the level-triggered listener is taken out
//! of the epoll interest for a pause reported through `next_deadline`, so the supervision loop
//! does not spin, and accepting resumes once fds are free again.
//!
//! The fd exhaustion runs in a child process (this test binary again, with `--exact` and
//! [`CHILD`] set) so it cannot starve the other tests' threads of fds.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use zmaster::control::{ControlServer, Reply};

const CHILD: &str = "ZM_CONTROL_EMFILE_CHILD";

/// Counts the warnings about failed accepts (the child installs it as the logger).
struct Warnings(AtomicUsize);

impl log::Log for Warnings {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.level() == log::Level::Warn && record.args().to_string().contains("accept:") {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn flush(&self) {}
}

static WARNINGS: Warnings = Warnings(AtomicUsize::new(0));

/// Waits, as the supervision loop would, until the server's next deadline has passed.
fn wait_deadline(server: &ControlServer, at: Instant) {
    while Instant::now() < at {
        let mut fds = [PollFd::new(server.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(10u8));
    }
}

/// Whether `fd` is readable right now.
fn readable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) > 0
}

/// The child: a client waits in the backlog while every fd is taken.
fn exhausted_server() {
    log::set_logger(&WARNINGS).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let mut server = ControlServer::bind(&path).unwrap();
    let mut client = UnixStream::connect(&path).unwrap();
    client.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // Few fds, all taken: the accept must fail with EMFILE.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 64, hard).unwrap();
    let mut filler: Vec<OwnedFd> = Vec::new();
    while let Ok(fd) = client.as_fd().try_clone_to_owned() {
        filler.push(fd);
    }
    assert!(readable(server.as_fd()), "the pending connect is reported");
    let mut answered = 0;
    let failed_at = Instant::now();
    server.handle_ready(failed_at, |_, _| {
        answered += 1;
        Some(Reply::ok())
    });
    assert_eq!(answered, 0, "no fd to accept into");
    assert!(
        !readable(server.as_fd()),
        "after a failed accept the server's fd is quiet (the loop would spin otherwise)"
    );
    let resume = server.next_deadline().expect("the pause is a deadline");
    assert!(resume > failed_at, "the pause ends later, not at once");
    assert_eq!(
        WARNINGS.0.load(Ordering::SeqCst),
        1,
        "the failure is logged"
    );
    // Still no fds when the pause ends: the retry fails and pauses again, without a new line.
    wait_deadline(&server, resume);
    server.handle_ready(Instant::now(), |_, _| Some(Reply::ok()));
    assert!(!readable(server.as_fd()), "paused again");
    assert_eq!(
        WARNINGS.0.load(Ordering::SeqCst),
        1,
        "the warning is rate-limited"
    );
    let resume = server.next_deadline().expect("paused again");
    drop(filler);
    wait_deadline(&server, resume);
    // Accept, then read and answer (one or more passes as the events come).
    let end = Instant::now() + Duration::from_secs(20);
    while answered == 0 {
        server.handle_ready(Instant::now(), |_, _| {
            answered += 1;
            Some(Reply::ok())
        });
        assert!(
            Instant::now() < end,
            "the waiting client was never answered"
        );
        let mut fds = [PollFd::new(server.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(10u8));
    }
    let mut line = String::new();
    BufReader::new(&client).read_line(&mut line).unwrap();
    assert!(line.contains("ok"), "the client got its reply: {line:?}");
}

#[test]
fn accept_failure_pauses_the_listener_then_resumes() {
    if std::env::var_os(CHILD).is_some() {
        exhausted_server();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "accept_failure_pauses_the_listener_then_resumes",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr)
    );
}
