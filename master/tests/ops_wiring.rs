//! The operator's pieces wired into the master: the control socket (`-control PATH`, default
//! the pid file + `.ctl`), and SIGUSR1 reopening the log service's file (SPEC §11).

mod util;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use util::*;

/// One request line to the control socket at `path`; its reply line.
fn control(path: &Path, request: &str) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line)
}

fn wait_log(master: &Master, line: &str) {
    wait_for(Duration::from_secs(10), line, || {
        master.log_text().contains(line).then_some(())
    });
}

#[test]
fn the_control_socket_defaults_to_the_pid_file_plus_ctl_and_goes_at_stop() {
    let s = Setup::new();
    let port = free_port();
    s.probe_service("web", &format!("127.0.0.1:{port}"), 1, "");
    let pid_file = s.path("zm.pid");
    let mut master = s.start_master(&["-pid-file", pid_file.to_str().unwrap()]);
    master.wait_children(1);
    let ctl = s.path("zm.pid.ctl");
    let reply = wait_for(Duration::from_secs(10), "a status reply", || {
        control(&ctl, r#"{"cmd":"status"}"#).ok()
    });
    assert!(reply.contains(r#""name":"web""#), "{reply}");
    assert!(
        reply.contains(&format!(r#""pid":{}"#, master.pid())),
        "{reply}"
    );
    let reply = control(&ctl, r#"{"cmd":"stop","mode":"fast"}"#).unwrap();
    assert!(reply.contains(r#""ok":true"#), "{reply}");
    assert_eq!(master.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(!ctl.exists(), "the control socket is removed at stop");
}

#[test]
fn an_explicit_control_path_is_served_and_an_unusable_one_stops_the_start() {
    let s = Setup::new();
    s.probe_service("web", &format!("127.0.0.1:{}", free_port()), 1, "");
    let ctl = s.path("elsewhere.ctl");
    let mut master = s.start_master(&["-control", ctl.to_str().unwrap()]);
    master.wait_children(1);
    let reply = wait_for(Duration::from_secs(10), "a reload reply", || {
        control(&ctl, r#"{"cmd":"reload"}"#).ok()
    });
    assert!(reply.contains(r#""generation":2"#), "{reply}");
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(Duration::from_secs(20)), Some(0));

    // A regular file at the path is not taken over: one error line, exit 1.
    std::fs::write(&ctl, "not a socket").unwrap();
    let mut refused = s.start_master(&["-control", ctl.to_str().unwrap()]);
    assert_eq!(refused.wait_exit(Duration::from_secs(20)), Some(1));
    let log = refused.log_text();
    assert_eq!(log.trim_end().lines().count(), 1, "{log}");
    assert!(log.contains("elsewhere.ctl"), "{log}");
    assert_eq!(std::fs::read_to_string(&ctl).unwrap(), "not a socket");
}

/// The `*.log` files in `logs`.
fn log_files(logs: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(logs)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sigusr1_makes_the_log_service_follow_a_file_renamed_away() {
    let s = Setup::new();
    s.probe_service("web", &format!("127.0.0.1:{}", free_port()), 1, "");
    let (sock, logs) = (s.path("log.sock"), s.path("logs"));
    let arg = format!("{},{}", sock.display(), logs.display());
    let master = s.start_master(&["-log-service", &arg]);
    wait_log(&master, "started:");
    let client = UnixDatagram::unbound().unwrap();
    client.send_to(b"smtpd,7,before", &sock).unwrap();
    let file = wait_for(Duration::from_secs(10), "the first record", || {
        log_files(&logs)
            .into_iter()
            .find(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains("before")))
    });
    let rotated = s.path("rotated.old");
    std::fs::rename(&file, &rotated).unwrap();
    master.signal(Signal::SIGUSR1);
    wait_log(&master, "SIGUSR1: log files reopened");
    client.send_to(b"smtpd,7,after", &sock).unwrap();
    let text = wait_for(Duration::from_secs(10), "a new file at the path", || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| !t.is_empty())
    });
    assert!(text.ends_with(" smtpd[7] after\n"), "{text:?}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(!old.contains("after"), "{old:?}");
}
