//! Waiting on events (a predicate, a log line, a pid change) with a deadline, never a sleep
//! standing in for one.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// Polls `f` (1 ms back-off doubling to 50 ms) until it returns `Some`; panics naming `what`
/// after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Polls `cond` until it holds; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(timeout, what, || cond().then_some(()))
}

/// Waits until the file at `path` holds a line containing `needle`; returns that line.
pub fn wait_log_line(path: &Path, needle: &str, timeout: Duration) -> String {
    wait_for(
        timeout,
        &format!("a line with {needle:?} in {}", path.display()),
        || {
            let text = fs::read_to_string(path).ok()?;
            text.lines().find(|l| l.contains(needle)).map(str::to_owned)
        },
    )
}

/// Waits until `current` reports a pid other than `old` (a respawn, a re-exec); returns it.
/// `current` returning `None` (no process right now) keeps waiting.
pub fn wait_pid_change(
    old: i32,
    timeout: Duration,
    mut current: impl FnMut() -> Option<i32>,
) -> i32 {
    wait_for(timeout, &format!("a pid other than {old}"), || {
        current().filter(|&pid| pid != old)
    })
}

/// The lines of a pipe (a child's stderr), read on a thread, so a test can wait for one.
pub struct LogPipe {
    lines: Receiver<String>,
}

impl LogPipe {
    /// Reads `pipe` line by line on a new thread until it ends.
    pub fn new(pipe: impl Read + Send + 'static) -> LogPipe {
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        LogPipe { lines }
    }

    /// Waits for the next line containing `needle` (earlier lines are consumed); panics when
    /// none comes within `timeout` or the pipe ends first.
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {needle:?}: {e}"),
            }
        }
    }
}
