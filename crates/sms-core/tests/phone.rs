//! E.164 normalisation checked against an independent implementation: cases
//! generated with Python `phonenumbers` (a libphonenumber port), in `phone-inputs/`.

use sms_core::normalize;

/// Inputs where libphonenumber-js (whose parsing rules we follow) and the Python port
/// disagree: a national prefix after a country code typed without `+`.
const KNOWN_DIFFERENCES: &[&str] = &["11233456783", "(11) 96123-4567"];

#[test]
fn agrees_with_python_phonenumbers() {
    // Hand-picked shapes, then every region's example numbers in many forms
    // (tools/gen_phone_cases.py).
    let fixture = [
        include_str!("phone-inputs/phonenumbers.tsv"),
        include_str!("phone-inputs/examples.tsv"),
    ]
    .concat();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in fixture
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut cols = line.split('\t');
        let (Some(region), Some(raw), Some(expected)) = (cols.next(), cols.next(), cols.next())
        else {
            panic!("bad fixture line {line:?}");
        };
        if KNOWN_DIFFERENCES.contains(&raw) {
            continue;
        }
        let ours = match normalize(raw, Some(region)) {
            Ok(n) => n.to_string(),
            Err(_) => "!".to_owned(),
        };
        if ours != expected {
            failures.push(format!(
                "{region} {raw:?}: ours {ours}, expected {expected}"
            ));
        }
        checked += 1;
    }
    assert!(checked > 4500, "fixture too small: {checked}");
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
