//! Fuzz-target bodies for the parsers a user or a master feeds: shared by the cargo-fuzz
//! targets in `stress/fuzz/` (nightly) and their stable replay in `tests/fuzz_corpus.rs`.
//!
//! The control-socket request parser's target is in [`control`].
//!
//! Each `*_target(data)` takes any bytes and panics only when a property of the contract
//! (SPEC §2, §3, §5) fails: the parser itself must never panic, and every error must say
//! where: a config error names `file:line` (and that line really is malformed), an address or
//! `-server-service` error quotes the entry. Accepted input is checked too: a config's every
//! key and value is what its line says, a parsed address list re-parses from its display.

mod control;

pub use control::control_target;

use std::path::{Path, PathBuf};

use zmaster_core::addr::{self, Address};
use zmaster_core::config::{Config, MAX_CONFIG_FILE_BYTES};
use zmaster_core::error::quoted;
use zmaster_core::{ErrorKind, protocol};

/// The file name the config target parses its input as (errors must name it).
pub const CONFIG_PATH: &str = "fuzz/input.cf";

/// What the config parser trims (SPEC §2): spaces, tabs, `\r`; not other Unicode blanks.
const BLANKS: [char; 3] = [' ', '\t', '\r'];

/// Whether a config line is acceptable: blank, a comment, or `key = value` with a key.
fn line_ok(line: &str) -> bool {
    let t = line.trim_start_matches(BLANKS);
    t.trim_end_matches(BLANKS).is_empty()
        || t.starts_with('#')
        || t.split_once('=')
            .is_some_and(|(k, _)| !k.trim_end_matches(BLANKS).is_empty())
}

/// The config parser on any bytes: text through [`Config::parse`], and bytes that are not
/// UTF-8 through [`Config::load_file`] too (its UTF-8 error must name the line).
pub fn config_target(data: &[u8]) {
    let path = Path::new(CONFIG_PATH);
    match std::str::from_utf8(data) {
        Ok(text) => check_config(text, path),
        Err(e) => {
            check_config(&String::from_utf8_lossy(data), path);
            check_non_utf8_file(data, e.valid_up_to());
        }
    }
}

fn check_config(text: &str, path: &Path) {
    let lines: Vec<&str> = text.lines().collect();
    let cf = match Config::parse(text, path) {
        Ok(cf) => cf,
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.contains('\n'), "error is not one line: {shown:?}");
            let loc = e
                .location()
                .unwrap_or_else(|| panic!("config error without file:line: {shown}"));
            assert_eq!(loc.path, path, "{shown}");
            assert!((1..=lines.len()).contains(&loc.line), "{shown}");
            let prefix = format!("{}:{}: ", path.display(), loc.line);
            assert!(shown.starts_with(&prefix), "{shown:?} lacks {prefix:?}");
            // The first bad line is the one named.
            assert!(!line_ok(lines[loc.line - 1]), "{shown}: that line is fine");
            assert!(lines[..loc.line - 1].iter().all(|l| line_ok(l)), "{shown}");
            return;
        }
    };
    assert!(lines.iter().all(|l| line_ok(l)), "accepted a bad line");
    let mut last = std::collections::HashMap::new();
    for (i, l) in lines.iter().enumerate() {
        let l = l.trim_start_matches(BLANKS);
        if let Some((k, _)) = l.split_once('=').filter(|_| !l.starts_with('#')) {
            last.insert(k.trim_end_matches(BLANKS), i + 1);
        }
    }
    assert_eq!(last.len(), cf.len(), "keys set");
    for key in cf.keys() {
        let loc = cf
            .location(key)
            .unwrap_or_else(|| panic!("key {key:?} has no file:line"));
        assert_eq!(loc.path, path);
        let line = lines[loc.line - 1].trim_start_matches(BLANKS);
        let (k, v) = line.split_once('=').expect("a key's line has `=`");
        assert_eq!(k.trim_end_matches(BLANKS), key, "line {}", loc.line);
        let value = cf.get(key).expect("a listed key has a value");
        assert_eq!(value, v.trim_matches(BLANKS), "line {}", loc.line);
        // A later duplicate wins: the value is from the last line that sets the key.
        assert_eq!(
            last.get(key),
            Some(&loc.line),
            "key {key:?}: an earlier line won"
        );
        check_typed(
            &cf,
            key,
            value,
            &format!("{}:{}: ", path.display(), loc.line),
        );
    }
}

/// Every typed getter on a parsed value: no panic (no overflow), and a refusal names the
/// file:line, the key and the value.
fn check_typed(cf: &Config, key: &str, value: &str, prefix: &str) {
    let errors = [
        cf.get_int(key, 0).err(),
        cf.get_int_in(key, 0, 1, 65535).err(),
        cf.get_bool(key, false).err(),
        cf.get_duration(key, std::time::Duration::ZERO).err(),
        cf.get_size(key, 0).err(),
        cf.get_octal_mode(key).err(),
    ];
    for e in errors.into_iter().flatten() {
        let shown = e.to_string();
        assert_eq!(e.kind(), ErrorKind::Value, "{shown}");
        assert!(shown.starts_with(prefix), "{shown:?} lacks {prefix:?}");
        assert!(
            shown.contains(key) && shown.contains(&quoted(value)),
            "{shown}"
        );
        assert!(!shown.contains('\n'), "error is not one line: {shown:?}");
    }
}

/// A temp file private to this process and thread (proptest runs cases on several threads).
fn scratch_file() -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    std::env::temp_dir().join(format!("zmaster-fuzz-{}-{thread}.cf", std::process::id()))
}

fn check_non_utf8_file(data: &[u8], valid_up_to: usize) {
    let file = scratch_file();
    if std::fs::write(&file, data).is_err() {
        return; // no writable temp dir: nothing to check against
    }
    let got = Config::load_file(&file);
    let _ = std::fs::remove_file(&file);
    let e = got.expect_err("a file that is not UTF-8 is refused");
    let shown = e.to_string();
    assert!(shown.contains(&file.display().to_string()), "{shown}");
    if data.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return; // refused for its size before its bytes are looked at
    }
    let line = 1 + data[..valid_up_to].iter().filter(|b| **b == b'\n').count();
    let loc = e.location().unwrap_or_else(|| panic!("no line: {shown}"));
    assert_eq!(loc.line, line, "{shown}");
}

/// The separators of a `server-service` list (SPEC §3), as the parser splits it.
const SERVICE_SEPARATORS: [char; 6] = [',', ';', ' ', '\t', '\r', '\n'];

/// Whether parsing this list could ask the DNS resolver about a host name. Fuzzing must not
/// send queries off the machine, so such inputs are skipped: a host part made of name
/// characters that is not an IPv4 address, `0`, `*`, empty or `localhost` (in /etc/hosts).
pub fn may_resolve(text: &str) -> bool {
    text.split(SERVICE_SEPARATORS).any(|entry| {
        let addr = entry.split_once("://").map_or(entry, |(_, a)| a);
        if ["local:", "unix:", "fifo:"]
            .iter()
            .any(|p| addr.starts_with(p))
        {
            return false;
        }
        let Some((host, _)) = addr.rsplit_once(':') else {
            return false;
        };
        !(host.is_empty()
            || host == "0"
            || host == "*"
            || host == "localhost"
            || host.parse::<std::net::Ipv4Addr>().is_ok()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    })
}

/// The `server-service` parser ([`addr::parse_service_list`]) on any bytes (not UTF-8:
/// replaced by U+FFFD, as a config file's text would be refused before).
pub fn addr_target(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if may_resolve(&text) {
        return;
    }
    let entries: Vec<&str> = text
        .split(SERVICE_SEPARATORS)
        .filter(|e| !e.is_empty())
        .collect();
    let list = match addr::parse_service_list(&text) {
        Ok(list) => list,
        Err(e) => {
            let shown = e.to_string();
            assert_eq!(e.kind(), ErrorKind::Address, "{shown}");
            assert!(!shown.contains('\n'), "error is not one line: {shown:?}");
            if entries.is_empty() {
                assert!(shown.contains("no service address"), "{shown}");
            } else {
                assert!(
                    entries.iter().any(|en| shown.contains(&quoted(en))),
                    "{shown}: quotes no entry of {entries:?}"
                );
            }
            return;
        }
    };
    assert_eq!(list.len(), entries.len(), "{entries:?}");
    for (i, s) in list.iter().enumerate() {
        assert!(!s.name.contains(':'), "{s:?}");
        match &s.addr {
            Address::Inet(a) => assert_ne!(a.port(), 0, "{s:?}"),
            Address::Unix(p) => assert!(p.as_os_str().len() <= addr::MAX_UNIX_PATH, "{s:?}"),
            Address::Fifo(p) => assert!(!p.as_os_str().is_empty(), "{s:?}"),
        }
        assert!(
            list[..i].iter().all(|o| !o.addr.conflicts_with(&s.addr)),
            "{s:?} twice"
        );
        let shown = s.to_string();
        let again = addr::parse_entry(&shown)
            .unwrap_or_else(|e| panic!("{s:?} displays as {shown:?}, which fails: {e}"));
        assert_eq!(&again, s, "{shown}");
    }
}

/// The `-server-service` parser a server runs on its master's argv
/// ([`protocol::parse_server_service`]): errors quote the entry; what parses formats back
/// to the same listeners.
pub fn service_target(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let entries: Vec<&str> = text.split(',').filter(|e| !e.is_empty()).collect();
    let listeners = match protocol::parse_server_service(&text) {
        Ok(l) => l,
        Err(e) => {
            let shown = e.to_string();
            assert_eq!(e.kind(), ErrorKind::Protocol, "{shown}");
            assert!(!shown.contains('\n'), "error is not one line: {shown:?}");
            if entries.is_empty() {
                assert!(shown.contains("empty -server-service"), "{shown}");
            } else {
                assert!(
                    entries.iter().any(|en| shown.contains(&quoted(en))),
                    "{shown}: quotes no entry of {entries:?}"
                );
            }
            return;
        }
    };
    assert_eq!(listeners.len(), entries.len(), "{entries:?}");
    for (i, l) in listeners.iter().enumerate() {
        assert!(l.fd >= protocol::FIRST_LISTENER_FD, "{l:?}");
        assert!(listeners[..i].iter().all(|o| o.fd != l.fd), "{l:?} twice");
    }
    let formatted = protocol::format_server_service(&listeners);
    let again = protocol::parse_server_service(&formatted)
        .unwrap_or_else(|e| panic!("{listeners:?} formats as {formatted:?}, which fails: {e}"));
    assert_eq!(again, listeners, "{formatted}");
}

/// A target by its name (the cargo-fuzz target and corpus folder names).
pub fn target(name: &str) -> Option<fn(&[u8])> {
    Some(match name {
        "config" => config_target,
        "addr" => addr_target,
        "service" => service_target,
        "control" => control_target,
        _ => return None,
    })
}

/// Every target name.
pub const TARGETS: [&str; 4] = ["config", "addr", "service", "control"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_oracle_follows_spec_2() {
        for ok in [
            "",
            " \t\r",
            "# x",
            "  #",
            "a=",
            " a = b ",
            "a==",
            "\u{a0}k = v",
        ] {
            assert!(line_ok(ok), "{ok:?}");
        }
        for bad in ["=", " = v", "\t=", "words", "\u{a0}", "a b"] {
            assert!(!line_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn targets_by_name() {
        for t in TARGETS {
            assert!(target(t).is_some(), "{t}");
        }
        assert!(target("config ").is_none());
    }
}
