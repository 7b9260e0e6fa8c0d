//! Heartbeats of children that no longer serve (found by review): a graceful stop still
//! watches them, so a frozen (`SIGSTOP`ped) zmaster child is SIGKILLed at its
//! `server-hang-timeout` and the stop ends then, instead of at the stop timeout and its
//! SIGKILL; and a detached child killed as hung is what status shows as the last exit.

mod lifecycle_util;
mod util;

use std::time::Duration;

use lifecycle_util::{echo_servers, echo_service, heartbeat_of, service, status};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use util::{Setup, ask_unix, is_alive, wait_for, wait_until};

const PATIENCE: Duration = Duration::from_secs(20);

#[test]
fn a_frozen_child_is_killed_during_a_graceful_stop() {
    let [echo, _] = echo_servers();
    let setup = Setup::new();
    let sock = echo_service(&setup, &echo, 1, "server-hang-timeout = 1s\n");
    // A stop timeout far beyond the hang timeout: only the heartbeat can end this stop soon.
    let mut master = setup.start_master(&["-master-stop-timeout", "60s"]);
    let kid = wait_for(PATIENCE, "an echo child that answers and beats", || {
        let kid = *master.children().first()?;
        let beat = heartbeat_of(kid)?.1;
        (ask_unix(&sock, "hi").ok()? == "hi" && beat != 0).then_some(kid)
    });
    kill(Pid::from_raw(kid), Signal::SIGSTOP).expect("SIGSTOP");
    master.signal(Signal::SIGQUIT);
    wait_until(PATIENCE, "the frozen child killed during the stop", || {
        master
            .log_text()
            .lines()
            .any(|l| l.contains(&format!("pid={kid} heartbeat is ")) && l.contains("killing it"))
    });
    assert_eq!(
        master.wait_exit(PATIENCE),
        Some(0),
        "the stop ends with the frozen child gone:\n{}",
        master.log_text()
    );
}

#[test]
fn a_detached_child_killed_as_hung_is_the_last_exit_in_status() {
    use std::io::{BufRead, BufReader, Write};
    let [echo, _] = echo_servers();
    let setup = Setup::new();
    let sock = echo_service(&setup, &echo, 1, "server-hang-timeout = 1s\n");
    let control = setup.path("m.ctl");
    let master = setup.start_master(&["-control", control.to_str().unwrap()]);
    let kid = wait_for(PATIENCE, "an echo child that answers and beats", || {
        let kid = *master.children().first()?;
        let beat = heartbeat_of(kid)?.1;
        (ask_unix(&sock, "hi").ok()? == "hi" && beat != 0).then_some(kid)
    });
    // Detached with a connection open, so it keeps running; then frozen.
    let mut held = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
    held.write_all(b"DETACH\n").expect("send");
    let mut answer = String::new();
    BufReader::new(held.try_clone().expect("clone"))
        .read_line(&mut answer)
        .expect("answer");
    wait_until(PATIENCE, "the detach seen by the master", || {
        master.log_text().contains(&format!("pid={kid} detached"))
    });
    kill(Pid::from_raw(kid), Signal::SIGSTOP).expect("SIGSTOP");
    wait_until(PATIENCE, "the detached frozen child killed", || {
        !is_alive(kid)
    });
    wait_until(PATIENCE, "status naming the hang", || {
        let now = status(&control);
        let last = &service(&now, "echo")["last_exit"];
        last["pid"] == kid
            && last["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("killed by SIGKILL (hang: no heartbeat for "))
    });
    drop(held);
}
