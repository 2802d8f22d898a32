//! Commands: the outbox (B4), templates (B6), drafts, read marks, the routing
//! preview (B1), settings and sign-out (D4). Each runs one of the core's plans
//! through the one executor (settings hold any JavaScript value: they are kept as
//! given, outside the core's rows).

use indexed_db_futures::database::Database;
use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::TransactionMode;
use sms_core::protocol::SendAnswer;
use sms_core::routing::RouteDecision;
use sms_core::store::command::{
    MarkRead, Outbox, PutDraft, QueueSend, SendUnreachable, SettleSend, Templates, Writes,
};
use sms_core::store::query::RoutePreview;
use sms_core::store::{Key, Row, Table, Write};

use super::keys::v2 as k;
use super::records::{Draft, OutboxEntry, StoredTemplate};
use super::{IdbStore, StoreError, StoreResult};

impl IdbStore {
    /// Creates or replaces a template; its body must compile.
    pub async fn put_template(&self, t: StoredTemplate) -> StoreResult<()> {
        if let Err(e) = sms_core::template::Template::compile(&t.body) {
            return Err(StoreError {
                code: "template_syntax",
                message: format!("{} ({})", e, e.kind.code()),
            });
        }
        let put = Write::Put(Row::Template(t.to_value()));
        self.execute(&mut Writes(vec![put])).await?;
        Ok(())
    }

    /// Deletes a template.
    pub async fn delete_template(&self, id: &str) -> StoreResult<()> {
        let delete = Write::Delete(Table::Templates, Key::str(id));
        self.execute(&mut Writes(vec![delete])).await?;
        Ok(())
    }

    /// Templates, those for `kind` in `language` first, then by name (B6).
    pub async fn templates(
        &self,
        kind: Option<&str>,
        language: Option<&str>,
    ) -> StoreResult<Vec<StoredTemplate>> {
        let mut plan = Templates::new(kind.map(str::to_owned), language.map(str::to_owned));
        self.execute(&mut plan).await?;
        Ok(plan.list)
    }

    /// Stores the draft of a conversation (empty text deletes it).
    pub async fn put_draft(&self, conversation_id: &str, text: &str) -> StoreResult<()> {
        let draft = Draft {
            conversation_id: conversation_id.to_owned(),
            text: text.to_owned(),
        };
        self.execute(&mut PutDraft(draft)).await?;
        Ok(())
    }

    /// The draft of a conversation.
    pub async fn draft(&self, conversation_id: &str) -> StoreResult<String> {
        let row = self.get(Table::Drafts, conversation_id).await?;
        Ok(row.and_then(Row::draft).map(|d| d.text).unwrap_or_default())
    }

    /// Marks a conversation's messages and notifications read.
    pub async fn mark_read(&self, conversation_id: &str) -> StoreResult<()> {
        self.execute(&mut MarkRead(conversation_id)).await?;
        Ok(())
    }

    /// Where a reply from `customer` to `org` would go now, and by which rule (B1).
    pub async fn preview_route(&self, customer: &str, org: &str) -> StoreResult<RouteDecision> {
        let mut plan = RoutePreview::new(self.key(customer), self.key(org));
        self.execute(&mut plan).await?;
        plan.decision.ok_or_else(|| StoreError {
            code: "storage",
            message: "the routing preview did not finish".into(),
        })
    }

    /// A preference of the seller on this device (any structured-cloneable value).
    pub async fn setting(&self, key: &str) -> StoreResult<Option<wasm_bindgen::JsValue>> {
        let tx = self.db.transaction(k::SETTINGS).build()?;
        let row: Option<js_sys::Object> =
            tx.object_store(k::SETTINGS)?.get(key).primitive()?.await?;
        Ok(row.and_then(|r| js_sys::Reflect::get(&r, &"value".into()).ok()))
    }

    /// Stores a preference (wiped with the rest at sign-out, D4).
    pub async fn put_setting(&self, key: &str, value: &wasm_bindgen::JsValue) -> StoreResult<()> {
        let row = js_sys::Object::new();
        // Setting own properties on a fresh plain object cannot fail.
        let _ = js_sys::Reflect::set(&row, &"key".into(), &key.into());
        let _ = js_sys::Reflect::set(&row, &"value".into(), value);
        let tx = self
            .db
            .transaction(k::SETTINGS)
            .with_mode(TransactionMode::Readwrite)
            .build()?;
        tx.object_store(k::SETTINGS)?.put(row).primitive()?;
        tx.commit().await?;
        Ok(())
    }

    /// Signs out (D4): deletes the seller's database once the outbox is empty, or
    /// when the seller agreed to discard what is still queued.
    pub async fn wipe(&self, discard_outbox: bool) -> StoreResult<()> {
        let queued = self.outbox().await?.len();
        if queued > 0 && !discard_outbox {
            return Err(StoreError {
                code: "outbox_not_empty",
                message: format!("{queued} message(s) are still waiting to be sent"),
            });
        }
        let name = self.db.name();
        self.db.clone().close();
        Database::delete_by_name(&name)?.await?;
        Ok(())
    }

    /// Queues a send (B4): the outbox entry and the outbound message commit together.
    /// It is checked first with the same rule as the pane's and the relay's (consent,
    /// length, numbers, the seller's org numbers): a refusal has the relay's code.
    pub async fn queue_send(&self, entry: OutboxEntry) -> StoreResult<String> {
        let facts = self.directory_cache().await?;
        let mut plan = QueueSend::new(entry, &facts);
        self.execute(&mut plan).await?;
        plan.outcome.map_err(|r| StoreError {
            code: r.code(),
            message: r.to_string(),
        })
    }

    /// Sends still waiting, oldest first.
    pub async fn outbox(&self) -> StoreResult<Vec<OutboxEntry>> {
        let mut plan = Outbox::default();
        self.execute(&mut plan).await?;
        Ok(plan.entries)
    }

    /// Counts an attempt that could not reach the relay (the entry stays queued).
    pub async fn send_unreachable(&self, client_ref: &str) -> StoreResult<()> {
        self.execute(&mut SendUnreachable(client_ref)).await?;
        Ok(())
    }

    /// Records the relay's answer: the entry leaves the outbox, the message gets its
    /// provider id or its failure, in one transaction.
    pub async fn settle_send(&self, client_ref: &str, answer: &SendAnswer) -> StoreResult<()> {
        self.execute(&mut SettleSend::new(client_ref, answer))
            .await?;
        Ok(())
    }
}
