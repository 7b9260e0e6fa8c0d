//! zmaster-pool: the epoll acceptor thread, the worker pool and the callback-style async
//! connection ([`Conn`]) that the aio server mode is built on.
//!
//! - [`Acceptor`] owns the listening sockets (inherited from the master or self-bound), polls
//!   them on a `zm-acceptor` thread and hands every accepted connection to a callback.
//! - [`Workers`] runs N `zm-worker-N` threads, each with its own epoll loop. A connection is
//!   assigned to one worker once ([`Workers::assign`]) and all of its I/O and callbacks stay
//!   there: no per-request cross-thread hand-off.
//! - [`Conn`] offers non-blocking, callback-style operations (read a line / n bytes / what is
//!   there, write, flush, timeouts, close), plus [`Conn::spawn_cpu`] to run heavy work on
//!   rayon and continue on the worker.
//! - [`Pool`] combines an acceptor and workers: what a server needs. [`PoolConfig`] sets a
//!   connection limit ([`ConnGate`]); [`Pool::stalled`] names hung workers ([`LoopTick`]);
//!   [`raise_nofile_limit`] lifts the soft `RLIMIT_NOFILE` at start; a [`Board`] set on the
//!   gate balances new connections between a service's processes.
//!
//! A line echo server (the handler runs on a worker for each accepted connection; each
//! completion callback starts the next operation):
//!
//! ```
//! use std::io::{self, BufRead, BufReader, Write};
//! use std::net::{TcpListener, TcpStream};
//! use std::sync::Arc;
//! use zmaster_pool::{Conn, Listener, Pool};
//!
//! fn on_line(conn: &mut Conn, r: io::Result<Option<Vec<u8>>>) {
//!     match r {
//!         Ok(Some(line)) if line != b"exit" => {
//!             conn.write(&line);
//!             conn.write(b"\n");
//!             conn.read_line(64 * 1024, on_line);
//!         }
//!         _ => conn.close(),
//!     }
//! }
//!
//! # fn main() -> io::Result<()> {
//! let tcp = TcpListener::bind("127.0.0.1:0")?;
//! tcp.set_nonblocking(true)?;
//! let addr = tcp.local_addr()?;
//! let pool = Pool::start(
//!     2,
//!     vec![(Listener::Tcp(tcp), Arc::new(|c: &mut Conn| c.read_line(64 * 1024, on_line)))],
//! )?;
//!
//! let mut client = BufReader::new(TcpStream::connect(addr)?);
//! client.get_mut().write_all(b"hello\n")?;
//! let mut reply = String::new();
//! client.read_line(&mut reply)?;
//! assert_eq!(reply, "hello\n");
//!
//! pool.stop_accepting(); // softstop: new connections go elsewhere...
//! client.get_mut().write_all(b"exit\n")?;
//! pool.wait_idle(None); // ...and open ones finish
//! pool.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! Threading model: the acceptor thread only accepts; a connection's callbacks all run on
//! the worker it was assigned to (so [`Conn`] is not `Send` and callbacks need not be);
//! [`Conn::spawn_cpu`] is the way to run long computations without stalling that worker.
//! [`Pool`], [`Acceptor`], [`Workers`] and [`WorkersHandle`] are `Send + Sync`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod acceptor;
// The shared mapping of the service's board (mmap, munmap, the slots' view): unsafe here only.
#[allow(unsafe_code)]
pub mod board;
mod buffer;
mod conn;
mod gate;
mod listener;
mod pool;
pub mod reactor;
pub mod spin;
mod stall;
mod sys;
mod worker;
mod workers;

pub use acceptor::{AcceptCallback, Acceptor};
pub use board::Board;
pub use conn::InitFn;
pub use conn::{Conn, ReadResult};
pub use gate::{ConnGate, ConnGuard, LimitWaiter};
pub use listener::{Listener, Stream};
pub use pool::{Handler, Pool, PoolConfig};
pub use stall::{LoopTick, Stall, stalled};
pub use sys::raise_nofile_limit;
pub use workers::{Workers, WorkersHandle};
/// The kind of a listener (`Listener::kind`): the master protocol's own type, shared with
/// zmaster-modes and the master so no mapping between copies is needed.
pub use zmaster_core::protocol::ListenerKind;

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_are_send_and_sync() {
        send_sync::<super::Pool>();
        send_sync::<super::Acceptor>();
        send_sync::<super::Workers>();
        send_sync::<super::WorkersHandle>();
        send_sync::<super::Listener>();
        send_sync::<super::ConnGate>();
        send_sync::<super::ConnGuard>();
        send_sync::<super::LoopTick>();
    }
}
