//! The ready-made coroutine accept loop survives descriptor exhaustion (EMFILE): checked in a
//! child process (this binary re-executed) whose RLIMIT_NOFILE is lowered.

mod util;

use util::sched;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use zmaster_coro::net::{TcpListener, accept_loop};

const CHILD_ENV: &str = "ZM_CORO_EMFILE_CHILD";
const WAIT: Duration = Duration::from_secs(30);

/// The child: an echo server with 3 spare descriptors. Does nothing in a normal test run.
#[test]
fn emfile_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let s = sched(1, 0);
    let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    println!("port {}", l.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, open + 3, hard)
        .unwrap();
    let l2 = l.clone();
    s.handle().go(move || {
        accept_loop(
            &*l2,
            Arc::new(|c: zmaster_coro::net::TcpStream| {
                let mut r = BufReader::new(&c);
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    if (&c).write_all(line.as_bytes()).is_err() {
                        return;
                    }
                    line.clear();
                }
            }),
        );
    });
    // Run until the parent closes our stdin.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    l.stop();
    std::process::exit(0);
}

#[test]
fn accept_loop_survives_emfile() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["emfile_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let port: u16 = loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "child exited early");
        // libtest may print "test emfile_child ... " on the same line first.
        if let Some((_, p)) = line.trim().split_once("port ") {
            break p.parse().unwrap();
        }
    };
    let addr = ("127.0.0.1", port);
    // Eight clients, but the server can hold only about three connections at once.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let c = std::net::TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(WAIT)).unwrap();
            c
        })
        .collect();
    let echo = |c: &std::net::TcpStream, msg: &str| {
        (&*c).write_all(msg.as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(c).read_line(&mut line).unwrap();
        assert_eq!(line, msg);
    };
    // Serve them one at a time: each served client hangs up, freeing a descriptor, and the
    // accept loop (backing off on EMFILE meanwhile) picks up the next.
    for (i, c) in clients.into_iter().enumerate() {
        echo(&c, &format!("client {i}\n"));
    }
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
