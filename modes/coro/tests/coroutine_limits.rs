//! Lifecycle machinery of the coroutine engine: the accept loop's connection limit
//! (`server-max-connections`, with the gate's `accepted_total` / `idle_since`), and hang
//! detection (`Scheduler::stalled` names the thread and the coroutine that does not yield).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use zmaster_coro::net::{ConnGate, TcpListener, accept_loop_limited};
use zmaster_coro::{Config, Scheduler, current_id};

const WAIT: Duration = Duration::from_secs(20);
/// How long a client over the limit is watched for an (unexpected) answer.
const QUIET: Duration = Duration::from_millis(400);

fn sched(threads: usize) -> Scheduler {
    Scheduler::start(Config {
        threads,
        stack_size: 0,
        ..Config::default()
    })
    .expect("scheduler")
}

/// A line echo; the line `exit` ends the connection.
fn echo(c: zmaster_coro::net::TcpStream) {
    let mut r = BufReader::new(&c);
    let mut line = String::new();
    while r.read_line(&mut line).unwrap_or(0) > 0 && line != "exit\n" {
        if (&c).write_all(line.as_bytes()).is_err() {
            return;
        }
        line.clear();
    }
}

struct Client(BufReader<TcpStream>);

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        Client(BufReader::new(s))
    }
    fn send(&mut self, b: &[u8]) {
        self.0.get_mut().write_all(b).expect("send");
    }
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.0.read_line(&mut l).expect("recv");
        l
    }
    fn roundtrip(&mut self, msg: &str) -> String {
        self.send(format!("{msg}\n").as_bytes());
        self.line()
    }
    /// Nothing arrives within [`QUIET`].
    fn assert_quiet(&mut self) {
        let s = self.0.get_mut();
        s.set_read_timeout(Some(QUIET)).expect("timeout");
        let err = s.read(&mut [0u8; 16]).expect_err("no echo over the limit");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err}"
        );
        s.set_read_timeout(Some(WAIT)).expect("timeout");
    }
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn accept_loop_holds_the_limit_and_resumes_on_a_close() {
    let s = sched(2);
    let l = Arc::new(TcpListener::bind("127.0.0.1:0").expect("bind"));
    let addr = l.local_addr().expect("addr");
    let gate = ConnGate::new(Some(2));
    let (l2, g2) = (Arc::clone(&l), Arc::clone(&gate));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    s.handle().go(move || {
        accept_loop_limited(&*l2, Arc::new(echo), &g2);
        let _ = done_tx.send(());
    });
    assert!(gate.idle_since().is_some());

    let mut a = Client::connect(addr);
    assert_eq!(a.roundtrip("a"), "a\n");
    let mut b = Client::connect(addr);
    assert_eq!(b.roundtrip("b"), "b\n");
    assert_eq!((gate.active(), gate.accepted_total()), (2, 2));
    assert_eq!(gate.idle_since(), None);

    let mut c = Client::connect(addr);
    c.send(b"c\n");
    c.assert_quiet();
    assert_eq!(
        (gate.active(), gate.accepted_total()),
        (2, 2),
        "not accepted"
    );

    a.send(b"exit\n");
    assert_eq!(c.line(), "c\n", "accepted once a closed");
    assert_eq!(gate.accepted_total(), 3);
    assert_eq!(gate.active(), 2);

    // At the limit again (b, c): a stop is noticed at the next close.
    let mut d = Client::connect(addr);
    d.send(b"d\n");
    d.assert_quiet();
    l.stop();
    b.send(b"exit\n");
    done_rx
        .recv_timeout(WAIT)
        .expect("the loop ended after stop + close");
    assert_eq!(gate.accepted_total(), 3, "d was never accepted");
    c.send(b"exit\n");
    eventually("all closed", || gate.active() == 0);
    let idle = gate.idle_since().expect("idle");
    assert!(idle >= gate.last_accept().expect("accepted"));
    s.shutdown();
}

#[test]
fn a_coroutine_that_does_not_yield_is_reported_with_its_thread_and_id() {
    let timeout = Duration::from_millis(50);
    let s = sched(2);
    // Idle for well past the timeout: nobody is reported.
    let from = Instant::now();
    while Instant::now() < from + 4 * timeout {
        std::thread::sleep(timeout);
    }
    assert_eq!(s.stalled(timeout), vec![], "idle workers");

    let spin = Arc::new(AtomicBool::new(true));
    let (tx, rx) = mpsc::channel::<(String, u64)>();
    let flag = Arc::clone(&spin);
    s.handle().go(move || {
        let me = std::thread::current().name().unwrap_or("?").to_string();
        let _ = tx.send((me, current_id().expect("in a coroutine")));
        while flag.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
    });
    let (thread, id) = rx.recv_timeout(WAIT).expect("started");
    assert!(thread.starts_with("zm-coro-"), "{thread}");
    let mut stalls = Vec::new();
    eventually("the stuck worker is reported", || {
        stalls = s.stalled(timeout);
        !stalls.is_empty()
    });
    assert_eq!(stalls.len(), 1, "only the stuck worker: {stalls:?}");
    assert_eq!(stalls[0].thread_name, thread);
    assert_eq!(stalls[0].coroutine, Some(id));
    assert!(stalls[0].busy_for > timeout);
    assert_eq!(
        s.handle().stalled(timeout).len(),
        1,
        "the handle sees it too"
    );

    // The other worker still runs coroutines and is not reported.
    let (tx2, rx2) = mpsc::channel::<()>();
    s.handle().go(move || {
        let _ = tx2.send(());
    });
    rx2.recv_timeout(WAIT).expect("another coroutine ran");
    assert_eq!(s.stalled(timeout).len(), 1);

    spin.store(false, Ordering::Relaxed);
    eventually("the report ends once it returned", || {
        s.stalled(timeout).is_empty()
    });
    s.shutdown();
}
