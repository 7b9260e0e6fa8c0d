//! Unit tests of the input buffer: line splitting, limits, compaction and growth.

use super::*;

fn feed(buf: &mut InBuf, want: Want, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let spare = buf.spare(want);
        let n = spare.len().min(rest.len());
        spare[..n].copy_from_slice(&rest[..n]);
        buf.filled(n);
        rest = &rest[n..];
    }
}

fn line(buf: &mut InBuf, max: usize) -> Option<Vec<u8>> {
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
