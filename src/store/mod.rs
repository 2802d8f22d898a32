//! The browser store: the pure core run against IndexedDB (the only code that
//! names IndexedDB). One readwrite transaction per logical change: an event, its
//! routing decision, a created lead and its notification commit together or not
//! at all, along with the position of the last applied relay event (D1).
//!
//! See <https://developer.mozilla.org/en-US/docs/Web/API/IndexedDB_API>.

pub(crate) mod keys;
pub mod records;

use indexed_db_futures::cursor::CursorDirection;
use indexed_db_futures::database::Database;
use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::TransactionMode;
use indexed_db_futures::KeyRange;
use serde::Serialize;
use sms_core::delivery::{Delivery, DeliveryStatus};
use sms_core::directory::{teams_of, Owner, Record, RecordKind};
use sms_core::pane::{Direction, MoveEntry};
use sms_core::phone::match_key;
use sms_core::protocol::{Directory, EventBody, LoggedEvent, SendOutcome};
use sms_core::routing::RouteRule;
use sms_core::visibility::{visibility, Viewer};

use keys::v1 as k;
use records::{
    NotificationKind, OutboxEntry, PendingReport, Position, StoredConversation, StoredMessage,
    StoredNotification, StoredRecord,
};

/// A storage failure, flattened into owned data at one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct StoreError {
    /// Stable snake_case code (`db_blocked`, `quota_exceeded`, `storage`, ...).
    pub code: &'static str,
    /// What happened.
    pub message: String,
}

impl From<indexed_db_futures::error::Error> for StoreError {
    /// Flattens the error into owned data without formatting it through `Display`
    /// (which would pull number formatting into the module).
    fn from(e: indexed_db_futures::error::Error) -> Self {
        use indexed_db_futures::error::{DomException as D, Error as E};
        let (code, message) = match &e {
            E::DomException(d) => {
                let raw = match d {
                    D::InvalidStateError(x)
                    | D::TransactionInactiveError(x)
                    | D::NotFoundError(x)
                    | D::ConstraintError(x)
                    | D::InvalidAccessError(x)
                    | D::DataError(x)
                    | D::AbortError(x)
                    | D::ReadOnlyError(x)
                    | D::DataCloneError(x)
                    | D::SyntaxError(x)
                    | D::Other(x) => x,
                };
                let code = match raw.name().as_str() {
                    "ConstraintError" => "constraint",
                    "AbortError" => "aborted",
                    "QuotaExceededError" => "quota_exceeded",
                    "TransactionInactiveError" => "transaction_inactive",
                    "VersionError" => "version",
                    "InvalidStateError" => "db_closed",
                    _ => "storage",
                };
                (code, format!("{}: {}", raw.name(), raw.message()))
            }
            E::Serialisation(_) => (
                "serialisation",
                "a stored value has an unexpected shape".to_owned(),
            ),
            E::MissingData(_) => ("storage", "IndexedDB returned no data".to_owned()),
            E::Unknown(_) => ("storage", "unknown IndexedDB error".to_owned()),
        };
        Self { code, message }
    }
}

impl From<indexed_db_futures::error::OpenDbError> for StoreError {
    fn from(e: indexed_db_futures::error::OpenDbError) -> Self {
        match e {
            indexed_db_futures::error::OpenDbError::Base(b) => b.into(),
            other => Self {
                code: "db_unavailable",
                message: other.to_string(),
            },
        }
    }
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// What applying one relay event did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestOutcome {
    /// The event was applied before (or is older than the position): nothing changed.
    pub duplicate: bool,
    /// The relay's epoch changed: the caller must resynchronise (S4).
    pub resync: bool,
    /// The event's kind.
    pub kind: String,
    /// The record the message was attached to.
    pub record_id: Option<String>,
    /// The routing rule that attached it.
    pub rule: Option<RouteRule>,
    /// A lead created for an unknown number.
    pub created_lead: Option<String>,
    /// The conversation touched.
    pub conversation_id: Option<String>,
    /// A notification raised (N1/P3).
    pub notification: Option<StoredNotification>,
}

/// The signed-in seller, as the store needs them (V1, P3).
#[derive(Debug, Clone)]
pub struct SellerContext {
    /// Seller id.
    pub seller: String,
    /// Region for reading national numbers.
    pub default_region: Option<String>,
}

/// The IndexedDB store.
pub struct IdbStore {
    db: Database,
    ctx: SellerContext,
}

/// The compound key `[org_number, customer_number]`.
fn pair_key(org: &str, customer: &str) -> KeyRange<(String, String)> {
    KeyRange::Only((org.to_owned(), customer.to_owned()))
}

/// Messages of one conversation older than `before_ms` (all when `None`).
fn conversation_range(conversation_id: &str, before_ms: Option<f64>) -> KeyRange<(String, f64)> {
    let key = |ms: f64| (conversation_id.to_owned(), ms);
    (key(f64::MIN)..key(before_ms.unwrap_or(f64::MAX))).into()
}

impl IdbStore {
    /// Opens (creating or upgrading) the database `name` for `ctx`'s seller.
    pub async fn open(name: &str, ctx: SellerContext) -> StoreResult<Self> {
        let db = Database::open(name)
            .with_version(k::VERSION)
            .with_on_blocked(|_| {
                // The open waits until older tabs close their connections; they do
                // so on `versionchange` (see `close_on_version_change`).
                Ok(())
            })
            .with_on_upgrade_needed(|event, db| {
                let old = event.old_version() as u64;
                if old < 1 {
                    migrations::v1(&db)?;
                }
                Ok(())
            })
            .await?;
        // Another tab opening a newer version must not wait on us: close this
        // connection on `versionchange` (later calls fail with `db_closed`).
        let mut changes = db.version_changes()?;
        let closing = db.clone();
        wasm_bindgen_futures::spawn_local(async move {
            if changes.recv().await.is_some() {
                closing.close();
            }
        });
        Ok(Self { db, ctx })
    }

    /// Closes the connection.
    pub fn close(self) {
        self.db.close();
    }

    /// The seller context.
    pub fn context(&self) -> &SellerContext {
        &self.ctx
    }

    fn key(&self, raw: &str) -> String {
        match_key(raw, self.ctx.default_region.as_deref())
    }

    fn stored(&self, record: Record) -> StoredRecord {
        let phone_keys = record.phones.iter().map(|p| self.key(p)).collect();
        StoredRecord { record, phone_keys }
    }

    /// Imports a directory snapshot: one transaction per `batch` rows.
    pub async fn import_directory(
        &self,
        directory: &Directory,
        batch: usize,
    ) -> StoreResult<usize> {
        let batch = batch.max(1);
        {
            let tx = self
                .db
                .transaction([k::ORG_NUMBERS, k::SELLERS, k::TEAMS, k::TEMPLATES])
                .with_mode(TransactionMode::Readwrite)
                .build()?;
            let orgs = tx.object_store(k::ORG_NUMBERS)?;
            for o in &directory.org_numbers {
                let mut o = o.clone();
                o.number = self.key(&o.number);
                orgs.put(o).serde()?;
            }
            let sellers = tx.object_store(k::SELLERS)?;
            for s in &directory.sellers {
                sellers.put(s.clone()).serde()?;
            }
            let teams = tx.object_store(k::TEAMS)?;
            for t in &directory.teams {
                teams.put(t.clone()).serde()?;
            }
            let templates = tx.object_store(k::TEMPLATES)?;
            for t in &directory.templates {
                if t.lookup(["id"]).is_some() {
                    templates.put(t.clone()).serde()?;
                }
            }
            tx.commit().await?;
        }
        for chunk in directory.records.chunks(batch) {
            let tx = self
                .db
                .transaction(k::RECORDS)
                .with_mode(TransactionMode::Readwrite)
                .build()?;
            let store = tx.object_store(k::RECORDS)?;
            for r in chunk {
                store.put(self.stored(r.clone())).serde()?;
            }
            tx.commit().await?;
        }
        Ok(directory.records.len())
    }

    /// A record by id.
    pub async fn record(&self, id: &str) -> StoreResult<Option<Record>> {
        let tx = self.db.transaction(k::RECORDS).build()?;
        let r: Option<StoredRecord> = tx.object_store(k::RECORDS)?.get(id).serde()?.await?;
        Ok(r.map(|s| s.record))
    }

    /// Applies one relay event in one transaction, with its position (D1).
    pub async fn ingest(&self, event: &LoggedEvent) -> StoreResult<IngestOutcome> {
        let stores = [
            k::META,
            k::RECORDS,
            k::ORG_NUMBERS,
            k::SELLERS,
            k::TEAMS,
            k::TEMPLATES,
            k::CONVERSATIONS,
            k::MESSAGES,
            k::PENDING_REPORTS,
            k::NOTIFICATIONS,
        ];
        let tx = self
            .db
            .transaction(stores)
            .with_mode(TransactionMode::Readwrite)
            .build()?;
        let meta = tx.object_store(k::META)?;
        let position: Option<Position> = meta.get("position").serde()?.await?;
        let mut out = IngestOutcome {
            kind: event.body.kind().to_owned(),
            ..Default::default()
        };
        if let Some(p) = &position {
            if p.epoch != event.epoch {
                out.resync = true;
                return Ok(out); // dropped transaction = nothing written
            }
            if event.id <= p.id {
                out.duplicate = true;
                return Ok(out);
            }
        }
        let apply = Apply {
            store: self,
            tx: &tx,
        };
        apply.event(&event.body, &mut out).await?;
        meta.put(Position {
            key: "position".into(),
            epoch: event.epoch.clone(),
            id: event.id,
        })
        .serde()?;
        tx.commit().await?;
        Ok(out)
    }

    /// Forgets the relay position (after a new epoch): the next events replay from the start.
    pub async fn reset_position(&self) -> StoreResult<()> {
        let tx = self
            .db
            .transaction(k::META)
            .with_mode(TransactionMode::Readwrite)
            .build()?;
        tx.object_store(k::META)?.delete("position").build()?;
        tx.commit().await?;
        Ok(())
    }

    /// The position to resume the relay stream from (`<epoch>:<id>`), if any.
    pub async fn position(&self) -> StoreResult<Option<String>> {
        let tx = self.db.transaction(k::META).build()?;
        let p: Option<Position> = tx.object_store(k::META)?.get("position").serde()?.await?;
        Ok(p.map(|p| format!("{}:{}", p.epoch, p.id)))
    }

    async fn teams(&self) -> StoreResult<Vec<sms_core::directory::Team>> {
        let tx = self.db.transaction(k::TEAMS).build()?;
        let teams: Vec<sms_core::directory::Team> = tx
            .object_store(k::TEAMS)?
            .get_all()
            .serde()?
            .await?
            .collect::<Result<_, _>>()?;
        Ok(teams)
    }

    /// "My text messages": conversations the seller may see, newest first (O1, V1).
    pub async fn conversations(&self) -> StoreResult<Vec<ConversationSummary>> {
        let teams = self.teams().await?;
        let my_teams: Vec<&str> = teams_of(&self.ctx.seller, &teams);
        let tx = self
            .db
            .transaction([k::CONVERSATIONS, k::RECORDS, k::ORG_NUMBERS])
            .build()?;
        let conv_store = tx.object_store(k::CONVERSATIONS)?;
        let convs = conv_store.index(k::CONVERSATIONS_BY_LAST)?;
        let records = tx.object_store(k::RECORDS)?;
        let orgs = tx.object_store(k::ORG_NUMBERS)?;
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
            let org: Option<sms_core::directory::OrgNumber> =
                orgs.get(c.org_number.as_str()).serde()?.await?;
            let viewer = Viewer {
                seller: &self.ctx.seller,
                teams: &my_teams,
            };
            let record_owner = record.as_ref().map(|r| &r.record.owner);
            if visibility(viewer, org.as_ref().map(|o| &o.owner), record_owner).is_ok() {
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
        let range = conversation_range(conversation_id, before_ms);
        let mut messages = Vec::new();
        let mut has_more = false;
        if let Some(mut cursor) = index
            .open_cursor()
            .with_query(range)
            .with_direction(CursorDirection::Prev)
            .serde()?
            .await?
        {
            while let Some(m) = cursor.next_record_ser::<StoredMessage>().await? {
                if messages.len() == limit {
                    has_more = true;
                    break;
                }
                messages.push(m);
            }
        }
        messages.reverse();
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

/// How the relay answered a send.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SendAnswer {
    /// `accepted`, `failed` or `unknown`.
    pub outcome: SendOutcome,
    /// Provider message id when accepted.
    #[serde(default)]
    pub message_sid: Option<String>,
    /// Provider or relay error code when it failed.
    #[serde(default)]
    pub error_code: Option<u32>,
}

impl IdbStore {
    /// Queues a send (B4): the outbox entry and the outbound message commit together.
    pub async fn queue_send(&self, entry: OutboxEntry) -> StoreResult<String> {
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
            .conversation(&entry.from, &entry.to, &entry.record_id, None)
            .await?;
        let messages = tx.object_store(k::MESSAGES)?;
        let existing: Option<StoredMessage> =
            messages.get(entry.client_ref.as_str()).serde()?.await?;
        if existing.is_none() {
            messages
                .put(StoredMessage {
                    id: entry.client_ref.clone(),
                    conversation_id: conv.id.clone(),
                    at_ms: entry.queued_ms,
                    direction: Direction::Outbound,
                    body: entry.body.clone(),
                    provider_id: None,
                    client_ref: Some(entry.client_ref.clone()),
                    delivery: None,
                    media: Vec::new(),
                })
                .serde()?;
            tx.object_store(k::OUTBOX)?.put(entry.clone()).serde()?;
            conv.last_ms = conv.last_ms.max(entry.queued_ms);
            conv.preview = preview(&entry.body);
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
            let status = match answer.outcome {
                SendOutcome::Failed => DeliveryStatus::Failed,
                SendOutcome::Accepted | SendOutcome::Unknown => DeliveryStatus::Queued,
            };
            let d = m.delivery.get_or_insert_with(|| Delivery::new(status));
            d.apply(status, answer.error_code);
            if m.provider_id.is_none() {
                m.provider_id = answer.message_sid.clone();
            }
            if let Some(sid) = &answer.message_sid {
                let pending = tx.object_store(k::PENDING_REPORTS)?;
                let report: Option<PendingReport> = pending.get(sid.as_str()).serde()?.await?;
                if let Some(r) = report {
                    d.apply(r.delivery.status, r.delivery.error_code);
                    pending.delete(sid.as_str()).build()?;
                }
            }
            messages.put(m).serde()?;
        }
        tx.commit().await?;
        Ok(())
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

/// Applies one event inside an open transaction (IndexedDB awaits only).
struct Apply<'a> {
    store: &'a IdbStore,
    tx: &'a indexed_db_futures::transaction::Transaction<'a>,
}

impl Apply<'_> {
    async fn event(&self, body: &EventBody, out: &mut IngestOutcome) -> StoreResult<()> {
        match body {
            EventBody::Inbound {
                message_sid,
                from,
                to,
                body,
                media,
                at,
                record_id,
                rule,
            } => {
                out.record_id = Some(record_id.clone());
                out.rule = Some(*rule);
                if *rule == RouteRule::NewLead {
                    out.created_lead = self
                        .ensure_lead(record_id, from, to, at.as_millis() as f64)
                        .await?;
                }
                let conv = self.conversation(to, from, record_id, Some(*rule)).await?;
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
                let messages = self.tx.object_store(k::MESSAGES)?;
                let existing: Option<StoredMessage> =
                    messages.get(message_sid.as_str()).serde()?.await?;
                if existing.is_some() {
                    out.duplicate = true;
                    return Ok(());
                }
                messages.put(message.clone()).serde()?;
                let mut conv = conv;
                conv.last_ms = conv.last_ms.max(message.at_ms);
                conv.preview = preview(body);
                conv.unread += 1;
                out.conversation_id = Some(conv.id.clone());
                out.notification = self.notify(&conv, &message).await?;
                self.tx.object_store(k::CONVERSATIONS)?.put(conv).serde()?;
            }
            EventBody::Outbound {
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
            } => {
                let conv = self.conversation(from, to, record_id, None).await?;
                let messages = self.tx.object_store(k::MESSAGES)?;
                let existing: Option<StoredMessage> =
                    messages.get(client_ref.as_str()).serde()?.await?;
                let mut delivery = existing.as_ref().and_then(|m| m.delivery.clone());
                let status = match outcome {
                    SendOutcome::Accepted => DeliveryStatus::Queued,
                    SendOutcome::Failed => DeliveryStatus::Failed,
                    SendOutcome::Unknown => DeliveryStatus::Queued,
                };
                let d = delivery.get_or_insert_with(|| Delivery::new(status));
                d.apply(status, *error_code);
                if let Some(sid) = message_sid {
                    let pending = self.tx.object_store(k::PENDING_REPORTS)?;
                    let report: Option<PendingReport> = pending.get(sid.as_str()).serde()?.await?;
                    if let Some(r) = report {
                        d.apply(r.delivery.status, r.delivery.error_code);
                        pending.delete(sid.as_str()).build()?;
                    }
                }
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
            EventBody::Delivery {
                message_sid,
                status,
                error_code,
                ..
            } => {
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
            EventBody::LeadCreated { record } => {
                let records = self.tx.object_store(k::RECORDS)?;
                let existing: Option<StoredRecord> =
                    records.get(record.id.as_str()).serde()?.await?;
                if existing.is_none() {
                    records.put(self.store.stored(record.clone())).serde()?;
                    out.created_lead = Some(record.id.clone());
                }
                out.record_id = Some(record.id.clone());
            }
            EventBody::ConversationMoved {
                org_number,
                customer_number,
                from_record,
                to_record,
                by,
                at,
            } => {
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
            EventBody::ConsentChanged {
                org_number,
                customer_number,
                consent,
                ..
            } => {
                let convs = self.tx.object_store(k::CONVERSATIONS)?;
                let all: Vec<StoredConversation> = convs
                    .index(k::CONVERSATIONS_BY_PAIR)?
                    .get_all()
                    .with_query(pair_key(org_number, customer_number))
                    .serde()?
                    .await?
                    .collect::<Result<_, _>>()?;
                for mut c in all {
                    c.consent = *consent;
                    out.conversation_id = Some(c.id.clone());
                    convs.put(c).serde()?;
                }
            }
            EventBody::DirectoryChanged { patch } => {
                let records = self.tx.object_store(k::RECORDS)?;
                for r in &patch.upsert.records {
                    records.put(self.store.stored(r.clone())).serde()?;
                }
                for id in &patch.delete.records {
                    records.delete(id.as_str()).build()?;
                }
                let sellers = self.tx.object_store(k::SELLERS)?;
                for s in &patch.upsert.sellers {
                    sellers.put(s.clone()).serde()?;
                }
                for id in &patch.delete.sellers {
                    sellers.delete(id.as_str()).build()?;
                }
                let teams = self.tx.object_store(k::TEAMS)?;
                for t in &patch.upsert.teams {
                    teams.put(t.clone()).serde()?;
                }
                for id in &patch.delete.teams {
                    teams.delete(id.as_str()).build()?;
                }
                let orgs = self.tx.object_store(k::ORG_NUMBERS)?;
                for o in &patch.upsert.org_numbers {
                    let mut o = o.clone();
                    o.number = self.store.key(&o.number);
                    orgs.put(o).serde()?;
                }
                for n in &patch.delete.org_numbers {
                    orgs.delete(self.store.key(n).as_str()).build()?;
                }
            }
            EventBody::DirectoryReplaced { directory } => {
                for store in [k::RECORDS, k::SELLERS, k::TEAMS, k::ORG_NUMBERS] {
                    self.tx.object_store(store)?.clear()?;
                }
                let records = self.tx.object_store(k::RECORDS)?;
                for r in &directory.records {
                    records.put(self.store.stored(r.clone())).serde()?;
                }
                let sellers = self.tx.object_store(k::SELLERS)?;
                for s in &directory.sellers {
                    sellers.put(s.clone()).serde()?;
                }
                let teams = self.tx.object_store(k::TEAMS)?;
                for t in &directory.teams {
                    teams.put(t.clone()).serde()?;
                }
                let orgs = self.tx.object_store(k::ORG_NUMBERS)?;
                for o in &directory.org_numbers {
                    let mut o = o.clone();
                    o.number = self.store.key(&o.number);
                    orgs.put(o).serde()?;
                }
                let templates = self.tx.object_store(k::TEMPLATES)?;
                for t in &directory.templates {
                    if t.lookup(["id"]).is_some() {
                        templates.put(t.clone()).serde()?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Creates the lead for an unknown number unless it exists (R3: same id everywhere).
    async fn ensure_lead(
        &self,
        id: &str,
        phone: &str,
        org: &str,
        at_ms: f64,
    ) -> StoreResult<Option<String>> {
        let records = self.tx.object_store(k::RECORDS)?;
        let existing: Option<StoredRecord> = records.get(id).serde()?.await?;
        if existing.is_some() {
            return Ok(None);
        }
        let org: Option<sms_core::directory::OrgNumber> = self
            .tx
            .object_store(k::ORG_NUMBERS)?
            .get(org)
            .serde()?
            .await?;
        let record = Record {
            id: id.to_owned(),
            kind: RecordKind::Lead,
            owner: org.map_or_else(|| Owner::Team("unassigned".into()), |o| o.owner),
            active: true,
            updated_at: Some(sms_core::Timestamp::from_millis(at_ms as i64)),
            phones: vec![phone.to_owned()],
            name: phone.to_owned(),
        };
        records.put(self.store.stored(record)).serde()?;
        Ok(Some(id.to_owned()))
    }

    /// The conversation of these numbers on `record_id`, created if absent.
    async fn conversation(
        &self,
        org: &str,
        customer: &str,
        record_id: &str,
        rule: Option<RouteRule>,
    ) -> StoreResult<StoredConversation> {
        let convs = self.tx.object_store(k::CONVERSATIONS)?;
        let all: Vec<StoredConversation> = convs
            .index(k::CONVERSATIONS_BY_PAIR)?
            .get_all()
            .with_query(pair_key(org, customer))
            .serde()?
            .await?
            .collect::<Result<_, _>>()?;
        if let Some(mut c) = all.into_iter().find(|c| c.record_id == record_id) {
            if rule.is_some() {
                c.rule = rule;
            }
            return Ok(c);
        }
        Ok(StoredConversation {
            id: format!("{org}|{customer}|{record_id}"),
            record_id: record_id.to_owned(),
            org_number: org.to_owned(),
            customer_number: customer.to_owned(),
            last_ms: 0.0,
            preview: String::new(),
            unread: 0,
            rule,
            moves: Vec::new(),
            consent: Default::default(),
        })
    }

    /// Raises the notification for a new inbound message the seller may see (N1),
    /// or the missing-privilege notice (P3); the message is kept either way.
    async fn notify(&self, conv: &StoredConversation, m: &StoredMessage) -> StoredResult {
        let ctx = &self.store.ctx;
        let teams: Vec<sms_core::directory::Team> = self
            .tx
            .object_store(k::TEAMS)?
            .get_all()
            .serde()?
            .await?
            .collect::<Result<_, _>>()?;
        let my_teams = teams_of(&ctx.seller, &teams);
        let record: Option<StoredRecord> = self
            .tx
            .object_store(k::RECORDS)?
            .get(conv.record_id.as_str())
            .serde()?
            .await?;
        let org: Option<sms_core::directory::OrgNumber> = self
            .tx
            .object_store(k::ORG_NUMBERS)?
            .get(conv.org_number.as_str())
            .serde()?
            .await?;
        let viewer = Viewer {
            seller: &ctx.seller,
            teams: &my_teams,
        };
        if visibility(
            viewer,
            org.as_ref().map(|o| &o.owner),
            record.as_ref().map(|r| &r.record.owner),
        )
        .is_err()
        {
            return Ok(None);
        }
        let me: Option<sms_core::protocol::Seller> = self
            .tx
            .object_store(k::SELLERS)?
            .get(ctx.seller.as_str())
            .serde()?
            .await?;
        let kind = if me.is_none_or(|s| s.can_receive) {
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
        let all: Vec<StoredConversation> = convs
            .index(k::CONVERSATIONS_BY_PAIR)?
            .get_all()
            .with_query(pair_key(org, customer))
            .serde()?
            .await?
            .collect::<Result<_, _>>()?;
        let Some(mut source) = all.iter().find(|c| c.record_id == from_record).cloned() else {
            return Ok(());
        };
        let entry = MoveEntry {
            by: by.to_owned(),
            at,
            from_record: from_record.to_owned(),
            to_record: to_record.to_owned(),
        };
        let at_ms = at.as_millis() as f64;
        match all.into_iter().find(|c| c.record_id == to_record) {
            Some(mut target) => {
                // Merge the histories (M2): the source's messages join the target.
                let messages = self.tx.object_store(k::MESSAGES)?;
                let moving: Vec<StoredMessage> = messages
                    .index(k::MESSAGES_BY_CONVERSATION)?
                    .get_all()
                    .with_query(conversation_range(&source.id, None))
                    .serde()?
                    .await?
                    .collect::<Result<_, _>>()?;
                for mut m in moving {
                    m.conversation_id = target.id.clone();
                    messages.put(m).serde()?;
                }
                target.moves.append(&mut source.moves);
                target.moves.push(entry);
                target.last_ms = target.last_ms.max(source.last_ms).max(at_ms);
                target.unread += source.unread;
                out.conversation_id = Some(target.id.clone());
                convs.put(target).serde()?;
                convs.delete(source.id.as_str()).build()?;
            }
            None => {
                source.record_id = to_record.to_owned();
                source.moves.push(entry);
                source.last_ms = source.last_ms.max(at_ms);
                out.conversation_id = Some(source.id.clone());
                convs.put(source).serde()?;
            }
        }
        Ok(())
    }
}

type StoredResult = StoreResult<Option<StoredNotification>>;

fn preview(body: &str) -> String {
    let mut p: String = body.chars().take(80).collect();
    if body.chars().count() > 80 {
        p.push('…');
    }
    p
}

mod migrations {
    //! One small upgrade function per schema step.

    use indexed_db_futures::database::Database;
    use indexed_db_futures::prelude::*;
    use indexed_db_futures::KeyPath;

    use super::k;

    /// Version 1: every store and index.
    pub(super) fn v1(db: &Database) -> indexed_db_futures::Result<()> {
        db.create_object_store(k::META)
            .with_key_path("key".into())
            .build()?;
        let records = db
            .create_object_store(k::RECORDS)
            .with_key_path("id".into())
            .build()?;
        records
            .create_index(k::RECORDS_BY_PHONE, "phone_keys".into())
            .with_multi_entry(true)
            .build()?;
        db.create_object_store(k::ORG_NUMBERS)
            .with_key_path("number".into())
            .build()?;
        db.create_object_store(k::SELLERS)
            .with_key_path("id".into())
            .build()?;
        db.create_object_store(k::TEAMS)
            .with_key_path("id".into())
            .build()?;
        let convs = db
            .create_object_store(k::CONVERSATIONS)
            .with_key_path("id".into())
            .build()?;
        convs
            .create_index(
                k::CONVERSATIONS_BY_PAIR,
                KeyPath::from(["org_number", "customer_number"]),
            )
            .build()?;
        convs
            .create_index(k::CONVERSATIONS_BY_RECORD, "record_id".into())
            .build()?;
        convs
            .create_index(k::CONVERSATIONS_BY_LAST, "last_ms".into())
            .build()?;
        let messages = db
            .create_object_store(k::MESSAGES)
            .with_key_path("id".into())
            .build()?;
        messages
            .create_index(
                k::MESSAGES_BY_CONVERSATION,
                KeyPath::from(["conversation_id", "at_ms"]),
            )
            .build()?;
        messages
            .create_index(k::MESSAGES_BY_PROVIDER, "provider_id".into())
            .with_unique(true)
            .build()?;
        db.create_object_store(k::PENDING_REPORTS)
            .with_key_path("message_sid".into())
            .build()?;
        let notes = db
            .create_object_store(k::NOTIFICATIONS)
            .with_key_path("id".into())
            .build()?;
        notes
            .create_index(k::NOTIFICATIONS_UNREAD, "unread".into())
            .build()?;
        db.create_object_store(k::TEMPLATES)
            .with_key_path("id".into())
            .build()?;
        db.create_object_store(k::OUTBOX)
            .with_key_path("client_ref".into())
            .build()?;
        Ok(())
    }
}
