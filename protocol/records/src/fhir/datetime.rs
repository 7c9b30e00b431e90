//! FHIR R4 `date`, `dateTime` and `instant` to ms since the epoch, and back.
//!
//! The grammar is R4's, checked character by character: a year of four digits (0001-9999),
//! then optionally `-MM`, `-DD`, and `Thh:mm:ss[.fraction]` with a time zone (`Z` or
//! `±hh:mm`, at most ±14:00), which FHIR requires once there is a time. The calendar (month
//! lengths, leap years) and the epoch arithmetic are the `time` crate's.
//!
//! A value denotes an interval as long as its precision; it maps to the **first millisecond**
//! of that interval, in UTC for a date without a time (which carries no zone): `2024` →
//! 2024-01-01T00:00:00.000Z, `2024-03` → 2024-03-01T00:00:00.000Z, `2024-03-05` →
//! 2024-03-05T00:00:00.000Z. Fractions beyond milliseconds are cut off (not rounded), and a
//! leap second `:60` reads as `:59.999`.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The ms since the epoch a FHIR `date`, `dateTime` or `instant` maps to, or `None` when
/// `text` is not one.
pub fn parse_date_time(text: &str) -> Option<i64> {
    parse_interval(text).map(|(start, _)| start)
}

/// The interval a FHIR `date`, `dateTime` or `instant` denotes, `[first ms, first ms after)`:
/// `2024` is the whole year, `2024-03-05T10:00:00Z` one second, `…:00.5Z` 100 ms, three or
/// more fraction digits one millisecond. This is how an inclusive FHIR `Period.end` becomes
/// an exclusive bound: every moment its value matches is inside.
pub fn parse_interval(text: &str) -> Option<(i64, i64)> {
    let mut cursor = Cursor { bytes: text.as_bytes(), at: 0 };
    let year = cursor.digits(4)?;
    if year == 0 {
        return None;
    }
    let (mut month, mut day) = (1, 1);
    let mut time = Time::MIDNIGHT;
    let mut offset = UtcOffset::UTC;
    let mut precision = Precision::Year;
    if cursor.eat(b'-') {
        month = cursor.digits(2)?;
        precision = Precision::Month;
        if cursor.eat(b'-') {
            day = cursor.digits(2)?;
            precision = Precision::Day;
            if cursor.eat(b'T') {
                let step_ms;
                (time, offset, step_ms) = cursor.time_and_zone()?;
                precision = Precision::Milliseconds(step_ms);
            }
        }
    }
    if !cursor.done() {
        return None;
    }
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = Date::from_calendar_date(year as i32, month, u8::try_from(day).ok()?).ok()?;
    let start = PrimitiveDateTime::new(date, time).assume_offset(offset);
    let to_ms = |moment: OffsetDateTime| (moment.unix_timestamp_nanos() / 1_000_000) as i64;
    let step = match precision {
        Precision::Year => start.replace_year(start.year() + 1).ok(),
        Precision::Month if month == Month::December => {
            start.replace_year(start.year() + 1).and_then(|m| m.replace_month(Month::January)).ok()
        }
        Precision::Month => start.replace_month(month.next()).ok(),
        Precision::Day => start.checked_add(time::Duration::DAY),
        Precision::Milliseconds(step) => start.checked_add(time::Duration::milliseconds(step)),
    };
    // Past 9999-12-31 the calendar stops; the interval then ends where year 10000 would begin.
    let end = step.map_or(AFTER_YEAR_9999_MS, to_ms);
    Some((to_ms(start), end))
}

/// The first millisecond of year 10000, where the last FHIR interval ends.
const AFTER_YEAR_9999_MS: i64 = 253_402_300_800_000;

/// How much of a date and time is given.
enum Precision {
    Year,
    Month,
    Day,
    /// A time, to the second or a fraction of it: the step in ms.
    Milliseconds(i64),
}

/// Whether `text` is a FHIR `instant`: a full date and time with a zone.
pub fn is_instant(text: &str) -> bool {
    text.len() >= "YYYY-MM-DDThh:mm:ssZ".len()
        && text.as_bytes().get(10) == Some(&b'T')
        && parse_date_time(text).is_some()
}

/// The FHIR `instant` (also a valid `dateTime`) of a moment, in UTC with milliseconds:
/// `2024-03-05T14:30:00.000Z`. `None` outside years 0001 to 9999.
pub fn format_instant(ms: i64) -> Option<String> {
    let moment = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    if !(1..=9999).contains(&moment.year()) {
        return None;
    }
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        moment.year(),
        u8::from(moment.month()),
        moment.day(),
        moment.hour(),
        moment.minute(),
        moment.second(),
        moment.millisecond()
    ))
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.bytes.get(self.at) == Some(&byte);
        if matched {
            self.at += 1;
        }
        matched
    }

    /// Exactly `count` ASCII digits.
    fn digits(&mut self, count: usize) -> Option<u32> {
        let slice = self.bytes.get(self.at..self.at + count)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.at += count;
        Some(slice.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    }

    /// `hh:mm:ss[.fraction](Z|±hh:mm)`, after the `T`, with the step its precision gives
    /// in ms (1000 for whole seconds, 100 for one fraction digit, ... at least 1).
    fn time_and_zone(&mut self) -> Option<(Time, UtcOffset, i64)> {
        let hour = self.digits(2)?;
        self.eat(b':').then_some(())?;
        let minute = self.digits(2)?;
        self.eat(b':').then_some(())?;
        let mut second = self.digits(2)?;
        let mut millis = 0;
        let mut step_ms = 1000;
        if self.eat(b'.') {
            let start = self.at;
            while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
                self.at += 1;
            }
            let fraction = &self.bytes[start..self.at];
            if fraction.is_empty() {
                return None;
            }
            millis =
                (0..3).fold(0, |n, i| n * 10 + fraction.get(i).map_or(0, |d| u32::from(d - b'0')));
            step_ms = [100, 10, 1][fraction.len().min(3) - 1];
        }
        if second == 60 {
            (second, millis, step_ms) = (59, 999, 1);
        }
        let offset = if self.eat(b'Z') {
            UtcOffset::UTC
        } else {
            let sign: i8 = if self.eat(b'+') {
                1
            } else if self.eat(b'-') {
                -1
            } else {
                return None;
            };
            let hours = self.digits(2)?;
            self.eat(b':').then_some(())?;
            let minutes = self.digits(2)?;
            if minutes > 59 || hours > 14 || (hours == 14 && minutes != 0) {
                return None;
            }
            UtcOffset::from_hms(sign * hours as i8, sign * minutes as i8, 0).ok()?
        };
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let time =
            Time::from_hms_milli(hour as u8, minute as u8, second as u8, millis as u16).ok()?;
        Some((time, offset, step_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn partial_dates_map_to_the_first_millisecond_in_utc() {
        assert_eq!(parse_date_time("1970"), Some(0));
        assert_eq!(parse_date_time("1970-02"), Some(31 * DAY));
        assert_eq!(parse_date_time("1970-01-02"), Some(DAY));
        assert_eq!(parse_date_time("1969"), Some(-365 * DAY));
        assert_eq!(parse_date_time("2024-02-29"), Some(1_709_164_800_000));
    }

    #[test]
    fn full_date_times_honour_their_zone_and_fraction() {
        assert_eq!(parse_date_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_date_time("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_date_time("1969-12-31T19:00:00-05:00"), Some(0));
        assert_eq!(parse_date_time("1970-01-01T00:00:00.5Z"), Some(500));
        assert_eq!(parse_date_time("1970-01-01T00:00:00.123999Z"), Some(123));
        assert_eq!(parse_date_time("1970-01-01T00:00:60Z"), Some(59_999));
        assert_eq!(parse_date_time("1970-01-01T00:00:00+14:00"), Some(-14 * 3_600_000));
    }

    #[test]
    fn what_r4_does_not_allow_is_refused() {
        for bad in [
            "0000",
            "197",
            "19700",
            "1970-1",
            "1970-13",
            "1970-00",
            "1970-02-30",
            "2023-02-29",
            "1970-01-01T00:00:00",
            "1970-01-01T00:00Z",
            "1970-01-01T24:00:00Z",
            "1970-01-01T00:60:00Z",
            "1970-01-01T00:00:00.Z",
            "1970-01-01T00:00:00+14:30",
            "1970-01-01T00:00:00+1:00",
            "1970-01-01t00:00:00Z",
            "1970-01-01 00:00:00Z",
            "1970-01-01T00:00:00z",
            " 1970",
            "1970-01-01T00:00:00ZZ",
            "",
        ] {
            assert_eq!(parse_date_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn intervals_end_where_their_precision_ends() {
        assert_eq!(parse_interval("1970"), Some((0, 365 * DAY)));
        assert_eq!(parse_interval("1970-12"), Some((334 * DAY, 365 * DAY)));
        assert_eq!(parse_interval("1970-01-01"), Some((0, DAY)));
        assert_eq!(parse_interval("1970-01-01T00:00:00Z"), Some((0, 1000)));
        assert_eq!(parse_interval("1970-01-01T00:00:00.1Z"), Some((100, 200)));
        assert_eq!(parse_interval("1970-01-01T00:00:00.1234Z"), Some((123, 124)));
        assert_eq!(
            parse_interval("9999-12-31"),
            Some((AFTER_YEAR_9999_MS - DAY, AFTER_YEAR_9999_MS))
        );
        assert_eq!(parse_interval("9999").map(|i| i.1), Some(AFTER_YEAR_9999_MS));
    }

    #[test]
    fn instants_format_in_utc_with_milliseconds_and_parse_back() {
        assert_eq!(format_instant(0).unwrap(), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_instant(-1).unwrap(), "1969-12-31T23:59:59.999Z");
        for ms in [0, 1, -1, 1_709_164_800_123, -62_135_596_800_000, 253_402_300_799_999] {
            let text = format_instant(ms).unwrap();
            assert!(is_instant(&text));
            assert_eq!(parse_date_time(&text), Some(ms), "{text}");
        }
        assert_eq!(format_instant(253_402_300_800_000), None);
        assert!(!is_instant("2024-03-05"));
    }
}
