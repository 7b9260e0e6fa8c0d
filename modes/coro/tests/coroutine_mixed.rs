//! Mixed load: coroutines on 3 workers ping-ponging through channels, a shared coroutine
//! mutex, sleeps, yields, socket round trips and wake-ups from plain threads, all at once.
//! Bounded in count; checks every message arrives exactly once and nothing is left behind.

mod util;

use util::sched;

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use zmaster_coro::net::{TcpListener, TcpStream};
use zmaster_coro::sync::{Mutex, chan};
use zmaster_coro::{self as coroutine};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn everything_at_once() {
    let s = sched(3, 32 * 1024);
    let h = s.handle();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    h.go(move || {
        while let Ok((c, _)) = l.accept() {
            coroutine::go(move || {
                let mut r = BufReader::new(&c);
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    coroutine::yield_now();
                    if (&c).write_all(line.as_bytes()).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });

    let sum = Arc::new(Mutex::new(0u64));
    let sent = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = chan::unbounded::<u64>();
    let (feed_tx, feed_rx) = chan::bounded::<u64>(8);
    let workers = 60u64;
    for w in 0..workers {
        let (sum, done_tx, feed_rx) = (sum.clone(), done_tx.clone(), feed_rx.clone());
        h.go(move || {
            let conn = (w % 3 == 0).then(|| TcpStream::connect(addr).unwrap());
            let mut got = 0;
            while let Ok(v) = feed_rx.recv() {
                match v % 4 {
                    0 => coroutine::yield_now(),
                    1 => coroutine::sleep(Duration::from_micros(v % 200)),
                    2 => {
                        if let Some(c) = &conn {
                            (&*c).write_all(format!("{v}\n").as_bytes()).unwrap();
                            let mut line = String::new();
                            BufReader::new(c).read_line(&mut line).unwrap();
                            assert_eq!(line.trim().parse::<u64>().unwrap(), v);
                        }
                    }
                    _ => {
                        let v2 = coroutine::spawn_blocking(move || v * 2);
                        assert_eq!(v2, v * 2);
                    }
                }
                let mut g = sum.lock();
                *g += v;
                if v % 5 == 0 {
                    coroutine::yield_now(); // hold the lock across a yield now and then
                }
                drop(g);
                got += 1;
            }
            done_tx.send(got).unwrap();
        });
    }
    drop(feed_rx);
    drop(done_tx);
    // Plain threads feed the coroutines (cross-thread wake-ups on the bounded channel).
    let n = 20_000u64;
    let feeders: Vec<_> = (0..2)
        .map(|t| {
            let (feed_tx, sent) = (feed_tx.clone(), sent.clone());
            std::thread::spawn(move || {
                for v in (t..n).step_by(2) {
                    feed_tx.send(v).unwrap();
                    sent.fetch_add(v, Ordering::Relaxed);
                }
            })
        })
        .collect();
    drop(feed_tx);
    for f in feeders {
        f.join().unwrap();
    }
    let deadline = Instant::now() + WAIT;
    let mut total = 0;
    for _ in 0..workers {
        let left = deadline.saturating_duration_since(Instant::now());
        total += done_rx.recv_timeout(left).unwrap();
    }
    assert_eq!(total, n, "every message handled exactly once");
    assert_eq!(*sum.lock(), sent.load(Ordering::Relaxed));
    assert_eq!(*sum.lock(), n * (n - 1) / 2);
    // Only the accept loop and the echo coroutines of connections not yet closed remain.
    while s.live_coroutines() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(s.live_coroutines(), 1);
}
