//! New coroutines are placed on the less loaded worker: connections accepted by one accept
//! loop end up spread over both workers (a started coroutine never moves, so this matters).

mod util;

use util::sched;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use zmaster_coro::net::TcpListener;
use zmaster_coro::{self as coroutine};

const CONNS: usize = 40;
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn connections_of_one_accept_loop_spread_over_workers() {
    let s = sched(2, 32 * 1024);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    s.handle().go(move || {
        for _ in 0..CONNS {
            let Ok((c, _)) = l.accept() else { return };
            let tx = tx.clone();
            coroutine::go(move || {
                let name = std::thread::current().name().unwrap_or("?").to_string();
                let _ = tx.send(name);
                // Stay alive (and loaded) until the client closes.
                let mut b = [0u8; 16];
                while let Ok(n) = (&c).read(&mut b) {
                    if n == 0 || (&c).write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let clients: Vec<_> = (0..CONNS)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let mut per_thread: HashMap<String, usize> = HashMap::new();
    for _ in 0..CONNS {
        let name = rx.recv_timeout(WAIT).expect("connection coroutine started");
        *per_thread.entry(name).or_default() += 1;
    }
    if zmaster_pool::spin::one_cpu() {
        // One CPU: new coroutines are not placed (docs/coroutine.md, Placement).
        eprintln!("one usable CPU: placement is off, spread not checked: {per_thread:?}");
        drop(clients);
        return;
    }
    assert_eq!(
        per_thread.len(),
        2,
        "both workers run connections: {per_thread:?}"
    );
    assert!(
        per_thread.values().all(|&n| n >= CONNS / 2 - 5),
        "even spread: {per_thread:?}"
    );
    drop(clients);
}
