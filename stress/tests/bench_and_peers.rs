//! The baseline peers answer line echo, `exit` closes, and `zstress bench` runs them side by side.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use zmaster_stress::bench::wait_ready;
use zmaster_stress::procs::ChildGuard;
use zmaster_testkit::free_port;

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

/// A server started on a port another echo server already holds (a parallel run took it) is
/// not ready because the other one answers the probe: `wait_ready` waits for a listener the
/// child itself holds, and so reports the child's exit on its bind error.
#[test]
fn wait_ready_is_not_fooled_by_another_server_on_the_port() {
    let port = free_port();
    let _first = peer(env!("CARGO_BIN_EXE_echo-tokio"), port);
    let child = Command::new(env!("CARGO_BIN_EXE_echo-epoll"))
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut second = ChildGuard::new(child, "echo-epoll");
    let verdict = wait_ready(
        ([127, 0, 0, 1], port).into(),
        &mut second,
        Duration::from_secs(10),
    );
    let err = verdict.expect_err("the other server's answer counted as the child's");
    assert!(err.contains("exited before answering"), "{err}");
}

#[test]
fn peers_echo_and_close_on_exit() {
    for bin in [
        env!("CARGO_BIN_EXE_echo-epoll"),
        env!("CARGO_BIN_EXE_echo-tokio"),
        env!("CARGO_BIN_EXE_echo-may"),
    ] {
        let port = free_port();
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

fn bench(bin_dir: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zstress"))
        .args([
            "bench",
            "--duration",
            "100ms",
            "--warmup",
            "0",
            "--conns",
            "4",
        ])
        .args(extra)
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run bench")
}

fn own_bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_zstress"))
        .parent()
        .expect("bin dir")
        .to_path_buf()
}

#[test]
fn bench_runs_baselines_and_skips_missing_zmaster() {
    // A bin dir holding only the two peers: the zmaster rows must say why they are missing.
    let bins = tempfile::tempdir().expect("tempdir");
    for b in ["echo-epoll", "echo-tokio"] {
        std::os::unix::fs::symlink(own_bin_dir().join(b), bins.path().join(b)).expect("symlink");
    }
    let out = tempfile::tempdir().expect("tempdir");
    let o = bench(
        bins.path(),
        out.path(),
        &["--workers", "1", "--only", "aio,epoll,tokio"],
    );
    assert!(o.status.success(), "{o:?}");
    let md = std::fs::read_to_string(out.path().join("bench.md")).expect("bench.md");
    for needle in [
        "| cpu0 | echo | 1* | echo-epoll |",
        "| unpinned | echo | 1 | echo-tokio |",
        "| cpu0 | echo | 1×1 | zmaster+echo-aio | skipped: not built (",
    ] {
        assert!(md.contains(needle), "{needle} missing in\n{md}");
    }
    assert!(
        !md.contains("| connect |"),
        "no connect rows unless asked:\n{md}"
    );
    let svg = std::fs::read_to_string(out.path().join("latency.svg")).expect("latency.svg");
    assert!(svg.contains("<polyline") && svg.contains("echo-epoll"));
}

/// The text after each `key` in `json`, up to the next `end`.
fn json_values<'a>(json: &'a str, key: &str, end: char) -> Vec<&'a str> {
    json.split(key)
        .skip(1)
        .map(|rest| rest.split(end).next().unwrap_or_default())
        .collect()
}

#[test]
fn bench_repeat_reports_every_run_and_their_spread() {
    let out = tempfile::tempdir().expect("tempdir");
    let o = bench(
        &own_bin_dir(),
        out.path(),
        &["--workers", "1", "--only", "epoll", "--repeat", "2"],
    );
    assert!(o.status.success(), "{o:?}");
    let json = std::fs::read_to_string(out.path().join("bench.json")).expect("bench.json");
    let runs = json_values(&json, "\"rps_runs\":[", ']');
    assert_eq!(runs.len(), 2, "one epoll row per placement:\n{json}");
    for r in runs {
        let n: Vec<f64> = r.split(',').map(|v| v.parse().expect("a number")).collect();
        assert_eq!(n.len(), 2, "both runs of the row: {r}");
        assert!(n.iter().all(|&v| v > 0.0), "{r}");
    }
    let md = std::fs::read_to_string(out.path().join("bench.md")).expect("bench.md");
    assert!(md.contains("| req/s | ± | p50 |"), "{md}");
    let row = md
        .lines()
        .find(|l| l.starts_with("| cpu0 | echo | 1* | echo-epoll |"))
        .unwrap_or_else(|| panic!("no epoll row in\n{md}"));
    let spread = row.split(" | ").nth(5).unwrap_or_default();
    assert!(
        spread.starts_with('±') && spread.ends_with('%'),
        "{spread:?} in {row}"
    );
    // The load generator's run-queue wait: a share of its time, where the kernel keeps it.
    let kept = std::path::Path::new("/proc/thread-self/schedstat").exists();
    let waits = json_values(&json, "\"client_wait\":", ',');
    assert_eq!(waits.len(), 2, "{json}");
    for (i, w) in waits.iter().enumerate() {
        if kept {
            let share: f64 = w.parse().unwrap_or_else(|_| panic!("a share: {w:?}"));
            assert!((0.0..=1.0).contains(&share), "{share}");
            // The first row is cpu0's: the client shares its one CPU with the server.
            assert!(
                i != 0 || share > 0.0,
                "the cpu0 client never waited: {json}"
            );
        } else {
            assert_eq!(*w, "null");
        }
    }
    let wait = row.split(" | ").nth(11).unwrap_or_default();
    assert!(
        wait.ends_with('%') || (!kept && wait == "-"),
        "client wait {wait:?} in {row}"
    );
}

/// The new dimensions in one tiny run: P × W, connect-per-request rows with the epoll
/// reference, `--idle`, p99.9, 16 KiB lines and `--json` (zmaster rows when it is built).
#[test]
fn bench_procs_connect_rows_idle_and_json() {
    let bin_dir = own_bin_dir();
    let zmaster = ["zmaster", "echo-aio"]
        .iter()
        .all(|b| bin_dir.join(b).is_file());
    if !zmaster {
        eprintln!(
            "zmaster or echo-aio not built in {}: peers only",
            bin_dir.display()
        );
    }
    let out = tempfile::tempdir().expect("tempdir");
    let o = bench(
        &bin_dir,
        out.path(),
        &[
            "--procs",
            "1,2",
            "--workers",
            "1",
            "--connect-per-request",
            "--connect-conns",
            "3",
            "--idle",
            "50",
            "--size",
            "16k",
            "--only",
            "aio,tokio,epoll",
            "--json",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let header = stdout.lines().nth(1).unwrap_or_default();
    for col in ["load", "P×W", "p99.9", "idle KiB/conn", "÷epoll"] {
        assert!(header.contains(col), "{col} not in {header:?}");
    }
    let md = std::fs::read_to_string(out.path().join("bench.md")).expect("bench.md");
    let mut needles = vec![
        "| cpu0 | echo | 1* | echo-epoll |",
        "| cpu0 | connect | 1* | echo-epoll |",
        "| unpinned | echo | 2 | echo-tokio |",
        "| unpinned | connect | 1 | echo-tokio |",
        "16384 B lines",
    ];
    if zmaster {
        needles.extend([
            "| cpu0 | echo | 2×1 | zmaster+echo-aio | ",
            "| unpinned | connect | 1×1 | zmaster+echo-aio | ",
        ]);
    }
    for needle in needles {
        assert!(md.contains(needle), "{needle} missing in\n{md}");
    }
    let json = stdout.lines().last().unwrap_or_default();
    let file = std::fs::read_to_string(out.path().join("bench.json")).expect("bench.json");
    assert_eq!(file.trim_end(), json, "--json prints what bench.json holds");
    // Per placement: aio 1×1 and 2×1, tokio 1 and 2, epoll; echo and connect rows.
    let ran = if zmaster { 20 } else { 12 };
    assert_eq!(json.matches("\"placement\":").count(), 20, "{json}");
    assert_eq!(
        json.matches("\"error\":null,\"rps\":").count(),
        ran,
        "{json}"
    );
    assert_eq!(
        json.matches("\"errors\":0,").count(),
        ran,
        "16 KiB lines echo: {json}"
    );
    assert_eq!(json.matches("\"p999\":").count(), ran, "{json}");
    // --idle runs on every echo row that ran (not the connect rows), and all 50 opened.
    assert_eq!(
        json.matches("\"idle\":{\"wanted\":50,\"opened\":50,")
            .count(),
        ran / 2,
        "{json}"
    );
    assert_eq!(
        json.matches("\"idle\":null").count(),
        20 - ran / 2,
        "{json}"
    );
    for row in json.split("{\"placement\":").skip(1) {
        if row.contains("\"load\":\"connect\"") {
            assert!(
                row.contains("\"idle\":null"),
                "no idle on connect rows: {row}"
            );
        }
    }
}
