//! RFC 3339 UTC timestamps with milliseconds, for ctsd's own lines in instance logs.

use std::time::{SystemTime, UNIX_EPOCH};

/// (year, month, day, hour, minute, second) of `secs` seconds since the epoch, UTC.
pub(crate) fn utc_fields(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

/// Seconds since the epoch of a UTC date and time, `None` when a field is out of range.
pub(crate) fn secs_from_utc(y: u64, mo: u64, d: u64, h: u64, mi: u64, s: u64) -> Option<u64> {
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || s > 60
    {
        return None;
    }
    let days = u64::try_from(days_from_civil(y as i64, mo as u32, d as u32)).ok()?;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

/// Formats `t` as `2026-11-24T17:03:09.123Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (y, m, dd, h, mi, s) = utc_fields(d.as_secs());
    format!(
        "{y:04}-{m:02}-{dd:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        d.subsec_millis()
    )
}

/// Parses exactly `2026-11-24T17:03:09.123Z` (what [`rfc3339_millis`] writes), for telling
/// stamped lines from others.
pub fn parse_rfc3339_millis(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let shape = b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if shape {
        parse_utc(s)
    } else {
        None
    }
}

/// Parses a UTC time as an operator types it: `2026-11-24`, `2026-11-24T17:03`,
/// `2026-11-24 17:03:09`, `2026-11-24T17:03:09.123Z` (a trailing `Z` is optional; the time is
/// UTC either way, like every stamp ctsd writes).
pub fn parse_utc(s: &str) -> Option<SystemTime> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, t),
        None => (s, "00:00"),
    };
    let mut d = date.split('-').map(|p| p.parse::<u64>().ok());
    let (y, mo, dd) = (d.next()??, d.next()??, d.next()??);
    if d.next().is_some() {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (h, mi) = (t.next()??, t.next()??);
    let sec = t.next().map_or(Some(0), |v| v)?;
    if t.next().is_some() {
        return None;
    }
    let ms = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        digits.parse::<u64>().ok()?
    };
    let secs = secs_from_utc(y, mo, dd, h, mi, sec)?;
    Some(UNIX_EPOCH + std::time::Duration::from_millis(secs * 1000 + ms))
}

/// (year, month, day) to days since 1970-01-01, Howard Hinnant's algorithm.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = y - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_539_789_123);
        assert_eq!(rfc3339_millis(t), "2026-11-24T17:03:09.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_millis(leap), "2000-02-29T00:00:00.000Z");
        assert_eq!(parse_rfc3339_millis("2026-11-24T17:03:09.123Z"), Some(t));
        assert_eq!(parse_rfc3339_millis("2026-11-24T17:03:09.123"), None);
        assert_eq!(parse_utc("2026-11-24T17:03:09.123Z"), Some(t));
        assert_eq!(parse_utc("2026-11-24 17:03:09.123"), Some(t));
        assert_eq!(
            parse_utc("2026-11-24T17:03"),
            Some(t - Duration::from_millis(9_123))
        );
        assert_eq!(
            parse_utc("2026-11-24"),
            Some(UNIX_EPOCH + Duration::from_secs(1_795_478_400))
        );
        for bad in [
            "",
            "2026-11",
            "2026-11-24T25:00",
            "yesterday",
            "2026-11-24T17",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
        assert_eq!(parse_rfc3339_millis("2026-13-24T17:03:09.123Z"), None);
        for days in [0, 11_016, 20_416, -1, 60_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
