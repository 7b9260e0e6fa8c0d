//! Dev-only test support shared by zmaster's crates (never a normal dependency).
//!
//! What the behaviour tests of every crate need, in one place: free loopback ports
//! ([`free_port`]), a line client with timeouts ([`LineClient`], [`ask_tcp`]), child guards
//! that kill by pid on drop ([`ChildGuard`]), waits on events instead of sleeps
//! ([`wait_for`], [`wait_until`], [`wait_log_line`], [`wait_pid_change`]), `/proc` inspection
//! ([`children_of`], [`is_alive`], [`rss_bytes`], ...), code on a pinned thread ([`on_cpus`]) and a fake master that starts a server with the fds a
//! master gives it ([`spawn_under_fake_master`], [`stage_fds`]).
//!
//! Every helper panics with a message naming what it waited for: a failure in a test, never a
//! hang (each blocking read or wait is bounded by [`PATIENCE`] or an explicit timeout).
#![warn(missing_docs)]

use std::time::Duration;

mod client;
mod cpus;
mod fake_master;
mod net;
mod process;
// The socket tables as `zstress` reads them: one file, compiled into both crates.
#[path = "../../src/sockets.rs"]
#[allow(dead_code, unreachable_pub)]
mod sockets;
mod sys;
mod wait;

pub use client::{LineClient, Stream, ask_tcp, ask_unix};
pub use cpus::{allowed_cpus, on_cpus};
pub use fake_master::{
    FakeMaster, cloexec_pipe, peer_closed, spawn_under_fake_master, spawn_under_fake_master_on,
    spawn_under_fake_master_unix, stage_fds,
};
pub use net::{closed_port, free_port, non_loopback_ip};
pub use process::{
    ChildGuard, children_of, descendants_of, exe_name, fd_count, is_alive, kill_pid,
    raise_fd_limit, rss_bytes,
};
pub use sockets::listens_on;
pub use wait::{LogPipe, wait_for, wait_log_line, wait_pid_change, wait_until};

/// How long any single wait or blocking read may take before it counts as a hang.
pub const PATIENCE: Duration = Duration::from_secs(20);
