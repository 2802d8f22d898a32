//! The durable event log and the relay's small private tables, behind two traits
//! with two backends.
//!
//! SQLite (the default; bundled, WAL, `synchronous=FULL`): one writer connection
//! owned by the sequencer thread, and a pool of reader connections (r2d2) that never
//! wait behind the writer (WAL readers see the last commit). One node owns the file.
//!
//! PostgreSQL ([`pg`]): several nodes share the database (X9). A batch's transaction
//! first takes a cluster-wide advisory lock, then [`LogWriter::catch_up`] hands the
//! sequencer the events other nodes appended since its last batch, so every node
//! decides over the whole log and ids are allocated in commit order.

use std::path::Path;

use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension};
use thiserror::Error;

use crate::model::{Audience, EventBody, LoggedEvent};
use crate::sends::outcome_name;
use sms_core::protocol::SendOutcome;
use sms_core::relay::history::{
    self, ConversationKey, History, HistoryConversation, HistoryMessage, HistoryOp,
};

/// A storage failure.
#[derive(Debug, Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The operating system said no.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// No pooled connection could be had.
    #[error("connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// PostgreSQL said no.
    #[error("database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No pooled PostgreSQL connection could be had.
    #[error("connection pool: {0}")]
    PgPool(String),
    /// The events after a position were pruned: start from a checkpoint (the
    /// relay) or a snapshot (a client, `410 snapshot_required`).
    #[error("events after {after} were pruned (through {through})")]
    Pruned {
        /// The position asked for.
        after: i64,
        /// The last event deleted.
        through: i64,
    },
    /// A stored event no longer parses.
    #[error("corrupt event {id}: {source}")]
    Corrupt {
        /// Event id.
        id: i64,
        /// Parse error.
        source: serde_json::Error,
    },
}

/// Result of storage operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// An event to append: what happened, its idempotency key, and who may see it.
pub struct NewEvent {
    /// What happened.
    pub body: EventBody,
    /// Provider-level idempotency key (e.g. `in:<MessageSid>`); a repeat is dropped.
    pub dedupe: Option<String>,
    /// Who receives it.
    pub audience: Audience,
    /// What it changes of the per-conversation history ([`history::ops`]), carried
    /// out in the same transaction.
    pub history: Vec<HistoryOp>,
}

pub use sms_core::relay::{PendingSend, SendStage, SentMessage};

/// A send's outcome as the sent table keeps it: `(seller, client_ref, outcome)`.
pub type SentRow = (String, String, SentMessage);

/// The sent-table row of an outbound event (the sent map outlives the log):
/// seller, client reference, provider id, outcome, error code.
pub(crate) type SentColumns = (String, String, Option<String>, &'static str, Option<u32>);

pub(crate) fn sent_columns(body: &EventBody) -> Option<SentColumns> {
    let EventBody::Outbound(o) = body else {
        return None;
    };
    Some((
        o.by.clone(),
        o.client_ref.clone(),
        o.message_sid.clone(),
        outcome_name(o.outcome),
        o.error_code,
    ))
}

pub(crate) fn outcome_parse(s: &str) -> SendOutcome {
    match s {
        "accepted" => SendOutcome::Accepted,
        "failed" => SendOutcome::Failed,
        "pending" => SendOutcome::Pending,
        // Anything else may or may not have been sent: never resent.
        _ => SendOutcome::Unknown,
    }
}

/// A checkpoint as stored: its position (the last event it reflects) and the
/// shared state (JSON of [`sms_core::relay::Checkpoint`]).
pub type StoredCheckpoint = (i64, String);

/// The writer side of the log: used by the one sequencer thread, inside batches.
pub trait LogWriter: Send {
    /// The current epoch.
    fn epoch(&self) -> String;
    /// Starts a batch (one transaction, one sync to disk). `keys`: the idempotency
    /// keys the batch's commands carry; a backend across a network looks them up in
    /// the round trip that starts the batch, so [`Self::seen`] answers them without one.
    fn begin(&mut self, keys: &[String]) -> StoreResult<()>;
    /// Makes the batch durable.
    fn commit(&mut self) -> StoreResult<()>;
    /// Drops the batch.
    fn rollback(&mut self) -> StoreResult<()>;
    /// Inside a batch, before deciding: feeds `f` the events other nodes appended
    /// since this writer's last batch, in log order. `Some(epoch)` when the log was
    /// reset meanwhile (a new epoch): `f` was not called; the caller starts from an
    /// empty state and catches up again. A backend only one node writes has nothing
    /// to catch up.
    fn catch_up(&mut self, f: &mut dyn FnMut(EventBody)) -> StoreResult<Option<String>>;
    /// Outside a batch, without the append lock: like [`Self::catch_up`], the events
    /// other nodes committed since (a committed prefix of the log), for answering
    /// reads. A backend only one node writes has nothing to catch up.
    fn refresh(&mut self, _f: &mut dyn FnMut(EventBody)) -> StoreResult<Option<String>> {
        Ok(None)
    }
    /// Whether other nodes append to this log too: then every node publishes what
    /// it reads back from the log ([`pg::tail`]), not what it appended itself.
    fn shared(&self) -> bool {
        false
    }
    /// The stage of a send whose outcome is not logged (`None`: no such row). The
    /// sequencer asks before deciding a send, since another node may hold it.
    fn send_stage(&mut self, seller: &str, client_ref: &str) -> StoreResult<Option<SendStage>>;
    /// At start-up: the sends whose outcome is not logged that no live node holds,
    /// now held by this one (SQLite: all of them; PostgreSQL: those whose lease
    /// expired, claimed with `FOR UPDATE SKIP LOCKED`).
    fn claim(&mut self) -> StoreResult<Vec<(PendingSend, SendStage)>> {
        self.pending()
    }
    /// Whether an event with this idempotency key is in the log.
    fn seen(&mut self, dedupe: &str) -> StoreResult<bool>;
    /// Appends an event (whose idempotency key the caller checked with [`Self::seen`]);
    /// returns it with its id and its JSON as pushed to browsers.
    fn append(&mut self, event: &NewEvent) -> StoreResult<(LoggedEvent, String)>;
    /// The events after `after` in log order (to rebuild state at start-up, after
    /// the checkpoint it starts from); [`StoreError::Pruned`] when some are gone.
    fn replay(&mut self, after: i64, f: &mut dyn FnMut(EventBody)) -> StoreResult<()>;
    /// The newest checkpoint of this epoch.
    fn checkpoint(&mut self) -> StoreResult<Option<StoredCheckpoint>>;
    /// The checkpoints kept: `(position, stored at, ms)`, oldest first.
    fn checkpoints(&mut self) -> StoreResult<Vec<(i64, i64)>>;
    /// Inside a batch: the log's head (the last id allocated, kept or pruned).
    fn head(&mut self) -> StoreResult<i64>;
    /// Inside a batch, caught up: stores `state` as the checkpoint at `position`
    /// (the head).
    fn save_checkpoint(&mut self, position: i64, state: &str, at_ms: i64) -> StoreResult<()>;
    /// Inside a batch: deletes the events at or before `through` and the checkpoints
    /// before it, and remembers `through` (readers answer older positions with
    /// [`StoreError::Pruned`]). A checkpoint at or after `through` exists already.
    fn prune(&mut self, through: i64) -> StoreResult<()>;
    /// Inside a batch: drops these checkpoints (never the newest: the caller's rule).
    fn drop_checkpoints(&mut self, positions: &[i64]) -> StoreResult<()>;
    /// The sent table: how each kept send ended.
    fn sent(&mut self) -> StoreResult<Vec<SentRow>>;
    /// Inside a batch: drops the sent rows and idempotency keys stored before
    /// `before_ms` (the log's own keys stay while its events do).
    fn expire(&mut self, before_ms: i64) -> StoreResult<()>;
    /// Empties the log and starts a new epoch (S4).
    fn reset(&mut self) -> StoreResult<String>;
    /// The per-conversation history as its tables hold it, whole (tests; a client
    /// reads it through [`LogReader::snapshot`]).
    fn history(&mut self) -> StoreResult<History>;
    /// Whether the history tables were filled from the log (not yet in a database
    /// an older version left).
    fn history_filled(&mut self) -> StoreResult<bool>;
    /// Inside a batch: empties the history tables, carries out `ops` (the fold of
    /// the log) and marks them filled.
    fn fill_history(&mut self, ops: &[HistoryOp]) -> StoreResult<()>;
    /// Records a send as `queued`.
    fn add_pending(&mut self, send: &PendingSend) -> StoreResult<()>;
    /// Marks a queued send `calling` (its provider call starts after the commit).
    fn mark_calling(&mut self, seller: &str, client_ref: &str) -> StoreResult<()>;
    /// Forgets a pending send (its outcome is logged).
    fn remove_pending(&mut self, seller: &str, client_ref: &str) -> StoreResult<()>;
    /// Sends whose outcome is not logged, with their stage, oldest first.
    fn pending(&mut self) -> StoreResult<Vec<(PendingSend, SendStage)>>;
    /// Inside a batch of its own (F6): redacts a customer's bodies from the log —
    /// every `inbound` event from a number `is_customer` accepts and every
    /// `outbound` event to one gets an empty `body` and `media` — and deletes the
    /// queued sends to it (a send already `calling` is with the provider: it
    /// finishes). Returns how many events it redacted (not counting ones redacted
    /// before) and the sends it deleted.
    fn redact(&mut self, is_customer: &dyn Fn(&str) -> bool) -> StoreResult<Redacted>;
    /// Inside a batch: forgets these idempotency keys (the table's and the events'),
    /// so an event with one of them may be logged again (a lead an erasure removed).
    fn forget_dedupe(&mut self, keys: &[String]) -> StoreResult<()>;
}

/// What [`LogWriter::redact`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redacted {
    /// Events whose body or media it emptied.
    pub events: u64,
    /// Queued sends it deleted: `(seller, client_ref)`.
    pub sends: Vec<(String, String)>,
}

/// Everything the store keeps about a customer number ([`LogReader::export`], F6).
#[derive(Clone, Debug, Default)]
pub struct Export {
    /// Its conversations in the history, each with every message, oldest first.
    pub conversations: Vec<(HistoryConversation, Vec<HistoryMessage>)>,
    /// Every kept event that names it ([`names_customer`]), in log order.
    pub events: Vec<LoggedEvent>,
    /// Sends to it whose outcome is not logged yet, with their stage.
    pub sends: Vec<(PendingSend, SendStage)>,
}

/// Kinds of events that may name a customer number (a prefilter for [`names_customer`]).
pub(crate) const CUSTOMER_KINDS: &str = "'inbound', 'outbound', 'delivery', 'lead_created', \
     'conversation_moved', 'consent_changed', 'erased'";

/// Whether `body` names a customer number `is_customer` accepts: its sender or
/// recipient, the customer of a move, a consent change or an erasure, a phone of a
/// lead.
pub fn names_customer(body: &EventBody, is_customer: &dyn Fn(&str) -> bool) -> bool {
    match body {
        EventBody::Inbound(e) => is_customer(&e.from),
        EventBody::Outbound(e) => is_customer(&e.to),
        EventBody::Delivery(e) => is_customer(&e.to),
        EventBody::LeadCreated(e) => e.record.phones.iter().any(|p| is_customer(p)),
        EventBody::ConversationMoved(e) => is_customer(&e.customer_number),
        EventBody::ConsentChanged(e) => is_customer(&e.customer_number),
        EventBody::Erased(e) => is_customer(&e.customer_number),
        EventBody::DirectoryChanged(_) | EventBody::DirectoryReplaced(_) => false,
    }
}

/// Groups history messages (any order) under their conversations, oldest first.
pub(crate) fn group_export(
    conversations: Vec<HistoryConversation>,
    messages: Vec<HistoryMessage>,
) -> Vec<(HistoryConversation, Vec<HistoryMessage>)> {
    let mut out: Vec<(HistoryConversation, Vec<HistoryMessage>)> =
        conversations.into_iter().map(|c| (c, Vec::new())).collect();
    for m in messages {
        if let Some((_, ms)) = out.iter_mut().find(|(c, _)| c.key == m.conversation) {
            ms.push(m);
        }
    }
    for (_, ms) in &mut out {
        ms.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    }
    out
}

/// A push subscription of a seller's browser (N2).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PushSubscription {
    /// Push service URL.
    pub endpoint: String,
    /// The browser's P-256 public key (base64url).
    pub p256dh: String,
    /// The browser's auth secret (base64url).
    pub auth: String,
}

/// Which conversations a snapshot keeps (the seller's sight).
pub type Keep = std::sync::Arc<dyn Fn(&ConversationKey) -> bool + Send + Sync>;

/// Conversations per [`SnapshotPart::Conversations`].
pub const SNAPSHOT_CHUNK: usize = 200;
/// Most messages per [`SnapshotPart::Older`].
pub const SNAPSHOT_OLDER: usize = 1000;

/// A part of a snapshot ([`LogReader::snapshot`]), in the order they come.
#[derive(Clone, Debug, PartialEq)]
pub enum SnapshotPart {
    /// First: the position the snapshot reflects, and how many conversations follow.
    Head {
        /// The log's epoch.
        epoch: String,
        /// The log's head (the last id allocated, kept or pruned).
        head: i64,
        /// How many conversations the `keep` filter accepted.
        conversations: u64,
    },
    /// Up to [`SNAPSHOT_CHUNK`] conversations in key order, each with its latest
    /// messages, oldest first.
    Conversations(Vec<(HistoryConversation, Vec<HistoryMessage>)>),
    /// Up to [`SNAPSHOT_OLDER`] messages of one conversation from before its latest
    /// page, oldest first (only conversations whose latest page was full).
    Older(ConversationKey, Vec<HistoryMessage>),
}

/// The reader side: replays for SSE clients, sessions and push subscriptions.
pub trait LogReader: Send + Sync {
    /// The current epoch.
    fn epoch(&self) -> StoreResult<String>;
    /// Up to `limit` events after `after` that `seller` may see, in log order;
    /// [`StoreError::Pruned`] when events after `after` were pruned.
    fn since(&self, seller: &str, after: i64, limit: usize) -> StoreResult<Vec<LoggedEvent>>;
    /// Up to `limit` events after `after`, every one whoever may see it (the CRM's
    /// feed, F1), in log order; [`StoreError::Pruned`] as for [`Self::since`].
    fn all_since(&self, after: i64, limit: usize) -> StoreResult<Vec<LoggedEvent>>;
    /// The id of the newest event (kept or pruned).
    fn head(&self) -> StoreResult<i64>;
    /// The last event pruned (0: none); a client at an older position needs a snapshot.
    fn pruned(&self) -> StoreResult<i64>;
    /// The history's conversations after `after` in key order (org, customer,
    /// record), at most `limit`, outside any transaction (a consistent read is
    /// [`Self::snapshot`]).
    fn history_conversations(
        &self,
        after: Option<&ConversationKey>,
        limit: usize,
    ) -> StoreResult<Vec<HistoryConversation>>;
    /// The latest `limit` messages of a conversation, oldest first (ties by id).
    fn history_messages(
        &self,
        key: &ConversationKey,
        limit: usize,
    ) -> StoreResult<Vec<HistoryMessage>>;
    /// A consistent snapshot of the history for one seller (E3): the log's head and
    /// epoch, the conversations `keep` accepts in key order each with its latest
    /// `page` messages (oldest first), then every older message of those
    /// conversations, all read in one read transaction: it reflects exactly the
    /// head it names. Parts go to `out` as they are read (a bounded channel: a slow
    /// client slows the read); returns when done, when `out` is closed (the client
    /// went), or on an error. Blocks: call it from a blocking task.
    fn snapshot(
        &self,
        page: usize,
        keep: Keep,
        out: tokio::sync::mpsc::Sender<SnapshotPart>,
    ) -> StoreResult<()>;
    /// The last event delivered to the CRM's webhook (`<epoch>:<id>`), if any (F1).
    fn hook_cursor(&self) -> StoreResult<Option<String>>;
    /// Moves the CRM webhook's cursor from `from` (what was read) to `to`; `false`
    /// when it was not at `from` (another node moved it: read it again).
    fn advance_hook_cursor(&self, from: Option<&str>, to: &str) -> StoreResult<bool>;
    /// Stores a session (only the SHA-256 of its id is kept); expired ones are purged.
    fn put_session(&self, id: &str, seller: &str, expires_ms: i64) -> StoreResult<()>;
    /// The seller of a live session, and when it expires.
    fn session(&self, id: &str, now_ms: i64) -> StoreResult<Option<(String, i64)>>;
    /// Ends a session.
    fn delete_session(&self, id: &str) -> StoreResult<()>;
    /// Ends every session of a seller (sign-out everywhere, seller removed).
    fn delete_sessions_of(&self, seller: &str) -> StoreResult<()>;
    /// Drops sessions expired at `now_ms`.
    fn purge_sessions(&self, now_ms: i64) -> StoreResult<()>;
    /// Adds or replaces a push subscription.
    fn put_subscription(&self, seller: &str, sub: &PushSubscription) -> StoreResult<()>;
    /// Adds or replaces a seller's push subscription unless they hold `max` others
    /// already; `false` when refused.
    fn add_subscription(
        &self,
        seller: &str,
        sub: &PushSubscription,
        max: usize,
    ) -> StoreResult<bool>;
    /// A seller's push subscriptions.
    fn subscriptions(&self, seller: &str) -> StoreResult<Vec<PushSubscription>>;
    /// Drops an expired or unusable subscription.
    fn delete_subscription(&self, endpoint: &str) -> StoreResult<()>;
    /// Drops a subscription if it is this seller's (nothing otherwise).
    fn delete_own_subscription(&self, seller: &str, endpoint: &str) -> StoreResult<()>;
    /// The VAPID private key kept from an earlier start.
    fn vapid_key(&self) -> StoreResult<Option<String>>;
    /// Keeps the VAPID private key unless one is kept already; returns the one kept
    /// (two nodes starting at once agree on one key).
    fn put_vapid_key(&self, key: &str) -> StoreResult<String>;
    /// Whether the database takes a write now (readiness).
    fn writable(&self) -> StoreResult<()>;
    /// Renews the leases of the sends this node works on and claims the sends whose
    /// lease expired (their node died): those are to be sent or reconciled here.
    /// Nothing for a backend only one node uses.
    fn renew_and_claim(&self) -> StoreResult<Vec<(PendingSend, SendStage)>> {
        Ok(Vec::new())
    }
    /// A graceful stop, no provider call under way: the sends this node holds are
    /// free for another node to take at once. Nothing for a backend only one node
    /// uses (they stay for its next start).
    fn release_leases(&self) -> StoreResult<()> {
        Ok(())
    }
    /// Everything kept about the customer number `customer` (its key) for an
    /// export (F6): its history, the kept events naming a number `is_customer`
    /// accepts, the sends to it not yet logged. Blocks: call it from a blocking task.
    fn export(&self, customer: &str, is_customer: &dyn Fn(&str) -> bool) -> StoreResult<Export>;
}

pub mod pg;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  dedupe TEXT UNIQUE,
  kind TEXT NOT NULL,
  public INTEGER NOT NULL,
  body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS event_audience (
  seller TEXT NOT NULL, event_id INTEGER NOT NULL, PRIMARY KEY (seller, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending_sends (
  client_ref TEXT PRIMARY KEY, seller TEXT NOT NULL, from_number TEXT NOT NULL,
  to_number TEXT NOT NULL, body TEXT NOT NULL, record_id TEXT NOT NULL
);
-- Client references are per seller (X5): pending sends are keyed by both.
CREATE TABLE IF NOT EXISTS sends_pending (
  seller TEXT NOT NULL, client_ref TEXT NOT NULL, from_number TEXT NOT NULL,
  to_number TEXT NOT NULL, body TEXT NOT NULL, record_id TEXT NOT NULL,
  PRIMARY KEY (seller, client_ref)
) WITHOUT ROWID;
INSERT OR IGNORE INTO sends_pending SELECT seller, client_ref, from_number, to_number, body, record_id
  FROM pending_sends;
DELETE FROM pending_sends;
-- Sends are durable rows with a stage (X3): `queued` (accepted) -> `calling` (the
-- provider call started) -> removed with their outcome logged. Rows of older
-- versions were written just before the provider call: they are `calling`.
CREATE TABLE IF NOT EXISTS sends (
  seller TEXT NOT NULL, client_ref TEXT NOT NULL, from_number TEXT NOT NULL,
  to_number TEXT NOT NULL, body TEXT NOT NULL, record_id TEXT NOT NULL,
  stage TEXT NOT NULL, at_ms INTEGER NOT NULL,
  PRIMARY KEY (seller, client_ref)
) WITHOUT ROWID;
INSERT OR IGNORE INTO sends SELECT seller, client_ref, from_number, to_number, body, record_id,
  'calling', 0 FROM sends_pending;
DELETE FROM sends_pending;
DROP TABLE IF EXISTS sessions;
CREATE TABLE IF NOT EXISTS session_hashes (
  hash TEXT PRIMARY KEY, seller TEXT NOT NULL, expires_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_seller ON session_hashes (seller);
CREATE TABLE IF NOT EXISTS push_subscriptions (
  endpoint TEXT PRIMARY KEY, seller TEXT NOT NULL, p256dh TEXT NOT NULL, auth TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS push_by_seller ON push_subscriptions (seller);
-- Checkpoints of the shared state at a log position (start-up replays only what
-- follows the newest); the sent map and webhook idempotency keys in tables of their
-- own, kept for `idempotency_days` whatever the log keeps (X10).
CREATE TABLE IF NOT EXISTS checkpoints (
  position INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sent (
  seller TEXT NOT NULL, client_ref TEXT NOT NULL, message_sid TEXT, outcome TEXT NOT NULL,
  error_code INTEGER, at_ms INTEGER NOT NULL, PRIMARY KEY (seller, client_ref)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sent_by_age ON sent (at_ms);
CREATE TABLE IF NOT EXISTS dedupe_keys (key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_by_age ON dedupe_keys (at_ms);
-- The per-conversation history (issue 17 item 2): the log's messages with their
-- latest delivery, per conversation, moves and merges applied; kept at the head
-- whatever is pruned. Reports whose message is not logged yet wait in
-- history_pending (D2).
-- A conversation's rule is the JSON of its RouteRule (NULL: none yet); its moves
-- the JSON list of its MoveEntry, oldest first.
CREATE TABLE IF NOT EXISTS history_conversations (
  org TEXT NOT NULL, customer TEXT NOT NULL, record TEXT NOT NULL, last_ms INTEGER NOT NULL,
  rule TEXT, moves TEXT NOT NULL DEFAULT '[]',
  PRIMARY KEY (org, customer, record)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history_messages (
  id TEXT PRIMARY KEY, org TEXT NOT NULL, customer TEXT NOT NULL, record TEXT NOT NULL,
  at_ms INTEGER NOT NULL, provider_id TEXT, outbound INTEGER NOT NULL, message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_conversation
  ON history_messages (org, customer, record, at_ms);
CREATE INDEX IF NOT EXISTS history_by_provider ON history_messages (provider_id);
CREATE TABLE IF NOT EXISTS history_pending (
  message_sid TEXT PRIMARY KEY, delivery TEXT NOT NULL
) WITHOUT ROWID;
";

/// Fills the sent and idempotency tables from a log written before they existed
/// (once).
const BACKFILL: &str = "
INSERT OR IGNORE INTO dedupe_keys (key, at_ms)
  SELECT dedupe, ?1 FROM events WHERE dedupe IS NOT NULL;
INSERT OR REPLACE INTO sent (seller, client_ref, message_sid, outcome, error_code, at_ms)
  SELECT json_extract(body, '$.by'), json_extract(body, '$.client_ref'),
         json_extract(body, '$.message_sid'), json_extract(body, '$.outcome'),
         json_extract(body, '$.error_code'), ?1
  FROM events WHERE kind = 'outbound' ORDER BY id;
INSERT INTO meta (key, value) VALUES ('kept_tables', '1');
";

/// The newest id, kept or pruned.
const SQLITE_HEAD: &str = "SELECT MAX(COALESCE((SELECT MAX(id) FROM events), 0),
  COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'pruned'), 0))";
const SQLITE_PRUNED: &str =
    "SELECT COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'pruned'), 0)";

fn open(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch("PRAGMA synchronous = FULL;")?;
    let filled = conn
        .prepare("SELECT 1 FROM meta WHERE key = 'kept_tables'")?
        .exists([])?;
    if !filled {
        let now_ms = crate::sequencer::now().as_millis();
        conn.execute_batch("BEGIN IMMEDIATE")?;
        // Statement by statement (`execute_batch` takes no parameters).
        for sql in BACKFILL.split(';').map(str::trim).filter(|q| !q.is_empty()) {
            let mut stmt = conn.prepare(sql)?;
            if stmt.parameter_count() == 1 {
                stmt.execute([now_ms])?;
            } else {
                stmt.execute([])?;
            }
        }
        conn.execute_batch("COMMIT")?;
    }
    Ok(conn)
}

/// Reader connections kept open (default).
pub const DEFAULT_READERS: u32 = 8;

/// What the sessions table keeps of a session id: its SHA-256, hex.
fn session_hash(id: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_epoch() -> String {
    let mut bytes = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_epoch(conn: &Connection) -> StoreResult<String> {
    Ok(
        conn.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
            r.get(0)
        })?,
    )
}

/// Opens (creating if needed) the SQLite log at `path`: the writer and a reader pool
/// of [`DEFAULT_READERS`] connections.
pub fn open_sqlite(path: &Path) -> StoreResult<(SqliteWriter, SqliteReader)> {
    open_sqlite_with(path, DEFAULT_READERS)
}

/// [`open_sqlite`] with `readers` pooled reader connections.
pub fn open_sqlite_with(path: &Path, readers: u32) -> StoreResult<(SqliteWriter, SqliteReader)> {
    let conn = open(path)?;
    let epoch: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
            r.get(0)
        })
        .optional()?;
    let epoch = match epoch {
        Some(e) => e,
        None => {
            let e = new_epoch();
            conn.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?1)", [&e])?;
            e
        }
    };
    let manager = r2d2_sqlite::SqliteConnectionManager::file(path).with_init(|c| {
        c.busy_timeout(std::time::Duration::from_secs(5))?;
        c.execute_batch("PRAGMA synchronous = FULL;")
    });
    let pool = r2d2::Pool::builder()
        .max_size(readers.max(1))
        .min_idle(Some(1))
        .connection_timeout(std::time::Duration::from_secs(5))
        .build(manager)?;
    let reader = SqliteReader { pool };
    Ok((SqliteWriter { conn, epoch }, reader))
}

/// The SQLite writer (owned by the sequencer thread).
pub struct SqliteWriter {
    conn: Connection,
    epoch: String,
}

fn parse_event(epoch: &str, id: i64, body: &str) -> StoreResult<LoggedEvent> {
    let body = serde_json::from_str(body).map_err(|source| StoreError::Corrupt { id, source })?;
    Ok(LoggedEvent {
        epoch: epoch.to_owned(),
        id,
        body,
    })
}

impl LogWriter for SqliteWriter {
    fn epoch(&self) -> String {
        self.epoch.clone()
    }

    fn begin(&mut self, _keys: &[String]) -> StoreResult<()> {
        Ok(self.conn.execute_batch("BEGIN IMMEDIATE")?)
    }

    fn commit(&mut self) -> StoreResult<()> {
        Ok(self.conn.execute_batch("COMMIT")?)
    }

    fn rollback(&mut self) -> StoreResult<()> {
        Ok(self.conn.execute_batch("ROLLBACK")?)
    }

    fn catch_up(&mut self, _f: &mut dyn FnMut(EventBody)) -> StoreResult<Option<String>> {
        // One node owns the file: every event in it went through this writer.
        Ok(None)
    }

    fn send_stage(&mut self, seller: &str, client_ref: &str) -> StoreResult<Option<SendStage>> {
        let stage: Option<String> = self
            .conn
            .prepare_cached("SELECT stage FROM sends WHERE seller = ?1 AND client_ref = ?2")?
            .query_row([seller, client_ref], |r| r.get(0))
            .optional()?;
        Ok(stage.map(|s| SendStage::parse(&s).unwrap_or(SendStage::Calling)))
    }

    fn seen(&mut self, dedupe: &str) -> StoreResult<bool> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT 1 FROM dedupe_keys WHERE key = ?1 UNION ALL SELECT 1 FROM events WHERE dedupe = ?1",
            )?;
        Ok(stmt.exists([dedupe])?)
    }

    fn append(&mut self, event: &NewEvent) -> StoreResult<(LoggedEvent, String)> {
        let json = serde_json::to_string(&event.body)
            .map_err(|source| StoreError::Corrupt { id: 0, source })?;
        let public = matches!(event.audience, Audience::All);
        self.conn
            .prepare_cached(
                "INSERT INTO events (dedupe, kind, public, body) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![event.dedupe, event.body.kind(), public, json])?;
        let id = self.conn.last_insert_rowid();
        let now_ms = crate::sequencer::now().as_millis();
        if let Some(key) = &event.dedupe {
            self.conn
                .prepare_cached("INSERT OR REPLACE INTO dedupe_keys (key, at_ms) VALUES (?1, ?2)")?
                .execute(params![key, now_ms])?;
        }
        if let Some((seller, client_ref, sid, outcome, code)) = sent_columns(&event.body) {
            self.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO sent (seller, client_ref, message_sid, outcome, error_code, at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![seller, client_ref, sid, outcome, code, now_ms])?;
        }
        if let Audience::Sellers(sellers) = &event.audience {
            let mut stmt = self.conn.prepare_cached(
                "INSERT OR IGNORE INTO event_audience (seller, event_id) VALUES (?1, ?2)",
            )?;
            for s in sellers {
                stmt.execute(params![s, id])?;
            }
        }
        for op in &event.history {
            sqlite_history_op(&self.conn, op)?;
        }
        // The pushed JSON is the body's object with the epoch and id in front
        // (`LoggedEvent` flattens the body), built without serialising twice.
        let pushed = format!("{{\"epoch\":\"{}\",\"id\":{id},{}", self.epoch, &json[1..]);
        let logged = LoggedEvent {
            epoch: self.epoch.clone(),
            id,
            body: event.body.clone(),
        };
        Ok((logged, pushed))
    }

    fn replay(&mut self, after: i64, f: &mut dyn FnMut(EventBody)) -> StoreResult<()> {
        let through: i64 = self.conn.query_row(SQLITE_PRUNED, [], |r| r.get(0))?;
        if !sms_core::relay::retention::can_resume(after, through) {
            return Err(StoreError::Pruned { after, through });
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id, body FROM events WHERE id > ?1 ORDER BY id")?;
        let mut rows = stmt.query([after])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let body: String = row.get(1)?;
            f(parse_event(&self.epoch, id, &body)?.body);
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> StoreResult<Option<StoredCheckpoint>> {
        Ok(self
            .conn
            .query_row(
                "SELECT position, state FROM checkpoints ORDER BY position DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn checkpoints(&mut self) -> StoreResult<Vec<(i64, i64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT position, at_ms FROM checkpoints ORDER BY position")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn head(&mut self) -> StoreResult<i64> {
        Ok(self.conn.query_row(SQLITE_HEAD, [], |r| r.get(0))?)
    }

    fn save_checkpoint(&mut self, position: i64, state: &str, at_ms: i64) -> StoreResult<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO checkpoints (position, at_ms, state) VALUES (?1, ?2, ?3)",
            params![position, at_ms, state],
        )?;
        Ok(())
    }

    fn prune(&mut self, through: i64) -> StoreResult<()> {
        self.conn
            .execute("DELETE FROM event_audience WHERE event_id <= ?1", [through])?;
        self.conn
            .execute("DELETE FROM events WHERE id <= ?1", [through])?;
        self.conn
            .execute("DELETE FROM checkpoints WHERE position < ?1", [through])?;
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('pruned', ?1)
             ON CONFLICT (key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), CAST(?1 AS INTEGER))",
            [through.to_string()],
        )?;
        Ok(())
    }

    fn drop_checkpoints(&mut self, positions: &[i64]) -> StoreResult<()> {
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM checkpoints WHERE position = ?1")?;
        for p in positions {
            stmt.execute([p])?;
        }
        Ok(())
    }

    fn sent(&mut self) -> StoreResult<Vec<SentRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT seller, client_ref, message_sid, outcome, error_code FROM sent")?;
        let rows = stmt.query_map([], |r| {
            let outcome: String = r.get(3)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                SentMessage {
                    message_sid: r.get(2)?,
                    outcome: outcome_parse(&outcome),
                    error_code: r.get(4)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn expire(&mut self, before_ms: i64) -> StoreResult<()> {
        self.conn
            .execute("DELETE FROM sent WHERE at_ms < ?1", [before_ms])?;
        self.conn
            .execute("DELETE FROM dedupe_keys WHERE at_ms < ?1", [before_ms])?;
        Ok(())
    }

    fn reset(&mut self) -> StoreResult<String> {
        let epoch = new_epoch();
        self.conn.execute_batch(
            // Sends still queued or with the provider stay: their outcomes are logged
            // in the new epoch, and a retry must not send them again.
            // The sent and idempotency tables stay too (kept for their own time).
            "BEGIN IMMEDIATE; DELETE FROM events; DELETE FROM event_audience;
             DELETE FROM sqlite_sequence WHERE name = 'events'; DELETE FROM checkpoints;
             DELETE FROM meta WHERE key = 'pruned'; DELETE FROM history_conversations;
             DELETE FROM history_messages; DELETE FROM history_pending;",
        )?;
        self.conn
            .execute("UPDATE meta SET value = ?1 WHERE key = 'epoch'", [&epoch])?;
        self.conn.execute_batch("COMMIT")?;
        self.epoch = epoch.clone();
        Ok(epoch)
    }

    fn history(&mut self) -> StoreResult<History> {
        sqlite_history(&self.conn)
    }

    fn history_filled(&mut self) -> StoreResult<bool> {
        Ok(self
            .conn
            .prepare("SELECT 1 FROM meta WHERE key = 'history_filled'")?
            .exists([])?)
    }

    fn fill_history(&mut self, ops: &[HistoryOp]) -> StoreResult<()> {
        self.conn.execute_batch(
            "DELETE FROM history_conversations; DELETE FROM history_messages;
             DELETE FROM history_pending;
             INSERT OR REPLACE INTO meta (key, value) VALUES ('history_filled', '1');",
        )?;
        for op in ops {
            sqlite_history_op(&self.conn, op)?;
        }
        Ok(())
    }

    fn add_pending(&mut self, s: &PendingSend) -> StoreResult<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO sends (client_ref, seller, from_number, to_number, body, record_id, stage, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7)",
            params![s.client_ref, s.seller, s.from, s.to, s.body, s.record_id, s.at.as_millis()],
        )?;
        Ok(())
    }

    fn mark_calling(&mut self, seller: &str, client_ref: &str) -> StoreResult<()> {
        self.conn.execute(
            "UPDATE sends SET stage = 'calling' WHERE seller = ?1 AND client_ref = ?2",
            [seller, client_ref],
        )?;
        Ok(())
    }

    fn remove_pending(&mut self, seller: &str, client_ref: &str) -> StoreResult<()> {
        self.conn.execute(
            "DELETE FROM sends WHERE seller = ?1 AND client_ref = ?2",
            [seller, client_ref],
        )?;
        Ok(())
    }

    fn pending(&mut self) -> StoreResult<Vec<(PendingSend, SendStage)>> {
        let mut stmt = self.conn.prepare(
            "SELECT client_ref, seller, from_number, to_number, body, record_id, at_ms, stage
             FROM sends ORDER BY at_ms, seller, client_ref",
        )?;
        let rows = stmt.query_map([], |r| {
            let stage: String = r.get(7)?;
            Ok((
                PendingSend {
                    client_ref: r.get(0)?,
                    seller: r.get(1)?,
                    from: r.get(2)?,
                    to: r.get(3)?,
                    body: r.get(4)?,
                    record_id: r.get(5)?,
                    at: sms_core::Timestamp::from_millis(r.get(6)?),
                },
                // Anything but `queued` may have reached the provider: never resent.
                SendStage::parse(&stage).unwrap_or(SendStage::Calling),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn redact(&mut self, is_customer: &dyn Fn(&str) -> bool) -> StoreResult<Redacted> {
        // The candidates by SQL (not redacted yet), the number by the caller's key.
        let ids: Vec<i64> = {
            let mut stmt = self.conn.prepare(
                "SELECT id, CASE kind WHEN 'inbound' THEN json_extract(body, '$.from')
                   ELSE json_extract(body, '$.to') END
                 FROM events WHERE kind IN ('inbound', 'outbound')
                   AND (json_extract(body, '$.body') != ''
                        OR COALESCE(json_array_length(body, '$.media'), 0) > 0)",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
            })?;
            let mut ids = Vec::new();
            for row in rows {
                let (id, number) = row?;
                if number.as_deref().is_some_and(is_customer) {
                    ids.push(id);
                }
            }
            ids
        };
        {
            let mut stmt = self.conn.prepare_cached(
                "UPDATE events SET body = json_replace(body, '$.body', '', '$.media', json('[]'))
                 WHERE id = ?1",
            )?;
            for id in &ids {
                stmt.execute([id])?;
            }
        }
        // Its queued sends go; one already with the provider finishes, and its row
        // keeps no text (a recovery after a restart logs its outcome without it).
        let (queued, calling): (Vec<_>, Vec<_>) = {
            let mut stmt = self.conn.prepare(
                "SELECT seller, client_ref, to_number, stage = 'queued' FROM sends WHERE body <> ''",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, bool>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (seller, client_ref, to, queued) = row?;
                if is_customer(&to) {
                    out.push((seller, client_ref, queued));
                }
            }
            out.into_iter().partition(|(_, _, queued)| *queued)
        };
        for (seller, client_ref, _) in &queued {
            self.conn.execute(
                "DELETE FROM sends WHERE seller = ?1 AND client_ref = ?2 AND stage = 'queued'",
                [seller, client_ref],
            )?;
        }
        for (seller, client_ref, _) in &calling {
            self.conn.execute(
                "UPDATE sends SET body = '' WHERE seller = ?1 AND client_ref = ?2",
                [seller, client_ref],
            )?;
        }
        let sends = queued.into_iter().map(|(s, c, _)| (s, c)).collect();
        Ok(Redacted {
            events: ids.len() as u64,
            sends,
        })
    }

    fn forget_dedupe(&mut self, keys: &[String]) -> StoreResult<()> {
        for key in keys {
            self.conn
                .prepare_cached("DELETE FROM dedupe_keys WHERE key = ?1")?
                .execute([key])?;
            self.conn
                .prepare_cached("UPDATE events SET dedupe = NULL WHERE dedupe = ?1")?
                .execute([key])?;
        }
        Ok(())
    }
}

/// The SQLite readers (shared by HTTP handlers): a pool of connections.
pub struct SqliteReader {
    pool: r2d2::Pool<r2d2_sqlite::SqliteConnectionManager>,
}

impl SqliteReader {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let conn = self.pool.get()?;
        f(&conn)
    }
}

impl LogReader for SqliteReader {
    fn epoch(&self) -> StoreResult<String> {
        self.with(read_epoch)
    }

    fn since(&self, seller: &str, after: i64, limit: usize) -> StoreResult<Vec<LoggedEvent>> {
        self.with(|conn| {
            sqlite_page(
                conn,
                "SELECT id, body FROM events e WHERE e.id > ?1 AND (e.public = 1 OR EXISTS
                   (SELECT 1 FROM event_audience a WHERE a.seller = ?3 AND a.event_id = e.id))
                 ORDER BY e.id LIMIT ?2",
                after,
                limit,
                Some(seller),
            )
        })
    }

    fn all_since(&self, after: i64, limit: usize) -> StoreResult<Vec<LoggedEvent>> {
        self.with(|conn| {
            sqlite_page(
                conn,
                "SELECT id, body FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
                after,
                limit,
                None,
            )
        })
    }

    fn head(&self) -> StoreResult<i64> {
        self.with(|conn| Ok(conn.query_row(SQLITE_HEAD, [], |r| r.get(0))?))
    }

    fn pruned(&self) -> StoreResult<i64> {
        self.with(|conn| Ok(conn.query_row(SQLITE_PRUNED, [], |r| r.get(0))?))
    }

    fn history_conversations(
        &self,
        after: Option<&ConversationKey>,
        limit: usize,
    ) -> StoreResult<Vec<HistoryConversation>> {
        let after = after.cloned().unwrap_or_default();
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT org, customer, record, last_ms, rule, moves FROM history_conversations
                 WHERE (org, customer, record) > (?1, ?2, ?3)
                 ORDER BY org, customer, record LIMIT ?4",
            )?;
            let mut rows = stmt.query(params![
                after.org,
                after.customer,
                after.record,
                limit as i64
            ])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(sqlite_conversation(r)?);
            }
            Ok(out)
        })
    }

    fn history_messages(
        &self,
        key: &ConversationKey,
        limit: usize,
    ) -> StoreResult<Vec<HistoryMessage>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT message FROM history_messages WHERE org = ?1 AND customer = ?2 AND record = ?3
                 ORDER BY at_ms DESC, id DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![key.org, key.customer, key.record, limit as i64],
                |r| r.get::<_, String>(0),
            )?;
            let mut out = Vec::new();
            for json in rows {
                out.push(message_in(&json?, key)?);
            }
            out.reverse();
            Ok(out)
        })
    }

    fn snapshot(
        &self,
        page: usize,
        keep: Keep,
        out: tokio::sync::mpsc::Sender<SnapshotPart>,
    ) -> StoreResult<()> {
        let conn = self.pool.get()?;
        // Deferred: the first read fixes the snapshot (WAL), the writer goes on.
        conn.execute_batch("BEGIN")?;
        let result = sqlite_snapshot(&conn, page.max(1), &*keep, &out);
        let end = conn.execute_batch("COMMIT");
        result?;
        Ok(end?)
    }

    fn hook_cursor(&self) -> StoreResult<Option<String>> {
        self.with(|conn| {
            Ok(conn
                .query_row(
                    "SELECT value FROM meta WHERE key = 'crm_webhook_cursor'",
                    [],
                    |r| r.get(0),
                )
                .optional()?)
        })
    }

    fn advance_hook_cursor(&self, from: Option<&str>, to: &str) -> StoreResult<bool> {
        self.with(|conn| {
            let changed = match from {
                Some(from) => conn.execute(
                    "UPDATE meta SET value = ?2 WHERE key = 'crm_webhook_cursor' AND value = ?1",
                    params![from, to],
                )?,
                None => conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('crm_webhook_cursor', ?1)",
                    params![to],
                )?,
            };
            Ok(changed == 1)
        })
    }

    fn put_session(&self, id: &str, seller: &str, expires_ms: i64) -> StoreResult<()> {
        let now_ms = crate::sequencer::now().as_millis();
        self.with(|conn| {
            conn.execute(
                "DELETE FROM session_hashes WHERE expires_ms <= ?1",
                [now_ms],
            )?;
            conn.execute(
                "INSERT OR REPLACE INTO session_hashes (hash, seller, expires_ms) VALUES (?1, ?2, ?3)",
                params![session_hash(id), seller, expires_ms],
            )?;
            Ok(())
        })
    }

    fn session(&self, id: &str, now_ms: i64) -> StoreResult<Option<(String, i64)>> {
        self.with(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT seller, expires_ms FROM session_hashes WHERE hash = ?1 AND expires_ms > ?2",
                )?
                .query_row(params![session_hash(id), now_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?)
        })
    }

    fn delete_session(&self, id: &str) -> StoreResult<()> {
        self.with(|conn| {
            conn.execute(
                "DELETE FROM session_hashes WHERE hash = ?1",
                [session_hash(id)],
            )?;
            Ok(())
        })
    }

    fn delete_sessions_of(&self, seller: &str) -> StoreResult<()> {
        self.with(|conn| {
            conn.execute("DELETE FROM session_hashes WHERE seller = ?1", [seller])?;
            Ok(())
        })
    }

    fn purge_sessions(&self, now_ms: i64) -> StoreResult<()> {
        self.with(|conn| {
            conn.execute(
                "DELETE FROM session_hashes WHERE expires_ms <= ?1",
                [now_ms],
            )?;
            Ok(())
        })
    }

    fn add_subscription(
        &self,
        seller: &str,
        sub: &PushSubscription,
        max: usize,
    ) -> StoreResult<bool> {
        self.with(|conn| {
            let others: i64 = conn.query_row(
                "SELECT COUNT(*) FROM push_subscriptions WHERE seller = ?1 AND endpoint != ?2",
                params![seller, sub.endpoint],
                |r| r.get(0),
            )?;
            if others as usize >= max {
                return Ok(false);
            }
            conn.execute(
                "INSERT OR REPLACE INTO push_subscriptions (endpoint, seller, p256dh, auth) VALUES (?1, ?2, ?3, ?4)",
                params![sub.endpoint, seller, sub.p256dh, sub.auth],
            )?;
            Ok(true)
        })
    }

    fn delete_own_subscription(&self, seller: &str, endpoint: &str) -> StoreResult<()> {
        self.with(|conn| {
            conn.execute(
                "DELETE FROM push_subscriptions WHERE endpoint = ?1 AND seller = ?2",
                [endpoint, seller],
            )?;
            Ok(())
        })
    }

    fn put_subscription(&self, seller: &str, sub: &PushSubscription) -> StoreResult<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO push_subscriptions (endpoint, seller, p256dh, auth) VALUES (?1, ?2, ?3, ?4)",
                params![sub.endpoint, seller, sub.p256dh, sub.auth],
            )?;
            Ok(())
        })
    }

    fn subscriptions(&self, seller: &str) -> StoreResult<Vec<PushSubscription>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT endpoint, p256dh, auth FROM push_subscriptions WHERE seller = ?1",
            )?;
            let rows = stmt.query_map([seller], |r| {
                Ok(PushSubscription {
                    endpoint: r.get(0)?,
                    p256dh: r.get(1)?,
                    auth: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn delete_subscription(&self, endpoint: &str) -> StoreResult<()> {
        self.with(|conn| {
            conn.execute(
                "DELETE FROM push_subscriptions WHERE endpoint = ?1",
                [endpoint],
            )?;
            Ok(())
        })
    }

    fn vapid_key(&self) -> StoreResult<Option<String>> {
        self.with(|conn| {
            Ok(conn
                .query_row("SELECT value FROM meta WHERE key = 'vapid'", [], |r| {
                    r.get(0)
                })
                .optional()?)
        })
    }

    fn writable(&self) -> StoreResult<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('ready_probe', ?1)",
                [crate::sequencer::now().as_millis().to_string()],
            )?;
            Ok(())
        })
    }

    fn put_vapid_key(&self, key: &str) -> StoreResult<String> {
        self.with(|conn| {
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('vapid', ?1)",
                [key],
            )?;
            Ok(
                conn.query_row("SELECT value FROM meta WHERE key = 'vapid'", [], |r| {
                    r.get(0)
                })?,
            )
        })
    }

    fn export(&self, customer: &str, is_customer: &dyn Fn(&str) -> bool) -> StoreResult<Export> {
        let conn = self.pool.get()?;
        // One read transaction: the history and the log as of one commit.
        conn.execute_batch("BEGIN")?;
        let result = sqlite_export(&conn, customer, is_customer);
        let end = conn.execute_batch("COMMIT");
        let out = result?;
        end?;
        Ok(out)
    }
}

fn sqlite_export(
    conn: &Connection,
    customer: &str,
    is_customer: &dyn Fn(&str) -> bool,
) -> StoreResult<Export> {
    let mut conversations = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT org, customer, record, last_ms, rule, moves FROM history_conversations
             WHERE customer = ?1 ORDER BY org, customer, record",
        )?;
        let mut rows = stmt.query([customer])?;
        while let Some(r) = rows.next()? {
            conversations.push(sqlite_conversation(r)?);
        }
    }
    let mut messages = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT org, customer, record, message FROM history_messages WHERE customer = ?1",
        )?;
        let mut rows = stmt.query([customer])?;
        while let Some(r) = rows.next()? {
            let key = ConversationKey {
                org: r.get(0)?,
                customer: r.get(1)?,
                record: r.get(2)?,
            };
            messages.push(message_in(&r.get::<_, String>(3)?, &key)?);
        }
    }
    let epoch = read_epoch(conn)?;
    let mut events = Vec::new();
    {
        let mut stmt = conn.prepare(&format!(
            "SELECT id, body FROM events WHERE kind IN ({CUSTOMER_KINDS}) ORDER BY id"
        ))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let e = parse_event(&epoch, r.get(0)?, &r.get::<_, String>(1)?)?;
            if names_customer(&e.body, is_customer) {
                events.push(e);
            }
        }
    }
    let mut sends = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT client_ref, seller, from_number, to_number, body, record_id, at_ms, stage
             FROM sends ORDER BY at_ms, seller, client_ref",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let stage: String = r.get(7)?;
            let p = PendingSend {
                client_ref: r.get(0)?,
                seller: r.get(1)?,
                from: r.get(2)?,
                to: r.get(3)?,
                body: r.get(4)?,
                record_id: r.get(5)?,
                at: sms_core::Timestamp::from_millis(r.get(6)?),
            };
            if is_customer(&p.to) {
                sends.push((p, SendStage::parse(&stage).unwrap_or(SendStage::Calling)));
            }
        }
    }
    Ok(Export {
        conversations: group_export(conversations, messages),
        events,
        sends,
    })
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|source| StoreError::Corrupt { id: 0, source })
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> StoreResult<T> {
    serde_json::from_str(json).map_err(|source| StoreError::Corrupt { id: 0, source })
}

/// A stored message, in the conversation its columns name (a move re-keys the
/// columns only).
pub(crate) fn message_in(json: &str, key: &ConversationKey) -> StoreResult<HistoryMessage> {
    let mut m: HistoryMessage = from_json(json)?;
    m.conversation = key.clone();
    Ok(m)
}

/// A conversation from a row of `org, customer, record, last_ms, rule, moves`.
fn sqlite_conversation(r: &rusqlite::Row<'_>) -> StoreResult<HistoryConversation> {
    conversation_row(
        ConversationKey {
            org: r.get(0)?,
            customer: r.get(1)?,
            record: r.get(2)?,
        },
        r.get(3)?,
        r.get(4)?,
        &r.get::<_, String>(5)?,
    )
}

/// A conversation from its row: key, `last_ms`, `rule` (JSON or NULL), `moves` (JSON).
pub(crate) fn conversation_row(
    key: ConversationKey,
    last_ms: i64,
    rule: Option<String>,
    moves: &str,
) -> StoreResult<HistoryConversation> {
    Ok(HistoryConversation {
        key,
        last: sms_core::Timestamp::from_millis(last_ms),
        rule: rule.as_deref().map(from_json).transpose()?,
        moves: from_json(moves)?,
    })
}

/// A conversation's `rule` and `moves` columns.
pub(crate) fn conversation_columns(
    c: &HistoryConversation,
) -> StoreResult<(Option<String>, String)> {
    Ok((
        c.rule.as_ref().map(to_json).transpose()?,
        to_json(&c.moves)?,
    ))
}

/// A page of events after `after` by `sql` (`?1` after, `?2` limit, `?3` the seller
/// when given); [`StoreError::Pruned`] when events after `after` are gone.
fn sqlite_page(
    conn: &Connection,
    sql: &str,
    after: i64,
    limit: usize,
    seller: Option<&str>,
) -> StoreResult<Vec<LoggedEvent>> {
    let epoch = read_epoch(conn)?;
    let mut stmt = conn.prepare_cached(sql)?;
    let row = |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?));
    let rows = match seller {
        Some(s) => stmt.query_map(params![after, limit as i64, s], row)?,
        None => stmt.query_map(params![after, limit as i64], row)?,
    };
    let mut out = Vec::new();
    for row in rows {
        let (id, body) = row?;
        out.push(parse_event(&epoch, id, &body)?);
    }
    // Read after the events: a prune committed before that read is seen here, so a
    // page never silently misses pruned events.
    let through: i64 = conn.query_row(SQLITE_PRUNED, [], |r| r.get(0))?;
    if !sms_core::relay::retention::can_resume(after, through) {
        return Err(StoreError::Pruned { after, through });
    }
    Ok(out)
}

/// Carries out one history op ([`HistoryOp`] says what each means).
fn sqlite_history_op(conn: &Connection, op: &HistoryOp) -> StoreResult<()> {
    match op {
        HistoryOp::Erase { customer } => {
            conn.prepare_cached("DELETE FROM history_messages WHERE customer = ?1")?
                .execute([customer])?;
            conn.prepare_cached("DELETE FROM history_conversations WHERE customer = ?1")?
                .execute([customer])?;
        }
        HistoryOp::PutConversation { key, last, rule } => {
            let rule = rule.as_ref().map(to_json).transpose()?;
            conn.prepare_cached(
                "INSERT INTO history_conversations (org, customer, record, last_ms, rule, moves)
                 VALUES (?1, ?2, ?3, ?4, ?5, '[]')
                 ON CONFLICT (org, customer, record) DO UPDATE SET last_ms = excluded.last_ms,
                   rule = COALESCE(excluded.rule, history_conversations.rule)",
            )?
            .execute(params![
                key.org,
                key.customer,
                key.record,
                last.as_millis(),
                rule
            ])?;
        }
        HistoryOp::Move { from, to, entry } => {
            // Both rows in one read; the merge is the core's rule, not SQL's.
            let mut source = None;
            let mut target = None;
            {
                let mut stmt = conn.prepare_cached(
                    "SELECT org, customer, record, last_ms, rule, moves FROM history_conversations
                     WHERE (org = ?1 AND customer = ?2 AND record = ?3)
                        OR (org = ?4 AND customer = ?5 AND record = ?6)",
                )?;
                let mut rows = stmt.query(params![
                    from.org,
                    from.customer,
                    from.record,
                    to.org,
                    to.customer,
                    to.record
                ])?;
                while let Some(r) = rows.next()? {
                    let c = sqlite_conversation(r)?;
                    if c.key == *from {
                        source = Some(c.clone());
                    }
                    if c.key == *to && from != to {
                        target = Some(c);
                    }
                }
            }
            let moved = HistoryConversation::moved(source, target, to.clone(), entry.clone());
            conn.prepare_cached(
                "UPDATE history_messages SET org = ?4, customer = ?5, record = ?6
                 WHERE org = ?1 AND customer = ?2 AND record = ?3",
            )?
            .execute(params![
                from.org,
                from.customer,
                from.record,
                to.org,
                to.customer,
                to.record
            ])?;
            if from != to {
                conn.prepare_cached(
                    "DELETE FROM history_conversations
                     WHERE org = ?1 AND customer = ?2 AND record = ?3",
                )?
                .execute(params![from.org, from.customer, from.record])?;
            }
            let (rule, moves) = conversation_columns(&moved)?;
            conn.prepare_cached(
                "INSERT OR REPLACE INTO history_conversations
                 (org, customer, record, last_ms, rule, moves) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                moved.key.org,
                moved.key.customer,
                moved.key.record,
                moved.last.as_millis(),
                rule,
                moves
            ])?;
        }
        HistoryOp::PutMessage(m) => {
            let mut m = m.clone();
            if let Some(sid) = m.report_key().map(str::to_owned) {
                let early: Option<String> = conn
                    .prepare_cached(
                        "DELETE FROM history_pending WHERE message_sid = ?1 RETURNING delivery",
                    )?
                    .query_row([sid], |r| r.get(0))
                    .optional()?;
                let early = early.map(|d| from_json(&d)).transpose()?;
                m.delivery = history::settle(m.delivery, early.as_ref());
            }
            let k = &m.conversation;
            conn.prepare_cached(
                "INSERT OR IGNORE INTO history_messages
                 (id, org, customer, record, at_ms, provider_id, outbound, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                m.id,
                k.org,
                k.customer,
                k.record,
                m.at.as_millis(),
                m.provider_id,
                m.delivery.is_some(),
                to_json(&m)?
            ])?;
        }
        HistoryOp::Report {
            message_sid,
            status,
            error_code,
        } => {
            let found: Option<(String, String)> = conn
                .prepare_cached(
                    "SELECT id, message FROM history_messages WHERE provider_id = ?1 AND outbound",
                )?
                .query_row([message_sid], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            match found {
                Some((id, json)) => {
                    let mut m: history::HistoryMessage = from_json(&json)?;
                    m.delivery = Some(history::report(m.delivery.take(), *status, *error_code));
                    conn.prepare_cached("UPDATE history_messages SET message = ?2 WHERE id = ?1")?
                        .execute(params![id, to_json(&m)?])?;
                }
                None => {
                    let pending: Option<String> = conn
                        .prepare_cached(
                            "SELECT delivery FROM history_pending WHERE message_sid = ?1",
                        )?
                        .query_row([message_sid], |r| r.get(0))
                        .optional()?;
                    let pending = pending.map(|d| from_json(&d)).transpose()?;
                    let d = history::report(pending, *status, *error_code);
                    conn.prepare_cached(
                        "INSERT OR REPLACE INTO history_pending (message_sid, delivery) VALUES (?1, ?2)",
                    )?
                    .execute(params![message_sid, to_json(&d)?])?;
                }
            }
        }
    }
    Ok(())
}

/// Where an older page ends: a message's `(at_ms, id)`.
type Cursor = (i64, String);

/// [`LogReader::snapshot`] inside the reader's transaction. `Ok` early when the
/// receiver went.
fn sqlite_snapshot(
    conn: &Connection,
    page: usize,
    keep: &(dyn Fn(&ConversationKey) -> bool + Send + Sync),
    out: &tokio::sync::mpsc::Sender<SnapshotPart>,
) -> StoreResult<()> {
    let epoch = read_epoch(conn)?;
    let head: i64 = conn.query_row(SQLITE_HEAD, [], |r| r.get(0))?;
    // First pass: the keys only.
    let mut keys = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT org, customer, record FROM history_conversations ORDER BY org, customer, record",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let key = ConversationKey {
                org: r.get(0)?,
                customer: r.get(1)?,
                record: r.get(2)?,
            };
            if keep(&key) {
                keys.push(key);
            }
        }
    }
    let part = SnapshotPart::Head {
        epoch,
        head,
        conversations: keys.len() as u64,
    };
    if out.blocking_send(part).is_err() {
        return Ok(());
    }
    // The conversations with their latest page; remember where full pages start.
    let mut full: Vec<(ConversationKey, Cursor)> = Vec::new();
    let mut row = conn.prepare_cached(
        "SELECT last_ms, rule, moves FROM history_conversations
         WHERE org = ?1 AND customer = ?2 AND record = ?3",
    )?;
    let mut latest = conn.prepare_cached(
        "SELECT at_ms, id, message FROM history_messages
         WHERE org = ?1 AND customer = ?2 AND record = ?3
         ORDER BY at_ms DESC, id DESC LIMIT ?4",
    )?;
    for chunk in keys.chunks(SNAPSHOT_CHUNK) {
        let mut part = Vec::with_capacity(chunk.len());
        for key in chunk {
            let (last_ms, rule, moves): (i64, Option<String>, String) = row
                .query_row(params![key.org, key.customer, key.record], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            let c = conversation_row(key.clone(), last_ms, rule, &moves)?;
            let mut messages = Vec::new();
            let mut first: Option<Cursor> = None;
            let mut rows = latest.query(params![key.org, key.customer, key.record, page as i64])?;
            while let Some(r) = rows.next()? {
                first = Some((r.get(0)?, r.get(1)?));
                messages.push(message_in(&r.get::<_, String>(2)?, key)?);
            }
            messages.reverse();
            if let (true, Some(first)) = (messages.len() >= page, first) {
                full.push((key.clone(), first));
            }
            part.push((c, messages));
        }
        if out
            .blocking_send(SnapshotPart::Conversations(part))
            .is_err()
        {
            return Ok(());
        }
    }
    // Then what came before each full page, oldest first.
    let mut older = conn.prepare_cached(
        "SELECT at_ms, id, message FROM history_messages
         WHERE org = ?1 AND customer = ?2 AND record = ?3
           AND (at_ms, id) < (?4, ?5) AND (at_ms, id) > (?6, ?7)
         ORDER BY at_ms, id LIMIT ?8",
    )?;
    for (key, before) in full {
        let mut after: Cursor = (i64::MIN, String::new());
        loop {
            let mut messages = Vec::new();
            let mut rows = older.query(params![
                key.org,
                key.customer,
                key.record,
                before.0,
                before.1,
                after.0,
                after.1,
                SNAPSHOT_OLDER as i64
            ])?;
            while let Some(r) = rows.next()? {
                after = (r.get(0)?, r.get(1)?);
                messages.push(message_in(&r.get::<_, String>(2)?, &key)?);
            }
            let more = messages.len() == SNAPSHOT_OLDER;
            if messages.is_empty() {
                break;
            }
            if out
                .blocking_send(SnapshotPart::Older(key.clone(), messages))
                .is_err()
            {
                return Ok(());
            }
            if !more {
                break;
            }
        }
    }
    Ok(())
}

/// The whole history as the tables hold it (a message's conversation is its
/// columns': a move re-keys the columns only).
fn sqlite_history(conn: &Connection) -> StoreResult<History> {
    let mut h = History::default();
    let mut stmt = conn
        .prepare("SELECT org, customer, record, last_ms, rule, moves FROM history_conversations")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let c = sqlite_conversation(r)?;
        h.conversations.insert(c.key.clone(), c);
    }
    let mut stmt = conn.prepare("SELECT org, customer, record, message FROM history_messages")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let mut m: history::HistoryMessage = from_json(&r.get::<_, String>(3)?)?;
        m.conversation = history::ConversationKey {
            org: r.get(0)?,
            customer: r.get(1)?,
            record: r.get(2)?,
        };
        h.messages.insert(m.id.clone(), m);
    }
    let mut stmt = conn.prepare("SELECT message_sid, delivery FROM history_pending")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        h.pending
            .insert(r.get(0)?, from_json(&r.get::<_, String>(1)?)?);
    }
    Ok(h)
}
