//! Test helpers: in-test line servers (TCP and unix) on threads, and running `zstress`; ports,
//! clients and waits come from the testkit.
#![allow(dead_code, unreachable_pub, unused_imports)]

pub use zmaster_testkit::{LineClient, PATIENCE, closed_port, free_port, wait_for, wait_until};

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Output};

/// How the in-test server answers each line.
#[derive(Clone, Copy)]
pub enum Behaviour {
    /// Echo each line (with `banner` lines first on connect).
    Echo { banner: usize },
    /// Reply with a different line.
    Wrong,
    /// Read a line, then close without replying.
    CloseAfterRead,
}

fn serve<S: std::io::Read + Write>(s: S, b: Behaviour) {
    let mut r = BufReader::new(s);
    if let Behaviour::Echo { banner } = b {
        for i in 0..banner {
            if writeln!(r.get_mut(), "220 banner {i}").is_err() {
                return;
            }
        }
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply: &[u8] = match b {
            Behaviour::Echo { .. } => &line,
            Behaviour::Wrong => b"not-what-you-sent\n",
            Behaviour::CloseAfterRead => return,
        };
        if r.get_mut().write_all(reply).is_err() {
            return;
        }
    }
}

/// Start a TCP line server on 127.0.0.1 (thread per connection; lives until the test exits).
pub fn tcp_server(b: Behaviour) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = l.local_addr().expect("local_addr");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve(s, b));
        }
    });
    addr
}

/// Start a unix-socket echo server at `path`.
pub fn unix_server(path: &Path) {
    let l = UnixListener::bind(path).expect("bind unix socket");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve(s, Behaviour::Echo { banner: 0 }));
        }
    });
}

/// Run the built `zstress` with `args`.
pub fn zstress(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zstress"))
        .args(args)
        .output()
        .expect("run zstress")
}

/// The last stdout line (the JSON object with `--json`).
pub fn last_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// The first number after `"key":` in a JSON text.
pub fn num(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let digits: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{key} not a number in {json}"))
}

/// The example servers the chaos tests run under zmaster.
pub const SERVERS: [&str; 2] = ["echo-aio", "echo-coroutine"];

/// The directory holding `zmaster` and [`SERVERS`] (next to `zstress`), or `None` (with a
/// line saying what is missing) when they are not built.
pub fn bins() -> Option<std::path::PathBuf> {
    let dir = std::path::PathBuf::from(env!("CARGO_BIN_EXE_zstress"))
        .parent()?
        .to_path_buf();
    let missing: Vec<&str> = std::iter::once("zmaster")
        .chain(SERVERS)
        .filter(|b| !dir.join(b).is_file())
        .collect();
    if !missing.is_empty() {
        eprintln!("skipped: {missing:?} not built in {}", dir.display());
        return None;
    }
    Some(dir)
}
