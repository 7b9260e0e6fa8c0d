//! Processes by pid: children via /proc, signals, CPU affinity, and a kill-on-drop child guard.
//!
//! Everything here targets explicit pids: a master given by the user, its own children as
//! listed in `/proc/PID/task/*/children` (checked again through `/proc/CHILD/stat` right
//! before a signal), or processes this crate spawned itself.

use std::io;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The children of `pid` (all its threads' children), sorted.
///
/// # Errors
/// `pid` does not exist or /proc is not readable.
pub fn children_of(pid: i32) -> io::Result<Vec<i32>> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(text) = std::fs::read_to_string(task?.path().join("children")) else {
            continue;
        };
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The parent pid and state letter of `pid` from `/proc/PID/stat`, if it exists.
pub fn stat_of(pid: i32) -> Option<(i32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ..." — comm may contain spaces and parentheses: split at the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((ppid, state))
}

/// The process group of `pid` from `/proc/PID/stat` (field 5), if it exists.
pub fn pgid_of(pid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text[text.rfind(')')? + 1..]
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Whether `child` of `master` looks like a new master from a binary upgrade: it leads a
/// process group of its own (SPEC §14), unlike servers, which stay in the master's group.
pub fn is_new_master(master: i32, child: i32) -> bool {
    match (pgid_of(child), pgid_of(master)) {
        (Some(c), Some(m)) => c == child && c != m,
        _ => false,
    }
}

/// CPU time (user + system) used so far by `pid` and its live children, from
/// `/proc/PID/stat` (in USER_HZ = 100 ticks per second on Linux).
pub fn tree_cpu_time(pid: i32) -> Option<Duration> {
    let mut ticks = cpu_ticks(pid)?;
    for c in children_of(pid).unwrap_or_default() {
        ticks += cpu_ticks(c).unwrap_or(0);
    }
    Some(Duration::from_millis(ticks * 10))
}

fn cpu_ticks(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "pid (comm)": state is field 3, utime field 14, stime field 15.
    let mut it = text[text.rfind(')')? + 1..].split_whitespace().skip(11);
    let utime: u64 = it.next()?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The time the calling thread has spent runnable and waiting for a CPU (the run queue),
/// from `/proc/thread-self/schedstat`; `None` where the kernel does not keep it.
pub fn thread_runq_wait() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    parse_schedstat_wait(&text)
}

/// The second field of a `schedstat` line ("on-CPU ns, run-queue wait ns, time slices").
/// A line of zeros is a figure, not a missing one: a thread that has just started reads 0 ns
/// on a CPU until the kernel next accounts its time.
fn parse_schedstat_wait(text: &str) -> Option<Duration> {
    let mut it = text.split_whitespace();
    it.next()?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(it.next()?.parse().ok()?))
}

/// Resident memory (VmRSS) of `pid` and all its descendants, in bytes, from
/// `/proc/PID/status`; `None` if `pid` itself is gone. Pages shared between the processes
/// are counted once per process, which cancels out in a before/after difference.
pub fn tree_rss(pid: i32) -> Option<u64> {
    let mut total = rss_of(pid)?;
    // Breadth-first over children; the cap bounds the walk even if /proc changes under it.
    let mut todo = children_of(pid).unwrap_or_default();
    let mut seen = vec![pid];
    while let Some(p) = todo.pop() {
        if seen.contains(&p) || seen.len() >= 10_000 {
            continue;
        }
        seen.push(p);
        total += rss_of(p).unwrap_or(0);
        todo.extend(children_of(p).unwrap_or_default());
    }
    Some(total)
}

/// VmRSS of one process in bytes (0 for a process without memory, such as a zombie).
fn rss_of(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(parse_vm_rss(&text).unwrap_or(0))
}

/// The `VmRSS:   1234 kB` line of a `/proc/PID/status` text, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut it = line["VmRSS:".len()..].split_whitespace();
    let kb: u64 = it.next()?.parse().ok()?;
    (it.next() == Some("kB")).then_some(kb * 1024)
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    matches!(stat_of(pid), Some((_, s)) if s != 'Z' && s != 'X')
}

/// Send `sig` to `pid`.
///
/// # Errors
/// The OS error (no such process, not permitted).
pub fn signal(pid: i32, sig: Signal) -> io::Result<()> {
    kill(Pid::from_raw(pid), sig).map_err(io::Error::from)
}

/// Send `sig` to `child` only if it is still a live child of `parent` (guards pid reuse).
///
/// # Errors
/// `child` is no longer `parent`'s child, or the signal failed.
pub fn signal_child(parent: i32, child: i32, sig: Signal) -> io::Result<()> {
    match stat_of(child) {
        Some((pp, s)) if pp == parent && s != 'Z' => signal(child, sig),
        _ => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("pid {child} is no longer a child of {parent}"),
        )),
    }
}

/// Stop `child` (a live child of `parent`) with SIGSTOP, wait (up to 2 s) until each of its
/// threads is stopped, and count its established TCP connections with local port `port`.
/// A stopped process accepts nothing more, so the count is exactly what a SIGKILL sent next
/// takes down (connections still in the listen queue belong to the listener, not to it).
///
/// # Errors
/// `child` is no longer `parent`'s child, or its /proc entries are unreadable.
pub fn freeze_and_count_tcp(parent: i32, child: i32, port: u16) -> io::Result<usize> {
    signal_child(parent, child, Signal::SIGSTOP)?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while !all_threads_stopped(child) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    crate::sockets::count_of(child, port, crate::sockets::ESTABLISHED)
}

/// Whether every thread of `pid` is stopped (`T`/`t`) or gone.
fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|t| {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        matches!(state, None | Some("T" | "t" | "Z" | "X"))
    })
}

/// Read a pid file (first line, a decimal pid).
///
/// # Errors
/// The file cannot be read or does not start with a pid.
pub fn read_pid_file(path: &Path) -> io::Result<i32> {
    let text = std::fs::read_to_string(path)?;
    text.split_whitespace()
        .next()
        .and_then(|p| p.parse::<i32>().ok())
        .filter(|&p| p > 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no pid in file"))
}

/// The calling thread's CPU affinity.
///
/// # Errors
/// The OS error.
pub fn affinity() -> io::Result<CpuSet> {
    sched_getaffinity(Pid::from_raw(0)).map_err(io::Error::from)
}

/// Set the calling thread's CPU affinity; threads and processes it starts later inherit it.
///
/// # Errors
/// The OS error (for example a CPU that is not online).
pub fn set_affinity(set: &CpuSet) -> io::Result<()> {
    sched_setaffinity(Pid::from_raw(0), set).map_err(io::Error::from)
}

/// A set holding only `cpu`.
///
/// # Errors
/// `cpu` is out of range for a `CpuSet`.
pub fn single_cpu(cpu: usize) -> io::Result<CpuSet> {
    let mut set = CpuSet::new();
    set.set(cpu).map_err(io::Error::from)?;
    Ok(set)
}

/// Raise the soft open-file limit to the hard limit (for runs with many connections).
///
/// # Errors
/// The OS error from `getrlimit`/`setrlimit`.
pub fn raise_nofile_limit() -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    Ok(hard)
}

/// A spawned process that is stopped (SIGTERM, then SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    /// What it is, for messages.
    pub name: String,
}

impl ChildGuard {
    /// Guard `child`, named `name` in messages.
    pub fn new(child: Child, name: impl Into<String>) -> Self {
        ChildGuard {
            child: Some(child),
            name: name.into(),
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .map_or(0, |c| i32::try_from(c.id()).unwrap_or(0))
    }

    /// `Some(status)` if the child has already exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; reap. Returns the exit status if known.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        let pid = i32::try_from(child.id()).unwrap_or(0);
        let _ = signal(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_wait_is_the_second_field() {
        assert_eq!(
            parse_schedstat_wait("1740187 366346 2\n"),
            Some(Duration::from_nanos(366_346))
        );
        assert_eq!(parse_schedstat_wait("1740187\n"), None);
        assert_eq!(
            parse_schedstat_wait("0 0 0\n"),
            Some(Duration::ZERO),
            "a new thread"
        );
        assert_eq!(
            parse_schedstat_wait("1 0 1"),
            Some(Duration::ZERO),
            "a thread that never waited"
        );
        assert_eq!(parse_schedstat_wait("x 366346 2"), None);
        assert_eq!(parse_schedstat_wait("1 -5 2"), None);
    }

    /// Two threads busy on one CPU for 100 ms each: the scheduler makes at least one wait
    /// for the other, and no thread waits longer than the test has run.
    #[test]
    fn threads_sharing_a_cpu_wait_for_it() {
        if !std::path::Path::new("/proc/thread-self/schedstat").exists() {
            return; // a kernel without schedstat: the bench shows `-`
        }
        let cpu = zmaster_testkit::allowed_cpus()[0];
        let start = Instant::now();
        let busy = move || {
            zmaster_testkit::on_cpus(&[cpu], || {
                let before = thread_runq_wait().expect("schedstat readable");
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(100) {
                    std::hint::spin_loop();
                }
                thread_runq_wait().expect("schedstat readable") - before
            })
        };
        let (a, b) = (std::thread::spawn(busy), std::thread::spawn(busy));
        let waits = [a.join().expect("thread"), b.join().expect("thread")];
        assert!(waits.iter().any(|w| !w.is_zero()), "{waits:?}");
        assert!(waits.iter().all(|w| *w <= start.elapsed()), "{waits:?}");
    }

    #[test]
    fn vm_rss_line() {
        let status = "Name:\tx\nVmPeak:\t  9 kB\nVmRSS:\t    1234 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
        assert_eq!(parse_vm_rss("Name:\tkthread\n"), None);
    }

    #[test]
    fn tree_rss_adds_grandchildren() {
        // sh stays as the parent of sleep (a second command follows), so the tree is
        // two levels deep; once sleep has exec'd and sleeps, both RSS figures are stable.
        let Ok(child) = std::process::Command::new("sh")
            .args(["-c", "sleep 5; :"])
            .spawn()
        else {
            return;
        };
        let mut g = ChildGuard::new(child, "sh");
        let sh = g.pid();
        let deadline = Instant::now() + Duration::from_secs(10);
        let sleeper = loop {
            let kid = children_of(sh).unwrap_or_default().first().copied();
            let comm = kid.and_then(|k| std::fs::read_to_string(format!("/proc/{k}/comm")).ok());
            if let (Some(k), Some("sleep")) = (kid, comm.as_deref().map(str::trim))
                && stat_of(k).is_some_and(|(_, st)| st == 'S')
            {
                break k;
            }
            assert!(Instant::now() < deadline, "sleep never appeared under sh");
            std::thread::sleep(Duration::from_millis(5));
        };
        let parts = rss_of(sh).unwrap_or(0) + rss_of(sleeper).unwrap_or(0);
        assert!(rss_of(sleeper).unwrap_or(0) > 0);
        assert_eq!(tree_rss(sh), Some(parts));
        assert!(tree_rss(sleeper).is_some_and(|r| r > 0 && r < parts));
        let _ = signal_child(sh, sleeper, Signal::SIGKILL);
        let _ = g.stop(Duration::from_secs(2));
        assert_eq!(tree_rss(sh), None, "a reaped pid has no RSS");
    }

    #[test]
    fn a_group_leading_child_is_a_new_master() {
        use std::os::unix::process::CommandExt as _;
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        let lead = std::process::Command::new("sleep")
            .arg("5")
            .process_group(0)
            .spawn();
        let plain = std::process::Command::new("sleep").arg("5").spawn();
        let (Ok(lead), Ok(plain)) = (lead, plain) else {
            return;
        };
        let (mut lead, mut plain) = (
            ChildGuard::new(lead, "lead"),
            ChildGuard::new(plain, "plain"),
        );
        assert_eq!(pgid_of(lead.pid()), Some(lead.pid()));
        assert!(is_new_master(me, lead.pid()));
        assert!(!is_new_master(me, plain.pid()));
        // A process group leader is not its own new master; a gone pid is none.
        assert!(!is_new_master(lead.pid(), lead.pid()));
        assert!(!is_new_master(me, 0x3fff_ffff));
        let _ = (
            lead.stop(Duration::from_secs(2)),
            plain.stop(Duration::from_secs(2)),
        );
    }

    #[test]
    fn own_stat_and_children() {
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        let (ppid, state) = stat_of(me).unwrap_or((0, '?'));
        assert!(ppid > 0 && state != 'Z');
        assert_eq!(pgid_of(me), Some(nix::unistd::getpgrp().as_raw()));
        let child = std::process::Command::new("sleep").arg("5").spawn();
        let Ok(child) = child else { return };
        let mut g = ChildGuard::new(child, "sleep");
        let kids = children_of(me).unwrap_or_default();
        assert!(tree_cpu_time(me).is_some());
        assert!(kids.contains(&g.pid()), "{kids:?} lacks {}", g.pid());
        assert!(signal_child(me, 1, Signal::SIGTERM).is_err());
        assert!(g.stop(Duration::from_secs(2)).is_some());
    }
}
