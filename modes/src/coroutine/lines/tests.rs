//! Unit tests of [`LineReader`]: the `take(max + 1).read_until(b'\n')` contract, what it
//! keeps between calls, and its syscalls (reads) per line.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};

use super::{LineReader, MAX_ROOM, MIN_ROOM};

/// A reader returning the given chunks one `read` at a time (a chunk larger than the
/// caller's slice is split), counting the reads.
struct Chunks {
    chunks: VecDeque<io::Result<Vec<u8>>>,
    reads: usize,
    largest_offer: usize,
}

fn chunks(parts: &[&[u8]]) -> Chunks {
    Chunks {
        chunks: parts.iter().map(|p| Ok(p.to_vec())).collect(),
        reads: 0,
        largest_offer: 0,
    }
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        self.largest_offer = self.largest_offer.max(buf.len());
        match self.chunks.pop_front() {
            None => Ok(0),
            Some(Err(e)) => Err(e),
            Some(Ok(mut c)) => {
                let n = c.len().min(buf.len());
                buf[..n].copy_from_slice(&c[..n]);
                if n < c.len() {
                    self.chunks.push_front(Ok(c.split_off(n)));
                }
                Ok(n)
            }
        }
    }
}

/// Every line `LineReader` returns for `parts` with `max`, each call starting from an empty
/// `Vec`, until end of stream.
fn all_lines(parts: &[&[u8]], max: usize) -> Vec<Vec<u8>> {
    let mut r = LineReader::new(chunks(parts));
    let mut out = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r.read_line(&mut line, max).expect("read");
        assert_eq!(n, line.len());
        if n == 0 {
            return out;
        }
        out.push(line);
    }
}

/// The same with `BufReader` + `take(max + 1)` + `read_until`, the contract it follows.
fn reference(parts: &[&[u8]], max: usize) -> Vec<Vec<u8>> {
    let mut r = BufReader::new(chunks(parts));
    let mut out = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = (&mut r)
            .take(max as u64 + 1)
            .read_until(b'\n', &mut line)
            .expect("read");
        if n == 0 {
            return out;
        }
        out.push(line);
    }
}

#[test]
fn lines_match_the_bufreader_contract() {
    let cases: &[(&[&[u8]], usize)] = &[
        (&[b"hello\n"], 100),
        (&[b"hel", b"lo\nwor", b"ld\n\n x \r\n", b"tail"], 100),
        (&[b"a\nb\nc\nd\n"], 100),
        (&[b"12345678\n", b"abc\n"], 4),
        (&[b"1234", b"5678", b"90\nxy"], 3),
        (&[b"exact\n"], 5),
        (&[b"exact!\n"], 5),
        (&[b"\n\n\n"], 0),
        (&[b"ab\ncd"], 0),
        (&[], 10),
    ];
    for (parts, max) in cases {
        assert_eq!(
            all_lines(parts, *max),
            reference(parts, *max),
            "{parts:?} max {max}"
        );
    }
}

#[test]
fn a_long_line_in_small_reads_grows_the_line_not_the_reader() {
    let long = vec![b'q'; 20_000];
    let mut parts: Vec<&[u8]> = long.chunks(700).collect();
    parts.push(b"\nnext\n");
    assert_eq!(all_lines(&parts, 1 << 20), reference(&parts, 1 << 20));
}

#[test]
fn ping_pong_costs_one_read_per_line_and_keeps_nothing() {
    let mut r = LineReader::new(chunks(&[b"ping 1\n", b"ping 2\n", b"ping 3\n"]));
    let mut line = Vec::with_capacity(128);
    for i in 1..=3 {
        line.clear();
        assert_eq!(r.read_line(&mut line, 1000).expect("read"), 7);
        assert_eq!(line, format!("ping {i}\n").as_bytes());
        assert_eq!(r.get_ref().reads, i, "one read per line");
        assert_eq!(r.rest.capacity(), 0, "nothing kept between lines");
    }
    assert_eq!(
        line.capacity(),
        MIN_ROOM,
        "the caller's buffer grew once to a read's worth, then was reused"
    );
}

#[test]
fn pipelined_lines_are_kept_and_freed_once_returned() {
    let mut r = LineReader::new(chunks(&[b"one\ntwo\nthr", b"ee\n"]));
    let mut line = Vec::new();
    assert_eq!(r.read_line(&mut line, 100).expect("read"), 4);
    assert_eq!(r.buffered(), b"two\nthr");
    line.clear();
    assert_eq!(r.read_line(&mut line, 100).expect("read"), 4);
    assert_eq!(
        (line.as_slice(), r.buffered()),
        (&b"two\n"[..], &b"thr"[..])
    );
    line.clear();
    assert_eq!(r.read_line(&mut line, 100).expect("read"), 6);
    assert_eq!(line, b"three\n");
    assert_eq!(r.rest.capacity(), 0, "freed once everything was returned");
    assert_eq!(r.get_ref().reads, 2);
}

#[test]
fn appends_to_what_the_line_holds() {
    let mut r = LineReader::new(chunks(&[b"b\n", b"c\n"]));
    let mut line = b"a".to_vec();
    assert_eq!(r.read_line(&mut line, 1).expect("read"), 2);
    assert_eq!(line, b"ab\n");
    // A line that already ends in `\n` is not a line read: the next one is appended.
    assert_eq!(r.read_line(&mut line, 1).expect("read"), 2);
    assert_eq!(line, b"ab\nc\n");
    // At end of stream the count is of the bytes appended, not of the line.
    let mut r = LineReader::new(chunks(&[b"tail"]));
    let mut line = b"head ".to_vec();
    assert_eq!(r.read_line(&mut line, 100).expect("read"), 4);
    assert_eq!(r.read_line(&mut line, 100).expect("read"), 0);
    assert_eq!(line, b"head tail");
}

#[test]
fn a_read_is_offered_the_spare_capacity() {
    // Spare capacity of exactly MIN_ROOM is used as is, not grown.
    let mut r = LineReader::new(chunks(&[b"x\n"]));
    let mut line = Vec::with_capacity(10 + MIN_ROOM);
    line.extend_from_slice(&[b'p'; 10]);
    let spare = line.capacity() - line.len();
    r.read_line(&mut line, 1000).expect("read");
    assert_eq!(r.get_ref().largest_offer, spare);
    // A large spare capacity is offered whole (below MAX_ROOM), after what the line holds.
    let mut r = LineReader::new(chunks(&[b"y\n"]));
    let mut line = Vec::with_capacity(32 * 1024);
    line.extend_from_slice(&[b'p'; 100]);
    r.read_line(&mut line, 1000).expect("read");
    assert_eq!(r.get_ref().largest_offer, line.capacity() - 100);
    assert!(r.get_ref().largest_offer > 30 * 1024);
}

#[test]
fn errors_are_returned_and_interrupts_retried() {
    let mut src = chunks(&[b"par"]);
    src.chunks
        .push_back(Err(io::Error::from(io::ErrorKind::Interrupted)));
    src.chunks.push_back(Ok(b"tial\n".to_vec()));
    src.chunks
        .push_back(Err(io::Error::from(io::ErrorKind::ConnectionReset)));
    let mut r = LineReader::new(src);
    let mut line = Vec::new();
    assert_eq!(r.read_line(&mut line, 100).expect("interrupt retried"), 8);
    assert_eq!(line, b"partial\n");
    line.clear();
    let err = r.read_line(&mut line, 100).expect_err("reset");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert!(line.is_empty());
}

#[test]
fn no_limit_and_bounded_reads() {
    // max = usize::MAX: the limit saturates instead of overflowing.
    assert_eq!(
        all_lines(&[b"x\ny"], usize::MAX),
        [b"x\n".to_vec(), b"y".to_vec()]
    );
    let mut r = LineReader::new(chunks(&[b"z\n"]));
    let mut line = Vec::with_capacity(4 * MAX_ROOM);
    assert_eq!(r.read_line(&mut line, usize::MAX).expect("read"), 2);
    assert_eq!(
        r.get_ref().largest_offer,
        MAX_ROOM,
        "one read zero-fills at most MAX_ROOM"
    );
}
