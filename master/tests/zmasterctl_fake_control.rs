//! zmasterctl's status / reload / scale / stop output and exit codes against a fake master: the
//! test holds the pid-file lock itself and answers on a control socket with canned replies.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use zmaster::PidFile;
use zmaster::control::{
    ChildState, ChildStatus, ControlServer, LastExit, MasterStatus, Reply, Request, ServiceState,
    ServiceStatus, Status, StopMode, status_table,
};

const CTL: &str = env!("CARGO_BIN_EXE_zmasterctl");

fn canned_status() -> Status {
    Status {
        master: MasterStatus {
            pid: std::process::id(),
            uptime_s: 3725.0,
            generation: 6,
            config_dir: "/etc/zmaster".into(),
        },
        services: vec![
            ServiceStatus {
                name: "smtpd".into(),
                state: ServiceState::Running,
                proc_count: 2,
                restarts: 1,
                backoff_ms: 0,
                last_exit: Some(LastExit {
                    pid: 4100,
                    reason: "killed by SIGKILL".into(),
                    lived_s: 620.0,
                    ago_s: 42.0,
                }),
                children: vec![
                    ChildStatus {
                        pid: 4101,
                        generation: 6,
                        uptime_s: 42.0,
                        state: ChildState::Serving,
                    },
                    ChildStatus {
                        pid: 4102,
                        generation: 5,
                        uptime_s: 900.0,
                        state: ChildState::Draining,
                    },
                ],
            },
            ServiceStatus {
                name: "crashy".into(),
                state: ServiceState::Backoff,
                proc_count: 1,
                restarts: 9,
                backoff_ms: 6400,
                last_exit: Some(LastExit {
                    pid: 4200,
                    reason: "exit status 1".into(),
                    lived_s: 0.02,
                    ago_s: 1.5,
                }),
                children: vec![],
            },
        ],
    }
}

/// A fake master: holds `m.pid`'s lock, serves `m.pid.ctl`, answers with `answer`, records
/// requests, and lets the lock go when it answers a stop.
struct Fake {
    dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Fake {
    fn new(answer: impl Fn(&Request) -> Reply + Send + 'static) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let mut lock = PidFile::acquire(&dir.path().join("m.pid")).unwrap();
        lock.write_pid().unwrap();
        let server = ControlServer::bind(&dir.path().join("m.pid.ctl")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop2, requests2) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let (mut server, mut lock) = (server, Some(lock));
            while !stop2.load(Ordering::Relaxed) {
                let mut fds = [PollFd::new(server.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(20u8));
                let mut stopping = false;
                server.handle_ready(Instant::now(), |request, _| {
                    stopping |= matches!(request, Request::Stop { .. });
                    let reply = answer(&request);
                    requests2.lock().unwrap().push(request);
                    Some(reply)
                });
                if stopping {
                    lock = None;
                }
            }
            drop(lock);
        });
        Fake {
            dir,
            stop,
            thread: Some(thread),
            requests,
        }
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("m.pid")
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        run(&self.pid_file(), args)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(pid_file: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out: Output = Command::new(CTL)
        .arg("-pid-file")
        .arg(pid_file)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn status_prints_the_table_and_json() {
    let fake = Fake::new(|_| Reply::status(canned_status()));
    let (code, out, err) = fake.run(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, status_table(&canned_status()));
    for needle in [
        "up 1h02m, generation 6",
        "smtpd    running  2/2    1         -        pid 4100",
        "pid 4100 killed by SIGKILL after 10m20s, 42s ago",
        "  pid 4102  gen 5  up 15m00s  draining",
        "crashy   backoff  0/1    9         6.4s     pid 4200 exit status 1 after 20ms, 1.5s ago",
    ] {
        assert!(out.contains(needle), "{needle:?} in\n{out}");
    }
    let (code, out, err) = fake.run(&["status", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let last = out.lines().last().unwrap();
    let parsed: Status = serde_json::from_str(last).unwrap();
    assert_eq!(parsed, canned_status());
    let value: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(
        value["services"][0]["last_exit"]["reason"],
        "killed by SIGKILL"
    );
    assert_eq!(value["services"][1]["children"], serde_json::json!([]));
    assert_eq!(fake.requests.lock().unwrap().len(), 2);
}

#[test]
fn reload_reports_the_generation_or_the_error() {
    let fake = Fake::new(|_| Reply::reloaded(7));
    let (code, out, err) = fake.run(&["reload"]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "reload ok: generation 7\n"),
        "{err}"
    );
    assert_eq!(*fake.requests.lock().unwrap(), [Request::Reload]);

    let fake = Fake::new(|_| Reply::error("/etc/z/smtpd.cf:3: bad value for server-proc-count"));
    let (code, out, err) = fake.run(&["reload"]);
    assert_eq!(code, Some(1));
    assert_eq!(out, "");
    assert_eq!(
        err,
        "zmasterctl: reload failed: /etc/z/smtpd.cf:3: bad value for server-proc-count\n"
    );
}

#[test]
fn scale_sends_the_service_and_count() {
    let fake = Fake::new(|r| match r {
        Request::Scale { service, .. } if service == "smtpd" => Reply::ok(),
        _ => Reply::error("no service \"nope\""),
    });
    let (code, out, err) = fake.run(&["scale", "smtpd", "4"]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "scale smtpd: 4 processes\n"),
        "{err}"
    );
    let (code, _, err) = fake.run(&["scale", "nope", "1"]);
    assert_eq!(code, Some(1));
    assert_eq!(err, "zmasterctl: scale failed: no service \"nope\"\n");
    assert_eq!(
        fake.requests.lock().unwrap()[0],
        Request::Scale {
            service: "smtpd".into(),
            n: 4
        }
    );
}

#[test]
fn stop_asks_for_the_mode_and_waits_for_the_lock() {
    let fake = Fake::new(|_| Reply::ok());
    let (code, out, err) = fake.run(&["stop", "--fast"]);
    assert_eq!((code, out.as_str()), (Some(0), "stopped\n"), "{err}");
    assert_eq!(
        *fake.requests.lock().unwrap(),
        [Request::Stop {
            mode: StopMode::Fast
        }]
    );
    let fake = Fake::new(|_| Reply::ok());
    assert_eq!(fake.run(&["stop"]).0, Some(0));
    assert_eq!(
        *fake.requests.lock().unwrap(),
        [Request::Stop {
            mode: StopMode::Graceful
        }]
    );
    // A refused stop is reported, and the master is left as it is.
    let fake = Fake::new(|_| Reply::error("already stopping"));
    let (code, _, err) = fake.run(&["stop"]);
    assert_eq!(code, Some(1));
    assert_eq!(err, "zmasterctl: stop refused: already stopping\n");
}

#[test]
fn a_garbage_reply_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("m.pid");
    let _lock = PidFile::acquire(&pid_file).unwrap();
    let listener = UnixListener::bind(dir.path().join("m.pid.ctl")).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut request = String::new();
        BufReader::new(&s).read_line(&mut request).unwrap();
        assert_eq!(request, "{\"cmd\":\"status\"}\n");
        s.write_all(b"this is not json\n").unwrap();
    });
    let (code, _, err) = run(&pid_file, &["status"]);
    assert_eq!(code, Some(1));
    assert!(err.starts_with("zmasterctl: control socket "), "{err}");
    assert!(err.contains("bad reply"), "{err}");
    server.join().unwrap();
}
