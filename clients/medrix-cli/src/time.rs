//! TIME arguments: an RFC 3339 date-time or a FHIR date, `now`, or a duration from now
//! (`+30d`, `-1y`). A FHIR value denotes an interval (`2026` is a year), so a start takes its
//! first moment and an end the first moment after it, as spec/records.md §9 reads a
//! `Period.end`: `--until 2026-12-31` includes that whole day.

use medrix_records::fhir::datetime::parse_interval;

/// Which end of an interval a TIME gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The first moment it names.
    Start,
    /// The first moment after it.
    End,
}

/// The ms since the epoch `text` names, read as `bound`, with `now_ms` for `now` and
/// durations.
pub fn parse_time(text: &str, bound: Bound, now_ms: u64) -> Result<i64, String> {
    let now = now_ms as i64;
    if text == "now" {
        return Ok(now);
    }
    if let Some(offset) = parse_duration(text) {
        return now.checked_add(offset).ok_or_else(|| not_a_time(text));
    }
    let (start, end) = parse_interval(&rfc3339_to_fhir(text)).ok_or_else(|| not_a_time(text))?;
    Ok(match bound {
        Bound::Start => start,
        Bound::End => end,
    })
}

fn not_a_time(text: &str) -> String {
    format!(
        "`{text}` is not a time: give an RFC 3339 date-time (2026-03-01T09:00:00Z), a FHIR \
         date (2026, 2026-03, 2026-03-01), now, or a duration from now (+30d, -1y, +12h)"
    )
}

/// `±N` and a unit (s, m, h, d, w, y = 365 days) in ms.
fn parse_duration(text: &str) -> Option<i64> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let body = &text[1..];
    let unit_at = body.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = body.split_at(unit_at);
    let count: i64 = digits.parse().ok()?;
    let unit_ms: i64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        "y" => 365 * 86_400_000,
        _ => return None,
    };
    count.checked_mul(unit_ms)?.checked_mul(sign)
}

/// RFC 3339 allows a lowercase `t` or a space between date and time, and a lowercase `z`;
/// FHIR allows only `T` and `Z`.
fn rfc3339_to_fhir(text: &str) -> String {
    let mut fhir: Vec<u8> = text.as_bytes().to_vec();
    if fhir.len() > 10 && matches!(fhir[10], b't' | b' ') {
        fhir[10] = b'T';
    }
    if fhir.last() == Some(&b'z') && fhir.len() > 10 {
        let last = fhir.len() - 1;
        fhir[last] = b'Z';
    }
    String::from_utf8(fhir).unwrap_or_else(|_| text.to_owned())
}

/// A duration for a person: `3d 4h`, `12m`, `40s`.
pub fn describe_duration(ms: u64) -> String {
    let seconds = ms / 1000;
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn a_fhir_date_starts_at_its_first_moment_and_ends_after_its_last() {
        assert_eq!(parse_time("2026-01-02", Bound::Start, NOW), Ok(1_767_312_000_000));
        assert_eq!(parse_time("2026-01-01", Bound::End, NOW), Ok(1_767_312_000_000));
        assert_eq!(parse_time("2026", Bound::End, NOW), Ok(1_798_761_600_000));
        assert_eq!(parse_time("1969-12-31", Bound::Start, NOW), Ok(-86_400_000));
    }

    #[test]
    fn rfc3339_spellings_are_accepted() {
        let expected = Ok(1_767_258_000_000); // 2026-01-01T09:00:00Z
        assert_eq!(parse_time("2026-01-01T09:00:00Z", Bound::Start, NOW), expected);
        assert_eq!(parse_time("2026-01-01t09:00:00z", Bound::Start, NOW), expected);
        assert_eq!(parse_time("2026-01-01 10:00:00+01:00", Bound::Start, NOW), expected);
    }

    #[test]
    fn now_and_durations_count_from_now() {
        assert_eq!(parse_time("now", Bound::End, NOW), Ok(NOW as i64));
        assert_eq!(parse_time("+30d", Bound::End, NOW), Ok(NOW as i64 + 30 * 86_400_000));
        assert_eq!(parse_time("-1y", Bound::Start, NOW), Ok(NOW as i64 - 365 * 86_400_000));
        assert_eq!(parse_time("+5s", Bound::End, NOW), Ok(NOW as i64 + 5_000));
    }

    #[test]
    fn anything_else_is_refused_with_what_to_give() {
        for bad in ["tomorrow", "2026-13-01", "01/02/2026", "+5", "+5x", "2026-01-01T09:00"] {
            let err = parse_time(bad, Bound::Start, NOW).unwrap_err();
            assert!(err.contains("is not a time"), "{bad}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(describe_duration(40_000), "40s");
        assert_eq!(describe_duration(12 * 60_000 + 5_000), "12m");
        assert_eq!(describe_duration(3_600_000 * 5 + 60_000 * 7), "5h 7m");
        assert_eq!(describe_duration(86_400_000 * 3 + 3_600_000 * 4), "3d 4h");
    }
}
