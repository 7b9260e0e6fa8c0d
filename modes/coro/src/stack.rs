//! Per-worker pool of guard-paged coroutine stacks (corosensei `DefaultStack`), keyed by size,
//! that gives memory back after a burst (the policy: `docs/coroutine.md`).
//!
//! A fresh `mmap` + `mprotect` costs hundreds of times a reused stack, so a finished
//! coroutine's stack goes back to its worker's pool: [`HOT_STACKS`] kept as they are (pages
//! resident), up to `Config::pool_stacks` in all (default [`DEFAULT_POOL_STACKS`]) with the
//! others `madvise(MADV_DONTNEED)`ed (reuse costs page faults, not an `mmap`), and the rest
//! unmapped. The heap is trimmed (`malloc_trim(0)`) once [`BURST`] coroutines finished and
//! at most a quarter of the peak since the last trim is left, as the aio pool does for
//! connections (`conn/trim.rs`).

use std::io;

use corosensei::stack::{DefaultStack, Stack};

use super::overflow;

/// Default coroutine stack size (usable bytes, excluding the guard page).
pub const DEFAULT_STACK_SIZE: usize = 128 * 1024;

/// Largest coroutine stack accepted (usable bytes): 1 GiB. Larger requests are refused where
/// they are made (`go_with_stack` panics, `Scheduler::start` fails) instead of failing on a
/// worker thread.
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// Smallest stack handed out.
pub(crate) const MIN_STACK_SIZE: usize = 16 * 1024;

/// Stacks kept per worker by default, all sizes together (resident or released).
pub(crate) const DEFAULT_POOL_STACKS: usize = 256;

/// Stacks kept resident (not released) per worker: the working set of a steady load.
pub(crate) const HOT_STACKS: usize = 16;

/// Finished coroutines that make a burst worth trimming the heap after.
pub(crate) const BURST: usize = 1024;

/// Rounds a requested stack size to what is allocated: at least [`MIN_STACK_SIZE`], a whole
/// number of pages. `None` above [`MAX_STACK_SIZE`] (so the rounding never wraps).
pub(crate) fn round_size(size: usize) -> Option<usize> {
    if size > MAX_STACK_SIZE {
        return None;
    }
    let page = overflow::page_size();
    Some(size.max(MIN_STACK_SIZE).div_ceil(page) * page)
}

/// The message for a refused stack size.
pub(crate) fn too_large(size: usize) -> String {
    format!("coroutine stack size {size} exceeds the maximum {MAX_STACK_SIZE} (MAX_STACK_SIZE)")
}

/// The lowest address of a stack's mapping: the start of its guard page.
pub(crate) fn guard_start(stack: &DefaultStack) -> usize {
    stack.limit().get()
}

/// Gives the pages of an idle stack back to the kernel: they read as zero when touched
/// again. Failure only means the memory stays resident, so it is not reported.
#[allow(unsafe_code)]
fn release(stack: &DefaultStack) {
    // The whole mapping, guard page included (it has no pages to drop; skipping it would only
    // add arithmetic).
    let start = guard_start(stack);
    let len = stack.base().get() - start;
    // SAFETY: [start, start + len) is exactly this stack's own private anonymous mapping,
    // which stays mapped while `stack` lives. The stack is in the pool, so no coroutine runs
    // on it and nothing points into it: discarding its contents (zero pages on the next
    // touch) cannot be observed, and the guard page keeps its PROT_NONE. madvise touches no
    // Rust-visible memory and returns on every path.
    let _ = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
}

/// Returns the free pages of every malloc arena to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn give_back_heap() {
    // SAFETY: malloc_trim takes no pointers; it only releases memory malloc holds free, under
    // malloc's own locks, so it is sound from any thread at any time. It returns normally.
    let _ = unsafe { libc::malloc_trim(0) };
}

/// Other allocators return memory on their own (or offer no such call).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back_heap() {}

/// The stacks of one size ready for reuse.
#[derive(Default)]
struct BySize {
    size: usize,
    /// Resident: handed out first (LIFO, the most recently used pages).
    hot: Vec<DefaultStack>,
    /// Released with [`release`]: handed out when no hot one is left.
    cold: Vec<DefaultStack>,
}

/// Stacks ready for reuse on one worker.
pub(crate) struct StackPool {
    /// Per size; almost always a single entry, the default size.
    pools: Vec<BySize>,
    /// Stacks kept in all (hot and cold, every size).
    limit: usize,
    /// Stacks kept now.
    kept: usize,
    /// Hot stacks kept now (every size).
    hot: usize,
    /// The most coroutines live at once on this worker since the last heap trim.
    peak: usize,
    /// Coroutines finished since the last heap trim.
    finished: usize,
}

impl StackPool {
    /// An empty pool keeping up to `limit` stacks (0: every finished stack is unmapped), of
    /// which at most [`HOT_STACKS`] stay resident.
    pub(crate) fn with_limit(limit: usize) -> StackPool {
        StackPool {
            pools: Vec::new(),
            limit,
            kept: 0,
            hot: 0,
            peak: 0,
            finished: 0,
        }
    }

    /// A coroutine started on this worker; `live` run here now (counting it).
    pub(crate) fn started(&mut self, live: usize) {
        self.peak = self.peak.max(live);
    }

    /// A coroutine finished on this worker; `live` are left. At the end of a burst, trims
    /// the heap; returns whether it did.
    pub(crate) fn finished(&mut self, live: usize) -> bool {
        self.finished += 1;
        if self.finished < BURST || live > self.peak / 4 {
            return false;
        }
        self.peak = live;
        self.finished = 0;
        give_back_heap();
        true
    }

    /// A stack of `size` (already rounded) bytes: reused if possible (a resident one first),
    /// else freshly mapped.
    pub(crate) fn get(&mut self, size: usize) -> io::Result<DefaultStack> {
        if let Some(p) = self.pools.iter_mut().find(|p| p.size == size) {
            if let Some(stack) = p.hot.pop() {
                self.hot -= 1;
                self.kept -= 1;
                return Ok(stack);
            }
            if let Some(stack) = p.cold.pop() {
                self.kept -= 1;
                return Ok(stack);
            }
        }
        DefaultStack::new(size)
    }

    /// Returns a stack of `size` bytes for reuse: kept resident while fewer than
    /// [`HOT_STACKS`] are, else released and kept while the pool holds fewer than its limit,
    /// else unmapped.
    pub(crate) fn put(&mut self, size: usize, stack: DefaultStack) {
        if self.kept >= self.limit {
            return;
        }
        let i = match self.pools.iter().position(|p| p.size == size) {
            Some(i) => i,
            None => {
                self.pools.push(BySize {
                    size,
                    ..BySize::default()
                });
                self.pools.len() - 1
            }
        };
        let p = &mut self.pools[i];
        self.kept += 1;
        if self.hot < HOT_STACKS {
            self.hot += 1;
            p.hot.push(stack);
        } else {
            release(&stack);
            p.cold.push(stack);
        }
    }

    /// Number of pooled stacks of `size`: (resident, released).
    #[cfg(test)]
    pub(crate) fn pooled(&self, size: usize) -> (usize, usize) {
        self.pools
            .iter()
            .find(|p| p.size == size)
            .map_or((0, 0), |p| (p.hot.len(), p.cold.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_to_pages() {
        let page = overflow::page_size();
        assert_eq!(MIN_STACK_SIZE, 16 * 1024);
        assert_eq!(round_size(1), Some(MIN_STACK_SIZE.div_ceil(page) * page));
        assert_eq!(round_size(DEFAULT_STACK_SIZE), Some(DEFAULT_STACK_SIZE));
        assert_eq!(round_size(DEFAULT_STACK_SIZE + 1).unwrap() % page, 0);
        assert!(round_size(DEFAULT_STACK_SIZE + 1).unwrap() > DEFAULT_STACK_SIZE);
        assert_eq!(round_size(MAX_STACK_SIZE), Some(MAX_STACK_SIZE));
    }

    #[test]
    fn sizes_near_the_top_are_refused_not_wrapped() {
        for size in [MAX_STACK_SIZE + 1, usize::MAX - 5000, usize::MAX] {
            assert_eq!(round_size(size), None, "{size}");
        }
        assert!(too_large(usize::MAX).contains("stack size 18446744073709551615"));
    }

    #[test]
    fn stacks_are_reused() {
        let mut pool = StackPool::with_limit(DEFAULT_POOL_STACKS);
        let size = DEFAULT_STACK_SIZE;
        let s = pool.get(size).unwrap();
        let base = s.base();
        pool.put(size, s);
        assert_eq!(pool.pooled(size), (1, 0));
        let again = pool.get(size).unwrap();
        assert_eq!(again.base(), base, "the pooled stack is handed out again");
        assert_eq!(pool.pooled(size), (0, 0));
        assert_eq!(
            again.base().get() - guard_start(&again),
            size + overflow::page_size()
        );
    }

    /// Takes `n` stacks of `size` from the pool (a burst of coroutines) and returns them.
    fn burst(pool: &mut StackPool, size: usize, n: usize) -> Vec<usize> {
        let stacks: Vec<DefaultStack> = (0..n).map(|_| pool.get(size).unwrap()).collect();
        let bases = stacks.iter().map(|s| s.base().get()).collect();
        for s in stacks {
            pool.put(size, s);
        }
        bases
    }

    #[test]
    fn after_a_burst_the_pool_keeps_its_limit_with_a_small_hot_set() {
        let size = MIN_STACK_SIZE;
        let mut pool = StackPool::with_limit(DEFAULT_POOL_STACKS);
        burst(&mut pool, size, DEFAULT_POOL_STACKS + 50);
        assert_eq!(
            pool.pooled(size),
            (HOT_STACKS, DEFAULT_POOL_STACKS - HOT_STACKS)
        );
        // A second burst reuses the kept stacks and still ends at the limit.
        burst(&mut pool, size, DEFAULT_POOL_STACKS + 50);
        assert_eq!(
            pool.pooled(size),
            (HOT_STACKS, DEFAULT_POOL_STACKS - HOT_STACKS)
        );

        let mut small = StackPool::with_limit(3);
        burst(&mut small, size, 10);
        assert_eq!(
            small.pooled(size),
            (3, 0),
            "a limit under the hot set keeps all hot"
        );
        let mut none = StackPool::with_limit(0);
        burst(&mut none, size, 10);
        assert_eq!(none.pooled(size), (0, 0), "limit 0 unmaps every stack");
    }

    #[test]
    fn resident_stacks_are_handed_out_before_released_ones() {
        let size = MIN_STACK_SIZE;
        let mut pool = StackPool::with_limit(DEFAULT_POOL_STACKS);
        let bases = burst(&mut pool, size, HOT_STACKS + 2);
        // The first HOT_STACKS returned are hot, the last two released.
        let hot: Vec<usize> = (0..HOT_STACKS)
            .map(|_| pool.get(size).unwrap().base().get())
            .collect();
        assert_eq!(pool.pooled(size), (0, 2));
        let mut expect_hot = bases[..HOT_STACKS].to_vec();
        expect_hot.reverse();
        assert_eq!(hot, expect_hot, "hot stacks come back most recent first");
        let cold = pool.get(size).unwrap();
        assert!(bases[HOT_STACKS..].contains(&cold.base().get()));
        assert_eq!(pool.pooled(size), (0, 1));
        // A released stack returned to a pool with room in the hot set is hot again.
        pool.put(size, cold);
        assert_eq!(pool.pooled(size), (1, 1));
    }

    #[test]
    fn the_limit_and_the_hot_set_count_every_size() {
        let (a, b) = (MIN_STACK_SIZE, DEFAULT_STACK_SIZE);
        let mut pool = StackPool::with_limit(HOT_STACKS + 4);
        burst(&mut pool, a, HOT_STACKS);
        burst(&mut pool, b, 10);
        assert_eq!(pool.pooled(a), (HOT_STACKS, 0));
        assert_eq!(pool.pooled(b), (0, 4));
        // Taking one of each frees two places in all and one in the hot set; a burst of 3
        // (the 3 released ones of b, returned) fills them: one hot, two released.
        drop(pool.get(a).unwrap());
        drop(pool.get(b).unwrap());
        burst(&mut pool, b, 3);
        assert_eq!(pool.pooled(b), (1, 2));
        assert_eq!(pool.pooled(a), (HOT_STACKS - 1, 0));
    }

    #[test]
    fn the_heap_is_trimmed_once_a_burst_has_mostly_finished() {
        let mut pool = StackPool::with_limit(DEFAULT_POOL_STACKS);
        for live in 1..=5000 {
            pool.started(live);
        }
        let trims: Vec<usize> = (1..=5000).filter(|i| pool.finished(5000 - i)).collect();
        // At a quarter left (3,750 finished), then after BURST more with at most a quarter
        // of the 1,250 left; the last 226 are too few.
        assert_eq!(trims, vec![3750, 3750 + BURST]);
        // Churn while most stay live never trims.
        let mut busy = StackPool::with_limit(DEFAULT_POOL_STACKS);
        busy.started(4000);
        let churn = (0..2 * BURST).filter(|_| {
            busy.started(4001);
            busy.finished(4000)
        });
        assert_eq!(churn.count(), 0);
        // Exactly a quarter left is low enough.
        let mut quarter = StackPool::with_limit(DEFAULT_POOL_STACKS);
        quarter.started(4 * BURST);
        let at: Vec<usize> = (1..=3 * BURST)
            .filter(|i| quarter.finished(4 * BURST - i))
            .collect();
        assert_eq!(at, vec![3 * BURST]);
    }

    /// Resident kB of the 32 KiB below `top` (the part of a stack [`dirty`] writes), page by
    /// page with `mincore`. Not `/proc/self/smaps`: its `Rss` is per mapping, and the kernel
    /// merges a stack's mapping with an adjacent read-write one of another test running in
    /// this process (CI: 220 kB "resident" for a released stack).
    #[allow(unsafe_code)]
    fn resident_kb(top: usize) -> usize {
        let page = overflow::page_size();
        let hi = top.div_ceil(page) * page;
        let lo = hi - 32 * 1024;
        let mut vec = vec![0u8; (hi - lo) / page];
        // SAFETY: [lo, hi) lies inside one live stack mapping of the caller (the 32 KiB below
        // its top, above the guard page); mincore only reads the page tables and writes one
        // byte per page into `vec`, which has exactly that many.
        let r = unsafe { libc::mincore(lo as *mut libc::c_void, hi - lo, vec.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|&&v| v & 1 == 1).count() * page / 1024
    }

    /// Runs a coroutine on `stack` that dirties about 32 KiB of it, and returns the stack.
    fn dirty(stack: DefaultStack) -> DefaultStack {
        use corosensei::{Coroutine, CoroutineResult};
        let mut coro = Coroutine::with_stack(stack, |_: &corosensei::Yielder<(), ()>, ()| {
            let buf = std::hint::black_box([7u8; 32 * 1024]);
            std::hint::black_box(&buf);
        });
        assert!(matches!(coro.resume(()), CoroutineResult::Return(())));
        coro.into_stack()
    }

    #[test]
    fn released_stacks_give_their_pages_back() {
        let size = DEFAULT_STACK_SIZE;
        let mut pool = StackPool::with_limit(HOT_STACKS + 1);
        let stacks: Vec<DefaultStack> = (0..=HOT_STACKS)
            .map(|_| dirty(pool.get(size).unwrap()))
            .collect();
        let tops: Vec<usize> = stacks.iter().map(|s| s.base().get() - 1).collect();
        for &top in &tops {
            assert!(resident_kb(top) >= 32, "a used stack is resident");
        }
        for s in stacks {
            pool.put(size, s);
        }
        assert_eq!(pool.pooled(size), (HOT_STACKS, 1));
        for &top in &tops[..HOT_STACKS] {
            assert!(resident_kb(top) >= 32, "a hot stack stays resident");
        }
        assert_eq!(
            resident_kb(tops[HOT_STACKS]),
            0,
            "the released stack is not resident"
        );
    }
}
