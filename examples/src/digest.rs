//! The hash-aio digest: N rounds of a 64-bit mixing function, split in chunks run on rayon.
//!
//! Not a cryptographic hash: a deterministic, CPU-bound computation whose result proves that
//! every round ran. Rounds are cut into chunks of [`CHUNK_ROUNDS`]; chunk `i` starts from a
//! seed derived from `i`, and the chunk results are folded in order, so the parallel and the
//! serial computation give the same 128-bit digest.

use rayon::prelude::*;

/// Rounds per parallel chunk.
pub const CHUNK_ROUNDS: u64 = 1 << 16;

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

fn fold(n: u64, results: impl Iterator<Item = u64>) -> [u64; 2] {
    let mut digest = [mix(n), mix(!n)];
    for r in results {
        digest[0] = mix(digest[0] ^ r);
        digest[1] = mix(digest[1].rotate_left(17) ^ r);
    }
    digest
}

/// The digest of `n` rounds computed on this thread.
pub fn digest_serial(n: u64) -> [u64; 2] {
    let chunks = n.div_ceil(CHUNK_ROUNDS);
    fold(n, (0..chunks).map(|i| chunk(i, chunk_rounds(n, i))))
}

/// The digest of `n` rounds, chunks computed in parallel on rayon's current pool.
pub fn digest_parallel(n: u64) -> [u64; 2] {
    let chunks = n.div_ceil(CHUNK_ROUNDS);
    let results: Vec<u64> = (0..chunks)
        .into_par_iter()
        .map(|i| chunk(i, chunk_rounds(n, i)))
        .collect();
    fold(n, results.into_iter())
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
    fn digests_differ_and_render_as_32_hex_digits() {
        let a = to_hex(digest_serial(1000));
        let b = to_hex(digest_serial(1001));
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
