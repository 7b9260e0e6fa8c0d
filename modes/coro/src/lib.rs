//! zmaster-coro, the coroutine engine: an M:N scheduler of stackful coroutines with
//! coroutine-aware I/O (used as `zmaster_modes::coroutine`, which adds LIB-ZC serving).
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
//! use zmaster_coro::{self as coroutine, net, Config, Scheduler};
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
//! # Layers
//!
//! Imports point only down (checked over the `use` lines and `super::` paths; no file imports
//! one of a layer above it, and no two files import each other):
//!
//! 0. **Leaves** — `overflow` (unsafe: the SIGSEGV/SIGBUS guard-page report, guard-slot
//!    table, signal stack, page size), `stack` (pooled guard-paged stacks; uses `overflow`
//!    for the page size), `runq` (ready queue, stealing, placement), `timer`, `state` (the
//!    task state machine).
//! 1. **Worker context** — `context`: the thread-locals naming the worker on this thread and
//!    its ready queue, `WorkerShared` (inbox, epoll handle `Poller`, counters) and `Shared`
//!    (injector, stealers, sleepers); `Fresh`, a coroutine not started yet.
//! 2. **Task** — `task` (+ `state`): the task handle a waker holds, wakers of coroutines and
//!    plain threads, the clean-up guard held across a park, panic containment.
//! 3. **Stack switcher** — `sys` (unsafe: the current-coroutine pointer): `suspend` with a
//!    `Reason`, and the suspension points on it, `park` and `current_waker`.
//! 4. **Reactor** — `reactor` (readiness, waiters, the per-worker source table) and
//!    `reactor::source` (the socket wrapper's "try, park on would-block" loop).
//! 5. **Worker loop and scheduler** — `coros` (a worker's started coroutines: slab, start,
//!    the resume loop), `worker` (the thread loop), `sched` (`Scheduler`, `Handle`, `go`,
//!    `sleep`, `yield_now`), `blocking` (`spawn_blocking`).
//! 6. **Net and sync** — `net` (TCP and unix sockets, the accept loop), `sync` (`chan`,
//!    `Mutex`).
//!
//! On top, this file only declares the layers and re-exports their public items; LIB-ZC
//! serving on a scheduler (`server_main`, the hooks) is `zmaster_modes::coroutine`'s.
//!
//! See `docs/coroutine.md` for the model and its hazards.
#![deny(unsafe_code)]
#![warn(missing_docs)]

// Layer 0: leaves.
#[allow(unsafe_code)]
mod overflow;
mod runq;
mod stack;
mod state;
mod timer;
// Layer 1: worker context.
mod context;
// Layer 2: task.
mod task;
// Layer 3: stack switcher.
#[allow(unsafe_code)]
mod sys;
// Layer 4: reactor.
mod reactor;
// Layer 5: worker loop and scheduler.
mod blocking;
mod coros;
mod sched;
mod worker;
// Layer 6: net and sync.
pub mod net;
pub mod sync;

pub use blocking::spawn_blocking;
pub use sched::{
    Config, Handle, Scheduler, current_id, go, go_with_stack, in_coroutine, sleep, yield_now,
};
pub use stack::{DEFAULT_STACK_SIZE, MAX_STACK_SIZE};
/// A hung scheduler thread ([`Scheduler::stalled`]); the aio pool's type.
pub use zmaster_pool::Stall;
