//! A listener shared by several server processes (`server-proc-count`) wakes every acceptor
//! blocked on it, not one (`EPOLLEXCLUSIVE`): the one woken may be unable to accept (stopping
//! after a reload, paused after `EMFILE`) and the kernel would wake nobody else for that
//! connection, which then waited in the backlog for the next one.
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
fn a_connection_wakes_every_waiting_acceptor() {
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
                // was not (exclusive wake-ups) sees nothing until its timeout.
                let n = reactor
                    .wait(&mut events, Some(Duration::from_millis(1500)))
                    .expect("wait");
                woke_tx.send(n).expect("send");
            });
        }
        let tids: Vec<i32> = (0..2).map(|_| tid_rx.recv().expect("tid")).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !tids.iter().all(|&t| in_epoll_wait(t)) {
            if Instant::now() >= deadline {
                // Where wchan is hidden (it reads "0"), blocking cannot be seen: connect
                // anyway (the assertion below still holds, it only proves less).
                eprintln!("/proc/self/task/TID/wchan never showed do_epoll_wait");
                break;
            }
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
            [1, 1],
            "both acceptors woken and reporting the listener"
        );
    });
}
