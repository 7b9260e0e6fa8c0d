//! `zstress chaos --upgrade-rate` against zmaster (bounded: about 10 s): `echo-aio` under
//! persistent connections and `echo-coroutine` under connect-per-request load while chaos
//! sends SIGUSR2 twice a second to whichever master the pid file names. Every request must
//! succeed (SPEC §14: no connection refused or reset during an upgrade), at least one upgrade
//! must complete per run and none roll back; afterwards the pid file names the last master,
//! it serves both services, and every old master is gone. Figures go to
//! `target/tmp/chaos_upgrade.txt`.
//!
//! Skipped, with a message, when `zmaster` and the echo examples were not built into the same
//! target directory as `zstress`.

mod util;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use util::{SERVERS, bins};
use zmaster_stress::args::{Limit, Target};
use zmaster_stress::bench::wait_ready;
use zmaster_stress::chaos::{self, Action, ChaosConfig, ChaosReport, MasterRef};
use zmaster_stress::load::{self, LoadConfig};
use zmaster_stress::procs::{ChildGuard, alive, children_of, read_pid_file, signal};
use zmaster_stress::upgrades::Outcome;
use zmaster_testkit::free_port;

fn load_cfg(addr: SocketAddr, limit: Limit, per_request: bool) -> LoadConfig {
    let mut cfg = LoadConfig::new(Target::Tcp(addr));
    cfg.conns = if per_request { 4 } else { 8 };
    cfg.threads = 2;
    cfg.limit = limit;
    cfg.connect_per_request = per_request;
    // Generous: a request stuck this long is a hang, not a slow debug build.
    cfg.timeout = Duration::from_secs(20);
    cfg
}

/// Every master of the run: SIGKILLed if still alive when the test ends (a failed assert).
#[derive(Default)]
struct Masters(Vec<i32>);

impl Drop for Masters {
    fn drop(&mut self) {
        for p in self.0.iter().filter(|p| alive(**p)) {
            let _ = signal(*p, Signal::SIGKILL);
        }
        reap();
    }
}

/// Reap every exited orphan this (subreaper) process inherited.
fn reap() {
    while let Ok(st) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if st.pid().is_none() {
            break;
        }
    }
}

fn wait_until(what: &str, log: &Path, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; master log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        reap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The bounds of one run; returns its figures line.
fn check(what: &str, r: &ChaosReport, log: &Path) -> String {
    let s = r.upgrade_summary();
    let figures = format!(
        "{what}: {} ok, {} failed of {} requests; {}",
        r.load.ok,
        r.load.errors.total(),
        r.load.requests(),
        s.line()
    );
    let all = format!(
        "{figures}\n{}\nmaster log:\n{}",
        r.render(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
    assert!(!r.master_gone, "{all}");
    assert!(r.load.ok > 0, "{all}");
    assert_eq!(r.load.errors.total(), 0, "no request may fail: {all}");
    assert_eq!(s.failures_during, 0, "{all}");
    assert!(s.completed >= 1, "no upgrade completed: {all}");
    assert_eq!((s.rolled_back, s.pending), (0, 0), "{all}");
    assert!(
        !r.events
            .iter()
            .any(|e| matches!(e.action, Action::Failed(_))),
        "{all}"
    );
    assert_ne!(r.last_master, r.master, "{all}");
    let json = r.to_json();
    let want = format!("\"last_master\":{},\"kills\":0,\"hups\":0,", r.last_master);
    assert!(json.contains(&want), "{json}");
    let want = format!(
        "\"upgrades\":{{\"sent\":{},\"completed\":{},\"rolled_back\":0,",
        s.sent, s.completed
    );
    assert!(json.contains(&want), "{json}");
    figures
}

#[test]
fn repeated_upgrades_under_load_fail_no_request() {
    let Some(bin) = bins() else { return };
    // A new master outlives its parent, the old master: it is then this process's child.
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut addrs = Vec::new();
    for server in SERVERS {
        let port = free_port();
        let cf = format!(
            "server-command = {}\nserver-service = 127.0.0.1:{port}\nserver-proc-count = 2\n\
             server-thread-count = 1\n",
            bin.join(server).display()
        );
        std::fs::write(tmp.path().join(format!("{server}.cf")), cf).expect("write .cf");
        addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let pid_file = tmp.path().join("m.pid");
    let log = tmp.path().join("master.log");
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(bin.join("zmaster"))
        .arg("-C")
        .arg(tmp.path())
        .arg("-pid-file")
        .arg(&pid_file)
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .expect("spawn zmaster");
    let mut first = ChildGuard::new(child, "zmaster");
    let mut masters = Masters(vec![first.pid()]);
    for a in &addrs {
        wait_ready(*a, &mut first, Duration::from_secs(20)).expect("zmaster's echo answers");
    }
    wait_until("the pid file", &log, || {
        read_pid_file(&pid_file).ok() == Some(first.pid())
    });
    let mut text = String::new();
    let mut olds = Vec::new();
    for ((server, addr), per_request) in SERVERS.iter().zip(&addrs).zip([false, true]) {
        let cfg = ChaosConfig {
            master: MasterRef::PidFile(pid_file.clone()),
            load: load_cfg(*addr, Limit::Duration(Duration::from_secs(3)), per_request),
            kill_rate: 0.0,
            hup_rate: 0.0,
            upgrade_rate: 2.0,
            count_victim_conns: false,
        };
        let r = chaos::run(&cfg).expect("chaos run");
        for u in &r.upgrades {
            olds.push(u.old);
            if let Outcome::Completed(p) = u.outcome {
                masters.0.push(p);
            }
        }
        let mode = if per_request {
            "connect-per-request"
        } else {
            "persistent"
        };
        let figures = check(&format!("{server} ({mode})"), &r, &log);
        println!("{figures}\n{}", r.render());
        text.push_str(&figures);
        text.push('\n');
    }
    let last = read_pid_file(&pid_file).expect("pid file");
    assert_eq!(
        masters.0.last(),
        Some(&last),
        "the pid file names the last master"
    );
    // The old masters drain (their connections ended with each run) and exit.
    wait_until("every old master to exit", &log, || {
        olds.iter().all(|p| !alive(*p))
    });
    for (server, addr) in SERVERS.iter().zip(&addrs) {
        let r = load::run(&load_cfg(*addr, Limit::Requests(200), true), None).expect("load");
        assert_eq!(
            (r.ok, r.errors.total()),
            (200, 0),
            "{server} after the upgrades"
        );
    }
    assert!(
        children_of(last).is_ok_and(|c| c.len() >= 4),
        "4 children serve"
    );
    let _ = std::fs::write(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chaos_upgrade.txt"),
        &text,
    );
    print!("{text}");
    signal(last, Signal::SIGTERM).expect("SIGTERM the last master");
    wait_until("the last master to stop", &log, || !alive(last));
}
