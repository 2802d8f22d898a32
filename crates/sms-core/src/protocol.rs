//! The relay protocol: the directory the relay holds (S3) and the events it logs and
//! pushes (S1), shared by the relay (native) and the browser module (WASM) so both
//! read and write exactly the same shapes.

use serde::{Deserialize, Serialize};

use crate::consent::Consent;
use crate::delivery::DeliveryStatus;
use crate::directory::{OrgNumber, Record, Team};
use crate::pane::Media;
use crate::routing::RouteRule;
use crate::time::Timestamp;
use crate::value::Value;

/// A seller as the directory lists them (no secrets: tokens live in the config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seller {
    /// Seller id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// UI language (`en`, `hi`).
    #[serde(default)]
    pub language: Option<String>,
    /// Whether the seller has the privilege to receive inbound messages (P3).
    #[serde(default = "yes")]
    pub can_receive: bool,
    /// Whether the seller may sign in (X1): an inactive seller loses every session.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// The CRM directory: sellers, teams, org numbers, records (and message templates).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Directory {
    /// Sellers.
    #[serde(default)]
    pub sellers: Vec<Seller>,
    /// Teams with their members.
    #[serde(default)]
    pub teams: Vec<Team>,
    /// Org numbers and their owners.
    #[serde(default)]
    pub org_numbers: Vec<OrgNumber>,
    /// Records carrying phone numbers.
    #[serde(default)]
    pub records: Vec<Record>,
    /// Shared message templates, passed through to browsers as they are.
    #[serde(default)]
    pub templates: Vec<Value>,
}

/// Changes to the directory: upserts by id, then deletions by id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectoryPatch {
    /// Records, sellers, teams, org numbers to add or replace.
    #[serde(default)]
    pub upsert: Directory,
    /// Ids (numbers for org numbers) to delete.
    #[serde(default)]
    pub delete: DirectoryDeletes,
}

/// Ids to delete from the directory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectoryDeletes {
    /// Record ids.
    #[serde(default)]
    pub records: Vec<String>,
    /// Seller ids.
    #[serde(default)]
    pub sellers: Vec<String>,
    /// Team ids.
    #[serde(default)]
    pub teams: Vec<String>,
    /// Org numbers.
    #[serde(default)]
    pub org_numbers: Vec<String>,
}

/// The payload of each event kind (the fields next to `kind`).
pub mod events {
    use super::*;

    /// A message from a customer, with the relay's routing decision (S2).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct InboundEvent {
        /// Provider message id.
        pub message_sid: String,
        /// Customer number (E.164, or verbatim for a short code / sender id).
        pub from: String,
        /// Org number (E.164).
        pub to: String,
        /// Text.
        pub body: String,
        /// MMS media (B8).
        #[serde(default)]
        pub media: Vec<Media>,
        /// When the relay received it.
        pub at: Timestamp,
        /// The record it is attached to.
        pub record_id: String,
        /// Which rule decided (B1).
        pub rule: RouteRule,
    }

    /// A provider delivery report (C5).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct DeliveryEvent {
        /// Provider message id.
        pub message_sid: String,
        /// Reported status.
        pub status: DeliveryStatus,
        /// Provider error code of a failure.
        #[serde(default)]
        pub error_code: Option<u32>,
        /// Provider error message.
        #[serde(default)]
        pub error_message: Option<String>,
        /// Org number.
        pub from: String,
        /// Customer number.
        pub to: String,
        /// When the relay received it.
        pub at: Timestamp,
    }

    /// A seller sent a message (S1): other devices show it too.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct OutboundEvent {
        /// Client reference (idempotency key).
        pub client_ref: String,
        /// Provider message id, when the provider accepted it.
        #[serde(default)]
        pub message_sid: Option<String>,
        /// Org number.
        pub from: String,
        /// Customer number.
        pub to: String,
        /// Text as sent.
        pub body: String,
        /// Record the conversation is attached to.
        pub record_id: String,
        /// Sending seller.
        pub by: String,
        /// When.
        pub at: Timestamp,
        /// `accepted`, `failed` or `unknown`.
        pub outcome: SendOutcome,
        /// Provider error code when it failed.
        #[serde(default)]
        pub error_code: Option<u32>,
    }

    /// A lead created for an unknown number (R3), logged before its message.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct LeadCreatedEvent {
        /// The lead.
        pub record: Record,
    }

    /// A conversation moved to another record (M2).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ConversationMovedEvent {
        /// Org number side.
        pub org_number: String,
        /// Customer side.
        pub customer_number: String,
        /// Source record.
        pub from_record: String,
        /// Target record.
        pub to_record: String,
        /// Who moved it.
        pub by: String,
        /// When.
        pub at: Timestamp,
    }

    /// A customer opted out or back in for an org number (B2).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ConsentChangedEvent {
        /// Org number.
        pub org_number: String,
        /// Customer number.
        pub customer_number: String,
        /// New consent.
        pub consent: Consent,
        /// When.
        pub at: Timestamp,
    }

    /// The directory was patched (S3).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct DirectoryChangedEvent {
        /// The change.
        pub patch: DirectoryPatch,
    }

    /// A customer number was erased (F6, GDPR article 17): every device deletes what it
    /// holds of it — these conversations with their messages, drafts, notifications
    /// and waiting sends, and these leads. The relay has redacted its bodies and media
    /// everywhere it keeps them.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ErasedEvent {
        /// The customer number (key).
        pub customer_number: String,
        /// The conversations it had, by org number and record.
        pub conversations: Vec<ErasedConversation>,
        /// Leads created only for it, now removed.
        #[serde(default)]
        pub leads: Vec<String>,
        /// When.
        pub at: Timestamp,
    }

    /// A conversation an erasure removed.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ErasedConversation {
        /// Org number (key).
        pub org_number: String,
        /// The record that held it.
        pub record_id: String,
    }

    /// The directory was replaced: browsers re-import it from `GET /directory`.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct DirectoryReplacedEvent {
        /// The new directory.
        pub directory: Directory,
    }
}

use events::*;

/// What happened, as logged and pushed. Serialised with `"kind": "<snake_case>"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// A message from a customer, with the relay's routing decision (S2).
    Inbound(InboundEvent),
    /// A provider delivery report (C5).
    Delivery(DeliveryEvent),
    /// A seller sent a message (S1): other devices show it too.
    Outbound(OutboundEvent),
    /// A lead created for an unknown number (R3), logged before its message.
    LeadCreated(LeadCreatedEvent),
    /// A conversation moved to another record (M2).
    ConversationMoved(ConversationMovedEvent),
    /// A customer opted out or back in for an org number (B2).
    ConsentChanged(ConsentChangedEvent),
    /// The directory was patched (S3).
    DirectoryChanged(DirectoryChangedEvent),
    /// The directory was replaced: the event carries the reader's whole part, which
    /// ingest puts in place of the stored one (no `GET /directory`).
    DirectoryReplaced(DirectoryReplacedEvent),
    /// A customer number was erased (F6).
    Erased(ErasedEvent),
}

impl EventBody {
    /// Whether the event changes the directory (records, sellers, teams, org numbers).
    pub fn changes_directory(&self) -> bool {
        matches!(self, Self::DirectoryChanged(_) | Self::DirectoryReplaced(_))
    }

    /// The event kind's name, as in the JSON `kind` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Inbound { .. } => "inbound",
            Self::Delivery { .. } => "delivery",
            Self::Outbound { .. } => "outbound",
            Self::LeadCreated { .. } => "lead_created",
            Self::ConversationMoved { .. } => "conversation_moved",
            Self::ConsentChanged { .. } => "consent_changed",
            Self::DirectoryChanged { .. } => "directory_changed",
            Self::DirectoryReplaced { .. } => "directory_replaced",
            Self::Erased { .. } => "erased",
        }
    }
}

/// How an outbound send ended at the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendOutcome {
    /// The provider accepted it (delivery reports follow).
    Accepted,
    /// The provider refused it.
    Failed,
    /// Timeout or 5xx: it may or may not have been sent; never resent blindly.
    Unknown,
    /// Only in an answer, never logged: the relay holds the send (queued or with the
    /// provider) and has no outcome yet; ask again with the same `client_ref` later.
    Pending,
}

/// A send from a seller's device (`POST /messages`), also what the browser's outbox
/// keeps until the relay answers (B4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// Idempotency key chosen by the device: the same message is sent once, however
    /// often it is retried (per seller).
    pub client_ref: String,
    /// Org number to send from.
    pub from: String,
    /// Customer number to send to.
    pub to: String,
    /// The text as it will be sent (placeholders filled).
    pub body: String,
    /// The record the conversation is attached to; the relay takes the conversation's
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

/// How the relay answered a send (`POST /messages`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAnswer {
    /// The request's idempotency key.
    #[serde(default)]
    pub client_ref: String,
    /// `accepted`, `failed`, `unknown`, or `pending` (the relay has it, no outcome yet:
    /// keep it queued and ask again with the same `client_ref`).
    pub outcome: SendOutcome,
    /// Provider message id when accepted.
    #[serde(default)]
    pub message_sid: Option<String>,
    /// Provider error code when it failed.
    #[serde(default)]
    pub error_code: Option<u32>,
    /// The failure's stable reason code (e.g. `InvalidSendingParameters`), when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What went wrong at the provider, as a code (`provider_refused`,
    /// `provider_unreachable`, `provider_no_answer`); its own text stays in the relay's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_error: Option<String>,
    /// Whether this answers an earlier request with the same `client_ref`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// A request to move a conversation to another record (`POST /conversations/move`, M1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRequest {
    /// Org number side.
    pub org_number: String,
    /// Customer side.
    pub customer_number: String,
    /// The record it is on now.
    pub from_record: String,
    /// The record to move it to.
    pub to_record: String,
}

/// An event as stored and pushed: its place in the log plus what happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// The log's epoch (changes when the log is reset, S4).
    pub epoch: String,
    /// Position in the log, increasing within the epoch.
    pub id: i64,
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
}

impl LoggedEvent {
    /// The SSE id: `<epoch>:<id>`.
    pub fn sse_id(&self) -> String {
        format!("{}:{}", self.epoch, self.id)
    }
}

/// A place in the relay's log, `<epoch>:<id>` on the wire (SSE ids, `?since=`, `head`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The log's epoch (S4).
    pub epoch: String,
    /// The id within the epoch.
    pub id: i64,
}

impl Position {
    /// Reads `<epoch>:<id>`; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let (epoch, id) = text.trim().split_once(':')?;
        Some(Self {
            epoch: epoch.to_owned(),
            id: id.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.epoch, self.id)
    }
}

/// A message on the event stream that is not a logged event: it has no SSE id and is
/// never ingested as one. `caught_up` goes out as its own SSE event type (its `kind`),
/// so an `EventSource.onmessage` consumer of logged events never sees it; `reset`
/// stays on the default type, where consumers have always handled it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StreamNotice {
    /// The client's position is of another epoch (S4): forget it; a replay from the
    /// start of `epoch` follows.
    Reset {
        /// The log's current epoch.
        epoch: String,
    },
    /// The replay this connection owed is over (E4): what follows is live.
    CaughtUp {
        /// The log's epoch.
        epoch: String,
        /// The log's head when the replay ended (`<epoch>:<id>`); the seller's last
        /// event may be older (they do not receive every event).
        head: String,
    },
}

impl StreamNotice {
    /// The SSE event type it goes out as (`reset`, `caught_up`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Reset { .. } => "reset",
            Self::CaughtUp { .. } => "caught_up",
        }
    }
}

/// A finite page of events (`GET /events/page`, the service worker's catch-up).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventsPage {
    /// The log's epoch.
    pub epoch: String,
    /// The position asked for was of another epoch: forget it before applying these.
    #[serde(default)]
    pub reset: bool,
    /// The events after the position, in log order.
    pub events: Vec<LoggedEvent>,
    /// Where the next page starts (`<epoch>:<id>`).
    pub next: String,
    /// Whether more events wait after this page.
    pub more: bool,
}

/// One line of `GET /snapshot` (E3, X10): newline-delimited JSON, each line one
/// value tagged `"kind"`. A `start` line, then `conversations` lines (every
/// conversation the seller can see with its latest messages, in key order), then
/// `older` lines (the rest of each conversation's messages), then an `end` line. The
/// whole stream reflects one log position; a stream without its `end` line was cut
/// and is taken again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SnapshotLine {
    /// First: the position, how much follows, the seller's part of the directory.
    Start(SnapshotStart),
    /// Conversations with their latest page of messages.
    Conversations {
        /// In key order (org number, customer number, record).
        conversations: Vec<SnapshotConversation>,
    },
    /// Older messages of one conversation, after every conversation was sent.
    Older(SnapshotOlder),
    /// Last: the snapshot is whole.
    End {
        /// Conversations sent.
        conversations: u64,
        /// Messages sent (latest pages and older ones).
        messages: u64,
    },
}

/// The `start` line of a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotStart {
    /// The log's epoch.
    pub epoch: String,
    /// The log position the snapshot reflects (`<epoch>:<id>`): stream from here.
    pub position: String,
    /// How many conversations follow.
    pub conversations: u64,
    /// The seller's part of the directory (as `GET /directory` has it).
    pub directory: Directory,
}

/// A conversation of a snapshot, as the relay's history holds it (issue 17).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotConversation {
    /// Org number.
    pub org_number: String,
    /// Customer number.
    pub customer_number: String,
    /// The record holding it.
    pub record_id: String,
    /// Latest activity (message or move).
    pub last: Timestamp,
    /// The routing rule of its latest inbound message (B1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<RouteRule>,
    /// Moves so far, oldest first (M2, B1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<crate::pane::MoveEntry>,
    /// The customer's consent for the org number (B2).
    #[serde(default)]
    pub consent: Consent,
    /// Its latest messages, oldest first.
    pub messages: Vec<crate::relay::history::HistoryMessage>,
}

/// An `older` line: messages of one conversation before its latest page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotOlder {
    /// Org number.
    pub org_number: String,
    /// Customer number.
    pub customer_number: String,
    /// The record holding it.
    pub record_id: String,
    /// Oldest first.
    pub messages: Vec<crate::relay::history::HistoryMessage>,
}

/// The body of every error the relay answers (`{code, message, ...}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable snake_case code (`opted_out`, `send_rate_limited`, `unauthorized`, ...).
    pub code: String,
    /// Text for the relay's log and developers, never shown to a seller.
    #[serde(default)]
    pub message: String,
    /// For a send refused as the provider would: the failure's reason code
    /// (`InvalidSendingParameters`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a send refused as the provider would: the provider's error code (21211).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
    /// For 429: seconds to wait (also in the `Retry-After` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}
