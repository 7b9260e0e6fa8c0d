//! The keys zmaster knows (with their value types), unknown-key warnings and "did you mean".
//!
//! SPEC §4: a `.cf`/`.gcf` key that starts with `server-`, `master-` or `run-` and is not in
//! [`KNOWN_KEYS`] is a warning naming `file:line` and the nearest known key (a typo such as
//! `server-proc-cont` would otherwise pass silently); other keys belong to the servers. A
//! command-line `-key` that is neither a master option, a known key, nor a key of some loaded
//! file is an error: it would otherwise be a silent override of nothing.

use std::collections::BTreeMap;

use zmaster_core::config::{Config, Origin, ServiceFile};
use zmaster_core::logging::LogTarget;

use crate::error::{Error, ErrorKind, Result};

/// How a known key's value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Any text (paths, names, addresses checked elsewhere).
    Text,
    /// A non-negative integer.
    Count,
    /// A duration (`ms s m h d w`).
    Duration,
    /// A size (`b k m g`).
    Size,
    /// A resource limit: a size or `unlimited`.
    Limit,
    /// An octal file mode.
    Mode,
    /// A bool (`yes/no`, `true/false`, `1/0`, `y/n`).
    Bool,
    /// A `server-log` target.
    LogTarget,
    /// A log level word.
    Level,
}

/// Every key zmaster or its server runtime reads, with its type (SPEC §4, §6, §11, §13).
pub(crate) const KNOWN_KEYS: [(&str, Kind); 29] = [
    ("server-command", Kind::Text),
    ("server-service", Kind::Text),
    ("server-proc-count", Kind::Count),
    ("server-proc-balance", Kind::Bool),
    ("server-config-path", Kind::Text),
    ("server-listen-backlog", Kind::Count),
    ("server-unix-mode", Kind::Mode),
    ("master-chdir", Kind::Text),
    ("master-chroot", Kind::Text),
    ("master-stop-timeout", Kind::Duration),
    ("server-thread-count", Kind::Count),
    ("server-coroutine-stack-size", Kind::Size),
    ("server-coroutine-stack-pool", Kind::Count),
    ("server-stop-on-softstop-after", Kind::Duration),
    ("server-log", Kind::LogTarget),
    ("server-log-level", Kind::Level),
    ("server-max-use", Kind::Count),
    ("server-max-use-jitter", Kind::Count),
    ("server-max-idle", Kind::Duration),
    ("server-max-memory", Kind::Size),
    ("server-max-connections", Kind::Count),
    ("server-hang-timeout", Kind::Duration),
    ("run-user", Kind::Text),
    ("run-group", Kind::Text),
    ("run-chroot", Kind::Text),
    ("run-chdir", Kind::Text),
    ("server-rlimit-nofile", Kind::Count),
    ("server-core-file-size", Kind::Limit),
    ("server-give-up-after", Kind::Count),
];

/// The master's own command-line options (never passed to children).
pub(crate) const MASTER_OPTIONS: [&str; 13] = [
    "C",
    "pid-file",
    "try-lock",
    "log-service",
    "master-log",
    "master-stop-timeout",
    "master-upgrade-timeout",
    "control",
    "verbose",
    "help",
    "version",
    "check",
    "t",
];

/// Prefixes of the keys zmaster owns: an unknown one is most likely a typo.
const OWNED_PREFIXES: [&str; 3] = ["server-", "master-", "run-"];

/// Levenshtein distance in characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The candidate nearest to `word`, if one is near enough to be a likely typo: at most 2
/// edits, or a third of the word's length for long words (the first of equals wins). A word
/// like `bogus` gets no suggestion rather than an unrelated one.
pub(crate) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let bound = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, _)| *d <= bound)
        .map(|(_, c)| c)
}

/// ` (did you mean "PREFIXnear"?)` when there is a near candidate, else nothing.
fn did_you_mean(near: Option<&str>, prefix: &str) -> String {
    near.map_or_else(String::new, |n| format!(" (did you mean \"{prefix}{n}\"?)"))
}

fn is_known(key: &str) -> bool {
    KNOWN_KEYS.iter().any(|(k, _)| *k == key)
}

/// One warning line per unknown owned key of the files, each once (a `.gcf` key is merged
/// into every service but named once, at its own `file:line`), sorted by file and line.
pub(crate) fn unknown_key_warnings(files: &[ServiceFile]) -> Vec<String> {
    let mut found = BTreeMap::new();
    for file in files {
        for key in file.config.keys() {
            if is_known(key) || !OWNED_PREFIXES.iter().any(|p| key.starts_with(p)) {
                continue;
            }
            let Some(Origin::File(loc)) = file.config.origin(key) else {
                continue;
            };
            let near = did_you_mean(nearest(key, KNOWN_KEYS.iter().map(|(k, _)| *k)), "");
            found
                .entry((loc.path.clone(), loc.line))
                .or_insert_with(|| format!("{loc}: unknown key \"{key}\"{near}"));
        }
    }
    found.into_values().collect()
}

/// Refuses a command-line `-key` that is neither a master option, a known key, nor a key of
/// some loaded file (`overrides` holds only the non-master options).
pub(crate) fn check_overrides(overrides: &Config, files: &[ServiceFile]) -> Result<()> {
    for key in overrides.keys() {
        if is_known(key)
            || files.iter().any(|f| {
                f.config
                    .get(key)
                    .is_some_and(|_| matches!(f.config.origin(key), Some(Origin::File(_))))
            })
        {
            continue;
        }
        let candidates = MASTER_OPTIONS
            .iter()
            .copied()
            .filter(|o| o.len() > 1)
            .chain(KNOWN_KEYS.iter().map(|(k, _)| *k));
        let near = did_you_mean(nearest(key, candidates), "-");
        return Err(Error::new(
            ErrorKind::Usage,
            format!("unknown option \"-{key}\"{near}; see zmaster -h"),
        ));
    }
    Ok(())
}

/// A bad value of `key`, as core words its typed errors: `FILE:LINE: key = "v": expected ...`
/// or `command line -key "v": expected ...`.
fn bad(config: &Config, key: &str, value: &str, what: &str) -> Error {
    let message = match config.origin(key) {
        Some(Origin::CommandLine) => format!("command line -{key} \"{value}\": expected {what}"),
        Some(Origin::File(loc)) => format!("{loc}: {key} = \"{value}\": expected {what}"),
        _ => format!("{key} = \"{value}\": expected {what}"),
    };
    Error::new(ErrorKind::Config, message)
}

/// The smallest `server-hang-timeout` besides 0 (off): a child beats at most every 10 ms and
/// the master checks at most every 50 ms, so a shorter one would kill healthy children.
pub(crate) const MIN_HANG_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

/// `server-hang-timeout` (0 = off), refused below [`MIN_HANG_TIMEOUT`] with its `file:line`.
///
/// # Errors
/// Not a duration, or too short.
pub(crate) fn hang_timeout(config: &Config) -> Result<std::time::Duration> {
    const KEY: &str = "server-hang-timeout";
    let timeout = config.get_duration(KEY, std::time::Duration::ZERO)?;
    if timeout.is_zero() || timeout >= MIN_HANG_TIMEOUT {
        return Ok(timeout);
    }
    let value = config.get(KEY).unwrap_or_default().trim();
    let at = match config.origin(KEY) {
        Some(Origin::CommandLine) => format!("command line -{KEY} {value}"),
        Some(Origin::File(loc)) => format!("{loc}: {KEY} = {value}"),
        _ => format!("{KEY} = {value}"),
    };
    Err(Error::new(
        ErrorKind::Config,
        format!("{at}: below the minimum 100ms"),
    ))
}

/// Checks the typed value of every known key set in `config` (SPEC §11: `-t` checks "typed
/// values of every key zmaster knows"), naming key, value and `file:line`.
pub(crate) fn check_values(config: &Config) -> Result<()> {
    for (key, kind) in KNOWN_KEYS {
        let Some(value) = config.get(key) else {
            continue;
        };
        match kind {
            Kind::Text => {}
            Kind::Count => {
                if config.get_int(key, 0)? < 0 {
                    return Err(bad(config, key, value, "an integer of 0 or more"));
                }
            }
            Kind::Duration if key == "server-hang-timeout" => drop(hang_timeout(config)?),
            Kind::Duration => drop(config.get_duration(key, std::time::Duration::ZERO)?),
            Kind::Size => drop(config.get_size(key, 0)?),
            Kind::Limit if value.trim().eq_ignore_ascii_case("unlimited") => {}
            Kind::Limit => drop(config.get_size(key, 0)?),
            Kind::Mode => drop(config.get_octal_mode(key)?),
            Kind::Bool => drop(config.get_bool(key, false)?),
            Kind::LogTarget => {
                LogTarget::parse(value)
                    .map_err(|e| Error::from(e.at_location(config.location(key))))?;
            }
            Kind::Level => {
                if value.parse::<log::LevelFilter>().is_err() {
                    let at = config
                        .origin(key)
                        .map_or_else(String::new, |o| format!("{o}: "));
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!(
                            "{at}{key} = \"{value}\": expected error, warn, info, debug, trace or off"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn file(name: &str, text: &str) -> ServiceFile {
        let path = PathBuf::from(format!("/etc/zm/{name}"));
        ServiceFile {
            name: name.into(),
            config: Config::parse(text, &path).unwrap(),
            path,
        }
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abcd"), 4);
        assert_eq!(edit_distance("pidfile", "pid-file"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("flaw", "lawn"), 2);
        assert_eq!(edit_distance("ab", "ba"), 2);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(edit_distance("héllo", "hello"), 1);
    }

    #[test]
    fn nearest_picks_the_closest_and_the_first_of_equals() {
        assert_eq!(nearest("pidfile", MASTER_OPTIONS), Some("pid-file"));
        assert_eq!(nearest("ab", ["xx", "ax", "ab"]), Some("ab"));
        assert_eq!(nearest("ab", ["ax", "xb"]), Some("ax"));
        assert_eq!(nearest("x", []), None);
        // Too far to be a typo: no suggestion (review: `-bogus` got "did you mean -help").
        assert_eq!(nearest("bogus", MASTER_OPTIONS), None);
        assert_eq!(nearest("ab", ["wxyz"]), None);
        // Two edits always, a third of a long word's length.
        assert_eq!(nearest("abcd", ["ab"]), Some("ab"));
        assert_eq!(
            nearest("server-proc-cnt", ["server-proc-count"]),
            Some("server-proc-count")
        );
        assert_eq!(
            nearest("sxrvxr-pxoc-cxunt", ["server-proc-count"]),
            Some("server-proc-count")
        );
        assert_eq!(nearest("sxrvxr-pxxx-cxxnt", ["server-proc-count"]), None);
        assert_eq!(did_you_mean(None, "-"), "");
        assert_eq!(did_you_mean(Some("x"), "-"), " (did you mean \"-x\"?)");
    }

    #[test]
    fn unknown_owned_keys_warn_once_at_their_line() {
        let g = "server-proc-cont = 2\n";
        let mut a = file(
            "a.cf",
            "server-command = x\nrun-usr = me\nmy-key = 1\nserver-log = stderr\n",
        );
        let mut b = file("b.cf", "master-chrot = /x\n");
        let globals = Config::parse(g, Path::new("/etc/zm/all.gcf")).unwrap();
        for f in [&mut a, &mut b] {
            let mut merged = globals.clone();
            merged.merge(&f.config);
            f.config = merged;
        }
        let mut cli = Config::new();
        cli.set_with_origin("server-bogus", "1", Origin::CommandLine);
        a.config.merge(&cli);
        assert_eq!(
            unknown_key_warnings(&[a, b]),
            [
                "/etc/zm/a.cf:2: unknown key \"run-usr\" (did you mean \"run-user\"?)",
                "/etc/zm/all.gcf:1: unknown key \"server-proc-cont\" (did you mean \"server-proc-count\"?)",
                "/etc/zm/b.cf:1: unknown key \"master-chrot\" (did you mean \"master-chroot\"?)",
            ]
        );
    }

    #[test]
    fn the_coroutine_stack_pool_key_is_known_and_typed() {
        let files = [file("a.cf", "server-coroutine-stack-pool = 32\n")];
        assert!(unknown_key_warnings(&files).is_empty());
        let mut c = Config::new();
        c.set("server-coroutine-stack-pool", "-1");
        let err = check_values(&c).unwrap_err().to_string();
        assert!(err.contains("server-coroutine-stack-pool"), "{err}");
    }

    #[test]
    fn every_known_key_is_quiet() {
        let text: String = KNOWN_KEYS
            .iter()
            .map(|(k, _)| format!("{k} = x\n"))
            .collect();
        assert!(unknown_key_warnings(&[file("a.cf", &text)]).is_empty());
    }

    #[test]
    fn command_line_keys_must_be_known_or_in_a_file() {
        let files = [file("a.cf", "probe-greeting = hi\n")];
        let mut cli = Config::new();
        for key in ["probe-greeting", "server-thread-count"] {
            cli.set_with_origin(key, "1", Origin::CommandLine);
        }
        check_overrides(&cli, &files).unwrap();
        cli.set_with_origin("pidfile", "/x", Origin::CommandLine);
        let err = check_overrides(&cli, &files).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert_eq!(
            err.to_string(),
            "unknown option \"-pidfile\" (did you mean \"-pid-file\"?); see zmaster -h"
        );
        // A key that only the command line sets (merged into a file's config) is not "present".
        let mut merged = files[0].clone();
        merged.config.merge(&cli);
        assert!(check_overrides(&cli, &[merged]).is_err());
        let mut cli = Config::new();
        cli.set_with_origin("server-thread-cont", "1", Origin::CommandLine);
        let err = check_overrides(&cli, &files).unwrap_err().to_string();
        assert!(
            err.contains("did you mean \"-server-thread-count\"?"),
            "{err}"
        );
    }

    #[test]
    fn typed_values_of_known_keys_are_checked_with_their_line() {
        let good = "server-thread-count = 4\nserver-max-use = 0\nserver-max-idle = 5m\nserver-max-memory = 64m\n\
                    server-unix-mode = 0660\nserver-log = syslog,mail\nserver-log-level = debug\n\
                    run-user = nobody\nother = x y\n";
        check_values(&file("a.cf", good).config).unwrap();
        for timeout in ["0", "100ms", "1s"] {
            let text = format!("server-hang-timeout = {timeout}\n");
            check_values(&file("a.cf", &text).config).unwrap();
        }
        for limit in ["unlimited", " Unlimited", "4m"] {
            let text = format!("server-core-file-size = {limit}\n");
            check_values(&file("a.cf", &text).config).unwrap();
        }
        for (text, want) in [
            (
                "\nserver-thread-count = many\n",
                "a.cf:2: server-thread-count = \"many\"",
            ),
            ("server-max-use = -1\n", "a.cf:1: server-max-use = \"-1\""),
            (
                "server-hang-timeout = 5y\n",
                "a.cf:1: server-hang-timeout = \"5y\"",
            ),
            (
                "server-hang-timeout = 5ms\n",
                "a.cf:1: server-hang-timeout = 5ms: below the minimum 100ms",
            ),
            (
                "server-hang-timeout = 99ms\n",
                "a.cf:1: server-hang-timeout = 99ms: below the minimum 100ms",
            ),
            (
                "server-max-memory = lots\n",
                "a.cf:1: server-max-memory = \"lots\"",
            ),
            (
                "server-unix-mode = 999\n",
                "a.cf:1: server-unix-mode = \"999\"",
            ),
            ("server-log = file\n", "a.cf:1: server-log = \"file\""),
            (
                "server-core-file-size = infinite\n",
                "a.cf:1: server-core-file-size = \"infinite\"",
            ),
            (
                "server-log-level = loud\n",
                "a.cf:1: server-log-level = \"loud\"",
            ),
        ] {
            let err = check_values(&file("a.cf", text).config)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("/etc/zm/{want}")), "{text}: {err}");
        }
    }
}
