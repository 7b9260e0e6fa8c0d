//! For the cli tests: run `zmaster` to its exit, bounded (a master that starts serving
//! instead of exiting fails the test rather than hanging it).
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a command that should exit at once may run before the test calls it a hang.
const HANG: Duration = Duration::from_secs(20);

/// Runs `zmaster` (`bin`) with `args` until it exits; panics (after killing it) if it runs on.
pub fn zmaster(bin: &str, args: &[&str]) -> Output {
    zmaster_in(bin, Path::new("."), args)
}

/// [`zmaster`] with working dir `cwd`.
pub fn zmaster_in(bin: &str, cwd: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + HANG;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "zmaster {args:?} ran on instead of exiting:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
