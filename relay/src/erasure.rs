//! Erasing and exporting a customer number (F6): `POST /admin/customers/erase` and
//! `GET /admin/customers/export`, both for the CRM's administrator, both logged for
//! audit without the number or anything stored about it (a hash of the number only).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::App;
use crate::auth::Admin;
use crate::error::ApiError;

/// `POST /admin/customers/erase` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// The customer number (E.164).
    pub number: String,
}

/// `GET /admin/customers/export` query.
#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    /// The customer number (E.164).
    pub number: String,
}

/// What the audit log keeps of a number: the first 12 hex digits of its SHA-256.
pub fn number_hash(number: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(number.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn invalid_number() -> ApiError {
    ApiError::bad_request("invalid_number", "not an E.164 phone number")
}

/// The number's key as the state compares numbers, or `invalid_number`.
fn key_of(app: &App, number: &str) -> Result<String, ApiError> {
    if sms_core::phone::normalize(number, None).is_err() {
        return Err(invalid_number());
    }
    Ok(sms_core::phone::match_key(
        number,
        app.config.default_region.as_deref(),
    ))
}

/// `POST /admin/customers/erase {"number": "+E164"}`: logs an `erased` event to the
/// sellers who saw the number's conversations (their browsers delete their copies),
/// redacts the number's bodies and media from the log, drops its history, its
/// leads, its queued sends and every checkpoint older than the erasure. Answers
/// `{"event_id", "conversations", "leads", "events_redacted", "sends_deleted"}`.
pub async fn erase(
    State(app): State<Arc<App>>,
    _: Admin,
    body: Result<Json<EraseRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request("bad_request", e.body_text()))?;
    let hash = match key_of(&app, &req.number) {
        Ok(key) => number_hash(&key),
        Err(e) => {
            tracing::info!(target: "audit", action = "erase", outcome = "invalid_number");
            return Err(e);
        }
    };
    let done = match app.seq.erase(req.number).await {
        Ok(done) => done,
        Err(e) => {
            tracing::info!(target: "audit", action = "erase", number_hash = %hash, outcome = e.code);
            return Err(e);
        }
    };
    let sms_core::protocol::EventBody::Erased(erased) = &done.event.body else {
        return Err(ApiError::internal("an erasure logged another event"));
    };
    tracing::info!(
        target: "audit",
        action = "erase",
        number_hash = %hash,
        outcome = "done",
        event_id = done.event.id,
        conversations = erased.conversations.len(),
        leads = erased.leads.len(),
        events_redacted = done.events_redacted,
        sends_deleted = done.sends_deleted,
    );
    Ok(Json(json!({
        "event_id": done.event.id,
        "conversations": erased.conversations.len(),
        "leads": erased.leads,
        "events_redacted": done.events_redacted,
        "sends_deleted": done.sends_deleted,
    })))
}

/// `GET /admin/customers/export?number=+E164`: everything the relay keeps about a
/// number, as JSON: its conversations in the history with their messages and
/// deliveries, its consent per org number, the directory records with that phone,
/// every kept log event naming it (as logged), and its sends not yet logged.
pub async fn export(
    State(app): State<Arc<App>>,
    _: Admin,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("bad_request", e.body_text()))?;
    let key = match key_of(&app, &q.number) {
        Ok(key) => key,
        Err(e) => {
            tracing::info!(target: "audit", action = "export", outcome = "invalid_number");
            return Err(e);
        }
    };
    let hash = number_hash(&key);
    let region = app.config.default_region.clone();
    let k = key.clone();
    let state_part = app
        .seq
        .query(move |s| {
            let consent: Vec<Value> = s
                .directory()
                .org_numbers
                .iter()
                .map(|o| {
                    json!({
                        "org_number": o.number,
                        "consent": s.consent(&s.key(&o.number), &k),
                    })
                })
                .collect();
            let records: Vec<Value> = s
                .directory()
                .records
                .iter()
                .filter(|r| r.phones.iter().any(|p| s.key(p) == k))
                .map(|r| json!(r))
                .collect();
            (consent, records)
        })
        .await?;
    let reader = app.reader.clone();
    let k = key.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let region = region.as_deref();
        reader.export(&k, &|n| sms_core::phone::match_key(n, region) == k)
    })
    .await
    .map_err(ApiError::internal)??;
    let conversations: Vec<Value> = stored
        .conversations
        .iter()
        .map(|(c, messages)| {
            let mut v = json!(c);
            if let Some(o) = v.as_object_mut() {
                o.insert("messages".into(), json!(messages));
            }
            v
        })
        .collect();
    let sends: Vec<Value> = stored
        .sends
        .iter()
        .map(|(p, stage)| {
            json!({
                "seller": p.seller, "client_ref": p.client_ref, "from": p.from, "to": p.to,
                "body": p.body, "record_id": p.record_id, "at": p.at, "stage": stage.as_str(),
            })
        })
        .collect();
    tracing::info!(
        target: "audit",
        action = "export",
        number_hash = %hash,
        outcome = "done",
        conversations = conversations.len(),
        events = stored.events.len(),
    );
    Ok(Json(json!({
        "number": key,
        "conversations": conversations,
        "consent": state_part.0,
        "records": state_part.1,
        "events": stored.events,
        "sends": sends,
    })))
}
