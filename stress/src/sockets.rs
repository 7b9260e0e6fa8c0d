//! Which process holds which TCP socket: the rows of `/proc/PID/net/tcp` and `tcp6` matched,
//! by inode, against the process's fds.
//!
//! One file for two crates: `zstress` (`procs`, `bench`) and the test kit (through `#[path]`),
//! so that both read the kernel's tables the same way.

use std::io;

/// `st` of an established connection.
pub const ESTABLISHED: &str = "01";
/// `st` of a listening socket.
pub const LISTEN: &str = "0A";

/// How many of `pid`'s TCP sockets (IPv4 or IPv6) with local port `port` are in `state`.
///
/// # Errors
/// `pid` does not exist or its fds are not readable.
pub fn count_of(pid: i32, port: u16, state: &str) -> io::Result<usize> {
    let mut inodes = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(link) = std::fs::read_link(fd?.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        if let Some(ino) = link
            .strip_prefix("socket:[")
            .and_then(|r| r.strip_suffix(']'))
        {
            inodes.push(ino.to_string());
        }
    }
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        n += in_state(&text, port, state)
            .filter(|ino| inodes.iter().any(|i| i == ino))
            .count();
    }
    Ok(n)
}

/// Whether `pid` holds a socket listening on TCP `port` (any local address). A connect that
/// succeeds may reach another process's listener on a reused port; this tells whose it is.
pub fn listens_on(pid: i32, port: u16) -> bool {
    count_of(pid, port, LISTEN).is_ok_and(|n| n > 0)
}

/// The inodes of a `/proc/net/tcp` table's sockets in `state` with local port `port`.
pub fn in_state<'a>(table: &'a str, port: u16, state: &'a str) -> impl Iterator<Item = &'a str> {
    let want = format!(":{port:04X}");
    table.lines().skip(1).filter_map(move |line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let ok = f.len() > 9 && f[1].ends_with(&want) && f[3] == state;
        ok.then(|| f[9])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_by_local_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1
   1: 0100007F:1F40 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 222 1
   2: 0100007F:C350 0100007F:1F40 01 00000000:00000000 00:00000000 00000000     0        0 333 1
   3: 0100007F:1F41 0100007F:C351 01 00000000:00000000 00:00000000 00000000     0        0 444 1
   4: 0100007F:1F40 0100007F:C352 06 00000000:00000000 00:00000000 00000000     0        0 555 1
   5: 0100007F:1F40 0100007F:C353 01 00000000:00000000 00:00000000 00000000     0        0
";
        // 8000 = 0x1F40: the listener (0A), the client side (remote 8000), a TIME_WAIT (06)
        // and another port are not counted as established; nor is a line cut before its inode.
        let est = |port| in_state(table, port, ESTABLISHED).collect::<Vec<_>>();
        assert_eq!(est(8000), ["222"]);
        assert_eq!(est(8001), ["444"]);
        assert!(est(80).is_empty());
        assert_eq!(in_state(table, 8000, LISTEN).collect::<Vec<_>>(), ["111"]);
        assert_eq!(in_state(table, 8001, LISTEN).count(), 0);
    }

    #[test]
    fn listens_on_names_the_holder_of_a_listener_only() {
        let me = std::process::id() as i32;
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = v4.local_addr().expect("addr").port();
        assert!(listens_on(me, port));
        // A connected socket on a port is not a listener; it is an established connection.
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let client_port = client.local_addr().expect("addr").port();
        assert!(!listens_on(me, client_port));
        assert_eq!(count_of(me, client_port, ESTABLISHED).expect("fds"), 1);
        // Another process does not hold this one's listener.
        let parent = std::os::unix::process::parent_id() as i32;
        assert!(!listens_on(parent, port));
        drop(v4);
        assert!(!listens_on(me, port));
        assert!(count_of(i32::MAX, port, LISTEN).is_err());
        if let Ok(v6) = std::net::TcpListener::bind("[::1]:0") {
            assert!(listens_on(me, v6.local_addr().expect("addr").port()));
        }
    }
}
