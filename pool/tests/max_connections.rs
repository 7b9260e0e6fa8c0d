//! `server-max-connections` in the aio acceptor: at the limit the listeners are not polled
//! (a further client is connected by the kernel but gets no answer), the acceptor does not
//! spin, and a close lets the next waiting client in at once. Also the lifecycle counters
//! (`accepted_total`, `idle_since`).
//!
//! One test only in this binary: it measures the CPU time of the (single) `zm-acceptor`
//! thread of the process.

mod util;

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::{Client, echo, tcp_listener, unix_listener};
use zmaster_pool::{Pool, PoolConfig};

/// How long a client over the limit is watched for an (unexpected) answer.
const QUIET: Duration = Duration::from_millis(400);

/// User + system CPU time of this process's thread named `name`, in clock ticks.
fn thread_ticks(name: &str) -> u64 {
    let mut found = None;
    for task in std::fs::read_dir("/proc/self/task")
        .expect("task dir")
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            assert!(found.is_none(), "one {name} thread only");
            let stat = std::fs::read_to_string(task.path().join("stat")).expect("stat");
            let rest = &stat[stat.rfind(')').expect("comm end") + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            found =
                Some(f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime"));
        }
    }
    found.unwrap_or_else(|| panic!("no {name} thread"))
}

/// Asserts that nothing arrives on `s` within [`QUIET`] (its connection waits in the
/// backlog), then restores the blocking read timeout.
fn assert_no_answer(s: &mut TcpStream) {
    s.set_read_timeout(Some(QUIET)).expect("timeout");
    let err = s
        .read(&mut [0u8; 64])
        .expect_err("no echo while over the limit");
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    s.set_read_timeout(Some(util::CLIENT_TIMEOUT))
        .expect("timeout");
}

#[test]
fn a_client_over_the_limit_waits_in_the_backlog_until_one_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.sock");
    let (tcp, addr) = tcp_listener();
    let started = Instant::now();
    let pool = Pool::start_with(
        2,
        vec![(tcp, echo()), (unix_listener(&path), echo())],
        PoolConfig::default().with_max_connections(Some(2)),
    )
    .expect("start");
    assert_eq!(pool.max_connections(), Some(2));
    assert_eq!(pool.accepted_total(), 0);
    assert!(pool.idle_since().expect("idle") + Duration::from_millis(1) >= started);

    let mut a = Client::tcp(addr);
    assert_eq!(a.roundtrip(b"a"), b"a");
    let mut b = Client::unix(&path);
    assert_eq!(b.roundtrip(b"b"), b"b");
    assert_eq!((pool.active_connections(), pool.accepted_total()), (2, 2));
    assert_eq!(pool.idle_since(), None);

    // Over the limit, on both listeners: the kernel completes the handshakes, nobody here
    // accepts.
    let mut c = Client::tcp(addr);
    c.send(b"c\n");
    let mut d = Client::unix(&path);
    d.send(b"d\n");
    let cpu_before = thread_ticks("zm-acceptor");
    assert_no_answer(c.stream());
    assert_eq!((pool.active_connections(), pool.accepted_total()), (2, 2));
    // 400 ms at the limit with two readable listeners: a spinning acceptor would burn
    // ~40 ticks; a paused one none (generous bound).
    let spent = thread_ticks("zm-acceptor") - cpu_before;
    assert!(spent <= 5, "acceptor used {spent} ticks while paused");

    // One closes: exactly one waiting client gets in (the other listener's stays queued).
    a.send(b"exit\n");
    assert_eq!(a.recv_line(), None);
    let got_c = {
        // Whichever listener is reported first; wait for that echo.
        let start = Instant::now();
        loop {
            assert!(
                start.elapsed() < util::CLIENT_TIMEOUT,
                "nobody accepted after a close"
            );
            if pool.accepted_total() == 3 {
                break;
            }
            std::thread::yield_now();
        }
        c.stream().set_read_timeout(Some(QUIET)).expect("timeout");
        let mut buf = [0u8; 2];
        let r = c.stream().read(&mut buf);
        c.stream()
            .set_read_timeout(Some(util::CLIENT_TIMEOUT))
            .expect("timeout");
        match r {
            Ok(2) => {
                assert_eq!(&buf, b"c\n");
                true
            }
            Ok(n) => panic!("short echo {n}"),
            Err(_) => {
                assert_eq!(d.recv_line().expect("d echoed"), b"d");
                false
            }
        }
    };
    assert_eq!((pool.active_connections(), pool.accepted_total()), (2, 3));

    // The next close lets the other one in.
    b.send(b"exit\n");
    assert_eq!(b.recv_line(), None);
    if got_c {
        assert_eq!(d.recv_line().expect("d echoed after b closed"), b"d");
    } else {
        let mut buf = [0u8; 2];
        c.stream()
            .read_exact(&mut buf)
            .expect("c echoed after b closed");
        assert_eq!(&buf, b"c\n");
    }
    assert_eq!((pool.active_connections(), pool.accepted_total()), (2, 4));

    // Below the limit again: a new client is served at once.
    drop(c);
    let mut e = Client::tcp(addr);
    assert_eq!(e.roundtrip(b"e"), b"e");
    assert_eq!(pool.accepted_total(), 5);

    drop((d, e));
    assert!(
        pool.wait_idle(Some(Instant::now() + util::CLIENT_TIMEOUT)),
        "drained"
    );
    let idle = pool.idle_since().expect("idle once all closed");
    assert!(idle >= pool.last_accept().expect("accepted"));
    pool.shutdown();
}
