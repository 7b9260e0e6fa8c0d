//! A child sees exactly LIB-ZC's layout: 0-2, fd 3 generation pipe, fd 4 private pipe, 5+
//! listeners, and nothing else — not even fds the master itself inherited.

mod util;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use util::*;

#[test]
fn children_get_the_lib_zc_fd_layout_and_argv_only() {
    let s = Setup::new();
    let port = free_port();
    let sock = s.path("p.sock");
    s.probe_service(
        "probe",
        &format!("t://127.0.0.1:{port}; u://{}", sock.display()),
        1,
        "",
    );
    // A stray fd without CLOEXEC that the master inherits from us: it must not reach a child.
    let stray = std::fs::File::open("/dev/zero").unwrap();
    fcntl(&stray, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let stray_fd = stray.as_raw_fd();
    let log = std::fs::File::create(s.path("master.log")).unwrap();
    let mut child = Command::new(ZMASTER)
        .arg("-C")
        .arg(s.etc())
        .env("ZM_PROBE_REPORT", s.path("rep"))
        .stdin(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    drop(stray);
    let master = Master {
        child: None,
        log: s.path("master.log"),
    };
    let kids = wait_for(Duration::from_secs(5), "a child", || {
        let kids = children_of(child.id() as i32);
        (!kids.is_empty()).then_some(kids)
    });
    let (argv, fds) = wait_for(Duration::from_secs(5), "the report", || s.report(kids[0]));
    let _ = child.kill();
    let _ = child.wait();
    drop(master);
    let etc = s.etc();
    let expect_argv = [
        "zmaster-probe".to_owned(),
        "MASTER".into(),
        "-server-config-path".into(),
        etc.display().to_string(),
        "-config".into(),
        etc.join("probe.cf").display().to_string(),
        "-server-service".into(),
        "t:i5,u:u6".into(),
    ];
    assert_eq!(argv, expect_argv);
    let numbers: Vec<i32> = fds.iter().map(|(fd, _)| *fd).collect();
    // fd 7 is the probe's own handle on /proc/self/fd while it lists it.
    assert_eq!(
        numbers,
        [0, 1, 2, 3, 4, 5, 6, 7],
        "{fds:?} (stray was {stray_fd})"
    );
    assert!(
        fds[3].1.starts_with("pipe:") && fds[4].1.starts_with("pipe:"),
        "{fds:?}"
    );
    assert!(
        fds[5].1.starts_with("socket:") && fds[6].1.starts_with("socket:"),
        "{fds:?}"
    );
    assert_ne!(fds[3].1, fds[4].1);
}
