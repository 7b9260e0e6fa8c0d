//! Signals an operator sends by habit (SIGUSR1/SIGUSR2/SIGTTIN/SIGTTOU, SIGPIPE) never kill or
//! stop the master: until they get their meaning they are logged and the master keeps serving.

mod util;

use std::time::Duration;

use nix::sys::signal::Signal;
use util::*;

/// The state letter of `/proc/PID/stat` (`S`, `R`, `T` = stopped, `Z`, ...).
fn proc_state(pid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .unwrap_or('?')
}

#[test]
fn habit_signals_are_logged_and_the_master_keeps_serving() {
    let s = Setup::new();
    let port = free_port();
    s.probe_service("probe", &format!("127.0.0.1:{port}"), 2, "");
    let mut master = s.start_master(&[]);
    let kids = master.wait_children(2);
    wait_for(Duration::from_secs(5), "an answer", || {
        ask_tcp(port, "before").ok()
    });
    for (sig, name) in [
        (Signal::SIGUSR1, "SIGUSR1"),
        (Signal::SIGUSR2, "SIGUSR2"),
        (Signal::SIGTTIN, "SIGTTIN"),
        (Signal::SIGTTOU, "SIGTTOU"),
        (Signal::SIGPIPE, "SIGPIPE"),
    ] {
        master.signal(sig);
        if sig != Signal::SIGPIPE {
            let line = format!("{name} received: not implemented yet");
            wait_for(Duration::from_secs(5), &line, || {
                master.log_text().contains(&line).then_some(())
            });
        }
        // The children answer whatever the master's state; the master must be neither dead
        // nor stopped (T).
        let reply = wait_for(Duration::from_secs(5), "an answer", || {
            ask_tcp(port, name).ok()
        });
        assert!(reply.ends_with(name), "{reply}");
        assert!(
            is_alive(master.pid()) && proc_state(master.pid()) != 'T',
            "{name} killed or stopped the master (state {}):\n{}",
            proc_state(master.pid()),
            master.log_text()
        );
    }
    // Nothing else happened (the same children), and the supervision loop still runs: a killed
    // child is replaced, SIGTERM stops cleanly.
    assert_eq!(master.children(), kids);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(kids[0]), Signal::SIGKILL).unwrap();
    wait_for(Duration::from_secs(5), "a replacement child", || {
        let now = master.children();
        (now.len() == 2 && !now.contains(&kids[0])).then_some(())
    });
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
}
