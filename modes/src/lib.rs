//! zmaster-modes: the server runtime shared by both modes, the aio mode and the coroutine mode.
//!
//! - [`runtime`]: argv (`MASTER` / `alone`), config, logging, hooks, softstop, detach, and the
//!   serving seam: the `service_register` hook returns each listener's registration, the mode
//!   is started with them ([`runtime::Mode`]).
//! - [`aio`]: callbacks on a worker pool (`aio::serve(handler)` for the common case;
//!   `aio::server_main` with hooks and `aio::general_register` for LIB-ZC's API).
//! - [`coroutine`]: an M:N stackful-coroutine scheduler.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod aio;
pub mod coroutine;
pub mod runtime;

pub use runtime::{Error, ErrorKind, Result};
