//! Typed config values: integer, bool, duration (`ms s m h d w`), size (`b k m g`).
//!
//! Each parser takes the raw value text and returns `None` when it does not parse; the
//! config layer turns that into an error naming key, value, file and line.

use std::time::Duration;

/// Parses a decimal integer, optionally signed (`-5`, `+7`, `42`).
pub fn parse_int(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    text.parse().ok()
}

/// Parses a bool: `1 y yes true` / `0 n no false`, any case.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "y" | "yes" | "true" => Some(true),
        "0" | "n" | "no" | "false" => Some(false),
        _ => None,
    }
}

/// Splits `123abc` into (`123`, `abc`); the number part must be non-empty ASCII digits.
fn split_number(text: &str) -> Option<(u64, String)> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let number = text[..digits].parse().ok()?;
    Some((number, text[digits..].trim_start().to_ascii_lowercase()))
}

/// Parses a duration: a non-negative integer with suffix `ms s m h d w`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (n, suffix) = split_number(text)?;
    let millis_per_unit: u64 = match suffix.as_str() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => return None,
    };
    n.checked_mul(millis_per_unit).map(Duration::from_millis)
}

/// Parses a size in bytes: a non-negative integer with suffix `b k m g`; a bare number is bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let (n, suffix) = split_number(text)?;
    let unit: u64 = match suffix.as_str() {
        "" | "b" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// Parses an octal file mode such as `0660` or `660` (at most `07777`).
pub fn parse_octal_mode(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ints() {
        assert_eq!(parse_int("42"), Some(42));
        assert_eq!(parse_int(" -7 "), Some(-7));
        assert_eq!(parse_int("+3"), Some(3));
        for bad in ["", " ", "4x", "0x10", "1.5", "99999999999999999999", "--1"] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bools() {
        for t in ["1", "y", "Y", "yes", "YES", "true", "True"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "n", "N", "no", "No", "false", "FALSE"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["", "2", "on", "off", "yess", "t"] {
            assert_eq!(parse_bool(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(parse_duration("100ms"), ms(100));
        assert_eq!(parse_duration("5"), ms(5_000));
        assert_eq!(parse_duration("5s"), ms(5_000));
        assert_eq!(parse_duration("2m"), ms(120_000));
        assert_eq!(parse_duration("1h"), ms(3_600_000));
        assert_eq!(parse_duration("1d"), ms(86_400_000));
        assert_eq!(parse_duration("1w"), ms(604_800_000));
        assert_eq!(parse_duration("3 S"), ms(3_000));
        assert_eq!(parse_duration("0"), ms(0));
        for bad in [
            "",
            "s",
            "-1s",
            "1.5s",
            "5x",
            "5 ms s",
            "1y",
            "99999999999999999999w",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("10b"), Some(10));
        assert_eq!(parse_size("128k"), Some(128 * 1024));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        for bad in ["", "k", "-1k", "1t", "1.5m", "18446744073709551615k"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn octal_modes() {
        assert_eq!(parse_octal_mode("0660"), Some(0o660));
        assert_eq!(parse_octal_mode("777"), Some(0o777));
        assert_eq!(parse_octal_mode(" 0600 "), Some(0o600));
        assert_eq!(parse_octal_mode("7777"), Some(0o7777));
        assert_eq!(parse_octal_mode("0"), Some(0));
        // from_str_radix alone would take a sign: the digit check must refuse it.
        for bad in [
            "", " ", "8", "0x1", "17777", "10000", "rw", "+660", "-660", "+",
        ] {
            assert_eq!(parse_octal_mode(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".*") {
            let _ = parse_int(&s);
            let _ = parse_bool(&s);
            let _ = parse_duration(&s);
            let _ = parse_size(&s);
            let _ = parse_octal_mode(&s);
        }

        #[test]
        fn durations_round_trip(n in 0u64..1_000_000) {
            prop_assert_eq!(parse_duration(&format!("{n}ms")), Some(Duration::from_millis(n)));
            prop_assert_eq!(parse_duration(&format!("{n}s")), Some(Duration::from_secs(n)));
        }
    }
}
