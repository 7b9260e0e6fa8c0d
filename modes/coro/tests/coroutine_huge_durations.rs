//! Timeouts too large to add to `Instant::now()` (`Duration::MAX`, `u64::MAX` seconds) mean
//! "wait forever": `sleep`, `recv_timeout` and `send_timeout` park instead of panicking.

mod util;

use util::sched;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use zmaster_coro::{self as coroutine, sync::chan};

/// Coroutine stack size of this file's schedulers (0: the default).
const STACK: usize = 0;

const WAIT: Duration = Duration::from_secs(20);
const HUGE: [Duration; 2] = [Duration::MAX, Duration::from_secs(u64::MAX)];

#[test]
fn recv_timeout_with_a_huge_duration_waits_for_the_message() {
    let s = sched(1, STACK);
    for huge in HUGE {
        let (tx, rx) = chan::unbounded::<u32>();
        let (done, got) = mpsc::channel();
        s.handle()
            .go(move || done.send(rx.recv_timeout(huge)).unwrap());
        tx.send(5).unwrap();
        assert_eq!(got.recv_timeout(WAIT), Ok(Ok(5)), "{huge:?}");
        // And from a plain thread.
        let (tx, rx) = chan::unbounded::<u32>();
        tx.send(6).unwrap();
        assert_eq!(rx.recv_timeout(huge), Ok(6));
    }
}

#[test]
fn send_timeout_with_a_huge_duration_waits_for_room() {
    let s = sched(1, STACK);
    for huge in HUGE {
        let (tx, rx) = chan::bounded::<u32>(1);
        tx.send(1).unwrap();
        let (done, sent) = mpsc::channel();
        let tx2 = tx.clone();
        s.handle()
            .go(move || done.send(tx2.send_timeout(2, huge).is_ok()).unwrap());
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(sent.recv_timeout(WAIT), Ok(true), "{huge:?}");
        assert_eq!(rx.recv(), Ok(2));
        assert!(tx.send_timeout(3, huge).is_ok(), "plain thread, room left");
    }
}

/// Sets its flag when dropped (the coroutine holding it ended or unwound).
struct Flag(Arc<AtomicBool>);

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn sleep_with_a_huge_duration_sleeps_on() {
    let s = sched(1, STACK);
    for huge in HUGE {
        let ended = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (flag, tx2) = (Flag(ended.clone()), tx.clone());
        s.handle().go(move || {
            let _flag = flag;
            tx2.send("sleeping").unwrap();
            coroutine::sleep(huge);
        });
        assert_eq!(rx.recv_timeout(WAIT), Ok("sleeping"));
        // One worker: this runs only once the sleeper parked (or ended).
        let seen = ended.clone();
        s.handle().go(move || {
            let msg = if seen.load(Ordering::SeqCst) {
                "ended"
            } else {
                "asleep"
            };
            tx.send(msg).unwrap();
        });
        assert_eq!(rx.recv_timeout(WAIT), Ok("asleep"), "{huge:?}");
    }
}
