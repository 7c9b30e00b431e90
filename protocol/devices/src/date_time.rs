//! The GATT Date Time field (7 octets: year as uint16, then month, day, hours, minutes and
//! seconds as uint8), the time stamp every characteristic here carries.

use std::fmt;

/// A Date Time as the device sent it. Year, month and day may be 0, meaning the device does
/// not know them; the other values are within their ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    year: u16,
    month: u8,
    day: u8,
    hours: u8,
    minutes: u8,
    seconds: u8,
}

impl DateTime {
    /// The date and time, or why it is outside the ranges the GATT definition allows (year
    /// 1582..=9999 or 0, month 1..=12 or 0, day 1..=31 or 0, hours 0..=23, minutes and
    /// seconds 0..=59). No calendar check beyond that: the definition has none.
    pub fn new(
        year: u16,
        month: u8,
        day: u8,
        hours: u8,
        minutes: u8,
        seconds: u8,
    ) -> Result<Self, String> {
        let checks = [
            ("year", u32::from(year), year == 0 || (1582..=9999).contains(&year)),
            ("month", u32::from(month), month <= 12),
            ("day", u32::from(day), day <= 31),
            ("hours", u32::from(hours), hours <= 23),
            ("minutes", u32::from(minutes), minutes <= 59),
            ("seconds", u32::from(seconds), seconds <= 59),
        ];
        if let Some((part, value, _)) = checks.into_iter().find(|(_, _, ok)| !ok) {
            return Err(format!("{part} {value} is out of range"));
        }
        Ok(DateTime { year, month, day, hours, minutes, seconds })
    }

    /// The 7 octets of the field, from their wire order.
    pub fn from_octets(octets: [u8; 7]) -> Result<Self, String> {
        let [year_low, year_high, month, day, hours, minutes, seconds] = octets;
        Self::new(u16::from_le_bytes([year_low, year_high]), month, day, hours, minutes, seconds)
    }

    /// The 7 octets as they travel.
    pub fn to_octets(self) -> [u8; 7] {
        let [year_low, year_high] = self.year.to_le_bytes();
        [year_low, year_high, self.month, self.day, self.hours, self.minutes, self.seconds]
    }

    /// The year, or 0 if the device does not know it.
    pub fn year(self) -> u16 {
        self.year
    }

    /// The month (1 = January), or 0 if the device does not know it.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, or 0 if the device does not know it.
    pub fn day(self) -> u8 {
        self.day
    }

    /// The hour, 0 to 23.
    pub fn hours(self) -> u8 {
        self.hours
    }

    /// The minute, 0 to 59.
    pub fn minutes(self) -> u8 {
        self.minutes
    }

    /// The second, 0 to 59.
    pub fn seconds(self) -> u8 {
        self.seconds
    }
}

impl fmt::Display for DateTime {
    /// `YYYY-MM-DDTHH:MM:SS`, the device's local time as sent; unknown parts print as zeros.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hours, self.minutes, self.seconds
        )
    }
}

#[cfg(test)]
mod tests {
    use super::DateTime;

    #[test]
    fn a_date_time_prints_in_iso_order() {
        let stamp = DateTime::from_octets([0xDC, 0x07, 12, 5, 11, 50, 27]).unwrap();
        assert_eq!(stamp.to_string(), "2012-12-05T11:50:27");
        assert_eq!(stamp.to_octets(), [0xDC, 0x07, 12, 5, 11, 50, 27]);
    }

    #[test]
    fn unknown_year_month_and_day_print_as_zeros() {
        let stamp = DateTime::new(0, 0, 0, 0, 0, 0).unwrap();
        assert_eq!(stamp.to_string(), "0000-00-00T00:00:00");
    }

    #[test]
    fn values_outside_their_ranges_are_refused_by_name() {
        assert_eq!(DateTime::new(2024, 13, 1, 0, 0, 0), Err("month 13 is out of range".into()));
        assert_eq!(DateTime::new(1581, 1, 1, 0, 0, 0), Err("year 1581 is out of range".into()));
        assert_eq!(DateTime::new(10000, 1, 1, 0, 0, 0), Err("year 10000 is out of range".into()));
        assert_eq!(DateTime::new(2024, 1, 32, 0, 0, 0), Err("day 32 is out of range".into()));
        assert_eq!(DateTime::new(2024, 1, 1, 24, 0, 0), Err("hours 24 is out of range".into()));
        assert_eq!(DateTime::new(2024, 1, 1, 0, 60, 0), Err("minutes 60 is out of range".into()));
        assert_eq!(DateTime::new(2024, 1, 1, 0, 0, 60), Err("seconds 60 is out of range".into()));
        assert!(DateTime::new(1582, 12, 31, 23, 59, 59).is_ok());
        assert!(DateTime::new(9999, 0, 0, 0, 0, 0).is_ok());
    }
}
