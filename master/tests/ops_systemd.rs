//! systemd (SPEC §12) without systemd: sd_notify messages on a test `NOTIFY_SOCKET` (a path and
//! an abstract name), and socket activation with sockets the test bound and passed as fd 3/4.

mod util;

use std::fs;
use std::os::fd::{AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use util::*;

/// Starts the master on `s`'s config dir through `sh -c` with `env` and `script` run before
/// `exec zmaster` (so `$$` is the master's pid).
fn start_via_sh(s: &Setup, script: &str, env: &[(&str, &str)], passed: &[RawFd]) -> Master {
    let log = s.path("master.log");
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("{script}; exec \"$0\" \"$@\""))
        .arg(ZMASTER)
        .arg("-C")
        .arg(s.etc())
        .envs(env.iter().copied())
        .env("ZM_PROBE_REPORT", s.path("rep"))
        .stdin(Stdio::null())
        .stdout(fs::File::create(s.path("master.out")).unwrap())
        .stderr(fs::File::create(&log).unwrap());
    let passed = passed.to_vec();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and calls only fcntl/dup2/close,
    // which are async-signal-safe; it touches no memory shared with other threads.
    unsafe {
        cmd.pre_exec(move || {
            // Move the fds out of the way first, so dup2 to 3, 4 cannot clobber one of them.
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
        child: Some(cmd.spawn().unwrap()),
        log,
    }
}

/// Receives notify messages until one satisfies `done`; returns all of them.
fn recv_until(rx: &UnixDatagram, master: &Master, done: impl Fn(&str) -> bool) -> Vec<String> {
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = rx
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{e} after {got:?}; log:\n{}", master.log_text()));
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let stop = done(&msg);
        got.push(msg);
        if stop {
            return got;
        }
    }
}

/// The environment of `pid`, as `KEY=VALUE` strings.
fn environ(pid: i32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect()
}

fn assert_clean_env(pid: i32) {
    let env = environ(pid);
    assert!(
        env.iter().any(|e| e.starts_with("ZM_PROBE_REPORT=")),
        "{env:?}"
    );
    for key in ["LISTEN_", "NOTIFY_SOCKET", "WATCHDOG_"] {
        assert!(
            !env.iter().any(|e| e.starts_with(key)),
            "child {pid} has {key}*: {env:?}"
        );
    }
}

fn notify_session(rx: &UnixDatagram, notify_socket: &str) {
    let s = Setup::new();
    s.probe_service("web", &format!("127.0.0.1:{}", free_port()), 2, "");
    let env = [
        ("NOTIFY_SOCKET", notify_socket),
        ("WATCHDOG_USEC", "200000"),
    ];
    let mut master = start_via_sh(&s, "export WATCHDOG_PID=$$", &env, &[]);
    let got = recv_until(rx, &master, |m| m == "READY=1");
    assert_eq!(got, ["READY=1"], "nothing before READY");
    // READY comes once the first generation started: both children exist.
    assert_eq!(children_of(master.pid()).len(), 2, "{}", master.log_text());
    let got = recv_until(rx, &master, |m| m == "WATCHDOG=1");
    assert!(
        got.iter()
            .any(|m| m.starts_with("STATUS=generation 1: 1 services")),
        "{got:?}"
    );
    recv_until(rx, &master, |m| m == "WATCHDOG=1");
    for kid in master.wait_children(2) {
        wait_for(Duration::from_secs(5), "the child's exec", || {
            environ(kid)
                .iter()
                .any(|e| e.starts_with("ZM_PROBE_REPORT="))
                .then_some(())
        });
        assert_clean_env(kid);
    }

    // A reload: RELOADING=1 with the monotonic clock, then READY=1.
    master.signal(Signal::SIGHUP);
    let got = recv_until(rx, &master, |m| m.starts_with("RELOADING=1"));
    let reloading = got.last().unwrap();
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|u| u.parse::<u64>().ok());
    assert!(usec.is_some_and(|u| u > 0), "{reloading:?}");
    recv_until(rx, &master, |m| m == "READY=1");
    // A refused reload answers READY=1 too (systemd must not wait for it forever).
    s.write_cf(
        "web",
        "server-command = /no/such/server\nserver-service = 127.0.0.1:1\n",
    );
    master.signal(Signal::SIGHUP);
    recv_until(rx, &master, |m| m.starts_with("RELOADING=1"));
    recv_until(rx, &master, |m| m == "READY=1");
    assert!(master.log_text().contains("reload failed"));

    master.signal(Signal::SIGTERM);
    recv_until(rx, &master, |m| m == "STOPPING=1");
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn sd_notify_on_a_path_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let rx = UnixDatagram::bind(&path).unwrap();
    notify_session(&rx, path.to_str().unwrap());
}

#[test]
fn sd_notify_on_an_abstract_socket() {
    let name = format!("zm-ops-notify-{}-{}", std::process::id(), free_port());
    let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
    notify_session(&rx, &format!("@{name}"));
}

#[test]
fn passed_sockets_are_adopted_and_strays_closed() {
    let s = Setup::new();
    let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = web.local_addr().unwrap().port();
    let stray = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    s.probe_service("web", &format!("127.0.0.1:{port}"), 2, "");
    let other = free_port();
    s.probe_service("other", &format!("127.0.0.1:{other}"), 1, "");
    let env = [("LISTEN_FDS", "2"), ("LISTEN_FDNAMES", "web:stray")];
    let passed = [web.as_raw_fd(), stray.as_raw_fd()];
    let mut master = start_via_sh(&s, "export LISTEN_PID=$$", &env, &passed);
    // The test still holds 127.0.0.1:port listening: binding it would fail. The master started,
    // so it adopted the passed socket; its children serve it.
    let kids = master.wait_children(3);
    let reply = wait_for(
        Duration::from_secs(10),
        "an answer on the passed socket",
        || ask_tcp(port, "via fd 3").ok(),
    );
    assert!(reply.ends_with("via fd 3"), "{reply}");
    assert!(ask_tcp(other, "bound").unwrap().ends_with("bound"));
    let log = master.log_text();
    assert!(
        log.contains(&format!(
            "adopted listener 127.0.0.1:{port} from systemd (fd 3 \"web\")"
        )),
        "{log}"
    );
    assert!(
        log.contains("closing passed socket fd 4 \"stray\": no service is configured for it"),
        "{log}"
    );
    // The stray socket is closed in the master and never reached a child. (Checked through
    // /proc, not by connecting: once the test drops its copy, a parallel test's free_port()
    // or a sibling thread's fork-before-exec may hold the port, so a refused connect is not
    // ours to promise.)
    let stray_inode = fs::read_link(format!("/proc/self/fd/{}", stray.as_raw_fd())).unwrap();
    let holds_stray = |pid: i32| -> bool {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
            .any(|l| l == stray_inode)
    };
    assert!(
        !holds_stray(master.pid()),
        "the master kept the stray socket"
    );
    for &kid in &kids {
        wait_for(Duration::from_secs(5), "the child's exec", || {
            environ(kid)
                .iter()
                .any(|e| e.starts_with("ZM_PROBE_REPORT="))
                .then_some(())
        });
        assert_clean_env(kid);
        assert!(!holds_stray(kid), "child {kid} inherited the stray socket");
    }
    drop(stray);
    // A reload keeps the adopted socket (same address); stop leaves no socket file to remove.
    master.signal(Signal::SIGHUP);
    wait_for(Duration::from_secs(10), "the reload", || {
        master
            .log_text()
            .contains("reloaded: generation=2")
            .then_some(())
    });
    assert!(
        ask_tcp(port, "after reload")
            .unwrap()
            .ends_with("after reload")
    );
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn listen_fds_for_another_pid_are_ignored() {
    let s = Setup::new();
    let port = free_port();
    s.probe_service("web", &format!("127.0.0.1:{port}"), 1, "");
    // LISTEN_PID is the shell's parent, not the master: fd 3 is not taken (none is passed).
    let env = [("LISTEN_FDS", "1"), ("LISTEN_PID", "1")];
    let mut master = start_via_sh(&s, "true", &env, &[]);
    master.wait_children(1);
    wait_for(Duration::from_secs(10), "an answer", || {
        ask_tcp(port, "x").ok()
    });
    let log = master.log_text();
    assert!(
        !log.contains("LISTEN_FDS") && !log.contains("adopted"),
        "{log}"
    );
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
}
