//! `procs::freeze_and_count_tcp`, which chaos uses to bound what a kill may fail: it counts
//! exactly the connections a stopped server accepted, not those still in its listen queue.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use zmaster_stress::bench::wait_ready;
use zmaster_stress::procs::{self, ChildGuard};
use zmaster_testkit::free_port;

fn echoed(s: &TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    (&*s).write_all(b"hi\n").expect("write");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("echo");
    assert_eq!(line, "hi\n");
}

#[test]
fn counts_the_accepted_connections_of_a_stopped_child() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_echo-epoll"))
        .args([format!("127.0.0.1:{port}").as_str(), "--threads", "2"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn echo-epoll");
    let mut g = ChildGuard::new(child, "echo-epoll");
    wait_ready(
        ([127, 0, 0, 1], port).into(),
        &mut g,
        Duration::from_secs(10),
    )
    .expect("ready");
    let me = std::process::id() as i32;
    let conns: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    conns.iter().for_each(echoed);
    let n = procs::freeze_and_count_tcp(me, g.pid(), port).expect("count");
    assert_eq!(n, 3, "three accepted connections");
    assert_eq!(
        procs::stat_of(g.pid()).map(|s| s.1),
        Some('T'),
        "left stopped"
    );
    // A connection made while it is stopped waits in the listen queue: not the child's yet.
    let late = TcpStream::connect(("127.0.0.1", port)).expect("connect while stopped");
    assert_eq!(
        procs::freeze_and_count_tcp(me, g.pid(), port).expect("count"),
        3
    );
    assert_eq!(
        procs::freeze_and_count_tcp(me, g.pid(), port ^ 1).expect("count"),
        0
    );
    procs::signal(g.pid(), Signal::SIGCONT).expect("SIGCONT");
    echoed(&late);
    assert_eq!(
        procs::freeze_and_count_tcp(me, g.pid(), port).expect("count"),
        4
    );
    // Only a child of the given parent is ever stopped.
    assert!(procs::freeze_and_count_tcp(me + 1, g.pid(), port).is_err());
    procs::signal(g.pid(), Signal::SIGCONT).expect("SIGCONT");
    assert!(g.stop(Duration::from_secs(10)).is_some());
}
