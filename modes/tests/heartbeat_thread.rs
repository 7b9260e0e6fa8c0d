//! SPEC §13 heartbeat from a real aio server under a fake master that gives it the heartbeat
//! memfd: the beat goes on while the server is busy outside its event loop, here in a
//! `before_softstop` hook that sleeps for several hang timeouts (a real master would have
//! killed a server whose beat stopped for longer than the timeout as hung).
//!
//! The server process is this test binary run again with `--exact serve_child`.

mod util;

use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::uio::pread;
use util::{ChildGuard, LogPipe, PATIENCE, cloexec_pipe, stage_fds};
use zmaster_modes::aio;

const CHILD_ENV: &str = "ZM_HEARTBEAT_THREAD_CHILD";
/// The server's hang timeout; its hook sleeps four times as long.
const TIMEOUT: Duration = Duration::from_millis(500);

/// The server side: an echo server whose softstop hook sleeps 4 × the hang timeout.
#[test]
fn serve_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let args = [
        "heartbeat-thread",
        "MASTER",
        "-server-service",
        ":i5",
        "-server-hang-timeout",
        "500ms",
    ];
    let hooks = aio::serve_hooks(|conn| conn.close()).before_softstop(|| {
        log::info!("hook: sleeping");
        std::thread::sleep(TIMEOUT * 4);
        log::info!("hook: done");
    });
    let code = aio::server_main(args, hooks);
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
}

/// The beat in `memfd` (CLOCK_MONOTONIC ns; 0: never beat).
fn beat_of(memfd: &OwnedFd) -> u64 {
    let mut buf = [0u8; 8];
    match pread(memfd.as_fd(), &mut buf, 0) {
        Ok(8) => u64::from_ne_bytes(buf),
        _ => 0,
    }
}

#[test]
fn the_beat_goes_on_through_a_slow_before_softstop_hook() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let (gen_r, gen_w) = cloexec_pipe();
    let (priv_r, _priv_w) = cloexec_pipe();
    let memfd = memfd_create(c"zmaster-heartbeat", MFdFlags::MFD_CLOEXEC).expect("memfd");
    nix::unistd::ftruncate(&memfd, 64).expect("size the memfd");
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args(["--exact", "serve_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        // Staged just after the one listener, as the master does.
        .env("ZM_HEARTBEAT_FD", "6")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    stage_fds(
        &mut command,
        &[
            gen_w.as_fd(),
            priv_r.as_fd(),
            listener.as_fd(),
            memfd.as_fd(),
        ],
    );
    let mut child = command.spawn().expect("spawn the server");
    drop((gen_w, priv_r, listener));
    let log = LogPipe::new(child.stderr.take().expect("stderr piped"));
    let mut server = ChildGuard::new(child);
    log.wait_line("serving launch=Master", PATIENCE);
    util::wait_until(PATIENCE, "a first beat", || beat_of(&memfd) != 0);
    // Every distinct beat from now until after the hook, read as often as a master could.
    let reader = memfd.try_clone().expect("dup the memfd");
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut beats = vec![beat_of(&reader)];
            loop {
                // Read once more after `done`: the beat from after the hook is in.
                let last = done.load(Ordering::Relaxed);
                let beat = beat_of(&reader);
                if beats.last() != Some(&beat) {
                    beats.push(beat);
                }
                if last {
                    return beats;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let before = beat_of(&memfd);
    drop(gen_r); // softstop
    log.wait_line("hook: sleeping", PATIENCE);
    log.wait_line("hook: done", PATIENCE);
    // Drained (nothing was open): it exits, and its last beat is in the memfd.
    let child = &mut server.child;
    let status = util::wait_for(PATIENCE, "the server to exit", || {
        child.try_wait().expect("try_wait")
    });
    assert!(status.success(), "{status:?}");
    done.store(true, Ordering::Relaxed);
    let beats = sampler.join().expect("the sampler");
    let longest = beats
        .windows(2)
        .map(|w| Duration::from_nanos(w[1].saturating_sub(w[0])))
        .max()
        .unwrap_or_default();
    println!("{} beats; the longest gap {longest:?}", beats.len());
    let last = *beats.last().expect("a beat");
    assert!(
        last.saturating_sub(before) >= 3 * TIMEOUT.as_nanos() as u64,
        "the beats cover the hook: {beats:?}"
    );
    assert!(
        longest < TIMEOUT,
        "the beat stopped for {longest:?} (server-hang-timeout {TIMEOUT:?}): a master kills that"
    );
}
