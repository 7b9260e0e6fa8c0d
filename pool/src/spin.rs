//! The idle spin of an event loop: before blocking in `epoll_wait`, a worker that found
//! nothing to do yields its CPU and polls again, a few rounds.
//!
//! Why: in ping-pong the next request is often already on its way when a worker runs dry.
//! Blocking costs a sleep and a wake-up (a context switch each, and an IPI when the waker
//! runs on another CPU); `sched_yield` hands the CPU to a runnable thread — on a loaded
//! machine usually the peer that is about to send — and the poll after it finds the request
//! without either. On an idle machine `sched_yield` returns at once, so a spin is two cheap
//! syscalls per round. The rounds adapt ([`IdleSpin::found`]): all of them after a spin that
//! found work, one after a spin that ended in sleep anyway (at low concurrency nearly every
//! spin fails).
//!
//! On one usable CPU a yield hands the CPU to the thread this one waits for (the acceptor's
//! to the worker and the client, a worker's to the client), which is what one CPU needs
//! (issue 15, connect load on one CPU: aio 1×1 0.87 -> 0.97 of the epoll reference, 2×1
//! 0.80 -> 0.99). But sibling workers that all spin yield to each other there (aio 1×2
//! ping-pong on one CPU, every worker spinning: 0.05 -> 0.46 context switches per request,
//! -24 % req/s), and a pool where none spins sleeps and is woken for every connection (aio
//! 1×2 connect load on one CPU: 2.2 context switches per connection against 0.4 with one
//! worker). So on one CPU exactly one thread of each kind spins: the acceptor and the first
//! worker of a pool ([`IdleSpin::new`]); the pools hand new work to an awake worker first
//! (`WorkersHandle::assign`, the coroutine scheduler's `wake_one`), which is then that one.

/// Yield-and-poll rounds of an idle worker before it blocks, at most.
pub const SPIN_POLLS: u32 = 3;

/// The spin rounds of thread `index` of its kind (0: the acceptor, the first worker of a
/// pool), on one CPU or more.
fn rounds_for(one_cpu: bool, index: usize) -> u32 {
    if !one_cpu || index == 0 {
        SPIN_POLLS
    } else {
        0
    }
}

/// Whether the calling thread may run on one CPU only (its affinity mask has one CPU; `false`
/// if it cannot be read). A cgroup quota does not count: a container limited to 1.5 CPUs
/// still runs threads in parallel (`available_parallelism` would round it down to 1). Read
/// it once per thread, not per event.
pub fn one_cpu() -> bool {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).is_ok_and(|set| {
        (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .nth(1)
            .is_none()
    })
}

/// The adaptive idle-spin budget of one worker.
#[derive(Debug, Clone, Copy)]
pub struct IdleSpin {
    max: u32,
    next: u32,
}

impl IdleSpin {
    /// [`SPIN_POLLS`] rounds for thread `index` among the threads of its kind (its pool's
    /// worker index; 0 for the acceptor), or none when the thread may run on one CPU only and
    /// is not the first of its kind: spinning siblings would yield to each other.
    pub fn new(index: usize) -> IdleSpin {
        IdleSpin::with_max(rounds_for(one_cpu(), index))
    }

    /// At most `max` rounds.
    pub fn with_max(max: u32) -> IdleSpin {
        IdleSpin { max, next: max }
    }

    /// Rounds of the next spin.
    pub fn rounds(&self) -> u32 {
        self.next
    }

    /// The last spin found work (`true`) or ended in sleep: all rounds next time after a
    /// success, one after a failure.
    pub fn found(&mut self, found: bool) {
        self.next = if found { self.max } else { self.max.min(1) };
    }

    /// Spins: up to [`rounds`](Self::rounds) times, `sched_yield` and then `poll` (a
    /// non-blocking check for work, `true` when it found some). Returns whether work was
    /// found; then the caller skips blocking. No round, no yield: `false` at once.
    pub fn spin(&mut self, mut poll: impl FnMut() -> bool) -> bool {
        if self.next == 0 {
            return false;
        }
        for _ in 0..self.next {
            std::thread::yield_now();
            if poll() {
                self.found(true);
                return true;
            }
        }
        self.found(false);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::{IdleSpin, SPIN_POLLS, one_cpu, rounds_for};

    #[test]
    fn a_failed_spin_shortens_the_next_and_a_success_restores_it() {
        let mut s = IdleSpin::with_max(SPIN_POLLS);
        assert_eq!(s.rounds(), SPIN_POLLS);
        s.found(false);
        assert_eq!(s.rounds(), 1);
        s.found(false);
        assert_eq!(s.rounds(), 1);
        s.found(true);
        assert_eq!(s.rounds(), SPIN_POLLS);
        let mut five = IdleSpin::with_max(5);
        five.found(true);
        assert_eq!(five.rounds(), 5);
    }

    #[test]
    fn spin_polls_up_to_its_rounds_and_stops_at_the_first_success() {
        let mut s = IdleSpin::with_max(3);
        let mut polls = 0;
        assert!(!s.spin(|| {
            polls += 1;
            false
        }));
        assert_eq!(polls, 3);
        // After the failure: one round.
        polls = 0;
        assert!(!s.spin(|| {
            polls += 1;
            false
        }));
        assert_eq!(polls, 1);
        // A success on the first poll ends the spin and restores the rounds.
        polls = 0;
        assert!(s.spin(|| {
            polls += 1;
            true
        }));
        assert_eq!((polls, s.rounds()), (1, 3));
        polls = 0;
        assert!(s.spin(|| {
            polls += 1;
            polls == 2
        }));
        assert_eq!(polls, 2);
        let mut none = IdleSpin::with_max(0);
        assert!(!none.spin(|| panic!("no rounds: no poll")));
    }

    #[test]
    fn a_single_cpu_never_spins() {
        let mut s = IdleSpin::with_max(0);
        assert_eq!(s.rounds(), 0);
        s.found(false);
        assert_eq!(s.rounds(), 0);
        s.found(true);
        assert_eq!(s.rounds(), 0);
    }

    #[test]
    fn one_cpu_spins_only_the_first_thread_of_its_kind() {
        assert_eq!(rounds_for(true, 0), SPIN_POLLS);
        assert_eq!(rounds_for(true, 1), 0);
        assert_eq!(rounds_for(true, 3), 0);
        assert_eq!(rounds_for(false, 0), SPIN_POLLS);
        assert_eq!(rounds_for(false, 1), SPIN_POLLS);
        assert_eq!(rounds_for(false, 7), SPIN_POLLS);
    }

    #[test]
    fn a_thread_pinned_to_one_cpu_sees_one_and_spins_only_as_the_first() {
        use zmaster_testkit::{allowed_cpus, on_cpus};
        let cpus = allowed_cpus();
        let pinned = on_cpus(&cpus[..1], || {
            (
                one_cpu(),
                IdleSpin::new(0).rounds(),
                IdleSpin::new(1).rounds(),
            )
        });
        assert_eq!(pinned, (true, SPIN_POLLS, 0));
        if cpus.len() > 1 {
            // This thread is not pinned: every worker spins.
            assert!(!one_cpu());
            assert_eq!(IdleSpin::new(1).rounds(), SPIN_POLLS);
            // Two CPUs of the mask are not one.
            assert!(!on_cpus(&cpus[..2], one_cpu));
        }
    }
}
