//! `zstress chaos` against a stand-in master (a shell that respawns its children): kills are
//! sent only to its children and their replacements are timed.

mod util;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::{Behaviour, last_line, num, tcp_server, zstress};
use zmaster_stress::procs::{ChildGuard, children_of};

#[test]
fn kills_children_and_times_respawns() {
    if !std::path::Path::new("/bin/bash").exists() {
        return;
    }
    let script = "trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM; \
                  sleep 30 & sleep 30 & \
                  while :; do wait -n; sleep 30 & done";
    let child = Command::new("/bin/bash")
        .args(["-c", script])
        .stdout(Stdio::null())
        .spawn()
        .expect("bash");
    let mut master = ChildGuard::new(child, "fake master");
    let pid = master.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    while children_of(pid).map_or(0, |c| c.len()) < 2 {
        assert!(
            Instant::now() < deadline,
            "fake master never had 2 children"
        );
        std::thread::yield_now();
    }
    let addr = tcp_server(Behaviour::Echo { banner: 0 }).to_string();
    let pid_s = pid.to_string();
    let o = zstress(&[
        "chaos",
        "--master-pid",
        &pid_s,
        &addr,
        "--kill-rate",
        "10/s",
        "--duration",
        "1s",
        "--conns",
        "2",
        "--json",
    ]);
    let j = last_line(&o);
    assert!(o.status.success(), "{o:?}");
    assert!(num(&j, "kills") >= 5.0, "{j}");
    assert!(num(&j, "count") >= 1.0, "{j}");
    assert_eq!(num(&j, "errors_total"), 0.0, "{j}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("SIGKILL child"));
    assert!(master.stop(Duration::from_secs(5)).is_some());
}
