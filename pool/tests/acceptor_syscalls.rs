//! The acceptor's syscalls per connection (issue 15): accepting connections that arrive one
//! at a time costs no syscalls besides `epoll_wait` and `accept4` (`polling::Poller::wait`
//! added a timerfd arm, two `epoll_ctl` re-arms and an eventfd `read` to every wake-up), and
//! handing a connection to a worker that is awake costs no eventfd write; and a listener shut
//! down by another holder of its fd (HUP for ever) does not make the acceptor spin.
//!
//! Measured with the acceptor thread's own syscall counters (`syscr`/`syscw` in
//! `/proc/self/task/TID/io`, counted by the kernel for every `read`/`write`-family call,
//! successful or not): neither `epoll_wait` nor `accept4` is one.

mod util;

use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use util::tcp_listener;
use zmaster_pool::{AcceptCallback, Acceptor, Stream};

/// The tests of this file find the acceptor thread by name: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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

/// The state letter of thread `tid` (`S` = sleeping, e.g. in `epoll_wait`).
fn thread_state(tid: &str) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The comm field is in parentheses and may contain spaces: the state follows the last `)`.
    stat.rsplit_once(") ")?.1.chars().next()
}

/// The `syscw` (write syscalls) counter of thread `tid`.
fn write_syscalls(tid: &str) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/self/task/{tid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("syscw:"))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn handing_connections_to_a_busy_worker_writes_no_eventfd() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use zmaster_pool::{Conn, Handler, Pool};

    const MORE: u64 = 5;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (tcp, addr) = tcp_listener();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let started_tx = Mutex::new(started_tx);
    let first = AtomicBool::new(true);
    let echo = util::echo();
    // The first line of the first connection holds the only worker inside its read callback
    // (awake, not in epoll_wait) until released; the worker got there from a readiness
    // event, not from a wake-up. Everything else echoes.
    let handler: Handler = Arc::new(move |c: &mut Conn| {
        if !first.swap(false, Ordering::SeqCst) {
            return echo(c);
        }
        let started = started_tx.lock().expect("lock").clone();
        let release = Arc::clone(&release_rx);
        c.read_line(util::MAX_LINE, move |c, line| {
            let _ = started.send(());
            let _ = release.lock().expect("lock").recv();
            util::on_line(c, line);
        });
    });
    let pool = Pool::start(1, vec![(tcp, handler)]).expect("start");
    // Rebound after `pool`, so dropped before it: a failing assertion releases the worker
    // from the first callback before the pool joins it (else the test hangs, not fails).
    let release_tx = release_tx;
    let mut clients = vec![util::Client::tcp(addr)];
    // Accepted and waiting for its line, the worker asleep in epoll_wait again.
    util::wait_until(
        Duration::from_secs(10),
        "the first connection is served",
        || pool.accepted_total() == 1,
    );
    // A thread names itself when it first runs: on a loaded machine the worker may not have
    // yet, though the acceptor already handed it the connection.
    let mut worker = None;
    util::wait_until(Duration::from_secs(10), "one zm-worker-0 thread", || {
        worker = thread_named("zm-worker-0");
        worker.is_some()
    });
    let worker = worker.expect("found");
    util::wait_until(Duration::from_secs(10), "the worker waits", || {
        thread_state(&worker) == Some('S')
    });
    clients[0].send(b"first\n");
    started_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the first line's callback runs");
    let tid = thread_named("zm-acceptor").expect("one zm-acceptor thread");
    let Some(before) = write_syscalls(&tid) else {
        eprintln!("no /proc/self/task/TID/io (no task I/O accounting): skipped");
        release_tx.send(()).expect("release");
        return;
    };
    for _ in 0..MORE {
        clients.push(util::Client::tcp(addr));
    }
    // All handed over (counted before the hand-off returns) and the acceptor back in
    // epoll_wait: every send and its possible wake-up is done.
    util::wait_until(
        Duration::from_secs(10),
        "the acceptor handed all connections over",
        || pool.accepted_total() == MORE + 1 && thread_state(&tid) == Some('S'),
    );
    let writes = write_syscalls(&tid).expect("syscw readable") - before;
    release_tx.send(()).expect("release");
    assert_eq!(clients[0].recv_line().as_deref(), Some(&b"first"[..]));
    for (i, c) in clients.iter_mut().enumerate() {
        let line = format!("line {i}");
        assert_eq!(
            c.roundtrip(line.as_bytes()),
            line.as_bytes(),
            "connection {i}"
        );
    }
    assert_eq!(
        writes, 0,
        "eventfd writes by the acceptor while the worker was awake in a callback"
    );
    pool.shutdown();
}

/// Jiffies (user + system) thread `tid` ran so far.
fn cpu_ticks(tid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3, utime 14 and stime 15 (1-based) of the whole line.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[test]
fn a_listener_shut_down_elsewhere_does_not_make_the_acceptor_spin() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (tcp, addr) = tcp_listener();
    let zmaster_pool::Listener::Tcp(std_listener) = &tcp else {
        panic!("a TCP listener");
    };
    // Another holder of the same open socket (a sibling process, say) shuts it down: accept
    // fails with EINVAL and epoll reports HUP on it from then on.
    let other = std_listener.try_clone().expect("dup");
    let (tx, rx) = mpsc::channel::<Stream>();
    let cb: AcceptCallback = Box::new(move |s| {
        let _ = tx.send(s);
    });
    let acceptor = Acceptor::spawn(vec![(tcp, cb)]).expect("spawn");
    let _client = TcpStream::connect(addr).expect("connect");
    let _held = rx.recv_timeout(Duration::from_secs(10)).expect("accepted");
    let tid = thread_named("zm-acceptor").expect("one zm-acceptor thread");
    socket2::SockRef::from(&other)
        .shutdown(std::net::Shutdown::Read)
        .expect("shutdown");
    let before = cpu_ticks(&tid).expect("stat");
    let start = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(1)); // a CPU figure over a span, not a sync
    let ran = cpu_ticks(&tid).expect("stat") - before;
    let span = start.elapsed().as_secs_f64() * 100.0;
    // A spinning acceptor uses most of the span (60-100 of ~100 ticks); a paused one ~0.
    assert!(
        (ran as f64) < span / 4.0,
        "the acceptor ran {ran} of {span:.0} ticks after its listener was shut down"
    );
    drop(acceptor);
}
