//! The coroutine mode: an M:N scheduler of stackful coroutines with coroutine-aware I/O.
//!
//! M coroutines run on N worker threads (`zm-coro-0`, `zm-coro-1`, ...). Each coroutine has a
//! guard-paged stack (corosensei `DefaultStack`, pooled per worker); an overflow hits the guard
//! page and the process reports `coroutine stack overflow (coroutine N, stack size S)` on
//! stderr and exits with status 70 — never silent corruption.
//!
//! A coroutine that has started never changes thread: thread-locals and `!Send` values held
//! across a yield stay on the thread that created them. Coroutines not yet started may be
//! taken by any idle worker. Blocking points — [`net`] I/O, [`sleep`], [`yield_now`],
//! [`sync::chan`], [`sync::Mutex`], [`spawn_blocking`] — park the coroutine, not the thread;
//! called from a plain thread they block that thread instead.
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use zmaster_modes::coroutine::{self, net, Config, Scheduler};
//!
//! let sched = Scheduler::start(Config { threads: 2, ..Config::default() }).unwrap();
//! let listener = net::TcpListener::bind("127.0.0.1:0").unwrap();
//! let addr = listener.local_addr().unwrap();
//! sched.handle().go(move || {
//!     while let Ok((conn, _)) = listener.accept() {
//!         coroutine::go(move || {
//!             let mut lines = BufReader::new(&conn);
//!             let mut line = String::new();
//!             while lines.read_line(&mut line).unwrap_or(0) > 0 {
//!                 if (&conn).write_all(line.as_bytes()).is_err() {
//!                     break;
//!                 }
//!                 line.clear();
//!             }
//!         });
//!     }
//! });
//! // A plain thread uses the same types; they block it.
//! let mut c = net::TcpStream::connect(addr).unwrap();
//! c.write_all(b"hello\n").unwrap();
//! let mut reply = String::new();
//! BufReader::new(&c).read_line(&mut reply).unwrap();
//! assert_eq!(reply, "hello\n");
//! sched.shutdown();
//! ```
//!
//! A server is one call: [`serve`] runs `handler(connection)` in a new coroutine for every
//! connection of every listener and drains open connections on softstop. A line echo server:
//!
//! ```no_run
//! use std::io::{BufRead, BufReader, Write};
//! use zmaster_modes::coroutine::{self, Connection};
//!
//! fn echo(conn: Connection) {
//!     let (mut lines, mut line) = (BufReader::new(&conn), String::new());
//!     while lines.read_line(&mut line).unwrap_or(0) > 0
//!         && (&conn).write_all(line.as_bytes()).is_ok()
//!     {
//!         line.clear();
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     coroutine::serve(echo)
//! }
//! ```
//!
//! The hooks of LIB-ZC are there for the rest ([`Hooks`], [`server_main`]): `service_register`
//! sees each listener's service name and kind and returns its [`Registration`]
//! ([`general_register`], [`loop_register`], [`fifo_register`]).
//!
//! The engine is its own crate, `zmaster-coro` (`modes/coro/`, its layers named in its crate
//! notes); this module re-exports it and adds LIB-ZC serving on a scheduler (`server`: the
//! API, `serve`, `Connection`; `serving`: the mode plug).
//!
//! See `docs/coroutine.md` for the model and its hazards.

mod lines;
mod server;
mod serving;

pub use crate::runtime::{ListenerKind, config, detach_from_master, softstop_started, stop_notify};
pub use lines::LineReader;
pub use server::{
    Connection, Fifo, Hooks, Listener, Registration, Service, fifo_register, general_register,
    loop_register, serve_hooks,
};
pub use serving::{serve, server_main};
pub use zmaster_coro::{
    Config, DEFAULT_STACK_SIZE, Handle, MAX_STACK_SIZE, Scheduler, current_id, go, go_with_stack,
    in_coroutine, net, sleep, spawn_blocking, sync, yield_now,
};
