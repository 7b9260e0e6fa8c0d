//! The upgrade state machine as the supervision loop drives it, with `/bin/sh` scripts as new
//! masters: one upgrade at a time, none after a handover, rollback takes the pid file back,
//! and the new master's side reports ready once.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::*;
use crate::supervisor::listener_set::tests::service;

fn launch(script: &str) -> Launch {
    Launch {
        program: PathBuf::from("/bin/sh"),
        argv: ["sh", "-c", script].map(OsString::from).to_vec(),
        timeout: Duration::from_secs(10),
    }
}

/// Polls as the loop does until the upgrade is decided.
fn decide(state: &mut State) -> Decision {
    let guard = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < guard, "never decided");
        let fd = state.fd().expect("an upgrade in progress");
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(100u16));
        if let Some(decision) = state.turn(Instant::now()) {
            return decision;
        }
    }
}

const READY: &str = "fd=${ZMASTER_UPGRADE_FDS#*ready=}; fd=${fd%%;*}; echo \"ready $$\" > /proc/self/fd/$fd; exec sleep 30";

#[test]
fn one_upgrade_at_a_time_and_none_after_the_handover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("s");
    let listeners = ListenerSet::bind(&[service("one", &[&sock])]).expect("bind");
    let control = ControlServer::bind(&dir.path().join("ctl")).expect("control");
    let pid_file = PidFile::acquire(&dir.path().join("pid")).expect("pid file");
    let mut state = State::new(launch(READY), Some(pid_file), None);
    assert!(state.fd().is_none() && state.deadline().is_none());
    let now = Instant::now();
    state
        .begin("SIGUSR2", &listeners, Some(&control), None, now)
        .expect("started");
    assert_eq!(state.deadline(), Some(now + Duration::from_secs(10)));
    let why = state
        .begin("SIGUSR2", &listeners, Some(&control), None, now)
        .expect_err("a second one");
    assert!(
        why.starts_with("an upgrade is already in progress (new master pid "),
        "{why}"
    );
    let Decision::Ready { pid, token: None } = decide(&mut state) else {
        panic!("not ready");
    };
    assert!(state.handed_over() && state.fd().is_none());
    let why = state
        .begin("SIGUSR2", &listeners, Some(&control), None, now)
        .expect_err("after the handover");
    assert_eq!(
        why,
        format!("this master handed over to pid {pid} and is draining")
    );
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
}

#[test]
fn a_rollback_takes_the_pid_file_back_and_a_stop_aborts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pid");
    let mut pid_file = PidFile::acquire(&path).expect("pid file");
    pid_file.write_pid().expect("write");
    let script = "lock=${ZMASTER_UPGRADE_FDS#*pidlock=}; lock=${lock%%;*}; echo 999999 > /proc/self/fd/$lock; exit 1";
    let mut state = State::new(launch(script), Some(pid_file), None);
    let none = ListenerSet::default();
    state
        .begin("SIGUSR2", &none, None, None, Instant::now())
        .expect("started");
    let Decision::RolledBack { why, token: None } = decide(&mut state) else {
        panic!("not rolled back");
    };
    assert!(
        why.ends_with("exited before it was ready: exit status 1"),
        "{why}"
    );
    let text = std::fs::read_to_string(&path).expect("pid file");
    assert_eq!(text.trim(), std::process::id().to_string());
    assert!(!state.handed_over());

    // Not decided yet when the master stops: the stop rolls it back.
    assert!(
        state.abort("the master stops").is_none(),
        "nothing to abort"
    );
    state.launch = Some(launch("exec sleep 30"));
    state
        .begin("control socket", &none, None, None, Instant::now())
        .expect("started");
    let Some(Decision::RolledBack { why, .. }) = state.abort("the master stops") else {
        panic!("not rolled back");
    };
    assert_eq!(why, "the master stops (killed by SIGKILL)");
    assert!(state.fd().is_none());
}

#[test]
fn a_program_that_cannot_start_is_refused_at_once() {
    let mut state = State::new(
        Launch {
            program: PathBuf::from("/nonexistent/zmaster"),
            ..launch("")
        },
        None,
        None,
    );
    let why = state
        .begin(
            "SIGUSR2",
            &ListenerSet::default(),
            None,
            None,
            Instant::now(),
        )
        .expect_err("no program");
    assert!(
        why.starts_with("cannot start /nonexistent/zmaster: "),
        "{why}"
    );
    assert!(state.fd().is_none());
    let mut unset = State::default();
    let why = unset
        .begin(
            "SIGUSR2",
            &ListenerSet::default(),
            None,
            None,
            Instant::now(),
        )
        .expect_err("no launch");
    assert_eq!(why, "no program to start a new master from");
}

#[test]
fn the_new_master_reports_ready_once_with_its_pid_in_the_pid_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pid");
    let pid_file = PidFile::acquire(&path).expect("pid file");
    let (rx, tx) = nix::unistd::pipe().expect("pipe");
    let mut state = State::new(launch(""), Some(pid_file), Some(ReadyPipe::new(tx)));
    let mut listeners = ListenerSet::default();
    state.report_ready(&mut listeners, None, &Notifier::default());
    state.report_ready(&mut listeners, None, &Notifier::default());
    let mut got = String::new();
    File::from(rx).read_to_string(&mut got).expect("read");
    assert_eq!(
        got,
        format!("ready {}\n", std::process::id()),
        "once, then closed"
    );
    let text = std::fs::read_to_string(&path).expect("pid file");
    assert_eq!(text.trim(), std::process::id().to_string());
}

#[test]
fn an_exit_the_reaper_took_first_is_the_reason_of_the_rollback() {
    let mut state = State::new(launch("exit 3"), None, None);
    state
        .begin(
            "SIGUSR2",
            &ListenerSet::default(),
            None,
            None,
            Instant::now(),
        )
        .expect("started");
    let pid = state
        .running
        .as_ref()
        .map(|r| r.child.pid())
        .expect("running") as i32;
    // The supervisor's reaper (waitpid(-1)) takes the new master's status before the pipe is
    // read: the upgrade hears of it from the reaper, not from its own waitpid.
    let status = nix::sys::wait::waitpid(Pid::from_raw(pid), None).expect("reap");
    let (_, reason) = ExitReason::from_wait(status).expect("an exit");
    assert!(!state.child_exited(pid + 1, &reason), "another child");
    assert!(state.child_exited(pid, &reason));
    let Decision::RolledBack { why, .. } = decide(&mut state) else {
        panic!("not rolled back");
    };
    assert_eq!(
        why,
        format!("the new master (pid {pid}) exited before it was ready: exit status 3")
    );
}
