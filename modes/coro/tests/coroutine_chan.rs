//! Coroutine channels: 10 000 coroutines ping-ponging, bounded back-pressure, timeouts,
//! disconnection and mixing coroutines with plain threads.

mod util;

use util::sched;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use zmaster_coro::sync::chan::{self, RecvTimeoutError, TryRecvError, TrySendError};
use zmaster_coro::{self as coroutine};

/// Coroutine stack size of this file's schedulers (0: the default).
const STACK: usize = 16 * 1024;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn ten_thousand_coroutines_ping_pong() {
    let s = sched(2, STACK);
    let pairs = 5_000;
    let rounds = 10;
    let (done_tx, done_rx) = mpsc::channel();
    for _ in 0..pairs {
        let (ping_tx, ping_rx) = chan::unbounded::<u32>();
        let (pong_tx, pong_rx) = chan::unbounded::<u32>();
        s.handle().go(move || {
            while let Ok(v) = ping_rx.recv() {
                if pong_tx.send(v + 1).is_err() {
                    break;
                }
            }
        });
        let done_tx = done_tx.clone();
        s.handle().go(move || {
            let mut v = 0;
            for _ in 0..rounds {
                ping_tx.send(v).unwrap();
                v = pong_rx.recv().unwrap();
            }
            done_tx.send(v).unwrap();
        });
    }
    for _ in 0..pairs {
        assert_eq!(done_rx.recv_timeout(WAIT).unwrap(), rounds);
    }
    // Every ponger ends when its pinger drops the channel.
    let deadline = Instant::now() + WAIT;
    while s.live_coroutines() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(s.live_coroutines(), 0);
}

#[test]
fn bounded_channel_applies_back_pressure() {
    let s = sched(2, STACK);
    let (tx, rx) = chan::bounded::<u32>(4);
    assert!(matches!(tx.try_send(0), Ok(())));
    for i in 1..4 {
        tx.try_send(i).unwrap();
    }
    assert!(matches!(tx.try_send(9), Err(TrySendError::Full(9))));
    let (done_tx, done_rx) = mpsc::channel();
    s.handle().go(move || {
        // Parks while full, until the consumer drains.
        for i in 4..1000 {
            tx.send(i).unwrap();
        }
        done_tx.send(()).unwrap();
    });
    let (got_tx, got_rx) = mpsc::channel();
    s.handle().go(move || {
        let mut got = Vec::new();
        while let Ok(v) = rx.recv() {
            got.push(v);
        }
        got_tx.send(got).unwrap();
    });
    done_rx.recv_timeout(WAIT).unwrap();
    assert_eq!(
        got_rx.recv_timeout(WAIT).unwrap(),
        (0..1000).collect::<Vec<_>>()
    );
}

#[test]
fn recv_timeout_and_disconnect() {
    let s = sched(1, STACK);
    let (out_tx, out_rx) = mpsc::channel();
    let (tx, rx) = chan::unbounded::<u8>();
    s.handle().go(move || {
        let t = Instant::now();
        let r = rx.recv_timeout(Duration::from_millis(20));
        out_tx.send((r, t.elapsed())).unwrap();
        let r = rx.recv_timeout(WAIT);
        out_tx.send((r, Duration::ZERO)).unwrap();
        let r = rx.recv_timeout(WAIT);
        out_tx.send((r, Duration::ZERO)).unwrap();
    });
    let (r, took) = out_rx.recv_timeout(WAIT).unwrap();
    assert_eq!(r, Err(RecvTimeoutError::Timeout));
    assert!(took >= Duration::from_millis(20));
    tx.send(5).unwrap();
    assert_eq!(out_rx.recv_timeout(WAIT).unwrap().0, Ok(5));
    drop(tx);
    assert_eq!(
        out_rx.recv_timeout(WAIT).unwrap().0,
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn plain_threads_and_coroutines_share_channels() {
    let s = sched(2, STACK);
    let (tx, rx) = chan::unbounded::<u32>();
    let (back_tx, back_rx) = chan::bounded::<u32>(1);
    for _ in 0..4 {
        let (rx, back_tx) = (rx.clone(), back_tx.clone());
        s.handle().go(move || {
            while let Ok(v) = rx.recv() {
                back_tx.send(v * 2).unwrap();
            }
        });
    }
    drop(back_tx);
    drop(rx);
    let producer = std::thread::spawn(move || {
        for i in 0..500 {
            tx.send(i).unwrap();
        }
    });
    let mut sum = 0;
    for _ in 0..500 {
        sum += back_rx.recv_timeout(WAIT).unwrap();
    }
    producer.join().unwrap();
    assert_eq!(sum, (0..500).map(|i| i * 2).sum::<u32>());
    // All senders gone once the workers see the producer's sender dropped.
    assert_eq!(
        back_rx.recv_timeout(WAIT),
        Err(RecvTimeoutError::Disconnected)
    );
    assert_eq!(back_rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn many_waiters_on_one_receiver_each_get_one_message() {
    let s = sched(2, STACK);
    let (tx, rx) = chan::unbounded::<u32>();
    let (out_tx, out_rx) = mpsc::channel();
    for _ in 0..100 {
        let (rx, out_tx) = (rx.clone(), out_tx.clone());
        s.handle().go(move || {
            // Some waiters time out first and come back: stale registrations must not eat
            // wake-ups meant for others.
            loop {
                match rx.recv_timeout(Duration::from_millis(3)) {
                    Ok(v) => {
                        out_tx.send(v).unwrap();
                        return;
                    }
                    Err(RecvTimeoutError::Timeout) => coroutine::yield_now(),
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(5));
    for i in 0..100 {
        tx.send(i).unwrap();
    }
    let mut got: Vec<u32> = (0..100)
        .map(|_| out_rx.recv_timeout(WAIT).unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}
