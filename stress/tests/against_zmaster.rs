//! `zstress load` and `chaos` against the real `zmaster` running `echo-aio` and
//! `echo-coroutine`, when they were built into the same target directory as `zstress` (a
//! workspace build); each is skipped otherwise.

mod util;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use util::{last_line, num, zstress};
use zmaster_stress::bench::wait_ready;
use zmaster_stress::procs::ChildGuard;
use zmaster_testkit::free_port;

fn bins(server: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_zstress"))
        .parent()?
        .to_path_buf();
    let ok = ["zmaster", server].iter().all(|b| dir.join(b).is_file());
    if !ok {
        eprintln!(
            "skipped: zmaster or {server} not built in {}",
            dir.display()
        );
    }
    ok.then_some(dir)
}

#[test]
fn load_and_chaos_against_zmaster_echo_aio() {
    load_and_chaos("echo-aio");
}

#[test]
fn load_and_chaos_against_zmaster_echo_coroutine() {
    load_and_chaos("echo-coroutine");
}

fn load_and_chaos(server: &str) {
    let Some(bin) = bins(server) else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cf = format!(
        "server-command = {}\nserver-service = 127.0.0.1:{port}\nserver-proc-count = 2\nserver-thread-count = 1\n",
        bin.join(server).display()
    );
    std::fs::write(tmp.path().join("echo.cf"), cf).expect("write echo.cf");
    let pid_file = tmp.path().join("master.pid");
    let child = Command::new(bin.join("zmaster"))
        .arg("-C")
        .arg(tmp.path())
        .arg("-pid-file")
        .arg(&pid_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn zmaster");
    let mut master = ChildGuard::new(child, "zmaster");
    wait_ready(
        ([127, 0, 0, 1], port).into(),
        &mut master,
        Duration::from_secs(10),
    )
    .expect("zmaster answers");
    let addr = format!("127.0.0.1:{port}");

    let o = zstress(&[
        "load",
        &addr,
        "--requests",
        "2000",
        "--conns",
        "8",
        "--json",
    ]);
    let j = last_line(&o);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(num(&j, "ok"), 2000.0, "{j}");

    let pf = pid_file.to_string_lossy().to_string();
    let o = zstress(&[
        "chaos",
        "--pid-file",
        &pf,
        &addr,
        "--kill-rate",
        "4/s",
        "--duration",
        "1s",
        "--conns",
        "4",
        "--json",
    ]);
    let j = last_line(&o);
    assert!(o.status.success(), "{o:?}");
    assert!(num(&j, "kills") >= 2.0, "{j}");
    assert_eq!(
        num(&j, "refused"),
        0.0,
        "the master keeps the listener: {j}"
    );
    assert_eq!(
        num(&j, "requests"),
        num(&j, "ok") + num(&j, "errors_total"),
        "{j}"
    );
    assert!(
        master
            .stop(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "zmaster stops cleanly on SIGTERM"
    );
}
