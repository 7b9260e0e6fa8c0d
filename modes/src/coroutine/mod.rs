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
//! See `docs/coroutine.md` for the model and its hazards.

mod blocking;
pub mod net;
mod reactor;
mod runq;
mod sched;
mod server;
mod stack;
mod state;
pub mod sync;
#[allow(unsafe_code)]
mod sys;
mod task;
mod timer;
mod worker;

pub use crate::runtime::{ListenerKind, config, detach_from_master, softstop_started, stop_notify};
pub use blocking::spawn_blocking;
pub use sched::{Config, Handle, Scheduler};
pub use server::{Connection, Hooks, Listener, general_register, loop_register, server_main};
pub use stack::{DEFAULT_STACK_SIZE, MAX_STACK_SIZE};

use std::thread;
use std::time::{Duration, Instant};

use task::{Fresh, Reason};

/// Spawns a coroutine on the scheduler running the caller, with the default stack size.
///
/// # Panics
/// Panics when called outside a coroutine: plain threads spawn with [`Handle::go`].
pub fn go<F: FnOnce() + Send + 'static>(f: F) {
    go_with_stack(0, f);
}

/// Spawns a coroutine with a stack of at least `size` bytes (0: the scheduler default).
///
/// The new coroutine is queued on the caller's worker and may be started there or by an idle
/// worker; the caller continues at once.
///
/// # Panics
/// Panics when called outside a coroutine (plain threads spawn with
/// [`Handle::go_with_stack`]), or when `size` exceeds [`MAX_STACK_SIZE`]; both panic here, in
/// the caller, never on a worker.
pub fn go_with_stack<F: FnOnce() + Send + 'static>(size: usize, f: F) {
    let stack = match size {
        0 => 0,
        s => stack::round_size(s).unwrap_or_else(|| panic!("{}", stack::too_large(s))),
    };
    if !sys::in_coroutine() && sched::on_worker_thread() {
        // A destructor running while the scheduler tears down: nothing can start any more.
        log::debug!("coroutine spawn during scheduler shutdown ignored");
        return;
    }
    assert!(
        sys::in_coroutine(),
        "zmaster_modes::coroutine::go called outside a coroutine; \
         spawn from plain threads with Scheduler::handle().go(..)"
    );
    sys::suspend(Reason::Spawn(Fresh {
        stack,
        f: Box::new(f),
    }));
}

/// Parks the calling coroutine for `d` (at least; timers fire on the worker's next loop); a
/// `d` too large to add to the current time (`Duration::MAX`) parks it forever. Outside a
/// coroutine, sleeps the thread.
pub fn sleep(d: Duration) {
    if !sys::in_coroutine() {
        if !sched::on_worker_thread() {
            thread::sleep(d);
        }
        return;
    }
    let Some(deadline) = Instant::now().checked_add(d) else {
        // Too far to represent: forever (until the scheduler stops and unwinds us).
        while task::park(None) {}
        return;
    };
    while Instant::now() < deadline {
        if !task::park(Some(deadline)) {
            return;
        }
    }
}

/// Lets the other ready coroutines of this worker run, then continues. Outside a coroutine,
/// yields the thread.
pub fn yield_now() {
    if sys::in_coroutine() {
        sys::suspend(Reason::Yield);
    } else {
        thread::yield_now();
    }
}

/// Whether the caller runs inside a coroutine.
pub fn in_coroutine() -> bool {
    sys::in_coroutine()
}

/// The id of the calling coroutine (as in logs and the stack-overflow report).
pub fn current_id() -> Option<u64> {
    sys::with_current(|ctx| ctx.task.id)
}
