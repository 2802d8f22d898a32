//! What can happen to the conversation pane: [`PaneInput`].

use serde::Deserialize;

use crate::consent::Consent;
use crate::delivery::DeliveryStatus;
use crate::directory::{Owner, RecordKind};
use crate::routing::RouteRule;
use crate::value::Value;

use super::{MessageView, MoveEntry};

/// How the seller opened the pane (O1–O4).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum OpenSource {
    /// The "My text messages" grid (O1).
    Grid,
    /// The message icon beside a record's phone field (O2).
    RecordPhone {
        /// Which field, e.g. `mobile_phone`.
        field: String,
    },
    /// A notification in the bell's centre (O3).
    Notification {
        /// The notification's id.
        id: String,
    },
    /// A text-message step of the work list (O4).
    WorkItem {
        /// The work item's id.
        id: String,
    },
    /// The related-record picker of an open pane (C2).
    Related,
}

/// A record as the pane shows it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct RecordRef {
    /// Record id.
    pub id: String,
    /// Record kind.
    pub kind: RecordKind,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Owner, for visibility (V1); absent for a record the seller knows by name only.
    #[serde(default)]
    pub owner: Option<Owner>,
}

/// Everything the pane needs to open on a conversation (looked up by the shell).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct OpenRequest {
    /// How it was opened.
    pub source: OpenSource,
    /// The record the conversation is attached to.
    pub record: RecordRef,
    /// Org numbers the seller may send from (C4); the first is the default.
    pub from_choices: Vec<String>,
    /// Owner of each org number, in the order of `from_choices` (V1).
    #[serde(default)]
    pub from_owners: Vec<Owner>,
    /// The record's customer numbers (C4); the first is the default.
    pub to_choices: Vec<String>,
    /// Preselected org number (the conversation's), if any.
    #[serde(default)]
    pub from: Option<String>,
    /// Preselected customer number, if any.
    #[serde(default)]
    pub to: Option<String>,
    /// Related records the seller can switch to (C2).
    #[serde(default)]
    pub related: Vec<RecordRef>,
    /// Consent of the customer number for the org number (B2).
    #[serde(default)]
    pub consent: Consent,
    /// The rule that routed the conversation here (B1).
    #[serde(default)]
    pub route_rule: Option<RouteRule>,
    /// The conversation's moves so far (B1).
    #[serde(default)]
    pub moves: Vec<MoveEntry>,
    /// Fields for templates: `record`, `contact`, `account`, `seller`, `org_number`...
    #[serde(default)]
    pub template_data: Value,
    /// The stored draft for this conversation (B4).
    #[serde(default)]
    pub draft: String,
}

/// An event for the pane, with serde shape `{ "type": "...", ... }` for JS.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PaneInput {
    /// Open the pane on a conversation.
    Open(Box<OpenRequest>),
    /// A page of history arrived (newest page first, then older pages).
    HistoryLoaded {
        /// Messages of the page, any order.
        messages: Vec<MessageView>,
        /// Whether older messages remain.
        has_more: bool,
    },
    /// The seller scrolled to the top: load the previous page.
    LoadOlder,
    /// The composer's text changed.
    ComposerEdited {
        /// The new text (may contain `{{ placeholders }}`).
        text: String,
    },
    /// A template was chosen: its body replaces the composer's text.
    TemplateChosen {
        /// The template's body.
        body: String,
    },
    /// The seller picked the org number to send from.
    FromChosen {
        /// The number.
        number: String,
    },
    /// The seller picked the customer number to send to.
    ToChosen {
        /// The number.
        number: String,
    },
    /// Send the composer's text.
    Send {
        /// Client reference chosen by the shell (idempotency key, B4).
        client_ref: String,
        /// Send even though some placeholders have no value.
        #[serde(default)]
        confirm_missing: bool,
    },
    /// The relay accepted a send.
    SendAccepted {
        /// The send's client reference.
        client_ref: String,
        /// The provider's message id.
        provider_id: String,
        /// The status the relay reported.
        #[serde(default)]
        status: Option<DeliveryStatus>,
    },
    /// A send failed or could not reach the relay.
    SendFailed {
        /// The send's client reference.
        client_ref: String,
        /// The relay is unreachable: the message waits in the outbox (B4).
        #[serde(default)]
        offline: bool,
        /// The outcome is ambiguous (timeout): never resent blindly.
        #[serde(default)]
        unknown: bool,
        /// Provider error code, when there is one.
        #[serde(default)]
        error_code: Option<u32>,
    },
    /// A message arrived from the customer (C6).
    Inbound {
        /// The message.
        message: MessageView,
        /// The conversation's record id (to tell whether it is this pane's).
        record_id: String,
        /// The org number it was sent to.
        org_number: String,
        /// The customer number.
        customer_number: String,
        /// The store already saved it read (its conversation is this pane's): no read
        /// mark to ask for.
        #[serde(default)]
        read: bool,
    },
    /// A message the seller sent from another tab or device, as the relay logged
    /// it (S1): it joins the history of the pane showing its conversation.
    OutboundLogged {
        /// The message.
        message: MessageView,
        /// The conversation's record id.
        record_id: String,
        /// The org number it was sent from.
        org_number: String,
        /// The customer number.
        customer_number: String,
    },
    /// The latest page as stored now, after another tab or the service worker
    /// changed the conversation: merged in, paging state untouched.
    Synced {
        /// Messages, oldest to newest.
        messages: Vec<MessageView>,
    },
    /// A delivery report for an outbound message (C5).
    DeliveryReport {
        /// The provider's message id.
        provider_id: String,
        /// The reported status.
        status: DeliveryStatus,
        /// Error code of a failure.
        #[serde(default)]
        error_code: Option<u32>,
    },
    /// The seller chose *Change* and a target record (M1).
    MoveRequested {
        /// The target record.
        target: RecordRef,
    },
    /// The relay confirmed a move (M2).
    MoveConfirmed {
        /// The move as logged.
        entry: MoveEntry,
        /// The record the conversation is now attached to.
        target: RecordRef,
    },
    /// The relay refused a move.
    MoveFailed {
        /// Why.
        reason: String,
    },
    /// The seller picked a related record (C2).
    RelatedChosen {
        /// Its id.
        record_id: String,
    },
    /// The customer's consent changed (B2).
    ConsentChanged {
        /// The new consent.
        consent: Consent,
    },
    /// The pane was closed.
    Close,
}
