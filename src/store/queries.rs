//! Reads: "My text messages", history pages, notifications, record lookup.

use indexed_db_futures::cursor::CursorDirection;
use indexed_db_futures::prelude::*;
use indexed_db_futures::KeyRange;
use serde::Serialize;
use sms_core::directory::Record;
use sms_core::visibility::{visibility, Viewer};

use super::keys::v1 as k;
use super::records::{StoredConversation, StoredMessage, StoredNotification, StoredRecord};
use super::{IdbStore, StoreResult};

impl IdbStore {
    /// "My text messages": conversations the seller may see, newest first (O1, V1).
    pub async fn conversations(&self) -> StoreResult<Vec<ConversationSummary>> {
        let cache = self.directory_cache().await?;
        let my_teams: Vec<&str> = cache.my_teams.iter().map(String::as_str).collect();
        let tx = self
            .db
            .transaction([k::CONVERSATIONS, k::RECORDS])
            .build()?;
        let conv_store = tx.object_store(k::CONVERSATIONS)?;
        let convs = conv_store.index(k::CONVERSATIONS_BY_LAST)?;
        let records = tx.object_store(k::RECORDS)?;
        let mut out = Vec::new();
        let Some(mut cursor) = convs
            .open_cursor()
            .with_direction(CursorDirection::Prev)
            .serde()?
            .await?
        else {
            return Ok(out);
        };
        while let Some(c) = cursor.next_record_ser::<StoredConversation>().await? {
            let record: Option<StoredRecord> = records.get(c.record_id.as_str()).serde()?.await?;
            let viewer = Viewer {
                seller: &self.ctx.seller,
                teams: &my_teams,
            };
            let record_owner = record.as_ref().map(|r| &r.record.owner);
            if visibility(viewer, cache.org_owners.get(&c.org_number), record_owner).is_ok() {
                out.push(ConversationSummary {
                    record_name: record.map(|r| r.record.name).unwrap_or_default(),
                    conversation: c,
                });
            }
        }
        Ok(out)
    }

    /// A page of history, newest `limit` messages older than `before_ms`, returned
    /// oldest to newest, read with a reverse cursor (never the whole history).
    pub async fn history(
        &self,
        conversation_id: &str,
        before_ms: Option<f64>,
        limit: usize,
    ) -> StoreResult<HistoryPage> {
        let tx = self.db.transaction(k::MESSAGES).build()?;
        let messages = tx.object_store(k::MESSAGES)?;
        let index = messages.index(k::MESSAGES_BY_CONVERSATION)?;
        let upper = (conversation_id.to_owned(), before_ms.unwrap_or(f64::MAX));
        let lower = (conversation_id.to_owned(), f64::MIN);
        // Find the page's lower edge with one jump of a reverse cursor (the message
        // just older than the page), then read the page with one getAll: three
        // requests whatever the page size or the history length.
        let mut lower_key = lower.clone();
        let mut has_more = false;
        let range = KeyRange::Bound(lower.clone(), false, upper.clone(), true);
        let total: u32 = index.count().with_query(range.clone()).serde()?.await?;
        if total as usize > limit {
            // The page starts after the message `limit` steps back from the newest.
            let cursor = index
                .open_cursor()
                .with_query(range)
                .with_direction(CursorDirection::Prev)
                .serde()?
                .await?;
            if let Some(mut cursor) = cursor {
                cursor.advance_by(limit as u32).await?;
                if let Some(edge) = cursor.key_ser::<(String, f64)>()? {
                    // Inclusive, then trimmed below: messages sharing the edge's
                    // millisecond are not lost.
                    has_more = true;
                    lower_key = edge;
                }
            }
        }
        let page = KeyRange::Bound(lower_key, false, upper, true);
        let mut messages: Vec<StoredMessage> = index
            .get_all()
            .with_query(page)
            .serde()?
            .await?
            .collect::<Result<_, _>>()?;
        if messages.len() > limit {
            messages.drain(..messages.len() - limit);
        }
        Ok(HistoryPage { messages, has_more })
    }

    /// Notifications, newest first.
    pub async fn notifications(&self) -> StoreResult<Vec<StoredNotification>> {
        let tx = self.db.transaction(k::NOTIFICATIONS).build()?;
        let mut all: Vec<StoredNotification> = tx
            .object_store(k::NOTIFICATIONS)?
            .get_all()
            .serde()?
            .await?
            .collect::<Result<_, _>>()?;
        all.sort_by(|a, b| b.at_ms.total_cmp(&a.at_ms));
        Ok(all)
    }

    /// Finds records by name or phone across all kinds (M1).
    pub async fn lookup(&self, query: &str, limit: usize) -> StoreResult<Vec<Record>> {
        let q = query.trim().to_lowercase();
        let digits: String = q.chars().filter(char::is_ascii_digit).collect();
        let tx = self.db.transaction(k::RECORDS).build()?;
        let all: Vec<StoredRecord> = tx
            .object_store(k::RECORDS)?
            .get_all()
            .serde()?
            .await?
            .collect::<Result<_, _>>()?;
        Ok(all
            .into_iter()
            .filter(|r| {
                r.record.name.to_lowercase().contains(&q)
                    || r.record.id.to_lowercase().contains(&q)
                    || (digits.len() >= 3 && r.phone_keys.iter().any(|p| p.contains(&digits)))
            })
            .take(limit)
            .map(|r| r.record)
            .collect())
    }
}

/// A conversation in the grid.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationSummary {
    /// The conversation.
    #[serde(flatten)]
    pub conversation: StoredConversation,
    /// Its record's name.
    pub record_name: String,
}

/// A page of history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPage {
    /// Messages, oldest to newest.
    pub messages: Vec<StoredMessage>,
    /// Whether older messages remain.
    pub has_more: bool,
}

/// What the pane needs to open on a conversation, read in one transaction.
#[derive(Debug, Clone)]
pub struct PaneSeed {
    /// The conversation.
    pub conversation: StoredConversation,
    /// Its record, when the directory has it.
    pub record: Option<Record>,
    /// Every org number with its owner.
    pub org_numbers: Vec<sms_core::directory::OrgNumber>,
    /// Every team.
    pub teams: Vec<sms_core::directory::Team>,
    /// The seller's profile.
    pub me: Option<sms_core::protocol::Seller>,
    /// The conversation's draft.
    pub draft: String,
}

impl IdbStore {
    /// A conversation by id.
    pub async fn conversation(&self, id: &str) -> StoreResult<Option<StoredConversation>> {
        let tx = self.db.transaction(k::CONVERSATIONS).build()?;
        let c: Option<StoredConversation> =
            tx.object_store(k::CONVERSATIONS)?.get(id).serde()?.await?;
        Ok(c)
    }

    /// The conversation between two numbers attached to `record_id`, if any.
    pub async fn find_conversation(
        &self,
        org: &str,
        customer: &str,
        record_id: &str,
    ) -> StoreResult<Option<StoredConversation>> {
        let tx = self.db.transaction(k::CONVERSATIONS).build()?;
        let all: Vec<StoredConversation> = tx
            .object_store(k::CONVERSATIONS)?
            .index(k::CONVERSATIONS_BY_PAIR)?
            .get_all()
            .with_query(super::pair_key(org, customer))
            .serde()?
            .await?
            .collect::<Result<_, _>>()?;
        Ok(all.into_iter().find(|c| c.record_id == record_id))
    }

    /// A message by id (provider id, or client reference of an outbound message).
    pub async fn message(&self, id: &str) -> StoreResult<Option<StoredMessage>> {
        let tx = self.db.transaction(k::MESSAGES).build()?;
        let m: Option<StoredMessage> = tx.object_store(k::MESSAGES)?.get(id).serde()?.await?;
        Ok(m)
    }

    /// Everything the pane needs for `conversation_id`.
    pub async fn pane_seed(&self, conversation_id: &str) -> StoreResult<Option<PaneSeed>> {
        let tx = self
            .db
            .transaction([
                k::CONVERSATIONS,
                k::RECORDS,
                k::ORG_NUMBERS,
                k::TEAMS,
                k::SELLERS,
                k::DRAFTS,
            ])
            .build()?;
        let c: Option<StoredConversation> = tx
            .object_store(k::CONVERSATIONS)?
            .get(conversation_id)
            .serde()?
            .await?;
        let Some(conversation) = c else {
            return Ok(None);
        };
        let record: Option<StoredRecord> = tx
            .object_store(k::RECORDS)?
            .get(conversation.record_id.as_str())
            .serde()?
            .await?;
        let org_numbers = tx
            .object_store(k::ORG_NUMBERS)?
            .get_all()
            .serde()?
            .await?
            .collect::<Result<_, _>>()?;
        let teams = tx
            .object_store(k::TEAMS)?
            .get_all()
            .serde()?
            .await?
            .collect::<Result<_, _>>()?;
        let me = tx
            .object_store(k::SELLERS)?
            .get(self.ctx.seller.as_str())
            .serde()?
            .await?;
        let draft: Option<super::records::Draft> = tx
            .object_store(k::DRAFTS)?
            .get(conversation_id)
            .serde()?
            .await?;
        Ok(Some(PaneSeed {
            conversation,
            record: record.map(|r| r.record),
            org_numbers,
            teams,
            me,
            draft: draft.map(|d| d.text).unwrap_or_default(),
        }))
    }
}
