//! `zmaster-probe`: a minimal LIB-ZC-protocol server for checking a master setup and for the
//! master's own tests. Under a master it reports what it inherited, then answers every line
//! with `PID <pid> <line>` on every inherited listener until the master softstops it.
//!
//! With `ZM_PROBE_REPORT=DIR` in the environment it first writes `DIR/<pid>`: its argv (one
//! per line), `cwd:` and its working dir, then `fds:` and every open fd with its target —
//! before opening anything itself.
//! `-probe-exit-after DURATION` (or a `.cf` key of that name) makes it exit with status 3 after
//! that long (a crashing server); `probe-ignore-term = yes` makes it ignore SIGTERM. It also
//! writes `DIR/<pid>.addrs`: each listener fd and its local address. FIFO listeners are held
//! open but not served. A line `DETACH` closes fd 4: the master treats the process as
//! detached and starts a replacement.

#![deny(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use zmaster_core::cli::CommandLine;
use zmaster_core::protocol::{self, ListenerKind};

fn report() {
    let Some(dir) = std::env::var_os("ZM_PROBE_REPORT") else {
        return;
    };
    let mut text: String = std::env::args().map(|a| a + "\n").collect();
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    text.push_str(&format!("cwd:\n{cwd}\nfds:\n"));
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        let mut fds: Vec<(i32, String)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                let fd = e.file_name().to_str()?.parse().ok()?;
                let target = std::fs::read_link(e.path()).ok()?.display().to_string();
                let info =
                    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
                let flags = info
                    .lines()
                    .find_map(|l| l.strip_prefix("flags:"))
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                Some((fd, format!("{target} flags={flags}")))
            })
            .collect();
        fds.sort();
        for (fd, target) in fds {
            text.push_str(&format!("{fd} {target}\n"));
        }
    }
    let path = std::path::Path::new(&dir).join(std::process::id().to_string());
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(tmp, path);
    }
}

enum Listener {
    Tcp(std::net::TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// The local address, for the report.
    fn local(&self) -> String {
        match self {
            Listener::Tcp(t) => t.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            Listener::Unix(u) => u
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_default(),
        }
    }
}

static DETACHED: AtomicBool = AtomicBool::new(false);

fn serve<S: std::io::Read + Write + Send + 'static>(stream: S) {
    let pid = std::process::id();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            if line.trim_end() == "DETACH" && !DETACHED.swap(true, Ordering::SeqCst) {
                #[allow(unsafe_code)]
                // SAFETY: fd 4 is the private pipe the master passed (SPEC §5); the DETACHED flag
                // makes sure it is taken over and closed exactly once.
                drop(unsafe { OwnedFd::from_raw_fd(protocol::PRIVATE_FD) });
            }
            let reply = format!("PID {pid} {}\n", line.trim_end_matches('\n'));
            if reader.get_mut().write_all(reply.as_bytes()).is_err() {
                break;
            }
            line.clear();
        }
    });
}

fn main() -> ExitCode {
    report();
    let cli = match CommandLine::parse(std::env::args().skip(1)) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("zmaster-probe: {e}");
            return ExitCode::from(1);
        }
    };
    if cli.positional.first().map(String::as_str) != Some(protocol::MASTER_MARK) {
        eprintln!("usage: zmaster-probe MASTER -server-service name:Tfd,... (started by zmaster)");
        return ExitCode::from(1);
    }
    let config = match cli.server_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zmaster-probe: {e}");
            return ExitCode::from(1);
        }
    };
    let exit_after = config
        .get_duration("probe-exit-after", Duration::ZERO)
        .unwrap_or_default();
    let inherited = match protocol::parse_server_service(config.get_str("server-service", "")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("zmaster-probe: {e}");
            return ExitCode::from(1);
        }
    };
    let mut listeners = Vec::new();
    let mut addrs = String::new();
    for l in &inherited {
        #[allow(unsafe_code)]
        // SAFETY: the master passes these fds open and owned by this process (SPEC §5).
        let fd = unsafe { OwnedFd::from_raw_fd(l.fd) };
        let listener = match l.kind {
            ListenerKind::Unix => Listener::Unix(fd.into()),
            ListenerKind::Inet => Listener::Tcp(fd.into()),
            ListenerKind::Fifo => continue, // held open, not served
        };
        addrs.push_str(&format!("{} {}\n", l.fd, listener.local()));
        listeners.push(listener);
    }
    if let Some(dir) = std::env::var_os("ZM_PROBE_REPORT") {
        let path = std::path::Path::new(&dir).join(format!("{}.addrs", std::process::id()));
        let _ = std::fs::write(path, addrs);
    }
    if config.get_bool("probe-ignore-term", false).unwrap_or(false) {
        // A server that ignores SIGTERM: the master must SIGKILL it at stop.
        let _ = signal_hook::flag::register(
            signal_hook::consts::SIGTERM,
            Arc::new(AtomicBool::new(false)),
        );
    }
    #[allow(unsafe_code)]
    // SAFETY: fd 3 is the generation pipe the master passed (SPEC §5); borrowed for our lifetime.
    let generation = unsafe { BorrowedFd::borrow_raw(protocol::GENERATION_FD) };
    let started = Instant::now();
    loop {
        if !exit_after.is_zero() && started.elapsed() >= exit_after {
            return ExitCode::from(3);
        }
        let mut fds = vec![PollFd::new(generation, PollFlags::empty())];
        for l in &listeners {
            let fd = match l {
                Listener::Tcp(t) => t.as_fd(),
                Listener::Unix(u) => u.as_fd(),
            };
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let _ = poll(&mut fds, PollTimeout::from(100u16));
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            return ExitCode::SUCCESS; // softstop: the master reloaded or died
        }
        let ready: Vec<bool> = fds[1..]
            .iter()
            .map(|f| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
            .collect();
        for (l, ready) in listeners.iter().zip(ready) {
            if !ready {
                continue;
            }
            match l {
                Listener::Tcp(t) => {
                    if let Ok((s, _)) = t.accept() {
                        let _ = s.set_nonblocking(false);
                        serve(s);
                    }
                }
                Listener::Unix(u) => {
                    if let Ok((s, _)) = u.accept() {
                        let _ = s.set_nonblocking(false);
                        serve(s);
                    }
                }
            }
        }
    }
}
