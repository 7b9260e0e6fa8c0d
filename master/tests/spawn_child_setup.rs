//! What the spawn code sets up between fork and exec: a failing step (here `chdir`) is a start
//! error, never a child running in the wrong place; stdio is the master's own.

mod util;

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use util::*;

#[test]
fn a_chdir_that_fails_at_respawn_is_a_start_error() {
    let s = Setup::new();
    let work = s.path("work");
    std::fs::create_dir(&work).unwrap();
    let listener = s.path("p.sock");
    s.probe_service(
        "probe",
        &format!("p://{}", listener.display()),
        1,
        &format!("master-chdir = {}\n", work.display()),
    );
    let master = s.start_master(&[]);
    let kid = master.wait_children(1)[0];
    let cwd = wait_for(Duration::from_secs(5), "the probe's cwd", || {
        s.report_cwd(kid)
    });
    assert_eq!(cwd, work.display().to_string());

    // The dir goes away (validated at load, not at each respawn); the respawn must fail.
    std::fs::remove_dir(&work).unwrap();
    kill(Pid::from_raw(kid), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = master.log_text();
        if log.contains("service=probe cannot start a child") {
            break log;
        }
        // A child counts once it exec'd the probe: a fork whose chdir is failing still shows
        // the master's argv for a moment, and once it exited (a zombie) an empty one (CI saw
        // that counted as a start): neither is a start.
        let probe = PROBE.rsplit('/').next().unwrap_or_default();
        let kids: Vec<i32> = master
            .children()
            .into_iter()
            .filter(|k| exe_name(*k) == probe)
            .collect();
        assert!(
            kids.iter().all(|k| *k == kid) && Instant::now() < deadline,
            "a child started although its chdir failed: {kids:?}; cwd {:?}\n{log}",
            kids.first().and_then(|k| s.report_cwd(*k))
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(log.contains("No such file or directory"), "{log}");
}

#[test]
fn children_write_to_the_masters_stderr() {
    let s = Setup::new();
    let listener = s.path("p.sock");
    s.probe_service("probe", &format!("p://{}", listener.display()), 1, "");
    let master = s.start_master(&[]);
    let kid = master.wait_children(1)[0];
    let (_, fds) = wait_for(Duration::from_secs(5), "the probe report", || s.report(kid));
    let target = |fd: i32| {
        fds.iter()
            .find(|(n, _)| *n == fd)
            .map(|(_, t)| t.split(' ').next().unwrap_or_default().to_owned())
    };
    assert_eq!(
        target(2),
        Some(master.log.display().to_string()),
        "fd 2 is not the master's stderr: {fds:?}"
    );
    assert_eq!(target(0).as_deref(), Some("/dev/null"), "{fds:?}");
}
