//! The config model: `key = value` files, typed getters with located errors, precedence merge.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Location, Result, quoted};
use crate::value;

/// The largest config file read (1 MiB): a bigger one, or `/dev/zero`, is an error, not an
/// unbounded read.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

/// Where a value came from: a config file line, or the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of a config file.
    File(Location),
    /// `-key value` on the command line.
    CommandLine,
    /// Set by the program itself.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(loc) => loc.fmt(f),
            Origin::CommandLine => f.write_str("command line"),
            Origin::Default => f.write_str("default"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    value: String,
    origin: Origin,
}

/// A set of `key = value` settings, each remembering where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: BTreeMap<String, Entry>,
}

impl Config {
    /// An empty config.
    pub fn new() -> Config {
        Config::default()
    }

    /// Parses config text; `path` is used for error locations and origins.
    ///
    /// # Errors
    /// A non-blank, non-comment line without `=` or with an empty key: `path:line: ...`.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut config = Config::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim_start_matches([' ', '\t', '\r']);
            if trimmed.trim_end_matches([' ', '\t', '\r']).is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((key, val)) = trimmed.split_once('=') else {
                return Err(Error::new(
                    ErrorKind::Syntax,
                    format!("expected `key = value`, got {}", quoted(trimmed.trim_end())),
                )
                .at(path, line));
            };
            let key = key.trim_end_matches([' ', '\t', '\r']);
            if key.is_empty() {
                return Err(Error::new(ErrorKind::Syntax, "empty key before `=`").at(path, line));
            }
            let val = val.trim_matches([' ', '\t', '\r']);
            let origin = Origin::File(Location {
                path: path.to_path_buf(),
                line,
            });
            config.set_with_origin(key, val, origin);
        }
        Ok(config)
    }

    /// Reads and parses one config file.
    ///
    /// # Errors
    /// The file cannot be read, or a line is malformed.
    pub fn load_file(path: &Path) -> Result<Config> {
        let what = || format!("read config file {}", path.display());
        let mut bytes = Vec::new();
        fs::File::open(path)
            .and_then(|file| file.take(MAX_CONFIG_FILE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| Error::io(what(), e))?;
        if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "config file {} is larger than {MAX_CONFIG_FILE_BYTES} bytes (1 MiB)",
                    path.display()
                ),
            ));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            Error::new(ErrorKind::Syntax, "config file is not valid UTF-8").at(path, line)
        })?;
        Config::parse(&text, path)
    }

    /// Sets `key` to `value` (origin: the program itself).
    pub fn set(&mut self, key: &str, value: &str) {
        self.set_with_origin(key, value, Origin::Default);
    }

    /// Sets `key` to `value`, remembering where the value came from.
    pub fn set_with_origin(&mut self, key: &str, value: &str, origin: Origin) {
        self.entries.insert(
            key.to_owned(),
            Entry {
                value: value.to_owned(),
                origin,
            },
        );
    }

    /// Removes `key`; returns its value if it was set.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.entries.remove(key).map(|e| e.value)
    }

    /// Overlays `higher`: every key it sets wins over this config's value.
    pub fn merge(&mut self, higher: &Config) {
        for (key, entry) in &higher.entries {
            self.entries.insert(key.clone(), entry.clone());
        }
    }

    /// The raw value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(|e| e.value.as_str())
    }

    /// Where the value of `key` came from, if set.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.entries.get(key).map(|e| &e.origin)
    }

    /// Every key, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Number of keys set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`, or `default`.
    pub fn get_str<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    fn typed<T>(
        &self,
        key: &str,
        default: T,
        what: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T> {
        let Some(entry) = self.entries.get(key) else {
            return Ok(default);
        };
        parse(&entry.value).ok_or_else(|| {
            let err = Error::new(
                ErrorKind::Value,
                format!("{key} = {}: expected {what}", quoted(&entry.value)),
            );
            match &entry.origin {
                Origin::File(loc) => err.at(&loc.path, loc.line),
                Origin::CommandLine => Error::new(
                    ErrorKind::Value,
                    format!(
                        "command line -{key} {}: expected {what}",
                        quoted(&entry.value)
                    ),
                ),
                Origin::Default => err,
            }
        })
    }

    /// `key` as an integer, or `default` when unset.
    ///
    /// # Errors
    /// The value is not an integer: the error names key, value, file and line.
    pub fn get_int(&self, key: &str, default: i64) -> Result<i64> {
        self.typed(key, default, "an integer", value::parse_int)
    }

    /// `key` as an integer in `min..=max`, or `default` when unset.
    ///
    /// # Errors
    /// The value is not an integer in range.
    pub fn get_int_in(&self, key: &str, default: i64, min: i64, max: i64) -> Result<i64> {
        let what = format!("an integer from {min} to {max}");
        self.typed(key, default, &what, |v| {
            value::parse_int(v).filter(|n| (min..=max).contains(n))
        })
    }

    /// `key` as a bool (`1 y yes true` / `0 n no false`), or `default` when unset.
    ///
    /// # Errors
    /// The value is not a bool.
    pub fn get_bool(&self, key: &str, default: bool) -> Result<bool> {
        self.typed(
            key,
            default,
            "a bool (yes/no, true/false, 1/0, y/n)",
            value::parse_bool,
        )
    }

    /// `key` as a duration (`ms s m h d w`, bare = seconds), or `default` when unset.
    ///
    /// # Errors
    /// The value is not a duration.
    pub fn get_duration(&self, key: &str, default: Duration) -> Result<Duration> {
        self.typed(
            key,
            default,
            "a duration such as 500ms, 10s, 5m, 1h, 1d or 1w",
            value::parse_duration,
        )
    }

    /// `key` as a size in bytes (`b k m g`, bare = bytes), or `default` when unset.
    ///
    /// # Errors
    /// The value is not a size.
    pub fn get_size(&self, key: &str, default: u64) -> Result<u64> {
        self.typed(
            key,
            default,
            "a size such as 512, 64k, 8m or 1g",
            value::parse_size,
        )
    }

    /// `key` as an octal file mode such as `0660`, or `None` when unset.
    ///
    /// # Errors
    /// The value is not an octal mode.
    pub fn get_octal_mode(&self, key: &str) -> Result<Option<u32>> {
        self.typed(key, None, "an octal file mode such as 0660", |v| {
            value::parse_octal_mode(v).map(Some)
        })
    }

    /// The location of `key`'s value when it came from a file.
    pub fn location(&self, key: &str) -> Option<&Location> {
        match self.origin(key) {
            Some(Origin::File(loc)) => Some(loc),
            _ => None,
        }
    }
}

/// The effective config of a service or a server (SPEC §2): `globals` (the `*.gcf` files) <
/// `files` in order (later wins) < `overrides` (the command line). The master layers a
/// service's `.cf` this way, a server its `-config` files.
pub fn layered<'a>(
    globals: &Config,
    files: impl IntoIterator<Item = &'a Config>,
    overrides: &Config,
) -> Config {
    let mut config = globals.clone();
    for file in files {
        config.merge(file);
    }
    config.merge(overrides);
    config
}

/// One `NAME.cf` service file of a config dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFile {
    /// The file name without `.cf`.
    pub name: String,
    /// The file's path.
    pub path: PathBuf,
    /// Its settings (not merged with the globals).
    pub config: Config,
}

/// A loaded config dir: `*.cf` services and the merged `*.gcf` globals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDir {
    /// The dir it was loaded from.
    pub dir: PathBuf,
    /// One per `*.cf` file, in sorted file-name order.
    pub services: Vec<ServiceFile>,
    /// Every `*.gcf` file merged in sorted order (later wins).
    pub globals: Config,
}

/// What kind of file a config-dir entry is, by extension (case-insensitive): its stem and
/// whether it is a `.gcf`. Judged on bytes, so that a name that is not UTF-8 is recognised too.
fn config_kind(name: &[u8]) -> Option<(&[u8], bool)> {
    if name.starts_with(b".") {
        return None;
    }
    // Not empty: a name starting with '.' was skipped above.
    let dot = name.iter().rposition(|b| *b == b'.')?;
    let (stem, ext) = (&name[..dot], &name[dot + 1..]);
    if ext.eq_ignore_ascii_case(b"cf") {
        Some((stem, false))
    } else if ext.eq_ignore_ascii_case(b"gcf") {
        Some((stem, true))
    } else {
        None
    }
}

/// Loads `dir/*.cf` (one service each) and `dir/*.gcf` (globals), in sorted name order.
/// Dot-files are skipped; extensions match case-insensitively.
///
/// # Errors
/// The dir cannot be read, a file cannot be read, or a line is malformed; an entry named like
/// a config file that cannot be one (a directory, a FIFO, a name that is not UTF-8) is an
/// error naming it: skipped, a `.cf` that became a directory would silently remove its service
/// at the next reload.
pub fn load_dir(dir: &Path) -> Result<ConfigDir> {
    load_dir_files(dir, true)
}

/// Checks that the entry `path` (named like a config file) can be read as one.
fn check_entry(path: &Path, name: &std::ffi::OsStr) -> Result<()> {
    if name.to_str().is_none() {
        return Err(Error::new(
            ErrorKind::Config,
            format!("{path:?}: config file name is not UTF-8"),
        ));
    }
    // Symlinks are followed; one that dangles is left to the read, which names it.
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => {
            let kind = if meta.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            Err(Error::new(
                ErrorKind::Config,
                format!("{}: named like a config file but {kind}", path.display()),
            ))
        }
        _ => Ok(()),
    }
}

/// Loads the config files of `dir`; service files only when `services` is set.
fn load_dir_files(dir: &Path, services: bool) -> Result<ConfigDir> {
    use std::os::unix::ffi::OsStrExt;
    let what = || format!("read config dir {}", dir.display());
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(what(), e))? {
        let entry = entry.map_err(|e| Error::io(what(), e))?;
        let name = entry.file_name();
        if config_kind(name.as_bytes()).is_some_and(|(_, global)| global || services) {
            check_entry(&entry.path(), &name)?;
            names.extend(name.to_str().map(str::to_owned));
        }
    }
    names.sort();
    let mut loaded = ConfigDir {
        dir: dir.to_path_buf(),
        ..ConfigDir::default()
    };
    for name in names {
        let Some((stem, global)) = config_kind(name.as_bytes()) else {
            continue;
        };
        let stem = name[..stem.len()].to_owned();
        let path = dir.join(&name);
        let config = Config::load_file(&path)?;
        if global {
            loaded.globals.merge(&config);
        } else {
            loaded.services.push(ServiceFile {
                name: stem,
                path,
                config,
            });
        }
    }
    Ok(loaded)
}

/// Loads only the `*.gcf` globals of `dir` (what a server reads from `server-config-path`).
/// The `*.cf` files are not even read: a broken service file must not stop the servers of
/// other services from starting.
///
/// # Errors
/// The dir or a `.gcf` file cannot be read, or a `.gcf` line is malformed.
pub fn load_globals(dir: &Path) -> Result<Config> {
    Ok(load_dir_files(dir, false)?.globals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("t.cf"))
    }

    #[test]
    fn basic_syntax() {
        let c = parse("# comment\n  # indented comment\n\nkey = value # not a comment\n  spaced\t = \t v w \r\nk2=\nk2 = last\n").unwrap();
        assert_eq!(c.get("key"), Some("value # not a comment"));
        assert_eq!(c.get("  spaced"), None);
        assert_eq!(c.get("spaced"), Some("v w"));
        assert_eq!(c.get("k2"), Some("last"));
        assert_eq!(c.len(), 3);
        assert_eq!(c.location("k2").unwrap().line, 7);
    }

    #[test]
    fn value_may_contain_equals() {
        let c = parse("a = b = c\n").unwrap();
        assert_eq!(c.get("a"), Some("b = c"));
    }

    #[test]
    fn keys_are_case_sensitive() {
        let c = parse("Key = 1\nkey = 2\n").unwrap();
        assert_eq!(c.get("Key"), Some("1"));
        assert_eq!(c.get("key"), Some("2"));
    }

    #[test]
    fn line_without_equals_is_an_error_naming_file_and_line() {
        let err = parse("a = 1\n\n# c\nno equals here\n").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Syntax);
        assert_eq!(err.location().unwrap().line, 4);
        assert!(err.to_string().starts_with("t.cf:4: "), "{err}");
        assert!(err.to_string().contains("no equals here"), "{err}");
    }

    #[test]
    fn empty_key_is_an_error() {
        let err = parse("a = 1\n   = 2\n").unwrap_err();
        assert!(err.to_string().starts_with("t.cf:2: "), "{err}");
        assert!(parse("=x").is_err());
    }

    #[test]
    fn typed_errors_name_key_value_file_and_line() {
        let c = parse("n = 12x\nb = maybe\nd = 5y\ns = 3t\nm = 999\n").unwrap();
        let msg = c.get_int("n", 0).unwrap_err().to_string();
        assert!(msg.starts_with("t.cf:1: n = \"12x\""), "{msg}");
        assert!(
            c.get_bool("b", false)
                .unwrap_err()
                .to_string()
                .starts_with("t.cf:2: b = \"maybe\"")
        );
        assert!(
            c.get_duration("d", Duration::ZERO)
                .unwrap_err()
                .to_string()
                .contains("t.cf:3")
        );
        assert!(
            c.get_size("s", 0)
                .unwrap_err()
                .to_string()
                .contains("t.cf:4")
        );
        assert!(
            c.get_octal_mode("m")
                .unwrap_err()
                .to_string()
                .contains("t.cf:5")
        );
        assert_eq!(c.get_int("missing", 7).unwrap(), 7);
    }

    #[test]
    fn int_range() {
        let c = parse("n = 5\n").unwrap();
        assert_eq!(c.get_int_in("n", 1, 0, 10).unwrap(), 5);
        let err = c.get_int_in("n", 1, 6, 10).unwrap_err().to_string();
        assert!(err.contains("from 6 to 10"), "{err}");
    }

    #[test]
    fn command_line_values_say_so() {
        let mut c = Config::new();
        c.set_with_origin("server-thread-count", "many", Origin::CommandLine);
        let err = c.get_int("server-thread-count", 1).unwrap_err().to_string();
        assert!(
            err.contains("command line -server-thread-count \"many\""),
            "{err}"
        );
    }

    #[test]
    fn origins_display_where_a_value_came_from() {
        let c = parse("\na = 1\n").unwrap();
        assert_eq!(c.origin("a").unwrap().to_string(), "t.cf:2");
        assert_eq!(Origin::CommandLine.to_string(), "command line");
        assert_eq!(Origin::Default.to_string(), "default");
        assert_eq!(c.origin("b"), None);
    }

    #[test]
    fn accessors() {
        let mut c = Config::new();
        assert!(c.is_empty());
        assert_eq!(c.len(), 0);
        c.set("b", "2");
        c.set("a", "1");
        assert!(!c.is_empty());
        assert_eq!(c.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(c.origin("a"), Some(&Origin::Default));
        assert_eq!(c.location("a"), None);
        assert_eq!(c.get_str("a", "dflt"), "1");
        assert_eq!(c.get_str("zz", "dflt"), "dflt");
        c.set("a", "one");
        assert_eq!(c.get("a"), Some("one"));
        assert_eq!(c.remove("a"), Some("one".to_owned()));
        assert_eq!(c.remove("a"), None);
        assert_eq!(c.get("a"), None);
        assert_eq!(c.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(c.remove("b"), Some("2".to_owned()));
        assert!(c.is_empty());
    }

    #[test]
    fn merge_overrides() {
        let mut low = parse("a = 1\nb = 2\n").unwrap();
        let high = parse("b = 3\nc = 4\n").unwrap();
        low.merge(&high);
        assert_eq!(
            (low.get("a"), low.get("b"), low.get("c")),
            (Some("1"), Some("3"), Some("4"))
        );
    }

    #[test]
    fn load_dir_sorted_with_globals_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::write(p.join("b.cf"), "x = b\n").unwrap();
        fs::write(p.join("a.CF"), "x = a\n").unwrap();
        fs::write(p.join(".hidden.cf"), "garbage\n").unwrap();
        fs::write(p.join("notes.txt"), "garbage\n").unwrap();
        fs::write(p.join("1.gcf"), "g = 1\nh = 1\n").unwrap();
        fs::write(p.join("2.GCF"), "g = 2\n").unwrap();
        fs::create_dir(p.join("sub")).unwrap();
        fs::create_dir(p.join(".hidden.gcf")).unwrap();
        let d = load_dir(p).unwrap();
        assert_eq!(d.dir, p);
        let names: Vec<_> = d.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(d.globals.get("g"), Some("2"));
        assert_eq!(d.globals.get("h"), Some("1"));
        assert_eq!(load_globals(p).unwrap().get("g"), Some("2"));
        fs::write(p.join("broken.cf"), "no equals\n").unwrap();
        assert!(load_dir(p).is_err());
        assert_eq!(load_globals(p).unwrap().get("g"), Some("2"));
    }

    #[test]
    fn entries_named_like_config_files_must_be_config_files() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::write(p.join("a.cf"), "x = a\n").unwrap();
        fs::write(p.join("g.gcf"), "g = 1\n").unwrap();
        let err = |kind| {
            let e = load_dir(p).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{e}");
            let msg = e.to_string();
            assert!(msg.contains(kind), "{msg}");
            msg
        };
        fs::create_dir(p.join("dir.CF")).unwrap();
        let msg = err("but a directory");
        assert_eq!(
            msg,
            format!(
                "{}: named like a config file but a directory",
                p.join("dir.CF").display()
            )
        );
        // A server reads only the globals: a broken service entry does not stop it.
        assert_eq!(load_globals(p).unwrap().get("g"), Some("1"));
        fs::remove_dir(p.join("dir.CF")).unwrap();
        fs::create_dir(p.join("dir.gcf")).unwrap();
        assert!(load_globals(p).unwrap_err().to_string().contains("dir.gcf"));
        err("dir.gcf: named like a config file but a directory");
        fs::remove_dir(p.join("dir.gcf")).unwrap();
        nix::unistd::mkfifo(&p.join("f.cf"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        err("f.cf: named like a config file but not a regular file");
        fs::remove_file(p.join("f.cf")).unwrap();
        let bad = p.join(std::ffi::OsStr::from_bytes(b"caf\xe9.cf"));
        fs::write(&bad, "x = y\n").unwrap();
        err(r#"caf\xE9.cf": config file name is not UTF-8"#);
        assert_eq!(load_globals(p).unwrap().get("g"), Some("1"));
        fs::remove_file(&bad).unwrap();
        fs::write(p.join(std::ffi::OsStr::from_bytes(b"\xff.txt")), "").unwrap();
        assert_eq!(load_dir(p).unwrap().services.len(), 1);
    }

    #[test]
    fn layered_is_globals_then_files_in_order_then_overrides() {
        let g = parse("a = g\nb = g\nc = g\nd = g\n").unwrap();
        let one = parse("b = 1\nc = 1\n").unwrap();
        let two = parse("c = 2\n").unwrap();
        let cli = parse("d = cli\n").unwrap();
        let c = layered(&g, [&one, &two], &cli);
        assert_eq!(
            [c.get("a"), c.get("b"), c.get("c"), c.get("d")],
            [Some("g"), Some("1"), Some("2"), Some("cli")]
        );
        assert_eq!(layered(&g, [], &Config::new()), g);
    }

    #[test]
    fn load_dir_reports_a_dangling_config_symlink() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("x.cf")).unwrap();
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("x.cf"), "{err}");
        fs::write(dir.path().join("gone"), "a = 1\n").unwrap();
        assert_eq!(
            load_dir(dir.path()).unwrap().services[0].config.get("a"),
            Some("1")
        );
    }

    #[test]
    fn load_dir_errors() {
        let err = load_dir(Path::new("/no/such/dir")).unwrap_err().to_string();
        assert!(err.contains("/no/such/dir"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("bad.cf"), "a = 1\nbad\n").unwrap();
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bad.cf:2:"), "{err}");
        fs::write(dir.path().join("bad.cf"), b"a = 1\n\xff\n").unwrap();
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bad.cf:2:") && err.contains("UTF-8"), "{err}");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "(?s).{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn parse_round_trips(key in "[a-z][a-z0-9-]{0,12}", val in "[!-~]([ -~]{0,20}[!-~])?") {
            let c = parse(&format!("{key} = {val}\n")).unwrap();
            prop_assert_eq!(c.get(&key), Some(val.as_str()));
        }
    }
}
