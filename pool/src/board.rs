//! [`Board`]: the open-connection counts of a service's sibling processes, in a memfd their
//! master shares with them, so that an acceptor holding clearly more connections than a
//! sibling that accepts leaves a new connection to that sibling.
//!
//! Design notes (issue 15, docs/servers.md "Between processes"):
//! - Why: every sibling's acceptor is woken by each connection on a shared listener (no
//!   `EPOLLEXCLUSIVE`, `reactor::LISTEN_FLAGS`), and the first to call `accept4` wins. An
//!   acceptor that is spinning (`spin.rs`) wins nearly every race, so 50 persistent
//!   connections split 39/61 ... 100/0 between two processes (measured, 3 s runs) and the
//!   unbalanced runs were the slow ones: one process served them all on one CPU.
//! - Layout: [`SLOTS`] slots of 64 bytes (one cache line each: a process writes only its own),
//!   4 KiB in all. A slot holds the process's open connections (its [`ConnGate`] mirrors every
//!   count and release into it) and whether its acceptor accepts (set while it polls its
//!   listeners: not at its connection limit, not stopped). The master gives each child of a
//!   service generation a slot no living child of that generation holds, and zeroes it when it
//!   reaps the child: a dead, stopped or draining sibling is never waited for.
//! - The rule ([`defers`]): before each `accept4`, an acceptor whose process holds more than
//!   [`SLACK`] connections more than the least loaded accepting sibling leaves the connection
//!   to it: while the rule holds (re-read each round, on live counts) and a connection waits
//!   (a zero-timeout `poll` of the listener), it yields for [`DEFER_YIELD`], then sleeps
//!   [`DEFER_TURN`] at a time, for [`DEFER_FOR`] in all (checked each round, so up to one
//!   sleep more: some 270 µs); the sibling's acceptor was woken by the same connection. Then
//!   it accepts: a connection waits that long at most, whatever the sibling does (stopped by
//!   `SIGSTOP`, its acceptor not scheduled), and nothing is ever stranded.
//! - Why yield, then sleep: an awake sibling takes the connection within microseconds, and a
//!   sleep costs two context switches (sleeping from the start: the acceptor's voluntary
//!   switches went from 0.01–0.03 to 0.17–0.32 per connection under connect-per-request
//!   load, 2 × 1 unpinned, and its CPU from 3.5–7 to 8–10 µs per connection). But a sibling
//!   woken on the other CPU, queued behind a busy thread there, is not helped by a
//!   `sched_yield` here, while an idle CPU here is one the scheduler moves it to. Measured
//!   (2 × 1, 50 persistent connections, 8 runs per mode, socket counts per process mid-run):
//!   yielding only left 3 of 16 first bursts uneven (47/3 at worst), yielding 50 µs then
//!   sleeping none of 16 in one set (27/23 at worst) and 1 of 18 (35/15) in the next.
//! - A sibling that says it accepts but does not take connections (stopped by `SIGSTOP`,
//!   traced) makes deferrals end with no accept by the siblings waited for: after [`MISSES`]
//!   such deferrals in a row the board is not looked at for [`QUIET`], so such a sibling costs
//!   [`MISSES`] deferrals per [`QUIET`] (under 2 ms of added delay), not one per connection
//!   for as long as it stays stuck — unless another sibling waited for keeps accepting, which
//!   then takes those connections.
//!   Every slot also counts the connections it ever accepted; a deferral is a miss unless one
//!   of the slots it waited for accepted since the previous deferral ended — whoever took the
//!   connection, and whatever other siblings accepted. So a sibling that accepts, only slower
//!   than [`DEFER_FOR`] (waiting for a CPU in a burst of connects, throttled), stays balanced
//!   against and costs up to [`DEFER_FOR`] per deferred connection until the counts even out
//!   (before, the first burst of 50 connects sometimes went quiet: 49/1 at worst).
//! - Not on one CPU (`spin::one_cpu`): siblings sharing a CPU gain nothing from a balance, and
//!   each yield to one would be a context switch (measured: a 1 ms deferral there cut the
//!   connect-per-request rate to 0.65× the epoll reference).
//! - Counts are `Relaxed`: the board is a hint for a balance, never a correctness condition.
//!   Two acceptors cannot both defer on live counts (each needs its own to be the larger).
//!
//! [`ConnGate`]: crate::ConnGate

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use zmaster_core::protocol;

use crate::stall::to_ms;

/// Slots on a board: the most processes of one service generation that balance.
pub const SLOTS: usize = protocol::BOARD_SLOTS;
/// The board's size in bytes, as the master makes the memfd.
pub const BOARD_SIZE: usize = SLOTS * protocol::BOARD_SLOT_BYTES;
const _: () = assert!(std::mem::size_of::<Slot>() == protocol::BOARD_SLOT_BYTES);
/// How many connections more than the least loaded sibling a process may hold and still accept.
pub const SLACK: u32 = 1;
/// How long an acceptor waits at most to let a sibling take a connection before it takes it
/// (each round: the rule, a zero-timeout `poll` of the listener, a yield or a sleep).
/// A sibling asleep on an idle CPU of a VM takes some 50–150 µs to wake.
pub const DEFER_FOR: Duration = Duration::from_micros(200);
/// How long a deferral yields (`sched_yield` rounds) before it sleeps.
pub const DEFER_YIELD: Duration = Duration::from_micros(50);
/// One round's sleep once a deferral is [`DEFER_YIELD`] old (with the default timer slack,
/// some 70 µs).
pub const DEFER_TURN: Duration = Duration::from_micros(20);
/// After this many deferrals in a row in which none of the siblings waited for accepted
/// anything, the board is not looked at for [`QUIET`]: a sibling that says it accepts but
/// does not (stopped by `SIGSTOP`, a debugger attached) costs a few deferrals per [`QUIET`],
/// not one per connection for as long as it stays stuck.
pub const MISSES: u32 = 8;
/// How long the board is not looked at after [`MISSES`] deferrals in a row missed.
pub const QUIET: Duration = Duration::from_millis(50);

/// One process's entry: a cache line of its own.
#[repr(C, align(64))]
pub(crate) struct Slot {
    count: AtomicU32,
    /// 1 while its acceptor polls its listeners.
    accepting: AtomicU32,
    /// Connections it ever counted (wrapping): a sibling whose total moves is alive.
    accepted: AtomicU32,
}

/// A mapping of a service's board, and which slot is this process's. See the module notes.
pub struct Board {
    base: NonNull<Slot>,
    own: usize,
    /// Connections this process's acceptor left to a sibling (process-local).
    deferrals: AtomicU64,
    /// Deferrals in a row in which no sibling waited for accepted (process-local).
    misses: AtomicU32,
    /// Every slot's accepted total when the last deferral ended (process-local).
    seen: [AtomicU32; SLOTS],
    /// `stall::to_ms` until which the board is not looked at (0: it is).
    quiet_until: AtomicU64,
    /// How long a deferral lasts at most ([`DEFER_FOR`] unless set).
    defer_for: Duration,
}

// SAFETY: the mapping is only ever accessed through `&Slot` (atomics), shared by design
// between threads and processes; `Board` owns it alone and unmaps it in `Drop`.
unsafe impl Send for Board {}
// SAFETY: as above: every access is an atomic operation on a slot.
unsafe impl Sync for Board {}

impl Board {
    /// Maps the board memfd `fd` (shared, read-write) with slot `own` as this process's.
    /// The fd may be closed afterwards: the mapping keeps the memory.
    ///
    /// # Errors
    /// `own` is not below [`SLOTS`], the file is not [`BOARD_SIZE`] bytes, or `mmap` failed.
    pub fn map(fd: impl AsFd, own: usize) -> io::Result<Board> {
        if own >= SLOTS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("board slot {own} is not below {SLOTS}"),
            ));
        }
        let size = nix::sys::stat::fstat(fd.as_fd())?.st_size;
        if usize::try_from(size).ok() != Some(BOARD_SIZE) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the board is {size} bytes, not {BOARD_SIZE}"),
            ));
        }
        let len = NonZeroUsize::new(BOARD_SIZE).expect("BOARD_SIZE > 0");
        // SAFETY: a new shared mapping of `BOARD_SIZE` bytes of the file (checked to be that
        // long; the master seals it against shrinking, so no later access faults) at an
        // address the kernel picks: it aliases no Rust object. It is page-aligned, so aligned
        // for `Slot`, whose `u32` atomics are valid for any bit pattern: the siblings
        // write it with atomics, the master with `pwrite` (zeroes, into a reaped child's slot
        // only), so a racing read sees at worst a stale hint. It stays mapped until `Drop`.
        let base = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }?;
        Ok(Board {
            base: base.cast(),
            own,
            deferrals: AtomicU64::new(0),
            misses: AtomicU32::new(0),
            seen: std::array::from_fn(|_| AtomicU32::new(0)),
            quiet_until: AtomicU64::new(0),
            defer_for: DEFER_FOR,
        })
    }

    fn slots(&self) -> &[Slot] {
        // SAFETY: `base` points at `SLOTS` slots mapped for the life of `self` (see `map`);
        // `Slot` is three atomics, valid for any bit pattern, and only ever shared.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), SLOTS) }
    }

    fn own_slot(&self) -> &Slot {
        &self.slots()[self.own]
    }

    /// This board with deferrals of `defer_for` at most instead of [`DEFER_FOR`] (a test
    /// that must not depend on how fast a loaded machine schedules the sibling sets a long
    /// one).
    pub fn with_defer_for(mut self, defer_for: Duration) -> Board {
        self.defer_for = defer_for;
        self
    }

    /// How long a deferral lasts at most.
    pub(crate) fn defer_for(&self) -> Duration {
        self.defer_for
    }

    /// This process's slot number.
    pub fn slot(&self) -> usize {
        self.own
    }

    /// How many times this process's acceptor left waiting connections to a sibling.
    pub fn deferrals(&self) -> u64 {
        self.deferrals.load(Ordering::Relaxed)
    }

    pub(crate) fn count_deferral(&self) {
        self.deferrals.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the board is not to be looked at, at `now` (see [`MISSES`]).
    pub(crate) fn quiet(&self, now: Instant) -> bool {
        let until = self.quiet_until.load(Ordering::Relaxed);
        until != 0 && to_ms(now) < until
    }

    /// The slots a deferral at this process's count `own` waits for: the accepting siblings
    /// holding more than [`SLACK`] fewer (bit `slot`).
    pub(crate) fn waited_for(&self, own: usize) -> u64 {
        (0..SLOTS)
            .filter(|&slot| slot != self.own)
            .filter(|&slot| {
                self.accepting_count(slot)
                    .is_some_and(|n| defers(own, Some(n)))
            })
            .fold(0, |bits, slot| bits | 1 << slot)
    }

    /// A deferral that waited for the slots `waited` ([`Board::waited_for`]) ended at `now`,
    /// however it ended. It missed unless one of them accepted since the previous deferral
    /// ended; [`MISSES`] misses in a row make the board quiet for [`QUIET`].
    pub(crate) fn deferral_ended(&self, waited: u64, now: Instant) {
        let mut alive = false;
        for (slot, (s, seen)) in self.slots().iter().zip(&self.seen).enumerate() {
            let accepted = s.accepted.load(Ordering::Relaxed);
            let before = seen.swap(accepted, Ordering::Relaxed);
            alive |= waited & (1 << slot) != 0 && before != accepted;
        }
        if alive {
            self.misses.store(0, Ordering::Relaxed);
        } else if self.misses.fetch_add(1, Ordering::Relaxed) + 1 >= MISSES {
            self.misses.store(0, Ordering::Relaxed);
            log::debug!(
                "board slot={}: {MISSES} connections left to siblings that accepted none; \
                 not balancing for {} ms",
                self.own,
                QUIET.as_millis()
            );
            self.quiet_until
                .store(to_ms(now + QUIET), Ordering::Relaxed);
        }
    }

    /// One more open connection in this process.
    pub(crate) fn enter(&self) {
        let own = self.own_slot();
        own.count.fetch_add(1, Ordering::Relaxed);
        own.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// One open connection fewer (never below zero).
    pub(crate) fn leave(&self) {
        let _ = self
            .own_slot()
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Whether this process's acceptor polls its listeners.
    pub(crate) fn set_accepting(&self, on: bool) {
        self.own_slot()
            .accepting
            .store(u32::from(on), Ordering::Relaxed);
    }

    /// The open connections of the process in `slot`, `None` when its acceptor does not accept
    /// (or `slot` is out of range).
    pub fn accepting_count(&self, slot: usize) -> Option<u32> {
        let s = self.slots().get(slot)?;
        (s.accepting.load(Ordering::Relaxed) != 0).then(|| s.count.load(Ordering::Relaxed))
    }

    /// The fewest open connections of a sibling that accepts; `None` when none does.
    #[cfg(test)]
    pub(crate) fn least_other(&self) -> Option<u32> {
        (0..SLOTS)
            .filter(|&slot| slot != self.own)
            .filter_map(|slot| self.accepting_count(slot))
            .min()
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        // SAFETY: `base` is the start of the `BOARD_SIZE`-byte mapping `map` made, not unmapped
        // before; no `&Slot` outlives `self` (they borrow it).
        if let Err(e) = unsafe { munmap(self.base.cast(), BOARD_SIZE) } {
            log::debug!("board: munmap: {e}");
        }
    }
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board").field("slot", &self.own).finish()
    }
}

/// Whether a process holding `own` connections leaves a new one to a sibling whose fewest are
/// `least_other` (`None`: no sibling accepts).
pub fn defers(own: usize, least_other: Option<u32>) -> bool {
    least_other.is_some_and(|least| own > least as usize + SLACK as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::memfd::{MFdFlags, memfd_create};

    fn memfd() -> std::os::fd::OwnedFd {
        let fd = memfd_create(c"zmaster-board", MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, BOARD_SIZE as i64).unwrap();
        fd
    }

    /// Slot 0 ("me") and slot 1 of one board, slot 1 accepting with no connection (the fd
    /// may go: the mappings keep the memory).
    fn me_and_an_accepting_sibling() -> (Board, Board) {
        let fd = memfd();
        let me = Board::map(&fd, 0).unwrap();
        let sibling = Board::map(&fd, 1).unwrap();
        sibling.set_accepting(true);
        (me, sibling)
    }

    #[test]
    fn the_rule_leaves_a_connection_only_past_the_slack() {
        assert!(!defers(5, None), "no sibling accepts");
        assert!(!defers(0, Some(0)));
        assert!(!defers(1, Some(0)), "one more is within the slack");
        assert!(defers(2, Some(0)));
        assert!(!defers(26, Some(25)));
        assert!(defers(27, Some(25)));
        assert!(!defers(3, Some(7)), "the less loaded one accepts");
        assert!(defers(usize::MAX, Some(u32::MAX)), "no overflow");
        assert!(!defers(u32::MAX as usize + 1, Some(u32::MAX)));
    }

    #[test]
    fn two_mappings_see_each_other_and_skip_their_own_slot() {
        let fd = memfd();
        let a = Board::map(&fd, 0).unwrap();
        let b = Board::map(&fd, 5).unwrap();
        assert_eq!(b.slot(), 5);
        assert_eq!(a.least_other(), None, "nobody accepts yet");
        b.set_accepting(true);
        assert_eq!(a.least_other(), Some(0));
        assert_eq!(b.least_other(), None, "its own slot does not count");
        b.enter();
        b.enter();
        assert_eq!(a.least_other(), Some(2));
        assert_eq!(a.accepting_count(5), Some(2));
        b.leave();
        assert_eq!(a.least_other(), Some(1));
        b.leave();
        b.leave();
        assert_eq!(a.least_other(), Some(0), "never below zero");
        a.set_accepting(true);
        a.enter();
        assert_eq!(b.least_other(), Some(1));
        b.set_accepting(false);
        assert_eq!(a.least_other(), None, "a sibling that stopped accepting");
        assert_eq!(a.accepting_count(SLOTS), None);
    }

    #[test]
    fn the_least_loaded_sibling_is_the_minimum_over_every_slot() {
        let fd = memfd();
        let me = Board::map(&fd, 3).unwrap();
        let others: Vec<Board> = [0, 1, 2, 4, SLOTS - 1]
            .iter()
            .map(|&s| Board::map(&fd, s).unwrap())
            .collect();
        for (i, other) in others.iter().enumerate() {
            other.set_accepting(true);
            for _ in 0..(10 - i) {
                other.enter();
            }
        }
        // Slots 0..4 and 63 hold 10, 9, 8, 7, 6.
        assert_eq!(me.least_other(), Some(6));
        others[4].set_accepting(false);
        assert_eq!(me.least_other(), Some(7));
        others[0].leave();
        others[0].leave();
        others[0].leave();
        others[0].leave();
        assert_eq!(me.least_other(), Some(6), "slot 0 counts too");
    }

    #[test]
    fn deferrals_are_counted_per_mapping_and_a_dropped_board_is_unmapped() {
        let fd = memfd_create(c"zmaster-board-unmap-test", MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, BOARD_SIZE as i64).unwrap();
        let mapped = || {
            std::fs::read_to_string("/proc/self/maps")
                .unwrap()
                .matches("zmaster-board-unmap-test")
                .count()
        };
        let a = Board::map(&fd, 0).unwrap();
        let b = Board::map(&fd, 1).unwrap();
        assert_eq!(mapped(), 2);
        a.count_deferral();
        a.count_deferral();
        b.count_deferral();
        assert_eq!((a.deferrals(), b.deferrals()), (2, 1), "process-local");
        assert_eq!(format!("{a:?}"), "Board { slot: 0 }");
        drop(a);
        assert_eq!(mapped(), 1, "munmap on drop");
        drop(b);
        assert_eq!(mapped(), 0);
    }

    #[test]
    fn eight_deferrals_in_a_row_without_an_accept_quiet_the_board_for_50ms() {
        let (b, sibling) = me_and_an_accepting_sibling();
        let waited = b.waited_for(5);
        assert_eq!(waited, 1 << 1);
        let t0 = Instant::now();
        let miss = |n: u32, t| (0..n).for_each(|_| b.deferral_ended(waited, t));
        assert!(!b.quiet(t0));
        miss(MISSES - 1, t0);
        sibling.enter();
        b.deferral_ended(waited, t0);
        assert!(!b.quiet(t0), "the sibling took one: the run starts again");
        miss(MISSES - 1, t0);
        assert!(!b.quiet(t0));
        miss(1, t0);
        assert!(b.quiet(t0));
        assert!(b.quiet(t0 + QUIET - Duration::from_millis(2)));
        assert!(!b.quiet(t0 + QUIET + Duration::from_millis(1)));
        // The run starts again from zero after a quiet spell.
        let t1 = t0 + QUIET * 2;
        miss(MISSES - 1, t1);
        assert!(!b.quiet(t1));
        assert_eq!((MISSES, QUIET), (8, Duration::from_millis(50)));
    }

    #[test]
    fn the_slots_waited_for_are_the_accepting_siblings_past_the_slack() {
        let fd = memfd();
        let me = Board::map(&fd, 3).unwrap();
        let s: Vec<Board> = (0..6).map(|i| Board::map(&fd, i).unwrap()).collect();
        for (i, b) in s.iter().enumerate() {
            b.set_accepting(i != 5);
            (0..i).for_each(|_| b.enter());
        }
        // Counts 0, 1, 2, (me), 4, 5 (not accepting); at 3 open: slots 0 and 1 (3 > n + 1).
        assert_eq!(me.waited_for(3), 0b11);
        assert_eq!(me.waited_for(4), 0b111);
        assert_eq!(me.waited_for(1), 0, "within the slack of slot 0");
        assert_eq!(
            me.waited_for(7),
            0b1_0111,
            "never its own slot 3, nor slot 5"
        );
        s[5].set_accepting(true);
        assert_eq!(me.waited_for(7), 0b11_0111);
        let last = Board::map(&fd, SLOTS - 1).unwrap();
        last.set_accepting(true);
        assert_eq!(me.waited_for(2) >> (SLOTS - 1), 1, "the last slot counts");
    }

    #[test]
    fn only_an_accept_by_a_sibling_waited_for_keeps_the_balance_on() {
        let fd = memfd();
        let me = Board::map(&fd, 0).unwrap();
        let stuck = Board::map(&fd, 1).unwrap();
        let busy = Board::map(&fd, 2).unwrap();
        stuck.set_accepting(true);
        busy.set_accepting(true);
        (0..10).for_each(|_| busy.enter());
        let waited = me.waited_for(5);
        assert_eq!(waited, 1 << 1, "the stuck one, not the busier one");
        let t0 = Instant::now();
        // The busier sibling keeps accepting (it took the connection, or others): no sign
        // that the stuck one is alive. Nor are this process's own accepts.
        for _ in 0..MISSES - 1 {
            busy.enter();
            me.enter();
            me.deferral_ended(waited, t0);
        }
        assert!(!me.quiet(t0));
        busy.enter();
        me.deferral_ended(waited, t0);
        assert!(
            me.quiet(t0),
            "{MISSES} deferrals the stuck sibling took none of"
        );
    }

    #[test]
    fn a_sibling_that_accepts_slower_than_a_deferral_never_quiets_the_board() {
        let (me, slow) = me_and_an_accepting_sibling();
        let waited = me.waited_for(5);
        let t0 = Instant::now();
        // It accepts one between two deferrals that ran out (a burst of connects while it
        // waits for a CPU); its connections may close again.
        for _ in 0..10 * MISSES {
            slow.enter();
            slow.leave();
            me.deferral_ended(waited, t0);
            assert!(!me.quiet(t0), "a sibling that accepts is balanced against");
        }
        // Its accepted total wraps; a total the master zeroes (a reaped child's slot) is a
        // change too: neither is taken for a stuck sibling. Each store is absorbed by one
        // deferral first, so that only the change under test can restart the run.
        let run_of_misses_then = |change: &dyn Fn()| {
            me.deferral_ended(waited, t0);
            for _ in 0..MISSES - 1 {
                me.deferral_ended(waited, t0);
            }
            change();
            me.deferral_ended(waited, t0);
            assert!(!me.quiet(t0), "the change restarted the run");
        };
        slow.slots()[1].accepted.store(u32::MAX, Ordering::Relaxed);
        run_of_misses_then(&|| {
            slow.enter();
            slow.leave();
            assert_eq!(
                slow.slots()[1].accepted.load(Ordering::Relaxed),
                0,
                "wrapped"
            );
        });
        slow.slots()[1].accepted.store(7, Ordering::Relaxed);
        run_of_misses_then(&|| slow.slots()[1].accepted.store(0, Ordering::Relaxed));
        // And the run really started again: 7 more misses, then the 8th goes quiet.
        for _ in 0..MISSES - 1 {
            me.deferral_ended(waited, t0);
        }
        assert!(!me.quiet(t0));
        me.deferral_ended(waited, t0);
        assert!(me.quiet(t0));
        assert_eq!(
            me.accepting_count(1),
            Some(0),
            "open connections, not the total"
        );
    }

    #[test]
    fn a_bad_slot_or_size_is_refused() {
        let fd = memfd();
        let err = Board::map(&fd, SLOTS).unwrap_err();
        assert!(err.to_string().contains("not below 64"), "{err}");
        let small = memfd_create(c"zmaster-board", MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&small, 64).unwrap();
        let err = Board::map(&small, 0).unwrap_err();
        assert!(err.to_string().contains("not 4096"), "{err}");
        assert_eq!(BOARD_SIZE, 4096);
    }
}
