//! Helpers for the coroutine engine's tests: one way to start a scheduler, and the testkit's
//! shared helpers (ports, line client, waits).
#![allow(dead_code, unreachable_pub, unused_imports)]

pub use zmaster_testkit::{LineClient, PATIENCE, free_port, wait_for, wait_until};

use zmaster_coro::{Config, Scheduler};

/// Starts a scheduler with `threads` workers and coroutine stacks of `stack_size` bytes
/// (0: the default size).
pub fn sched(threads: usize, stack_size: usize) -> Scheduler {
    Scheduler::start(Config {
        threads,
        stack_size,
        ..Config::default()
    })
    .expect("start scheduler")
}
