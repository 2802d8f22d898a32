//! How many SMS segments a text takes, and why (B3, B7).
//!
//! GSM-7 when every character is in the GSM 03.38 basic or extension table (the
//! extension characters `^{}\[~]|€` and form feed cost two septets), else UCS-2
//! counting UTF-16 code units. One segment holds 160 / 70 units; a longer text is
//! split into segments of 153 / 67 units, and no grapheme cluster (current Unicode,
//! UAX #29) or GSM-7 escape pair is split across two segments.

use serde::Serialize;
use unicode_segmentation::GraphemeCursor;

/// The longest body the provider accepts, in characters (B7).
pub const MAX_BODY_CHARS: usize = 1600;

/// The character set a text is sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Encoding {
    /// The GSM 03.38 7-bit default alphabet (with its extension table).
    #[serde(rename = "GSM-7")]
    Gsm7,
    /// UCS-2 / UTF-16: any character, at two bytes per code unit.
    #[serde(rename = "UCS-2")]
    Ucs2,
}

impl Encoding {
    /// Units that fit in a single-segment message.
    pub fn single_segment(self) -> usize {
        match self {
            Self::Gsm7 => 160,
            Self::Ucs2 => 70,
        }
    }

    /// Units per segment of a multi-segment (concatenated) message.
    pub fn multi_segment(self) -> usize {
        match self {
            Self::Gsm7 => 153,
            Self::Ucs2 => 67,
        }
    }
}

/// Encoding and segment count of a text, as the composer counter shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SegmentCount {
    /// The encoding the text needs.
    pub encoding: Encoding,
    /// Size of the text in the encoding's units (septets or UTF-16 code units).
    pub units: usize,
    /// Number of segments (0 for the empty text).
    pub segments: usize,
    /// Capacity of each segment at this length: 160/70 for one, 153/67 for several.
    pub per_segment: usize,
    /// Units still free in the last segment before another one is needed.
    pub remaining: usize,
    /// The distinct characters that force UCS-2, in order of first appearance.
    pub ucs2_chars: Vec<String>,
    /// Length in characters (Unicode scalar values), checked against [`MAX_BODY_CHARS`].
    pub chars: usize,
    /// Whether the text is longer than the provider accepts.
    pub too_long: bool,
}

/// GSM 03.38 basic table, as Unicode (ESC at 0x1B excluded).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// GSM 03.38 extension table: each costs an escape plus the character.
const GSM7_EXTENSION: &str = "\u{0C}^{}\\[~]|€";

/// ASCII characters of the GSM-7 basic table, as a bitmap (bit n = code point n).
const GSM7_ASCII: u128 = {
    let mut bits = 0u128;
    let bytes = GSM7_BASIC.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] < 0x80 {
            bits |= 1 << bytes[i];
        }
        i += 1;
    }
    bits
};

/// Septets a character costs in GSM-7, or `None` when it is not in the tables.
pub fn gsm7_units(c: char) -> Option<usize> {
    if c.is_ascii() && GSM7_ASCII & (1 << c as u32) != 0 {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else if matches!(
        c,
        '£' | '¥'
            | 'è'
            | 'é'
            | 'ù'
            | 'ì'
            | 'ò'
            | 'Ç'
            | 'Ø'
            | 'ø'
            | 'Å'
            | 'å'
            | 'Δ'
            | 'Φ'
            | 'Γ'
            | 'Λ'
            | 'Ω'
            | 'Π'
            | 'Ψ'
            | 'Σ'
            | 'Θ'
            | 'Ξ'
            | 'Æ'
            | 'æ'
            | 'ß'
            | 'É'
            | '¤'
            | '¡'
            | 'Ä'
            | 'Ö'
            | 'Ñ'
            | 'Ü'
            | '§'
            | '¿'
            | 'ä'
            | 'ö'
            | 'ñ'
            | 'ü'
            | 'à'
    ) {
        Some(1)
    } else {
        None
    }
}

/// Counts the encoding, units and segments of `text` as it will be sent.
pub fn count(text: &str) -> SegmentCount {
    let mut forcing: Vec<char> = Vec::new();
    for c in text.chars().filter(|&c| gsm7_units(c).is_none()) {
        if !forcing.contains(&c) {
            forcing.push(c);
        }
    }
    let ucs2_chars: Vec<String> = forcing.iter().map(char::to_string).collect();
    let encoding = if ucs2_chars.is_empty() {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    };
    let units = match encoding {
        Encoding::Gsm7 => text.chars().map(|c| gsm7_units(c).unwrap_or(1)).sum(),
        Encoding::Ucs2 => text.encode_utf16().count(),
    };
    let chars = text.chars().count();
    let (segments, per_segment, remaining) = if units == 0 {
        (0, encoding.single_segment(), encoding.single_segment())
    } else if units <= encoding.single_segment() {
        (
            1,
            encoding.single_segment(),
            encoding.single_segment() - units,
        )
    } else {
        let per = encoding.multi_segment();
        let (segments, used) = pack(text, per, |c| match encoding {
            Encoding::Gsm7 => gsm7_units(c).unwrap_or(1),
            Encoding::Ucs2 => c.len_utf16(),
        });
        (segments, per, per - used)
    };
    SegmentCount {
        encoding,
        units,
        segments,
        per_segment,
        remaining,
        ucs2_chars,
        chars,
        too_long: chars > MAX_BODY_CHARS,
    }
}

/// Packs `text` greedily into segments of `per` units without splitting a grapheme
/// cluster (or a character): returns the segment count and the units used in the
/// last one. Only the cut points are checked for cluster boundaries, so the cost is
/// one pass over the characters plus a few boundary queries.
fn pack(text: &str, per: usize, units: impl Fn(char) -> usize) -> (usize, usize) {
    let mut segments = 1;
    let mut start = 0; // byte offset where the current segment starts
    let mut used = 0;
    for (at, c) in text.char_indices() {
        let u = units(c);
        if used + u <= per {
            used += u;
            continue;
        }
        // `c` does not fit: cut before it, or earlier if that splits a cluster.
        let mut cursor = GraphemeCursor::new(at, text.len(), true);
        let cut = match cursor.is_boundary(text, 0) {
            Ok(true) => at,
            _ => match cursor.prev_boundary(text, 0) {
                Ok(Some(b)) if b > start => b,
                // A cluster longer than a segment: split it between characters.
                _ => at,
            },
        };
        segments += 1;
        start = cut;
        used = text[cut..at].chars().map(&units).sum::<usize>() + u;
        if used > per {
            // Only possible for a cluster longer than a segment: restart at `c`.
            start = at;
            used = u;
        }
    }
    (segments, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_segment_boundaries() {
        assert_eq!(count("").segments, 0);
        assert_eq!(count(&"a".repeat(160)).segments, 1);
        assert_eq!(count(&"a".repeat(161)).segments, 2);
        assert_eq!(count(&"a".repeat(306)).segments, 2);
        assert_eq!(count(&"a".repeat(307)).segments, 3);
        assert_eq!(count(&"अ".repeat(70)).segments, 1);
        assert_eq!(count(&"अ".repeat(71)).segments, 2);
        assert_eq!(count(&"€".repeat(80)).units, 160);
        assert_eq!(count(&"€".repeat(80)).segments, 1);
    }

    #[test]
    fn escape_pairs_are_not_split() {
        // 152 plain septets, then an escape pair: it cannot start at unit 153.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        let c = count(&text);
        assert_eq!(c.encoding, Encoding::Gsm7);
        assert_eq!(c.units, 164);
        assert_eq!(c.segments, 2);
        assert_eq!(c.remaining, 153 - 12);
    }

    #[test]
    fn conjuncts_stay_whole() {
        // "क्ष" is one cluster of three code units.
        let text = format!("{}क्ष{}", "a".repeat(65), "b".repeat(2));
        let c = count(&text);
        assert_eq!(c.encoding, Encoding::Ucs2);
        assert_eq!(c.units, 70);
        assert_eq!(c.segments, 1);
        let text = format!("{}क्ष{}", "a".repeat(66), "b".repeat(2));
        assert_eq!(count(&text).segments, 2);
        assert_eq!(count(&text).remaining, 67 - 5);
    }

    #[test]
    fn reports_the_characters_that_force_ucs2() {
        let c = count("Hi Priya 😀, नमस्ते 😀");
        assert_eq!(c.ucs2_chars[0], "😀");
        assert_eq!(c.ucs2_chars[1], "न");
        assert_eq!(c.ucs2_chars.iter().filter(|s| *s == "😀").count(), 1);
        assert!(count("ç").ucs2_chars == ["ç"]);
        assert!(count("Ç\r\n\u{0C}").ucs2_chars.is_empty());
    }

    /// The straightforward reference: walk every cluster.
    fn reference(text: &str, per: usize, units: impl Fn(&str) -> usize) -> (usize, usize) {
        use unicode_segmentation::UnicodeSegmentation;
        let (mut segments, mut used) = (1, 0);
        let mut place = |u: usize| {
            if used + u > per {
                segments += 1;
                used = 0;
            }
            used += u;
        };
        for cluster in text.graphemes(true) {
            let u = units(cluster);
            if u <= per {
                place(u);
            } else {
                for c in cluster.chars() {
                    place(units(c.encode_utf8(&mut [0; 4])));
                }
            }
        }
        (segments, used)
    }

    #[test]
    fn packing_agrees_with_walking_every_cluster() {
        let pieces = [
            "a",
            "€",
            "क्ष",
            "नमस्ते",
            "👩‍👩‍👧",
            "\r\n",
            "\r",
            "é",
            "e\u{301}",
            " ",
            "🇮🇳",
            "ि",
        ];
        let mut seed = 7u64;
        for _ in 0..3000 {
            let mut text = String::new();
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 33) % 120;
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let piece = pieces[((seed >> 33) % pieces.len() as u64) as usize];
                text.push_str(piece);
            }
            let c = count(&text);
            if c.segments > 1 {
                let per = c.per_segment;
                let expected = match c.encoding {
                    Encoding::Gsm7 => reference(&text, per, |s| {
                        s.chars().map(|c| gsm7_units(c).unwrap_or(1)).sum()
                    }),
                    Encoding::Ucs2 => reference(&text, per, |s| s.encode_utf16().count()),
                };
                assert_eq!((c.segments, per - c.remaining), expected, "{text:?}");
            }
        }
        // A single cluster longer than a segment is split between characters.
        let zalgo = format!("a{}", "\u{301}".repeat(200));
        let c = count(&zalgo);
        assert_eq!(
            (c.segments, c.per_segment - c.remaining),
            reference(&zalgo, 67, |s| s.encode_utf16().count())
        );
    }

    #[test]
    fn body_limit() {
        assert!(!count(&"a".repeat(1600)).too_long);
        assert!(count(&"a".repeat(1601)).too_long);
    }
}
