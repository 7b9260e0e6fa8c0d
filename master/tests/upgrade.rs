//! Binary upgrade (SPEC §14) under load: SIGUSR2 with the same binary, and `zmasterctl
//! upgrade` after the binary was swapped on disk. Over the whole run no request is refused,
//! reset or cut short; the pid file, the control socket and every listener pass to the new
//! master; long-lived connections of the old generation finish normally; the old master and
//! its children are gone after the drain.
//!
//! The server is this test binary itself (`drain_server`): zmaster-probe exits at softstop, a
//! draining server finishes its open connections first.

mod upgrade_util;
mod util;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use upgrade_util::*;
use util::*;
use zmaster::control::{self, Request};

#[test]
fn drain_server() {
    drain_server_main();
}

/// What one upgrade run measured.
struct Run {
    new_master: i32,
    took: Duration,
}

/// Starts `program` on a draining service with a pid file, puts it under load with three
/// long-lived connections open, upgrades it with `upgrade` and checks SPEC §14's promises.
fn upgrade_under_load(
    s: &Setup,
    port: u16,
    program: &Path,
    masters: &mut Masters,
    upgrade: impl FnOnce(&Master),
) -> Run {
    let pid_file = s.path("m.pid");
    let pid_arg = pid_file.to_str().expect("utf-8");
    let mut master = start_master_from(
        s,
        program,
        &["-pid-file", pid_arg, "-master-upgrade-timeout", "20s"],
    );
    masters.0.push(master.pid());
    let old = master.pid();
    let old_kids = master.wait_children(2);
    wait_for(Duration::from_secs(10), "the servers", || {
        ask_tcp(port, "up").ok()
    });
    let mut long: Vec<Conn> = (0..3).map(|_| Conn::open(port)).collect();
    assert!(long.iter().all(|c| old_kids.contains(&c.server)));
    let load = Load::start(port, 2);
    load.wait_more(50);

    let t0 = Instant::now();
    upgrade(&master);
    let new = wait_new_master(&pid_file, old, &master);
    let took = t0.elapsed();
    masters.0.push(new);
    load.wait_answer_from_children_of(new);
    // The old generation still serves what it had open, on the same processes.
    for (i, c) in long.iter_mut().enumerate() {
        let server = c.server;
        assert_eq!(c.talk(&format!("after the upgrade {i}")), server);
    }
    load.wait_more(50);
    // The control socket is the new master's now (once the old one handled the new one's
    // ready: the pid file is written just before, so the old one may still answer a moment).
    let ctl = s.path("m.pid.ctl");
    wait_for(
        Duration::from_secs(10),
        "the new master on the control socket",
        || {
            let reply = control::request(&ctl, &Request::Status, Duration::from_secs(5)).ok()?;
            (reply.status?.master.pid == new as u32).then_some(())
        },
    );

    // The long-lived connections end as their clients close them; then the old master exits.
    drop(long);
    assert_eq!(
        master.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        master.log_text()
    );
    assert!(old_kids.iter().all(|k| !is_alive(*k)), "old children left");
    load.wait_more(50);
    let counts = load.stop();
    assert_eq!(
        counts.failures(),
        (0, 0, 0),
        "refused/reset/short requests over the upgrade:\n{}",
        master.log_text()
    );
    let log = master.log_text();
    assert!(
        log.contains(&format!("upgrade: the new master (pid {new}) is ready")),
        "{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");
    for kid in &old_kids {
        // Finished their connections and exited by themselves: no SIGTERM, no SIGKILL.
        let line = format!("pid={kid} (stopping) exited: exit status 0");
        assert!(log.contains(&line), "{line} not in\n{log}");
    }
    assert!(!log.contains("sending SIGTERM"), "{log}");
    assert_eq!(read_pid(&pid_file), Some(new));
    assert_eq!(zmaster::try_lock(&pid_file), zmaster::LockState::Running);
    assert_eq!(children_of(new).len(), 2, "the new generation runs");
    eprintln!(
        "upgrade took {took:?} (signal to pid file); {} requests ok, 0 refused/reset/short",
        counts.ok.load(std::sync::atomic::Ordering::SeqCst)
    );
    Run {
        new_master: new,
        took,
    }
}

/// Stops the master an upgrade made (SIGQUIT) and checks it cleans up as its own: the pid-file
/// lock is free, the control socket file is removed.
fn stop_new_master(s: &Setup, new: i32) {
    signal(new, Signal::SIGQUIT);
    wait_gone(new, Duration::from_secs(20));
    assert_eq!(
        zmaster::try_lock(&s.path("m.pid")),
        zmaster::LockState::NotRunning
    );
    assert!(
        !s.path("m.pid.ctl").exists(),
        "the new master removes its control socket"
    );
}

#[test]
fn sigusr2_with_the_same_binary_refuses_nothing() {
    become_subreaper();
    let port = free_port();
    let s = drain_setup(port, 2);
    let mut masters = Masters::default();
    let program = copy_master(&s);
    let run = upgrade_under_load(&s, port, &program, &mut masters, |m| {
        m.signal(Signal::SIGUSR2)
    });
    assert!(run.took < Duration::from_secs(20));
    stop_new_master(&s, run.new_master);
}

#[test]
fn zmasterctl_upgrade_runs_the_binary_swapped_on_disk() {
    become_subreaper();
    let port = free_port();
    let s = drain_setup(port, 2);
    let mut masters = Masters::default();
    let program = copy_master(&s);
    let old_inode = std::fs::metadata(&program).expect("program").ino();
    let run = upgrade_under_load(&s, port, &program, &mut masters, |m| {
        let binary = std::fs::read(ZMASTER).expect("zmaster");
        swap_program(&program, &binary);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zmasterctl"))
            .arg("-pid-file")
            .arg(s.path("m.pid"))
            .arg("upgrade")
            .output()
            .expect("zmasterctl");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            m.log_text()
        );
        assert!(stdout.starts_with("upgrade ok: pid "), "{stdout}");
    });
    let new_inode = std::fs::metadata(format!("/proc/{}/exe", run.new_master))
        .expect("exe")
        .ino();
    assert_eq!(
        new_inode,
        std::fs::metadata(&program).expect("program").ino(),
        "the new master runs the file now at the path"
    );
    assert_ne!(new_inode, old_inode);
    stop_new_master(&s, run.new_master);
}
