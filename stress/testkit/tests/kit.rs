//! The testkit's own checks: fd staging reaches the child at 3, 4, ..., guards kill on drop.

use std::io::Read;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use zmaster_testkit::{
    ChildGuard, LineClient, PATIENCE, cloexec_pipe, is_alive, stage_fds, wait_until,
};

#[test]
fn staged_fds_arrive_at_3_and_4_in_order() {
    let (r3, w3) = cloexec_pipe();
    let (r4, w4) = cloexec_pipe();
    let mut command = Command::new("sh");
    command
        .args(["-c", "echo three >&3; echo four >&4"])
        .stdin(Stdio::null());
    stage_fds(&mut command, &[w3.as_fd(), w4.as_fd()]);
    let mut guard = ChildGuard::new(command.spawn().expect("spawn sh"));
    drop((w3, w4));
    assert!(guard.wait_exit().success());
    let read = |fd: std::os::fd::OwnedFd| {
        let mut text = String::new();
        std::fs::File::from(fd)
            .read_to_string(&mut text)
            .expect("read");
        text
    };
    assert_eq!(read(r3), "three\n");
    assert_eq!(read(r4), "four\n");
}

#[test]
fn a_guard_kills_its_child_on_drop() {
    let guard = ChildGuard::new(Command::new("sleep").arg("60").spawn().expect("spawn"));
    let pid = guard.pid() as i32;
    assert!(is_alive(pid));
    drop(guard);
    wait_until(PATIENCE, "the guarded child to die", || !is_alive(pid));
}

#[test]
fn line_client_sees_echo_and_close() {
    // Port 0: a port picked by free_port() can be taken by a parallel test before the bind.
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).expect("read");
        std::io::Write::write_all(&mut s, &buf[..n]).expect("write");
    });
    let mut client = LineClient::connect(addr);
    client.expect_echo("hello");
    server.join().expect("server thread");
    client.expect_closed();
}
