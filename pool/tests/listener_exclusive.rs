//! A listener shared by several server processes (`server-proc-count`) is registered with
//! `EPOLLEXCLUSIVE`: a connection wakes one of the acceptors blocked on it, not all of them
//! (issue 15: the others woke for nothing, twice the context switches per connection).
//!
//! Two reactors in one process stand for two processes: the kernel's wait queue of the
//! listener is the same either way.

use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::epoll::EpollEvent;
use zmaster_pool::reactor::{Reactor, Waker};

/// Whether thread `tid` of this process is blocked in `epoll_wait`.
fn in_epoll_wait(tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/wchan"))
        .is_ok_and(|w| w.trim() == "do_epoll_wait")
}

#[test]
fn a_connection_wakes_one_of_two_waiting_acceptors() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let (tid_tx, tid_rx) = mpsc::channel();
    let (woke_tx, woke_rx) = mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (listener, tid_tx, woke_tx) = (&listener, tid_tx.clone(), woke_tx.clone());
            s.spawn(move || {
                let waker = Waker::new().expect("waker");
                let reactor = Reactor::new(&waker).expect("reactor");
                reactor.add_level(listener, 1).expect("add listener");
                tid_tx
                    .send(nix::unistd::gettid().as_raw())
                    .expect("send tid");
                let mut events = vec![EpollEvent::empty(); 4];
                // Nobody accepts: a reactor that was woken reports the listener; one that
                // was not sees nothing until its timeout (it cannot pass for woken).
                let n = reactor
                    .wait(&mut events, Some(Duration::from_millis(1500)))
                    .expect("wait");
                woke_tx.send(n).expect("send");
            });
        }
        let tids: Vec<i32> = (0..2).map(|_| tid_rx.recv().expect("tid")).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !tids.iter().all(|&t| in_epoll_wait(t)) {
            assert!(
                Instant::now() < deadline,
                "the threads never blocked in epoll_wait"
            );
            std::thread::yield_now();
        }
        let _client = TcpStream::connect(addr).expect("connect");
        let mut woke: Vec<usize> = (0..2)
            .map(|_| {
                woke_rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("wait returned")
            })
            .collect();
        woke.sort_unstable();
        assert_eq!(
            woke,
            [0, 1],
            "one acceptor woken and reporting the listener, one left asleep"
        );
    });
}
