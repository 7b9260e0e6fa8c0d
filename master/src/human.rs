//! Durations in log lines as people read and write them: `100ms`, `1.6s`, `30s`, `2m30s`, `1h`.
//!
//! The forms are the config's own duration suffixes (`ms s m h d`), so a value read from a log
//! line can be pasted back into a `.cf`, except for the one decimal under ten seconds.

use std::time::Duration;

/// `d` in the largest units that keep it readable: milliseconds under a second, seconds with
/// one decimal under ten seconds, whole seconds under a minute, then two units at most
/// (`2m30s`, `1h5m`, `3d2h`), each rounded to the nearest unit shown.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if d.is_zero() {
        return "0s".into();
    }
    if ms < 1000 {
        // Rounded down (999.9ms is not yet a second), but a non-zero time never shows as 0.
        return format!("{}ms", ms.max(1));
    }
    let tenths = (ms + 50) / 100;
    if tenths < 100 {
        return match tenths % 10 {
            0 => format!("{}s", tenths / 10),
            t => format!("{}.{t}s", tenths / 10),
        };
    }
    let secs = (ms + 500) / 1000;
    let (big, small, big_unit, small_unit) = if secs < 60 {
        return format!("{secs}s");
    } else if secs < 3600 {
        (secs / 60, secs % 60, "m", "s")
    } else if secs < 86_400 {
        let mins = (secs + 30) / 60;
        (mins / 60, mins % 60, "h", "m")
    } else {
        let hours = (secs + 1800) / 3600;
        (hours / 24, hours % 24, "d", "h")
    };
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit}{small}{small_unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> String {
        human_duration(Duration::from_millis(n))
    }

    #[test]
    fn readable_forms() {
        assert_eq!(human_duration(Duration::ZERO), "0s");
        assert_eq!(human_duration(Duration::from_micros(300)), "1ms");
        assert_eq!(ms(1), "1ms");
        assert_eq!(ms(100), "100ms");
        assert_eq!(ms(999), "999ms");
        assert_eq!(ms(1000), "1s");
        assert_eq!(ms(1049), "1s");
        assert_eq!(ms(1050), "1.1s");
        assert_eq!(ms(1600), "1.6s");
        assert_eq!(ms(9949), "9.9s");
        assert_eq!(ms(9950), "10s");
        assert_eq!(ms(30_000), "30s");
        assert_eq!(ms(59_499), "59s");
        assert_eq!(ms(59_500), "1m");
        assert_eq!(ms(60_000), "1m");
        assert_eq!(ms(120_000), "2m");
        assert_eq!(ms(150_000), "2m30s");
        assert_eq!(ms(3_599_000), "59m59s");
        assert_eq!(ms(3_600_000), "1h");
        assert_eq!(ms(3_629_000), "1h");
        assert_eq!(ms(3_630_000), "1h1m");
        assert_eq!(ms(3_900_000), "1h5m");
        assert_eq!(ms(86_399_000), "24h");
        assert_eq!(ms(86_400_000), "1d");
        assert_eq!(ms(86_400_000 + 1_799_000), "1d");
        assert_eq!(ms(86_400_000 + 1_800_000), "1d1h");
        assert_eq!(ms(3 * 86_400_000 + 2 * 3_600_000), "3d2h");
    }
}
