//! Smoke test of the exported functions in a real browser (`wasm-pack test --chrome`).

#![cfg(target_arch = "wasm32")]

use js_sys::{Reflect, JSON};
use sms_module::{normalize_phone, render_template, route_inbound, sms_segments};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test as test;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

fn json(text: &str) -> JsValue {
    JSON::parse(text).expect("valid JSON")
}

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &key.into()).expect("object")
}

fn stringify(v: &JsValue) -> String {
    JSON::stringify(v).expect("serialisable").into()
}

#[test]
fn normalizes_and_rejects_with_a_code() {
    let ok = normalize_phone("098123 45678", Some("IN".into())).unwrap();
    assert_eq!(get(&ok, "e164").as_string().unwrap(), "+919812345678");
    let err = normalize_phone("555-2671", Some("US".into())).unwrap_err();
    assert!(err.is_instance_of::<js_sys::Error>());
    assert_eq!(get(&err, "code").as_string().unwrap(), "invalid_phone");
    assert_eq!(get(&err, "reason").as_string().unwrap(), "too_short");
}

#[test]
fn routes_and_creates_leads() {
    let input = json(
        r#"{"inbound": {"from": "+919812345678", "to": "+14155550100"},
            "org_numbers": [{"number": "+14155550100", "owner": {"seller": "asha"}}],
            "records": [
              {"id": "lead:1", "kind": "lead", "owner": {"seller": "zoe"}, "active": true,
               "updated_at": "2024-01-01T00:00:00Z", "phones": ["+91 98123 45678"]},
              {"id": "contact:2", "kind": "contact", "owner": {"seller": "zoe"}, "active": true,
               "updated_at": "2024-01-01T00:00:00Z", "phones": ["+919812345678"]}],
            "conversations": []}"#,
    );
    let out = route_inbound(input).unwrap();
    assert_eq!(
        stringify(&out),
        r#"{"record_id":"contact:2","rule":"record_type"}"#
    );
    let out = route_inbound(json(
        r#"{"inbound": {"from": "+919812345678", "to": "+14155550100"},
            "org_numbers": [{"number": "+14155550100", "owner": {"team": "north"}}]}"#,
    ))
    .unwrap();
    assert_eq!(
        stringify(&out),
        r#"{"new_lead":{"id":"lead:+919812345678","phone":"+919812345678","owner":{"team":"north"}},"rule":"new_lead"}"#
    );
    let err = route_inbound(json(r#"{"inbound": 5}"#)).unwrap_err();
    assert_eq!(get(&err, "code").as_string().unwrap(), "invalid_input");
}

#[test]
fn renders_templates_and_reports_syntax_errors() {
    let out = render_template(
        "Hi {{ contact.first_name | capitalize }}{{ contact.city }}",
        json(r#"{"contact": {"first_name": "PRIYA"}}"#),
    )
    .unwrap();
    assert_eq!(
        stringify(&out),
        r#"{"text":"Hi Priya","missing":["contact.city"]}"#
    );
    let err = render_template("Hi {{ name", JsValue::UNDEFINED).unwrap_err();
    assert_eq!(get(&err, "code").as_string().unwrap(), "template_syntax");
    assert_eq!(get(&err, "offset").as_f64().unwrap(), 3.0);
}

#[test]
fn counts_segments() {
    let out = sms_segments("नमस्ते").unwrap();
    assert_eq!(get(&out, "encoding").as_string().unwrap(), "UCS-2");
    assert_eq!(get(&out, "segments").as_f64().unwrap(), 1.0);
    let out = sms_segments("").unwrap();
    assert_eq!(get(&out, "segments").as_f64().unwrap(), 0.0);
}
