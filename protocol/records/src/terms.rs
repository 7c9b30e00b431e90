//! The terms a contract and an access request share: purpose, classes, data period and
//! validity, read and judged the same way for both.

use std::collections::BTreeSet;

use crate::class::DataClass;
use crate::error::Error;
use crate::json::Object;
use crate::period::{DataPeriod, Validity};
use crate::purpose::Purpose;

/// The terms, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Terms {
    pub(crate) purpose: Purpose,
    pub(crate) classes: BTreeSet<DataClass>,
    pub(crate) data_period: DataPeriod,
    pub(crate) valid: Validity,
}

/// The terms with their JSON shape checked and their values not yet judged.
pub(crate) struct RawTerms<'a> {
    purpose: &'a str,
    classes: Vec<&'a str>,
    data_start: Option<i64>,
    data_end: Option<i64>,
    valid_start: i64,
    valid_end: i64,
}

impl<'a> RawTerms<'a> {
    /// Reads `purpose`, `classes`, `data_period {start, end}` and `valid {start, end}`. Both
    /// bounds of the data period must be present; `null` leaves one open, and an absent one
    /// is refused rather than read as open, so a misspelt key cannot widen what is shared.
    pub(crate) fn read(object: &Object<'a>) -> Result<RawTerms<'a>, Error> {
        let purpose = object.string("purpose")?;
        let classes = object.strings("classes")?;
        let data_period = object.object("data_period")?;
        let valid = object.object("valid")?;
        Ok(RawTerms {
            purpose,
            classes,
            data_start: data_period.nullable_integer("start")?,
            data_end: data_period.nullable_integer("end")?,
            valid_start: valid.integer("start")?,
            valid_end: valid.integer("end")?,
        })
    }

    /// Judges the values.
    pub(crate) fn validate(self) -> Result<Terms, Error> {
        let purpose = Purpose::parse(self.purpose).ok_or_else(|| {
            Error::value(
                "purpose",
                format!("names `{}`, which is not an HL7 v3 PurposeOfUse code", self.purpose),
            )
        })?;
        if self.classes.is_empty() {
            return Err(Error::value("classes", "must name at least one class"));
        }
        let mut classes = BTreeSet::new();
        for wire in &self.classes {
            let class = DataClass::parse(wire).ok_or_else(|| {
                Error::value("classes", format!("names `{wire}`, which is not a record class"))
            })?;
            if !classes.insert(class) {
                return Err(Error::value("classes", format!("names `{wire}` twice")));
            }
        }
        if let (Some(start), Some(end)) = (self.data_start, self.data_end)
            && end <= start
        {
            return Err(Error::value("data_period.end", "must be later than `data_period.start`"));
        }
        let data_period = DataPeriod::new(self.data_start, self.data_end)
            .ok_or_else(|| Error::value("data_period", "must lie within years 0001 to 9999"))?;
        let valid_start = u64::try_from(self.valid_start)
            .map_err(|_| Error::value("valid.start", "must not be negative"))?;
        let valid_end = u64::try_from(self.valid_end)
            .map_err(|_| Error::value("valid.end", "must not be negative"))?;
        if valid_end <= valid_start {
            return Err(Error::value("valid.end", "must be later than `valid.start`"));
        }
        let valid = Validity::new(valid_start, valid_end)
            .ok_or_else(|| Error::value("valid.end", "must lie within years 0001 to 9999"))?;
        Ok(Terms { purpose, classes, data_period, valid })
    }
}
