//! The echo examples' bounds on a hostile peer (SPEC §15), read once from the service config.
//!
//! - `echo-max-line` (size, default `1m`): a longer line is answered with `ERR line too long`
//!   and the connection is closed.
//! - `echo-idle-timeout` (duration, default `5m`, `0` = off): the longest wait for the next
//!   complete line, counted from when the server starts waiting for it (so a peer trickling
//!   one byte at a time is cut as surely as a silent one); in coroutine mode also the longest
//!   a write may wait for the peer to take any output.
//! - `echo-max-pending` (size, default `1m`): a peer whose unsent output passes this is cut
//!   off (the connection is closed, with one info line `over echo-max-pending`). Unsent
//!   output is what the server holds plus the socket's kernel send queue (`SIOCOUTQ`: for
//!   TCP, bytes not yet acknowledged by the peer). echo-aio keeps reading while its echoes
//!   are sent and checks as it queues each echo: what it holds alone, and the kernel's queue
//!   only once output is backing up ([`Limits::ask_kernel`]: about 16 times on the way to
//!   the bound), so a peer that keeps up costs no extra syscall. echo-coroutine holds one
//!   line at most; it writes with a short timeout ([`Limits::write_slice`]) and, each time a
//!   write has waited that long, checks the kernel's queue. So a peer that sends and never
//!   reads is cut soon after the kernel stops taking its echoes, not at the idle timeout.
//!
//! Both binaries call [`load`] in `before_service` and [`get`] per connection.

use std::sync::OnceLock;
use std::time::Duration;

use zmaster_modes::runtime::{Config, Error};

/// The key of the longest line.
pub const MAX_LINE_KEY: &str = "echo-max-line";
/// The key of the idle timeout.
pub const IDLE_TIMEOUT_KEY: &str = "echo-idle-timeout";
/// The key of the bound on unsent output.
pub const MAX_PENDING_KEY: &str = "echo-max-pending";

/// The reply to a line longer than `echo-max-line` (the connection is then closed).
pub const TOO_LONG: &str = "ERR line too long";

/// The bounds of one echo server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest line echoed, in bytes (without its `\n`).
    pub max_line: usize,
    /// The longest wait for a complete line (and, in coroutine mode, for a write to
    /// progress); `None` when `echo-idle-timeout` is 0.
    pub idle_timeout: Option<Duration>,
    /// Unsent output past which the peer is cut off, in bytes.
    pub max_pending: usize,
}

impl Limits {
    /// The bounds when none of the keys is set.
    pub const DEFAULT: Limits = Limits {
        max_line: 1 << 20,
        idle_timeout: Some(Duration::from_secs(5 * 60)),
        max_pending: 1 << 20,
    };

    /// The bounds set in `config` (each key's default when it is unset).
    ///
    /// # Errors
    /// `ErrorKind::Config` naming the key (and its `file:line`) for a value that is not a
    /// size or a duration.
    pub fn from_config(config: &Config) -> Result<Limits, Error> {
        let d = Limits::DEFAULT;
        let max_line = config.get_size(MAX_LINE_KEY, d.max_line as u64)?;
        let idle = config.get_duration(IDLE_TIMEOUT_KEY, Duration::from_secs(5 * 60))?;
        let max_pending = config.get_size(MAX_PENDING_KEY, d.max_pending as u64)?;
        Ok(Limits {
            max_line: usize::try_from(max_line).unwrap_or(usize::MAX),
            idle_timeout: (!idle.is_zero()).then_some(idle),
            max_pending: usize::try_from(max_pending).unwrap_or(usize::MAX),
        })
    }

    /// The read limit for one line: `max_line + 1` bytes, so that a line exactly
    /// `max_line` long still fits with its `\n` (saturating: the key may be `u64::MAX`).
    pub fn line_read_limit(&self) -> u64 {
        u64::try_from(self.max_line)
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// Whether `unsent` bytes of output pass `echo-max-pending` (the peer is then cut).
    pub fn over_pending(&self, unsent: usize) -> bool {
        unsent > self.max_pending
    }

    /// Whether echo-aio should add the kernel's send queue (one `ioctl`) to the `before`
    /// bytes it held unsent when queuing an echo that makes them `after`: only when output
    /// is backing up (`before > 0`), still under the bound on its own, and the echo crossed
    /// a sixteenth of the bound, so at most about 16 asks on the way from empty to the bound
    /// (and none for a peer that keeps up).
    pub fn ask_kernel(&self, before: usize, after: usize) -> bool {
        let step = (self.max_pending / 16).max(1);
        before > 0 && !self.over_pending(before) && before / step != after / step
    }

    /// How long echo-coroutine lets one write wait before it checks the kernel's send queue
    /// against `echo-max-pending`: a second, or the idle timeout if shorter.
    pub fn write_slice(&self) -> Duration {
        let second = Duration::from_secs(1);
        self.idle_timeout.map_or(second, |idle| idle.min(second))
    }
}

/// The bounds of this process, set once by [`load`].
static LIMITS: OnceLock<Limits> = OnceLock::new();

/// Reads the bounds from `config` for [`get`] (a second call keeps the first bounds).
///
/// # Errors
/// As [`Limits::from_config`].
pub fn load(config: &Config) -> Result<Limits, Error> {
    let limits = Limits::from_config(config)?;
    Ok(*LIMITS.get_or_init(|| limits))
}

/// The bounds set by [`load`], or [`Limits::DEFAULT`] before it.
pub fn get() -> Limits {
    LIMITS.get().copied().unwrap_or(Limits::DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(pairs: &[(&str, &str)]) -> Result<Limits, String> {
        let mut config = Config::default();
        for (k, v) in pairs {
            config.set(k, v);
        }
        Limits::from_config(&config).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_one_mebibyte_lines_five_minutes_and_one_mebibyte_pending() {
        assert_eq!(parsed(&[]), Ok(Limits::DEFAULT));
        assert_eq!(Limits::DEFAULT.max_line, 1 << 20);
        assert_eq!(Limits::DEFAULT.max_pending, 1 << 20);
        assert_eq!(Limits::DEFAULT.idle_timeout, Some(Duration::from_secs(300)));
    }

    #[test]
    fn each_key_sets_its_bound_and_zero_turns_the_timeout_off() {
        let l = parsed(&[
            (MAX_LINE_KEY, "1k"),
            (IDLE_TIMEOUT_KEY, "2s"),
            (MAX_PENDING_KEY, "64k"),
        ]);
        assert_eq!(
            l,
            Ok(Limits {
                max_line: 1024,
                idle_timeout: Some(Duration::from_secs(2)),
                max_pending: 64 * 1024,
            })
        );
        let off = parsed(&[(IDLE_TIMEOUT_KEY, "0")]).map(|l| l.idle_timeout);
        assert_eq!(off, Ok(None));
        let ms = parsed(&[(IDLE_TIMEOUT_KEY, "1ms")]).map(|l| l.idle_timeout);
        assert_eq!(ms, Ok(Some(Duration::from_millis(1))));
    }

    #[test]
    fn a_bad_value_names_its_key() {
        for key in [MAX_LINE_KEY, IDLE_TIMEOUT_KEY, MAX_PENDING_KEY] {
            let err = parsed(&[(key, "lots")]).err().unwrap_or_default();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn the_line_read_limit_is_one_more_and_never_wraps() {
        let mut l = Limits::DEFAULT;
        assert_eq!(l.line_read_limit(), (1 << 20) + 1);
        l.max_line = usize::MAX;
        assert_eq!(l.line_read_limit(), u64::MAX);
        l.max_line = 0;
        assert_eq!(l.line_read_limit(), 1);
    }

    #[test]
    fn over_pending_is_strictly_past_the_bound() {
        let l = parsed(&[(MAX_PENDING_KEY, "100")]).unwrap_or(Limits::DEFAULT);
        assert!(!l.over_pending(100));
        assert!(l.over_pending(101));
        assert!(!l.over_pending(0));
    }

    #[test]
    fn the_kernel_is_asked_only_when_backing_up_and_crossing_a_sixteenth() {
        let l = parsed(&[(MAX_PENDING_KEY, "1600")]).unwrap_or(Limits::DEFAULT);
        // Nothing held before this echo: the peer keeps up, no syscall.
        assert!(!l.ask_kernel(0, 500));
        // Backing up, within one sixteenth (100 bytes): not yet.
        assert!(!l.ask_kernel(1, 99));
        assert!(!l.ask_kernel(100, 199));
        // Crossing into the next sixteenth.
        assert!(l.ask_kernel(99, 100));
        assert!(l.ask_kernel(150, 950));
        // At the bound still asked; past it the held output alone cuts the peer.
        assert!(l.ask_kernel(1600, 1700));
        assert!(!l.ask_kernel(1601, 1800));
        // A tiny bound: every crossing of one byte asks (the step never reaches 0).
        let tiny = Limits {
            max_pending: 3,
            ..Limits::DEFAULT
        };
        assert!(tiny.ask_kernel(1, 2));
        let zero = Limits {
            max_pending: 0,
            ..Limits::DEFAULT
        };
        assert!(!zero.ask_kernel(1, 2), "held output alone is over");
    }

    #[test]
    fn the_write_slice_is_a_second_or_the_shorter_idle_timeout() {
        let mut l = Limits::DEFAULT;
        assert_eq!(l.write_slice(), Duration::from_secs(1));
        l.idle_timeout = None;
        assert_eq!(l.write_slice(), Duration::from_secs(1));
        l.idle_timeout = Some(Duration::from_millis(300));
        assert_eq!(l.write_slice(), Duration::from_millis(300));
        l.idle_timeout = Some(Duration::from_secs(2));
        assert_eq!(l.write_slice(), Duration::from_secs(1));
    }

    #[test]
    fn get_is_the_default_until_loaded() {
        // `load` is process-wide: only this test calls it, after checking the default.
        assert_eq!(get(), Limits::DEFAULT);
        let mut config = Config::default();
        config.set(MAX_LINE_KEY, "10");
        assert_eq!(load(&config).map(|l| l.max_line).ok(), Some(10));
        assert_eq!(get().max_line, 10);
        config.set(MAX_LINE_KEY, "20");
        assert_eq!(
            load(&config).map(|l| l.max_line).ok(),
            Some(10),
            "first load wins"
        );
    }
}
