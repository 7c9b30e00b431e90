//! The two time ranges of a contract. Both are half-open, `[start, end)`: a moment equal to
//! `end` is already outside, so consecutive periods never overlap.

use serde::Serialize;

/// The earliest moment a record may name: 0001-01-01T00:00:00Z, FHIR's first year.
pub const EARLIEST_MS: i64 = -62_135_596_800_000;

/// The latest moment a record may name: 9999-12-31T23:59:59.999Z, FHIR's last. Every bound
/// stays within FHIR's years so every contract exports to `Consent` exactly.
pub const LATEST_MS: i64 = 253_402_300_799_999;

/// When a contract is in force, in ms since the epoch: `[start, end)`, `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Validity {
    start: u64,
    end: u64,
}

impl Validity {
    /// The range, if `start < end` and `end` is no later than [`LATEST_MS`].
    pub fn new(start: u64, end: u64) -> Option<Validity> {
        (start < end && end <= LATEST_MS as u64).then_some(Validity { start, end })
    }

    /// The first moment in force.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The first moment no longer in force.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Whether the contract is in force at `at_ms`.
    pub fn contains(&self, at_ms: u64) -> bool {
        self.start <= at_ms && at_ms < self.end
    }
}

/// Which entries a contract covers, by their clinical time (when the observation was made, the
/// condition began, ...), not by when they were uploaded: `[start, end)` in ms since the
/// epoch, either bound open (`None`). Bounds may be negative: clinical data predates 1970.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct DataPeriod {
    start: Option<i64>,
    end: Option<i64>,
}

impl DataPeriod {
    /// Every entry, whatever its clinical time, including entries whose time is unknown.
    pub const ALL: DataPeriod = DataPeriod { start: None, end: None };

    /// The range, if both bounds lie from [`EARLIEST_MS`] to [`LATEST_MS`] and, when both are
    /// given, `start < end`.
    pub fn new(start: Option<i64>, end: Option<i64>) -> Option<DataPeriod> {
        let fits =
            |bound: Option<i64>| bound.is_none_or(|b| (EARLIEST_MS..=LATEST_MS).contains(&b));
        let ordered = match (start, end) {
            (Some(start), Some(end)) => start < end,
            _ => true,
        };
        (fits(start) && fits(end) && ordered).then_some(DataPeriod { start, end })
    }

    /// The first clinical moment covered, or `None` for no lower bound.
    pub fn start(&self) -> Option<i64> {
        self.start
    }

    /// The first clinical moment no longer covered, or `None` for no upper bound.
    pub fn end(&self) -> Option<i64> {
        self.end
    }

    /// Whether neither bound is set: the period covers every entry.
    pub fn is_unbounded(&self) -> bool {
        self.start.is_none() && self.end.is_none()
    }

    /// Whether an entry of this clinical time is covered. An entry whose time is unknown is
    /// covered only by an unbounded period: nobody can tell it falls inside the bounds, and a
    /// patient who limited the period did not agree to share what may lie outside it.
    pub fn covers(&self, clinical_time_ms: Option<i64>) -> bool {
        match clinical_time_ms {
            None => self.is_unbounded(),
            Some(t) => self.start.is_none_or(|s| s <= t) && self.end.is_none_or(|e| t < e),
        }
    }

    /// Whether every entry this period covers, `other` covers too.
    pub fn within(&self, other: &DataPeriod) -> bool {
        let start_ok = match (other.start, self.start) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(o), Some(s)) => o <= s,
        };
        let end_ok = match (other.end, self.end) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(o), Some(s)) => s <= o,
        };
        start_ok && end_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_is_half_open() {
        let valid = Validity::new(10, 20).unwrap();
        assert!(!valid.contains(9));
        assert!(valid.contains(10));
        assert!(valid.contains(19));
        assert!(!valid.contains(20));
        assert!(Validity::new(20, 20).is_none());
        assert!(Validity::new(1, LATEST_MS as u64 + 1).is_none());
        assert!(Validity::new(1, LATEST_MS as u64).is_some());
    }

    #[test]
    fn data_period_bounds_and_unknown_times() {
        let period = DataPeriod::new(Some(-100), Some(100)).unwrap();
        assert!(period.covers(Some(-100)));
        assert!(!period.covers(Some(100)));
        assert!(!period.covers(None));
        let open_end = DataPeriod::new(Some(0), None).unwrap();
        assert!(open_end.covers(Some(i64::MAX)));
        assert!(!open_end.covers(None));
        assert!(DataPeriod::ALL.covers(None));
        assert!(DataPeriod::new(Some(5), Some(5)).is_none());
    }

    #[test]
    fn within_compares_bounds() {
        let wide = DataPeriod::new(Some(0), None).unwrap();
        let narrow = DataPeriod::new(Some(10), Some(20)).unwrap();
        assert!(narrow.within(&wide));
        assert!(!wide.within(&narrow));
        assert!(wide.within(&DataPeriod::ALL));
        assert!(!DataPeriod::ALL.within(&wide));
    }
}
