//! Unit tests of the input buffer: line splitting, limits, compaction and growth.

use super::*;

/// Copies `bytes` into the buffer the way the worker's reads do, as much as `spare` offers
/// at a time (an empty offer is a bug that would make a reader spin: it fails the test).
pub(super) fn feed(buf: &mut InBuf, want: Want, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let spare = buf.spare(want);
        assert!(!spare.is_empty(), "spare offered no room for {want:?}");
        let n = spare.len().min(rest.len());
        spare[..n].copy_from_slice(&rest[..n]);
        buf.filled(n);
        rest = &rest[n..];
    }
}

/// Empties this thread's pool (tests may share a thread with `--test-threads 1`).
pub(super) fn clear_pool() {
    POOL.with_borrow_mut(|p| {
        p.bufs.clear();
        p.bytes = 0;
    });
}

/// This thread's pool: (buffers, bytes).
pub(super) fn pooled() -> (usize, usize) {
    POOL.with_borrow(|p| (p.bufs.len(), p.bytes))
}

pub(super) fn line(buf: &mut InBuf, max: usize) -> Option<Vec<u8>> {
    buf.take(Want::Until(b'\n', max))
        .map(|r| r.expect("line within max"))
}

#[test]
fn lines_split_across_partial_reads() {
    let mut b = InBuf::default();
    let want = Want::Until(b'\n', 100);
    feed(&mut b, want, b"hel");
    assert_eq!(line(&mut b, 100), None);
    feed(&mut b, want, b"lo\nwor");
    assert_eq!(line(&mut b, 100).as_deref(), Some(&b"hello"[..]));
    assert_eq!(line(&mut b, 100), None);
    feed(&mut b, want, b"ld\n\n x \r\n");
    assert_eq!(line(&mut b, 100).as_deref(), Some(&b"world"[..]));
    assert_eq!(line(&mut b, 100).as_deref(), Some(&b""[..]));
    assert_eq!(line(&mut b, 100).as_deref(), Some(&b" x \r"[..]));
    assert_eq!(line(&mut b, 100), None);
    assert_eq!(b.len(), 0);
}

#[test]
fn byte_by_byte_line_is_scanned_once_and_found() {
    let mut b = InBuf::default();
    let text = vec![b'a'; 10_000];
    for &c in &text {
        feed(&mut b, Want::Until(b'\n', 20_000), &[c]);
        assert_eq!(line(&mut b, 20_000), None);
    }
    feed(&mut b, Want::Until(b'\n', 20_000), b"\n");
    assert_eq!(line(&mut b, 20_000), Some(text));
}

#[test]
fn line_longer_than_max_is_an_error() {
    let mut b = InBuf::default();
    feed(&mut b, Want::Until(b'\n', 4), b"12345");
    let err = b
        .take(Want::Until(b'\n', 4))
        .expect("decided")
        .expect_err("too long");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let mut b = InBuf::default();
    feed(&mut b, Want::Until(b'\n', 4), b"12345\n");
    assert!(b.take(Want::Until(b'\n', 4)).expect("decided").is_err());
    let mut b = InBuf::default();
    feed(&mut b, Want::Until(b'\n', 4), b"1234\n");
    assert_eq!(line(&mut b, 4).as_deref(), Some(&b"1234"[..]));
}

#[test]
fn exact_and_some() {
    let mut b = InBuf::default();
    feed(&mut b, Want::Exact(5), b"abc");
    assert!(b.take(Want::Exact(5)).is_none());
    feed(&mut b, Want::Exact(5), b"defgh");
    assert_eq!(b.take(Want::Exact(5)).expect("5").expect("ok"), b"abcde");
    assert_eq!(b.take(Want::Some(2)).expect("some").expect("ok"), b"fg");
    assert_eq!(b.take(Want::Some(100)).expect("some").expect("ok"), b"h");
    assert!(b.take(Want::Some(100)).is_none());
}

#[test]
fn large_exact_read_grows_the_buffer() {
    let mut b = InBuf::default();
    let big: Vec<u8> = (0..1_048_576u32).map(|i| i as u8).collect();
    feed(&mut b, Want::Exact(big.len()), &big);
    assert_eq!(
        b.take(Want::Exact(big.len())).expect("all").expect("ok"),
        big
    );
    assert_eq!(b.data.len(), 0, "large storage released once empty");
}

#[test]
fn other_delimiters() {
    let mut b = InBuf::default();
    let want = Want::Until(0, 8);
    feed(&mut b, want, b"abc\0de\nf\0");
    assert_eq!(b.take(want).expect("rec").expect("ok"), b"abc");
    assert_eq!(b.take(want).expect("rec").expect("ok"), b"de\nf");
    assert!(b.take(want).is_none());
    feed(&mut b, want, b"123456789");
    let err = b.take(want).expect("decided").expect_err("too long");
    assert!(err.to_string().contains("0x00"), "{err}");
}

#[test]
fn eof_results() {
    let mut b = InBuf::default();
    assert_eq!(b.take_at_eof(Want::Until(b'\n', 10)).expect("ok"), None);
    feed(&mut b, Want::Until(b'\n', 10), b"tail");
    assert_eq!(
        b.take_at_eof(Want::Until(b'\n', 10))
            .expect("ok")
            .as_deref(),
        Some(&b"tail"[..])
    );
    feed(&mut b, Want::Exact(10), b"abc");
    let err = b.take_at_eof(Want::Exact(10)).expect_err("short");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn feed_of_nothing_returns() {
    let mut b = InBuf::default();
    feed(&mut b, Want::Until(b'\n', 4), b"");
    assert_eq!(b.len(), 0);
    assert_eq!(line(&mut b, 4), None);
}

#[test]
fn a_line_of_exactly_max_bytes_ended_by_a_later_read() {
    let want = Want::Until(b'\n', 4);
    let mut b = InBuf::default();
    feed(&mut b, want, b"12");
    assert_eq!(line(&mut b, 4), None);
    feed(&mut b, want, b"34");
    assert_eq!(line(&mut b, 4), None, "max bytes and no newline yet: wait");
    feed(&mut b, want, b"\nab");
    assert_eq!(line(&mut b, 4).as_deref(), Some(&b"1234"[..]));
    assert_eq!(b.len(), 2);
    // One byte more than max with no newline is decided at once.
    feed(&mut b, want, b"cde");
    assert!(b.take(want).expect("decided").is_err());
}

#[test]
fn a_line_limit_of_usize_max_is_no_limit() {
    let want = Want::Until(b'\n', usize::MAX);
    let mut b = InBuf::default();
    assert!(!b.spare(want).is_empty());
    feed(&mut b, want, b"abc");
    assert_eq!(line(&mut b, usize::MAX), None);
    feed(&mut b, want, b"def\nx");
    assert_eq!(line(&mut b, usize::MAX).as_deref(), Some(&b"abcdef"[..]));
    let mut b = InBuf::default();
    feed(&mut b, Want::Until(0, usize::MAX - 1), b"z\0");
    assert_eq!(
        b.take(Want::Until(0, usize::MAX - 1))
            .expect("rec")
            .expect("ok"),
        b"z"
    );
}

#[test]
fn exact_read_storage_grows_with_the_data_not_the_request() {
    // A peer-supplied length must not be allocated before the bytes arrive.
    let want = Want::Exact(64 << 20);
    let mut b = InBuf::default();
    assert!(b.spare(want).len() <= 2 * MIN_READ);
    feed(&mut b, want, b"0123456789");
    assert!(b.data.len() <= 2 * MIN_READ, "storage {}", b.data.len());
    let chunk = vec![7u8; 100_000];
    for _ in 0..10 {
        feed(&mut b, want, &chunk);
        assert!(b.take(want).is_none());
        assert!(
            b.data.len() <= 2 * b.len() + MIN_READ,
            "storage {} for {} bytes",
            b.data.len(),
            b.len()
        );
    }
    let err = b.take_at_eof(want).expect_err("short");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(
        err.to_string().contains("after 1000010 of 67108864 bytes"),
        "{err}"
    );
}

#[test]
fn huge_exact_read_completes_with_what_arrived() {
    let want = Want::Exact(usize::MAX);
    let mut b = InBuf::default();
    feed(&mut b, want, b"abc");
    assert!(b.take(want).is_none());
    assert!(b.data.len() <= 2 * MIN_READ);
}

/// Reads `stream` the way the worker does (as much as each `spare` offers) while taking
/// every complete line, and returns the lines and the largest storage seen.
fn pipeline(stream: &[u8], max: usize) -> (Vec<Vec<u8>>, usize) {
    let want = Want::Until(b'\n', max);
    let mut b = InBuf::default();
    let (mut lines, mut largest) = (Vec::new(), 0);
    let mut rest = stream;
    while !rest.is_empty() {
        let spare = b.spare(want);
        let n = spare.len().min(rest.len());
        assert!(n > 0, "spare offered no room");
        spare[..n].copy_from_slice(&rest[..n]);
        b.filled(n);
        rest = &rest[n..];
        largest = largest.max(b.data.len());
        while let Some(l) = line(&mut b, max) {
            lines.push(l);
            // Each line consumes at least its newline: more would be a take that spins.
            assert!(lines.len() <= stream.len(), "more lines than input bytes");
        }
    }
    (lines, largest)
}

#[test]
fn pipelined_lines_keep_storage_bounded() {
    let mut stream = Vec::new();
    let mut want = Vec::new();
    for i in 0..50_000 {
        let l = format!("line {i} {}", "x".repeat(i % 97));
        stream.extend_from_slice(l.as_bytes());
        stream.push(b'\n');
        want.push(l.into_bytes());
    }
    let (lines, largest) = pipeline(&stream, 200);
    assert_eq!(lines, want);
    // Compaction reuses the storage: it never grows with the total input.
    assert!(largest <= 2 * MIN_READ, "storage grew to {largest}");
}

#[test]
fn compaction_moves_a_partial_line_to_the_front_instead_of_growing() {
    let want = Want::Until(b'\n', 100);
    let mut b = InBuf::default();
    let mut first = b"yyyyyyyyy\n".repeat(409);
    first.extend_from_slice(b"abcdef");
    assert_eq!(first.len(), MIN_READ);
    feed(&mut b, want, &first);
    assert_eq!(b.data.len(), MIN_READ, "one read's worth of storage");
    for _ in 0..409 {
        assert_eq!(line(&mut b, 100).as_deref(), Some(&b"yyyyyyyyy"[..]));
    }
    assert_eq!(line(&mut b, 100), None);
    // Full storage, 6 bytes left at its end: compacted, not grown.
    assert_eq!(b.spare(want).len(), MIN_READ - 6);
    assert_eq!(b.data.len(), MIN_READ);
    feed(&mut b, want, b"gh\n");
    assert_eq!(line(&mut b, 100).as_deref(), Some(&b"abcdefgh"[..]));
    assert_eq!(b.len(), 0);
}

#[test]
fn growth_keeps_the_buffered_bytes_and_empty_storage_is_pooled() {
    let want = Want::Until(b'\n', 3 * MIN_READ);
    let mut b = InBuf::default();
    let long = vec![b'q'; 2 * MIN_READ + 5];
    feed(&mut b, want, &long);
    assert!(b.data.len() >= long.len() && b.data.len() <= 4 * MIN_READ);
    feed(&mut b, want, b"\n");
    assert_eq!(line(&mut b, 3 * MIN_READ), Some(long));
    assert_eq!(b.data.len(), 0, "emptied: the storage went to the pool");
}

#[test]
fn spare_offers_at_least_what_is_needed_and_copies_only_when_short() {
    let mut b = InBuf::default();
    feed(&mut b, Want::Some(100), &[b'x'; 100]);
    assert_eq!(b.data.len(), MIN_READ);
    assert_eq!(b.take(Want::Some(10)).expect("some").expect("ok").len(), 10);
    // Exactly the room needed is left past the end: no compaction.
    assert_eq!(b.spare(Want::Some(MIN_READ - 100)).len(), MIN_READ - 100);
    assert_eq!((b.start, b.end), (10, 100));
    // One byte more: compacted, not grown.
    assert_eq!(b.spare(Want::Some(MIN_READ - 99)).len(), MIN_READ - 90);
    assert_eq!((b.start, b.end, b.data.len()), (0, 90, MIN_READ));
    assert_eq!(
        b.take(Want::Some(1000)).expect("some").expect("ok"),
        [b'x'; 90]
    );
    // Compaction that frees exactly what is needed does not grow the storage either.
    feed(&mut b, Want::Exact(MIN_READ), &[b'y'; MIN_READ]);
    assert_eq!(b.data.len(), MIN_READ);
    assert_eq!(b.take(Want::Some(96)).expect("some").expect("ok").len(), 96);
    assert_eq!(b.spare(Want::Some(96)).len(), 96);
    assert_eq!(b.data.len(), MIN_READ);
    // Full storage: it grows, and offers a whole read's worth.
    feed(&mut b, Want::Some(96), &[b'z'; 96]);
    assert!(b.spare(Want::Exact(usize::MAX)).len() >= MIN_READ);
    assert_eq!(b.data.len(), 2 * MIN_READ);
}

#[test]
fn storage_of_keep_capacity_is_pooled_and_larger_is_freed() {
    clear_pool();
    let mut b = InBuf::default();
    let n = KEEP_CAPACITY / 2 + 1;
    feed(&mut b, Want::Exact(n), &vec![1; n]);
    assert_eq!(
        b.data.len(),
        KEEP_CAPACITY,
        "doubling from MIN_READ reaches it exactly"
    );
    let storage = b.data.as_ptr();
    assert_eq!(b.take(Want::Exact(n)).expect("all").expect("ok").len(), n);
    assert_eq!(b.data.len(), 0, "pooled once empty");
    assert_eq!(pooled(), (1, KEEP_CAPACITY));
    b.spare(Want::Exact(n));
    assert_eq!(
        b.data.as_ptr(),
        storage,
        "taken back from the pool by the next read"
    );
    assert_eq!(pooled(), (0, 0));
    feed(
        &mut b,
        Want::Exact(KEEP_CAPACITY + 1),
        &vec![2; KEEP_CAPACITY + 1],
    );
    assert!(b.data.len() > KEEP_CAPACITY);
    assert_eq!(
        b.take(Want::Exact(KEEP_CAPACITY + 1))
            .expect("all")
            .expect("ok")
            .len(),
        KEEP_CAPACITY + 1
    );
    assert_eq!(b.data.len(), 0, "released once empty");
    assert_eq!(pooled(), (0, 0), "larger storage is freed, not pooled");
}

#[test]
fn some_of_zero_takes_one_byte() {
    let mut b = InBuf::default();
    assert_eq!(b.spare(Want::Some(0)).len(), MIN_READ);
    feed(&mut b, Want::Some(0), b"ab");
    assert_eq!(b.take(Want::Some(0)).expect("some").expect("ok"), b"a");
    assert_eq!(
        b.take_at_eof(Want::Some(0)).expect("ok").as_deref(),
        Some(&b"b"[..])
    );
    assert_eq!(b.take_at_eof(Want::Some(0)).expect("ok"), None);
}
