//! Helpers for the master's behaviour tests: temp config dirs and a master guard that kills by
//! pid on drop; ports, /proc inspection, line clients and event waits come from the testkit.
#![allow(dead_code, unreachable_pub, unused_imports)]

pub use zmaster_testkit::{
    ask_tcp, ask_unix, children_of, descendants_of, exe_name, fd_count, free_port, is_alive,
    listens_on, wait_for, wait_log_line, wait_pid_change, wait_until,
};

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub const ZMASTER: &str = env!("CARGO_BIN_EXE_zmaster");
pub const PROBE: &str = env!("CARGO_BIN_EXE_zmaster-probe");

/// A probe's report: its argv and its open fds as (fd, link target).
pub type Report = (Vec<String>, Vec<(i32, String)>);

/// A test's temp dir with a config dir `etc/` and a report dir `rep/` for zmaster-probe.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("zmt")
            .tempdir_in("/tmp")
            .unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::create_dir(dir.path().join("rep")).unwrap();
        Setup { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn etc(&self) -> PathBuf {
        self.path("etc")
    }

    /// The working dir zmaster-probe child `pid` reported.
    pub fn report_cwd(&self, pid: i32) -> Option<String> {
        let text = fs::read_to_string(self.path("rep").join(pid.to_string())).ok()?;
        let rest = text.split_once("cwd:\n")?.1;
        Some(rest.lines().next()?.to_owned())
    }

    /// Writes `etc/NAME.cf` for a zmaster-probe service.
    pub fn probe_service(&self, name: &str, service: &str, count: usize, extra: &str) {
        self.write_cf(name, &format!("server-command = {PROBE}\nserver-service = {service}\nserver-proc-count = {count}\n{extra}"));
    }

    /// Starts a master with one probe service on a unix socket (`extra` appended to its
    /// `.cf`); returns it and its child once the child answers (it has exec'd, so its
    /// credentials and limits are final).
    pub fn serving_probe(&self, extra: &str) -> (Master, i32) {
        let sock = self.path("p.sock");
        self.probe_service("probe", &format!("p://{}", sock.display()), 1, extra);
        let master = self.start_master(&[]);
        let kid = master.wait_children(1)[0];
        let reply = wait_for(Duration::from_secs(10), "the probe to answer", || {
            ask_unix(&sock, "hi").ok()
        });
        assert_eq!(reply_pid(&reply), kid, "{}", master.log_text());
        (master, kid)
    }

    pub fn write_cf(&self, name: &str, text: &str) {
        fs::write(self.etc().join(format!("{name}.cf")), text).unwrap();
    }

    /// Starts the master on `etc/` with extra args; stderr goes to `master.log`.
    pub fn start_master(&self, args: &[&str]) -> Master {
        let log = self.path("master.log");
        let child = Command::new(ZMASTER)
            .arg("-C")
            .arg(self.etc())
            .args(args)
            .env("ZM_PROBE_REPORT", self.path("rep"))
            .stdin(Stdio::null())
            .stdout(fs::File::create(self.path("master.out")).unwrap())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Master {
            child: Some(child),
            log,
        }
    }

    /// The report zmaster-probe child `pid` wrote: (argv, fds as (fd, target)).
    pub fn report(&self, pid: i32) -> Option<Report> {
        let text = fs::read_to_string(self.path("rep").join(pid.to_string())).ok()?;
        let (argv, rest) = text.split_once("cwd:\n")?;
        let (_cwd, fds) = rest.split_once("fds:\n")?;
        let fds = fds
            .lines()
            .filter_map(|l| {
                let (fd, target) = l.split_once(' ')?;
                Some((fd.parse().ok()?, target.to_owned()))
            })
            .collect();
        Some((argv.lines().map(str::to_owned).collect(), fds))
    }
}

/// A running master; SIGKILLed (with every child it had) and reaped on drop.
pub struct Master {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Master {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).unwrap();
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn children(&self) -> Vec<i32> {
        children_of(self.pid())
    }

    /// Waits until the master has exactly `n` live children; returns them.
    pub fn wait_children(&self, n: usize) -> Vec<i32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let kids = self.children();
            if kids.len() == n {
                return kids;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} children; have {kids:?}; master log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the master to exit; returns its exit code (None if killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        wait_for(timeout, "the master to exit", || child.try_wait().unwrap()).code()
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let kids = descendants_of(child.id() as i32);
            let _ = child.kill();
            let _ = child.wait();
            for kid in kids {
                zmaster_testkit::kill_pid(kid);
            }
        }
    }
}

/// The pid in a probe reply `PID <pid> ...`.
pub fn reply_pid(reply: &str) -> i32 {
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a probe reply: {reply:?}"))
}
