//! Phone numbers in E.164 form (R4).
//!
//! [`normalize`] turns what people type (spaces, dashes, brackets, `00`/`011`
//! international prefixes, national trunk prefixes with a default region) into
//! `+<country code><subscriber number>`, or says why it cannot. It follows
//! libphonenumber's parsing rules over metadata generated from libphonenumber-js
//! "min" (`metadata.rs`), and accepts a number only when its length is possible for
//! its country from abroad: a number that only works for local dialling is rejected.
//!
//! Inbound senders are different: a short code or an alphanumeric sender id is not a
//! phone number but must never be dropped, so [`Party::classify`] keeps it verbatim.

mod metadata;
mod pattern;

use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use metadata::{CALLING_CODES, PLANS, PLAN_COUNT};
use pattern::{expand, Pattern};

/// The most digits an E.164 number may have (country code included).
pub const MAX_E164_DIGITS: usize = 15;

/// One region's numbering plan, as generated from libphonenumber metadata.
pub(crate) struct Plan {
    /// ISO 3166 alpha-2 region, or `001` for non-geographic codes.
    region: &'static str,
    /// Country calling code.
    cc: u16,
    /// International (IDD) prefix pattern, e.g. `00` or `011`.
    idd: &'static str,
    /// Pattern every national significant number of the region matches.
    pattern: &'static str,
    /// Possible lengths of national significant numbers, ascending (local-only excluded).
    lengths: &'static [u8],
    /// Pattern for the national prefix (and carrier code) to strip when parsing.
    prefix_for_parsing: &'static str,
    /// Replacement applied instead of plain stripping, when the plan has one.
    prefix_transform: &'static str,
}

/// A plan's patterns, compiled on first use.
struct Compiled {
    idd: Option<Pattern>,
    pattern: Option<Pattern>,
    prefix: Option<Pattern>,
}

static COMPILED: [OnceLock<Compiled>; PLAN_COUNT] = [const { OnceLock::new() }; PLAN_COUNT];

fn compile(src: &str) -> Option<Pattern> {
    // Every generated pattern compiles (`all_patterns_compile`); one that did not
    // would only disable that one rule.
    (!src.is_empty()).then(|| Pattern::new(src).ok()).flatten()
}

impl Plan {
    fn index(&self) -> usize {
        // PLANS is a static array, so the offset is the index.
        (self as *const Self as usize - PLANS.as_ptr() as usize) / std::mem::size_of::<Self>()
    }

    fn compiled(&self) -> &Compiled {
        COMPILED[self.index()].get_or_init(|| Compiled {
            idd: compile(self.idd),
            pattern: compile(self.pattern),
            prefix: compile(self.prefix_for_parsing),
        })
    }

    fn matches_pattern(&self, national: &str) -> bool {
        self.compiled()
            .pattern
            .as_ref()
            .is_some_and(|p| p.is_full_match(national))
    }

    fn check_length(&self, national: &str) -> LengthCheck {
        let len = national.len();
        let (Some(&min), Some(&max)) = (self.lengths.first(), self.lengths.last()) else {
            return LengthCheck::Possible;
        };
        if len < usize::from(min) {
            LengthCheck::TooShort
        } else if len > usize::from(max) {
            LengthCheck::TooLong
        } else if self.lengths.iter().any(|&l| usize::from(l) == len) {
            LengthCheck::Possible
        } else {
            LengthCheck::Invalid
        }
    }

    /// Strips a national prefix (and carrier code) when what remains is still viable,
    /// as libphonenumber's `maybeStripNationalPrefixAndCarrierCode` does.
    fn strip_national_prefix(&self, number: &str) -> String {
        let Some(caps) = self
            .compiled()
            .prefix
            .as_ref()
            .and_then(|p| p.match_prefix(number))
        else {
            return number.to_owned();
        };
        let end = caps[0].map_or(0, |(_, end)| end);
        let groups = caps.len() - 1;
        let last_group = groups > 0 && caps[groups].is_some_and(|(a, b)| b > a);
        let stripped = if !self.prefix_transform.is_empty() && last_group {
            expand(self.prefix_transform, number, &caps) + &number[end..]
        } else {
            number[end..].to_owned()
        };
        if stripped == number {
            return stripped;
        }
        if self.matches_pattern(number) && !self.matches_pattern(&stripped) {
            return number.to_owned();
        }
        match self.check_length(&stripped) {
            LengthCheck::TooShort | LengthCheck::Invalid => number.to_owned(),
            _ => stripped,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LengthCheck {
    Possible,
    TooShort,
    TooLong,
    Invalid,
}

fn plan_for_region(region: &str) -> Option<&'static Plan> {
    PLANS
        .binary_search_by(|p| p.region.cmp(region))
        .ok()
        .map(|i| &PLANS[i])
        .filter(|p| p.region != "001")
}

fn plan_for_calling_code(cc: u16) -> Option<&'static Plan> {
    CALLING_CODES
        .binary_search_by_key(&cc, |&(c, _)| c)
        .ok()
        .map(|i| &PLANS[usize::from(CALLING_CODES[i].1)])
}

/// Splits a known country calling code (1–3 digits) off the front of `digits`.
fn split_calling_code(digits: &str) -> Option<(&'static Plan, &str)> {
    if digits.starts_with('0') {
        return None;
    }
    (1..=3.min(digits.len())).find_map(|n| {
        let cc = digits[..n].parse().ok()?;
        plan_for_calling_code(cc).map(|plan| (plan, &digits[n..]))
    })
}

/// A validated phone number in E.164 form: `+`, country code, subscriber number.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct E164(String);

impl E164 {
    /// The number as text, e.g. `+919812345678`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country calling code, e.g. `91`.
    pub fn calling_code(&self) -> u16 {
        split_calling_code(&self.0[1..]).map_or(0, |(p, _)| p.cc)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<E164> for String {
    fn from(n: E164) -> Self {
        n.0
    }
}

impl TryFrom<String> for E164 {
    type Error = PhoneError;
    /// Accepts text already in E.164 form (it is normalised again, so `+1 415…` works too).
    fn try_from(s: String) -> Result<Self, PhoneError> {
        normalize(&s, None)
    }
}

/// Why a text could not be normalised to E.164.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PhoneError {
    /// Nothing but spaces and punctuation.
    #[error("no digits in the number")]
    Empty,
    /// A character that has no place in a phone number.
    #[error("unexpected character {0:?} in the number")]
    InvalidCharacter(char),
    /// The default region is not an ISO 3166 code the phone metadata knows.
    #[error("unknown region {0:?}")]
    UnknownRegion(String),
    /// A national number and no region to read it in.
    #[error("no country code: start with + and the country code, or set a default region")]
    MissingCountryCode,
    /// The digits after `+` (or an international prefix) are no country code.
    #[error("unknown country calling code")]
    UnknownCallingCode,
    /// Too short to be reached from abroad (maybe a local number without area code).
    #[error(
        "too short for {region}: a number that works only locally is not E.164 (add the area code)"
    )]
    TooShort {
        /// The region whose plan was applied.
        region: &'static str,
    },
    /// Longer than any number of the country.
    #[error("too long for {region}")]
    TooLong {
        /// The region whose plan was applied.
        region: &'static str,
    },
    /// A length no number of the country has.
    #[error("no number of {region} has this length")]
    InvalidLength {
        /// The region whose plan was applied.
        region: &'static str,
    },
}

impl PhoneError {
    /// A stable snake_case reason code, for UIs and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::InvalidCharacter(_) => "invalid_character",
            Self::UnknownRegion(_) => "unknown_region",
            Self::MissingCountryCode => "missing_country_code",
            Self::UnknownCallingCode => "unknown_calling_code",
            Self::TooShort { .. } => "too_short",
            Self::TooLong { .. } => "too_long",
            Self::InvalidLength { .. } => "invalid_length",
        }
    }
}

/// The value of a decimal digit in any common script (ASCII, Devanagari, Arabic-Indic,
/// full-width, ...), as libphonenumber accepts them.
fn digit_value(c: char) -> Option<u8> {
    const ZEROS: [u32; 21] = [
        0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
        0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0xFF10,
    ];
    let c = u32::from(c);
    ZEROS
        .iter()
        .find(|&&zero| (zero..zero + 10).contains(&c))
        .map(|&zero| (c - zero) as u8)
}

fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '-' | '.' | '/' | '(' | ')' | '[' | ']' | '~' | '\u{2010}'
                ..='\u{2015}' | '\u{2212}' | '\u{30FC}' | '\u{FF0D}'
        )
}

/// What the characters of a typed number say: a leading plus and the digits.
struct Scanned {
    plus: bool,
    digits: String,
}

/// Keeps the digits, notes a leading `+`, drops separators and an extension
/// (`ext. 12`, `x12`, `#12`, `;ext=12`: an extension cannot receive a text).
fn scan(raw: &str) -> Result<Scanned, PhoneError> {
    let mut text = raw.trim();
    for scheme in ["tel:", "TEL:", "Tel:"] {
        text = text.strip_prefix(scheme).unwrap_or(text);
    }
    let lower = text.to_ascii_lowercase();
    let ext_at = [";ext=", "ext.", "ext", "x", "#"]
        .iter()
        .filter_map(|marker| lower.find(marker))
        .min();
    if let Some(at) = ext_at {
        let (number, ext) = text.split_at(at);
        let ext_digits = ext
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .all(|c| digit_value(c).is_some() || c.is_whitespace());
        let has_digits = number.chars().any(|c| digit_value(c).is_some());
        if ext_digits && has_digits && ext.chars().any(|c| c.is_ascii_digit()) {
            text = number;
        }
    }
    let mut out = Scanned {
        plus: false,
        digits: String::with_capacity(text.len()),
    };
    for c in text.chars() {
        if let Some(d) = digit_value(c) {
            out.digits.push(char::from(b'0' + d));
        } else if matches!(c, '+' | '\u{FF0B}') && out.digits.is_empty() && !out.plus {
            out.plus = true;
        } else if !is_separator(c) {
            return Err(PhoneError::InvalidCharacter(c));
        }
    }
    if out.digits.is_empty() {
        return Err(PhoneError::Empty);
    }
    Ok(out)
}

/// Normalises typed text to E.164, reading national numbers in `default_region`
/// (ISO 3166 alpha-2, any case).
///
/// ```
/// use sms_core::phone::normalize;
/// assert_eq!(normalize("(415) 555-2671", Some("US")).unwrap().as_str(), "+14155552671");
/// assert_eq!(normalize("098123 45678", Some("IN")).unwrap().as_str(), "+919812345678");
/// assert_eq!(normalize("00 44 20 7946 0958", Some("DE")).unwrap().as_str(), "+442079460958");
/// assert!(normalize("555-2671", Some("US")).is_err()); // local dialling only
/// ```
pub fn normalize(raw: &str, default_region: Option<&str>) -> Result<E164, PhoneError> {
    let scanned = scan(raw)?;
    let region_plan = match default_region.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => Some(
            plan_for_region(&r.to_ascii_uppercase())
                .ok_or_else(|| PhoneError::UnknownRegion(r.to_owned()))?,
        ),
        None => None,
    };
    let digits = scanned.digits.as_str();
    let (plan, national) = if scanned.plus {
        split_calling_code(digits).ok_or(PhoneError::UnknownCallingCode)?
    } else {
        let plan = region_plan.ok_or(PhoneError::MissingCountryCode)?;
        match strip_idd(plan, digits) {
            Some(rest) => split_calling_code(rest).ok_or(PhoneError::UnknownCallingCode)?,
            None => (plan, strip_calling_code_without_plus(plan, digits)),
        }
    };
    let national = plan.strip_national_prefix(national);
    // Possibility is judged by the calling code's main plan, as libphonenumber does.
    let main = plan_for_calling_code(plan.cc).unwrap_or(plan);
    let region = main.region;
    match main.check_length(&national) {
        LengthCheck::Possible => {}
        LengthCheck::TooShort => return Err(PhoneError::TooShort { region }),
        LengthCheck::TooLong => return Err(PhoneError::TooLong { region }),
        LengthCheck::Invalid => return Err(PhoneError::InvalidLength { region }),
    }
    let e164 = format!("+{}{}", main.cc, national);
    if e164.len() - 1 > MAX_E164_DIGITS {
        return Err(PhoneError::TooLong { region });
    }
    Ok(E164(e164))
}

/// Strips the region's international prefix (`00`, `011`, ...), unless a `0` follows it.
fn strip_idd<'a>(plan: &Plan, digits: &'a str) -> Option<&'a str> {
    let caps = plan.compiled().idd.as_ref()?.match_prefix(digits)?;
    let rest = &digits[caps[0].map_or(0, |(_, end)| end)..];
    (!rest.is_empty() && !rest.starts_with('0')).then_some(rest)
}

/// Handles the region's own country code typed without `+` (`91 98123 45678` in IN),
/// when the number is too long or invalid with it and fine without it.
fn strip_calling_code_without_plus<'a>(plan: &Plan, digits: &'a str) -> &'a str {
    let cc = plan.cc.to_string();
    let Some(shorter) = digits.strip_prefix(cc.as_str()) else {
        return digits;
    };
    let whole = plan.strip_national_prefix(digits);
    let short = plan.strip_national_prefix(shorter);
    if (!plan.matches_pattern(&whole) && plan.matches_pattern(&short))
        || plan.check_length(&whole) == LengthCheck::TooLong
    {
        shorter
    } else {
        digits
    }
}

/// The other party of a message: a phone number, or a sender that is not one
/// (short code, alphanumeric id), kept exactly as received.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    /// A number normalised to E.164.
    Phone(E164),
    /// A sender kept verbatim (trimmed) because it is not a phone number.
    Verbatim(String),
}

impl Party {
    /// Classifies a sender or stored number: E.164 when it normalises, else verbatim.
    pub fn classify(raw: &str, default_region: Option<&str>) -> Self {
        match normalize(raw, default_region) {
            Ok(n) => Self::Phone(n),
            Err(_) => Self::Verbatim(raw.trim().to_owned()),
        }
    }

    /// The text used to compare parties: the E.164 form, or the verbatim text.
    pub fn key(&self) -> &str {
        match self {
            Self::Phone(n) => n.as_str(),
            Self::Verbatim(s) => s,
        }
    }

    /// Consumes the party, returning its comparison key.
    pub fn into_key(self) -> String {
        match self {
            Self::Phone(n) => n.0,
            Self::Verbatim(s) => s,
        }
    }
}

/// The comparison key of a number: E.164 when it normalises, else the trimmed text.
pub fn match_key(raw: &str, default_region: Option<&str>) -> String {
    Party::classify(raw, default_region).into_key()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str, region: Option<&str>) -> String {
        match normalize(raw, region) {
            Ok(n) => n.0,
            Err(e) => panic!("{raw:?} in {region:?}: {e}"),
        }
    }

    fn err(raw: &str, region: Option<&str>) -> &'static str {
        match normalize(raw, region) {
            Ok(n) => panic!("{raw:?} in {region:?} normalised to {n}"),
            Err(e) => e.reason(),
        }
    }

    #[test]
    fn all_patterns_compile() {
        for plan in &PLANS {
            let c = plan.compiled();
            assert_eq!(c.idd.is_some(), !plan.idd.is_empty(), "{} idd", plan.region);
            assert_eq!(
                c.pattern.is_some(),
                !plan.pattern.is_empty(),
                "{} pattern",
                plan.region
            );
            assert_eq!(
                c.prefix.is_some(),
                !plan.prefix_for_parsing.is_empty(),
                "{} prefix",
                plan.region
            );
        }
    }

    /// The matcher agrees with a general regex engine on every pattern of the metadata.
    #[test]
    fn matcher_agrees_with_regex_lite() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for plan in &PLANS {
            for src in [plan.idd, plan.pattern, plan.prefix_for_parsing] {
                if src.is_empty() {
                    continue;
                }
                let ours = Pattern::new(src).unwrap();
                let full = regex_lite::Regex::new(&format!("^(?:{src})$")).unwrap();
                let prefix = regex_lite::Regex::new(&format!("^(?:{src})")).unwrap();
                for _ in 0..300 {
                    let len = (next() % 16) as usize;
                    let digits: String = (0..len)
                        .map(|i| {
                            // Bias towards the pattern's own leading digits.
                            let from_src = src.bytes().filter(u8::is_ascii_digit).nth(i);
                            match (next() % 3, from_src) {
                                (0 | 1, Some(d)) => char::from(d),
                                _ => char::from(b'0' + (next() % 10) as u8),
                            }
                        })
                        .collect();
                    assert_eq!(
                        ours.is_full_match(&digits),
                        full.is_match(&digits),
                        "{src} on {digits}"
                    );
                    let theirs = prefix.captures(&digits).map(|c| {
                        (0..c.len())
                            .map(|i| c.get(i).map(|m| (m.start(), m.end())))
                            .collect::<Vec<_>>()
                    });
                    assert_eq!(ours.match_prefix(&digits), theirs, "{src} on {digits}");
                }
            }
        }
    }

    #[test]
    fn common_shapes() {
        assert_eq!(ok("+1 (415) 555-2671", None), "+14155552671");
        assert_eq!(ok("1-415-555-2671", Some("us")), "+14155552671");
        assert_eq!(ok("011 44 20 7946 0958", Some("US")), "+442079460958");
        assert_eq!(ok("+44 (0)20 7946 0958", None), "+442079460958");
        assert_eq!(ok("020 7946 0958", Some("GB")), "+442079460958");
        assert_eq!(ok("07911 123456", Some("GB")), "+447911123456");
        assert_eq!(ok("0049 30 123456", Some("FR")), "+4930123456");
        assert_eq!(ok("030 123456", Some("DE")), "+4930123456");
        assert_eq!(ok("01 23 45 67 89", Some("FR")), "+33123456789");
        assert_eq!(ok("(02) 9374 4000", Some("AU")), "+61293744000");
        assert_eq!(ok("0412 345 678", Some("AU")), "+61412345678");
        assert_eq!(ok("0011 44 20 7946 0958", Some("AU")), "+442079460958");
        assert_eq!(ok("(11) 91234-5678", Some("BR")), "+5511912345678");
        assert_eq!(ok("0 21 11 91234-5678", Some("BR")), "+5511912345678");
        assert_eq!(ok("98123 45678", Some("IN")), "+919812345678");
        assert_eq!(ok("91 98123 45678", Some("IN")), "+919812345678");
        assert_eq!(ok("+९१ ९८१२३ ४५६७८", None), "+919812345678");
        assert_eq!(ok("tel:+1-415-555-2671", None), "+14155552671");
        assert_eq!(ok("+1 415 555 2671 ext. 12", None), "+14155552671");
        assert_eq!(ok("+39 06 1234 5678", None), "+390612345678");
    }

    #[test]
    fn rejections_have_reasons() {
        assert_eq!(err("555-2671", Some("US")), "too_short");
        assert_eq!(err("4155552671", None), "missing_country_code");
        assert_eq!(err("00 44 20 7946 0958", Some("US")), "too_long");
        assert_eq!(err("+999 123", None), "unknown_calling_code");
        assert_eq!(err("call me", Some("US")), "invalid_character");
        assert_eq!(err(" - ", Some("US")), "empty");
        assert_eq!(err("4155552671", Some("XX")), "unknown_region");
        assert_eq!(err("+1 415 555 26711", None), "too_long");
        assert_eq!(err("+4930123456789012", None), "too_long");
    }

    #[test]
    fn senders_that_are_not_numbers_are_kept() {
        assert_eq!(
            Party::classify(" ACME ", Some("US")),
            Party::Verbatim("ACME".into())
        );
        assert_eq!(
            Party::classify("12345", Some("US")),
            Party::Verbatim("12345".into())
        );
        assert_eq!(match_key("+1 415 555 2671", None), "+14155552671");
    }
}
