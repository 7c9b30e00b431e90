//! Exact decimal numbers, `mantissa × 10^exponent`, printed as the digits they hold.
//!
//! A binary float cannot hold 67.5 mmHg or 0.005 kg exactly; a reading that passed through
//! one comes out as 67.50000000000001. Keeping the mantissa and the exponent apart keeps the
//! value exact, and keeps the precision the device reported: 2.0 and 2.00 are the same number
//! measured to different resolutions, and print differently.

use std::fmt;

/// An exact decimal: `mantissa × 10^exponent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    mantissa: i64,
    exponent: i8,
}

impl Decimal {
    /// The decimal `mantissa × 10^exponent`, with exactly this precision.
    pub const fn new(mantissa: i64, exponent: i8) -> Self {
        Decimal { mantissa, exponent }
    }

    /// The integer part before scaling.
    pub const fn mantissa(self) -> i64 {
        self.mantissa
    }

    /// The power of ten the mantissa is scaled by; negative means digits after the point.
    pub const fn exponent(self) -> i8 {
        self.exponent
    }

    /// The number times `10^power`, with the same digits (a conversion between units a
    /// power of ten apart moves the point and keeps the precision); `None` if the exponent
    /// would leave its range.
    pub fn times_power_of_ten(self, power: i8) -> Option<Self> {
        Some(Decimal { mantissa: self.mantissa, exponent: self.exponent.checked_add(power)? })
    }

    /// The same number without trailing zeros after the point (0.50 becomes 0.5, 1.0 becomes
    /// 1). For values computed from fixed units, where trailing zeros say nothing.
    pub fn normalized(self) -> Self {
        let Decimal { mut mantissa, mut exponent } = self;
        while exponent < 0 && mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        if mantissa == 0 {
            exponent = exponent.max(0);
        }
        Decimal { mantissa, exponent }
    }
}

impl fmt::Display for Decimal {
    /// The exact digits: no exponent notation, no rounding, trailing zeros after the point
    /// kept (they are the precision). A JSON number as written, too.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        let sign = if self.mantissa < 0 { "-" } else { "" };
        if self.exponent >= 0 {
            if self.mantissa == 0 {
                return f.write_str("0");
            }
            let zeros = "0".repeat(usize::from(self.exponent.unsigned_abs()));
            return write!(f, "{sign}{digits}{zeros}");
        }
        let scale = usize::from(self.exponent.unsigned_abs());
        // At least one digit before the point: 5 × 10^-3 is 0.005.
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (whole, fraction) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{whole}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::Decimal;

    fn text(mantissa: i64, exponent: i8) -> String {
        Decimal::new(mantissa, exponent).to_string()
    }

    #[test]
    fn negative_exponents_place_the_point_and_keep_trailing_zeros() {
        assert_eq!(text(675, -1), "67.5");
        assert_eq!(text(20, -1), "2.0");
        assert_eq!(text(200, -2), "2.00");
        assert_eq!(text(5, -3), "0.005");
        assert_eq!(text(-5, -3), "-0.005");
        assert_eq!(text(-1234, -2), "-12.34");
        assert_eq!(text(0, -2), "0.00");
    }

    #[test]
    fn non_negative_exponents_print_whole_numbers() {
        assert_eq!(text(120, 0), "120");
        assert_eq!(text(2, 1), "20");
        assert_eq!(text(-2, 2), "-200");
        assert_eq!(text(0, 3), "0");
        assert_eq!(text(0, 0), "0");
    }

    #[test]
    fn extreme_exponents_print_every_digit() {
        let big = text(8_388_607, 127);
        assert_eq!(big.len(), 7 + 127);
        assert!(big.starts_with("8388607000"));
        let small = text(-8_388_608, -128);
        assert!(small.starts_with("-0.000"));
        assert!(small.ends_with("8388608"));
        assert_eq!(small.len(), "-0.".len() + 128);
    }

    #[test]
    fn normalizing_strips_only_zeros_after_the_point() {
        assert_eq!(Decimal::new(10_000_000_000, -10).normalized(), Decimal::new(1, 0));
        assert_eq!(Decimal::new(5_000_000_000, -10).normalized(), Decimal::new(5, -1));
        assert_eq!(Decimal::new(0, -10).normalized(), Decimal::new(0, 0));
        assert_eq!(Decimal::new(120, 0).normalized(), Decimal::new(120, 0));
        assert_eq!(Decimal::new(-250, -2).normalized(), Decimal::new(-25, -1));
    }
}
