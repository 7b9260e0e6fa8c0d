//! The line-echo core shared by the baseline peers (`echo-tokio`, `echo-may`, `echo-epoll`).
//!
//! Semantics (SPEC §9): each received line is sent back as is (with its `\n`); a line
//! `exit` (optionally `exit\r`) closes the connection. A partial line stays buffered.

/// Move every complete line of `inbuf` into `out` (echoed as is) and drop it from `inbuf`.
///
/// Returns `true` when an `exit` line was seen: lines before it are echoed, the `exit` line
/// and everything after it are dropped, and the caller should flush `out` and close.
pub fn echo_lines(inbuf: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
    let mut start = 0;
    let mut exit = false;
    while let Some(nl) = memchr(&inbuf[start..]) {
        let end = start + nl + 1;
        let line = &inbuf[start..end];
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body == b"exit" {
            exit = true;
            start = inbuf.len();
            break;
        }
        out.extend_from_slice(line);
        start = end;
    }
    inbuf.drain(..start);
    exit
}

fn memchr(hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == b'\n')
}

/// Parse the baseline peers' command line: `ADDR [--threads N]` (or `-t N`, `--threads=N`).
///
/// # Errors
/// A one-line usage message.
pub fn parse_peer_args(
    prog: &str,
    args: &[String],
    default_threads: usize,
) -> Result<(String, usize), String> {
    let usage = || format!("usage: {prog} HOST:PORT [--threads N]");
    let mut addr = None;
    let mut threads = default_threads;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = if let Some(v) = a.strip_prefix("--threads=") {
            Some(v.to_string())
        } else if a == "--threads" || a == "-t" {
            Some(it.next().ok_or_else(usage)?.clone())
        } else {
            None
        };
        match v {
            Some(v) => {
                threads = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .ok_or_else(usage)?
            }
            None if a.starts_with('-') => return Err(usage()),
            None if addr.is_none() => addr = Some(a.clone()),
            None => return Err(usage()),
        }
    }
    Ok((addr.ok_or_else(usage)?, threads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_complete_lines_only() {
        let mut inb = b"ab\ncd\nef".to_vec();
        let mut out = Vec::new();
        assert!(!echo_lines(&mut inb, &mut out));
        assert_eq!(out, b"ab\ncd\n");
        assert_eq!(inb, b"ef");
        inb.extend_from_slice(b"\n");
        assert!(!echo_lines(&mut inb, &mut out));
        assert_eq!(out, b"ab\ncd\nef\n");
        assert!(inb.is_empty());
    }

    #[test]
    fn exit_closes() {
        let mut inb = b"x\nexit\r\ny\n".to_vec();
        let mut out = Vec::new();
        assert!(echo_lines(&mut inb, &mut out));
        assert_eq!(out, b"x\n");
        assert!(inb.is_empty());
    }

    #[test]
    fn peer_args() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_peer_args("p", &a(&["127.0.0.1:1", "--threads", "3"]), 1),
            Ok(("127.0.0.1:1".into(), 3))
        );
        assert_eq!(
            parse_peer_args("p", &a(&["--threads=2", "127.0.0.1:1"]), 1),
            Ok(("127.0.0.1:1".into(), 2))
        );
        assert!(parse_peer_args("p", &a(&[]), 1).is_err());
        assert!(parse_peer_args("p", &a(&["x", "--threads", "0"]), 1).is_err());
    }
}
