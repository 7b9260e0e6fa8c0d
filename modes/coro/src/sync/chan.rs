//! A multi-producer multi-consumer channel whose blocking operations park the calling
//! coroutine (or block a plain thread), bounded or unbounded.
//!
//! Error types are crossbeam-channel's. While the scheduler shuts down (a parked coroutine is
//! being unwound), operations that would wait report disconnection instead.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub use crossbeam_channel::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

use super::super::sys;
use super::super::task::{OnUnwind, Waker};
use super::WaitQueue;

struct Inner<T> {
    queue: VecDeque<T>,
    cap: Option<usize>,
    senders: usize,
    receivers: usize,
    recv_waiters: WaitQueue,
    send_waiters: WaitQueue,
}

type Chan<T> = Mutex<Inner<T>>;

/// The sending half; clone it for more producers.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

/// The receiving half; clone it for more consumers (each message goes to one of them).
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

/// A channel without capacity limit: `send` never waits.
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    new(None)
}

/// A channel holding at most `cap` messages: `send` waits while it is full. A `cap` of 0 is
/// treated as 1 (there is no rendezvous mode).
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    new(Some(cap.max(1)))
}

fn new<T>(cap: Option<usize>) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Mutex::new(Inner {
        queue: VecDeque::new(),
        cap,
        senders: 1,
        receivers: 1,
        recv_waiters: WaitQueue::new(),
        send_waiters: WaitQueue::new(),
    }));
    (Sender { chan: chan.clone() }, Receiver { chan })
}

fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

impl<T> Sender<T> {
    /// Sends, waiting while a bounded channel is full.
    ///
    /// # Errors
    /// Every receiver is gone; the message is handed back.
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.send_deadline(msg, None).map_err(|e| match e {
            SendTimeoutError::Timeout(m) | SendTimeoutError::Disconnected(m) => SendError(m),
        })
    }

    /// Sends, waiting at most `timeout` for room (a `timeout` too large to add to the current
    /// time, such as `Duration::MAX`, waits without limit).
    ///
    /// # Errors
    /// Timed out, or every receiver is gone.
    pub fn send_timeout(&self, msg: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline(msg, Instant::now().checked_add(timeout))
    }

    /// Sends without waiting.
    ///
    /// # Errors
    /// The channel is full, or every receiver is gone.
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        let mut g = self.chan.lock();
        if g.receivers == 0 {
            return Err(TrySendError::Disconnected(msg));
        }
        if g.cap.is_some_and(|c| g.queue.len() >= c) {
            return Err(TrySendError::Full(msg));
        }
        g.queue.push_back(msg);
        let w = g.recv_waiters.pop();
        drop(g);
        wake(w);
        Ok(())
    }

    fn send_deadline(&self, msg: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        let mut me: Option<Waker> = None;
        loop {
            let mut g = self.chan.lock();
            if g.receivers == 0 {
                if let Some(w) = &me {
                    g.send_waiters.remove(w);
                }
                return Err(SendTimeoutError::Disconnected(msg));
            }
            if g.cap.is_none_or(|c| g.queue.len() < c) {
                g.queue.push_back(msg);
                if let Some(w) = &me {
                    g.send_waiters.remove(w);
                }
                let w = g.recv_waiters.pop();
                drop(g);
                wake(w);
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                if let Some(w) = &me {
                    g.send_waiters.remove(w);
                }
                return Err(SendTimeoutError::Timeout(msg));
            }
            let w = me.get_or_insert_with(sys::current_waker);
            g.send_waiters.push(w);
            drop(g);
            let unwind = OnUnwind::new(|| self.forget_sender(w));
            let parked = sys::park(deadline);
            unwind.disarm();
            if !parked {
                if let Some(w) = &me {
                    self.forget_sender(w);
                }
                return Err(SendTimeoutError::Disconnected(msg));
            }
        }
    }

    /// A sender giving up (unwound at teardown): off the queue, and if a receiver's wake-up
    /// for free room was already handed to it, on to the next sender.
    fn forget_sender(&self, w: &Waker) {
        let mut g = self.chan.lock();
        let room = g.cap.is_none_or(|c| g.queue.len() < c);
        let next = g.send_waiters.give_up(w, room);
        drop(g);
        wake(next);
    }

    /// Messages waiting in the channel.
    pub fn len(&self) -> usize {
        self.chan.lock().queue.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Receiver<T> {
    /// Receives, waiting until a message arrives.
    ///
    /// # Errors
    /// The channel is empty and every sender is gone.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_deadline(None).map_err(|_| RecvError)
    }

    /// Receives, waiting at most `timeout` (a `timeout` too large to add to the current time,
    /// such as `Duration::MAX`, waits without limit).
    ///
    /// # Errors
    /// Timed out, or the channel is empty and every sender is gone.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(Instant::now().checked_add(timeout))
    }

    /// Receives without waiting.
    ///
    /// # Errors
    /// Empty, or empty and every sender is gone.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut g = self.chan.lock();
        match g.queue.pop_front() {
            Some(m) => {
                let w = g.send_waiters.pop();
                drop(g);
                wake(w);
                Ok(m)
            }
            None if g.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    fn recv_deadline(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let mut me: Option<Waker> = None;
        loop {
            let mut g = self.chan.lock();
            if let Some(m) = g.queue.pop_front() {
                if let Some(w) = &me {
                    g.recv_waiters.remove(w);
                }
                let w = g.send_waiters.pop();
                drop(g);
                wake(w);
                return Ok(m);
            }
            let err = if g.senders == 0 {
                Some(RecvTimeoutError::Disconnected)
            } else if deadline.is_some_and(|d| Instant::now() >= d) {
                Some(RecvTimeoutError::Timeout)
            } else {
                None
            };
            if let Some(err) = err {
                if let Some(w) = &me {
                    g.recv_waiters.remove(w);
                }
                return Err(err);
            }
            let w = me.get_or_insert_with(sys::current_waker);
            g.recv_waiters.push(w);
            drop(g);
            let unwind = OnUnwind::new(|| self.forget_receiver(w));
            let parked = sys::park(deadline);
            unwind.disarm();
            if !parked {
                if let Some(w) = &me {
                    self.forget_receiver(w);
                }
                return Err(RecvTimeoutError::Disconnected);
            }
        }
    }

    /// A blocking iterator ending when every sender is gone.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }

    /// A receiver giving up (unwound at teardown): off the queue, and if a sender's wake-up
    /// for a queued message was already handed to it, on to the next receiver.
    fn forget_receiver(&self, w: &Waker) {
        let mut g = self.chan.lock();
        let queued = !g.queue.is_empty();
        let next = g.recv_waiters.give_up(w, queued);
        drop(g);
        wake(next);
    }

    /// Messages waiting in the channel.
    pub fn len(&self) -> usize {
        self.chan.lock().queue.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.chan.lock().senders += 1;
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Receiver<T> {
        self.chan.lock().receivers += 1;
        Receiver {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut g = self.chan.lock();
        g.senders -= 1;
        if g.senders == 0 {
            let all = g.recv_waiters.take_all();
            drop(g);
            all.iter().for_each(Waker::wake);
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut g = self.chan.lock();
        g.receivers -= 1;
        if g.receivers == 0 {
            let all = g.send_waiters.take_all();
            drop(g);
            all.iter().for_each(Waker::wake);
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sender { .. }")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Receiver { .. }")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Instant;

    use super::super::super::{Config, Scheduler};
    use super::*;

    const WAIT: Duration = Duration::from_secs(20);

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let end = Instant::now() + WAIT;
        while !cond() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::yield_now();
        }
    }

    fn sched() -> Scheduler {
        Scheduler::start(Config {
            threads: 1,
            stack_size: 0,
            ..Config::default()
        })
        .unwrap()
    }

    fn thread_queued(q: &WaitQueue) -> bool {
        q.q.iter().any(|w| matches!(w, Waker::Thread(_)))
    }

    #[test]
    fn receiver_unwound_at_shutdown_does_not_take_the_message_wake() {
        let (tx, rx) = unbounded::<u32>();
        let s = sched();
        let rx2 = rx.clone();
        s.handle().go(move || {
            let _ = rx2.recv();
        });
        wait_for("the coroutine to wait", || {
            rx.chan.lock().recv_waiters.len() == 1
        });
        s.shutdown();
        assert_eq!(
            rx.chan.lock().recv_waiters.len(),
            0,
            "unwound waiter removed"
        );
        let (done, got) = mpsc::channel();
        let rx3 = rx.clone();
        std::thread::spawn(move || done.send(rx3.recv()).unwrap());
        wait_for("the thread to wait", || {
            thread_queued(&rx.chan.lock().recv_waiters)
        });
        tx.send(7).unwrap();
        assert_eq!(got.recv_timeout(WAIT), Ok(Ok(7)), "the thread was woken");
    }

    #[test]
    fn sender_unwound_at_shutdown_does_not_take_the_room_wake() {
        let (tx, rx) = bounded::<u32>(1);
        tx.send(1).unwrap();
        let s = sched();
        let tx2 = tx.clone();
        s.handle().go(move || {
            let _ = tx2.send(2);
        });
        wait_for("the coroutine to wait", || {
            tx.chan.lock().send_waiters.len() == 1
        });
        s.shutdown();
        assert_eq!(
            tx.chan.lock().send_waiters.len(),
            0,
            "unwound waiter removed"
        );
        let (done, sent) = mpsc::channel();
        let tx3 = tx.clone();
        std::thread::spawn(move || done.send(tx3.send(3).is_ok()).unwrap());
        wait_for("the thread to wait", || {
            thread_queued(&tx.chan.lock().send_waiters)
        });
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(sent.recv_timeout(WAIT), Ok(true), "the thread was woken");
        assert_eq!(rx.recv(), Ok(3));
    }
}
