//! The aio mode: one acceptor thread, `server-thread-count` worker threads, callback-style I/O.
//!
//! Each accepted connection is handed once to the least-loaded worker and stays there: its
//! reads, writes, timeouts and callbacks all run on that worker's event loop (see
//! [`Conn`]). CPU-heavy work goes to rayon with [`Conn::spawn_cpu`] and continues in a
//! callback on the same worker, so neither the worker's other connections nor the acceptor
//! stall.
//!
//! ```no_run
//! use std::io;
//! use zmaster_modes::aio::{self, Conn, Hooks};
//!
//! fn on_line(conn: &mut Conn, line: io::Result<Option<Vec<u8>>>) {
//!     match line {
//!         Ok(Some(line)) if line != b"exit" => {
//!             conn.write(&line);
//!             conn.write(b"\n");
//!             conn.read_line(64 * 1024, on_line);
//!         }
//!         _ => conn.close(),
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let hooks = Hooks::new()
//!         .service_register(|_name, listener, _kind| {
//!             aio::general_register(listener, |conn| conn.read_line(64 * 1024, on_line))
//!         })
//!         .before_softstop(|| log::info!("reload: finishing open connections"));
//!     aio::server_main(std::env::args_os(), hooks)
//! }
//! ```

mod mode;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

pub use zmaster_pool::{Conn, Handler, Listener, ReadResult, Stream};

use crate::runtime::{self, Result};
pub use crate::runtime::{
    Config, ListenerKind, config, detach_from_master, softstop_started, stop_notify,
};

/// The hooks of an aio server: `service_register` receives pool [`Listener`]s.
pub type Hooks = runtime::Hooks<Listener>;

/// Serves `listener` with `callback`: the acceptor thread accepts its connections and runs
/// `callback(conn)` on a worker for each (for a FIFO: once, with the FIFO as the stream).
/// Call it from the `service_register` or `before_service` hook.
///
/// # Errors
/// `ErrorKind::Register` when the server already started serving (registrations are
/// collected until then); the listener is closed.
pub fn general_register(
    listener: Listener,
    callback: impl Fn(&mut Conn) + Send + Sync + 'static,
) -> Result<()> {
    mode::register(listener, Arc::new(callback))
}

/// Runs an aio server: see [`runtime::server_main`] for the life cycle (argv `MASTER` or
/// `alone`, config, hooks, softstop, detach). Pass `std::env::args_os()`.
/// Returns the process exit status (1 after a usage or start-up error).
pub fn server_main<I, S>(args: I, hooks: Hooks) -> ExitCode
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    runtime::server_main(args, hooks, mode::AioMode::new())
}
