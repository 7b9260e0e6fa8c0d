//! SPEC §13 `server-hang-timeout` across a freeze of the master and its children together
//! (`kill -STOP -- -PGID` … `kill -CONT`, as docker pause/unpause, a cgroup freeze or a paused
//! VM do): on thaw the beats are stale by the master's clock, but nobody hung; the master must
//! not kill the children before they had a chance to beat again.

mod lifecycle_util;
mod util;

use std::time::Duration;

use lifecycle_util::{echo_servers, echo_service, heartbeat_of, start_master_in_own_group};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use util::{Setup, ask_unix, is_alive, wait_for, wait_until};

const PATIENCE: Duration = Duration::from_secs(20);

#[test]
fn a_frozen_and_thawed_group_keeps_its_healthy_children() {
    for bin in echo_servers() {
        let setup = Setup::new();
        let sock = echo_service(&setup, &bin, 1, "server-hang-timeout = 1s\n");
        let master = start_master_in_own_group(&setup, &[]);
        let group = Pid::from_raw(master.pid());
        let kid = wait_for(PATIENCE, "an echo child that answers and beats", || {
            let kid = *master.children().first()?;
            let answer = ask_unix(&sock, "hi").ok()?;
            (answer == "hi" && heartbeat_of(kid)?.1 != 0).then_some(kid)
        });
        // The freeze itself is the stimulus: 2.5 times the timeout, nothing running inside.
        killpg(group, Signal::SIGSTOP).expect("freeze the group");
        let frozen = heartbeat_of(kid).expect("a heartbeat").1;
        std::thread::sleep(Duration::from_millis(2500));
        killpg(group, Signal::SIGCONT).expect("thaw the group");
        // Two timeouts of beats after the thaw (the beat clock ran on through the freeze): the
        // master checked many times meanwhile, and one that judged the stale beats at once
        // killed the child right after the thaw.
        wait_until(PATIENCE, "two timeouts of beats after the thaw", || {
            heartbeat_of(kid).is_some_and(|(_, beat)| beat > frozen + 4_500_000_000)
                || !is_alive(kid)
        });
        let log = master.log_text();
        println!("{}: master log after the freeze:\n{log}", bin.display());
        assert!(is_alive(kid), "the healthy child was killed:\n{log}");
        assert!(!log.contains("killing it"), "{log}");
        assert_eq!(ask_unix(&sock, "again").ok().as_deref(), Some("again"));
    }
}
