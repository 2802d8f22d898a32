//! The rows the browser stores, kept apart from the domain types: the flat fields the
//! indexes need (phone keys, millisecond times, 0/1 flags). Their serde shapes are the
//! stored shapes (schema v2): changing one needs a migration.

use serde::{Deserialize, Serialize};

use crate::consent::Consent;
use crate::delivery::Delivery;
use crate::directory::Record;
use crate::pane::{Direction, Media, MoveEntry};
use crate::routing::RouteRule;
use crate::value::Value;

/// A directory record plus its normalised phone keys (multi-entry index). Nested,
/// not flattened: serde's flatten buffers through a generic map and costs WASM size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// The record.
    pub record: Record,
    /// Its phones' match keys (multi-entry index).
    pub phone_keys: Vec<String>,
}

/// The relay position this database has applied up to (D1, S4).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Always `position` (the meta store's key).
    pub key: String,
    /// The relay log's epoch.
    pub epoch: String,
    /// The last applied event id.
    pub id: i64,
}

/// A conversation: one record, one org number, one customer number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredConversation {
    /// Stable id (kept across moves).
    pub id: String,
    /// The record it is attached to now.
    pub record_id: String,
    /// Org number (E.164).
    pub org_number: String,
    /// Customer number.
    pub customer_number: String,
    /// Latest activity, ms since the epoch (index key).
    pub last_ms: f64,
    /// Preview of the last message.
    pub preview: String,
    /// Unread inbound messages.
    pub unread: u32,
    /// The rule that attached it to its record (B1).
    pub rule: Option<RouteRule>,
    /// Moves so far (B1).
    pub moves: Vec<MoveEntry>,
    /// Consent of the customer for the org number (B2).
    pub consent: Consent,
}

/// A message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Provider id, or the client reference of an outbound message.
    pub id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Time, ms since the epoch (index key).
    pub at_ms: f64,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Text.
    pub body: String,
    /// Provider id (unique index; absent until the provider accepts an outbound message).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub provider_id: Option<String>,
    /// Client reference of an outbound message.
    #[serde(default)]
    pub client_ref: Option<String>,
    /// Delivery status of an outbound message.
    #[serde(default)]
    pub delivery: Option<Delivery>,
    /// MMS media.
    #[serde(default)]
    pub media: Vec<Media>,
}

/// A delivery report kept until its message arrives (D2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingReport {
    /// The provider id of the message it is about.
    pub message_sid: String,
    /// The status so far.
    pub delivery: Delivery,
}

/// What a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A new inbound message (N1).
    NewMessage,
    /// A message arrived but the seller lacks the privilege to receive it (P3).
    MissingPrivilege,
}

/// An in-app notification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredNotification {
    /// Id (the message id).
    pub id: String,
    /// What it is about.
    pub kind: NotificationKind,
    /// The conversation to open.
    pub conversation_id: String,
    /// Preview text.
    pub text: String,
    /// When, ms since the epoch.
    pub at_ms: f64,
    /// 1 while unread (IndexedDB cannot index booleans).
    pub unread: u8,
}

/// A draft kept per conversation (B4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    /// Its conversation.
    pub conversation_id: String,
    /// The unsent text.
    pub text: String,
}

/// A send waiting in the outbox (B4): it stays until the relay answers, and is
/// resent with the same client reference, which the relay deduplicates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "OutboxRow", into = "OutboxRow")]
pub struct OutboxEntry {
    /// What `POST /messages` takes.
    pub request: crate::protocol::SendRequest,
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
        let request = crate::protocol::SendRequest {
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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

impl StoredTemplate {
    /// A template as the directory gives it (any extra fields are dropped).
    pub fn from_value(v: &Value) -> Self {
        let text = |f: &str| match v.lookup([f]) {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        Self {
            id: text("id"),
            name: text("name"),
            category: text("category"),
            language: text("language"),
            body: text("body"),
        }
    }

    /// The stored value.
    pub fn to_value(&self) -> Value {
        let field = |k: &str, v: &str| (k.to_owned(), Value::String(v.to_owned()));
        Value::Object(
            [
                field("id", &self.id),
                field("name", &self.name),
                field("category", &self.category),
                field("language", &self.language),
                field("body", &self.body),
            ]
            .into_iter()
            .collect(),
        )
    }
}

/// A conversation not stored yet. Its id derives from its record and numbers, so
/// every tab (and a later reply) names it the same.
pub fn new_conversation(
    org: &str,
    customer: &str,
    record_id: &str,
    rule: Option<RouteRule>,
) -> StoredConversation {
    StoredConversation {
        id: conversation_id(org, customer, record_id),
        record_id: record_id.to_owned(),
        org_number: org.to_owned(),
        customer_number: customer.to_owned(),
        last_ms: 0.0,
        preview: String::new(),
        unread: 0,
        rule,
        moves: Vec::new(),
        consent: Default::default(),
    }
}

/// The id of the conversation between two numbers on a record.
pub fn conversation_id(org: &str, customer: &str, record_id: &str) -> String {
    format!("{org}|{customer}|{record_id}")
}

/// A message's preview in the grid and the bell: its first 80 characters.
pub fn preview(body: &str) -> String {
    let mut p: String = body.chars().take(80).collect();
    if body.chars().count() > 80 {
        p.push('…');
    }
    p
}
