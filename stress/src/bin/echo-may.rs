//! `echo-may ADDR [--threads N]`: line-echo baseline peer on `may` stackful coroutines.
#![deny(unsafe_code)]

use std::io::{Read, Write};
use std::process::ExitCode;

use may::net::{TcpListener, TcpStream};
use zmaster_stress::echo::{echo_lines, parse_peer_args};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (addr, threads) = match parse_peer_args("echo-may", &argv, cpus) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    may::config().set_workers(threads).set_stack_size(0x4000);
    let l = match TcpListener::bind(addr.as_str()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo-may: bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for s in l.incoming() {
        match s {
            Ok(s) => spawn_conn(s),
            // EMFILE and friends: back off briefly instead of dying or spinning.
            Err(_) => may::coroutine::sleep(std::time::Duration::from_millis(10)),
        }
    }
    ExitCode::SUCCESS
}

#[allow(unsafe_code)]
fn spawn_conn(s: TcpStream) {
    // SAFETY: may's `spawn` is unsafe because a coroutine must not block its thread or keep
    // thread-local references across a yield. `conn` only uses may's coroutine-aware socket
    // and owned buffers: no TLS, no blocking std I/O.
    unsafe {
        may::coroutine::spawn(move || conn(s));
    }
}

fn conn(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut inbuf = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        inbuf.extend_from_slice(&chunk[..n]);
        let exit = echo_lines(&mut inbuf, &mut out);
        if !out.is_empty() {
            if s.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        if exit {
            return;
        }
    }
}
