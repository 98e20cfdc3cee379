//! Kubernetes resource quantities, parsed exactly as the API server does, without floating
//! point: the whole grammar (signs, fractions, decimal and binary suffixes, `e` exponents),
//! values rounded up to the nano, capped at 2^63-1, and converted to whole CPUs and MiB.

use std::fmt;

use thiserror::Error;

/// One nano (10^-9) is the finest step the API server keeps: finer values are rounded up.
const NANOS_PER_UNIT: u128 = 1_000_000_000;

/// The API server caps every quantity at the largest int64.
const MAX_UNITS: u128 = i64::MAX as u128;

const MAX_NANOS: u128 = MAX_UNITS * NANOS_PER_UNIT;

/// Bytes in one MiB, which Slurm calls MB.
const BYTES_PER_MIB: u128 = 1 << 20;

/// Why a string is not a Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{value:?} is not a Kubernetes quantity: {problem} (examples: 500m, 2, 1.5Gi, 129M, 1e3)")]
pub struct QuantityError {
    /// The string as written (shortened when very long).
    pub value: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// An exact quantity: a sign and a magnitude in nanos (10^-9 of the unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    negative: bool,
    nanos: u128,
}

// === impl Quantity ===

impl Quantity {
    /// Zero of any unit.
    pub const ZERO: Quantity = Quantity {
        negative: false,
        nanos: 0,
    };

    /// Parses a quantity string the way `resource.ParseQuantity` of Kubernetes does.
    pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
        parse(input).map_err(|problem| QuantityError {
            value: shorten(input),
            problem,
        })
    }

    /// A whole number of units, e.g. a GPU count.
    pub fn from_units(units: u64) -> Quantity {
        Quantity {
            negative: false,
            nanos: u128::from(units) * NANOS_PER_UNIT,
        }
    }

    pub fn is_negative(&self) -> bool {
        self.negative && self.nanos > 0
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Sum of two non-negative quantities (requests are never negative once validated);
    /// saturates at the API server's cap.
    pub fn saturating_add(self, other: Quantity) -> Quantity {
        debug_assert!(!self.is_negative() && !other.is_negative());
        Quantity {
            negative: false,
            nanos: (self.nanos + other.nanos).min(MAX_NANOS),
        }
    }

    /// Rounds up to whole units (CPUs, bytes, devices). `None` for negative values.
    pub fn ceil_units(&self) -> Option<u128> {
        if self.is_negative() {
            return None;
        }
        Some(self.nanos.div_ceil(NANOS_PER_UNIT))
    }

    /// Rounds bytes up to MiB. `None` for negative values.
    pub fn ceil_mib(&self) -> Option<u128> {
        if self.is_negative() {
            return None;
        }
        Some(self.nanos.div_ceil(NANOS_PER_UNIT * BYTES_PER_MIB))
    }

    /// The exact whole number of units, or `None` if the value has a fraction or is negative.
    pub fn whole_units(&self) -> Option<u128> {
        if self.is_negative() || self.nanos % NANOS_PER_UNIT != 0 {
            return None;
        }
        Some(self.nanos / NANOS_PER_UNIT)
    }
}

impl fmt::Display for Quantity {
    /// Plain decimal notation, e.g. `1.5` or `0.1`: for messages, not for round trips.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.is_negative() { "-" } else { "" };
        let whole = self.nanos / NANOS_PER_UNIT;
        let frac = self.nanos % NANOS_PER_UNIT;
        if frac == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let digits = format!("{frac:09}");
            write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// Keeps error messages readable when someone pastes a megabyte into a field.
fn shorten(input: &str) -> String {
    const MAX_SHOWN: usize = 40;
    if input.chars().count() <= MAX_SHOWN {
        return input.to_string();
    }
    let head: String = input.chars().take(MAX_SHOWN).collect();
    format!("{head}... ({} characters)", input.chars().count())
}

/// The suffix's meaning: value = number * 10^decimal_exponent * 2^binary_exponent.
struct Suffix {
    decimal_exponent: i64,
    binary_exponent: u32,
}

fn parse_suffix(suffix: &str) -> Result<Suffix, &'static str> {
    let decimal = |e| {
        Ok(Suffix {
            decimal_exponent: e,
            binary_exponent: 0,
        })
    };
    let binary = |b| {
        Ok(Suffix {
            decimal_exponent: 0,
            binary_exponent: b,
        })
    };
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            // `e3`, `E-2`, `e+6`: an exponent that fits in 32 bits, as Kubernetes requires.
            let rest = suffix.strip_prefix(['e', 'E']).ok_or("unknown suffix")?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err("unknown suffix");
            }
            let exponent: i32 = rest.parse().map_err(|_| "exponent out of range")?;
            decimal(i64::from(exponent))
        }
    }
}

fn parse(input: &str) -> Result<Quantity, &'static str> {
    if input.is_empty() {
        return Err("it is empty");
    }
    let (negative, rest) = match input.as_bytes()[0] {
        b'-' => (true, &input[1..]),
        b'+' => (false, &input[1..]),
        _ => (false, input),
    };

    let number_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = rest.split_at(number_len);
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    if fraction.contains('.') {
        return Err("it has more than one decimal point");
    }
    if whole.is_empty() && fraction.is_empty() {
        return Err("it has no digits before its suffix");
    }
    let suffix = parse_suffix(suffix)?;

    // The digits as one integer, and the power of ten that places the decimal point.
    let mut digits: Vec<u8> = whole
        .bytes()
        .chain(fraction.bytes())
        .map(|b| b - b'0')
        .collect();
    let decimal_exponent = suffix.decimal_exponent - fraction.len() as i64;

    // Multiplying by the binary suffix first, then rounding up to the nano, is the order the
    // API server uses; doing it digit by digit keeps every step exact at any length.
    for _ in 0..suffix.binary_exponent {
        double(&mut digits);
    }
    Ok(Quantity {
        negative,
        nanos: nanos_of(&digits, decimal_exponent + 9),
    })
}

/// Doubles a big-endian decimal digit vector in place.
fn double(digits: &mut Vec<u8>) {
    let mut carry = 0;
    for digit in digits.iter_mut().rev() {
        let doubled = *digit * 2 + carry;
        *digit = doubled % 10;
        carry = doubled / 10;
    }
    if carry > 0 {
        digits.insert(0, carry);
    }
}

/// ceil(digits * 10^exponent), capped at the API server's maximum.
fn nanos_of(digits: &[u8], exponent: i64) -> u128 {
    let first_nonzero = digits.iter().position(|d| *d != 0);
    let Some(first_nonzero) = first_nonzero else {
        return 0;
    };
    let digits = &digits[first_nonzero..];

    // Split into the integer part and the dropped fraction.
    let integer_len = digits.len() as i64 + exponent;
    if integer_len > 40 {
        return MAX_NANOS;
    }
    let (integer, dropped): (&[u8], &[u8]) = if exponent >= 0 {
        (digits, &[])
    } else if integer_len <= 0 {
        (&[], digits)
    } else {
        digits.split_at(integer_len as usize)
    };
    let trailing_zeros = exponent.max(0) as usize;

    let mut value: u128 = 0;
    for digit in integer
        .iter()
        .copied()
        .chain(std::iter::repeat_n(0, trailing_zeros))
    {
        value = value * 10 + u128::from(digit);
        if value > MAX_NANOS {
            return MAX_NANOS;
        }
    }
    if dropped.iter().any(|d| *d != 0) {
        value += 1;
    }
    value.min(MAX_NANOS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(s: &str) -> u128 {
        Quantity::parse(s).unwrap().ceil_units().unwrap()
    }

    fn mib(s: &str) -> u128 {
        Quantity::parse(s).unwrap().ceil_mib().unwrap()
    }

    #[test]
    fn cpu_rounds_up_to_whole_cpus() {
        // Quantities and neighbours.
        let table = [
            ("100m", 1),
            ("1500m", 2),
            ("0.5", 1),
            ("2", 2),
            ("1000m", 1),
            ("1001m", 2),
            ("2.000", 2),
            ("2.0000000001", 3),
            (".5", 1),
            ("5.", 5),
            ("+3", 3),
            ("1k", 1000),
            ("250000u", 1),
            ("1n", 1),
            ("0", 0),
            ("0.0", 0),
            ("000", 0),
            ("0m", 0),
            ("1e0", 1),
            ("1E2", 100),
            ("15e-1", 2),
            ("1e-9", 1),
            ("1e+3", 1000),
        ];
        for (input, want) in table {
            assert_eq!(cpus(input), want, "cpu {input}");
        }
    }

    #[test]
    fn memory_rounds_up_to_mib() {
        let table = [
            ("123Mi", 123),
            ("129M", 124),
            ("129e6", 124),
            ("1Ki", 1),
            ("1.5Gi", 1536),
            ("1e3", 1),
            ("1Mi", 1),
            ("1048576", 1),
            ("1048577", 2),
            ("1G", 954),
            ("1Gi", 1024),
            ("0.5Mi", 1),
            ("2Ti", 2 * 1024 * 1024),
            ("1Ei", 1 << 40),
            ("0.001Ki", 1),
            ("1E", 953_674_316_407),
            ("64M", 62),
            ("512Mi", 512),
        ];
        for (input, want) in table {
            assert_eq!(mib(input), want, "memory {input}");
        }
    }

    #[test]
    fn exact_nanos_and_rounding_to_the_nano() {
        let table = [
            ("1", 1_000_000_000),
            ("1n", 1),
            ("0.1n", 1),
            ("1.5n", 2),
            ("0.0000000001", 1),
            ("1.5Ki", 1536 * NANOS_PER_UNIT),
            ("0.1Ki", 102_400_000_000),
            ("0.000000000001Ki", 2),
            ("123456789012345678901234567890", MAX_NANOS),
            ("9223372036854775807", MAX_NANOS),
            ("9223372036854775806", (MAX_UNITS - 1) * NANOS_PER_UNIT),
            ("8Ei", MAX_NANOS),
            ("1e2147483647", MAX_NANOS),
            ("1e-2147483648", 1),
            ("0e2147483647", 0),
            (
                "0.000000000000000000000000000000000000000000000000000000000001",
                1,
            ),
        ];
        for (input, want) in table {
            assert_eq!(
                Quantity::parse(input).unwrap().nanos,
                want,
                "nanos of {input}"
            );
        }
    }

    #[test]
    fn negative_values_parse_but_do_not_convert() {
        let q = Quantity::parse("-1").unwrap();
        assert!(q.is_negative());
        assert_eq!(q.ceil_units(), None);
        assert_eq!(q.ceil_mib(), None);
        assert!(!Quantity::parse("-0").unwrap().is_negative());
    }

    #[test]
    fn invalid_strings_are_errors_naming_the_string() {
        let table = [
            ("", "it is empty"),
            ("abc", "it has no digits before its suffix"),
            ("Mi", "it has no digits before its suffix"),
            ("-", "it has no digits before its suffix"),
            (".", "it has no digits before its suffix"),
            ("1.2.3", "it has more than one decimal point"),
            ("1mi", "unknown suffix"),
            ("1 Mi", "unknown suffix"),
            (" 1", "it has no digits before its suffix"),
            ("1MB", "unknown suffix"),
            ("1KI", "unknown suffix"),
            ("1K", "unknown suffix"),
            ("1e", "unknown suffix"),
            ("1e1.5", "unknown suffix"),
            ("1e++1", "unknown suffix"),
            ("1e99999999999", "exponent out of range"),
            ("1Mi ", "unknown suffix"),
            ("--1", "it has no digits before its suffix"),
            ("0x10", "unknown suffix"),
        ];
        for (input, problem) in table {
            let err = Quantity::parse(input).unwrap_err();
            assert_eq!(err.problem, problem, "problem of {input:?}");
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
    }

    #[test]
    fn long_strings_are_shortened_in_errors() {
        let long = "x".repeat(10_000);
        let message = Quantity::parse(&long).unwrap_err().to_string();
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("10000 characters"), "{message}");
    }

    #[test]
    fn whole_units_and_display() {
        assert_eq!(Quantity::parse("2").unwrap().whole_units(), Some(2));
        assert_eq!(Quantity::parse("1500m").unwrap().whole_units(), None);
        assert_eq!(Quantity::parse("1500m").unwrap().to_string(), "1.5");
        assert_eq!(Quantity::parse("100m").unwrap().to_string(), "0.1");
        assert_eq!(Quantity::parse("1k").unwrap().to_string(), "1000");
        let sum = Quantity::parse("1")
            .unwrap()
            .saturating_add(Quantity::from_units(2));
        assert_eq!(sum.whole_units(), Some(3));
    }
}
