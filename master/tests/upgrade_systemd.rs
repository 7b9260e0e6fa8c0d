//! A binary upgrade as systemd sees it (SPEC §12, §14), without systemd: the old master sends
//! `MAINPID=` for the new one and then nothing (no `STOPPING=1` for its drain), the new one
//! sends `READY=1` and pings the watchdog itself; a socket systemd passed is handed over and
//! stays systemd's (its file is never removed), a unix socket the master bound passes to the
//! new master with its file, which the new master removes at its stop; the children see none
//! of the variables.

mod upgrade_util;
mod util;

use std::fs;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use upgrade_util::*;
use util::*;

/// Starts zmaster through `sh -c` with `env`, `script` run first (so `$$` is the master) and
/// `passed` as fds 3, 4, ...
fn start_via_sh(
    s: &Setup,
    script: &str,
    env: &[(&str, &str)],
    passed: &[RawFd],
    args: &[&str],
) -> Master {
    let log = s.path("master.log");
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("{script}; exec \"$0\" \"$@\""))
        .arg(ZMASTER)
        .arg("-C")
        .arg(s.etc())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(fs::File::create(s.path("master.out")).expect("out"))
        .stderr(fs::File::create(&log).expect("log"));
    let passed = passed.to_vec();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and calls only fcntl/dup2/close,
    // which are async-signal-safe; it touches no memory shared with other threads.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = Vec::with_capacity(passed.len());
            for fd in &passed {
                let h = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 100);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(h);
            }
            for (i, h) in high.into_iter().enumerate() {
                if libc::dup2(h, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(h);
            }
            Ok(())
        });
    }
    Master {
        child: Some(cmd.spawn().expect("sh")),
        log,
    }
}

/// One notify message and the pid that sent it (SO_PASSCRED).
fn recv(rx: &UnixDatagram, master: &Master) -> (i32, String) {
    let mut buf = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(rx.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", master.log_text()));
    let pid = msg
        .cmsgs()
        .expect("cmsgs")
        .find_map(|c| match c {
            ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
            _ => None,
        })
        .expect("credentials");
    let len = msg.bytes;
    (pid, String::from_utf8_lossy(&buf[..len]).into_owned())
}

fn environ(pid: i32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect()
}

#[test]
fn systemd_sees_mainpid_from_the_old_master_and_keeps_its_sockets() {
    become_subreaper();
    let s = Setup::new();
    let notify = s.path("notify");
    let rx = UnixDatagram::bind(&notify).expect("bind notify");
    setsockopt(&rx, sockopt::PassCred, &true).expect("SO_PASSCRED");
    rx.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // A socket "systemd" passes, and one the master binds itself.
    let passed_path = s.path("passed.sock");
    let passed = UnixListener::bind(&passed_path).expect("bind passed");
    let own_path = s.path("own.sock");
    s.probe_service(
        "probe",
        &format!("p://{},q://{}", passed_path.display(), own_path.display()),
        1,
        "",
    );
    let pid_file = s.path("m.pid");
    let env = [
        ("NOTIFY_SOCKET", notify.to_str().expect("utf-8")),
        ("WATCHDOG_USEC", "200000"),
        ("LISTEN_FDS", "1"),
        ("LISTEN_FDNAMES", "probe"),
    ];
    let mut master = start_via_sh(
        &s,
        "export LISTEN_PID=$$ WATCHDOG_PID=$$",
        &env,
        &[passed.as_raw_fd()],
        &["-pid-file", pid_file.to_str().expect("utf-8")],
    );
    let mut masters = Masters::default();
    masters.0.push(master.pid());
    let old = master.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut before = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no READY=1 from {old}: {before:?}"
        );
        let got = recv(&rx, &master);
        if got == (old, "READY=1".to_owned()) {
            break;
        }
        before.push(got);
    }
    master.signal(Signal::SIGUSR2);
    let new = wait_new_master(&pid_file, old, &master);
    masters.0.push(new);

    // From the old master: MAINPID=new, then silence; from the new one READY=1 and pings.
    let mut from_old = Vec::new();
    let (mut ready, mut pings) = (false, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(ready && pings >= 2 && from_old.contains(&format!("MAINPID={new}"))) {
        assert!(
            Instant::now() < deadline,
            "old {from_old:?}, new ready {ready}, pings {pings}"
        );
        match recv(&rx, &master) {
            (pid, msg) if pid == old => from_old.push(msg),
            (pid, msg) if pid == new && msg == "READY=1" => ready = true,
            (pid, msg) if pid == new && msg == "WATCHDOG=1" => pings += 1,
            _ => {}
        }
    }
    assert_eq!(
        master.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        master.log_text()
    );
    // Whatever else came (the new master pings on): nothing more from the old one.
    let quiet = Instant::now() + Duration::from_millis(300);
    while Instant::now() < quiet {
        let (pid, msg) = recv(&rx, &master);
        if pid == old {
            from_old.push(msg);
        }
    }
    let after = from_old
        .iter()
        .skip_while(|m| !m.starts_with("MAINPID="))
        .skip(1);
    assert_eq!(
        after.count(),
        0,
        "the old master spoke after MAINPID=: {from_old:?}"
    );
    assert!(
        !from_old.iter().any(|m| m.contains("STOPPING=1")),
        "{from_old:?}"
    );

    // The new master's environment: systemd's variables for it, none meant for the old pid.
    let env = environ(new);
    assert!(
        env.iter().any(|e| e.starts_with("NOTIFY_SOCKET=")),
        "{env:?}"
    );
    assert!(
        env.iter().any(|e| e.starts_with("WATCHDOG_USEC=")),
        "{env:?}"
    );
    for key in ["LISTEN_", "WATCHDOG_PID"] {
        assert!(
            !env.iter().any(|e| e.starts_with(key)),
            "new master has {key}: {env:?}"
        );
    }
    let kid = wait_for(Duration::from_secs(10), "the new child", || {
        children_of(new).first().copied()
    });
    let kid_env = environ(kid);
    for key in [
        "LISTEN_",
        "NOTIFY_SOCKET",
        "WATCHDOG_",
        "ZMASTER_UPGRADE_FDS",
    ] {
        assert!(
            !kid_env.iter().any(|e| e.starts_with(key)),
            "child has {key}: {kid_env:?}"
        );
    }
    // Both sockets serve on, and both files are still there.
    for path in [&passed_path, &own_path] {
        let reply = wait_for(Duration::from_secs(10), "an answer", || {
            ask_unix(path, "hi").ok()
        });
        assert_eq!(reply_pid(&reply), kid);
    }
    let log = master.log_text();
    assert!(
        log.contains(&format!(
            "zmaster[{new}]: info: adopted listener local:{} from systemd",
            passed_path.display()
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "zmaster[{new}]: info: adopted listener local:{} from the old master",
            own_path.display()
        )),
        "{log}"
    );

    // At its stop the new master removes the file it took over, never systemd's.
    signal(new, Signal::SIGTERM);
    wait_gone(new, Duration::from_secs(20));
    assert!(passed_path.exists(), "systemd's socket file was removed");
    assert!(!own_path.exists(), "the master's own socket file was left");
}
