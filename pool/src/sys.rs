//! Process-level system calls: raising the soft `RLIMIT_NOFILE` at start.

use std::io;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (a server handling many connections
/// under a soft limit of 1024, a common default, fails with `EMFILE` long before its hard
/// limit). With an unlimited hard limit the soft one goes to the kernel's `fs.nr_open`,
/// the most `setrlimit` accepts. Returns `(old soft limit, new soft limit)`; equal when
/// nothing had to change.
///
/// # Errors
/// `getrlimit` or `setrlimit` failed (the message names the call and the value).
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("getrlimit RLIMIT_NOFILE: {e}"),
        )
    })?;
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let Some(target) = nofile_target(soft, hard, nr_open) else {
        return Ok((soft, soft));
    };
    setrlimit(Resource::RLIMIT_NOFILE, target, hard).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("setrlimit RLIMIT_NOFILE soft={target} hard={hard}: {e}"),
        )
    })?;
    Ok((soft, target))
}

/// The soft limit to set, or `None` when `soft` is already as high as it can go.
fn nofile_target(soft: u64, hard: u64, nr_open: Option<u64>) -> Option<u64> {
    let ceiling = if hard == libc::RLIM_INFINITY {
        // Linux refuses a soft NOFILE limit above fs.nr_open (default 2^20).
        nr_open.unwrap_or(1 << 20)
    } else {
        hard
    };
    (soft < ceiling).then_some(ceiling)
}

#[cfg(test)]
mod tests {
    use super::nofile_target;

    #[test]
    fn nofile_target_is_the_hard_limit_or_nr_open() {
        assert_eq!(nofile_target(1024, 524_288, Some(1 << 20)), Some(524_288));
        assert_eq!(
            nofile_target(524_288, 524_288, None),
            None,
            "already at the hard limit"
        );
        assert_eq!(nofile_target(4096, 1024, None), None, "never lowered");
        let inf = libc::RLIM_INFINITY;
        assert_eq!(nofile_target(1024, inf, Some(2_000_000)), Some(2_000_000));
        assert_eq!(nofile_target(1024, inf, None), Some(1 << 20));
        assert_eq!(nofile_target(1 << 20, inf, None), None);
        assert_eq!(nofile_target(inf, inf, Some(10)), None);
    }
}
