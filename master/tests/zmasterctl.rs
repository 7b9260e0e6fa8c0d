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
        assert_eq!(text(&out).1, "zmasterctl: not running\n", "{args:?}");
    }
}

/// `status --json`'s last line, parsed.
fn status_json(ctl: &Ctl) -> serde_json::Value {
    let out = ctl.run(&["status", "--json"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let line = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// The serving children of service `name` in a status object.
fn serving(status: &serde_json::Value, name: &str) -> usize {
    let services = status["services"].as_array().expect("services");
    let service = services.iter().find(|s| s["name"] == name).expect(name);
    service["children"]
        .as_array()
        .expect("children")
        .iter()
        .filter(|c| c["state"] == "serving")
        .count()
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
    // `start` waits for the first generation: both children are there when it returns.
    assert_eq!(util::children_of(pid).len(), 2);

    let out = ctl.run(&["start"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains(&format!("already running (pid {pid})"))
    );
    let out = ctl.run(&["status"]);
    let table = text(&out).0;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        table.starts_with(&format!("master pid {pid}, up ")),
        "{table}"
    );
    assert!(table.contains("generation 1"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("p "))
        .unwrap_or_else(|| panic!("no row for p: {table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..4], ["p", "running", "2/2", "0"], "{table}");

    let status = status_json(&ctl);
    assert_eq!(status["master"]["pid"], pid);
    assert_eq!(status["master"]["generation"], 1);
    assert_eq!(serving(&status, "p"), 2, "{status}");

    // Reload: a new generation answers (zmaster-probe exits at softstop, so no drain here;
    // tests/reload.rs covers held connections).
    let old = util::children_of(pid);
    assert!(old.contains(&reply_pid(&ask_tcp(port, "before").unwrap())));
    let out = ctl.run(&["reload"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(text(&out).0, "reload ok: generation 2\n");
    wait_for(Duration::from_secs(10), "a new generation", || {
        let reply = ask_tcp(port, "new").ok().filter(|r| !r.is_empty())?;
        (!old.contains(&reply_pid(&reply))).then_some(())
    });

    // A refused reload says why (file and line) and keeps the running generation.
    let cf = setup.etc().join("p.cf");
    let good = std::fs::read_to_string(&cf).unwrap();
    std::fs::write(&cf, format!("{good}server-proc-count = many\n")).unwrap();
    let out = ctl.run(&["reload"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let want = format!(
        "zmasterctl: reload failed: {}:4: server-proc-count",
        cf.display()
    );
    assert!(stderr.starts_with(&want), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(status_json(&ctl)["master"]["generation"], 2);
    std::fs::write(&cf, good).unwrap();

    // Scale until the next reload.
    let out = ctl.run(&["scale", "p", "3"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(text(&out).0, "scale p: 3 processes\n");
    wait_for(Duration::from_secs(10), "3 serving children", || {
        (serving(&status_json(&ctl), "p") == 3).then_some(())
    });
    let out = ctl.run(&["scale", "nope", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains("scale failed: no service named \"nope\"")
    );

    // Graceful stop (the default): the master says so in its log.
    let out = ctl.run(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(text(&out).0, "stopped\n");
    assert_eq!(try_lock(&ctl.pid_file()), LockState::NotRunning);
    assert_eq!(ctl.run(&["status"]).status.code(), Some(3));
    let log = std::fs::read_to_string(setup.path("m.log")).unwrap();
    assert!(log.contains("graceful stop"), "{log}");

    // And the fast one.
    assert_eq!(ctl.run(&["start"]).status.code(), Some(0));
    let out = ctl.run(&["stop", "--fast"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(try_lock(&ctl.pid_file()), LockState::NotRunning);
    let log = std::fs::read_to_string(setup.path("m.log")).unwrap();
    assert_eq!(log.matches("graceful stop").count(), 1, "{log}");
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
    assert!(
        stderr.starts_with("zmasterctl: restart refused: ") && stderr.contains("broken.cf"),
        "{stderr}"
    );
    assert!(is_alive(pid));
    assert_eq!(try_lock(&ctl.pid_file()), LockState::Running);
    assert_eq!(ctl.master_pid(), Some(pid));
}

#[test]
fn check_passes_zmaster_t_through() {
    let setup = Setup::new();
    setup.probe_service("p", &format!("127.0.0.1:{}", free_port()), 1, "");
    let ctl = Ctl { setup: &setup };
    let out = ctl.run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(text(&out).0, "config ok: 1 services, 1 listeners\n");
    setup.write_cf("broken", "server-command = /bin/true\n");
    let out = ctl.run(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("broken.cf: missing required key server-service"),
        "{stderr}"
    );
    assert!(!setup.path("m.pid").exists(), "check starts nothing");
}

#[test]
fn without_its_control_socket_only_stop_works_and_it_is_graceful() {
    let setup = Setup::new();
    setup.probe_service("p", &format!("127.0.0.1:{}", free_port()), 1, "");
    let ctl = Ctl { setup: &setup };
    let pid_file = ctl.pid_file();
    let elsewhere = setup.path("elsewhere.ctl");
    let master = setup.start_master(&[
        "-pid-file",
        pid_file.to_str().unwrap(),
        "-control",
        elsewhere.to_str().unwrap(),
    ]);
    master.wait_children(1);
    wait_for(Duration::from_secs(10), "the pid file", || ctl.master_pid());
    for args in [&["status"][..], &["reload"][..], &["scale", "p", "2"][..]] {
        let out = ctl.run(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "the master (pid {}) runs but no control socket",
                master.pid()
            )),
            "{args:?}: {stderr}"
        );
    }
    let out = ctl.run(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(
        master.log_text().contains("graceful stop"),
        "{}",
        master.log_text()
    );
}

/// A config that passes the check but one service cannot start a single process (here its
/// command's interpreter is missing, so every exec fails): `start` says so and exits 1,
/// instead of `started` (found by review).
#[test]
fn a_service_that_cannot_start_a_process_fails_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let setup = Setup::new();
    let script = setup.path("bad-server");
    std::fs::write(&script, "#!/no/such/interpreter\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    setup.write_cf(
        "bad",
        &format!(
            "server-command = {}\nserver-service = 127.0.0.1:{}\n",
            script.display(),
            free_port()
        ),
    );
    setup.probe_service("good", &format!("127.0.0.1:{}", free_port()), 1, "");
    let ctl = Ctl { setup: &setup };
    let out = ctl.run(&["start"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.starts_with("zmasterctl: start failed: service bad has no process: "),
        "{stderr}"
    );
    assert_eq!(stdout, "");
}

/// `reload` shows the check's warnings (an unknown key), not only the master's log.
#[test]
fn reload_prints_the_checks_warnings() {
    let setup = Setup::new();
    setup.probe_service("probe", &format!("127.0.0.1:{}", free_port()), 1, "");
    let ctl = Ctl { setup: &setup };
    let out = ctl.run(&["start"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    setup.probe_service(
        "probe",
        &format!("127.0.0.1:{}", free_port()),
        1,
        "server-max-uses = 5\n",
    );
    let out = ctl.run(&["reload"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("reload ok: generation 2"), "{stdout}");
    assert!(
        stderr.contains("unknown key \"server-max-uses\" (did you mean \"server-max-use\"?)"),
        "{stderr}"
    );
}
