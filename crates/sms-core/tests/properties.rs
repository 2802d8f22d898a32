//! Properties of segments, templates and phone normalisation on arbitrary input.

#![cfg(not(target_family = "wasm"))]

use proptest::prelude::*;
use sms_core::segments::{count, Encoding};
use sms_core::template::{render, Template};
use sms_core::value::Value;
use sms_core::{normalize, Party};

/// A straightforward reference: plain ASCII GSM text packs exactly by division.
fn reference_gsm_segments(units: usize) -> usize {
    match units {
        0 => 0,
        1..=160 => 1,
        n => n.div_ceil(153),
    }
}

fn reference_ucs2_segments(units: usize) -> usize {
    match units {
        0 => 0,
        1..=70 => 1,
        n => n.div_ceil(67),
    }
}

proptest! {
    #[test]
    fn ascii_gsm_matches_reference(text in "[a-zA-Z0-9 .,!?]{0,700}") {
        let c = count(&text);
        prop_assert_eq!(c.encoding, Encoding::Gsm7);
        prop_assert_eq!(c.units, text.len());
        prop_assert_eq!(c.segments, reference_gsm_segments(text.len()));
    }

    #[test]
    fn single_unit_ucs2_matches_reference(text in "[a-zअआइईउऊकखगघ]{1,400}") {
        let c = count(&text);
        if text.is_ascii() {
            prop_assert_eq!(c.encoding, Encoding::Gsm7);
        } else {
            prop_assert_eq!(c.encoding, Encoding::Ucs2);
            prop_assert_eq!(c.units, text.chars().count());
            prop_assert_eq!(c.segments, reference_ucs2_segments(c.units));
        }
    }

    #[test]
    fn appending_never_needs_fewer_segments(a in "\\PC{0,300}", b in "\\PC{0,20}") {
        let joined = format!("{a}{b}");
        prop_assert!(count(&joined).segments >= count(&a).segments);
        let c = count(&joined);
        prop_assert!(c.segments == 0 || c.remaining < c.per_segment || c.segments == 1);
    }

    #[test]
    fn templates_never_panic(src in "\\PC{0,80}", braces in "(\\{\\{|\\}\\}|\\||:|\"|'|\\\\|-|\\.| |[a-z]){0,40}") {
        let data = Value::object([("a", Value::from("x"))]);
        let _ = render(&src, &data);
        let _ = render(&braces, &data);
        if let Ok(t) = Template::compile(&braces) {
            let _ = t.render(&Value::Null);
            let _ = t.fields();
        }
    }

    #[test]
    fn plain_text_renders_to_itself(text in "[^{\\\\]{0,100}") {
        let out = render(&text, &Value::Null).unwrap();
        prop_assert_eq!(out.text, text);
        prop_assert!(out.missing.is_empty());
    }

    #[test]
    fn normalisation_is_idempotent(raw in "\\+?[0-9 ()-]{0,20}", region in prop_oneof![Just("US"), Just("IN"), Just("GB"), Just("DE"), Just("BR")]) {
        if let Ok(n) = normalize(&raw, Some(region)) {
            prop_assert!(n.as_str().len() <= 16);
            prop_assert_eq!(normalize(n.as_str(), None).unwrap(), n.clone());
            prop_assert_eq!(normalize(n.as_str(), Some("FR")).unwrap(), n);
        }
        let _ = Party::classify(&raw, Some(region));
    }
}

proptest! {
    /// IndexedDB orders strings by UTF-16 code unit: the store's fast comparison agrees
    /// with comparing the code units, on strings mixing ASCII, the BMP's top (U+E000 and
    /// up) and supplementary characters, sharing prefixes.
    #[test]
    fn store_keys_order_as_utf16(
        prefix in "[a-c\u{E000}-\u{E002}\u{FFFF}\u{10000}-\u{10002}😀]{0,3}",
        a in "[a-c\u{7F}-\u{81}\u{D7FF}\u{E000}-\u{E002}\u{FFFF}\u{10000}-\u{10002}😀]{0,4}",
        b in "[a-c\u{7F}-\u{81}\u{D7FF}\u{E000}-\u{E002}\u{FFFF}\u{10000}-\u{10002}😀]{0,4}",
    ) {
        let (a, b) = (format!("{prefix}{a}"), format!("{prefix}{b}"));
        prop_assert_eq!(
            sms_core::store::key::cmp_utf16(&a, &b),
            a.encode_utf16().cmp(b.encode_utf16())
        );
    }
}
