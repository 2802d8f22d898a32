//! Applying one relay event inside an open transaction: only IndexedDB is awaited.

use indexed_db_futures::prelude::*;
use indexed_db_futures::KeyRange;
use sms_core::delivery::{self, Delivery, DeliveryStatus};
use sms_core::directory::{Owner, Record};
use sms_core::moves::{self, Held, Moved};
use sms_core::pane::{Direction, MoveEntry};
use sms_core::protocol::events::*;
use sms_core::protocol::EventBody;
use sms_core::routing::RouteRule;

use super::keys::v2 as k;
use super::records::{
    new_conversation, Draft, NotificationKind, PendingReport, StoredConversation, StoredMessage,
    StoredNotification, StoredRecord,
};
use super::{conversation_range, pair_key, IdbStore, IngestOutcome, StoreResult};

/// Applies one event inside an open transaction (IndexedDB awaits only).
pub(super) struct Apply<'a> {
    pub(super) store: &'a IdbStore,
    pub(super) tx: &'a indexed_db_futures::transaction::Transaction<'a>,
    /// The seller's teams and privilege, org owners (read once per directory change).
    pub(super) cache: std::rc::Rc<super::DirectoryCache>,
}

impl<'a> Apply<'a> {
    /// The conversations between two numbers (on any record).
    async fn by_pair(&self, org: &str, customer: &str) -> StoreResult<Vec<StoredConversation>> {
        Ok(self
            .tx
            .object_store(k::CONVERSATIONS)?
            .index(k::CONVERSATIONS_BY_PAIR)?
            .get_all()
            .with_query(pair_key(org, customer))
            .serde()?
            .await?
            .collect::<Result<_, _>>()?)
    }

    /// Upserts records with their normalised phone keys.
    pub(super) fn put_records(&self, records: &[Record]) -> StoreResult<()> {
        let store = self.tx.object_store(k::RECORDS)?;
        for r in records {
            store.put(self.store.stored(r.clone())).serde()?;
        }
        Ok(())
    }

    /// Upserts a directory's rows (org numbers keyed by their normalised form).
    pub(super) fn put_directory(&self, d: &sms_core::protocol::Directory) -> StoreResult<()> {
        self.put_records(&d.records)?;
        let sellers = self.tx.object_store(k::SELLERS)?;
        for s in &d.sellers {
            sellers.put(s.clone()).serde()?;
        }
        let teams = self.tx.object_store(k::TEAMS)?;
        for t in &d.teams {
            teams.put(t.clone()).serde()?;
        }
        let orgs = self.tx.object_store(k::ORG_NUMBERS)?;
        for o in &d.org_numbers {
            let mut o = o.clone();
            o.number = self.store.key(&o.number);
            orgs.put(o).serde()?;
        }
        let templates = self.tx.object_store(k::TEMPLATES)?;
        for t in d.templates.iter().filter(|t| t.lookup(["id"]).is_some()) {
            templates.put(t.clone()).serde()?;
        }
        Ok(())
    }

    /// Applies `body`; an inbound message uses the reads already issued for it, if any.
    pub(super) async fn event(
        &self,
        body: &EventBody,
        prefetched: Option<InboundReads<'a>>,
        out: &mut IngestOutcome,
    ) -> StoreResult<()> {
        match body {
            EventBody::Inbound(InboundEvent {
                message_sid,
                from,
                to,
                body,
                media,
                at,
                record_id,
                rule,
            }) => {
                out.record_id = Some(record_id.clone());
                out.rule = Some(*rule);
                let reads = match prefetched {
                    Some(reads) => reads,
                    None => self.inbound_reads(InboundKeys {
                        message_sid,
                        org: to,
                        customer: from,
                        record_id,
                        rule: *rule,
                    })?,
                };
                let pair = reads.pair.await?;
                if reads.existing.await?.is_some() {
                    out.duplicate = true;
                    return Ok(());
                }
                let mut record = reads.record.await?.map(|r| r.record);
                if *rule == RouteRule::NewLead && record.is_none() {
                    let lead = self.create_lead(record_id, from, to, *at)?;
                    out.created_lead = Some(lead.id.clone());
                    record = Some(lead);
                }
                let mut conv = pick_conversation(pair, to, from, record_id, Some(*rule));
                let message = StoredMessage {
                    id: message_sid.clone(),
                    conversation_id: conv.id.clone(),
                    at_ms: at.as_millis() as f64,
                    direction: Direction::Inbound,
                    body: body.clone(),
                    provider_id: Some(message_sid.clone()),
                    client_ref: None,
                    delivery: None,
                    media: media.clone(),
                };
                conv.last_ms = conv.last_ms.max(message.at_ms);
                conv.preview = preview(body);
                conv.unread += 1;
                out.conversation_id = Some(conv.id.clone());
                out.notification = self.notify(
                    &conv,
                    &message,
                    record.as_ref().and_then(|r| r.owner.as_ref()),
                )?;
                self.tx.object_store(k::MESSAGES)?.put(message).serde()?;
                self.tx.object_store(k::CONVERSATIONS)?.put(conv).serde()?;
            }
            EventBody::Outbound(OutboundEvent {
                client_ref,
                message_sid,
                from,
                to,
                body,
                record_id,
                at,
                outcome,
                error_code,
                ..
            }) => {
                let conv = self.conversation(from, to, record_id, None).await?;
                let messages = self.tx.object_store(k::MESSAGES)?;
                let existing: Option<StoredMessage> =
                    messages.get(client_ref.as_str()).serde()?.await?;
                let mut early = None;
                if let Some(sid) = message_sid {
                    let pending = self.tx.object_store(k::PENDING_REPORTS)?;
                    let report: Option<PendingReport> = pending.get(sid.as_str()).serde()?.await?;
                    if let Some(r) = report {
                        early = Some(r.delivery);
                        pending.delete(sid.as_str()).build()?;
                    }
                }
                let delivery = Some(delivery::merge(
                    existing.as_ref().and_then(|m| m.delivery.clone()),
                    *outcome,
                    *error_code,
                    early.as_ref(),
                ));
                let message = StoredMessage {
                    id: client_ref.clone(),
                    conversation_id: conv.id.clone(),
                    at_ms: existing.as_ref().map_or(at.as_millis() as f64, |m| m.at_ms),
                    direction: Direction::Outbound,
                    body: body.clone(),
                    provider_id: message_sid.clone(),
                    client_ref: Some(client_ref.clone()),
                    delivery,
                    media: Vec::new(),
                };
                messages.put(message.clone()).serde()?;
                let mut conv = conv;
                conv.last_ms = conv.last_ms.max(message.at_ms);
                conv.preview = preview(body);
                out.conversation_id = Some(conv.id.clone());
                out.record_id = Some(record_id.clone());
                self.tx.object_store(k::CONVERSATIONS)?.put(conv).serde()?;
            }
            EventBody::Delivery(DeliveryEvent {
                message_sid,
                status,
                error_code,
                ..
            }) => {
                let messages = self.tx.object_store(k::MESSAGES)?;
                let found: Option<StoredMessage> = messages
                    .index(k::MESSAGES_BY_PROVIDER)?
                    .get(message_sid.as_str())
                    .serde()?
                    .await?;
                match found {
                    Some(mut m) => {
                        let d = m
                            .delivery
                            .get_or_insert_with(|| Delivery::new(DeliveryStatus::Queued));
                        if d.apply(*status, *error_code) {
                            out.conversation_id = Some(m.conversation_id.clone());
                            messages.put(m).serde()?;
                        }
                    }
                    None => {
                        // Kept until its message arrives (D2).
                        let pending = self.tx.object_store(k::PENDING_REPORTS)?;
                        let existing: Option<PendingReport> =
                            pending.get(message_sid.as_str()).serde()?.await?;
                        let mut delivery =
                            existing.map_or_else(|| Delivery::new(*status), |r| r.delivery);
                        delivery.apply(*status, *error_code);
                        pending
                            .put(PendingReport {
                                message_sid: message_sid.clone(),
                                delivery,
                            })
                            .serde()?;
                    }
                }
            }
            EventBody::LeadCreated(LeadCreatedEvent { record }) => {
                let records = self.tx.object_store(k::RECORDS)?;
                let existing: Option<StoredRecord> =
                    records.get(record.id.as_str()).serde()?.await?;
                if existing.is_none() {
                    records.put(self.store.stored(record.clone())).serde()?;
                    out.created_lead = Some(record.id.clone());
                }
                out.record_id = Some(record.id.clone());
            }
            EventBody::ConversationMoved(ConversationMovedEvent {
                org_number,
                customer_number,
                from_record,
                to_record,
                by,
                at,
            }) => {
                self.moved(
                    org_number,
                    customer_number,
                    from_record,
                    to_record,
                    by,
                    *at,
                    out,
                )
                .await?;
            }
            EventBody::ConsentChanged(ConsentChangedEvent {
                org_number,
                customer_number,
                consent,
                ..
            }) => {
                let convs = self.tx.object_store(k::CONVERSATIONS)?;
                let all: Vec<StoredConversation> =
                    self.by_pair(org_number, customer_number).await?;
                for mut c in all {
                    c.consent = *consent;
                    out.conversation_id = Some(c.id.clone());
                    convs.put(c).serde()?;
                }
            }
            EventBody::DirectoryChanged(DirectoryChangedEvent { patch }) => {
                self.put_directory(&patch.upsert)?;
                let d = &patch.delete;
                for (store, ids) in [
                    (k::RECORDS, &d.records),
                    (k::SELLERS, &d.sellers),
                    (k::TEAMS, &d.teams),
                ] {
                    let store = self.tx.object_store(store)?;
                    for id in ids {
                        store.delete(id.as_str()).build()?;
                    }
                }
                let orgs = self.tx.object_store(k::ORG_NUMBERS)?;
                for n in &d.org_numbers {
                    orgs.delete(self.store.key(n).as_str()).build()?;
                }
            }
            EventBody::DirectoryReplaced(DirectoryReplacedEvent { directory }) => {
                for store in [k::RECORDS, k::SELLERS, k::TEAMS, k::ORG_NUMBERS] {
                    self.tx.object_store(store)?.clear()?;
                }
                self.put_directory(directory)?;
            }
        }
        Ok(())
    }

    /// Creates the lead for an unknown number (R3) with the relay's rule, owned like
    /// the org number it wrote to; its id comes from the event, so every tab writes the
    /// same row.
    fn create_lead(
        &self,
        id: &str,
        phone: &str,
        org: &str,
        at: sms_core::Timestamp,
    ) -> StoreResult<Record> {
        let owner = self.cache.org_owner(&self.store.key(org)).cloned();
        let record = sms_core::lead::for_unknown_number(id, phone, owner, at);
        self.tx
            .object_store(k::RECORDS)?
            .put(self.store.stored(record.clone()))
            .serde()?;
        Ok(record)
    }

    /// The conversation of these numbers on `record_id`, created if absent.
    pub(super) async fn conversation(
        &self,
        org: &str,
        customer: &str,
        record_id: &str,
        rule: Option<RouteRule>,
    ) -> StoreResult<StoredConversation> {
        let all = self.by_pair(org, customer).await?;
        Ok(pick_conversation(all, org, customer, record_id, rule))
    }

    /// Issues the reads an inbound message needs, all before any is awaited (one
    /// round trip to the database instead of one per read).
    pub(super) fn inbound_reads(&self, e: InboundKeys<'_>) -> StoreResult<InboundReads<'a>> {
        let pair = self
            .tx
            .object_store(k::CONVERSATIONS)?
            .index(k::CONVERSATIONS_BY_PAIR)?
            .get_all()
            .with_query(pair_key(e.org, e.customer))
            .serde()?;
        // Only whether the message is stored: its key, not the row.
        let existing = self
            .tx
            .object_store(k::MESSAGES)?
            .get_key(e.message_sid)
            .with_key_type::<String>()
            .primitive()?;
        // The record is needed to create a lead, or to tell whether the seller may see
        // a message to a number that is not theirs (V1); usually it is theirs.
        let record: Read<'a, Option<StoredRecord>> =
            if e.rule == RouteRule::NewLead || !self.org_visible(e.org) {
                let record = self.tx.object_store(k::RECORDS)?.get(e.record_id).serde()?;
                Box::pin(async move { Ok(record.await?) })
            } else {
                Box::pin(async { Ok(None) })
            };
        Ok(InboundReads {
            pair: Box::pin(async move { Ok(pair.await?.collect::<Result<_, _>>()?) }),
            existing: Box::pin(async move { Ok(existing.await?) }),
            record,
        })
    }

    /// Whether the org number alone makes a conversation visible to the seller (V1).
    fn org_visible(&self, org: &str) -> bool {
        self.cache.access.can_see(self.cache.org_owner(org), None)
    }

    /// Raises the notification for a new inbound message the seller may see (N1),
    /// or the missing-privilege notice (P3); the message is kept either way.
    fn notify(
        &self,
        conv: &StoredConversation,
        m: &StoredMessage,
        record_owner: Option<&Owner>,
    ) -> StoredResult {
        let access = &self.cache.access;
        if !access.can_see(self.cache.org_owner(&conv.org_number), record_owner) {
            return Ok(None);
        }
        let kind = if access.receives() {
            NotificationKind::NewMessage
        } else {
            NotificationKind::MissingPrivilege
        };
        let n = StoredNotification {
            id: m.id.clone(),
            kind,
            conversation_id: conv.id.clone(),
            text: preview(&m.body),
            at_ms: m.at_ms,
            unread: 1,
        };
        self.tx
            .object_store(k::NOTIFICATIONS)?
            .put(n.clone())
            .serde()?;
        Ok(Some(n))
    }

    #[allow(clippy::too_many_arguments)]
    async fn moved(
        &self,
        org: &str,
        customer: &str,
        from_record: &str,
        to_record: &str,
        by: &str,
        at: sms_core::Timestamp,
        out: &mut IngestOutcome,
    ) -> StoreResult<()> {
        let convs = self.tx.object_store(k::CONVERSATIONS)?;
        let all: Vec<StoredConversation> = self.by_pair(org, customer).await?;
        let Some(mut source) = all.iter().find(|c| c.record_id == from_record).cloned() else {
            return Ok(());
        };
        let entry = MoveEntry {
            by: by.to_owned(),
            at,
            from_record: from_record.to_owned(),
            to_record: to_record.to_owned(),
        };
        let target = all.into_iter().find(|c| c.record_id == to_record);
        let drafts = self.tx.object_store(k::DRAFTS)?;
        let Some(mut target) = target else {
            let held = moves::apply(held(&mut source, false), None, entry);
            let (Moved::Reattached(h) | Moved::Merged { target: h, .. }) = held;
            source.record_id = to_record.to_owned();
            settle(&mut source, h);
            out.conversation_id = Some(source.id.clone());
            convs.put(source).serde()?;
            return Ok(());
        };
        // Merge (M2): the source's messages and notifications (the bell opens, and
        // reading the target marks, what the source held) join the target, and so
        // does an unsent draft unless the target has one. Every read goes out before
        // the first is awaited.
        let messages = self.tx.object_store(k::MESSAGES)?;
        let notes = self.tx.object_store(k::NOTIFICATIONS)?;
        let moving = messages
            .index(k::MESSAGES_BY_CONVERSATION)?
            .get_all()
            .with_query(conversation_range(&source.id, None))
            .serde()?;
        let held_notes = notes
            .index(k::NOTIFICATIONS_BY_CONVERSATION)?
            .get_all()
            .with_query(KeyRange::from(
                (source.id.clone(), 0u8)..=(source.id.clone(), 1u8),
            ))
            .serde()?;
        let theirs = drafts
            .get_key(target.id.as_str())
            .with_key_type::<String>()
            .primitive()?;
        let ours = drafts.get(source.id.as_str()).serde()?;
        for m in moving.await? {
            let mut m: StoredMessage = m?;
            m.conversation_id = target.id.clone();
            messages.put(m).serde()?;
        }
        for n in held_notes.await? {
            let mut n: StoredNotification = n?;
            n.conversation_id = target.id.clone();
            notes.put(n).serde()?;
        }
        let ours: Option<Draft> = ours.await?;
        let theirs: Option<String> = theirs.await?;
        let source_held = held(&mut source, ours.is_some());
        let target_held = held(&mut target, theirs.is_some());
        if let Moved::Merged {
            target: h,
            carry_draft,
        } = moves::apply(source_held, Some(target_held), entry)
        {
            if let (true, Some(mut d)) = (carry_draft, ours) {
                d.conversation_id = target.id.clone();
                drafts.put(d).serde()?;
            }
            settle(&mut target, h);
        }
        drafts.delete(source.id.as_str()).build()?;
        out.conversation_id = Some(target.id.clone());
        convs.put(target).serde()?;
        convs.delete(source.id.as_str()).build()?;
        Ok(())
    }
}

/// What a move needs of a stored conversation (its move list is taken, then given back
/// by [`settle`]).
fn held(c: &mut StoredConversation, draft: bool) -> Held {
    Held {
        last: sms_core::Timestamp::from_millis(c.last_ms as i64),
        unread: c.unread,
        moves: std::mem::take(&mut c.moves),
        draft,
    }
}

/// Writes a move's result back into a stored conversation.
fn settle(c: &mut StoredConversation, h: Held) {
    c.last_ms = c.last_ms.max(h.last.as_millis() as f64);
    c.unread = h.unread;
    c.moves = h.moves;
}

type StoredResult = StoreResult<Option<StoredNotification>>;

/// A read issued in a transaction, awaited later.
type Read<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<T>> + 'a>>;

/// What an inbound message's reads are keyed by.
pub(super) struct InboundKeys<'k> {
    pub(super) message_sid: &'k str,
    pub(super) org: &'k str,
    pub(super) customer: &'k str,
    pub(super) record_id: &'k str,
    pub(super) rule: RouteRule,
}

impl<'k> InboundKeys<'k> {
    /// The keys of an inbound event; `None` for other kinds.
    pub(super) fn of(body: &'k EventBody) -> Option<Self> {
        match body {
            EventBody::Inbound(e) => Some(Self {
                message_sid: &e.message_sid,
                org: &e.to,
                customer: &e.from,
                record_id: &e.record_id,
                rule: e.rule,
            }),
            _ => None,
        }
    }
}

/// The reads of an inbound message, in flight.
pub(super) struct InboundReads<'a> {
    pair: Read<'a, Vec<StoredConversation>>,
    existing: Read<'a, Option<String>>,
    record: Read<'a, Option<StoredRecord>>,
}

/// The conversation between two numbers on `record_id`, or a new one that keeps
/// the pair's consent (B2: an opt-out holds whichever record the number is on).
fn pick_conversation(
    all: Vec<StoredConversation>,
    org: &str,
    customer: &str,
    record_id: &str,
    rule: Option<RouteRule>,
) -> StoredConversation {
    let consent = all.first().map(|c| c.consent);
    if let Some(mut c) = all.into_iter().find(|c| c.record_id == record_id) {
        if rule.is_some() {
            c.rule = rule;
        }
        return c;
    }
    let mut c = new_conversation(org, customer, record_id, rule);
    c.consent = consent.unwrap_or_default();
    c
}

pub(super) fn preview(body: &str) -> String {
    let mut p: String = body.chars().take(80).collect();
    if body.chars().count() > 80 {
        p.push('…');
    }
    p
}
