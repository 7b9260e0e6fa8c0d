//! The aio mode: one acceptor thread, `server-thread-count` worker threads, callback-style I/O.
//!
//! Each accepted connection is handed once to a worker (about the least loaded, preferring an
//! awake one; on one CPU the first awake one, see `docs/servers.md`) and stays there: its
//! reads, writes, timeouts and callbacks all run on that worker's event loop (see
//! [`Conn`]). CPU-heavy work goes to rayon with [`Conn::spawn_cpu`] and continues in a
//! callback on the same worker, so neither the worker's other connections nor the acceptor
//! stall.
//!
//! The common case is one call: [`serve`] runs `handler(conn)` for every connection of every
//! listener and drains open connections on softstop. A line echo server:
//!
//! ```no_run
//! use zmaster_modes::aio::{self, Conn, ReadResult};
//!
//! fn on_line(conn: &mut Conn, line: ReadResult) {
//!     let Ok(Some(line)) = line else { return conn.close() };
//!     conn.write(&line);
//!     conn.write(b"\n");
//!     conn.read_line(64 * 1024, on_line);
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     aio::serve(|conn| conn.read_line(64 * 1024, on_line))
//! }
//! ```
//!
//! The hooks of LIB-ZC are there for the rest: `service_register` sees each listener's service
//! name and kind and returns its [`Registration`] (from [`general_register`]; nothing is
//! registered globally), `before_service` reads the program's own config keys,
//! `before_softstop` runs when a softstop begins (and makes it drain):
//!
//! ```no_run
//! # use zmaster_modes::aio::{self, Conn, Hooks, ListenerKind, ReadResult};
//! # fn on_line(conn: &mut Conn, line: ReadResult) {}
//! fn main() -> std::process::ExitCode {
//!     let hooks = Hooks::new()
//!         .service_register(|name, listener, kind| {
//!             log::info!("serving service={name:?} kind={kind}");
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

/// What serves one listener in aio mode: returned by [`general_register`], returned in turn
/// by the `service_register` hook. Dropping it closes the listener.
pub type Registration = runtime::Registration<Handler>;

/// The hooks of an aio server: `service_register` receives pool [`Listener`]s and returns
/// their [`Registration`]s.
pub type Hooks = runtime::Hooks<Listener, Registration>;

/// Serves `listener` with `callback`: the acceptor thread accepts its connections and runs
/// `callback(conn)` on a worker for each (for a FIFO: once, with the FIFO as the stream).
/// Return the result from the `service_register` hook.
///
/// # Errors
/// None in aio mode: it returns a `Result` so a hook can return it as is, like
/// `coroutine::general_register` (which refuses FIFOs).
pub fn general_register(
    listener: Listener,
    callback: impl Fn(&mut Conn) + Send + Sync + 'static,
) -> Result<Registration> {
    Ok(Registration::new(listener, Arc::new(callback)))
}

/// The hooks [`serve`] runs with: every listener served by `handler`, and a softstop drains
/// open connections. Add `before_service` / `before_softstop` to them and pass them to
/// [`server_main`] for more.
pub fn serve_hooks(handler: impl Fn(&mut Conn) + Send + Sync + 'static) -> Hooks {
    let handler: Handler = Arc::new(handler);
    Hooks::serve_every_listener(move |listener| {
        Ok(Registration::new(listener, Arc::clone(&handler)))
    })
}

/// Runs an aio server over the process's argv that serves every listener with `handler`:
/// `handler(conn)` runs on a worker for each accepted connection (for a FIFO: once). On
/// softstop it stops accepting and lets open connections finish (up to
/// `server-stop-on-softstop-after`, 3600 s when that is 0). Returns the process exit status.
pub fn serve(handler: impl Fn(&mut Conn) + Send + Sync + 'static) -> ExitCode {
    server_main(std::env::args_os(), serve_hooks(handler))
}

/// Runs an aio server: see [`runtime::server_main`] for the life cycle (argv `MASTER` or
/// `alone`, config, hooks, softstop, detach). Pass `std::env::args_os()`.
/// Returns the process exit status (1 after a usage or start-up error).
pub fn server_main<I, S>(args: I, hooks: Hooks) -> ExitCode
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    runtime::server_main(args, hooks, mode::AioMode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_hooks_drain_and_register_every_listener() {
        let hooks = serve_hooks(Conn::close);
        assert!(hooks.drains_on_softstop());
        assert!(!Hooks::new().drains_on_softstop());
        assert!(Hooks::new().before_softstop(|| ()).drains_on_softstop());
        assert!(
            format!("{hooks:?}").contains("drain_on_softstop: true"),
            "{hooks:?}"
        );
        let mut register = hooks.service_register.expect("a service_register hook");
        for kind in [ListenerKind::Inet, ListenerKind::Unix] {
            let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = tcp.local_addr().expect("addr").to_string();
            let registration = register("svc", Listener::Tcp(tcp), kind).expect("registered");
            assert_eq!(registration.listener().describe(), addr);
            let shown = format!("{registration:?}");
            assert!(shown.contains(&addr), "{shown}");
        }
    }
}
