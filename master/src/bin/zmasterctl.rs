//! `zmasterctl`: start, check, reload, stop, restart, status, scale and upgrade a zmaster
//! (SPEC §11, §14).
//!
//! Exit status: 0 done; 1 failed (one line on stderr says why); 2 usage error; 3 `status`
//! of a master that is not running. It finds a running master by its pid file's lock and talks
//! to it through the control socket (`-control`, default: the pid file's path + `.ctl`), and
//! validates with `zmaster -t`. Only `stop` and `upgrade` work without the socket (SIGQUIT /
//! SIGTERM, SIGUSR2).

#![deny(unsafe_code)]

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use zmaster::control::{self, Reply, Request, ServiceState, Status, StopMode};
use zmaster::{LockState, try_lock};
use zmaster_core::cli::CommandLine;

const USAGE: &str = "usage: zmasterctl [-C DIR] [-pid-file FILE] [-control SOCK] [-log-file FILE] [-timeout DURATION] start|check|reload|stop [--fast]|restart|status [--json]|scale SERVICE N|upgrade";
const OPTIONS: [&str; 8] = [
    "C", "pid-file", "control", "log-file", "timeout", "fast", "json", "help",
];
/// How long `start` waits for the master to come up, unless `-timeout`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `upgrade` waits, unless `-timeout`: the master's default upgrade timeout and a
/// margin (the reply comes when the new master is ready or was rolled back).
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(35);
/// How long a status or scale request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the lock and the socket are probed while waiting.
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// A failure: the exit status and one line for stderr.
struct Fail(u8, String);

fn fail<T>(msg: impl Into<String>) -> Result<T, Fail> {
    Err(Fail(1, msg.into()))
}

fn usage<T>(msg: impl std::fmt::Display) -> Result<T, Fail> {
    Err(Fail(2, format!("{msg}\n{USAGE}")))
}

fn main() -> ExitCode {
    match run(std::env::args().skip(1)) {
        Ok(code) => ExitCode::from(code),
        Err(Fail(code, msg)) => {
            eprintln!("zmasterctl: {msg}");
            ExitCode::from(code)
        }
    }
}

struct Ctl {
    dir: Option<PathBuf>,
    pid_file: PathBuf,
    control: PathBuf,
    /// `-control` as given: passed on to the master it starts.
    control_arg: Option<String>,
    log_file: PathBuf,
    timeout: Option<Duration>,
}

/// How the control socket answered.
enum Answer {
    Reply(Reply),
    /// No socket at the path, or nobody serving it: a master without one.
    NoSocket,
}

fn run(args: impl Iterator<Item = String>) -> Result<u8, Fail> {
    let cli = CommandLine::parse(args).or_else(usage)?;
    let opts = &cli.overrides;
    if let Some(key) = opts.keys().find(|k| !OPTIONS.contains(k)) {
        return usage(format!("unknown option -{key}"));
    }
    if opts.get_bool("help", false).unwrap_or(false) {
        println!("{USAGE}");
        return Ok(0);
    }
    let dir = opts.get("C").filter(|d| !d.is_empty()).map(PathBuf::from);
    let pid_file = match (opts.get("pid-file").filter(|p| !p.is_empty()), &dir) {
        (Some(p), _) => PathBuf::from(p),
        (None, Some(d)) => {
            let name = d.file_name().map(|n| n.to_string_lossy().into_owned());
            PathBuf::from(format!("/tmp/zmaster-{}.pid", name.unwrap_or_default()))
        }
        (None, None) => return usage("needs -pid-file FILE or -C DIR"),
    };
    let with_suffix = |suffix: &str| {
        let mut p = pid_file.clone().into_os_string();
        p.push(suffix);
        PathBuf::from(p)
    };
    let control_arg = opts.get("control").map(str::to_owned);
    let ctl = Ctl {
        control: control_arg
            .as_deref()
            .map_or_else(|| with_suffix(".ctl"), PathBuf::from),
        log_file: opts.get("log-file").map_or_else(
            || match pid_file.with_extension("log") {
                same if same == pid_file => with_suffix(".log"),
                log => log,
            },
            PathBuf::from,
        ),
        timeout: match opts.get("timeout") {
            None => None,
            Some(_) => Some(
                opts.get_duration("timeout", Duration::ZERO)
                    .or_else(usage)?,
            ),
        },
        dir,
        pid_file,
        control_arg,
    };
    let words: Vec<&str> = cli.positional.iter().map(String::as_str).collect();
    let flag = |name| opts.get_bool(name, false).unwrap_or(false);
    match words.as_slice() {
        ["start"] => ctl.start(),
        ["check"] => ctl.check_command(),
        ["reload"] => ctl.reload(),
        ["stop"] => ctl.stop(if flag("fast") {
            StopMode::Fast
        } else {
            StopMode::Graceful
        }),
        ["restart"] => ctl.restart(),
        ["upgrade"] => ctl.upgrade(),
        ["status"] => ctl.status(flag("json")),
        ["scale", service, n] => match n.parse::<u32>() {
            Ok(n) => ctl.scale(service, n),
            Err(_) => usage(format!("scale: {n:?} is not a process count")),
        },
        [] => usage("no command"),
        [cmd, ..] => usage(format!("unknown command or arguments: {cmd}")),
    }
}

/// How far a starting master got ([`Ctl::first_generation`]).
enum Progress {
    Up,
    NotYet,
    /// This service has no process and is backing off or failed: its start failed.
    Down(String),
}

/// What `zmaster -t` said: its whole output, and whether the config passed.
enum Check {
    Ok(String),
    Failed(String),
}

impl Check {
    /// Ok, or the error line of a failed check (`FILE:LINE: ...`, without `zmaster: `).
    fn error(&self) -> Option<String> {
        match self {
            Check::Ok(_) => None,
            Check::Failed(text) => Some(check_error(text)),
        }
    }
}

impl Ctl {
    fn dir(&self, command: &str) -> Result<&Path, Fail> {
        self.dir
            .as_deref()
            .map_or_else(|| usage(format!("{command} needs -C DIR")), Ok)
    }

    /// The pid of the running master, or None when none holds the lock.
    fn running(&self) -> Result<Option<u32>, Fail> {
        match try_lock(&self.pid_file) {
            LockState::NotRunning => Ok(None),
            LockState::Running => Ok(Some(read_pid(&self.pid_file).unwrap_or(0))),
            LockState::Unusable => fail(format!(
                "pid file {} cannot be used (not a regular file, or no permission)",
                self.pid_file.display()
            )),
        }
    }

    fn ask(&self, request: &Request, timeout: Duration) -> Result<Answer, Fail> {
        match control::request(&self.control, request, timeout) {
            Ok(reply) => Ok(Answer::Reply(reply)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(Answer::NoSocket)
            }
            Err(e) => fail(format!("control socket {}: {e}", self.control.display())),
        }
    }

    fn check(&self, dir: &Path) -> Result<Check, Fail> {
        let out = Command::new(master_binary())
            .arg("-C")
            .arg(dir)
            .arg("-t")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Fail(1, format!("run {}: {e}", master_binary().display())))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        Ok(if out.status.success() {
            Check::Ok(text)
        } else {
            Check::Failed(text)
        })
    }

    fn check_command(&self) -> Result<u8, Fail> {
        let dir = self.dir("check")?;
        match self.check(dir)? {
            Check::Ok(text) => {
                print!("{text}");
                Ok(0)
            }
            Check::Failed(text) => {
                eprint!("{text}");
                Ok(1)
            }
        }
    }

    fn start(&self) -> Result<u8, Fail> {
        let dir = self.dir("start")?;
        if let Some(pid) = self.running()? {
            return fail(format!("already running (pid {pid})"));
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.log_file)
            .map_err(|e| Fail(1, format!("open log file {}: {e}", self.log_file.display())))?;
        // Only what this master writes counts as its error, not older lines of the log.
        let offset = log.seek(SeekFrom::End(0)).unwrap_or(0);
        let err_log = log
            .try_clone()
            .map_err(|e| Fail(1, format!("log file {}: {e}", self.log_file.display())))?;
        let mut cmd = Command::new(master_binary());
        cmd.arg("-C").arg(dir).arg("-pid-file").arg(&self.pid_file);
        if let Some(sock) = &self.control_arg {
            cmd.arg("-control").arg(sock);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| Fail(1, e.to_string()))?);
        cmd.stderr(err_log);
        own_session(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| Fail(1, format!("run {}: {e}", master_binary().display())))?;
        let pid = child.id();
        let deadline = Instant::now() + self.timeout.unwrap_or(START_TIMEOUT);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut text = String::new();
                let _ = log.seek(SeekFrom::Start(offset));
                let _ = log.read_to_string(&mut text);
                let line = error_line(&text)
                    .unwrap_or_else(|| format!("zmaster exited ({status}) before it was up"));
                return fail(format!("start failed: {line}"));
            }
            let locked = try_lock(&self.pid_file) == LockState::Running
                && read_pid(&self.pid_file) == Some(pid);
            let progress = if locked {
                self.first_generation()?
            } else {
                Progress::NotYet
            };
            let mut last_error = || {
                let mut text = String::new();
                let _ = log.seek(SeekFrom::Start(offset));
                let _ = log.read_to_string(&mut text);
                error_line(&text).unwrap_or_default()
            };
            match progress {
                Progress::Up => {
                    println!("started (pid {pid})");
                    return Ok(0);
                }
                Progress::Down(service) => {
                    return fail(format!(
                        "start failed: service {service} has no process: {}; the master (pid \
                         {pid}) runs the other services (zmasterctl stop stops it)",
                        last_error()
                    ));
                }
                Progress::NotYet => {}
            }
            if Instant::now() >= deadline {
                return fail(format!(
                    "zmaster (pid {pid}) is not up after {}: {}; see {}",
                    human(self.timeout.unwrap_or(START_TIMEOUT)),
                    last_error(),
                    self.log_file.display()
                ));
            }
            std::thread::sleep(PROBE_EVERY);
        }
    }

    /// Whether every service with processes to run has its first children (`Up` when the
    /// master has no control socket: the pid-file lock is all there is to go by), or one of
    /// them has none and is backing off or gave up (its start failed: `Down`).
    fn first_generation(&self) -> Result<Progress, Fail> {
        Ok(match self.ask(&Request::Status, REQUEST_TIMEOUT) {
            Ok(Answer::NoSocket) => Progress::Up,
            Ok(Answer::Reply(Reply {
                status: Some(status),
                ..
            })) => {
                let empty = |s: &&zmaster::control::ServiceStatus| {
                    s.proc_count > 0 && s.children.is_empty()
                };
                if let Some(down) = status
                    .services
                    .iter()
                    .filter(empty)
                    .find(|s| s.state != ServiceState::Running)
                {
                    Progress::Down(down.name.clone())
                } else if status.services.iter().any(|s| empty(&s)) {
                    Progress::NotYet
                } else {
                    Progress::Up
                }
            }
            Ok(Answer::Reply(_)) | Err(_) => Progress::NotYet,
        })
    }

    fn reload(&self) -> Result<u8, Fail> {
        // Without -C the master's own validation (the reload reply) is the check.
        if let Some(dir) = &self.dir {
            let check = self.check(dir)?;
            if let Some(error) = check.error() {
                return fail(format!("reload failed: {error}"));
            }
            // The check's warnings (unknown keys) are the operator's to see, not only the log's.
            if let Check::Ok(text) = &check {
                for line in text.lines().filter(|l| l.starts_with("zmaster: warning:")) {
                    eprintln!("{line}");
                }
            }
        }
        let Some(pid) = self.running()? else {
            return fail("not running");
        };
        let timeout = self.timeout.unwrap_or(START_TIMEOUT);
        match self.ask(&Request::Reload, timeout)? {
            Answer::Reply(Reply {
                ok: true,
                generation,
                ..
            }) => {
                let generation = generation.map_or("?".into(), |g| g.to_string());
                println!("reload ok: generation {generation}");
                Ok(0)
            }
            Answer::Reply(reply) => fail(format!("reload failed: {}", reason(&reply))),
            Answer::NoSocket => fail(self.no_socket(pid, "reload")),
        }
    }

    fn stop(&self, mode: StopMode) -> Result<u8, Fail> {
        let Some(pid) = self.running()? else {
            println!("not running");
            return Ok(0);
        };
        match self.ask(&Request::Stop { mode }, REQUEST_TIMEOUT)? {
            Answer::Reply(Reply { ok: true, .. }) => {}
            Answer::Reply(reply) => return fail(format!("stop refused: {}", reason(&reply))),
            // The stop signals say the same as the request (SPEC §11): SIGQUIT graceful.
            Answer::NoSocket => signal(
                pid,
                match mode {
                    StopMode::Graceful => Signal::SIGQUIT,
                    StopMode::Fast => Signal::SIGTERM,
                },
            )?,
        }
        // SPEC §11: the master's stop timeout + 5 s. That is also the master's worst case
        // (SIGKILL 5 s after the stop timeout), so children that ignore SIGTERM can make this
        // report "still running" just before the master exits; give -timeout for those, and
        // for a master started with a longer -master-stop-timeout.
        let timeout = self
            .timeout
            .unwrap_or(zmaster::DEFAULT_STOP_GRACE + Duration::from_secs(5));
        let deadline = Instant::now() + timeout;
        while try_lock(&self.pid_file) == LockState::Running {
            if Instant::now() >= deadline {
                return fail(format!(
                    "still running after {} (pid {pid})",
                    human(timeout)
                ));
            }
            std::thread::sleep(PROBE_EVERY);
        }
        println!("stopped");
        Ok(0)
    }

    fn restart(&self) -> Result<u8, Fail> {
        let dir = self.dir("restart")?;
        if let Some(error) = self.check(dir)?.error() {
            return fail(format!(
                "restart refused: {error}; the running master (if any) is left alone"
            ));
        }
        if self.running()?.is_some() {
            self.stop(StopMode::Graceful)?;
        }
        self.start()
    }

    fn status(&self, json: bool) -> Result<u8, Fail> {
        let Some(pid) = self.running()? else {
            if json {
                eprintln!("zmasterctl: not running");
            } else {
                println!("not running");
            }
            return Ok(3);
        };
        match self.ask(&Request::Status, REQUEST_TIMEOUT)? {
            Answer::Reply(Reply {
                ok: true,
                status: Some(status),
                ..
            }) => {
                print_status(&status, json);
                Ok(0)
            }
            Answer::Reply(reply) => fail(format!("status: {}", reason(&reply))),
            Answer::NoSocket => fail(self.no_socket(pid, "status")),
        }
    }

    fn scale(&self, service: &str, n: u32) -> Result<u8, Fail> {
        let Some(pid) = self.running()? else {
            return fail("not running");
        };
        let request = Request::Scale {
            service: service.into(),
            n,
        };
        match self.ask(&request, REQUEST_TIMEOUT)? {
            Answer::Reply(Reply { ok: true, .. }) => {
                println!("scale {service}: {n} processes");
                Ok(0)
            }
            Answer::Reply(reply) => fail(format!("scale failed: {}", reason(&reply))),
            Answer::NoSocket => fail(self.no_socket(pid, "scale")),
        }
    }

    /// Binary upgrade (SPEC §14): through the control socket, which replies once the new
    /// master is ready or rolled back; without one, SIGUSR2 and the pid file's new pid.
    fn upgrade(&self) -> Result<u8, Fail> {
        let Some(pid) = self.running()? else {
            return fail("not running");
        };
        let timeout = self.timeout.unwrap_or(UPGRADE_TIMEOUT);
        let new = match self.ask(&Request::Upgrade, timeout)? {
            Answer::Reply(Reply {
                ok: true,
                pid: Some(new),
                ..
            }) => new,
            Answer::Reply(reply) => return fail(format!("upgrade failed: {}", reason(&reply))),
            Answer::NoSocket => {
                signal(pid, Signal::SIGUSR2)?;
                self.wait_new_pid(pid, timeout)?
            }
        };
        println!("upgrade ok: pid {new} (pid {pid} drains and exits)");
        Ok(0)
    }

    /// Waits until the pid file names another pid than `old`, with its lock held.
    fn wait_new_pid(&self, old: u32, timeout: Duration) -> Result<u32, Fail> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(new) = read_pid(&self.pid_file).filter(|p| *p != old)
                && try_lock(&self.pid_file) == LockState::Running
            {
                return Ok(new);
            }
            if Instant::now() >= deadline {
                return fail(format!(
                    "upgrade: the pid file still names pid {old} after {}; the master's log says why (a failed upgrade leaves it running)",
                    human(timeout)
                ));
            }
            std::thread::sleep(PROBE_EVERY);
        }
    }

    /// A master runs but nothing answers at the control path: started with another
    /// `-control` (or `-control ''`).
    fn no_socket(&self, pid: u32, command: &str) -> String {
        format!(
            "{command}: the master (pid {pid}) runs but no control socket answers at {}; pass the -control PATH it was started with",
            self.control.display()
        )
    }
}

fn print_status(status: &Status, json: bool) {
    if json {
        // Plain structs of strings and numbers: serializing them cannot fail.
        println!("{}", serde_json::to_string(status).unwrap_or_default());
    } else {
        print!("{}", control::status_table(status));
    }
}

fn reason(reply: &Reply) -> &str {
    reply.error.as_deref().unwrap_or("no reason given")
}

fn signal(pid: u32, sig: Signal) -> Result<(), Fail> {
    let Ok(raw) = i32::try_from(pid) else {
        return fail(format!("bad pid {pid} in the pid file"));
    };
    if raw <= 1 {
        return fail(format!("no usable pid in the pid file (read {pid})"));
    }
    kill(Pid::from_raw(raw), sig).or_else(|e| fail(format!("kill -{sig} {pid}: {e}")))
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The error line of a failed `zmaster -t`: its last line that is not a warning, without the
/// `zmaster: ` prefix (`FILE:LINE: ...`).
fn check_error(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .rev()
        .find(|l| !l.is_empty() && !l.starts_with("zmaster: warning:"))
        .map_or_else(
            || "zmaster -t failed and said nothing".to_owned(),
            |l| l.strip_prefix("zmaster: ").unwrap_or(l).to_owned(),
        )
}

/// A duration as `-timeout` takes it (`15s`, `500ms`).
fn human(d: Duration) -> String {
    match d.subsec_millis() {
        0 => format!("{}s", d.as_secs()),
        _ => format!("{}ms", d.as_millis()),
    }
}

/// The master's own error line in its output: the last `zmaster:` or `error` line, else the
/// last line.
fn error_line(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("zmaster:") || l.contains("ERROR") || l.contains("error"))
        .or(lines.last())
        .map(|l| l.to_string())
}

/// The `zmaster` next to this binary, else `zmaster` from PATH.
fn master_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("zmaster")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("zmaster"))
}

/// Runs the master in a session of its own: a terminal's hang-up or ^C does not reach it.
#[allow(unsafe_code)]
fn own_session(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and calls only setsid(2),
    // which is async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_error_is_the_last_line_that_is_not_a_warning() {
        let text = "zmaster: warning: a.cf:2: unknown key server-x\nzmaster: a.cf:3: bad\nzmaster: warning: b.cf:1: unknown key run-y\n\n";
        assert_eq!(check_error(text), "a.cf:3: bad");
        assert_eq!(check_error("plain line\n"), "plain line");
        assert_eq!(
            check_error("zmaster: warning: only\n"),
            "zmaster -t failed and said nothing"
        );
    }

    #[test]
    fn timeouts_read_as_they_are_written() {
        assert_eq!(human(Duration::from_secs(15)), "15s");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
    }
}
