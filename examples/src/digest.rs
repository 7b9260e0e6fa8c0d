//! The hash-aio digest: N rounds of a 64-bit mixing function, split in chunks run on rayon.
//!
//! Not a cryptographic hash: a deterministic, CPU-bound computation whose result proves that
//! every round ran. Rounds are cut into chunks of [`CHUNK_ROUNDS`]; chunk `i` starts from a
//! seed derived from `i`, and the chunk results are folded in order, so the parallel and the
//! serial computation give the same 128-bit digest.
//!
//! The parallel computation runs in batches of [`BATCH_CHUNKS`] chunks, folded as each batch
//! ends, so its memory does not grow with N (a request of 2^63 rounds must not allocate a
//! result per chunk up front), and it can be cancelled between chunks.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

/// Rounds per parallel chunk.
pub const CHUNK_ROUNDS: u64 = 1 << 16;

/// Chunks per parallel batch: enough to keep every rayon thread busy, few enough that a
/// batch's results stay small (8 bytes each).
pub const BATCH_CHUNKS: u64 = 1024;

const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// One round: the splitmix64 finalizer of `x` plus the golden-ratio increment.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(SEED);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn chunk(index: u64, rounds: u64) -> u64 {
    let mut h = mix(index ^ 0x5851_f42d_4c95_7f2d);
    for _ in 0..rounds {
        h = mix(h);
    }
    h
}

fn chunk_rounds(n: u64, index: u64) -> u64 {
    (n - index * CHUNK_ROUNDS).min(CHUNK_ROUNDS)
}

fn start(n: u64) -> [u64; 2] {
    [mix(n), mix(!n)]
}

fn fold(mut digest: [u64; 2], results: impl Iterator<Item = u64>) -> [u64; 2] {
    for r in results {
        digest[0] = mix(digest[0] ^ r);
        digest[1] = mix(digest[1].rotate_left(17) ^ r);
    }
    digest
}

/// The digest of `n` rounds computed on this thread.
pub fn digest_serial(n: u64) -> [u64; 2] {
    let chunks = n.div_ceil(CHUNK_ROUNDS);
    fold(start(n), (0..chunks).map(|i| chunk(i, chunk_rounds(n, i))))
}

/// The digest of `n` rounds, chunks computed in parallel on rayon's current pool.
pub fn digest_parallel(n: u64) -> [u64; 2] {
    batched(n, BATCH_CHUNKS, &|| false)
}

/// [`digest_parallel`] that gives up (`None`) once `cancel` is set: it is checked before each
/// chunk, so a cancelled job stops within one chunk's rounds on every thread.
pub fn digest_parallel_cancellable(n: u64, cancel: &AtomicBool) -> Option<[u64; 2]> {
    let cancelled = || cancel.load(Ordering::Relaxed);
    let digest = batched(n, BATCH_CHUNKS, &cancelled);
    (!cancelled()).then_some(digest)
}

/// The parallel digest, `batch` chunks at a time (at most `batch` results held). Once
/// `stop()` returns true the remaining chunks are skipped and the result is meaningless.
fn batched(n: u64, batch: u64, stop: &(dyn Fn() -> bool + Sync)) -> [u64; 2] {
    let chunks = n.div_ceil(CHUNK_ROUNDS);
    let mut digest = start(n);
    let mut first = 0;
    while first < chunks && !stop() {
        let end = first.saturating_add(batch).min(chunks);
        let results: Vec<u64> = (first..end)
            .into_par_iter()
            .map(|i| {
                if stop() {
                    0
                } else {
                    chunk(i, chunk_rounds(n, i))
                }
            })
            .collect();
        digest = fold(digest, results.into_iter());
        first = end;
    }
    digest
}

/// The digest as 32 lowercase hex digits.
pub fn to_hex(digest: [u64; 2]) -> String {
    format!("{:016x}{:016x}", digest[0], digest[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_equals_serial() {
        for n in [
            0,
            1,
            2,
            CHUNK_ROUNDS - 1,
            CHUNK_ROUNDS,
            CHUNK_ROUNDS + 1,
            5 * CHUNK_ROUNDS + 3,
        ] {
            assert_eq!(digest_parallel(n), digest_serial(n), "n={n}");
        }
    }

    #[test]
    fn batches_of_any_size_give_the_serial_digest() {
        let n = 5 * CHUNK_ROUNDS + 3;
        for batch in [1, 2, 4, 5, 6, 7, u64::MAX] {
            assert_eq!(
                batched(n, batch, &|| false),
                digest_serial(n),
                "batch={batch}"
            );
        }
    }

    #[test]
    fn cancellation_stops_before_the_next_chunk() {
        use std::sync::atomic::AtomicU64;
        let cancel = AtomicBool::new(true);
        // 2^64 - 1 rounds: only an early stop returns (and no memory per chunk is taken).
        assert_eq!(digest_parallel_cancellable(u64::MAX, &cancel), None);
        let n = 3 * CHUNK_ROUNDS;
        assert_eq!(
            digest_parallel_cancellable(n, &AtomicBool::new(false)),
            Some(digest_serial(n))
        );
        // Stop after the first check: no chunk after it is computed, the loop ends.
        let checks = AtomicU64::new(0);
        let stop = || checks.fetch_add(1, Ordering::Relaxed) >= 1;
        batched(u64::MAX, 1, &stop);
        assert!(checks.load(Ordering::Relaxed) <= 3, "{checks:?}");
    }

    #[test]
    fn known_answers() {
        // Computed independently (a Python transcription of this module's definition), so
        // a change to the mixing, chunking or folding shows up here.
        for (n, hex) in [
            (0, "e220a8397b1dcdafe4d971771b652c20"),
            (1, "f5173e0eb6eabaa9c30085f1741aac8d"),
            (CHUNK_ROUNDS + 1, "947556fc5e29a20739ad307364078183"),
            (3 * CHUNK_ROUNDS + 5, "f0b8285cdc73b0ddb41b0aa6bb52b573"),
        ] {
            assert_eq!(to_hex(digest_serial(n)), hex, "n={n}");
            assert_eq!(to_hex(digest_parallel(n)), hex, "n={n}");
        }
    }

    #[test]
    fn digests_differ_and_render_as_32_hex_digits() {
        let a = to_hex(digest_serial(1000));
        let b = to_hex(digest_serial(1001));
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
