//! zmasterctl against the real master: usage errors, not running, start / already running /
//! status / reload with a held connection / stop, a failed start reported from the master's
//! own output, and a restart that never stops a master it cannot restart.

mod util;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use util::{Setup, ask_tcp, free_port, is_alive, reply_pid, wait_for};
use zmaster::{LockState, try_lock};

const CTL: &str = env!("CARGO_BIN_EXE_zmasterctl");

/// zmasterctl for a test's setup; stops (then kills) whatever master it started on drop.
struct Ctl<'a> {
    setup: &'a Setup,
}

impl Ctl<'_> {
    fn pid_file(&self) -> PathBuf {
        self.setup.path("m.pid")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(CTL)
            .arg("-C")
            .arg(self.setup.etc())
            .arg("-pid-file")
            .arg(self.pid_file())
            .arg("-log-file")
            .arg(self.setup.path("m.log"))
            .args(args)
            .env("ZM_PROBE_REPORT", self.setup.path("rep"))
            .output()
            .expect("run zmasterctl")
    }

    fn master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
}

impl Drop for Ctl<'_> {
    fn drop(&mut self) {
        if try_lock(&self.pid_file()) != LockState::Running {
            return;
        }
        let _ = self.run(&["-timeout", "5s", "stop", "--fast"]);
        if let Some(pid) = self.master_pid().filter(|&p| is_alive(p)) {
            for kid in util::descendants_of(pid) {
                let _ = kill(Pid::from_raw(kid), Signal::SIGKILL);
            }
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn usage_errors_exit_2_and_name_the_problem() {
    let setup = Setup::new();
    let ctl = Ctl { setup: &setup };
    for (args, says) in [
        (&[][..], "no command"),
        (&["dance"][..], "unknown command or arguments: dance"),
        (&["-pidfile", "x", "status"][..], "unknown option -pidfile"),
        (
            &["scale", "echo", "many"][..],
            "\"many\" is not a process count",
        ),
        (
            &["scale", "echo"][..],
            "unknown command or arguments: scale",
        ),
        (&["-timeout", "soon", "stop"][..], "timeout"),
    ] {
        let out = ctl.run(args);
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(err.contains("usage: zmasterctl"), "{args:?}: {err}");
    }
    let out = Command::new(CTL).arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("needs -pid-file FILE or -C DIR"));
}

#[test]
fn commands_on_a_master_that_is_not_running() {
    let setup = Setup::new();
    setup.probe_service("p", &format!("127.0.0.1:{}", free_port()), 1, "");
    let ctl = Ctl { setup: &setup };
    let out = ctl.run(&["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out).0, "not running\n");
    let out = ctl.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out).0, "");
    let out = ctl.run(&["stop"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out).0, "not running\n");
    for args in [&["reload"][..], &["scale", "p", "2"][..]] {
        let out = ctl.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(text(&out).1.contains("not running"), "{args:?}");
    }
}

#[test]
fn start_status_reload_stop() {
    let setup = Setup::new();
    let port = free_port();
    setup.probe_service("p", &format!("127.0.0.1:{port}"), 2, "");
    let ctl = Ctl { setup: &setup };
    let out = ctl.run(&["start"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let pid = ctl.master_pid().expect("a pid in the pid file");
    assert_eq!(stdout, format!("started (pid {pid})\n"));
    // Its own session: a ^C or hang-up of zmasterctl's terminal does not reach it.
    let sid = nix::unistd::getsid(Some(Pid::from_raw(pid))).unwrap();
    assert_eq!(sid.as_raw(), pid);

    let out = ctl.run(&["start"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains(&format!("already running (pid {pid})"))
    );
    let out = ctl.run(&["status"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).0.contains(&format!("pid {pid}")));

    // Reload: a new generation answers (zmaster-probe exits at softstop, so no drain here;
    // tests/reload.rs covers held connections).
    let old = wait_for(Duration::from_secs(10), "2 children", || {
        let kids = util::children_of(pid);
        (kids.len() == 2).then_some(kids)
    });
    assert!(old.contains(&reply_pid(&ask_tcp(port, "before").unwrap())));
    let out = ctl.run(&["reload"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    wait_for(Duration::from_secs(10), "a new generation", || {
        let reply = ask_tcp(port, "new").ok().filter(|r| !r.is_empty())?;
        (!old.contains(&reply_pid(&reply))).then_some(())
    });

    let out = ctl.run(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(text(&out).0, "stopped\n");
    assert_eq!(try_lock(&ctl.pid_file()), LockState::NotRunning);
    assert_eq!(ctl.run(&["status"]).status.code(), Some(3));
}

#[test]
fn a_failed_start_prints_the_masters_error_not_stale_log_lines() {
    let setup = Setup::new();
    setup.write_cf("broken", "server-command = /bin/true\n"); // no server-service
    std::fs::write(setup.path("m.log"), "zmaster: stale error from last week\n").unwrap();
    let ctl = Ctl { setup: &setup };
    let began = Instant::now();
    let out = ctl.run(&["start"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.starts_with("zmasterctl: start failed: "), "{stderr}");
    assert!(stderr.contains("broken.cf"), "{stderr}");
    assert!(!stderr.contains("stale"), "{stderr}");
    assert_eq!(stdout, "");
    // Reported as soon as the master exits, not at the start timeout (30 s).
    assert!(began.elapsed() < Duration::from_secs(10));
}

#[test]
fn restart_never_stops_a_master_it_cannot_restart() {
    let setup = Setup::new();
    setup.probe_service("p", &format!("127.0.0.1:{}", free_port()), 1, "");
    let ctl = Ctl { setup: &setup };
    assert_eq!(ctl.run(&["start"]).status.code(), Some(0));
    let pid = ctl.master_pid().unwrap();
    setup.write_cf("broken", "server-command = /bin/true\n");
    let out = ctl.run(&["restart"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("restart refused"), "{stderr}");
    assert!(is_alive(pid));
    assert_eq!(try_lock(&ctl.pid_file()), LockState::Running);
    assert_eq!(ctl.master_pid(), Some(pid));
}

#[test]
fn check_passes_zmaster_t_through_or_says_it_cannot() {
    let setup = Setup::new();
    setup.write_cf("broken", "server-command = /bin/true\n");
    let ctl = Ctl { setup: &setup };
    let out = ctl.run(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // Either zmaster -t's error, or an honest "cannot check" from a zmaster without -t.
    assert!(
        stderr.contains("broken.cf") || stderr.contains("no check mode (-t)"),
        "{stderr}"
    );
}
