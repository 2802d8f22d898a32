//! What is stored in IndexedDB: storage shapes kept apart from the domain types,
//! with the flat fields the indexes need (phone keys, millisecond times, 0/1 flags).

use serde::{Deserialize, Serialize};

pub use sms_core::store::rows::*;

/// A send waiting in the outbox (B4): it stays until the relay answers, and is
/// resent with the same client reference, which the relay deduplicates.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(from = "OutboxRow", into = "OutboxRow")]
pub struct OutboxEntry {
    /// What `POST /messages` takes.
    pub request: sms_core::protocol::SendRequest,
    /// When it was queued, ms since the epoch (sends go out in this order).
    pub queued_ms: f64,
    /// Attempts that could not reach the relay.
    pub attempts: u32,
}

/// An outbox entry as stored: the request's fields flat beside the entry's, keyed by
/// `client_ref` (the shape schema v1 froze; a derived flat codec is far smaller in
/// the module than `#[serde(flatten)]`).
#[derive(Clone, Serialize, Deserialize)]
struct OutboxRow {
    client_ref: String,
    from: String,
    to: String,
    body: String,
    #[serde(default)]
    record_id: Option<String>,
    #[serde(default)]
    queued_ms: f64,
    #[serde(default)]
    attempts: u32,
}

impl From<OutboxRow> for OutboxEntry {
    fn from(r: OutboxRow) -> Self {
        let request = sms_core::protocol::SendRequest {
            client_ref: r.client_ref,
            from: r.from,
            to: r.to,
            body: r.body,
            record_id: r.record_id,
        };
        Self {
            request,
            queued_ms: r.queued_ms,
            attempts: r.attempts,
        }
    }
}

impl From<OutboxEntry> for OutboxRow {
    fn from(e: OutboxEntry) -> Self {
        let r = e.request;
        Self {
            client_ref: r.client_ref,
            from: r.from,
            to: r.to,
            body: r.body,
            record_id: r.record_id,
            queued_ms: e.queued_ms,
            attempts: e.attempts,
        }
    }
}

/// A message template (B6): name, category (the record kind whose fields it uses),
/// language and body; per-placeholder defaults are written in the body with
/// `| default: "..."`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredTemplate {
    /// Id.
    pub id: String,
    /// Name shown in the picker.
    pub name: String,
    /// Record kind whose fields it may use (`contact`, `account`, ...).
    pub category: String,
    /// Language (`en`, `hi`, ...).
    #[serde(default)]
    pub language: String,
    /// Template body (Liquid subset).
    pub body: String,
}
