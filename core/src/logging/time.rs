//! UTC calendar time for log records, without a time-zone library.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC calendar time, to the millisecond.
pub(super) struct Civil {
    pub(super) year: i64,
    pub(super) month: i64,
    pub(super) day: i64,
    pub(super) hour: u64,
    pub(super) minute: u64,
    pub(super) second: u64,
    pub(super) millis: u32,
}

pub(super) fn civil_utc(time: SystemTime) -> Civil {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for the proleptic Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    Civil {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: rem / 3_600,
        minute: rem % 3_600 / 60,
        second: rem % 60,
        millis: since.subsec_millis(),
    }
}

/// `2026-11-25T18:01:40.123Z` for a time (UTC, milliseconds).
pub fn utc_timestamp(time: SystemTime) -> String {
    let t = civil_utc(time);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_629_700_123);
        assert_eq!(utc_timestamp(t), "2026-11-25T18:01:40.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_timestamp(leap), "2000-02-29T00:00:00.000Z");
    }

    /// Days since 1970-01-01 to (year, month, day), one day at a time.
    fn naive_civil(mut days: u64) -> (i64, i64, i64) {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mut year = 1970;
        loop {
            let length = if leap(year) { 366 } else { 365 };
            if days < length {
                break;
            }
            days -= length;
            year += 1;
        }
        let mut month = 1;
        for length in [
            31,
            if leap(year) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ] {
            if days < length {
                break;
            }
            days -= length;
            month += 1;
        }
        (year, month, days as i64 + 1)
    }

    proptest::proptest! {
        #[test]
        fn calendar_matches_counting_days(days in 0u64..160_000, secs in 0u64..86_400, ms in 0u64..1_000) {
            let t = UNIX_EPOCH + Duration::from_millis((days * 86_400 + secs) * 1_000 + ms);
            let c = civil_utc(t);
            proptest::prop_assert_eq!((c.year, c.month, c.day), naive_civil(days));
            proptest::prop_assert_eq!(
                (c.hour, c.minute, c.second, u64::from(c.millis)),
                (secs / 3_600, secs / 60 % 60, secs % 60, ms)
            );
        }
    }

    #[test]
    fn calendar_edges() {
        for days in [
            0, 58, 59, 365, 10_956, 11_016, 11_017, 47_541, 47_540, 146_096, 146_097,
        ] {
            let c = civil_utc(UNIX_EPOCH + Duration::from_secs(days * 86_400));
            assert_eq!((c.year, c.month, c.day), naive_civil(days), "day {days}");
        }
    }
}
