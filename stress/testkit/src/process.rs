//! Child guards that kill by pid on drop, and `/proc` inspection of processes.

use std::fs;
use std::process::{Child, ExitStatus};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{PATIENCE, wait_for};

/// A child process SIGKILLed (by its own pid, nothing else) and reaped on drop.
pub struct ChildGuard {
    /// The guarded child.
    pub child: Child,
}

impl ChildGuard {
    /// Guards `child`.
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard { child }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the child to exit by itself (fails after [`PATIENCE`]).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = &mut self.child;
        wait_for(PATIENCE, "the child to exit", || {
            child.try_wait().expect("try_wait")
        })
    }

    /// Whether the child has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// CPU time the child used so far (user + system), in clock ticks (from /proc).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
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

    /// The number of threads of the child (from /proc).
    pub fn threads(&self) -> usize {
        fs::read_dir(format!("/proc/{}/task", self.pid())).map_or(0, Iterator::count)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Child::kill signals this child's pid only, and only while it is unreaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGKILLs `pid` (a process the test started or found under one it started); errors (it is
/// gone already) are ignored.
pub fn kill_pid(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Live (non-zombie) children of `pid`, sorted.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut kids = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = fs::read_to_string(task.path().join("children")) {
                kids.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
    }
    kids.retain(|k| is_alive(*k));
    kids.sort();
    kids
}

/// Every live descendant of `pid` (children, their children, ...).
pub fn descendants_of(pid: i32) -> Vec<i32> {
    let mut all = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for kid in children_of(p) {
            all.push(kid);
            frontier.push(kid);
        }
    }
    all
}

/// True when `pid` exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next())
                .unwrap_or_default();
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

/// Number of open fds of `pid` (0 when it is gone).
pub fn fd_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Basename of argv[0] of `pid` (empty when it is gone).
pub fn exe_name(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = raw.split(|b| *b == 0).next().unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv0).into_owned();
    argv0.rsplit('/').next().unwrap_or_default().to_owned()
}

/// Resident memory (`VmRSS`) of `pid` in bytes (0 when it is gone or has none).
pub fn rss_bytes(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_of_a_live_process_and_of_none() {
        assert!(rss_bytes(std::process::id() as i32) > 0);
        assert_eq!(rss_bytes(i32::MAX), 0);
    }
}
