//! Running test code on a thread pinned to some CPUs (the threads it starts inherit the mask).

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

/// The CPUs the calling thread may run on, in order.
///
/// # Panics
/// The mask cannot be read.
pub fn allowed_cpus() -> Vec<usize> {
    let set = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
    (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect()
}

/// Runs `f` on a new thread pinned to `cpus` and returns its result; threads `f` starts
/// (a worker pool, a scheduler) inherit the mask.
///
/// # Panics
/// A CPU is out of range or not allowed, or `f` panicked.
pub fn on_cpus<T: Send + 'static>(cpus: &[usize], f: impl FnOnce() -> T + Send + 'static) -> T {
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c).expect("cpu index");
    }
    std::thread::spawn(move || {
        // Pid 0: this thread only.
        sched_setaffinity(Pid::from_raw(0), &set).expect("sched_setaffinity");
        f()
    })
    .join()
    .expect("pinned thread")
}
