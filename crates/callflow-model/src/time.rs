//! Capture timestamps: nanoseconds since the Unix epoch, written as seconds with microsecond precision.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A point in capture time, in nanoseconds since the Unix epoch.
///
/// Captures carry micro- or nanosecond timestamps; keeping nanoseconds internally loses
/// nothing, and the JSON form (seconds as a float rounded to the microsecond) is what
/// users compare with tshark's `frame.time_epoch`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// A timestamp from whole seconds and nanoseconds within the second.
    pub const fn from_parts(secs: i64, nanos: u32) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(nanos as i64))
    }

    /// A timestamp from nanoseconds since the epoch.
    pub const fn from_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// Seconds since the epoch, rounded to the microsecond (the output precision).
    pub fn as_secs_f64(self) -> f64 {
        let micros = self.0.div_euclid(1_000) + i64::from(self.0.rem_euclid(1_000) >= 500);
        micros.div_euclid(1_000_000) as f64 + micros.rem_euclid(1_000_000) as f64 / 1e6
    }

    /// Nanoseconds from `earlier` to `self` (negative when `earlier` is later), saturating:
    /// timestamps come from capture files, where any value can be.
    pub const fn nanos_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Milliseconds from `earlier` to `self` (negative when `earlier` is later).
    pub fn millis_since(self, earlier: Timestamp) -> f64 {
        (i128::from(self.0) - i128::from(earlier.0)) as f64 / 1e6
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}", self.as_secs_f64())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_secs_f64())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let secs = f64::deserialize(d)?;
        let micros = (secs * 1e6).round() as i64;
        Ok(Timestamp(micros.saturating_mul(1_000)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_microseconds() {
        assert_eq!(Timestamp::from_parts(10, 1_499).as_secs_f64(), 10.000001);
        assert_eq!(Timestamp::from_parts(10, 1_500).as_secs_f64(), 10.000002);
        assert_eq!(Timestamp::from_parts(1_700_000_000, 999_999_999).to_string(), "1700000001.000000");
    }

    #[test]
    fn json_round_trip_keeps_microseconds() {
        let ts = Timestamp::from_parts(1_131_987_546, 338_401_000);
        let json = serde_json::to_string(&ts).unwrap();
        assert_eq!(json, "1131987546.338401");
        let back: Timestamp = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ts);
    }

    #[test]
    fn millis_between_timestamps() {
        let a = Timestamp::from_parts(5, 0);
        let b = Timestamp::from_parts(5, 250_000_000);
        assert_eq!(b.millis_since(a), 250.0);
        assert_eq!(a.millis_since(b), -250.0);
    }
}
