//! The server runtime shared by the aio and coroutine modes (SPEC §5, §6).
//!
//! A mode implements [`Mode`] (start its threads over the registrations the hooks returned,
//! report open connections through [`Serving`]) and calls [`server_main`], which:
//!
//! 1. parses argv: `MASTER` (fds 3, 4 and 5+ from a master, SPEC §5) or `alone` (bind the
//!    `-server-service` addresses here); anything else prints usage and returns exit status 1;
//! 2. loads the config (command line > `-config` files > `server-config-path/*.gcf`), reads the
//!    [`Settings`] (`server-thread-count`, `server-coroutine-stack-size`,
//!    `server-stop-on-softstop-after`) and sets up logging from `server-log`;
//! 3. runs the `before_service` hook, then `service_register` once per listener (one
//!    [`Listener`] type for both modes), collecting what each call returns (the mode's
//!    [`Registration`]): no global registry;
//! 4. starts the mode with those ([`Mode::start_with`]) and serves until a softstop (the master
//!    reloaded or died), a [`detach_from_master`] or a [`stop_notify`];
//! 5. stops accepting at once, runs `before_softstop`, drains open connections up to the
//!    deadline (when that hook or [`Hooks::drain_on_softstop`] asks for a drain), and returns.
//!
//! Modes that need more control use [`Server::from_args`] and [`Server::run`] directly.

mod args;
mod control;
mod error;
mod hooks;
mod lifecycle;
mod listeners;
mod mode;
mod server;
#[allow(unsafe_code)]
mod sys;

pub use args::{DEFAULT_COROUTINE_STACK_SIZE, Launch, Settings, usage};
pub use control::{detach_from_master, softstop_started, stop_notify};
pub use error::{Error, ErrorKind, Result};
pub use hooks::Hooks;
pub use lifecycle::Limits;
pub use listeners::{ALONE_BACKLOG, ServiceListener};
pub use mode::{Mode, Registration, server_main};
pub use server::{DEFAULT_DRAIN_LIMIT, Outcome, Server, Serving, config};
pub use zmaster_core::config::Config;
pub use zmaster_core::protocol::ListenerKind;
pub use zmaster_pool::{Listener, Stall};
