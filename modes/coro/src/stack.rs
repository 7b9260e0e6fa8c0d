//! Per-worker pool of guard-paged coroutine stacks (corosensei `DefaultStack`), keyed by size.
//!
//! A fresh `mmap` + `mprotect` per coroutine costs hundreds of times a reused stack, so a
//! finished coroutine's stack goes back to its worker's pool (up to [`MAX_POOLED`] per size).

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

/// Stacks kept per size per worker.
pub(crate) const MAX_POOLED: usize = 1024;

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

/// Stacks ready for reuse on one worker.
#[derive(Default)]
pub(crate) struct StackPool {
    /// (rounded size, stacks); almost always a single entry, the default size.
    pools: Vec<(usize, Vec<DefaultStack>)>,
}

impl StackPool {
    /// An empty pool.
    pub(crate) fn new() -> StackPool {
        StackPool::default()
    }

    /// A stack of `size` (already rounded) bytes: reused if possible, else freshly mapped.
    pub(crate) fn get(&mut self, size: usize) -> io::Result<DefaultStack> {
        if let Some((_, v)) = self.pools.iter_mut().find(|(s, _)| *s == size)
            && let Some(stack) = v.pop()
        {
            return Ok(stack);
        }
        DefaultStack::new(size)
    }

    /// Returns a stack of `size` bytes for reuse (unmapped if the pool is full).
    pub(crate) fn put(&mut self, size: usize, stack: DefaultStack) {
        match self.pools.iter_mut().find(|(s, _)| *s == size) {
            Some((_, v)) => {
                if v.len() < MAX_POOLED {
                    v.push(stack);
                }
            }
            None => self.pools.push((size, vec![stack])),
        }
    }

    /// Number of pooled stacks of `size`.
    #[cfg(test)]
    pub(crate) fn pooled(&self, size: usize) -> usize {
        self.pools
            .iter()
            .find(|(s, _)| *s == size)
            .map_or(0, |(_, v)| v.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_to_pages() {
        let page = overflow::page_size();
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
        let mut pool = StackPool::new();
        let size = DEFAULT_STACK_SIZE;
        let s = pool.get(size).unwrap();
        let base = s.base();
        pool.put(size, s);
        assert_eq!(pool.pooled(size), 1);
        let again = pool.get(size).unwrap();
        assert_eq!(again.base(), base, "the pooled stack is handed out again");
        assert_eq!(pool.pooled(size), 0);
        assert_eq!(
            again.base().get() - guard_start(&again),
            size + overflow::page_size()
        );
    }
}
