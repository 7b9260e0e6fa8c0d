//! zmaster-modes: the server runtime shared by both modes, the aio mode and the coroutine mode.
//!
//! - [`runtime`]: argv (`MASTER` / `alone`), config, logging, hooks, softstop, detach.
//! - [`aio`]: callbacks on a worker pool (`aio::server_main`, `aio::general_register`).
//! - [`coroutine`]: an M:N stackful-coroutine scheduler.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod aio;
pub mod coroutine;
pub mod runtime;

pub use runtime::{Error, ErrorKind, Result};
