//! Reads: "My text messages", history pages, notifications, record lookup, the pane's
//! seed, exports. Each runs one of the core's plans through the one executor.

use sms_core::directory::Record;
use sms_core::store::inbox::InboxPlan;
use sms_core::store::query::{
    Export, FindConversation, History, Lookup, QueryError, RecordConversations, Related, Seed,
    SeedFrom,
};
use sms_core::store::{Row, Table};

pub use sms_core::store::query::{ConversationExport, ConversationSummary, HistoryPage, PaneSeed};

use super::records::{StoredConversation, StoredMessage, StoredNotification};
use super::{IdbStore, StoreError, StoreResult};

fn refused(e: QueryError) -> StoreError {
    StoreError {
        code: e.code(),
        message: e.to_string(),
    }
}

impl IdbStore {
    /// "My text messages": conversations the seller may see, newest first (O1, V1).
    pub async fn conversations(&self) -> StoreResult<Vec<ConversationSummary>> {
        Ok(self.inbox().await?.0)
    }

    /// The grid and the bell together (O1, N1): one read-only transaction, two rounds
    /// (conversations and notifications, then the records the visible rows name).
    pub async fn inbox(&self) -> StoreResult<(Vec<ConversationSummary>, Vec<StoredNotification>)> {
        let facts = self.directory_cache().await?;
        let mut plan = InboxPlan::new(&facts);
        self.execute(&mut plan).await?;
        let conversations = plan
            .inbox
            .conversations
            .into_iter()
            .map(|(conversation, record_name)| ConversationSummary {
                conversation,
                record_name,
            })
            .collect();
        Ok((conversations, plan.inbox.notifications))
    }

    /// A page of history, newest `limit` messages older than `before_ms`, returned
    /// oldest to newest (never the whole history).
    pub async fn history(
        &self,
        conversation_id: &str,
        before_ms: Option<f64>,
        limit: usize,
    ) -> StoreResult<HistoryPage> {
        let mut plan = History::new(conversation_id, before_ms, limit as u32);
        self.execute(&mut plan).await?;
        Ok(plan.page)
    }

    /// A page of history at or before `at_ms`: the newest `limit` messages, oldest first
    /// (an older page for the pane, which may show some of those at `at_ms` already).
    pub async fn history_through(
        &self,
        conversation_id: &str,
        at_ms: f64,
        limit: usize,
    ) -> StoreResult<HistoryPage> {
        let mut plan = History::through(conversation_id, at_ms, limit as u32);
        self.execute(&mut plan).await?;
        Ok(plan.page)
    }

    /// Notifications, newest first.
    pub async fn notifications(&self) -> StoreResult<Vec<StoredNotification>> {
        Ok(self.inbox().await?.1)
    }

    /// Finds records by name or phone across all kinds (M1).
    pub async fn lookup(&self, query: &str, limit: usize) -> StoreResult<Vec<Record>> {
        let mut plan = Lookup::new(query, limit);
        self.execute(&mut plan).await?;
        Ok(plan.found)
    }

    /// A conversation by id.
    pub async fn conversation(&self, id: &str) -> StoreResult<Option<StoredConversation>> {
        Ok(self
            .get(Table::Conversations, id)
            .await?
            .and_then(Row::conversation))
    }

    /// A whole conversation for export: its record and every message, oldest first,
    /// read in one transaction. Refused with `not_visible` when the seller may not see it (V2).
    pub async fn export(&self, conversation_id: &str) -> StoreResult<Option<ConversationExport>> {
        let facts = self.directory_cache().await?;
        let mut plan = Export::new(conversation_id, &facts);
        self.execute(&mut plan).await?;
        plan.export.map_err(refused)
    }

    /// The conversation between two numbers attached to `record_id`, if any.
    pub async fn find_conversation(
        &self,
        org: &str,
        customer: &str,
        record_id: &str,
    ) -> StoreResult<Option<StoredConversation>> {
        let mut plan = FindConversation::new(org, customer, record_id);
        self.execute(&mut plan).await?;
        Ok(plan.found)
    }

    /// A message by id (provider id, or client reference of an outbound message).
    pub async fn message(&self, id: &str) -> StoreResult<Option<StoredMessage>> {
        Ok(self.get(Table::Messages, id).await?.and_then(Row::message))
    }

    /// Everything the pane needs for `conversation_id`, with its latest `page` messages.
    pub async fn pane_seed(
        &self,
        conversation_id: &str,
        page: usize,
    ) -> StoreResult<Option<PaneSeed>> {
        self.seed(SeedFrom::Conversation(conversation_id.to_owned()), page)
            .await
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
        let from = SeedFrom::Record {
            record_id: record_id.to_owned(),
            customer: customer.map(str::to_owned),
        };
        self.seed(from, page).await
    }

    async fn seed(&self, from: SeedFrom, page: usize) -> StoreResult<Option<PaneSeed>> {
        // Read before the seed's transaction: awaiting another one inside would end it.
        let facts = self.directory_cache().await?;
        let mut plan = Seed::new(from, page as u32, &self.ctx.seller, &facts);
        self.execute(&mut plan).await?;
        plan.seed.map_err(refused)
    }

    /// Records linked to `record_id` either way (C2), for the record pages.
    pub async fn related(&self, record_id: &str) -> StoreResult<Vec<Record>> {
        let mut plan = Related::new(record_id);
        self.execute(&mut plan).await?;
        Ok(plan.related)
    }

    /// Conversations of a record the seller may see, newest first; for a contact,
    /// also those of its opportunities (C2, V2).
    pub async fn record_conversations(
        &self,
        record_id: &str,
    ) -> StoreResult<Vec<ConversationSummary>> {
        let facts = self.directory_cache().await?;
        let mut plan = RecordConversations::new(record_id, &facts);
        self.execute(&mut plan).await?;
        Ok(plan.conversations)
    }
}
