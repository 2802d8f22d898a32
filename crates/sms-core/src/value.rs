//! A JSON-like value: the data templates are rendered with.
//!
//! Kept small on purpose (no serde_json in the WASM module): it deserialises from
//! any self-describing serde format, including plain JS objects.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess};
use serde::{Serialize, Serializer};

/// A JSON-like value.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    /// Absent or `null`.
    #[default]
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// Any number.
    Number(f64),
    /// Text.
    String(String),
    /// A list.
    Array(Vec<Self>),
    /// Named fields.
    Object(BTreeMap<String, Self>),
}

impl Value {
    /// Looks up a dotted path (`contact.first_name`, `phones.0`).
    pub fn lookup<I>(&self, path: I) -> Option<&Self>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        path.into_iter().try_fold(self, |v, key| {
            let key = key.as_ref();
            match v {
                Self::Object(map) => map.get(key),
                Self::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            }
        })
    }

    /// An object from `(key, value)` pairs.
    pub fn object<K: Into<String>>(fields: impl IntoIterator<Item = (K, Self)>) -> Self {
        Self::Object(fields.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

/// Formats a number the way JS prints it for everyday values: integers without a
/// fraction, others with the fewest decimals (up to 15) that give back the same
/// number. Written without `f64`'s `Display`, which would add ~14 KB to the module.
pub fn format_number(n: f64) -> String {
    if !n.is_finite() {
        return if n.is_nan() {
            "NaN".into()
        } else if n > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.fract() == 0.0 && n.abs() < EXACT {
        return (n as i64).to_string();
    }
    let sign = if n < 0.0 { "-" } else { "" };
    let a = n.abs();
    let mut scale = 1.0;
    for decimals in 1..=15usize {
        scale *= 10.0;
        let scaled = (a * scale).round();
        if scaled >= EXACT {
            break;
        }
        if scaled / scale == a || decimals == 15 {
            let scaled = scaled as u64;
            let pow = 10u64.pow(decimals as u32);
            let frac = format!("{:0width$}", scaled % pow, width = decimals);
            let frac = frac.trim_end_matches('0');
            return if frac.is_empty() {
                format!("{sign}{}", scaled / pow)
            } else {
                format!("{sign}{}.{frac}", scaled / pow)
            };
        }
    }
    // Beyond 2^53 with a fraction cannot happen (such doubles are integers); very
    // large integers print in full.
    format!("{sign}{}", a as u128)
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::String(s)
    }
}

impl From<Option<String>> for Value {
    fn from(s: Option<String>) -> Self {
        s.map_or(Self::Null, Self::String)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => s.serialize_unit(),
            Self::Bool(b) => s.serialize_bool(*b),
            Self::Number(n) => s.serialize_f64(*n),
            Self::String(v) => s.serialize_str(v),
            Self::Array(v) => v.serialize(s),
            Self::Object(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON-like value")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                Value::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
                Ok(Value::Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Number(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::String(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Value, E> {
                Ok(Value::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Value::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let mut fields = BTreeMap::new();
                while let Some((k, v)) = map.next_entry()? {
                    fields.insert(k, v);
                }
                Ok(Value::Object(fields))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::format_number;

    #[test]
    fn numbers_print_like_js() {
        for (n, s) in [
            (42.0, "42"),
            (-3.0, "-3"),
            (2.75, "2.75"),
            (19.9, "19.9"),
            (-0.5, "-0.5"),
            (1999.99, "1999.99"),
            (0.001, "0.001"),
            (1e21, "1000000000000000000000"),
            (123456.789, "123456.789"),
        ] {
            assert_eq!(format_number(n), s);
        }
    }
}
