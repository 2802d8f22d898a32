//! Instants in time, parsed from RFC 3339 text and compared as instants.
//!
//! The core never reads a clock: callers pass `now` in. This module only parses,
//! orders and prints instants, so `2024-05-01T10:00:00+05:30` and
//! `2024-05-01T04:30:00Z` are the same instant.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// An instant: whole seconds since the Unix epoch (UTC) plus nanoseconds.
///
/// Serialises as RFC 3339 text in UTC; deserialises from RFC 3339 text with any
/// offset, or from a number of milliseconds since the epoch (what `Date.now()` gives).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    secs: i64,
    nanos: u32,
}

/// Why a text is not an RFC 3339 date-time.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid RFC 3339 date-time {text:?}: {reason}")]
pub struct TimestampError {
    /// The text that was rejected.
    pub text: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self { secs: 0, nanos: 0 };

    /// An instant from milliseconds since the Unix epoch.
    pub fn from_millis(ms: i64) -> Self {
        Self {
            secs: ms.div_euclid(1000),
            nanos: (ms.rem_euclid(1000) as u32) * 1_000_000,
        }
    }

    /// Milliseconds since the Unix epoch (sub-millisecond part truncated).
    pub fn as_millis(self) -> i64 {
        self.secs * 1000 + i64::from(self.nanos / 1_000_000)
    }

    /// Parses an RFC 3339 date-time such as `2024-05-01T10:00:00.5+05:30`.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        parse_rfc3339(text.as_bytes()).map_err(|reason| TimestampError {
            text: text.to_owned(),
            reason,
        })
    }
}

fn parse_rfc3339(b: &[u8]) -> Result<Timestamp, &'static str> {
    fn num(b: &[u8], at: usize, len: usize) -> Result<i64, &'static str> {
        let digits = b.get(at..at + len).ok_or("too short")?;
        digits.iter().try_fold(0i64, |acc, &c| {
            if c.is_ascii_digit() {
                Ok(acc * 10 + i64::from(c - b'0'))
            } else {
                Err("expected a digit")
            }
        })
    }
    fn expect(b: &[u8], at: usize, what: &[u8]) -> Result<(), &'static str> {
        match b.get(at) {
            Some(c) if what.contains(c) => Ok(()),
            _ => Err("unexpected separator"),
        }
    }
    let year = num(b, 0, 4)?;
    expect(b, 4, b"-")?;
    let month = num(b, 5, 2)?;
    expect(b, 7, b"-")?;
    let day = num(b, 8, 2)?;
    expect(b, 10, b"Tt ")?;
    let hour = num(b, 11, 2)?;
    expect(b, 13, b":")?;
    let minute = num(b, 14, 2)?;
    expect(b, 16, b":")?;
    let second = num(b, 17, 2)?;
    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day out of range");
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err("time of day out of range");
    }
    let mut at = 19;
    let mut nanos = 0u32;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 9 {
                nanos = nanos * 10 + u32::from(b[at] - b'0');
            }
            at += 1;
        }
        let len = at - start;
        if len == 0 {
            return Err("empty fraction of a second");
        }
        for _ in len..9 {
            nanos *= 10;
        }
    }
    let offset = match b.get(at) {
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = num(b, at + 1, 2)?;
            expect(b, at + 3, b":")?;
            let om = num(b, at + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err("offset out of range");
            }
            at += 6;
            let off = oh * 3600 + om * 60;
            if sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return Err("missing offset (Z or +HH:MM)"),
    };
    if at != b.len() {
        return Err("unexpected text after the offset");
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Ok(Timestamp { secs, nanos })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, with as many fraction digits as needed (none for whole seconds).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs.div_euclid(86_400);
        let sod = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )?;
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 date-time or milliseconds since the epoch")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp::from_millis(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp::from_millis)
                    .map_err(|_| E::custom("timestamp out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
                if v.is_finite() && v.abs() < 9.0e15 {
                    Ok(Timestamp::from_millis(v.floor() as i64))
                } else {
                    Err(E::custom("timestamp out of range"))
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_compare_as_instants() {
        let a = Timestamp::parse("2024-05-01T10:00:00+05:30").unwrap();
        let b = Timestamp::parse("2024-05-01T04:30:00Z").unwrap();
        let c = Timestamp::parse("2024-04-30T23:30:00.000-05:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert!(Timestamp::parse("2024-05-01T04:30:00.001Z").unwrap() > a);
    }

    #[test]
    fn round_trips_through_display() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59.5Z",
            "1969-12-31T23:59:59.123456789Z",
            "2400-03-01T00:00:00Z",
        ] {
            assert_eq!(Timestamp::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            Timestamp::from_millis(-1).to_string(),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "2024-05-01",
            "2024-05-01T10:00:00",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T10:00:00.Z",
            "2024-05-01T10:00:00Zjunk",
            "2024-05-01T10:00:00+0530",
        ] {
            assert!(Timestamp::parse(s).is_err(), "{s}");
        }
    }
}
