//! Hang detection in the aio pool (`server-hang-timeout`): a handler stuck in a busy loop is
//! reported by its worker's thread name once the timeout passes; idle workers never are,
//! and the report ends when the handler returns.

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use util::{CLIENT_TIMEOUT, Client, MAX_LINE, tcp_listener};
use zmaster_pool::{Conn, Handler, Pool};

const TIMEOUT: Duration = Duration::from_millis(50);

/// Polls `f` until it returns `Some`, failing the test after [`CLIENT_TIMEOUT`].
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < CLIENT_TIMEOUT, "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_stuck_handler_is_reported_by_thread_name_idle_workers_are_not() {
    let spin = Arc::new(AtomicBool::new(true));
    let (tx, rx) = mpsc::channel::<String>();
    let handler: Handler = {
        let spin = Arc::clone(&spin);
        Arc::new(move |c: &mut Conn| {
            let (spin, tx) = (Arc::clone(&spin), tx.clone());
            c.read_line(MAX_LINE, move |c, r| match r {
                Ok(Some(line)) if line == b"spin" => {
                    let me = std::thread::current().name().unwrap_or("?").to_string();
                    let _ = tx.send(me);
                    // The stuck handler: never returns to the worker's loop until released.
                    while spin.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                    c.write(b"done\n");
                    c.close();
                }
                _ => c.close(),
            });
        })
    };
    let (l, addr) = tcp_listener();
    let pool = Pool::start(2, vec![(l, handler)]).expect("start");

    // Idle for well past the timeout: nobody is reported.
    let idle_from = Instant::now();
    while Instant::now() < idle_from + 4 * TIMEOUT {
        std::thread::sleep(TIMEOUT);
    }
    assert_eq!(pool.stalled(TIMEOUT), vec![], "idle workers");

    let mut client = Client::tcp(addr);
    client.send(b"spin\n");
    let stuck = rx.recv_timeout(CLIENT_TIMEOUT).expect("handler started");
    assert!(stuck.starts_with("zm-worker-"), "{stuck}");
    let stalls = eventually("the stuck worker is reported", || {
        let s = pool.stalled(TIMEOUT);
        (!s.is_empty()).then_some(s)
    });
    assert_eq!(stalls.len(), 1, "only the stuck worker: {stalls:?}");
    assert_eq!(stalls[0].thread_name, stuck);
    assert_eq!(stalls[0].coroutine, None, "aio mode has no coroutines");
    assert!(stalls[0].busy_for > TIMEOUT, "{:?}", stalls[0]);
    assert!(
        pool.stalled(CLIENT_TIMEOUT * 100).is_empty(),
        "not past a long timeout"
    );

    // The other worker still serves (and is not reported).
    let mut other = Client::tcp(addr);
    other.send(b"hello\n");
    assert_eq!(other.recv_line(), None, "served: closed on a non-spin line");
    assert_eq!(pool.stalled(TIMEOUT).len(), 1);

    spin.store(false, Ordering::Relaxed);
    assert_eq!(client.recv_line().expect("done"), b"done");
    eventually("the report ends once the handler returned", || {
        pool.stalled(TIMEOUT).is_empty().then_some(())
    });
    pool.shutdown();
}
