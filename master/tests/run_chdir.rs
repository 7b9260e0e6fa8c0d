//! `run-chdir` / `run-chroot` are LIB-ZC's names for `master-chdir` / `master-chroot`: the
//! child enters the dir; both names with different values are a config error naming both.

mod util;

use std::time::Duration;

use util::*;

#[test]
fn run_chdir_is_applied_in_the_child() {
    let s = Setup::new();
    let work = s.path("work");
    std::fs::create_dir(&work).unwrap();
    let sock = s.path("p.sock");
    s.probe_service(
        "probe",
        &format!("p://{}", sock.display()),
        1,
        &format!("run-chdir = {}\n", work.display()),
    );
    let master = s.start_master(&[]);
    let kid = master.wait_children(1)[0];
    let cwd = wait_for(Duration::from_secs(5), "the probe's cwd", || {
        s.report_cwd(kid)
    });
    assert_eq!(cwd, work.display().to_string());
}

#[test]
fn a_missing_run_dir_or_a_conflict_with_the_old_name_is_an_error() {
    let s = Setup::new();
    let sock = s.path("p.sock");
    let service = format!("p://{}", sock.display());
    let refused = |extra: &str, want: &str| {
        s.probe_service("probe", &service, 1, extra);
        let mut master = s.start_master(&[]);
        assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(1));
        let log = master.log_text();
        assert!(log.contains(want), "{log}");
        assert!(!sock.exists(), "a listener was bound: {log}");
    };
    refused(
        "run-chdir = /no/such/dir\n",
        "probe.cf:4: run-chdir: /no/such/dir is not a directory",
    );
    refused(
        "run-chroot = /no/such/root\n",
        "probe.cf:4: run-chroot: /no/such/root is not a directory",
    );
    refused(
        "master-chdir = /tmp\nrun-chdir = /\n",
        "probe.cf:5: run-chdir: \"/\" conflicts with master-chdir = \"/tmp\" (",
    );
}
