//! A binary upgrade loads the config as it is now (SPEC §14): the new master adopts the
//! listeners that still have a service, binds what the config adds and closes what it drops;
//! a config that does not validate fails the new master and rolls the upgrade back. And
//! `zmasterctl upgrade` works without a control socket (SIGUSR2, then the pid file).

mod upgrade_util;
mod util;

use std::net::TcpStream;
use std::time::Duration;

use nix::sys::signal::Signal;
use upgrade_util::*;
use util::*;

/// The draining server the kept service runs (this test binary again, see `upgrade_util`).
#[test]
fn drain_server() {
    drain_server_main();
}

fn start(s: &Setup) -> Master {
    let program = copy_master(s);
    let pid_file = s.path("m.pid");
    let master = start_master_from(
        s,
        &program,
        &[
            "-pid-file",
            pid_file.to_str().expect("utf-8"),
            "-master-upgrade-timeout",
            "20s",
        ],
    );
    wait_for(Duration::from_secs(10), "the pid file", || {
        (read_pid(&pid_file) == Some(master.pid())).then_some(())
    });
    master
}

#[test]
fn the_new_master_binds_what_the_config_adds_and_closes_what_it_drops() {
    become_subreaper();
    let [kept, added, dropped] = [free_port(), free_port(), free_port()];
    // The kept service is under load through the upgrade: it runs the draining server (the
    // probe exits at softstop with requests in flight: a short request, flaky in CI).
    let s = drain_setup(kept, 1);
    s.probe_service("dropped", &format!("127.0.0.1:{dropped}"), 1, "");
    let mut master = start(&s);
    let mut masters = Masters::default();
    masters.0.push(master.pid());
    for port in [kept, dropped] {
        wait_for(Duration::from_secs(10), "the services", || {
            ask_tcp(port, "up").ok()
        });
    }
    let load = Load::start(kept, 2);
    load.wait_more(50);

    std::fs::remove_file(s.etc().join("dropped.cf")).expect("rm dropped.cf");
    s.probe_service("added", &format!("127.0.0.1:{added}"), 1, "");
    master.signal(Signal::SIGUSR2);
    let new = wait_new_master(&s.path("m.pid"), master.pid(), &master);
    masters.0.push(new);
    assert_eq!(
        master.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        master.log_text()
    );
    let reply = wait_for(Duration::from_secs(10), "the added service", || {
        ask_tcp(added, "new").ok()
    });
    assert!(children_of(new).contains(&reply_pid(&reply)));
    load.wait_answer_from_children_of(new);
    let counts = load.stop();
    assert_eq!(counts.failures(), (0, 0, 0), "{}", master.log_text());
    let e = TcpStream::connect(("127.0.0.1", dropped)).expect_err("the dropped port is closed");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    let log = master.log_text();
    assert!(log.contains("upgrade: closing listener fd "), "{log}");
    signal(new, Signal::SIGTERM);
    wait_gone(new, Duration::from_secs(20));
}

#[test]
fn a_config_that_fails_to_load_rolls_the_upgrade_back() {
    become_subreaper();
    let s = Setup::new();
    let port = free_port();
    s.probe_service("probe", &format!("127.0.0.1:{port}"), 1, "");
    let mut master = start(&s);
    let mut masters = Masters::default();
    masters.0.push(master.pid());
    let kids = master.wait_children(1);
    wait_for(Duration::from_secs(10), "the service", || {
        ask_tcp(port, "up").ok()
    });
    let load = Load::start(port, 2);
    load.wait_more(50);

    s.probe_service(
        "probe",
        &format!("127.0.0.1:{port}"),
        1,
        "server-proc-count = many\n",
    );
    master.signal(Signal::SIGUSR2);
    let line = wait_log_line(&master.log, "upgrade failed", Duration::from_secs(20));
    assert!(
        line.contains("exited before it was ready: exit status 1"),
        "{line}"
    );
    let log = master.log_text();
    assert!(
        log.contains("expected an integer"),
        "the new master says why: {log}"
    );
    load.wait_more(50);
    assert_eq!(master.children(), kids);
    assert_eq!(read_pid(&s.path("m.pid")), Some(master.pid()));
    let counts = load.stop();
    assert_eq!(counts.failures(), (0, 0, 0), "{log}");
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(Duration::from_secs(20)), Some(0));
}

#[test]
fn zmasterctl_upgrades_a_master_without_a_control_socket_by_sigusr2() {
    become_subreaper();
    let s = Setup::new();
    let port = free_port();
    s.probe_service("probe", &format!("127.0.0.1:{port}"), 1, "");
    let program = copy_master(&s);
    let pid_file = s.path("m.pid");
    let pid_arg = pid_file.to_str().expect("utf-8");
    let mut master = start_master_from(&s, &program, &["-pid-file", pid_arg, "-control", ""]);
    let mut masters = Masters::default();
    masters.0.push(master.pid());
    wait_for(Duration::from_secs(10), "the pid file", || {
        (read_pid(&pid_file) == Some(master.pid())).then_some(())
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zmasterctl"))
        .args(["-pid-file", pid_arg, "-timeout", "20s", "upgrade"])
        .output()
        .expect("zmasterctl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", master.log_text());
    let new = read_pid(&pid_file).expect("new pid");
    masters.0.push(new);
    assert_ne!(new, master.pid());
    assert!(
        stdout.starts_with(&format!("upgrade ok: pid {new} ")),
        "{stdout}"
    );
    assert_eq!(master.wait_exit(Duration::from_secs(20)), Some(0));
    let reply = wait_for(Duration::from_secs(10), "the new generation", || {
        ask_tcp(port, "hi").ok()
    });
    assert!(children_of(new).contains(&reply_pid(&reply)));
    signal(new, Signal::SIGTERM);
    wait_gone(new, Duration::from_secs(20));
}
