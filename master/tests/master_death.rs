//! Children do not outlive a SIGKILLed master, and DETACH hands a child off.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use nix::sys::signal::Signal;
use util::*;

#[test]
fn killing_the_master_takes_every_child_down() {
    let s = Setup::new();
    s.probe_service("probe", &format!("127.0.0.1:{}", free_port()), 3, "");
    let mut master = s.start_master(&[]);
    let kids = master.wait_children(3);
    master.signal(Signal::SIGKILL);
    assert_eq!(master.wait_exit(Duration::from_secs(5)), None);
    wait_for(Duration::from_secs(5), "every child to exit", || {
        kids.iter().all(|k| !is_alive(*k)).then_some(())
    });
}

#[test]
fn a_detached_child_is_replaced_and_keeps_its_connection() {
    let s = Setup::new();
    let port = free_port();
    s.probe_service("probe", &format!("127.0.0.1:{port}"), 1, "");
    let master = s.start_master(&[]);
    let first = master.wait_children(1)[0];
    let mut conn = wait_for(Duration::from_secs(5), "a connection", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"DETACH\n").unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(reply_pid(&line), first);
    let kids = master.wait_children(2);
    assert!(kids.contains(&first));
    wait_for(Duration::from_secs(5), "the detach log line", || {
        master
            .log_text()
            .contains(&format!("pid={first} detached"))
            .then_some(())
    });
    conn.write_all(b"still there\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), format!("PID {first} still there"));
}
