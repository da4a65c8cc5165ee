//! Durations written the way people write them in configuration files: `90s`, `10m`, `24h`, `7d`, or plain seconds.

use serde::de::{self, Deserializer, Visitor};
use serde::Serializer;
use std::fmt;
use std::time::Duration;

const UNITS: &[(&str, u64)] = &[("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses `90s`, `10m`, `24h`, `7d`, `250ms` or a plain number of seconds.
pub fn parse(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis = UNITS.iter().find(|(name, _)| *name == unit.trim())?.1;
    Some(Duration::from_millis(number.checked_mul(millis)?))
}

/// Formats with the largest unit that divides the duration exactly, so `parse(format(d)) == d`
/// for whole milliseconds.
pub fn format(d: Duration) -> String {
    let millis = d.as_millis() as u64;
    if millis == 0 {
        return "0s".to_string();
    }
    let (unit, size) = UNITS.iter().find(|(_, size)| millis.is_multiple_of(*size)).copied().unwrap_or(("ms", 1));
    format!("{}{unit}", millis / size)
}

/// `#[serde(with = "duration")]` for `std::time::Duration` fields.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// `#[serde(with = "duration")]` for `std::time::Duration` fields.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct DurationVisitor;
    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as 90s, 10m, 24h, 7d, or a number of seconds")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v).map(Duration::from_secs).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse(v).ok_or_else(|| E::custom(format!("`{v}` is not a duration such as 90s, 10m, 24h, 7d")))
        }
    }
    d.deserialize_any(DurationVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<u64>) {
        assert_eq!(parse(text).map(|d| d.as_millis() as u64), expected, "{text}");
    }

    #[test]
    fn parses_units_and_plain_seconds() {
        check("90", Some(90_000));
        check("90s", Some(90_000));
        check("10m", Some(600_000));
        check("24h", Some(86_400_000));
        check("7d", Some(604_800_000));
        check("250ms", Some(250));
        check("", None);
        check("h", None);
        check("5 weeks", None);
        check("-5s", None);
    }

    #[test]
    fn formats_with_the_largest_exact_unit() {
        assert_eq!(format(Duration::from_secs(86_400)), "1d");
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
