//! A child sees exactly LIB-ZC's layout: 0-2, fd 3 generation pipe, fd 4 private pipe, 5+
//! listeners, and nothing else — not even fds the master itself inherited.

mod util;

use std::os::fd::AsRawFd;
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
    let child = Command::new(ZMASTER)
        .arg("-C")
        .arg(s.etc())
        .env("ZM_PROBE_REPORT", s.path("rep"))
        .stdin(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    drop(stray);
    let master = Master {
        child: Some(child),
        log: s.path("master.log"),
    };
    let kid = master.wait_children(1)[0];
    let (argv, fds) = wait_for(Duration::from_secs(5), "the report", || s.report(kid));
    let addrs = wait_for(Duration::from_secs(5), "the addrs report", || {
        std::fs::read_to_string(s.path("rep").join(format!("{kid}.addrs"))).ok()
    });
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
    let flags = |fd: usize| -> u32 {
        let text = fds[fd].1.rsplit_once("flags=").map_or("", |(_, f)| f);
        u32::from_str_radix(text, 8).unwrap_or_else(|_| panic!("no flags for fd {fd}: {fds:?}"))
    };
    let (accmode, nonblock) = (libc::O_ACCMODE as u32, libc::O_NONBLOCK as u32);
    // fd 3: write end of the generation pipe; fd 4: read end of the private pipe.
    assert!(
        fds[3].1.starts_with("pipe:") && flags(3) & accmode == libc::O_WRONLY as u32,
        "{fds:?}"
    );
    assert!(
        fds[4].1.starts_with("pipe:") && flags(4) & accmode == libc::O_RDONLY as u32,
        "{fds:?}"
    );
    assert_ne!(fds[3].1.split(' ').next(), fds[4].1.split(' ').next());
    // fds 5, 6: the listeners, non-blocking, in server-service order.
    for fd in [5, 6] {
        assert!(
            fds[fd].1.starts_with("socket:") && flags(fd) & nonblock != 0,
            "{fds:?}"
        );
    }
    assert_eq!(addrs, format!("5 127.0.0.1:{port}\n6 {}\n", sock.display()));
}
