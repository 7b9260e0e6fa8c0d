//! Issue 12 / SPEC §13, §15: an idle-connection flood against a server started under a soft
//! `RLIMIT_NOFILE` of 1024 (a common systemd default) no longer blocks new clients.
//!
//! Two protections, each shown on its own: the server raises its soft limit to the hard one at
//! start (so 2,000 idle connections fit), and the example's `echo-idle-timeout` cuts idle
//! connections (so even a hard limit of 1024 frees up). The "before" row is a server held at
//! 1024/1024 with the idle timeout off: it is what every server was before both fixes, and new
//! clients wait until the flood closes.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use util::{raise_fd_limit, spawn_alone_with};

const AIO: &str = env!("CARGO_BIN_EXE_echo-aio");
const CO: &str = env!("CARGO_BIN_EXE_echo-coroutine");
const FLOOD: usize = 2_000;

/// Starts `bin` with its nofile limit at (`soft`, `hard`) (`hard` `None`: the test's own).
fn start(bin: &str, soft: u64, hard: Option<u64>, extra: &[&str]) -> (util::Server, SocketAddr) {
    spawn_alone_with(bin, extra, move |command| {
        // SAFETY: the closure runs in the forked child before exec and calls only
        // getrlimit/setrlimit, which are async-signal-safe; it allocates nothing.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                let mut now = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard.unwrap_or(now.rlim_max),
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

/// Opens `n` connections that send nothing; each was accepted (or is queued) by the server.
fn flood(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| TcpStream::connect(addr).unwrap_or_else(|e| panic!("flood connection {i}: {e}")))
        .collect()
}

/// How long a new client waits for its echo, up to `limit` (`None`: not answered by then).
fn new_client_answered_within(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut client = TcpStream::connect(addr).ok()?;
    client.set_read_timeout(Some(limit)).expect("timeout");
    client.write_all(b"hello\n").ok()?;
    let mut got = [0u8; 6];
    match client.read_exact(&mut got) {
        Ok(()) => {
            assert_eq!(&got, b"hello\n");
            Some(start.elapsed())
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(e) => panic!("new client: {e}"),
    }
}

/// Raises this process's nofile limit for the floods (both tests may run at once); false,
/// with a message, when the hard limit is too low.
fn usable() -> bool {
    let want = 3 * FLOOD as u64;
    let have = raise_fd_limit(want);
    if have < want {
        eprintln!("skipped: this test needs {want} fds, the hard limit gives {have}");
        return false;
    }
    true
}

#[test]
fn a_raised_soft_limit_serves_new_clients_during_a_flood() {
    if !usable() {
        return;
    }
    for bin in [AIO, CO] {
        let (_server, addr) = start(bin, 1024, None, &[]);
        let _idle = flood(addr, FLOOD);
        let waited = new_client_answered_within(addr, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{bin}: a new client was not served during the flood"));
        eprintln!(
            "figure: {bin}: soft nofile 1024 raised at start, {FLOOD} idle connections: \
             a new client answered in {waited:?}"
        );
    }
}

#[test]
fn the_idle_timeout_frees_a_server_held_at_1024() {
    if !usable() {
        return;
    }
    for bin in [AIO, CO] {
        // Before (both fixes off): 1024/1024 and no idle timeout; new clients wait.
        let (server, addr) = start(bin, 1024, Some(1024), &["-echo-idle-timeout", "0"]);
        let idle = flood(addr, FLOOD);
        assert!(
            new_client_answered_within(addr, Duration::from_secs(2)).is_none(),
            "{bin}: served although 2,000 idle connections hold a 1024 limit"
        );
        eprintln!("figure: {bin}: before: 1024/1024, no idle timeout: new client not served in 2s");
        drop(idle);
        drop(server);
        // After: the same limit, a 2 s idle timeout cuts the flood and the client is served.
        let (_server, addr) = start(bin, 1024, Some(1024), &["-echo-idle-timeout", "2s"]);
        let _idle = flood(addr, FLOOD);
        let waited = new_client_answered_within(addr, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{bin}: not served after the idle timeout"));
        eprintln!(
            "figure: {bin}: after: 1024/1024, echo-idle-timeout 2s: new client answered in \
             {waited:?}"
        );
    }
}
