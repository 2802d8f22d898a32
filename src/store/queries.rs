//! Reads: "My text messages", history pages, notifications, record lookup.

use indexed_db_futures::cursor::CursorDirection;
use indexed_db_futures::object_store::ObjectStore;
use indexed_db_futures::prelude::*;
use indexed_db_futures::KeyRange;
use serde::Serialize;
use sms_core::directory::{Record, RecordKind};
use sms_core::phone::normalize;

use super::keys::v2 as k;
use super::records::new_conversation;
use super::records::{StoredConversation, StoredMessage, StoredNotification, StoredRecord};
use super::{IdbStore, StoreError, StoreResult};

impl IdbStore {
    /// "My text messages": conversations the seller may see, newest first (O1, V1).
    pub async fn conversations(&self) -> StoreResult<Vec<ConversationSummary>> {
        Ok(self.inbox().await?.0)
    }

    /// The grid and the bell together (O1, N1): one read-only transaction, two rounds
    /// (conversations and notifications, then the records the visible rows name).
    pub async fn inbox(&self) -> StoreResult<(Vec<ConversationSummary>, Vec<StoredNotification>)> {
        use sms_core::store::inbox;
        let facts = self.directory_cache().await?;
        let tx = self
            .db
            .transaction([k::CONVERSATIONS, k::NOTIFICATIONS, k::RECORDS])
            .build()?;
        let got = super::exec::read_all(&tx, &inbox::reads()).await?;
        let (found, reads) = inbox::records(got);
        let records = super::exec::read_all(&tx, &reads).await?;
        let inbox = inbox::decide(found, records, &facts);
        let conversations = inbox
            .conversations
            .into_iter()
            .map(|(conversation, record_name)| ConversationSummary {
                conversation,
                record_name,
            })
            .collect();
        Ok((conversations, inbox.notifications))
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
        history_in(
            &tx.object_store(k::MESSAGES)?,
            conversation_id,
            before_ms,
            limit,
        )
        .await
    }

    /// Notifications, newest first.
    pub async fn notifications(&self) -> StoreResult<Vec<StoredNotification>> {
        Ok(self.inbox().await?.1)
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

/// A conversation as exported: everything stored about it.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationExport {
    /// The conversation (numbers, rule, moves, consent).
    pub conversation: StoredConversation,
    /// Its record, when the directory has it.
    pub record: Option<Record>,
    /// Every message, oldest first, with delivery status.
    pub messages: Vec<StoredMessage>,
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
    /// The conversation (not stored yet when opened from a record with no history).
    pub conversation: StoredConversation,
    /// Its record, when the directory has it.
    pub record: Option<Record>,
    /// Records related to it (C2): a contact's opportunities, an opportunity's contact.
    pub related: Vec<Record>,
    /// Every org number with its owner.
    pub org_numbers: Vec<sms_core::directory::OrgNumber>,
    /// Every team.
    pub teams: Vec<sms_core::directory::Team>,
    /// The seller's profile.
    pub me: Option<sms_core::protocol::Seller>,
    /// The conversation's draft.
    pub draft: String,
    /// The latest history page, read with the rest (the pane asks for it first).
    pub first_page: HistoryPage,
    /// Client references still in the outbox (shown as queued, B4).
    pub queued: Vec<String>,
}

impl IdbStore {
    /// A conversation by id.
    pub async fn conversation(&self, id: &str) -> StoreResult<Option<StoredConversation>> {
        let tx = self.db.transaction(k::CONVERSATIONS).build()?;
        let c: Option<StoredConversation> =
            tx.object_store(k::CONVERSATIONS)?.get(id).serde()?.await?;
        Ok(c)
    }

    /// A whole conversation for export: its record and every message, oldest first,
    /// read in one transaction. Refused with `not_visible` when the seller may not see it (V2).
    pub async fn export(&self, conversation_id: &str) -> StoreResult<Option<ConversationExport>> {
        let cache = self.directory_cache().await?;
        let tx = self
            .db
            .transaction([k::CONVERSATIONS, k::RECORDS, k::MESSAGES])
            .build()?;
        let c: Option<StoredConversation> = tx
            .object_store(k::CONVERSATIONS)?
            .get(conversation_id)
            .serde()?
            .await?;
        let Some(conversation) = c else {
            return Ok(None);
        };
        let record = tx
            .object_store(k::RECORDS)?
            .get(conversation.record_id.as_str())
            .serde()?;
        let messages = tx
            .object_store(k::MESSAGES)?
            .index(k::MESSAGES_BY_CONVERSATION)?
            .get_all()
            .with_query(super::conversation_range(conversation_id, None))
            .serde()?;
        let record: Option<StoredRecord> = record.await?;
        let record = record.map(|r| r.record);
        let org_owner = cache.org_owner(&conversation.org_number);
        if !cache
            .access
            .can_see(org_owner, record.as_ref().and_then(|r| r.owner.as_ref()))
        {
            return Err(StoreError {
                code: "not_visible",
                message: sms_core::visibility::Hidden.to_string(),
            });
        }
        Ok(Some(ConversationExport {
            messages: messages.await?.collect::<Result<_, _>>()?,
            record,
            conversation,
        }))
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

    /// Everything the pane needs for `conversation_id`, with its latest `page` messages.
    pub async fn pane_seed(
        &self,
        conversation_id: &str,
        page: usize,
    ) -> StoreResult<Option<PaneSeed>> {
        let tx = self.db.transaction(SEED_STORES).build()?;
        let c: Option<StoredConversation> = tx
            .object_store(k::CONVERSATIONS)?
            .get(conversation_id)
            .serde()?
            .await?;
        match c {
            Some(conversation) => self.seed_in(&tx, conversation, page).await.map(Some),
            None => Ok(None),
        }
    }

    /// The pane for `record_id` and one of its numbers (O2, C2): its latest
    /// conversation with `customer` (the record's first phone when `None`), or a
    /// new one from the seller's own org number when there is none yet.
    pub async fn record_seed(
        &self,
        record_id: &str,
        customer: Option<&str>,
        page: usize,
    ) -> StoreResult<Option<PaneSeed>> {
        // Read before the transaction: awaiting another one inside would end it.
        let cache = self.directory_cache().await?;
        let tx = self.db.transaction(SEED_STORES).build()?;
        let stored: Option<StoredRecord> =
            tx.object_store(k::RECORDS)?.get(record_id).serde()?.await?;
        let Some(record) = stored.map(|r| r.record) else {
            return Ok(None);
        };
        let region = self.ctx.default_region.as_deref();
        let e164 = |raw: &str| normalize(raw, region).map(|n| n.as_str().to_owned());
        let customer = match customer.or(record.phones.first().map(String::as_str)) {
            Some(raw) => e164(raw).map_err(|e| StoreError {
                code: "invalid_number",
                message: e.reason().to_owned(),
            })?,
            None => {
                return Err(StoreError {
                    code: "no_phone",
                    message: format!("{} has no phone number", record.name),
                })
            }
        };
        let mut convs: Vec<StoredConversation> = tx
            .object_store(k::CONVERSATIONS)?
            .index(k::CONVERSATIONS_BY_RECORD)?
            .get_all()
            .with_query(record_id)
            .serde()?
            .await?
            .collect::<Result<_, _>>()?;
        convs.retain(|c| c.customer_number == customer);
        let latest = convs
            .into_iter()
            .max_by(|a, b| a.last_ms.total_cmp(&b.last_ms));
        let conversation = match latest {
            Some(c) => c,
            None => {
                let org = own_org_number(&cache).ok_or_else(|| StoreError {
                    code: "no_org_number",
                    message: "no org number is allotted to you or your teams".into(),
                })?;
                new_conversation(&org, &customer, record_id, None)
            }
        };
        self.seed_in(&tx, conversation, page).await.map(Some)
    }

    /// Reads the rest of a pane seed; every request is issued before the first await.
    async fn seed_in(
        &self,
        tx: &indexed_db_futures::transaction::Transaction<'_>,
        conversation: StoredConversation,
        page: usize,
    ) -> StoreResult<PaneSeed> {
        let records = tx.object_store(k::RECORDS)?;
        let record = records.get(conversation.record_id.as_str()).serde()?;
        let org_numbers = tx.object_store(k::ORG_NUMBERS)?.get_all().serde()?;
        let teams = tx.object_store(k::TEAMS)?.get_all().serde()?;
        let me = tx
            .object_store(k::SELLERS)?
            .get(self.ctx.seller.as_str())
            .serde()?;
        let drafts = tx.object_store(k::DRAFTS)?;
        let draft = drafts.get(conversation.id.as_str()).serde()?;
        let queued = tx.object_store(k::OUTBOX)?.get_all_keys().serde()?;
        // Requests go out when built; the page's go out as it runs, behind them.
        let messages = tx.object_store(k::MESSAGES)?;
        let first_page = history_in(&messages, &conversation.id, None, page).await?;
        let record: Option<StoredRecord> = record.await?;
        let record = record.map(|r| r.record);
        let related = match &record {
            Some(r) if matches!(r.kind, RecordKind::Contact | RecordKind::Opportunity) => {
                related_in(&records, r).await?
            }
            _ => Vec::new(),
        };
        let draft: Option<super::records::Draft> = draft.await?;
        Ok(PaneSeed {
            record,
            related,
            org_numbers: org_numbers.await?.collect::<Result<_, _>>()?,
            teams: teams.await?.collect::<Result<_, _>>()?,
            me: me.await?,
            draft: draft.map(|d| d.text).unwrap_or_default(),
            queued: queued.await?.collect::<Result<_, _>>()?,
            first_page,
            conversation,
        })
    }

    /// Records linked to `record_id` either way (C2), for the record pages.
    pub async fn related(&self, record_id: &str) -> StoreResult<Vec<Record>> {
        let tx = self.db.transaction(k::RECORDS).build()?;
        let records = tx.object_store(k::RECORDS)?;
        let record: Option<StoredRecord> = records.get(record_id).serde()?.await?;
        match record {
            Some(r) => related_in(&records, &r.record).await,
            None => Ok(Vec::new()),
        }
    }

    /// Conversations of a record the seller may see, newest first; for a contact,
    /// also those of its opportunities (C2, V2).
    pub async fn record_conversations(
        &self,
        record_id: &str,
    ) -> StoreResult<Vec<ConversationSummary>> {
        let cache = self.directory_cache().await?;
        let tx = self
            .db
            .transaction([k::CONVERSATIONS, k::RECORDS])
            .build()?;
        let records = tx.object_store(k::RECORDS)?;
        let stored: Option<StoredRecord> = records.get(record_id).serde()?.await?;
        let Some(record) = stored.map(|r| r.record) else {
            return Ok(Vec::new());
        };
        let mut owners = vec![record.clone()];
        if record.kind == RecordKind::Contact {
            owners.extend(
                related_in(&records, &record)
                    .await?
                    .into_iter()
                    .filter(|r| r.kind == RecordKind::Opportunity),
            );
        }
        let conversations = tx.object_store(k::CONVERSATIONS)?;
        let by_record = conversations.index(k::CONVERSATIONS_BY_RECORD)?;
        let mut out = Vec::new();
        for r in owners {
            let convs = by_record
                .get_all()
                .with_query(r.id.as_str())
                .serde()?
                .await?;
            for c in convs {
                let c: StoredConversation = c?;
                if cache
                    .access
                    .can_see(cache.org_owner(&c.org_number), r.owner.as_ref())
                {
                    out.push(ConversationSummary {
                        record_name: r.name.clone(),
                        conversation: c,
                    });
                }
            }
        }
        out.sort_by(|a, b| b.conversation.last_ms.total_cmp(&a.conversation.last_ms));
        Ok(out)
    }
}

/// Stores a pane seed reads.
const SEED_STORES: [&str; 8] = [
    k::CONVERSATIONS,
    k::RECORDS,
    k::ORG_NUMBERS,
    k::TEAMS,
    k::SELLERS,
    k::DRAFTS,
    k::OUTBOX,
    k::MESSAGES,
];

/// The org number the seller sends from by default (C4): their own first, then a
/// team's, each the first in number order (the store's key order).
fn own_org_number(cache: &super::DirectoryCache) -> Option<String> {
    cache
        .access
        .default_from(&cache.org_numbers)
        .map(str::to_owned)
}

/// Records linked to `record` in either direction, without itself or repeats.
async fn related_in(records: &ObjectStore<'_>, record: &Record) -> StoreResult<Vec<Record>> {
    let pointing_here = records
        .index(k::RECORDS_BY_RELATED)?
        .get_all()
        .with_query(record.id.as_str())
        .serde()?;
    let mut named = Vec::with_capacity(record.related.len());
    for id in &record.related {
        named.push(records.get(id.as_str()).serde()?);
    }
    let mut out: Vec<Record> = Vec::new();
    for r in named {
        let r: Option<StoredRecord> = r.await?;
        out.extend(r.map(|r| r.record));
    }
    for r in pointing_here.await? {
        let r: StoredRecord = r?;
        out.push(r.record);
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|r| r.id != record.id && seen.insert(r.id.clone()));
    Ok(out)
}

/// A history page read inside the caller's transaction: a reverse cursor, one
/// jump to the page's lower edge, one `getAll` — three requests whatever the page
/// size or the history length.
async fn history_in(
    messages: &ObjectStore<'_>,
    conversation_id: &str,
    before_ms: Option<f64>,
    limit: usize,
) -> StoreResult<HistoryPage> {
    let index = messages.index(k::MESSAGES_BY_CONVERSATION)?;
    let upper = (conversation_id.to_owned(), before_ms.unwrap_or(f64::MAX));
    let lower = (conversation_id.to_owned(), f64::MIN);
    let mut lower_key = lower.clone();
    let mut has_more = false;
    let range = KeyRange::Bound(lower, false, upper.clone(), true);
    // The page starts after the message `limit` steps back from the newest: a
    // reverse cursor jumps there (no count, which walks the whole range).
    let cursor = index
        .open_cursor()
        .with_query(range)
        .with_direction(CursorDirection::Prev)
        .serde()?
        .await?;
    if let Some(mut cursor) = cursor {
        let newest: Option<String> = cursor.primary_key()?;
        cursor.advance_by(limit as u32).await?;
        // A cursor run past the end keeps its last position: it moved only if its
        // primary key (unique, unlike the index key) changed.
        if cursor.primary_key::<String>()? != newest {
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
