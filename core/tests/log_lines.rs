//! Log records of concurrent processes sharing one stderr pipe arrive as whole lines.
//!
//! The test re-runs its own binary as several child processes (selected by an environment
//! variable): each installs the stderr logger and logs many long records from several threads
//! into one shared pipe. A record written in pieces interleaves with the other processes'
//! records; one `write(2)` per record (at most `PIPE_BUF` bytes) cannot.

use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::process::{Child, Command, Stdio};

use log::LevelFilter;
use zmaster_core::logging::{self, LogTarget};

const CHILD_ENV: &str = "ZMASTER_CORE_LOG_LINES_CHILD";
const PROCESSES: usize = 4;
const THREADS: usize = 3;
const RECORDS: usize = 150;
const TEST_NAME: &str = "records_of_concurrent_processes_are_whole_lines";

/// The filler of record `i` of thread `t`: 1 to 3 KB of one letter, so a torn line shows.
fn filler(t: usize, i: usize) -> String {
    let letter = char::from(b'a' + ((t * 7 + i) % 26) as u8);
    letter
        .to_string()
        .repeat(1_000 + (i * 397 + t * 131) % 2_000)
}

fn child(mode: &str) {
    let target = match mode {
        "stdout" | "stdout-order" => LogTarget::Stdout,
        "syslog" => LogTarget::Syslog {
            facility: "user".into(),
            ident: None,
        },
        _ => LogTarget::Stderr,
    };
    logging::init(&target, "logchild", LevelFilter::Info).unwrap();
    if mode == "syslog" {
        log::info!("after the fallback");
        return;
    }
    if mode == "stdout-order" {
        print!("printed before ");
        log::info!("the record");
        return;
    }
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..RECORDS {
                    log::debug!("filtered out t={t} i={i}");
                    log::info!("rec t={t} i={i} {} end", filler(t, i));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    // Exit before libtest prints `ok` and its summary: it writes them in several pieces, and
    // another child's record landing between two pieces would look like a torn line.
    std::process::exit(0);
}

fn spawn_child(mode: &str, stdout: Stdio, stderr: Stdio) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// A line of a child's stdout without libtest's own text: `running 1 test`, `test NAME ... `
/// (written before the test runs, so the first record follows it on its line), `ok` and the
/// summary. `None` when nothing else is left.
fn without_libtest(line: &str) -> Option<&str> {
    let line = line
        .strip_prefix(&format!("test {TEST_NAME} ... "))
        .unwrap_or(line);
    let libtest = line.is_empty()
        || line == "ok"
        || line.starts_with("running ")
        || line.starts_with("test result: ");
    (!libtest).then_some(line)
}

/// Checks one line: `TIMESTAMP logchild[PID]: info: rec t=T i=I FILLER end`; returns the pid.
fn check_line(line: &str) -> Result<u32, String> {
    let bad = |why: &str| format!("{why}: {:?}", line.get(..200).unwrap_or(line));
    let (_, rest) = line
        .split_once(" logchild[")
        .ok_or_else(|| bad("no ident"))?;
    let (pid, rest) = rest
        .split_once("]: info: rec ")
        .ok_or_else(|| bad("no level"))?;
    let pid: u32 = pid.parse().map_err(|_| bad("bad pid"))?;
    let mut words = rest.split(' ');
    let mut number = |prefix: &str| -> Result<usize, String> {
        words
            .next()
            .and_then(|w| w.strip_prefix(prefix))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad(&format!("no {prefix}")))
    };
    let (t, i) = (number("t=")?, number("i=")?);
    if words.next() != Some(filler(t, i).as_str()) || words.next() != Some("end") {
        return Err(bad("torn record"));
    }
    if words.next().is_some() {
        return Err(bad("two records on one line"));
    }
    Ok(pid)
}

#[test]
fn records_of_concurrent_processes_are_whole_lines() {
    if let Some(mode) = std::env::var_os(CHILD_ENV) {
        child(mode.to_str().unwrap());
        return;
    }
    // Half the children log to stderr, half to stdout, all into one pipe.
    let (mut reader, writer) = std::io::pipe().unwrap();
    let mut children: Vec<Child> = (0..PROCESSES)
        .map(|n| {
            let pipe = || Stdio::from(writer.try_clone().unwrap());
            if n % 2 == 0 {
                spawn_child("stderr", Stdio::null(), pipe())
            } else {
                spawn_child("stdout", pipe(), pipe())
            }
        })
        .collect();
    drop(writer);
    let mut output = String::new();
    reader.read_to_string(&mut output).unwrap();
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    for child in &mut children {
        assert!(child.wait().unwrap().success());
    }
    let mut per_pid = vec![0usize; PROCESSES];
    let mut torn = Vec::new();
    for line in output.lines().filter_map(without_libtest) {
        match check_line(line) {
            Ok(pid) => match pids.iter().position(|p| *p == pid) {
                Some(n) => per_pid[n] += 1,
                None => torn.push(format!("unknown pid {pid}")),
            },
            Err(why) => torn.push(why),
        }
    }
    assert!(
        torn.is_empty(),
        "{} bad lines of {}, first: {}",
        torn.len(),
        output.lines().count(),
        torn[0]
    );
    assert_eq!(per_pid, [THREADS * RECORDS; PROCESSES]);
}

#[test]
fn stdout_records_come_after_what_print_left_buffered() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, "stdout-order")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find(|l| l.contains("logchild["))
        .unwrap_or_else(|| panic!("no record: {stdout}"));
    // Without --nocapture libtest would capture the print!.
    assert!(line.contains("printed before 20"), "{stdout}");
    assert!(line.ends_with("]: info: the record"), "{stdout}");
}

#[test]
fn unreachable_syslog_falls_back_to_stderr_with_a_warning() {
    let system_has_syslog = ["/dev/log", "/var/run/syslog", "/var/run/log"]
        .iter()
        .any(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket()));
    if system_has_syslog {
        eprintln!("a syslog socket exists here: the fallback cannot be exercised");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--test-threads=1"])
        .env(CHILD_ENV, "syslog")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].contains(" logchild[") && lines[0].contains("]: warning: syslog unavailable ("),
        "{stderr}"
    );
    assert!(
        lines[1].ends_with("]: info: after the fallback"),
        "{stderr}"
    );
}
