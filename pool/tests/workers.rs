//! `Workers` used directly: connections spread over the workers, and every callback of a
//! connection (reads, flush, defer, spawn_cpu continuation) runs on its one worker thread.

mod util;

use std::io;
use std::net::TcpListener;
use std::thread::ThreadId;
use std::time::Duration;

use util::{Client, MAX_LINE};
use zmaster_pool::{Conn, Stream, Workers};

/// Replies `<worker index> <same thread as before>` to each line, hopping through
/// defer, spawn_cpu and flush in between.
fn on_line(c: &mut Conn, r: io::Result<Option<Vec<u8>>>) {
    if !matches!(r, Ok(Some(_))) {
        c.close();
        return;
    }
    let here = std::thread::current().id();
    let first = *c.user_data::<ThreadId>().unwrap_or(&here);
    c.set_user_data(first);
    c.defer(move |c| {
        let same_defer = std::thread::current().id() == first;
        c.spawn_cpu(
            || std::thread::current().id(),
            move |c, rayon_thread| {
                let same_cpu = std::thread::current().id() == first && rayon_thread != first;
                c.write(
                    format!(
                        "{} {}\n",
                        c.worker_index(),
                        same_defer && same_cpu && here == first
                    )
                    .as_bytes(),
                );
                c.flush(move |c, _| {
                    let same_flush = std::thread::current().id() == first;
                    if same_flush {
                        c.read_line(MAX_LINE, on_line);
                    } else {
                        c.close();
                    }
                });
            },
        );
    });
}

/// Starts two workers on this thread, assigns 10 connections, makes 20 round trips on each
/// and returns the round trips per worker (every callback checked to run on its worker).
fn ten_connections_on_two_workers() -> [usize; 2] {
    let workers = Workers::start(2).expect("start");
    assert_eq!(workers.threads(), 2);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut clients = Vec::new();
    for _ in 0..10 {
        let c = Client::tcp(addr);
        let (s, _) = listener.accept().expect("accept");
        s.set_nonblocking(true).expect("nonblocking");
        workers.assign(Stream::Tcp(s), |c| c.read_line(MAX_LINE, on_line));
        clients.push(c);
    }
    let mut per_worker = [0usize; 2];
    for _ in 0..20 {
        for c in clients.iter_mut() {
            let reply = String::from_utf8(c.roundtrip(b"where")).expect("utf8");
            let (index, same) = reply.split_once(' ').expect("two fields");
            assert_eq!(
                same, "true",
                "every callback on the connection's worker thread"
            );
            per_worker[index.parse::<usize>().expect("index")] += 1;
        }
    }
    assert_eq!(workers.active_connections(), 10);
    drop(clients);
    assert!(workers.wait_idle(None));
    workers.shutdown();
    per_worker
}

/// One CPU: worker 0 serves the connections as one worker would. At least 9 of 10: a
/// connection assigned while worker 0's turn has lasted 10 ms (this CPU shared with other
/// tests) goes to worker 1.
fn assert_served_by_worker_0(per_worker: [usize; 2]) {
    assert_eq!(per_worker[0] + per_worker[1], 200);
    assert!(
        per_worker[0] >= 180,
        "one CPU: worker 0 serves: {per_worker:?}"
    );
}

#[test]
fn connections_spread_and_stay_on_their_worker() {
    let per_worker = ten_connections_on_two_workers();
    if zmaster_pool::spin::one_cpu() {
        assert_served_by_worker_0(per_worker);
    } else {
        // Least loaded, an awake worker winning within one: 5/5, or 6/4 when a worker was
        // still awake from the previous connection.
        let (a, b) = (per_worker[0] / 20, per_worker[1] / 20);
        assert_eq!(a + b, 10, "{per_worker:?}");
        assert!(
            a.abs_diff(b) <= 2,
            "spread over both workers: {per_worker:?}"
        );
    }
}

#[test]
fn on_one_cpu_worker_0_serves_the_connections() {
    let first = zmaster_testkit::allowed_cpus()[0];
    let per_worker = zmaster_testkit::on_cpus(&[first], || {
        assert!(zmaster_pool::spin::one_cpu());
        ten_connections_on_two_workers()
    });
    assert_served_by_worker_0(per_worker);
}

#[test]
fn assign_after_shutdown_closes_the_stream() {
    let workers = Workers::start(1).expect("start");
    let handle = workers.handle();
    workers.shutdown();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut c = Client::tcp(listener.local_addr().expect("addr"));
    let (s, _) = listener.accept().expect("accept");
    handle.assign(Stream::Tcp(s), |c| c.read_line(MAX_LINE, on_line));
    assert_eq!(handle.active_connections(), 0);
    c.stream()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    assert_eq!(c.recv_line(), None, "stream closed");
}

#[test]
fn zero_workers_is_an_error() {
    let err = Workers::start(0).expect_err("zero workers");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}
