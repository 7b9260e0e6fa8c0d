//! The baseline peers answer line echo, `exit` closes, and `zstress bench` runs them side by side.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use zmaster_stress::bench::{free_port, wait_ready};
use zmaster_stress::procs::ChildGuard;

fn peer(bin: &str, port: u16) -> ChildGuard {
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(bin)
        .args([addr.as_str(), "--threads", "2"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn peer");
    let mut g = ChildGuard::new(child, bin);
    wait_ready(
        ([127, 0, 0, 1], port).into(),
        &mut g,
        Duration::from_secs(10),
    )
    .expect("peer ready");
    g
}

#[test]
fn peers_echo_and_close_on_exit() {
    for bin in [
        env!("CARGO_BIN_EXE_echo-epoll"),
        env!("CARGO_BIN_EXE_echo-tokio"),
        env!("CARGO_BIN_EXE_echo-may"),
    ] {
        let port = free_port().expect("port");
        let mut g = peer(bin, port);
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(b"one\ntwo\nexit\nthree\n").expect("write");
        let mut r = BufReader::new(s);
        let mut all = String::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => all.push_str(&line),
                Err(e) => panic!("{bin}: {e} after {all:?}"),
            }
        }
        assert_eq!(all, "one\ntwo\n", "{bin}");
        // Data and FIN together: the lines are echoed and the server closes too.
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(b"a\nb\n").expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut s, &mut rest)
            .unwrap_or_else(|e| panic!("{bin}: {e} after {rest:?}"));
        assert_eq!(rest, "a\nb\n", "{bin}");
        assert!(g.stop(Duration::from_secs(5)).is_some(), "{bin} stopped");
    }
}

#[test]
fn bench_runs_baselines_and_skips_missing_zmaster() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_zstress"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let out = tempfile::tempdir().expect("tempdir");
    let o = Command::new(env!("CARGO_BIN_EXE_zstress"))
        .args([
            "bench",
            "--duration",
            "200ms",
            "--warmup",
            "50ms",
            "--conns",
            "4",
            "--workers",
            "1",
            "--only",
            "aio,epoll,tokio",
        ])
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run bench");
    assert!(o.status.success(), "{o:?}");
    let md = std::fs::read_to_string(out.path().join("bench.md")).expect("bench.md");
    for needle in [
        "| cpu0 | 1* | echo-epoll |",
        "| unpinned | 1 | echo-tokio |",
    ] {
        assert!(md.contains(needle), "{needle} missing in\n{md}");
    }
    if !bin_dir.join("zmaster").exists() {
        assert!(md.contains("skipped: not built"), "{md}");
    }
    let svg = std::fs::read_to_string(out.path().join("latency.svg")).expect("latency.svg");
    assert!(svg.contains("<polyline") && svg.contains("echo-epoll"));
}
