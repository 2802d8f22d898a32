//! Commands: the outbox (B4), templates (B6), drafts, read marks, the routing
//! preview (B1) and sign-out (D4).

use indexed_db_futures::database::Database;
use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::TransactionMode;
use indexed_db_futures::KeyRange;
use sms_core::delivery;
use sms_core::directory::Owner;
use sms_core::pane::Direction;
use sms_core::protocol::SendAnswer;

use super::apply::Apply;
use super::keys::v2 as k;
use super::records::{
    Draft, OutboxEntry, PendingReport, StoredConversation, StoredMessage, StoredNotification,
    StoredRecord, StoredTemplate,
};
use super::{pair_key, IdbStore, StoreError, StoreResult};
use sms_core::store::rows::preview;

impl IdbStore {
    /// Creates or replaces a template; its body must compile.
    pub async fn put_template(&self, t: StoredTemplate) -> StoreResult<()> {
        if let Err(e) = sms_core::template::Template::compile(&t.body) {
            return Err(StoreError {
                code: "template_syntax",
                message: format!("{} ({})", e, e.kind.code()),
            });
        }
        let tx = self
            .db
            .transaction(k::TEMPLATES)
            .with_mode(TransactionMode::Readwrite)
            .build()?;
        tx.object_store(k::TEMPLATES)?.put(t).serde()?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a template.
    pub async fn delete_template(&self, id: &str) -> StoreResult<()> {
        let tx = self
            .db
            .transaction(k::TEMPLATES)
            .with_mode(TransactionMode::Readwrite)
            .build()?;
        tx.object_store(k::TEMPLATES)?.delete(id).build()?;
        tx.commit().await?;
        Ok(())
    }

    /// Templates, those for `kind` in `language` first, then by name (B6).
    pub async fn templates(
        &self,
        kind: Option<&str>,
        language: Option<&str>,
    ) -> StoreResult<Vec<StoredTemplate>> {
        let tx = self.db.transaction(k::TEMPLATES).build()?;
        let values: Vec<sms_core::value::Value> = tx
            .object_store(k::TEMPLATES)?
            .get_all()
            .serde()?
            .await?
            .collect::<Result<_, _>>()?;
        let text = |v: &sms_core::value::Value, f: &str| match v.lookup([f]) {
            Some(sms_core::value::Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let mut all: Vec<StoredTemplate> = values
            .iter()
            .map(|v| StoredTemplate {
                id: text(v, "id"),
                name: text(v, "name"),
                category: text(v, "category"),
                language: text(v, "language"),
                body: text(v, "body"),
            })
            .collect();
        let rank = |t: &StoredTemplate| {
            (
                kind.is_some_and(|k| t.category != k),
                language.is_some_and(|l| t.language != l),
            )
        };
        all.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.name.cmp(&b.name)));
        Ok(all)
    }

    /// Stores the draft of a conversation (empty text deletes it).
    pub async fn put_draft(&self, conversation_id: &str, text: &str) -> StoreResult<()> {
        let tx = self
            .db
            .transaction(k::DRAFTS)
            .with_mode(TransactionMode::Readwrite)
            .build()?;
        let drafts = tx.object_store(k::DRAFTS)?;
        if text.is_empty() {
            drafts.delete(conversation_id).build()?;
        } else {
            drafts
                .put(Draft {
                    conversation_id: conversation_id.to_owned(),
                    text: text.to_owned(),
                })
                .serde()?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The draft of a conversation.
    pub async fn draft(&self, conversation_id: &str) -> StoreResult<String> {
        let tx = self.db.transaction(k::DRAFTS).build()?;
        let d: Option<Draft> = tx
            .object_store(k::DRAFTS)?
            .get(conversation_id)
            .serde()?
            .await?;
        Ok(d.map(|d| d.text).unwrap_or_default())
    }

    /// Marks a conversation's messages and notifications read.
    pub async fn mark_read(&self, conversation_id: &str) -> StoreResult<()> {
        let tx = self
            .db
            .transaction([k::CONVERSATIONS, k::NOTIFICATIONS])
            .with_mode(TransactionMode::Readwrite)
            .build()?;
        let convs = tx.object_store(k::CONVERSATIONS)?;
        let c = convs.get(conversation_id).serde()?;
        let unread = tx
            .object_store(k::NOTIFICATIONS)?
            .index(k::NOTIFICATIONS_BY_CONVERSATION)?
            .get_all()
            .with_query(KeyRange::Only((conversation_id.to_owned(), 1u8)))
            .serde()?;
        let c: Option<StoredConversation> = c.await?;
        if let Some(mut c) = c.filter(|c| c.unread > 0) {
            c.unread = 0;
            convs.put(c).serde()?;
        }
        let notes = tx.object_store(k::NOTIFICATIONS)?;
        for n in unread.await? {
            let mut n: StoredNotification = n?;
            n.unread = 0;
            notes.put(n).serde()?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Where a reply from `customer` to `org` would go now, and by which rule (B1):
    /// the core's routing over the records carrying the number and those holding a
    /// conversation between the two numbers.
    pub async fn preview_route(
        &self,
        customer: &str,
        org: &str,
    ) -> StoreResult<sms_core::routing::RouteDecision> {
        use sms_core::directory::Record;
        use sms_core::routing::{candidates, decide, OrgContext};
        let (from, to) = (self.key(customer), self.key(org));
        let tx = self
            .db
            .transaction([k::RECORDS, k::CONVERSATIONS, k::ORG_NUMBERS, k::TEAMS])
            .build()?;
        let records = tx.object_store(k::RECORDS)?;
        let mut found: Vec<StoredRecord> = records
            .index(k::RECORDS_BY_PHONE)?
            .get_all()
            .with_query(from.clone())
            .serde()?
            .await?
            .collect::<Result<_, _>>()?;
        let convs: Vec<StoredConversation> = tx
            .object_store(k::CONVERSATIONS)?
            .index(k::CONVERSATIONS_BY_PAIR)?
            .get_all()
            .with_query(pair_key(&to, &from))
            .serde()?
            .await?
            .collect::<Result<_, _>>()?;
        for c in &convs {
            if !found.iter().any(|r| r.record.id == c.record_id) {
                let r: Option<StoredRecord> = records.get(c.record_id.as_str()).serde()?.await?;
                found.extend(r);
            }
        }
        let org_row: Option<sms_core::directory::OrgNumber> = tx
            .object_store(k::ORG_NUMBERS)?
            .get(to.as_str())
            .serde()?
            .await?;
        let owner = org_row.map(|o| o.owner);
        let members = match &owner {
            Some(Owner::Team(t)) => {
                let team: Option<sms_core::directory::Team> =
                    tx.object_store(k::TEAMS)?.get(t.as_str()).serde()?.await?;
                team.map(|t| t.members).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let holding: Vec<(&Record, sms_core::Timestamp)> = convs
            .iter()
            .filter_map(|c| {
                let r = found.iter().find(|r| r.record.id == c.record_id)?;
                Some((
                    &r.record,
                    sms_core::Timestamp::from_millis(c.last_ms as i64),
                ))
            })
            .collect();
        let with_number: Vec<&Record> = found
            .iter()
            .filter(|r| r.phone_keys.contains(&from))
            .map(|r| &r.record)
            .collect();
        let candidates = candidates(&with_number, &holding);
        Ok(decide(
            &from,
            OrgContext {
                owner: owner.as_ref(),
                team_members: &members,
            },
            &candidates,
        ))
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
}

impl IdbStore {
    /// Queues a send (B4): the outbox entry and the outbound message commit together.
    /// It is checked first with the same rule as the pane's and the relay's (consent,
    /// length, numbers, the seller's org numbers): a refusal has the relay's code.
    pub async fn queue_send(&self, mut entry: OutboxEntry) -> StoreResult<String> {
        let cache = self.directory_cache().await?;
        let refused = |r: sms_core::send::SendRefusal| StoreError {
            code: r.code(),
            message: r.to_string(),
        };
        let r = &mut entry.request;
        sms_core::send::check_client_ref(&r.client_ref).map_err(refused)?;
        let record_id = r
            .record_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or(sms_core::send::SendRefusal::NoRecord)
            .map_err(refused)?;
        r.from = self.key(&r.from);
        let tx = self
            .db
            .transaction([k::OUTBOX, k::MESSAGES, k::CONVERSATIONS])
            .with_mode(TransactionMode::Readwrite)
            .build()?;
        let apply = Apply {
            store: self,
            tx: &tx,
        };
        let mut conv = apply
            .conversation(&r.from, &self.key(&r.to), &record_id, None)
            .await?;
        let to = sms_core::send::check(&sms_core::send::Outgoing {
            body: &r.body,
            from: &r.from,
            to: &r.to,
            may_send_from: cache.access.may_send_from(cache.org_owner(&r.from)),
            consent: conv.consent,
            region: self.ctx.default_region.as_deref(),
        })
        .map_err(refused)?;
        r.to = to.into();
        let entry = entry;
        let messages = tx.object_store(k::MESSAGES)?;
        let existing: Option<StoredMessage> = messages
            .get(entry.request.client_ref.as_str())
            .serde()?
            .await?;
        if existing.is_none() {
            messages
                .put(StoredMessage {
                    id: entry.request.client_ref.clone(),
                    conversation_id: conv.id.clone(),
                    at_ms: entry.queued_ms,
                    direction: Direction::Outbound,
                    body: entry.request.body.clone(),
                    provider_id: None,
                    client_ref: Some(entry.request.client_ref.clone()),
                    delivery: None,
                    media: Vec::new(),
                })
                .serde()?;
            tx.object_store(k::OUTBOX)?.put(entry.clone()).serde()?;
            conv.last_ms = conv.last_ms.max(entry.queued_ms);
            conv.preview = preview(&entry.request.body);
            tx.object_store(k::CONVERSATIONS)?
                .put(conv.clone())
                .serde()?;
        }
        tx.commit().await?;
        Ok(conv.id)
    }

    /// Sends still waiting, oldest first.
    pub async fn outbox(&self) -> StoreResult<Vec<OutboxEntry>> {
        let tx = self.db.transaction(k::OUTBOX).build()?;
        let mut all: Vec<OutboxEntry> = tx
            .object_store(k::OUTBOX)?
            .get_all()
            .serde()?
            .await?
            .collect::<Result<_, _>>()?;
        all.sort_by(|a, b| a.queued_ms.total_cmp(&b.queued_ms));
        Ok(all)
    }

    /// Counts an attempt that could not reach the relay (the entry stays queued).
    pub async fn send_unreachable(&self, client_ref: &str) -> StoreResult<()> {
        let tx = self
            .db
            .transaction(k::OUTBOX)
            .with_mode(TransactionMode::Readwrite)
            .build()?;
        let outbox = tx.object_store(k::OUTBOX)?;
        let entry: Option<OutboxEntry> = outbox.get(client_ref).serde()?.await?;
        if let Some(mut e) = entry {
            e.attempts += 1;
            outbox.put(e).serde()?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records the relay's answer: the entry leaves the outbox, the message gets its
    /// provider id or its failure, in one transaction.
    pub async fn settle_send(&self, client_ref: &str, answer: &SendAnswer) -> StoreResult<()> {
        let tx = self
            .db
            .transaction([k::OUTBOX, k::MESSAGES, k::PENDING_REPORTS])
            .with_mode(TransactionMode::Readwrite)
            .build()?;
        tx.object_store(k::OUTBOX)?.delete(client_ref).build()?;
        let messages = tx.object_store(k::MESSAGES)?;
        let found: Option<StoredMessage> = messages.get(client_ref).serde()?.await?;
        if let Some(mut m) = found {
            let mut early = None;
            if let Some(sid) = &answer.message_sid {
                let pending = tx.object_store(k::PENDING_REPORTS)?;
                let report: Option<PendingReport> = pending.get(sid.as_str()).serde()?.await?;
                if let Some(r) = report {
                    early = Some(r.delivery);
                    pending.delete(sid.as_str()).build()?;
                }
            }
            m.delivery = Some(delivery::merge(
                m.delivery.take(),
                answer.outcome,
                answer.error_code,
                early.as_ref(),
            ));
            if m.provider_id.is_none() {
                m.provider_id = answer.message_sid.clone();
            }
            messages.put(m).serde()?;
        }
        tx.commit().await?;
        Ok(())
    }
}
