//! `MASTER` launch in a process whose fds 3, 4 and 5 are its own (close-on-exec set, as every
//! fd Rust opens): the runtime must refuse them, not adopt and later close them.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use zmaster_modes::runtime::{ErrorKind, Server};

/// The close-on-exec flag of `fd`, from `/proc/self/fdinfo` (`None`: not open).
fn cloexec(fd: i32) -> Option<bool> {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
    let flags = u32::from_str_radix(flags.trim(), 8).expect("octal flags");
    Some(flags & libc::O_CLOEXEC as u32 != 0)
}

/// What `fd` refers to (`/dev/null`, `pipe:[...]`).
fn target(fd: i32) -> PathBuf {
    fs::read_link(format!("/proc/self/fd/{fd}")).expect("fd open")
}

#[test]
fn master_launch_refuses_the_embedding_programs_own_fds() {
    // Fill the low numbers: afterwards 3, 4 and 5 are open, ours or the harness's.
    let mut own = Vec::new();
    while own.last().is_none_or(|f: &File| f.as_raw_fd() <= 5) {
        own.push(File::open("/dev/null").expect("open /dev/null"));
    }
    let before: Vec<_> = (3..=5).map(target).collect();
    for fd in 3..=5 {
        assert_eq!(
            cloexec(fd),
            Some(true),
            "fd {fd} ({:?}) came from the test's parent without close-on-exec; cannot test",
            target(fd)
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cf = dir.path().join("svc.cf");
    fs::write(&cf, "").expect("cf");
    let err = Server::from_args([
        "srv",
        "MASTER",
        "-server-config-path",
        dir.path().to_str().expect("utf-8"),
        "-config",
        cf.to_str().expect("utf-8"),
        "-server-service",
        "x:i5",
    ])
    .expect_err("fds of this process are not a master's");
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("fd 3 (generation pipe)") && msg.contains("close-on-exec"),
        "{msg}"
    );
    // Neither closed nor replaced: they still are what they were.
    assert_eq!((3..=5).map(target).collect::<Vec<_>>(), before);
    drop(own);
}
