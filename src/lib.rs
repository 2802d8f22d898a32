//! The SMS conversation module compiled to WebAssembly.
//!
//! This crate is the JS boundary over the pure `sms-core` crate: it converts plain
//! JS objects to core types (serde-wasm-bindgen) and back, and turns core errors
//! into JS `Error`s with a stable `code`. It holds no logic of its own.

#![deny(missing_docs)]

mod js_error;

use serde::Serialize;
use sms_core::routing::{route, RouteInput};
use sms_core::value::Value;
use sms_core::{normalize, segments, template};
use wasm_bindgen::prelude::*;

use js_error::{js_error, JsResult};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** An owner: one seller or one team. */
export type Owner = { seller: string } | { team: string };
/** Input of `routeInbound`. */
export interface RouteInput {
  inbound: { from: string; to: string };
  default_region?: string;
  org_numbers?: { number: string; owner: Owner }[];
  teams?: { id: string; members: string[] }[];
  records?: {
    id: string;
    kind: "contact" | "account" | "opportunity" | "lead";
    owner: Owner;
    active?: boolean;
    updated_at?: string | number;
    phones?: string[];
    name?: string;
  }[];
  conversations?: { record_id: string; org_number: string; customer_number: string; last_message_at: string | number }[];
}
/** The rule that decided where an inbound message goes. */
export type RouteRule = "only_match" | "recent_conversation" | "addressed_seller" | "team_member"
  | "record_type" | "active" | "recently_updated" | "id" | "new_lead";
/** Output of `routeInbound`. */
export type RouteDecision =
  | { record_id: string; rule: RouteRule }
  | { new_lead: { id: string; phone: string; owner: Owner | null }; rule: "new_lead" };
/** Output of `renderTemplate`. */
export interface Rendered { text: string; missing: string[] }
/** Output of `smsSegments`. */
export interface SegmentCount {
  encoding: "GSM-7" | "UCS-2";
  units: number;
  segments: number;
  per_segment: number;
  remaining: number;
  ucs2_chars: string[];
  chars: number;
  too_long: boolean;
}
"#;

pub(crate) fn to_js<T: Serialize>(value: &T) -> JsResult<JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| js_error("internal", &e.to_string(), &[]))
}

/// Normalises a phone number to E.164 (`{ e164 }`); throws `invalid_phone` with a
/// `reason` (`too_short`, `missing_country_code`, ...) when it cannot.
#[wasm_bindgen(js_name = normalizePhone, unchecked_return_type = "{ e164: string }")]
pub fn normalize_phone(input: &str, default_region: Option<String>) -> JsResult<JsValue> {
    #[derive(Serialize)]
    struct Out {
        e164: String,
    }
    match normalize(input, default_region.as_deref()) {
        Ok(n) => to_js(&Out { e164: n.into() }),
        Err(e) => Err(js_error(
            "invalid_phone",
            &e.to_string(),
            &[("reason", e.reason().into())],
        )),
    }
}

/// Decides which record an inbound message belongs to, and by which rule (R1–R3);
/// throws `invalid_input` when the input does not have the documented shape.
#[wasm_bindgen(
    js_name = routeInbound,
    unchecked_return_type = "RouteDecision"
)]
pub fn route_inbound(
    #[wasm_bindgen(unchecked_param_type = "RouteInput")] input: JsValue,
) -> JsResult<JsValue> {
    let input: RouteInput = serde_wasm_bindgen::from_value(input)
        .map_err(|e| js_error("invalid_input", &e.to_string(), &[]))?;
    to_js(&route(&input))
}

/// Renders a template with `data`: `{ text, missing }`; throws `template_syntax`
/// with `offset` (bytes) and `kind` on a syntax error.
#[wasm_bindgen(js_name = renderTemplate, unchecked_return_type = "Rendered")]
pub fn render_template(
    template: &str,
    #[wasm_bindgen(unchecked_param_type = "Record<string, unknown>")] data: JsValue,
) -> JsResult<JsValue> {
    let data: Value = if data.is_undefined() || data.is_null() {
        Value::Null
    } else {
        serde_wasm_bindgen::from_value(data)
            .map_err(|e| js_error("invalid_input", &e.to_string(), &[]))?
    };
    match template::render(template, &data) {
        Ok(r) => to_js(&r),
        Err(e) => Err(js_error(
            "template_syntax",
            &e.to_string(),
            &[
                ("offset", JsValue::from(e.offset as u32)),
                ("kind", e.kind.code().into()),
            ],
        )),
    }
}

/// Encoding and segment count of `text` as an SMS (B3).
#[wasm_bindgen(js_name = smsSegments, unchecked_return_type = "SegmentCount")]
pub fn sms_segments(text: &str) -> JsResult<JsValue> {
    to_js(&segments::count(text))
}

#[cfg(target_family = "wasm")]
mod client;
#[cfg(target_family = "wasm")]
mod connection;
#[cfg(target_family = "wasm")]
mod pane_driver;
#[cfg(target_family = "wasm")]
pub mod store;
#[cfg(target_family = "wasm")]
pub use client::{SmsClient, Subscription};

/// Renders `template` with `data` `n` times, compiled once, data on the Rust side:
/// the engine's own speed, for the browser benchmark against handlebars.js.
/// Returns the total rendered length (so the work cannot be optimised away).
#[cfg(feature = "bench")]
#[wasm_bindgen(js_name = benchRenderTemplate)]
pub fn bench_render_template(template: &str, data: JsValue, n: u32) -> JsResult<u32> {
    let data: Value = serde_wasm_bindgen::from_value(data)
        .map_err(|e| js_error("invalid_input", &e.to_string(), &[]))?;
    let compiled = template::Template::compile(template)
        .map_err(|e| js_error("template_syntax", &e.to_string(), &[]))?;
    let mut total = 0u32;
    for _ in 0..n {
        total = total.wrapping_add(compiled.render(&data).text.len() as u32);
    }
    Ok(total)
}
