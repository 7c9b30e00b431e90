//! IEEE 11073-20601 SFLOAT and FLOAT, the numbers health devices send (the Bluetooth GATT
//! Specification Supplement calls them `medfloat16` and `medfloat32`).
//!
//! SFLOAT is 16 bits: a 4-bit exponent over a 12-bit mantissa. FLOAT is 32 bits: an 8-bit
//! exponent over a 24-bit mantissa. Both are two's complement and base ten. Five bit patterns
//! with exponent 0 are not numbers but special values; the same mantissas under any other
//! exponent are ordinary numbers (20601 defines the specials as whole patterns, and so do the
//! Bluetooth Personal Health Devices Transcoding white paper and Wireshark's dissector).

use crate::decimal::Decimal;

/// What an SFLOAT or FLOAT holds: an exact number, or one of the special values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Medfloat {
    /// An exact number, with the exponent the device chose (its precision).
    Number(Decimal),
    /// Not a number: the device has no valid value.
    NaN,
    /// Not at this resolution: the value does not fit the precision.
    NRes,
    /// Positive infinity: above the device's range.
    PositiveInfinity,
    /// Negative infinity: below the device's range.
    NegativeInfinity,
    /// The pattern 20601 reserves for future use.
    Reserved,
}

impl Medfloat {
    /// The JSON string a special value is written as; `None` for a number.
    pub fn special_name(self) -> Option<&'static str> {
        match self {
            Medfloat::Number(_) => None,
            Medfloat::NaN => Some("NaN"),
            Medfloat::NRes => Some("NRes"),
            Medfloat::PositiveInfinity => Some("+INF"),
            Medfloat::NegativeInfinity => Some("-INF"),
            Medfloat::Reserved => Some("RESERVED"),
        }
    }
}

/// The bit patterns of the specials, in one table per width so the two cannot disagree.
struct Specials<T> {
    nan: T,
    nres: T,
    positive_infinity: T,
    negative_infinity: T,
    reserved: T,
}

const SFLOAT_SPECIALS: Specials<u16> = Specials {
    nan: 0x07FF,
    nres: 0x0800,
    positive_infinity: 0x07FE,
    negative_infinity: 0x0802,
    reserved: 0x0801,
};

const FLOAT_SPECIALS: Specials<u32> = Specials {
    nan: 0x007F_FFFF,
    nres: 0x0080_0000,
    positive_infinity: 0x007F_FFFE,
    negative_infinity: 0x0080_0002,
    reserved: 0x0080_0001,
};

impl<T: Copy + PartialEq> Specials<T> {
    fn special(&self, bits: T) -> Option<Medfloat> {
        [
            (self.nan, Medfloat::NaN),
            (self.nres, Medfloat::NRes),
            (self.positive_infinity, Medfloat::PositiveInfinity),
            (self.negative_infinity, Medfloat::NegativeInfinity),
            (self.reserved, Medfloat::Reserved),
        ]
        .into_iter()
        .find_map(|(pattern, value)| (pattern == bits).then_some(value))
    }

    fn bits(&self, value: Medfloat) -> Option<T> {
        match value {
            Medfloat::Number(_) => None,
            Medfloat::NaN => Some(self.nan),
            Medfloat::NRes => Some(self.nres),
            Medfloat::PositiveInfinity => Some(self.positive_infinity),
            Medfloat::NegativeInfinity => Some(self.negative_infinity),
            Medfloat::Reserved => Some(self.reserved),
        }
    }
}

/// Sign-extends the low `width` bits of `raw`.
fn signed(raw: u32, width: u32) -> i32 {
    let shift = 32 - width;
    ((raw << shift) as i32) >> shift
}

/// A 16-bit SFLOAT as it travels: any 16 bits are one, so encoding it back is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sfloat(pub u16);

impl Sfloat {
    /// What the bits hold.
    pub fn value(self) -> Medfloat {
        if let Some(special) = SFLOAT_SPECIALS.special(self.0) {
            return special;
        }
        let exponent = signed(u32::from(self.0 >> 12), 4);
        let mantissa = signed(u32::from(self.0 & 0x0FFF), 12);
        Medfloat::Number(Decimal::new(i64::from(mantissa), exponent as i8))
    }

    /// The SFLOAT holding `value`, if it fits: a mantissa in −2048..=2047, an exponent in
    /// −8..=7, and not one of the special patterns.
    pub fn from_value(value: Medfloat) -> Option<Self> {
        if let Some(bits) = SFLOAT_SPECIALS.bits(value) {
            return Some(Sfloat(bits));
        }
        let Medfloat::Number(decimal) = value else { return None };
        let mantissa =
            i16::try_from(decimal.mantissa()).ok().filter(|m| (-2048..=2047).contains(m))?;
        let exponent = Some(decimal.exponent()).filter(|e| (-8..=7).contains(e))?;
        let bits = ((exponent as u16 & 0x000F) << 12) | (mantissa as u16 & 0x0FFF);
        SFLOAT_SPECIALS.special(bits).is_none().then_some(Sfloat(bits))
    }
}

/// A 32-bit FLOAT as it travels: any 32 bits are one, so encoding it back is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Float(pub u32);

impl Float {
    /// What the bits hold.
    pub fn value(self) -> Medfloat {
        if let Some(special) = FLOAT_SPECIALS.special(self.0) {
            return special;
        }
        let exponent = (self.0 >> 24) as u8 as i8;
        let mantissa = signed(self.0 & 0x00FF_FFFF, 24);
        Medfloat::Number(Decimal::new(i64::from(mantissa), exponent))
    }

    /// The FLOAT holding `value`, if it fits: a mantissa in −8388608..=8388607 and not one of
    /// the special patterns (every `i8` exponent fits).
    pub fn from_value(value: Medfloat) -> Option<Self> {
        if let Some(bits) = FLOAT_SPECIALS.bits(value) {
            return Some(Float(bits));
        }
        let Medfloat::Number(decimal) = value else { return None };
        let mantissa = i32::try_from(decimal.mantissa())
            .ok()
            .filter(|m| (-0x0080_0000..=0x007F_FFFF).contains(m))?;
        let bits = (u32::from(decimal.exponent() as u8) << 24) | (mantissa as u32 & 0x00FF_FFFF);
        FLOAT_SPECIALS.special(bits).is_none().then_some(Float(bits))
    }
}

#[cfg(test)]
mod tests {
    use super::{Float, Medfloat, Sfloat};
    use crate::decimal::Decimal;

    fn number(mantissa: i64, exponent: i8) -> Medfloat {
        Medfloat::Number(Decimal::new(mantissa, exponent))
    }

    #[test]
    fn sfloat_examples_from_the_phd_implementation_guide_keep_their_precision() {
        // HL7 PHD IG, "Mder FLOATs and SFLOATs": hex, exponent, mantissa, FHIR decimal.
        for (bits, text) in [
            (0x0002, "2"),
            (0xF014, "2.0"),
            (0xE0C8, "2.00"),
            (0x1002, "20"),
            (0x2002, "200"),
            (0x00C8, "200"),
            (0x04D2, "1234"),
            (0x0B2E, "-1234"),
        ] {
            let Medfloat::Number(decimal) = Sfloat(bits).value() else { panic!("{bits:#06x}") };
            assert_eq!(decimal.to_string(), text, "{bits:#06x}");
        }
    }

    #[test]
    fn float_examples_from_the_phd_implementation_guide_keep_their_precision() {
        for (bits, text) in [
            (0x0000_0002, "2"),
            (0xFF00_0014, "2.0"),
            (0xFE00_00C8, "2.00"),
            (0x0100_0002, "20"),
            (0x0200_0002, "200"),
            (0x0000_04D2, "1234"),
            (0x00FF_FB2E, "-1234"),
        ] {
            let Medfloat::Number(decimal) = Float(bits).value() else { panic!("{bits:#010x}") };
            assert_eq!(decimal.to_string(), text, "{bits:#010x}");
        }
    }

    #[test]
    fn sfloat_of_a_blood_pressure_is_exact() {
        assert_eq!(Sfloat(0xF2A3).value(), number(675, -1));
        assert_eq!(Sfloat(0x0078).value(), number(120, 0));
    }

    #[test]
    fn special_values_are_the_five_patterns_with_exponent_zero() {
        assert_eq!(Sfloat(0x07FF).value(), Medfloat::NaN);
        assert_eq!(Sfloat(0x0800).value(), Medfloat::NRes);
        assert_eq!(Sfloat(0x07FE).value(), Medfloat::PositiveInfinity);
        assert_eq!(Sfloat(0x0802).value(), Medfloat::NegativeInfinity);
        assert_eq!(Sfloat(0x0801).value(), Medfloat::Reserved);
        assert_eq!(Float(0x007F_FFFF).value(), Medfloat::NaN);
        assert_eq!(Float(0x0080_0000).value(), Medfloat::NRes);
        assert_eq!(Float(0x007F_FFFE).value(), Medfloat::PositiveInfinity);
        assert_eq!(Float(0x0080_0002).value(), Medfloat::NegativeInfinity);
        assert_eq!(Float(0x0080_0001).value(), Medfloat::Reserved);
    }

    #[test]
    fn special_mantissas_under_another_exponent_are_numbers() {
        assert_eq!(Sfloat(0x17FF).value(), number(2047, 1));
        assert_eq!(Sfloat(0xF800).value(), number(-2048, -1));
        assert_eq!(Float(0x017F_FFFF).value(), number(8_388_607, 1));
        assert_eq!(Float(0xFF80_0000).value(), number(-8_388_608, -1));
    }

    #[test]
    fn every_sfloat_encodes_back_to_its_own_bits() {
        for bits in 0..=u16::MAX {
            assert_eq!(Sfloat::from_value(Sfloat(bits).value()), Some(Sfloat(bits)));
        }
    }

    #[test]
    fn values_that_do_not_fit_have_no_encoding() {
        assert_eq!(Sfloat::from_value(number(2048, 0)), None);
        assert_eq!(Sfloat::from_value(number(1, 8)), None);
        assert_eq!(Sfloat::from_value(number(2047, 0)), None, "the NaN pattern is not 2047");
        assert_eq!(Float::from_value(number(8_388_608, 0)), None);
        assert_eq!(Float::from_value(number(8_388_607, 0)), None, "the NaN pattern");
        assert_eq!(Float::from_value(number(-1, -128)), Some(Float(0x80FF_FFFF)));
    }
}
