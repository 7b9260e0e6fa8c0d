//! Helpers for the SPEC §13 master tests: the example echo servers (real zmaster servers, built
//! on demand next to `zmaster`), the control socket's status, a child's heartbeat memfd.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::util::ZMASTER;

/// The example servers `echo-aio` and `echo-coroutine`, built (once per test binary) into the
/// target dir `zmaster` is in: a `cargo test -p zmaster` alone would not build them, or would
/// leave a stale copy built before the runtime changed.
pub fn echo_servers() -> [PathBuf; 2] {
    static BUILT: OnceLock<[PathBuf; 2]> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let profile_dir = Path::new(ZMASTER).parent().expect("target/PROFILE");
            let target_dir = profile_dir.parent().expect("target dir");
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("root");
            let mut build = Command::new(option_env!("CARGO").unwrap_or("cargo"));
            build
                .current_dir(workspace)
                .args(["build", "--quiet", "-p", "zmaster-examples"])
                .args(["--bin", "echo-aio", "--bin", "echo-coroutine"])
                .arg("--target-dir")
                .arg(target_dir);
            if profile_dir.file_name().is_some_and(|p| p == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("run cargo build");
            assert!(
                status.success(),
                "cargo build of the example servers failed"
            );
            ["echo-aio", "echo-coroutine"].map(|b| profile_dir.join(b))
        })
        .clone()
}

/// Writes `etc/echo.cf` for `bin` serving `etc/../e.sock` with `procs` processes of one
/// thread each, then `extra` (more `key = value` lines); returns the socket path.
pub fn echo_service(setup: &crate::util::Setup, bin: &Path, procs: usize, extra: &str) -> PathBuf {
    let sock = setup.path("e.sock");
    setup.write_cf(
        "echo",
        &format!(
            "server-command = {}\nserver-service = echo://{}\nserver-proc-count = {procs}\n\
             server-thread-count = 1\n{extra}",
            bin.display(),
            sock.display()
        ),
    );
    sock
}

/// The master's status document, from its control socket at `sock`.
pub fn status(sock: &Path) -> serde_json::Value {
    let mut stream = UnixStream::connect(sock).expect("connect to the control socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"{\"cmd\":\"status\"}\n")
        .expect("send status");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("read status");
    let reply: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(reply["ok"], true, "{line}");
    reply["status"].clone()
}

/// Service `name` in a status document.
pub fn service<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["services"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no service {name} in {status}"))
}

/// The heartbeat memfd child `pid` holds: its fd number and last beat (0: never beat).
pub fn heartbeat_of(pid: i32) -> Option<(i32, u64)> {
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let link = std::fs::read_link(entry.path()).unwrap_or_default();
        if link
            .to_string_lossy()
            .starts_with("/memfd:zmaster-heartbeat")
        {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let bytes = std::fs::read(entry.path()).ok()?;
            let beat = u64::from_ne_bytes(bytes.get(..8)?.try_into().ok()?);
            return Some((fd, beat));
        }
    }
    None
}

/// Starts the master on `setup`'s `etc/` as `Setup::start_master` does, but as the leader of
/// a process group of its own (its children join it): a test can freeze the whole group
/// (`kill -STOP -- -PGID`, as docker pause or a cgroup freeze does) without freezing itself.
pub fn start_master_in_own_group(setup: &crate::util::Setup, args: &[&str]) -> crate::util::Master {
    use std::os::unix::process::CommandExt;
    let log = setup.path("master.log");
    let child = Command::new(ZMASTER)
        .arg("-C")
        .arg(setup.etc())
        .args(args)
        .env("ZM_PROBE_REPORT", setup.path("rep"))
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(setup.path("master.out")).expect("master.out"))
        .stderr(std::fs::File::create(&log).expect("master.log"))
        .process_group(0)
        .spawn()
        .expect("start zmaster");
    crate::util::Master {
        child: Some(child),
        log,
    }
}
