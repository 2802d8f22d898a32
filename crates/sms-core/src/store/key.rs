//! IndexedDB keys and their order, so the memory store sorts exactly as a browser does
//! (<https://w3c.github.io/IndexedDB/#compare-two-keys>): numbers < dates < strings <
//! binaries < arrays; numbers by value, strings by UTF-16 code unit (not by UTF-8 byte
//! or by `char`), arrays element by element, a shorter prefix first.

use std::cmp::Ordering;

/// A key as IndexedDB compares it (dates and binaries are not used by this schema).
#[derive(Clone, Debug)]
pub enum Key {
    /// A number (never NaN: IndexedDB refuses NaN keys).
    Num(f64),
    /// A string.
    Str(String),
    /// An array of keys.
    Array(Vec<Self>),
}

impl Key {
    fn rank(&self) -> u8 {
        match self {
            Self::Num(_) => 0,
            Self::Str(_) => 2,
            Self::Array(_) => 4,
        }
    }

    /// A string key.
    pub fn str(s: impl Into<String>) -> Self {
        Self::Str(s.into())
    }

    /// `[a, b]`.
    pub fn pair(a: impl Into<Self>, b: impl Into<Self>) -> Self {
        Self::Array(vec![a.into(), b.into()])
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Self::Str(s.to_owned())
    }
}

impl From<String> for Key {
    fn from(s: String) -> Self {
        Self::Str(s)
    }
}

impl From<f64> for Key {
    fn from(n: f64) -> Self {
        Self::Num(n)
    }
}

/// Compares two strings by UTF-16 code unit, as IndexedDB does.
///
/// Byte order (UTF-8) is code point order, which differs from UTF-16 order only between
/// a supplementary character (surrogates 0xD800–0xDBFF first) and one of U+E000–U+FFFF:
/// the bytes find the first difference, and only those two characters are compared as
/// UTF-16 (the overlay compares keys on every read and write of a run).
pub fn cmp_utf16(a: &str, b: &str) -> Ordering {
    let Some(i) = a.bytes().zip(b.bytes()).position(|(x, y)| x != y) else {
        // One is a prefix of the other: fewer bytes, fewer code units.
        return a.len().cmp(&b.len());
    };
    // The bytes before `i` are equal, so both strings have a character boundary here.
    let start = (0..=i).rev().find(|&j| a.is_char_boundary(j)).unwrap_or(0);
    let (ca, cb) = (a[start..].chars().next(), b[start..].chars().next());
    let unit = |c: Option<char>| match c.map(u32::from) {
        Some(c) if c >= 0x1_0000 => (0xD800 + ((c - 0x1_0000) >> 10), c),
        Some(c) => (c, c),
        None => (0, 0),
    };
    unit(ca).cmp(&unit(cb))
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            // -0 and +0 are one key in IndexedDB; NaN never is a key.
            (Self::Num(a), Self::Num(b)) => a.partial_cmp(b).unwrap_or_else(|| a.total_cmp(b)),
            (Self::Str(a), Self::Str(b)) => cmp_utf16(a, b),
            (Self::Array(a), Self::Array(b)) => a.iter().cmp(b.iter()),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    /// Consistent with `Eq`: numbers by bits (with -0 as +0), strings by
    /// content (UTF-16 equality is string equality), arrays item by item.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            Self::Num(n) => (n + 0.0).to_bits().hash(state),
            Self::Str(s) => s.hash(state),
            Self::Array(items) => items.hash(state),
        }
    }
}

/// A range of keys: `lower..upper` with each end open or closed, or unbounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// Lower bound and whether it is excluded.
    pub lower: Option<(Key, bool)>,
    /// Upper bound and whether it is excluded.
    pub upper: Option<(Key, bool)>,
}

impl KeyRange {
    /// Exactly `k`.
    pub fn only(k: Key) -> Self {
        Self {
            lower: Some((k.clone(), false)),
            upper: Some((k, false)),
        }
    }

    /// Every key.
    pub fn all() -> Self {
        Self {
            lower: None,
            upper: None,
        }
    }

    /// `lower ..= upper`.
    pub fn closed(lower: Key, upper: Key) -> Self {
        Self {
            lower: Some((lower, false)),
            upper: Some((upper, false)),
        }
    }

    /// Whether `k` lies in the range.
    pub fn contains(&self, k: &Key) -> bool {
        let above = match &self.lower {
            None => true,
            Some((l, open)) => match k.cmp(l) {
                Ordering::Greater => true,
                Ordering::Equal => !open,
                Ordering::Less => false,
            },
        };
        let below = match &self.upper {
            None => true,
            Some((u, open)) => match k.cmp(u) {
                Ordering::Less => true,
                Ordering::Equal => !open,
                Ordering::Greater => false,
            },
        };
        above && below
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_then_values_in_indexeddb_order() {
        let mut keys = vec![
            Key::pair("a", 1.0),
            Key::str("b"),
            Key::Num(2.0),
            Key::Array(vec![]),
            Key::Num(-1.0),
            Key::str(""),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                Key::Num(-1.0),
                Key::Num(2.0),
                Key::str(""),
                Key::str("b"),
                Key::Array(vec![]),
                Key::pair("a", 1.0),
            ]
        );
    }

    #[test]
    fn the_fast_comparison_agrees_with_utf16_units() {
        let samples = [
            "",
            "a",
            "ab",
            "b",
            "\u{7f}",
            "\u{80}",
            "é",
            "ए",
            "नमस्ते",
            "\u{D7FF}",
            "\u{E000}",
            "\u{FF61}",
            "\u{FFFF}",
            "\u{10000}",
            "😀",
            "😁",
            "\u{10FFFF}",
            "a😀",
            "a\u{FFFF}",
            "a\u{E000}b",
            "a\u{10437}",
            "+919812345678",
            "+91981234567",
            "conv|+1|lead:😀",
        ];
        for a in samples {
            for b in samples {
                assert_eq!(
                    cmp_utf16(a, b),
                    a.encode_utf16().cmp(b.encode_utf16()),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn strings_compare_by_utf16_code_unit() {
        // U+FF61 (one UTF-16 unit 0xFF61) sorts after U+1F600 (surrogates 0xD83D..)
        // in IndexedDB, although its UTF-8 bytes and its scalar value sort before.
        let (halfwidth, emoji) = ("\u{FF61}", "😀");
        assert!(halfwidth.as_bytes() < emoji.as_bytes());
        assert_eq!(cmp_utf16(halfwidth, emoji), Ordering::Greater);
        assert!(Key::str(emoji) < Key::str(halfwidth));
        // Devanagari (U+0900 block) sorts after Latin and before the emoji's surrogates.
        assert!(Key::str("zebra") < Key::str("नमस्ते"));
        assert!(Key::str("नमस्ते") < Key::str(emoji));
        assert!(Key::pair("c1", 5.0) < Key::pair("c1", 10.0));
        assert!(Key::pair("c1", f64::MAX) < Key::pair("c2", f64::MIN));
    }

    #[test]
    fn ranges() {
        let r = KeyRange::closed(Key::pair("c", f64::MIN), Key::pair("c", f64::MAX));
        assert!(r.contains(&Key::pair("c", 0.0)));
        assert!(!r.contains(&Key::pair("d", 0.0)));
        assert!(KeyRange::only(Key::str("x")).contains(&Key::str("x")));
    }
}
