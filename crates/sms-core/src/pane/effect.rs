//! What the shell must do for the pane: [`Effect`].

use serde::Serialize;

/// The two numbers and the record that identify a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct ConversationKey {
    /// The record it is attached to.
    pub record_id: String,
    /// The org number side (E.164).
    pub org_number: String,
    /// The customer side (E.164, or verbatim for a non-phone sender).
    pub customer_number: String,
}

/// Something the shell must do, drained with [`super::Pane::poll_effect`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Effect {
    /// Read a page of history: the newest `limit + at_edge` messages at or before
    /// `before` (the newest when `None`). Messages at `before` are read again because
    /// several may share that time and only `at_edge` of them are shown; the pane
    /// keeps each message once.
    LoadHistory {
        /// The conversation.
        conversation: ConversationKey,
        /// The time of the oldest message shown, if any.
        before: Option<crate::time::Timestamp>,
        /// How many shown messages have exactly that time.
        at_edge: usize,
        /// Page size (new messages).
        limit: usize,
    },
    /// Mark the conversation's messages and notifications read.
    MarkRead {
        /// The conversation.
        conversation: ConversationKey,
    },
    /// Store the draft (empty text deletes it).
    PersistDraft {
        /// The conversation.
        conversation: ConversationKey,
        /// The draft text.
        text: String,
    },
    /// Store the outbound message as queued and hand it to the relay.
    Send(crate::protocol::SendRequest),
    /// Ask the relay to move the conversation to another record.
    RequestMove {
        /// The conversation.
        conversation: ConversationKey,
        /// The target record's id.
        target_record_id: String,
    },
    /// Open the pane on another (related) record: look it up and send `Open`.
    SwitchRecord {
        /// The record to open.
        record_id: String,
    },
    /// A message arrived for another conversation: raise a notification.
    Notify {
        /// The other conversation.
        conversation: ConversationKey,
        /// Its message id.
        message_id: String,
    },
    /// The view changed: re-render it.
    Render,
}
