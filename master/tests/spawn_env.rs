//! systemd's per-process variables (`LISTEN_*`, `NOTIFY_SOCKET`, `WATCHDOG_*`) are meant for the
//! master alone: a child must not see them (SPEC §12), while the rest of the environment passes.

mod util;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use util::*;

/// The environment child `pid` was exec'd with, from /proc (the real child's own view).
fn environ(pid: i32) -> Vec<(String, String)> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

const SYSTEMD_ONLY: [&str; 6] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

#[test]
fn systemd_variables_do_not_reach_children() {
    let s = Setup::new();
    let listener = s.path("probe.sock");
    s.probe_service("probe", &format!("p://{}", listener.display()), 1, "");
    // A real notify socket, so a master that speaks sd_notify has somewhere to send; LISTEN_PID
    // and WATCHDOG_PID name another process, so a master that honours them passes nothing.
    let notify = s.path("notify.sock");
    let _notify = UnixDatagram::bind(&notify).unwrap();
    let log = s.path("master.log");
    let child = std::process::Command::new(ZMASTER)
        .arg("-C")
        .arg(s.etc())
        .env("ZM_PROBE_REPORT", s.path("rep"))
        .env("ZM_KEEP_ME", "kept")
        .env("LISTEN_FDS", "0")
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDNAMES", "none")
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "600000000")
        .env("WATCHDOG_PID", "1")
        .stdin(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let master = Master {
        child: Some(child),
        log,
    };
    let kid = master.wait_children(1)[0];
    // The probe answers once it runs its own main: its environ is the exec'd one by then.
    let reply = wait_for(Duration::from_secs(10), "the probe to answer", || {
        ask_unix(&listener, "hi").ok()
    });
    assert_eq!(reply_pid(&reply), kid);
    let env = environ(kid);
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    for var in SYSTEMD_ONLY {
        assert!(
            !names.contains(&var),
            "{var} leaked into the child: {names:?}"
        );
    }
    assert!(
        env.contains(&("ZM_KEEP_ME".to_owned(), "kept".to_owned())),
        "the rest of the environment must pass: {names:?}"
    );
}
