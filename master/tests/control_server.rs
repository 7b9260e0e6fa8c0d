//! The control socket server over real unix sockets: good, oversized and garbage requests, a
//! silent client and a client that never reads do not stall others, deferred replies, and the
//! socket file's lifecycle (0600, stale replaced, live refused, removed only if ours).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use zmaster::ErrorKind;
use zmaster::control::{
    ControlServer, MasterStatus, Reply, ReplyToken, Request, ServiceState, ServiceStatus, Status,
};

/// A status with `services` services: big enough to overflow a socket buffer when many.
fn status(services: usize) -> Status {
    Status {
        master: MasterStatus {
            pid: 42,
            uptime_s: 1.0,
            generation: 3,
            config_dir: "/etc/zmaster".into(),
        },
        services: (0..services)
            .map(|i| ServiceStatus {
                name: format!("service-{i:06}"),
                state: ServiceState::Running,
                proc_count: 1,
                restarts: 0,
                backoff_ms: 0,
                last_exit: None,
                children: vec![],
            })
            .collect(),
    }
}

/// A server on its own thread, driven like the supervision loop drives it. `reload` replies
/// are deferred until a `scale` request named "complete" arrives.
struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    requests: Arc<Mutex<Vec<Request>>>,
}

fn serve(path: &Path, timeout: Duration, status_size: usize) -> Running {
    let mut server = ControlServer::bind(path).expect("bind");
    server.set_client_timeout(timeout);
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (stop2, requests2) = (stop.clone(), requests.clone());
    let thread = std::thread::spawn(move || {
        let big = status(status_size);
        let mut pending: Vec<ReplyToken> = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            let mut fds = [PollFd::new(server.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(20u8));
            let mut complete = false;
            server.handle_ready(Instant::now(), |request, token| {
                requests2.lock().unwrap().push(request.clone());
                match request {
                    Request::Status => Some(Reply::status(big.clone())),
                    Request::Reload => {
                        pending.push(token);
                        None
                    }
                    Request::Scale { service, .. } if service == "complete" => {
                        complete = true;
                        Some(Reply::ok())
                    }
                    Request::Scale { service, .. } => {
                        Some(Reply::error(format!("no service {service:?}")))
                    }
                    Request::Stop { .. } => Some(Reply::ok()),
                    Request::Upgrade => Some(Reply::upgraded(43)),
                }
            });
            if complete {
                for token in pending.drain(..) {
                    server.complete(token, Reply::reloaded(4));
                }
            }
        }
    });
    Running {
        stop,
        thread: Some(thread),
        requests,
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends raw bytes, returns the reply line.
fn raw(path: &Path, bytes: &[u8]) -> String {
    let mut s = connect(path);
    s.write_all(bytes).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line
}

fn reply(line: &str) -> Reply {
    serde_json::from_str(line).expect("a JSON reply")
}

#[test]
fn answers_good_oversized_and_garbage_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.ctl");
    let srv = serve(&path, Duration::from_secs(5), 2);
    let r = reply(&raw(&path, b"{\"cmd\":\"status\"}\n"));
    assert!(r.ok);
    assert_eq!(r.status, Some(status(2)));
    // Ended by EOF instead of a newline.
    let mut s = connect(&path);
    s.write_all(br#"{"cmd":"scale","service":"web","n":2}"#)
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert_eq!(
        text,
        "{\"ok\":false,\"error\":\"no service \\\"web\\\"\"}\n"
    );

    let long = vec![b' '; 5000];
    let r = reply(&raw(&path, &long));
    assert!(!r.ok);
    assert!(r.error.unwrap().contains("longer than 4096"));
    let r = reply(&raw(&path, b"hello\n"));
    assert!(r.error.unwrap().starts_with("bad request"));
    let r = reply(&raw(&path, b"{\"cmd\":\"dance\"}\n"));
    assert!(r.error.unwrap().contains("unknown variant `dance`"));
    assert_eq!(
        srv.requests.lock().unwrap().as_slice(),
        &[
            Request::Status,
            Request::Scale {
                service: "web".into(),
                n: 2
            }
        ]
    );
}

#[test]
fn a_silent_client_neither_blocks_others_nor_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.ctl");
    let _srv = serve(&path, Duration::from_millis(300), 1);
    let mut silent = connect(&path);
    silent.write_all(b"{\"cmd\":").unwrap(); // half a request, then nothing
    let r = reply(&raw(&path, b"{\"cmd\":\"status\"}\n"));
    assert!(r.ok);
    // Its deadline passes: the server closes it without a reply.
    let mut rest = Vec::new();
    assert_eq!(silent.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn a_client_that_never_reads_does_not_block_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.ctl");
    // A reply of a few MB: far more than the socket buffers hold.
    let _srv = serve(&path, Duration::from_millis(500), 40_000);
    let mut greedy = connect(&path);
    greedy.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
    let mut other = connect(&path);
    other
        .write_all(b"{\"cmd\":\"stop\",\"mode\":\"fast\"}\n")
        .unwrap();
    let mut line = String::new();
    BufReader::new(other).read_line(&mut line).unwrap();
    assert_eq!(line, "{\"ok\":true}\n");
    // Past its deadline the server gives up on it (hangs up, without our reading a byte):
    // what is left to read is less than the full reply.
    let mut fds = [PollFd::new(greedy.as_fd(), PollFlags::POLLHUP)];
    assert_eq!(poll(&mut fds, PollTimeout::from(10_000u16)).unwrap(), 1);
    let mut got = Vec::new();
    let _ = greedy.read_to_end(&mut got);
    assert!(got.len() < serde_json::to_vec(&status(40_000)).unwrap().len());
}

#[test]
fn deferred_replies_arrive_when_completed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.ctl");
    let srv = serve(&path, Duration::from_millis(200), 1);
    let mut waiting = connect(&path);
    waiting.write_all(b"{\"cmd\":\"reload\"}\n").unwrap();
    let gone = connect(&path);
    (&gone).write_all(b"{\"cmd\":\"reload\"}\n").unwrap();
    // Both are deferred (no deadline while waiting); one hangs up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while srv.requests.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "requests never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(gone);
    std::thread::sleep(Duration::from_millis(400)); // past the client timeout: still waiting
    let r = reply(&raw(
        &path,
        b"{\"cmd\":\"scale\",\"service\":\"complete\",\"n\":0}\n",
    ));
    assert!(r.ok);
    let mut line = String::new();
    BufReader::new(&mut waiting).read_line(&mut line).unwrap();
    assert_eq!(line, "{\"ok\":true,\"generation\":4}\n");
}

#[test]
fn socket_file_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.ctl");
    // A stale socket (nothing listening) is replaced.
    drop(UnixListener::bind(&path).unwrap());
    let server = ControlServer::bind(&path).expect("stale replaced");
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // A live one is refused.
    let err = ControlServer::bind(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyRunning);
    assert!(err.to_string().contains("already in use"), "{err}");
    drop(server);
    assert!(!path.exists(), "removed at drop");

    // Not a socket: refused, left alone.
    std::fs::write(&path, "data").unwrap();
    let err = ControlServer::bind(&path).unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    std::fs::remove_file(&path).unwrap();

    // A successor's socket at the path is not removed by the old server's drop.
    let old = ControlServer::bind(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let successor = UnixListener::bind(&path).unwrap();
    drop(old);
    assert!(path.exists(), "a successor's socket survives");
    drop(successor);
}
