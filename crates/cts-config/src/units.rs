//! Durations (`100ms`, `2s`, `1.5m`, `1h`) and sizes (`512B`, `64KB`, `100MB`).
//!
//! Both are a decimal number, optionally with a fraction, followed by a unit.
//! A bare number is always an error: `stop_timeout: 30` could mean seconds or
//! milliseconds, and guessing wrong is worse than asking (the message says
//! what to write instead). The arithmetic is done in integers so that `0.1s`
//! is exactly 100 ms.

use std::fmt;
use std::time::Duration;

use crate::model::ByteSize;

/// Nanoseconds per duration unit, longest suffix first so `ms` wins over `m`.
const DURATION_UNITS: &[(&str, u128)] = &[
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
];

/// Bytes per size unit (matched case-insensitively; powers of 1024).
const SIZE_UNITS: &[(&str, u128)] = &[
    ("b", 1),
    ("kb", 1 << 10),
    ("kib", 1 << 10),
    ("mb", 1 << 20),
    ("mib", 1 << 20),
    ("gb", 1 << 30),
    ("gib", 1 << 30),
    ("tb", 1 << 40),
    ("tib", 1 << 40),
];

/// Parses a duration such as `100ms`, `2s`, `5m`, `1h` or `1.5s`.
///
/// # Errors
///
/// Returns a message (meant to follow a key path) when the text is not a
/// non-negative number followed by one of `ms`, `s`, `m`, `h`; a bare number
/// gets the hint "write 30s".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text)?;
    if unit.is_empty() {
        return Err(format!(
            "{text:?} has no unit: write {number}s (units: ms, s, m, h, d)"
        ));
    }
    let Some(&(_, scale)) = DURATION_UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!(
            "{text:?} has an unknown unit {unit:?}: use ms, s, m, h or d (e.g. 30s)"
        ));
    };
    let nanos = scaled(number, scale).ok_or_else(|| format!("{text:?} is too long"))?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| format!("{text:?} is too long"))?;
    // The remainder is below 10^9, so it fits.
    let subsec = (nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, subsec))
}

/// Parses a size such as `512B`, `64KB`, `100MB` or `1GB`; `KB` is 1024 bytes.
/// `KiB`/`MiB`/`GiB` and lower-case `kb`/`mb`/`gb` mean the same.
///
/// # Errors
///
/// Returns a message when the text is not a non-negative number followed by a
/// size unit; a bare number gets a hint to add one.
pub fn parse_size(text: &str) -> Result<ByteSize, String> {
    let (number, unit) = split_number(text)?;
    if unit.is_empty() {
        return Err(format!(
            "{text:?} has no unit: write {number}B, {number}KB, {number}MB or {number}GB"
        ));
    }
    let lower = unit.to_ascii_lowercase();
    let Some(&(_, scale)) = SIZE_UNITS.iter().find(|(name, _)| *name == lower) else {
        return Err(format!(
            "{text:?} has an unknown unit {unit:?}: use B, KB, MB or GB (e.g. 100MB)"
        ));
    };
    let bytes = scaled(number, scale)
        .and_then(|b| u64::try_from(b).ok())
        .ok_or_else(|| format!("{text:?} is too large"))?;
    Ok(ByteSize(bytes))
}

/// Splits `"1.5 ms"` into `("1.5", "ms")`, checking the number's shape.
fn split_number(text: &str) -> Result<(&str, &str), String> {
    let trimmed = text.trim();
    let end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(end);
    let unit = unit.trim_start();
    let well_formed = match number.split_once('.') {
        None => !number.is_empty(),
        Some((int, frac)) => !int.is_empty() && !frac.is_empty() && !frac.contains('.'),
    };
    if !well_formed || !unit.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "{text:?} is not a number followed by a unit (e.g. 30s, 100MB)"
        ));
    }
    Ok((number, unit))
}

/// `number × scale`, in integers; digits of the fraction below one unit of
/// `scale` are dropped. `None` on overflow.
fn scaled(number: &str, scale: u128) -> Option<u128> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let whole = int.parse::<u128>().ok()?.checked_mul(scale)?;
    // More than 30 fractional digits cannot matter at nanosecond or byte
    // resolution, and keeps 10^digits inside u128.
    let frac = &frac[..frac.len().min(30)];
    if frac.is_empty() {
        return Some(whole);
    }
    let numerator = frac.parse::<u128>().ok()?;
    let denominator = 10u128.checked_pow(frac.len() as u32)?;
    // numerator < denominator <= 10^30, scale < 2^42: no overflow.
    whole.checked_add(numerator.checked_mul(scale)? / denominator)
}

/// How [`format_duration`] writes a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationStyle {
    /// As a setting reads, for timeouts and delays in messages: `500ms`, `1.5s` (one decimal,
    /// under 10 s), `30s`, `5m`, `1m30s`, `2h0m`. Hours are the largest unit; from an hour on
    /// the seconds are left out, and so are zero seconds after whole minutes.
    Setting,
    /// As an elapsed time such as a worker's uptime: whole seconds, the two largest units from
    /// days down, the second one even when zero: `5s`, `1m0s`, `2h1m`, `1d1h`.
    Elapsed,
}

/// Writes `d` for people, in the units [`parse_duration`] reads (`ms`, `s`, `m`, `h`, `d`),
/// combined: `1m30s`. See [`DurationStyle`] for the two ways.
pub fn format_duration(d: Duration, style: DurationStyle) -> String {
    let s = d.as_secs();
    match style {
        DurationStyle::Setting => {
            let ms = d.as_millis();
            if ms < 1000 {
                format!("{ms}ms")
            } else if ms % 1000 != 0 && ms < 10_000 {
                format!("{:.1}s", d.as_secs_f64())
            } else {
                match (s / 3600, s / 60 % 60, s % 60) {
                    (0, 0, s) => format!("{s}s"),
                    (0, m, 0) => format!("{m}m"),
                    (0, m, s) => format!("{m}m{s}s"),
                    (h, m, _) => format!("{h}h{m}m"),
                }
            }
        }
        DurationStyle::Elapsed => match (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60) {
            (0, 0, 0, s) => format!("{s}s"),
            (0, 0, m, s) => format!("{m}m{s}s"),
            (0, h, m, _) => format!("{h}h{m}m"),
            (d, h, _, _) => format!("{d}d{h}h"),
        },
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that divides the size exactly: `100MB`, `1536KB`, `7B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TB", 1 << 40),
            ("GB", 1 << 30),
            ("MB", 1 << 20),
            ("KB", 1 << 10),
        ];
        for (name, scale) in UNITS {
            if self.0 != 0 && self.0 % scale == 0 {
                return write!(f, "{}{name}", self.0 / scale);
            }
        }
        write!(f, "{}B", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("100ms", Duration::from_millis(100)),
            ("2s", Duration::from_secs(2)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.1s", Duration::from_millis(100)),
            ("0.5ms", Duration::from_micros(500)),
            ("0s", Duration::ZERO),
            (" 30 s ", Duration::from_secs(30)),
            ("1.25h", Duration::from_secs(4500)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn formatted_durations() {
        use DurationStyle::{Elapsed, Setting};
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let cases = [
            (ms(0), Setting, "0ms"),
            (ms(500), Setting, "500ms"),
            (ms(999), Setting, "999ms"),
            (ms(1000), Setting, "1s"),
            (ms(1500), Setting, "1.5s"),
            (ms(9_999), Setting, "10.0s"),
            (ms(10_500), Setting, "10s"),
            (s(30), Setting, "30s"),
            (s(60), Setting, "1m"),
            (s(90), Setting, "1m30s"),
            (s(300), Setting, "5m"),
            (s(3600), Setting, "1h0m"),
            (s(7265), Setting, "2h1m"),
            (s(90_000), Setting, "25h0m"),
            (s(0), Elapsed, "0s"),
            (ms(1500), Elapsed, "1s"),
            (s(5), Elapsed, "5s"),
            (s(60), Elapsed, "1m0s"),
            (s(65), Elapsed, "1m5s"),
            (s(3600), Elapsed, "1h0m"),
            (s(7260), Elapsed, "2h1m"),
            (s(86_400), Elapsed, "1d0h"),
            (s(90_000), Elapsed, "1d1h"),
        ];
        for (d, style, want) in cases {
            assert_eq!(format_duration(d, style), want, "{d:?} {style:?}");
        }
        // What the setting style writes in a single unit reads back as the same duration.
        for text in ["500ms", "1.5s", "30s", "5m"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d, Setting), text);
        }
    }

    #[test]
    fn bad_durations() {
        let err = parse_duration("30").unwrap_err();
        assert!(err.contains("write 30s"), "{err}");
        let err = parse_duration("1.5").unwrap_err();
        assert!(err.contains("write 1.5s"), "{err}");
        let err = parse_duration("5w").unwrap_err();
        assert!(err.contains("unknown unit \"w\""), "{err}");
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("5S").is_err());
        for bad in [
            "",
            "s",
            "-1s",
            "1..5s",
            ".5s",
            "5.s",
            "1s2",
            "1e3s",
            "five seconds",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        let err = parse_duration("99999999999999999999999h").unwrap_err();
        assert!(err.contains("too long"), "{err}");
    }

    #[test]
    fn sizes() {
        let cases = [
            ("512B", 512),
            ("64KB", 64 * 1024),
            ("100MB", 100 * 1024 * 1024),
            ("1GB", 1 << 30),
            ("1GiB", 1 << 30),
            ("2MiB", 2 << 20),
            ("3KiB", 3 << 10),
            ("64kb", 64 * 1024),
            ("100mb", 100 << 20),
            ("1gb", 1 << 30),
            ("1.5KB", 1536),
            ("0B", 0),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), Ok(ByteSize(want)), "{text}");
        }
    }

    #[test]
    fn bad_sizes() {
        let err = parse_size("100").unwrap_err();
        assert!(err.contains("100MB"), "{err}");
        let err = parse_size("100XB").unwrap_err();
        assert!(err.contains("unknown unit"), "{err}");
        for bad in ["", "MB", "-1MB", "1,5MB", "ten MB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_size("99999999999TB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn size_display_round_trips() {
        assert_eq!(ByteSize(100 << 20).to_string(), "100MB");
        assert_eq!(ByteSize(1 << 30).to_string(), "1GB");
        assert_eq!(ByteSize(1536).to_string(), "1536B");
        assert_eq!(ByteSize(1536 * 1024).to_string(), "1536KB");
        assert_eq!(ByteSize(7).to_string(), "7B");
        assert_eq!(ByteSize(0).to_string(), "0B");
        for n in [0, 1, 1023, 1024, 5 << 20, 3 << 40, 12345] {
            assert_eq!(parse_size(&ByteSize(n).to_string()), Ok(ByteSize(n)));
        }
    }
}
