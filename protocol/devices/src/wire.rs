//! Reading and writing the little-endian fields of a characteristic value.
//!
//! The reader never indexes past the end: a field that does not fit is an error naming it,
//! so no payload can make a decoder panic.

use crate::date_time::DateTime;
use crate::error::{DecodeError, malformed};
use crate::medfloat::{Float, Sfloat};

/// A cursor over a payload, field by field.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, offset: 0 }
    }

    fn take<const N: usize>(&mut self, field: &str) -> Result<[u8; N], DecodeError> {
        if self.bytes.is_empty() {
            return Err(malformed("empty payload"));
        }
        let end = self.offset.checked_add(N);
        let Some(octets) = end.and_then(|end| self.bytes.get(self.offset..end)) else {
            return Err(malformed(format!(
                "payload ends before {field} ({N} octets at offset {}, {} left)",
                self.offset,
                self.remaining()
            )));
        };
        self.offset += N;
        let mut out = [0; N];
        out.copy_from_slice(octets);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &str) -> Result<u8, DecodeError> {
        Ok(self.take::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &str) -> Result<u16, DecodeError> {
        self.take(field).map(u16::from_le_bytes)
    }

    pub(crate) fn i16(&mut self, field: &str) -> Result<i16, DecodeError> {
        self.take(field).map(i16::from_le_bytes)
    }

    pub(crate) fn u24(&mut self, field: &str) -> Result<u32, DecodeError> {
        let [low, middle, high] = self.take(field)?;
        Ok(u32::from_le_bytes([low, middle, high, 0]))
    }

    pub(crate) fn sfloat(&mut self, field: &str) -> Result<Sfloat, DecodeError> {
        self.u16(field).map(Sfloat)
    }

    pub(crate) fn float(&mut self, field: &str) -> Result<Float, DecodeError> {
        self.take(field).map(u32::from_le_bytes).map(Float)
    }

    pub(crate) fn date_time(&mut self, field: &str) -> Result<DateTime, DecodeError> {
        let octets = self.take(field)?;
        DateTime::from_octets(octets).map_err(|problem| malformed(format!("{field}: {problem}")))
    }

    /// Octets not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    /// The end of the value: nothing may follow the last field.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(malformed(format!(
                "{extra} trailing octet{} after the last field (offset {})",
                if extra == 1 { "" } else { "s" },
                self.offset
            ))),
        }
    }
}

/// Builds a payload field by field, in wire order.
#[derive(Default)]
pub(crate) struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, value: u8) -> &mut Self {
        self.bytes.push(value);
        self
    }

    pub(crate) fn u16(&mut self, value: u16) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub(crate) fn i16(&mut self, value: i16) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// The low 24 bits of `value`.
    pub(crate) fn u24(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes()[..3]);
        self
    }

    pub(crate) fn sfloat(&mut self, value: Sfloat) -> &mut Self {
        self.u16(value.0)
    }

    pub(crate) fn float(&mut self, value: Float) -> &mut Self {
        self.bytes.extend_from_slice(&value.0.to_le_bytes());
        self
    }

    pub(crate) fn date_time(&mut self, value: DateTime) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_octets());
        self
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Sets `bit` in `flags` when `present`.
pub(crate) fn flag(present: bool, bit: u8) -> u8 {
    if present { 1 << bit } else { 0 }
}

/// Whether `bit` of `flags` is set.
pub(crate) fn is_set(flags: u8, bit: u8) -> bool {
    flags & (1 << bit) != 0
}

#[cfg(test)]
mod tests {
    use super::Reader;
    use crate::error::DecodeError;

    fn reason(result: Result<impl std::fmt::Debug, DecodeError>) -> String {
        result.unwrap_err().reason().to_owned()
    }

    #[test]
    fn an_empty_payload_is_named_as_such() {
        assert_eq!(reason(Reader::new(&[]).u8("Flags")), "empty payload");
    }

    #[test]
    fn a_short_field_names_the_field_and_where_it_stopped() {
        let mut reader = Reader::new(&[0x00, 0x01]);
        reader.u8("Flags").unwrap();
        assert_eq!(
            reason(reader.u16("Systolic")),
            "payload ends before Systolic (2 octets at offset 1, 1 left)"
        );
    }

    #[test]
    fn trailing_octets_are_counted() {
        let mut reader = Reader::new(&[0x00, 0x01, 0x02]);
        reader.u8("Flags").unwrap();
        assert_eq!(reason(reader.finish()), "2 trailing octets after the last field (offset 1)");
    }

    #[test]
    fn a_date_time_out_of_range_names_the_field() {
        let mut reader = Reader::new(&[0xE8, 0x07, 13, 1, 0, 0, 0]);
        assert_eq!(reason(reader.date_time("Time Stamp")), "Time Stamp: month 13 is out of range");
    }

    #[test]
    fn integers_are_little_endian() {
        let mut reader = Reader::new(&[0x34, 0x12, 0xFB, 0xFF, 0x01, 0x02, 0x03]);
        assert_eq!(reader.u16("a").unwrap(), 0x1234);
        assert_eq!(reader.i16("b").unwrap(), -5);
        assert_eq!(reader.u24("c").unwrap(), 0x030201);
        assert!(reader.finish().is_ok());
    }
}
