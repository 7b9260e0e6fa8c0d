//! `-master-log`: the master's own lines go to stderr as always and also to the masterlog
//! collector (`-log-service`) or syslog; bad values are usage errors before anything starts.

mod cli_util;
mod util;

use std::path::Path;
use std::time::Duration;

use cli_util::{text, zmaster};
use util::*;

/// Everything the collector wrote into the `*.log` files of `logs`.
fn collected(logs: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(logs) else {
        return String::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

#[test]
fn masterlog_sends_the_masters_lines_to_the_collector_and_stderr() {
    let s = Setup::new();
    s.probe_service("a", &format!("127.0.0.1:{}", free_port()), 1, "");
    let (sock, logs) = (s.path("log.sock"), s.path("logs"));
    let arg = format!("{},{}", sock.display(), logs.display());
    let master = s.start_master(&["-log-service", &arg, "-master-log", "masterlog"]);
    let pid = master.pid();
    // The started line is logged after the collector is up: it reaches the file.
    let want = format!(" zmaster[{pid}] ");
    let line = wait_for(
        Duration::from_secs(10),
        "a master line in the collector",
        || {
            collected(&logs)
                .lines()
                .find(|l| l.contains(&format!("{want}started: pid={pid} ")))
                .map(str::to_owned)
        },
    );
    let message = line.split_once(&want).unwrap().1;
    assert!(
        master.log_text().contains(message),
        "{line}\n{}",
        master.log_text()
    );
}

#[test]
fn bad_master_log_values_are_usage_errors() {
    let s = Setup::new();
    s.probe_service("a", &format!("127.0.0.1:{}", free_port()), 1, "");
    let etc = s.etc().display().to_string();
    for (value, want) in [
        (
            "masterlog",
            "zmaster: -master-log masterlog needs -log-service SOCK,DIR\n",
        ),
        (
            "syslog,nosuch",
            "zmaster: -master-log \"syslog,nosuch\": unknown syslog facility \"nosuch\"\n",
        ),
        (
            "file",
            "zmaster: -master-log \"file\": expected stderr, syslog,FACILITY or masterlog\n",
        ),
    ] {
        for check in [false, true] {
            let mut args = vec!["-C", &etc, "-master-log", value];
            if check {
                args.push("-t");
            }
            let out = zmaster(ZMASTER, &args);
            assert_eq!(out.status.code(), Some(1), "{value}");
            assert_eq!(text(&out.stderr), want);
        }
    }
    assert_eq!(
        std::fs::read_dir(s.path("rep")).unwrap().count(),
        0,
        "a child ran"
    );
}

/// The syslog socket is glibc's fixed `/dev/log` (no override), so this test can only check
/// the fallback: without a daemon the master says so once and runs on stderr.
#[test]
fn syslog_without_a_daemon_warns_and_keeps_stderr() {
    if Path::new("/dev/log").exists() {
        eprintln!("skipped: /dev/log exists; a test must not write to the real syslog");
        return;
    }
    let s = Setup::new();
    s.probe_service("a", &format!("127.0.0.1:{}", free_port()), 1, "");
    let master = s.start_master(&["-master-log", "syslog,daemon"]);
    wait_for(Duration::from_secs(10), "the started line", || {
        master.log_text().contains("started:").then_some(())
    });
    let log = master.log_text();
    assert_eq!(
        log.matches("warning: -master-log syslog: /dev/log: ")
            .count(),
        1,
        "{log}"
    );
}
