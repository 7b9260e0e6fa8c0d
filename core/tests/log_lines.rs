//! Log records of concurrent processes sharing one stderr pipe arrive as whole lines.
//!
//! The test re-runs its own binary as several child processes (selected by an environment
//! variable): each installs the stderr logger and logs many long records from several threads
//! into one shared pipe. A record written in pieces interleaves with the other processes'
//! records; one `write(2)` per record (at most `PIPE_BUF` bytes) cannot.

use std::io::Read;
use std::process::{Command, Stdio};

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

fn child() {
    logging::init(&LogTarget::Stderr, "logchild", LevelFilter::Info).unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..RECORDS {
                    log::info!("rec t={t} i={i} {} end", filler(t, i));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
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
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    let (mut reader, writer) = std::io::pipe().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args([TEST_NAME, "--exact", "--test-threads=1"])
                .env(CHILD_ENV, "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(writer.try_clone().unwrap())
                .spawn()
                .unwrap()
        })
        .collect();
    drop(writer);
    let mut output = String::new();
    reader.read_to_string(&mut output).unwrap();
    let pids: Vec<u32> = children.iter().map(std::process::Child::id).collect();
    for child in &mut children {
        assert!(child.wait().unwrap().success());
    }
    let mut per_pid = vec![0usize; PROCESSES];
    let mut torn = Vec::new();
    for line in output.lines() {
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
