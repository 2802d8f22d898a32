//! IndexedDB names, frozen per schema version (never write them inline).

/// Schema version 1.
pub(crate) mod v1 {
    /// Database version number.
    pub(crate) const VERSION: u8 = 1;
    /// Key/value settings: `position` (epoch + last applied event id).
    pub(crate) const META: &str = "meta";
    /// Directory records. Key: `record.id`. Index [`RECORDS_BY_PHONE`] (multi-entry, not unique).
    pub(crate) const RECORDS: &str = "records";
    /// Records by normalised phone key.
    pub(crate) const RECORDS_BY_PHONE: &str = "by_phone";
    /// Org numbers. Key: `number` (E.164).
    pub(crate) const ORG_NUMBERS: &str = "org_numbers";
    /// Sellers. Key: `id`.
    pub(crate) const SELLERS: &str = "sellers";
    /// Teams. Key: `id`.
    pub(crate) const TEAMS: &str = "teams";
    /// Conversations. Key: `id`. Indexes by pair, by record, by last activity.
    pub(crate) const CONVERSATIONS: &str = "conversations";
    /// Conversations by `[org_number, customer_number]`.
    pub(crate) const CONVERSATIONS_BY_PAIR: &str = "by_pair";
    /// Conversations by `record_id`.
    pub(crate) const CONVERSATIONS_BY_RECORD: &str = "by_record";
    /// Conversations by `last_ms`.
    pub(crate) const CONVERSATIONS_BY_LAST: &str = "by_last";
    /// Messages. Key: `id`. Indexes by `[conversation_id, at_ms]` and provider id (unique).
    pub(crate) const MESSAGES: &str = "messages";
    /// Messages by `[conversation_id, at_ms]`.
    pub(crate) const MESSAGES_BY_CONVERSATION: &str = "by_conversation";
    /// Messages by `provider_id` (unique; queued outbound messages have none yet).
    pub(crate) const MESSAGES_BY_PROVIDER: &str = "by_provider";
    /// Delivery reports that arrived before their message. Key: `message_sid`.
    pub(crate) const PENDING_REPORTS: &str = "pending_reports";
    /// In-app notifications. Key: `id`. Index [`NOTIFICATIONS_UNREAD`] on `unread` (0/1).
    pub(crate) const NOTIFICATIONS: &str = "notifications";
    /// Notifications by `unread`.
    pub(crate) const NOTIFICATIONS_UNREAD: &str = "unread";
    /// Message templates. Key: `id`.
    pub(crate) const TEMPLATES: &str = "templates";
    /// Messages waiting to be sent. Key: `client_ref`.
    pub(crate) const OUTBOX: &str = "outbox";
    /// Drafts per conversation. Key: `conversation_id`.
    pub(crate) const DRAFTS: &str = "drafts";
}

/// Schema version 2: version 1 plus the records' relation index (C2).
pub(crate) mod v2 {
    pub(crate) use super::v1::*;
    /// Database version number.
    pub(crate) const VERSION: u8 = 2;
    /// Records by the ids they link to (`record.related`, multi-entry): finds a
    /// contact's opportunities when only the opportunity names the contact.
    pub(crate) const RECORDS_BY_RELATED: &str = "by_related";
    /// Notifications by `[conversation_id, unread]`: a conversation's unread ones
    /// without reading every unread notification.
    pub(crate) const NOTIFICATIONS_BY_CONVERSATION: &str = "by_conversation";
    /// The seller's preferences on this device (language, ...). Key: `key`.
    pub(crate) const SETTINGS: &str = "settings";
}
