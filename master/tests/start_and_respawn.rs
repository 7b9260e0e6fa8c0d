//! The master starts server-proc-count children per service and keeps the count.

mod util;

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use util::*;

#[test]
fn starts_the_configured_children_which_answer_on_tcp_and_unix() {
    let s = Setup::new();
    let port = free_port();
    let sock = s.path("p.sock");
    s.probe_service(
        "probe",
        &format!("t://127.0.0.1:{port}, u://local:{}", sock.display()),
        3,
        "",
    );
    s.probe_service("idle", &format!("127.0.0.1:{}", free_port()), 0, "");
    let master = s.start_master(&[]);
    let kids = master.wait_children(3);
    let tcp = wait_for(Duration::from_secs(5), "tcp answer", || {
        ask_tcp(port, "hello").ok()
    });
    assert!(kids.contains(&reply_pid(&tcp)), "{tcp} not from {kids:?}");
    let unix = ask_unix(&sock, "hi").unwrap();
    assert!(unix.ends_with(" hi"), "{unix}");
    // Still exactly three after serving; the proc-count 0 service started nothing.
    assert_eq!(master.children().len(), 3);
}

#[test]
fn a_killed_child_is_replaced() {
    let s = Setup::new();
    let port = free_port();
    s.probe_service("probe", &format!("127.0.0.1:{port}"), 2, "");
    let master = s.start_master(&[]);
    let before = master.wait_children(2);
    kill(Pid::from_raw(before[0]), Signal::SIGKILL).unwrap();
    let after = wait_for(Duration::from_secs(5), "a replacement child", || {
        let kids = master.children();
        (kids.len() == 2 && !kids.contains(&before[0])).then_some(kids)
    });
    assert!(after.contains(&before[1]));
    wait_for(Duration::from_secs(5), "the exit to be logged", || {
        master
            .log_text()
            .contains(&format!("pid={} exited: killed by SIGKILL", before[0]))
            .then_some(())
    });
    wait_for(Duration::from_secs(5), "an answer", || {
        ask_tcp(port, "x").ok()
    });
}

#[test]
fn master_chdir_applies_in_the_child() {
    let s = Setup::new();
    let dir = s.path("work");
    std::fs::create_dir(&dir).unwrap();
    let extra = format!("master-chdir = {}\n", dir.display());
    s.probe_service("probe", &format!("127.0.0.1:{}", free_port()), 1, &extra);
    let master = s.start_master(&[]);
    let kid = master.wait_children(1)[0];
    let cwd = wait_for(Duration::from_secs(5), "the report", || s.report_cwd(kid));
    assert_eq!(cwd, dir.display().to_string());
}
