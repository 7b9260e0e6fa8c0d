//! `Conn::spawn_cpu`: heavy work on rayon does not stall the worker's other connections or
//! the acceptor; results come back on the connection's worker; a panicking job closes only
//! its connection.

mod util;

use std::io;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use util::{Client, MAX_LINE, tcp_listener};
use zmaster_pool::{Conn, Handler, Pool};

/// `heavy` waits (on rayon) for the test to open the gate, then answers `heavy done`;
/// `hash N` computes N rounds of a mixing function on rayon; `boom` panics on rayon;
/// anything else is echoed.
fn handler(gate: Arc<Mutex<mpsc::Receiver<()>>>) -> Handler {
    Arc::new(move |c: &mut Conn| serve(c, Arc::clone(&gate)))
}

fn serve(c: &mut Conn, gate: Arc<Mutex<mpsc::Receiver<()>>>) {
    c.read_line(MAX_LINE, move |c, r| {
        let Ok(Some(line)) = r else {
            c.close();
            return;
        };
        let worker = c.worker_index();
        match line.as_slice() {
            b"heavy" => {
                let g = Arc::clone(&gate);
                c.spawn_cpu(
                    move || {
                        let rx = g.lock().expect("gate lock");
                        rx.recv_timeout(Duration::from_secs(30)).is_ok()
                    },
                    move |c, opened| {
                        assert_eq!(c.worker_index(), worker, "continuation on the same worker");
                        c.write(format!("heavy done {opened}\n").as_bytes());
                    },
                );
            }
            l if l.starts_with(b"hash ") => {
                let n: u64 = String::from_utf8_lossy(&l[5..]).parse().unwrap_or(0);
                c.spawn_cpu(
                    move || {
                        (0..n).fold(1u64, |h, i| h.rotate_left(5) ^ i.wrapping_mul(0x9e37_79b9))
                    },
                    |c, h| c.write(format!("hash {h:x}\n").as_bytes()),
                );
            }
            b"boom" => c.spawn_cpu(
                || -> u8 { panic!("job panic requested by the test") },
                |_, _| {},
            ),
            other => c.write(&[other, b"\n"].concat()),
        }
        serve(c, gate);
    });
}

#[test]
fn heavy_job_does_not_stall_other_connections_or_the_acceptor() {
    let (l, addr) = tcp_listener();
    let (open_gate, gate) = mpsc::channel();
    let pool = Pool::start(1, vec![(l, handler(Arc::new(Mutex::new(gate))))]).expect("start");
    let mut heavy = Client::tcp(addr);
    heavy.send(b"heavy\n");
    // While the job is blocked (the gate is closed), the single worker keeps serving another
    // connection, a new connection is accepted and served, and the heavy connection itself
    // still answers cheap requests.
    let mut cheap = Client::tcp(addr);
    for i in 0..200 {
        let msg = format!("cheap {i}");
        assert_eq!(cheap.roundtrip(msg.as_bytes()), msg.as_bytes());
    }
    assert_eq!(Client::tcp(addr).roundtrip(b"newcomer"), b"newcomer");
    assert_eq!(heavy.roundtrip(b"meanwhile"), b"meanwhile");
    open_gate.send(()).expect("open gate");
    assert_eq!(heavy.recv_line().expect("heavy reply"), b"heavy done true");
    // A real computation round trip.
    let reply = cheap.roundtrip(b"hash 5000000");
    assert!(
        reply.starts_with(b"hash "),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    pool.shutdown();
}

#[test]
fn many_jobs_in_flight_complete_in_order_per_connection_request() {
    let (l, addr) = tcp_listener();
    let (_open, gate) = mpsc::channel();
    let pool = Pool::start(2, vec![(l, handler(Arc::new(Mutex::new(gate))))]).expect("start");
    let mut clients: Vec<_> = (0..20).map(|_| Client::tcp(addr)).collect();
    for round in 0..5 {
        for c in clients.iter_mut() {
            c.send(format!("hash {}\n", 1000 * (round + 1)).as_bytes());
        }
        for c in clients.iter_mut() {
            let reply = c.recv_line().expect("reply");
            assert!(reply.starts_with(b"hash "));
        }
    }
    pool.shutdown();
}

#[test]
fn panicking_job_closes_its_connection_only() -> io::Result<()> {
    let (l, addr) = tcp_listener();
    let (_open, gate) = mpsc::channel();
    let pool = Pool::start(1, vec![(l, handler(Arc::new(Mutex::new(gate))))])?;
    let mut other = Client::tcp(addr);
    assert_eq!(other.roundtrip(b"a"), b"a");
    let mut c = Client::tcp(addr);
    c.send(b"boom\n");
    assert_eq!(c.recv_line(), None);
    assert_eq!(other.roundtrip(b"b"), b"b");
    pool.shutdown();
    Ok(())
}
