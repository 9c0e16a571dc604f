//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`), parsed exactly enough to
//! compare and bound them without floating point.

use std::fmt;

/// Longest quantity text accepted; Kubernetes' own values are far shorter.
const MAX_LEN: usize = 64;
/// Most significant digits kept, so every product below fits in a `u128`.
const MAX_DIGITS: usize = 24;

/// A non-negative quantity in thousandths of its base unit (millicores, millibytes), rounded
/// up the way Kubernetes rounds sub-milli values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    milli: u128,
}

/// Why a text is not a usable quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text is empty.
    #[error("is empty; write an amount such as 500m, 2, 512Mi or 1Gi")]
    Empty,
    /// The text starts with a minus sign.
    #[error("{0:?} is negative; amounts must be positive")]
    Negative(String),
    /// The text is not in Kubernetes' quantity notation.
    #[error(
        "{0:?} is not a Kubernetes quantity; write a number with an optional suffix \
         (m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei), such as 500m, 2, 512Mi or 1Gi"
    )]
    Malformed(String),
    /// The value does not fit in any sane bound.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

impl Quantity {
    /// A whole number of base units (cores, bytes).
    pub fn units(n: u64) -> Self {
        Self { milli: u128::from(n) * 1000 }
    }

    /// The value in thousandths of the base unit.
    pub fn milli(self) -> u128 {
        self.milli
    }

    /// Whether the value is zero.
    pub fn is_zero(self) -> bool {
        self.milli == 0
    }

    /// Parses a quantity in Kubernetes notation. Never panics, whatever the text.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let malformed = || QuantityError::Malformed(text.to_owned());
        if text.is_empty() {
            return Err(QuantityError::Empty);
        }
        if text.len() > MAX_LEN || !text.is_ascii() {
            return Err(malformed());
        }
        let unsigned = match text.as_bytes()[0] {
            b'-' => return Err(QuantityError::Negative(text.to_owned())),
            b'+' => &text[1..],
            _ => text,
        };
        let number_end =
            unsigned.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(unsigned.len());
        let (number, suffix) = unsigned.split_at(number_end);
        let (mantissa, scale) = parse_decimal(number).ok_or_else(malformed)?;
        let (num, den) = suffix_ratio(suffix).ok_or_else(malformed)?;
        let too_large = || QuantityError::TooLarge(text.to_owned());
        let scaled =
            mantissa.checked_mul(num).and_then(|v| v.checked_mul(1000)).ok_or_else(too_large)?;
        let divisor = scale.checked_mul(den).ok_or_else(too_large)?;
        Ok(Self { milli: scaled.div_ceil(divisor) })
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.milli.is_multiple_of(1000) {
            write!(f, "{}", self.milli / 1000)
        } else {
            write!(f, "{}m", self.milli)
        }
    }
}

/// Digits with an optional decimal point, as (all digits as an integer, 10^fraction digits).
fn parse_decimal(number: &str) -> Option<(u128, u128)> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return None;
    }
    let digits = format!("{int}{frac}");
    let significant = digits.trim_start_matches('0');
    if significant.len() > MAX_DIGITS || frac.len() > MAX_DIGITS {
        return None;
    }
    let mantissa = if significant.is_empty() { 0 } else { significant.parse().ok()? };
    let scale = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
    Some((mantissa, scale))
}

/// The suffix as a ratio (numerator, denominator) of the base unit.
fn suffix_ratio(suffix: &str) -> Option<(u128, u128)> {
    let binary = |power: u32| Some((1u128 << (10 * power), 1));
    let decimal = |power: u32| Some((10u128.pow(3 * power), 1));
    match suffix {
        "" => Some((1, 1)),
        "m" => Some((1, 1000)),
        "k" => decimal(1),
        "M" => decimal(2),
        "G" => decimal(3),
        "T" => decimal(4),
        "P" => decimal(5),
        "E" => decimal(6),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        _ => exponent_ratio(suffix),
    }
}

/// A decimal exponent suffix (`e3`, `E-2`), bounded so the ratio stays small.
fn exponent_ratio(suffix: &str) -> Option<(u128, u128)> {
    let rest = suffix.strip_prefix(['e', 'E'])?;
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let exp: i32 = rest.parse().ok()?;
    if !(-18..=18).contains(&exp) {
        return None;
    }
    let power = 10u128.pow(exp.unsigned_abs());
    Some(if exp >= 0 { (power, 1) } else { (1, power) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn milli(text: &str) -> u128 {
        Quantity::parse(text).expect("valid quantity").milli()
    }

    #[test]
    fn plain_milli_and_decimal_cpu_amounts_parse_to_millicores() {
        assert_eq!(milli("2"), 2000);
        assert_eq!(milli("500m"), 500);
        assert_eq!(milli("0.5"), 500);
        assert_eq!(milli("+1.25"), 1250);
        assert_eq!(milli("1e3"), 1_000_000);
    }

    #[test]
    fn binary_and_decimal_suffixes_scale_bytes() {
        assert_eq!(milli("1Ki"), 1024 * 1000);
        assert_eq!(milli("1.5Gi"), 1_610_612_736 * 1000);
        assert_eq!(milli("1k"), 1_000_000);
        assert_eq!(milli("4Ti"), u128::from(4u64 << 40) * 1000);
    }

    #[test]
    fn sub_milli_values_round_up_like_kubernetes() {
        assert_eq!(milli("0.0001"), 1);
        assert_eq!(milli("0"), 0);
    }

    #[test]
    fn negative_malformed_and_huge_quantities_are_refused_without_panicking() {
        assert!(matches!(Quantity::parse("-1"), Err(QuantityError::Negative(_))));
        for bad in ["", "1.2.3", ".", "1Zi", "Gi", "1 Gi", "1gi", "1e", "1e99", "١", "0x10"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Quantity::parse("999999999999999999999999Ei").is_err());
        assert!(Quantity::parse(&"9".repeat(200)).is_err());
    }

    #[test]
    fn quantities_compare_by_value_not_by_text() {
        let a = Quantity::parse("1Gi").expect("valid");
        let b = Quantity::parse("1000Mi").expect("valid");
        assert!(a > b);
        assert_eq!(Quantity::parse("1000m"), Quantity::parse("1"));
    }
}
