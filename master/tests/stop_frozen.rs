//! A graceful stop still watches heartbeats (found by review): a frozen (`SIGSTOP`ped) zmaster
//! child is SIGKILLed at its `server-hang-timeout`, so the stop ends then instead of waiting
//! for the stop timeout and its SIGKILL.

mod lifecycle_util;
mod util;

use std::time::Duration;

use lifecycle_util::{echo_servers, heartbeat_of};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use util::{Setup, ask_unix, wait_for, wait_until};

const PATIENCE: Duration = Duration::from_secs(20);

#[test]
fn a_frozen_child_is_killed_during_a_graceful_stop() {
    let [echo, _] = echo_servers();
    let setup = Setup::new();
    let sock = setup.path("e.sock");
    setup.write_cf(
        "echo",
        &format!(
            "server-command = {}\nserver-service = echo://{}\nserver-proc-count = 1\n\
             server-thread-count = 1\nserver-hang-timeout = 1s\n",
            echo.display(),
            sock.display()
        ),
    );
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
