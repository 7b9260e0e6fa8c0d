//! Stack-overflow detection (unsafe, a leaf of the engine: it imports no other engine file).
//!
//! Contract: the SIGSEGV/SIGBUS handler only performs async-signal-safe work: atomic loads of
//! a table of leaked, never-freed chunks, `write(2)`, `_exit(2)` and `sigaction(2)`. Each
//! worker claims a [`GuardSlot`] and records there, before every switch, which coroutine runs
//! and where its stack's guard page is; a fault inside a guard page prints
//! `coroutine stack overflow (coroutine N, stack size S)` and exits with status 70. Each worker
//! thread also runs on an [`AltStack`], so the handler has a stack to run on.

use std::io;
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering, compiler_fence};

/// The system page size.
pub(crate) fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if p > 0 { p as usize } else { 4096 }
    })
}

/// Guard slots per chunk of the attribution table. The table is a list of chunks that only
/// grows (chunks are leaked, never freed), so the signal handler can walk it with plain
/// atomic loads at any moment, whatever the number of worker threads.
const CHUNK_SLOTS: usize = 64;

/// Which coroutine runs on one worker thread, for the overflow report.
pub(crate) struct GuardSlot {
    used: AtomicBool,
    /// Lowest address of the running coroutine's stack mapping (its guard page), 0 if none.
    guard: AtomicUsize,
    size: AtomicUsize,
    id: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: GuardSlot = GuardSlot {
    used: AtomicBool::new(false),
    guard: AtomicUsize::new(0),
    size: AtomicUsize::new(0),
    id: AtomicU64::new(0),
};

struct Chunk {
    slots: [GuardSlot; CHUNK_SLOTS],
    next: AtomicPtr<Chunk>,
}

static FIRST_CHUNK: Chunk = Chunk {
    slots: [EMPTY_SLOT; CHUNK_SLOTS],
    next: AtomicPtr::new(ptr::null_mut()),
};
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);
static OLD_ACTIONS: OnceLock<[libc::sigaction; 2]> = OnceLock::new();

/// The chunks of the table, first to last. Async-signal-safe: atomic loads only.
fn chunks() -> impl Iterator<Item = &'static Chunk> {
    std::iter::successors(Some(&FIRST_CHUNK), |c| {
        let next = c.next.load(Ordering::Acquire);
        // SAFETY: a non-null `next` was published (Release) by `claim_guard_slot` from a leaked
        // Box, so it points at a fully initialised Chunk that is never freed.
        (!next.is_null()).then(|| unsafe { &*next })
    })
}

/// Claims a guard slot for a worker thread, growing the table when every slot is taken.
pub(crate) fn claim_guard_slot() -> &'static GuardSlot {
    let mut last = &FIRST_CHUNK;
    loop {
        for chunk in chunks() {
            let free = chunk.slots.iter().find(|s| {
                s.used
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            });
            if let Some(slot) = free {
                return slot;
            }
            last = chunk;
        }
        let new = Box::into_raw(Box::new(Chunk {
            slots: [EMPTY_SLOT; CHUNK_SLOTS],
            next: AtomicPtr::new(ptr::null_mut()),
        }));
        if let Err(_other) =
            last.next
                .compare_exchange(ptr::null_mut(), new, Ordering::AcqRel, Ordering::Acquire)
        {
            // Another thread appended first: use its chunk (the loop rescans) and free ours.
            // SAFETY: `new` came from Box::into_raw above and was never published.
            drop(unsafe { Box::from_raw(new) });
        }
    }
}

/// Releases a slot claimed by [`claim_guard_slot`].
pub(crate) fn release_guard_slot(slot: &GuardSlot) {
    slot.guard.store(0, Ordering::Relaxed);
    slot.used.store(false, Ordering::Release);
}

/// Records which coroutine is about to run on the thread owning `slot`.
#[inline]
pub(crate) fn set_running(slot: &GuardSlot, id: u64, guard: usize, size: usize) {
    slot.id.store(id, Ordering::Relaxed);
    slot.size.store(size, Ordering::Relaxed);
    slot.guard.store(guard, Ordering::Relaxed);
    // The handler runs on this same thread; keep the stores before the switch.
    compiler_fence(Ordering::SeqCst);
}

/// Installs the process-wide SIGSEGV/SIGBUS handler once. A failure is remembered and
/// returned to every later caller too (not an `Ok` with no handler behind it).
pub(crate) fn install_overflow_handler() -> io::Result<()> {
    static RESULT: OnceLock<Option<i32>> = OnceLock::new();
    match RESULT.get_or_init(|| {
        install()
            .err()
            .map(|e| e.raw_os_error().unwrap_or(libc::EINVAL))
    }) {
        None => Ok(()),
        Some(errno) => Err(io::Error::from_raw_os_error(*errno)),
    }
}

fn install() -> io::Result<()> {
    PAGE_SIZE.store(page_size(), Ordering::Relaxed);
    // SAFETY: zeroed sigaction is a valid "no handler" value; we fill in every field used.
    let mut old: [libc::sigaction; 2] = unsafe { std::mem::zeroed() };
    for (i, sig) in [libc::SIGSEGV, libc::SIGBUS].into_iter().enumerate() {
        // SAFETY: sigaction with a zeroed struct as output buffer is sound.
        if unsafe { libc::sigaction(sig, ptr::null(), &mut old[i]) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let _ = OLD_ACTIONS.set(old);
    for sig in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: we build a valid sigaction pointing at an `extern "C"` handler with the
        // SA_SIGINFO signature, and an empty mask initialised by sigemptyset.
        let rc = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_fault as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE_SIZE.load(Ordering::Relaxed);
    for s in chunks().flat_map(|c| c.slots.iter()) {
        let guard = s.guard.load(Ordering::Relaxed);
        if guard != 0 && addr >= guard && addr < guard + page {
            report_overflow(s.id.load(Ordering::Relaxed), s.size.load(Ordering::Relaxed));
        }
    }
    // Not a coroutine guard page: restore the previous handler and return, so the faulting
    // instruction runs again and faults into it (Rust's own overflow handler, or the default).
    let idx = if sig == libc::SIGSEGV { 0 } else { 1 };
    if let Some(old) = OLD_ACTIONS.get() {
        // SAFETY: restoring a sigaction previously returned by the kernel.
        unsafe { libc::sigaction(sig, &old[idx], ptr::null_mut()) };
    } else {
        // SAFETY: resetting to the default disposition is always valid.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

fn report_overflow(id: u64, size: usize) -> ! {
    let mut buf = [0u8; 128];
    let mut n = 0;
    let (id_digits, id_len) = fmt_u64(id);
    let (size_digits, size_len) = fmt_u64(size as u64);
    for part in [
        &b"coroutine stack overflow (coroutine "[..],
        &id_digits[..id_len],
        &b", stack size "[..],
        &size_digits[..size_len],
        &b")\n"[..],
    ] {
        buf[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    // SAFETY: write(2) and _exit(2) are async-signal-safe; buf[..n] is initialised.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), n);
        libc::_exit(70)
    }
}

/// Formats `v` in decimal without allocating; returns the digits and their count.
fn fmt_u64(mut v: u64) -> ([u8; 20], usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let mut out = [0u8; 20];
    let len = tmp.len() - i;
    out[..len].copy_from_slice(&tmp[i..]);
    (out, len)
}

/// Makes the `page` bytes at `map` inaccessible (a guard page), reporting `mprotect`'s failure.
///
/// # Safety
/// `map .. map + page` must be a page-aligned part of a mapping the caller owns that no
/// reference points into.
unsafe fn protect_guard_page(map: *mut libc::c_void, page: usize) -> io::Result<()> {
    // SAFETY: per the caller's contract, nothing accesses these bytes.
    if unsafe { libc::mprotect(map, page, libc::PROT_NONE) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An alternate signal stack installed for the lifetime of a worker thread.
pub(crate) struct AltStack {
    map: *mut libc::c_void,
    len: usize,
    old: libc::stack_t,
}

impl AltStack {
    const SIZE: usize = 64 * 1024;

    /// Maps a guard-paged 64 KiB stack and installs it as this thread's signal stack.
    pub(crate) fn install() -> io::Result<AltStack> {
        let page = page_size();
        let len = Self::SIZE + page;
        // SAFETY: anonymous private mapping with no address hint; the result is checked.
        let map = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `map` is a fresh mapping of `len >= page` bytes, page-aligned, used by nothing
        // else yet.
        if let Err(e) = unsafe { protect_guard_page(map, page) } {
            // SAFETY: unmapping the fresh mapping above, which nothing references.
            unsafe { libc::munmap(map, len) };
            return Err(e);
        }
        // SAFETY: `map + page .. map + len` is the mapping's writable part, below which the
        // guard page is now in place (checked above). zeroed stack_t values are valid for
        // sigaltstack.
        unsafe {
            let new = libc::stack_t {
                ss_sp: map.cast::<u8>().add(page).cast(),
                ss_flags: 0,
                ss_size: Self::SIZE,
            };
            let mut old: libc::stack_t = std::mem::zeroed();
            if libc::sigaltstack(&new, &mut old) != 0 {
                let e = io::Error::last_os_error();
                libc::munmap(map, len);
                return Err(e);
            }
            Ok(AltStack { map, len, old })
        }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: we are not running on the alternate stack (drop happens in normal worker
        // code); restore the previous one, then unmap ours, which nothing references anymore.
        unsafe {
            libc::sigaltstack(&self.old, ptr::null_mut());
            libc::munmap(self.map, self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_slots_grow_past_one_chunk_and_are_reused() {
        let n = 3 * CHUNK_SLOTS + 5;
        let slots: Vec<&'static GuardSlot> = (0..n).map(|_| claim_guard_slot()).collect();
        for (i, a) in slots.iter().enumerate() {
            assert!(
                slots[i + 1..].iter().all(|b| !ptr::eq(*a, *b)),
                "slot {i} handed out twice"
            );
        }
        assert!(chunks().count() >= 4);
        for s in &slots {
            release_guard_slot(s);
        }
        let again = claim_guard_slot();
        assert!(
            slots.iter().any(|s| ptr::eq(*s, again)),
            "a released slot is reused"
        );
        release_guard_slot(again);
    }

    #[test]
    fn failed_mprotect_is_an_error() {
        let page = page_size();
        // SAFETY: a fresh two-page anonymous mapping, checked, unmapped at the end.
        unsafe {
            let map = libc::mmap(
                ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(map, libc::MAP_FAILED);
            // Not page-aligned: mprotect fails with EINVAL.
            let e = protect_guard_page(map.cast::<u8>().add(1).cast(), page).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
            assert!(protect_guard_page(map, page).is_ok());
            libc::munmap(map, 2 * page);
        }
    }
}
