//! The acceptor's cost per wake-up: accepting connections that arrive one at a time must not
//! cost extra syscalls besides `epoll_wait` and `accept4` (issue 15: `polling::Poller::wait`
//! added a timerfd arm, two `epoll_ctl` re-arms and an eventfd `read` to every wake-up).
//!
//! Measured with the acceptor thread's own read-syscall counter (`syscr` in
//! `/proc/self/task/TID/io`, counted by the kernel for every `read`-family call, successful or
//! not): neither `epoll_wait` nor `accept4` is a read, so the counter must stay flat however
//! many connections are accepted.

mod util;

use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use util::tcp_listener;
use zmaster_pool::{AcceptCallback, Acceptor, Stream};

/// The tid of this process's thread named `name`, if there is exactly one.
fn thread_named(name: &str) -> Option<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let entry = entry.ok()?;
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    (found.len() == 1).then(|| found.remove(0))
}

/// The `syscr` (read syscalls) counter of thread `tid`; `None` without I/O accounting.
fn read_syscalls(tid: &str) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/self/task/{tid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("syscr:"))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn accepting_one_connection_at_a_time_reads_nothing() {
    const CONNS: u64 = 20;
    let (tcp, addr) = tcp_listener();
    let (tx, rx) = mpsc::channel::<Stream>();
    let cb: AcceptCallback = Box::new(move |s| {
        let _ = tx.send(s);
    });
    let acceptor = Acceptor::spawn(vec![(tcp, cb)]).expect("spawn");
    // One connection accepted first: the thread is running and named.
    let first = TcpStream::connect(addr).expect("connect");
    let mut held = vec![rx.recv_timeout(Duration::from_secs(10)).expect("accepted")];
    let tid = thread_named("zm-acceptor").expect("one zm-acceptor thread");
    let Some(before) = read_syscalls(&tid) else {
        eprintln!("no /proc/self/task/TID/io (no task I/O accounting): skipped");
        return;
    };
    let mut clients = vec![first];
    for _ in 0..CONNS {
        clients.push(TcpStream::connect(addr).expect("connect"));
        // Wait until it is accepted, so each connection is its own wake-up.
        held.push(rx.recv_timeout(Duration::from_secs(10)).expect("accepted"));
    }
    let after = read_syscalls(&tid).expect("syscr readable");
    assert!(
        after - before < CONNS / 4,
        "{} read syscalls on the acceptor thread for {CONNS} wake-ups (want none)",
        after - before
    );
    drop(acceptor);
}
