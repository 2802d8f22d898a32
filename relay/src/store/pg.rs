//! The PostgreSQL backend: several relay nodes share one database (X9).
//!
//! - **One order.** A batch is one READ COMMITTED transaction whose first statement
//!   takes a cluster-wide advisory lock (`pg_advisory_xact_lock`). Under it the node
//!   catches its state up to the log head (the events other nodes appended), decides,
//!   allocates ids after the head (no sequence: a rollback leaves no gap), appends
//!   and commits; the lock is released only after the commit is visible, so commits
//!   happen in id order and a reader that reads `id > last` never skips an id. The
//!   lock is held for two round trips, each a pipeline of statements on the batch's
//!   connection: lock + epoch + events to catch up on + the batch's idempotency keys;
//!   inserts + `NOTIFY` + `COMMIT`.
//! - **Every node tails the log** ([`tail`]): `LISTEN` on a connection of its own
//!   (outside the pool) wakes it, then it reads `id > last`; it re-reads after every
//!   reconnect and polls as a fallback (notifications are lost while disconnected).
//!   The node's sequencer publishes its own batches itself when they follow what was
//!   published last; the tail publishes the rest, in id order.
//! - **Cluster-safe work.** Idempotency keys are unique in the table and checked
//!   under the lock; send rows carry their node and a lease the node renews; a node
//!   claims only rows whose lease expired, with `FOR UPDATE SKIP LOCKED`.
//!
//! The driver is async (`tokio-postgres` with `deadpool-postgres` pools); the store
//! seam is synchronous (the sequencer is a thread of its own). The writer drives its
//! connections from the sequencer's thread on a runtime of its own (`Local`: no
//! hop to another thread per round trip while the lock is held); the readers'
//! calls (blocking tasks of the handlers) wait for a small runtime of their own
//! ([`Bridge`]); the tail runs on a thread of its own ([`spawn_tail`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures_util::StreamExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

use super::{conversation_columns, conversation_row, from_json, message_in, to_json};
use super::{group_export, names_customer, Export, Redacted, CUSTOMER_KINDS};
use super::{
    new_epoch, outcome_parse, parse_event, sent_columns, session_hash, Keep, LogReader, LogWriter,
    NewEvent, PendingSend, PushSubscription, SendStage, SentColumns, SentMessage, SentRow,
    SnapshotPart, StoreError, StoreResult, StoredCheckpoint, SNAPSHOT_CHUNK, SNAPSHOT_OLDER,
};
use crate::model::{Audience, EventBody, LoggedEvent};
use sms_core::relay::history::{
    self, ConversationKey, History, HistoryConversation, HistoryMessage, HistoryOp,
};

/// The advisory lock every append batch of every node takes first.
const APPEND_LOCK: i64 = 0x534d_5352_4c59_0001;
/// The advisory lock migrations run under (nodes starting at once).
const MIGRATE_LOCK: i64 = 0x534d_5352_4c59_0002;
/// The notification channel a commit rings.
const CHANNEL: &str = "relay_events";

/// Versioned migrations, applied in order, each once, in one transaction.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (
  id BIGINT PRIMARY KEY,
  dedupe TEXT UNIQUE,
  kind TEXT NOT NULL,
  public BOOLEAN NOT NULL,
  body TEXT NOT NULL
);
CREATE TABLE event_audience (
  event_id BIGINT NOT NULL, seller TEXT NOT NULL, PRIMARY KEY (event_id, seller)
);
CREATE INDEX event_audience_by_seller ON event_audience (seller, event_id);
CREATE TABLE sends (
  seller TEXT NOT NULL, client_ref TEXT NOT NULL, from_number TEXT NOT NULL,
  to_number TEXT NOT NULL, body TEXT NOT NULL, record_id TEXT NOT NULL,
  stage TEXT NOT NULL, at_ms BIGINT NOT NULL,
  owner TEXT NOT NULL, lease_until_ms BIGINT NOT NULL,
  PRIMARY KEY (seller, client_ref)
);
CREATE INDEX sends_by_lease ON sends (lease_until_ms);
CREATE INDEX sends_by_owner ON sends (owner);
CREATE TABLE session_hashes (
  hash TEXT PRIMARY KEY, seller TEXT NOT NULL, expires_ms BIGINT NOT NULL
);
CREATE INDEX sessions_by_seller ON session_hashes (seller);
CREATE TABLE push_subscriptions (
  endpoint TEXT PRIMARY KEY, seller TEXT NOT NULL, p256dh TEXT NOT NULL, auth TEXT NOT NULL
);
CREATE INDEX push_by_seller ON push_subscriptions (seller);
",
    ),
    (
        2,
        "
-- Checkpoints of the shared state at a log position; the sent map and webhook
-- idempotency keys in tables of their own, kept for `idempotency_days` (X10).
CREATE TABLE checkpoints (position BIGINT PRIMARY KEY, at_ms BIGINT NOT NULL, state TEXT NOT NULL);
CREATE TABLE sent (
  seller TEXT NOT NULL, client_ref TEXT NOT NULL, message_sid TEXT, outcome TEXT NOT NULL,
  error_code BIGINT, at_ms BIGINT NOT NULL, PRIMARY KEY (seller, client_ref)
);
CREATE INDEX sent_by_age ON sent (at_ms);
CREATE TABLE dedupe_keys (key TEXT PRIMARY KEY, at_ms BIGINT NOT NULL);
CREATE INDEX dedupe_by_age ON dedupe_keys (at_ms);
INSERT INTO dedupe_keys (key, at_ms)
  SELECT dedupe, (extract(epoch FROM now()) * 1000)::bigint FROM events WHERE dedupe IS NOT NULL;
INSERT INTO sent (seller, client_ref, message_sid, outcome, error_code, at_ms)
  SELECT DISTINCT ON (b->>'by', b->>'client_ref') b->>'by', b->>'client_ref', b->>'message_sid',
         b->>'outcome', (b->>'error_code')::bigint, (extract(epoch FROM now()) * 1000)::bigint
  FROM (SELECT id, body::jsonb AS b FROM events WHERE kind = 'outbound') o
  ORDER BY b->>'by', b->>'client_ref', id DESC;
",
    ),
    (
        3,
        "
-- The per-conversation history (issue 17 item 2): the log's messages with their
-- latest delivery, per conversation, moves and merges applied; kept at the head
-- whatever is pruned. Reports whose message is not logged yet wait in
-- history_pending (D2).
-- A conversation's rule is the JSON of its RouteRule (NULL: none yet); its moves
-- the JSON list of its MoveEntry, oldest first.
CREATE TABLE history_conversations (
  org TEXT NOT NULL, customer TEXT NOT NULL, record TEXT NOT NULL, last_ms BIGINT NOT NULL,
  rule TEXT, moves TEXT NOT NULL DEFAULT '[]',
  PRIMARY KEY (org, customer, record)
);
CREATE TABLE history_messages (
  id TEXT PRIMARY KEY, org TEXT NOT NULL, customer TEXT NOT NULL, record TEXT NOT NULL,
  at_ms BIGINT NOT NULL, provider_id TEXT, outbound BOOLEAN NOT NULL, message TEXT NOT NULL
);
CREATE INDEX history_by_conversation ON history_messages (org, customer, record, at_ms);
CREATE INDEX history_by_provider ON history_messages (provider_id);
CREATE TABLE history_pending (message_sid TEXT PRIMARY KEY, delivery TEXT NOT NULL);
",
    ),
];

/// The driver's own small runtime, and a way for synchronous callers (the sequencer
/// thread, blocking tasks) to wait for work done on it. It stops when the last
/// handle goes.
pub struct Bridge {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Bridge {
    fn start() -> StoreResult<Arc<Self>> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("pg-io".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                rt.block_on(async move {
                    let _ = stopped.await;
                });
            })?;
        let handle = rx
            .recv()
            .map_err(|_| StoreError::PgPool("the driver's runtime did not start".into()))??;
        Ok(Arc::new(Self {
            handle,
            _stop: stop,
        }))
    }

    /// Runs `fut` on the driver's runtime and waits for it (from any thread).
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .expect("the driver's runtime runs while a store handle lives")
    }
}

/// The writer's own small runtime, driven by the thread that calls the writer (the
/// sequencer's, which waits for each round trip anyway): a batch's statements go
/// out and their answers come back on that thread, with no hop to another thread
/// and back for each round trip (a hop costs a wake-up, milliseconds on a busy
/// machine, and the append lock is held across them).
struct Local(Option<tokio::runtime::Runtime>);

impl Local {
    fn start() -> StoreResult<Self> {
        Ok(Self(Some(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        )))
    }

    /// Runs `fut` on this thread. Not from inside an async task (the sequencer
    /// has a thread of its own; tests call the writer from a thread).
    fn run<T>(&self, fut: impl Future<Output = T>) -> T {
        self.0
            .as_ref()
            .expect("the writer's runtime lives as long as the writer")
            .block_on(fut)
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // Wherever the writer is dropped (a test's async context too).
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn pool_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::PgPool(e.to_string())
}

async fn migrate(pool: &Pool) -> StoreResult<String> {
    let mut conn = pool.get().await.map_err(pool_error)?;
    let tx = conn.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS relay_migrations (
           version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    let applied: HashSet<i32> = tx
        .query("SELECT version FROM relay_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, sql) in MIGRATIONS {
        if !applied.contains(version) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO relay_migrations (version) VALUES ($1)",
                &[version],
            )
            .await?;
            tracing::info!(version, "database migrated");
        }
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING",
        &[&new_epoch()],
    )
    .await?;
    let epoch: String = tx
        .query_one("SELECT value FROM meta WHERE key = 'epoch'", &[])
        .await?
        .get(0);
    tx.commit().await?;
    Ok(epoch)
}

/// The connection settings of `url`, with every statement planned for its
/// parameters and no JIT compilation. A prepared statement otherwise switches to a
/// generic plan after five runs, made while the log was small: then
/// `events WHERE id > $1` (the catch-up) was a sequential scan of the whole log on
/// every batch, slower as the log grew (measured: 82 M rows read in a 15 s run of
/// 15,000 events). And before the tables are analysed the planner's estimates pass
/// `jit_above_cost`: the tail's read then took 27 ms, 26 of them compiling.
fn config(url: &str) -> StoreResult<tokio_postgres::Config> {
    const OPTIONS: &str = "-c plan_cache_mode=force_custom_plan -c jit=off";
    let mut config: tokio_postgres::Config = url.parse()?;
    let options = match config.get_options() {
        Some(o) => format!("{o} {OPTIONS}"),
        None => OPTIONS.to_owned(),
    };
    config.options(&options);
    Ok(config)
}

/// Opens the PostgreSQL store at `url` for node `node`: migrates it, and returns the
/// writer (the sequencer's) and the reader (handlers'), sharing a pool of `size`.
pub fn open(url: &str, node: &str, size: u32, lease_ms: u64) -> StoreResult<(PgWriter, PgReader)> {
    let bridge = Bridge::start()?;
    let config = config(url)?;
    let pool_of = |size: usize| {
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(pool_error)
    };
    let pool = pool_of(size.max(2) as usize)?;
    // The writer's connections live on its own runtime: a pool of their own.
    let writer_pool = pool_of(2)?;
    let epoch = {
        let pool = pool.clone();
        bridge.run(async move { migrate(&pool).await })?
    };
    let lease_ms = lease_ms.max(300) as i64;
    let writer = PgWriter {
        local: Local::start()?,
        pool: writer_pool,
        conn: None,
        epoch,
        applied: 0,
        head: 0,
        rows: Vec::new(),
        keys: HashSet::new(),
        known: HashMap::new(),
        read: None,
        node: node.to_owned(),
        lease_ms,
    };
    let reader = PgReader {
        bridge,
        pool,
        node: node.to_owned(),
        lease_ms,
    };
    Ok((writer, reader))
}

/// An appended event not yet written: appends are written together at commit.
struct Row {
    id: i64,
    dedupe: Option<String>,
    kind: String,
    public: bool,
    sellers: Vec<String>,
    body: String,
    sent: Option<SentColumns>,
    history: Vec<HistoryOp>,
}

/// The last event pruned (0: none), as an SQL expression.
const PG_PRUNED: &str = "COALESCE((SELECT value::bigint FROM meta WHERE key = 'pruned'), 0)";

/// The PostgreSQL writer (the sequencer thread's).
pub struct PgWriter {
    local: Local,
    pool: Pool,
    /// The batch's connection, between `begin` and `commit`/`rollback`.
    conn: Option<Arc<Object>>,
    epoch: String,
    /// The last id applied to the sequencer's state (committed).
    applied: i64,
    /// The last id allocated in the open batch.
    head: i64,
    rows: Vec<Row>,
    /// Idempotency keys appended in the open batch.
    keys: HashSet<String>,
    /// Idempotency keys looked up as the batch began (under the lock): in the log?
    known: HashMap<String, bool>,
    /// What the batch's first round trip read for `catch_up`: the epoch, the last
    /// event pruned and the events after `applied`.
    read: Option<(String, i64, Vec<tokio_postgres::Row>)>,
    node: String,
    lease_ms: i64,
}

fn now_ms() -> i64 {
    crate::sequencer::now().as_millis()
}

impl PgWriter {
    fn conn(&self) -> StoreResult<Arc<Object>> {
        self.conn
            .clone()
            .ok_or_else(|| StoreError::PgPool("no batch is open".into()))
    }

    /// One statement on the batch's connection.
    fn exec(
        &self,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Send + Sync>>,
    ) -> StoreResult<u64> {
        let conn = self.conn()?;
        self.local.run(async move {
            let stmt = conn.prepare_cached(sql).await?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            Ok(conn.execute(&stmt, &refs).await?)
        })
    }
}

fn boxed<T: ToSql + Send + Sync + 'static>(v: T) -> Box<dyn ToSql + Send + Sync> {
    Box::new(v)
}

fn pending_from(r: &tokio_postgres::Row) -> (PendingSend, SendStage) {
    let stage: String = r.get(7);
    (
        PendingSend {
            client_ref: r.get(0),
            seller: r.get(1),
            from: r.get(2),
            to: r.get(3),
            body: r.get(4),
            record_id: r.get(5),
            at: sms_core::Timestamp::from_millis(r.get(6)),
        },
        // Anything but `queued` may have reached the provider: never resent.
        SendStage::parse(&stage).unwrap_or(SendStage::Calling),
    )
}

const PENDING_COLUMNS: &str =
    "client_ref, seller, from_number, to_number, body, record_id, at_ms, stage";

impl LogWriter for PgWriter {
    fn epoch(&self) -> String {
        self.epoch.clone()
    }

    fn shared(&self) -> bool {
        true
    }

    fn begin(&mut self, keys: &[String]) -> StoreResult<()> {
        self.rows.clear();
        self.keys.clear();
        self.known.clear();
        self.read = None;
        self.head = self.applied;
        let pool = self.pool.clone();
        let after = self.applied;
        let asked = keys.to_vec();
        let (conn, epoch, events, found) = self.local.run(async move {
            let keys = asked;
            let conn = pool.get().await.map_err(pool_error)?;
            // Prepared once per connection (cached): no round trip after the first.
            let (lock, epoch, events, seen) = futures_util::future::try_join4(
                conn.prepare_cached("SELECT pg_advisory_xact_lock($1)"),
                conn.prepare_cached("SELECT value FROM meta WHERE key = 'epoch'"),
                conn.prepare_cached("SELECT id, body FROM events WHERE id > $1 ORDER BY id"),
                conn.prepare_cached(
                    "SELECT key FROM dedupe_keys WHERE key = ANY($1)
                     UNION SELECT dedupe FROM events WHERE dedupe = ANY($1)",
                ),
            )
            .await?;
            let pruned = conn
                .prepare_cached(
                    "SELECT COALESCE((SELECT value::bigint FROM meta WHERE key = 'pruned'), 0)",
                )
                .await?;
            // One round trip, pipelined in this order: the lock first; under READ
            // COMMITTED every later statement sees what the previous holder
            // committed: the epoch, the events to catch up on, and which of the
            // batch's idempotency keys are logged.
            let lock_p: [&(dyn ToSql + Sync); 1] = [&APPEND_LOCK];
            let after_p: [&(dyn ToSql + Sync); 1] = [&after];
            let keys_p: [&(dyn ToSql + Sync); 1] = [&keys];
            let (begun, locked, epoch, pruned, events, found) = futures_util::join!(
                conn.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
                conn.execute(&lock, &lock_p),
                conn.query_one(&epoch, &[]),
                conn.query_one(&pruned, &[]),
                conn.query(&events, &after_p),
                conn.query(&seen, &keys_p),
            );
            let read = begun
                .and(locked)
                .and_then(|_| Ok((epoch?, pruned?, events?, found?)));
            match read {
                Ok((epoch, pruned, events, found)) => {
                    Ok((conn, (epoch, pruned.get::<_, i64>(0)), events, found))
                }
                Err(e) => {
                    // A connection that cannot roll back is broken: not pooled again.
                    if conn.batch_execute("ROLLBACK").await.is_err() {
                        let _ = Object::take(conn);
                    }
                    Err(StoreError::from(e))
                }
            }
        })?;
        self.known = keys.iter().map(|k| (k.clone(), false)).collect();
        for r in &found {
            self.known.insert(r.get(0), true);
        }
        self.read = Some((epoch.0.get(0), epoch.1, events));
        self.conn = Some(Arc::new(conn));
        Ok(())
    }

    fn catch_up(&mut self, f: &mut dyn FnMut(EventBody)) -> StoreResult<Option<String>> {
        let (epoch, pruned, rows) = match self.read.take() {
            Some(read) => read,
            None => {
                let conn = self.conn()?;
                let after = self.applied;
                self.local.run(async move {
                    let epoch = conn.prepare_cached(
                        "SELECT value, COALESCE((SELECT value::bigint FROM meta WHERE key = 'pruned'), 0)
                         FROM meta WHERE key = 'epoch'",
                    );
                    let events = conn
                        .prepare_cached("SELECT id, body FROM events WHERE id > $1 ORDER BY id");
                    let (epoch, events) = futures_util::future::try_join(epoch, events).await?;
                    let (epoch, rows) = futures_util::future::try_join(
                        conn.query_one(&epoch, &[]),
                        conn.query(&events, &[&after]),
                    )
                    .await?;
                    Ok::<_, StoreError>((epoch.get::<_, String>(0), epoch.get::<_, i64>(1), rows))
                })?
            }
        };
        if epoch != self.epoch || pruned > self.applied {
            // Reset by another node, or pruned past this node's position: the
            // caller starts over from the newest checkpoint.
            self.epoch = epoch.clone();
            self.applied = 0;
            self.head = 0;
            return Ok(Some(epoch));
        }
        for r in rows {
            let id: i64 = r.get(0);
            let body: String = r.get(1);
            f(parse_event(&self.epoch, id, &body)?.body);
            self.applied = id;
        }
        self.head = self.applied;
        Ok(None)
    }

    fn refresh(&mut self, f: &mut dyn FnMut(EventBody)) -> StoreResult<Option<String>> {
        let pool = self.pool.clone();
        let after = self.applied;
        let rows = self.local.run(async move {
            let conn = pool.get().await.map_err(pool_error)?;
            // One statement: the events are of the epoch read with them.
            let read = conn
                .prepare_cached(
                    "SELECT m.value, e.id, e.body,
                       COALESCE((SELECT value::bigint FROM meta WHERE key = 'pruned'), 0)
                     FROM meta m LEFT JOIN LATERAL
                       (SELECT id, body FROM events WHERE id > $1 ORDER BY id) e ON true
                     WHERE m.key = 'epoch' ORDER BY e.id",
                )
                .await?;
            Ok::<_, StoreError>(conn.query(&read, &[&after]).await?)
        })?;
        let epoch: String = rows.first().map(|r| r.get(0)).unwrap_or_default();
        let pruned: i64 = rows.first().map_or(0, |r| r.get(3));
        if epoch != self.epoch || pruned > self.applied {
            self.epoch = epoch.clone();
            self.applied = 0;
            self.head = 0;
            return Ok(Some(epoch));
        }
        for r in rows {
            let Some(id) = r.get::<_, Option<i64>>(1) else {
                break;
            };
            let body: String = r.get(2);
            f(parse_event(&self.epoch, id, &body)?.body);
            self.applied = id;
        }
        self.head = self.applied;
        Ok(None)
    }

    fn commit(&mut self) -> StoreResult<()> {
        let conn = self.conn.take();
        let rows = std::mem::take(&mut self.rows);
        self.keys.clear();
        self.known.clear();
        self.read = None;
        let Some(conn) = conn else {
            return Err(StoreError::PgPool("no batch is open".into()));
        };
        let head = self.head;
        self.local.run(async move {
            if rows.is_empty() {
                conn.batch_execute("COMMIT").await?;
                return Ok(());
            }
            let mut ids = Vec::with_capacity(rows.len());
            let mut dedupes = Vec::with_capacity(rows.len());
            let mut kinds = Vec::with_capacity(rows.len());
            let mut publics = Vec::with_capacity(rows.len());
            let mut bodies = Vec::with_capacity(rows.len());
            let (mut a_ids, mut a_sellers) = (Vec::new(), Vec::new());
            let mut keys = Vec::new();
            let (mut s_sellers, mut s_refs, mut s_sids, mut s_outcomes, mut s_codes) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            // The history's ops first, in log order (some read what the previous wrote).
            for op in rows.iter().flat_map(|r| &r.history) {
                pg_history_op(&conn, op).await?;
            }
            for r in rows {
                if let Some(k) = &r.dedupe {
                    keys.push(k.clone());
                }
                if let Some((seller, client_ref, sid, outcome, code)) = r.sent {
                    s_sellers.push(seller);
                    s_refs.push(client_ref);
                    s_sids.push(sid);
                    s_outcomes.push(outcome.to_owned());
                    s_codes.push(code.map(i64::from));
                }
                for s in r.sellers {
                    a_ids.push(r.id);
                    a_sellers.push(s);
                }
                ids.push(r.id);
                dedupes.push(r.dedupe);
                kinds.push(r.kind);
                publics.push(r.public);
                bodies.push(r.body);
            }
            let (ins_events, ins_audience, notify) = futures_util::future::try_join3(
                conn.prepare_cached(
                    "INSERT INTO events (id, dedupe, kind, public, body)
                     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bool[], $5::text[])",
                ),
                conn.prepare_cached(
                    "INSERT INTO event_audience (event_id, seller)
                     SELECT * FROM UNNEST($1::bigint[], $2::text[]) ON CONFLICT DO NOTHING",
                ),
                conn.prepare_cached("SELECT pg_notify($1, $2)"),
            )
            .await?;
            let (ins_keys, ins_sent) = futures_util::future::try_join(
                conn.prepare_cached(
                    "INSERT INTO dedupe_keys (key, at_ms) SELECT k, $2 FROM UNNEST($1::text[]) k
                     ON CONFLICT (key) DO UPDATE SET at_ms = EXCLUDED.at_ms",
                ),
                conn.prepare_cached(
                    "INSERT INTO sent (seller, client_ref, message_sid, outcome, error_code, at_ms)
                     SELECT s, c, m, o, e, $6
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) AS t(s, c, m, o, e)
                     ON CONFLICT (seller, client_ref) DO UPDATE SET message_sid = EXCLUDED.message_sid,
                       outcome = EXCLUDED.outcome, error_code = EXCLUDED.error_code, at_ms = EXCLUDED.at_ms",
                ),
            )
            .await?;
            let now = now_ms();
            let head = head.to_string();
            // One round trip: the inserts, the doorbell to every node's tail and the
            // commit, pipelined. After a failed statement the server answers COMMIT
            // by rolling back (no error): every result is checked before the commit
            // is believed.
            let events_p: [&(dyn ToSql + Sync); 5] = [&ids, &dedupes, &kinds, &publics, &bodies];
            let audience_p: [&(dyn ToSql + Sync); 2] = [&a_ids, &a_sellers];
            let notify_p: [&(dyn ToSql + Sync); 2] = [&CHANNEL, &head];
            let keys_p: [&(dyn ToSql + Sync); 2] = [&keys, &now];
            let sent_p: [&(dyn ToSql + Sync); 6] =
                [&s_sellers, &s_refs, &s_sids, &s_outcomes, &s_codes, &now];
            let (a, b, k, s, c, commit) = futures_util::join!(
                conn.execute(&ins_events, &events_p),
                conn.execute(&ins_audience, &audience_p),
                conn.execute(&ins_keys, &keys_p),
                conn.execute(&ins_sent, &sent_p),
                conn.execute(&notify, &notify_p),
                conn.batch_execute("COMMIT"),
            );
            a.and(b).and(k).and(s).and(c).and(commit)?;
            Ok::<_, StoreError>(())
        })?;
        self.applied = self.head;
        Ok(())
    }

    fn rollback(&mut self) -> StoreResult<()> {
        self.rows.clear();
        self.keys.clear();
        self.known.clear();
        self.read = None;
        self.head = self.applied;
        if let Some(conn) = self.conn.take() {
            self.local.run(async move {
                // A connection that cannot roll back is broken: drop it from the pool.
                if conn.batch_execute("ROLLBACK").await.is_err() {
                    if let Ok(obj) = Arc::try_unwrap(conn) {
                        let _ = Object::take(obj);
                    }
                }
            });
        }
        Ok(())
    }

    fn seen(&mut self, dedupe: &str) -> StoreResult<bool> {
        if self.keys.contains(dedupe) {
            return Ok(true);
        }
        if let Some(&logged) = self.known.get(dedupe) {
            return Ok(logged);
        }
        let conn = self.conn()?;
        let key = dedupe.to_owned();
        self.local.run(async move {
            let stmt = conn
                .prepare_cached(
                    "SELECT 1 FROM dedupe_keys WHERE key = $1
                     UNION ALL SELECT 1 FROM events WHERE dedupe = $1 LIMIT 1",
                )
                .await?;
            Ok(conn.query_opt(&stmt, &[&key]).await?.is_some())
        })
    }

    fn append(&mut self, event: &NewEvent) -> StoreResult<(LoggedEvent, String)> {
        let json = serde_json::to_string(&event.body)
            .map_err(|source| StoreError::Corrupt { id: 0, source })?;
        // Ids are allocated under the lock, after the head: gap-free, in commit order.
        self.head += 1;
        let id = self.head;
        let (public, sellers) = match &event.audience {
            Audience::All => (true, Vec::new()),
            Audience::Sellers(s) => (false, s.clone()),
        };
        if let Some(k) = &event.dedupe {
            self.keys.insert(k.clone());
        }
        let pushed = format!("{{\"epoch\":\"{}\",\"id\":{id},{}", self.epoch, &json[1..]);
        self.rows.push(Row {
            id,
            dedupe: event.dedupe.clone(),
            kind: event.body.kind().to_owned(),
            public,
            sellers,
            body: json,
            sent: sent_columns(&event.body),
            history: event.history.clone(),
        });
        let logged = LoggedEvent {
            epoch: self.epoch.clone(),
            id,
            body: event.body.clone(),
        };
        Ok((logged, pushed))
    }

    fn replay(&mut self, after: i64, f: &mut dyn FnMut(EventBody)) -> StoreResult<()> {
        let pool = self.pool.clone();
        let (epoch, rows, through) = self.local.run(async move {
            let conn = pool.get().await.map_err(pool_error)?;
            let epoch: String = conn
                .query_one("SELECT value FROM meta WHERE key = 'epoch'", &[])
                .await?
                .get(0);
            let rows = conn
                .query(
                    "SELECT id, body FROM events WHERE id > $1 ORDER BY id",
                    &[&after],
                )
                .await?;
            // Read after the events: a prune committed before they were read shows.
            let through: i64 = conn
                .query_one(&format!("SELECT {PG_PRUNED}"), &[])
                .await?
                .get(0);
            Ok::<_, StoreError>((epoch, rows, through))
        })?;
        if !sms_core::relay::retention::can_resume(after, through) {
            return Err(StoreError::Pruned { after, through });
        }
        self.epoch = epoch;
        self.applied = after;
        for r in rows {
            let id: i64 = r.get(0);
            let body: String = r.get(1);
            f(parse_event(&self.epoch, id, &body)?.body);
            self.applied = id;
        }
        self.head = self.applied;
        Ok(())
    }

    fn checkpoint(&mut self) -> StoreResult<Option<StoredCheckpoint>> {
        let pool = self.pool.clone();
        self.local.run(async move {
            let conn = pool.get().await.map_err(pool_error)?;
            Ok(conn
                .query_opt(
                    "SELECT position, state FROM checkpoints ORDER BY position DESC LIMIT 1",
                    &[],
                )
                .await?
                .map(|r| (r.get(0), r.get(1))))
        })
    }

    fn checkpoints(&mut self) -> StoreResult<Vec<(i64, i64)>> {
        let conn = self.conn()?;
        self.local.run(async move {
            Ok(conn
                .query(
                    "SELECT position, at_ms FROM checkpoints ORDER BY position",
                    &[],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
        })
    }

    fn head(&mut self) -> StoreResult<i64> {
        // Under the lock, caught up: ids are allocated after it.
        Ok(self.head)
    }

    fn save_checkpoint(&mut self, position: i64, state: &str, at_ms: i64) -> StoreResult<()> {
        self.exec(
            "INSERT INTO checkpoints (position, at_ms, state) VALUES ($1, $2, $3)
             ON CONFLICT (position) DO UPDATE SET at_ms = EXCLUDED.at_ms, state = EXCLUDED.state",
            vec![boxed(position), boxed(at_ms), boxed(state.to_owned())],
        )?;
        Ok(())
    }

    fn prune(&mut self, through: i64) -> StoreResult<()> {
        self.exec(
            "DELETE FROM event_audience WHERE event_id <= $1",
            vec![boxed(through)],
        )?;
        self.exec("DELETE FROM events WHERE id <= $1", vec![boxed(through)])?;
        self.exec(
            "DELETE FROM checkpoints WHERE position < $1",
            vec![boxed(through)],
        )?;
        self.exec(
            "INSERT INTO meta (key, value) VALUES ('pruned', $1)
             ON CONFLICT (key) DO UPDATE
               SET value = GREATEST(meta.value::bigint, EXCLUDED.value::bigint)::text",
            vec![boxed(through.to_string())],
        )?;
        Ok(())
    }

    fn drop_checkpoints(&mut self, positions: &[i64]) -> StoreResult<()> {
        if !positions.is_empty() {
            self.exec(
                "DELETE FROM checkpoints WHERE position = ANY($1)",
                vec![boxed(positions.to_vec())],
            )?;
        }
        Ok(())
    }

    fn history_filled(&mut self) -> StoreResult<bool> {
        let pool = self.pool.clone();
        self.local.run(async move {
            let conn = pool.get().await.map_err(pool_error)?;
            Ok(conn
                .query_opt("SELECT 1 FROM meta WHERE key = 'history_filled'", &[])
                .await?
                .is_some())
        })
    }

    fn fill_history(&mut self, ops: &[HistoryOp]) -> StoreResult<()> {
        let conn = self.conn()?;
        let ops = ops.to_vec();
        self.local.run(async move {
            conn.batch_execute(
                "DELETE FROM history_conversations; DELETE FROM history_messages;
                 DELETE FROM history_pending;
                 INSERT INTO meta (key, value) VALUES ('history_filled', '1')
                   ON CONFLICT (key) DO NOTHING;",
            )
            .await?;
            for op in &ops {
                pg_history_op(&conn, op).await?;
            }
            Ok(())
        })
    }

    fn history(&mut self) -> StoreResult<History> {
        let pool = self.pool.clone();
        self.local.run(async move {
            let conn = pool.get().await.map_err(pool_error)?;
            let mut h = History::default();
            for r in conn
                .query(
                    "SELECT org, customer, record, last_ms, rule, moves FROM history_conversations",
                    &[],
                )
                .await?
            {
                let c = pg_conversation(&r)?;
                h.conversations.insert(c.key.clone(), c);
            }
            for r in conn
                .query(
                    "SELECT org, customer, record, message FROM history_messages",
                    &[],
                )
                .await?
            {
                let mut m: HistoryMessage = from_json(r.get(3))?;
                m.conversation = ConversationKey {
                    org: r.get(0),
                    customer: r.get(1),
                    record: r.get(2),
                };
                h.messages.insert(m.id.clone(), m);
            }
            for r in conn
                .query("SELECT message_sid, delivery FROM history_pending", &[])
                .await?
            {
                h.pending.insert(r.get(0), from_json(r.get(1))?);
            }
            Ok(h)
        })
    }

    fn sent(&mut self) -> StoreResult<Vec<SentRow>> {
        let pool = self.pool.clone();
        self.local.run(async move {
            let conn = pool.get().await.map_err(pool_error)?;
            Ok(conn
                .query(
                    "SELECT seller, client_ref, message_sid, outcome, error_code FROM sent",
                    &[],
                )
                .await?
                .iter()
                .map(|r| {
                    let code: Option<i64> = r.get(4);
                    (
                        r.get(0),
                        r.get(1),
                        SentMessage {
                            message_sid: r.get(2),
                            outcome: outcome_parse(r.get(3)),
                            error_code: code.and_then(|c| u32::try_from(c).ok()),
                        },
                    )
                })
                .collect())
        })
    }

    fn expire(&mut self, before_ms: i64) -> StoreResult<()> {
        self.exec("DELETE FROM sent WHERE at_ms < $1", vec![boxed(before_ms)])?;
        self.exec(
            "DELETE FROM dedupe_keys WHERE at_ms < $1",
            vec![boxed(before_ms)],
        )?;
        Ok(())
    }

    fn reset(&mut self) -> StoreResult<String> {
        let epoch = new_epoch();
        let pool = self.pool.clone();
        let e = epoch.clone();
        self.local.run(async move {
            let conn = pool.get().await.map_err(pool_error)?;
            // The sent and idempotency tables stay (kept for their own time).
            conn.batch_execute(&format!(
                "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({APPEND_LOCK});
                 DELETE FROM events; DELETE FROM event_audience; DELETE FROM checkpoints;
                 DELETE FROM meta WHERE key = 'pruned'; DELETE FROM history_conversations;
                 DELETE FROM history_messages; DELETE FROM history_pending;"
            ))
            .await?;
            conn.execute("UPDATE meta SET value = $1 WHERE key = 'epoch'", &[&e])
                .await?;
            conn.execute("SELECT pg_notify($1, '0')", &[&CHANNEL])
                .await?;
            conn.batch_execute("COMMIT").await?;
            Ok::<_, StoreError>(())
        })?;
        self.epoch = epoch.clone();
        self.applied = 0;
        self.head = 0;
        Ok(epoch)
    }

    fn add_pending(&mut self, s: &PendingSend) -> StoreResult<()> {
        self.exec(
            "INSERT INTO sends (client_ref, seller, from_number, to_number, body, record_id, stage, at_ms, owner, lease_until_ms)
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9)
             ON CONFLICT (seller, client_ref) DO UPDATE SET from_number = EXCLUDED.from_number,
               to_number = EXCLUDED.to_number, body = EXCLUDED.body, record_id = EXCLUDED.record_id,
               stage = 'queued', at_ms = EXCLUDED.at_ms, owner = EXCLUDED.owner,
               lease_until_ms = EXCLUDED.lease_until_ms",
            vec![
                boxed(s.client_ref.clone()),
                boxed(s.seller.clone()),
                boxed(s.from.clone()),
                boxed(s.to.clone()),
                boxed(s.body.clone()),
                boxed(s.record_id.clone()),
                boxed(s.at.as_millis()),
                boxed(self.node.clone()),
                boxed(now_ms() + self.lease_ms),
            ],
        )?;
        Ok(())
    }

    fn mark_calling(&mut self, seller: &str, client_ref: &str) -> StoreResult<()> {
        // The node that calls the provider holds the row from now on.
        self.exec(
            "UPDATE sends SET stage = 'calling', owner = $3, lease_until_ms = $4
             WHERE seller = $1 AND client_ref = $2",
            vec![
                boxed(seller.to_owned()),
                boxed(client_ref.to_owned()),
                boxed(self.node.clone()),
                boxed(now_ms() + self.lease_ms),
            ],
        )?;
        Ok(())
    }

    fn remove_pending(&mut self, seller: &str, client_ref: &str) -> StoreResult<()> {
        self.exec(
            "DELETE FROM sends WHERE seller = $1 AND client_ref = $2",
            vec![boxed(seller.to_owned()), boxed(client_ref.to_owned())],
        )?;
        Ok(())
    }

    fn send_stage(&mut self, seller: &str, client_ref: &str) -> StoreResult<Option<SendStage>> {
        let conn = self.conn()?;
        let (seller, client_ref) = (seller.to_owned(), client_ref.to_owned());
        let stage: Option<String> = self.local.run(async move {
            let stmt = conn
                .prepare_cached("SELECT stage FROM sends WHERE seller = $1 AND client_ref = $2")
                .await?;
            Ok::<_, StoreError>(
                conn.query_opt(&stmt, &[&seller, &client_ref])
                    .await?
                    .map(|r| r.get(0)),
            )
        })?;
        Ok(stage.map(|s| SendStage::parse(&s).unwrap_or(SendStage::Calling)))
    }

    fn pending(&mut self) -> StoreResult<Vec<(PendingSend, SendStage)>> {
        let pool = self.pool.clone();
        self.local.run(async move {
            let conn = pool.get().await.map_err(pool_error)?;
            let rows = conn
                .query(
                    &format!(
                        "SELECT {PENDING_COLUMNS} FROM sends ORDER BY at_ms, seller, client_ref"
                    ),
                    &[],
                )
                .await?;
            Ok(rows.iter().map(pending_from).collect())
        })
    }

    fn claim(&mut self) -> StoreResult<Vec<(PendingSend, SendStage)>> {
        let pool = self.pool.clone();
        let (node, lease) = (self.node.clone(), self.lease_ms);
        self.local
            .run(async move { claim_expired(&pool, &node, lease).await })
    }

    fn redact(&mut self, is_customer: &dyn Fn(&str) -> bool) -> StoreResult<Redacted> {
        // This batch's own events are inserted at its commit: the erasure's batch
        // holds only its `erased` event, which carries no body.
        let conn = self.conn()?;
        let c = conn.clone();
        let (events, sends) = self.local.run(async move {
            let events = c
                .query(
                    "SELECT id, CASE kind WHEN 'inbound' THEN body::jsonb->>'from'
                       ELSE body::jsonb->>'to' END
                     FROM events WHERE kind IN ('inbound', 'outbound')
                       AND (COALESCE(body::jsonb->>'body', '') <> ''
                            OR COALESCE(jsonb_array_length(CASE jsonb_typeof(body::jsonb->'media')
                                 WHEN 'array' THEN body::jsonb->'media' END), 0) > 0)",
                    &[],
                )
                .await?;
            let sends = c
                .query(
                    "SELECT seller, client_ref, to_number, stage FROM sends WHERE body <> ''",
                    &[],
                )
                .await?;
            Ok::<_, StoreError>((events, sends))
        })?;
        let ids: Vec<i64> = events
            .iter()
            .filter(|r| r.get::<_, Option<&str>>(1).is_some_and(is_customer))
            .map(|r| r.get(0))
            .collect();
        let (queued, calling): (Vec<_>, Vec<_>) = sends
            .iter()
            .filter(|r| is_customer(r.get(2)))
            .partition(|r| r.get::<_, &str>(3) == "queued");
        let (sellers, refs): (Vec<String>, Vec<String>) = queued
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .unzip();
        // One already with the provider finishes; its row keeps no text (a recovery
        // after a restart logs its outcome without it).
        let (cs, cr): (Vec<String>, Vec<String>) = calling
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .unzip();
        let (i, se, re) = (ids.clone(), sellers.clone(), refs.clone());
        self.local.run(async move {
            if !i.is_empty() {
                conn.execute(
                    "UPDATE events SET body = jsonb_set(jsonb_set(body::jsonb, '{body}', '\"\"'),
                       '{media}', '[]', false)::text
                     WHERE id = ANY($1)",
                    &[&i],
                )
                .await?;
            }
            if !se.is_empty() {
                conn.execute(
                    "DELETE FROM sends WHERE stage = 'queued' AND (seller, client_ref) IN
                       (SELECT * FROM UNNEST($1::text[], $2::text[]))",
                    &[&se, &re],
                )
                .await?;
            }
            if !cs.is_empty() {
                conn.execute(
                    "UPDATE sends SET body = '' WHERE (seller, client_ref) IN
                       (SELECT * FROM UNNEST($1::text[], $2::text[]))",
                    &[&cs, &cr],
                )
                .await?;
            }
            Ok::<_, StoreError>(())
        })?;
        Ok(Redacted {
            events: ids.len() as u64,
            sends: sellers.into_iter().zip(refs).collect(),
        })
    }

    fn forget_dedupe(&mut self, keys: &[String]) -> StoreResult<()> {
        if !keys.is_empty() {
            self.exec(
                "DELETE FROM dedupe_keys WHERE key = ANY($1)",
                vec![boxed(keys.to_vec())],
            )?;
            self.exec(
                "UPDATE events SET dedupe = NULL WHERE dedupe = ANY($1)",
                vec![boxed(keys.to_vec())],
            )?;
            for k in keys {
                self.keys.remove(k);
                self.known.remove(k);
            }
        }
        Ok(())
    }
}

/// Takes over the send rows whose lease expired (their node stopped renewing it):
/// each row goes to one node (`FOR UPDATE SKIP LOCKED`).
async fn claim_expired(
    pool: &Pool,
    node: &str,
    lease_ms: i64,
) -> StoreResult<Vec<(PendingSend, SendStage)>> {
    let conn = pool.get().await.map_err(pool_error)?;
    let now = now_ms();
    let rows = conn
        .query(
            &format!(
                "WITH expired AS (
                   SELECT seller, client_ref FROM sends WHERE lease_until_ms < $1
                   ORDER BY at_ms LIMIT 256 FOR UPDATE SKIP LOCKED)
                 UPDATE sends s SET owner = $2, lease_until_ms = $3
                 FROM expired e WHERE s.seller = e.seller AND s.client_ref = e.client_ref
                 RETURNING {}",
                PENDING_COLUMNS
                    .split(", ")
                    .map(|c| format!("s.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &[&now, &node, &(now + lease_ms)],
        )
        .await?;
    let mut claimed: Vec<_> = rows.iter().map(pending_from).collect();
    claimed.sort_by_key(|(p, _)| p.at);
    Ok(claimed)
}

/// The PostgreSQL readers (shared by HTTP handlers): the pool.
pub struct PgReader {
    bridge: Arc<Bridge>,
    pool: Pool,
    node: String,
    lease_ms: i64,
}

type Param = Box<dyn ToSql + Send + Sync>;

impl PgReader {
    fn exec(&self, sql: &'static str, params: Vec<Param>) -> StoreResult<u64> {
        let pool = self.pool.clone();
        self.bridge.run(async move {
            let conn = pool.get().await.map_err(pool_error)?;
            let stmt = conn.prepare_cached(sql).await?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            Ok(conn.execute(&stmt, &refs).await?)
        })
    }

    fn query(
        &self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> StoreResult<Vec<tokio_postgres::Row>> {
        let pool = self.pool.clone();
        self.bridge.run(async move {
            let conn = pool.get().await.map_err(pool_error)?;
            let stmt = conn.prepare_cached(sql).await?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            Ok(conn.query(&stmt, &refs).await?)
        })
    }
}

impl PgReader {
    /// A page of events after `after` by `sql` (`$1` after, `$2` limit, `$3` the
    /// seller when given); [`StoreError::Pruned`] when events after `after` are gone.
    fn page(
        &self,
        sql: &'static str,
        after: i64,
        limit: usize,
        seller: Option<String>,
    ) -> StoreResult<Vec<LoggedEvent>> {
        let pool = self.pool.clone();
        let (epoch, rows) = self.bridge.run(async move {
            let conn = pool.get().await.map_err(pool_error)?;
            // One snapshot for the epoch and the events.
            let epoch = conn.prepare_cached("SELECT value FROM meta WHERE key = 'epoch'");
            let events = conn.prepare_cached(sql);
            let (epoch, events) = futures_util::future::try_join(epoch, events).await?;
            let epoch: String = conn.query_one(&epoch, &[]).await?.get(0);
            let limit = limit as i64;
            let rows = match &seller {
                Some(s) => conn.query(&events, &[&after, &limit, s]).await?,
                None => conn.query(&events, &[&after, &limit]).await?,
            };
            // Read after the events: a prune committed before they were read shows.
            let through: i64 = conn
                .query_one(&format!("SELECT {PG_PRUNED}"), &[])
                .await?
                .get(0);
            if !sms_core::relay::retention::can_resume(after, through) {
                return Err(StoreError::Pruned { after, through });
            }
            Ok::<_, StoreError>((epoch, rows))
        })?;
        rows.iter()
            .map(|r| parse_event(&epoch, r.get(0), r.get::<_, &str>(1)))
            .collect()
    }
}

impl LogReader for PgReader {
    fn epoch(&self) -> StoreResult<String> {
        Ok(self
            .query("SELECT value FROM meta WHERE key = 'epoch'", vec![])?
            .first()
            .map(|r| r.get(0))
            .unwrap_or_default())
    }

    fn since(&self, seller: &str, after: i64, limit: usize) -> StoreResult<Vec<LoggedEvent>> {
        self.page(
            "SELECT e.id, e.body FROM events e WHERE e.id > $1 AND (e.public OR EXISTS
               (SELECT 1 FROM event_audience a WHERE a.event_id = e.id AND a.seller = $3))
             ORDER BY e.id LIMIT $2",
            after,
            limit,
            Some(seller.to_owned()),
        )
    }

    fn all_since(&self, after: i64, limit: usize) -> StoreResult<Vec<LoggedEvent>> {
        self.page(
            "SELECT id, body FROM events WHERE id > $1 ORDER BY id LIMIT $2",
            after,
            limit,
            None,
        )
    }

    fn head(&self) -> StoreResult<i64> {
        Ok(self
            .query(
                "SELECT GREATEST(COALESCE(MAX(id), 0)::bigint,
                   COALESCE((SELECT value::bigint FROM meta WHERE key = 'pruned'), 0)) FROM events",
                vec![],
            )?
            .first()
            .map_or(0, |r| r.get(0)))
    }

    fn pruned(&self) -> StoreResult<i64> {
        Ok(self
            .query(
                "SELECT COALESCE((SELECT value::bigint FROM meta WHERE key = 'pruned'), 0)",
                vec![],
            )?
            .first()
            .map_or(0, |r| r.get(0)))
    }

    fn history_conversations(
        &self,
        after: Option<&ConversationKey>,
        limit: usize,
    ) -> StoreResult<Vec<HistoryConversation>> {
        let after = after.cloned().unwrap_or_default();
        let rows = self.query(
            "SELECT org, customer, record, last_ms, rule, moves FROM history_conversations
             WHERE (org, customer, record) > ($1, $2, $3)
             ORDER BY org, customer, record LIMIT $4",
            vec![
                Box::new(after.org),
                Box::new(after.customer),
                Box::new(after.record),
                Box::new(limit as i64),
            ],
        )?;
        rows.iter().map(pg_conversation).collect()
    }

    fn history_messages(
        &self,
        key: &ConversationKey,
        limit: usize,
    ) -> StoreResult<Vec<HistoryMessage>> {
        let rows = self.query(
            "SELECT message FROM history_messages WHERE org = $1 AND customer = $2 AND record = $3
             ORDER BY at_ms DESC, id DESC LIMIT $4",
            vec![
                Box::new(key.org.clone()),
                Box::new(key.customer.clone()),
                Box::new(key.record.clone()),
                Box::new(limit as i64),
            ],
        )?;
        let mut out = rows
            .iter()
            .map(|r| message_in(r.get(0), key))
            .collect::<StoreResult<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    fn snapshot(
        &self,
        page: usize,
        keep: Keep,
        out: tokio::sync::mpsc::Sender<SnapshotPart>,
    ) -> StoreResult<()> {
        let pool = self.pool.clone();
        self.bridge.run(async move {
            let conn = pool.get().await.map_err(pool_error)?;
            // One snapshot of the database for every read below.
            conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
            let result = pg_snapshot(&conn, page.max(1), &*keep, &out).await;
            // Read only: ending it either way changes nothing. A connection that
            // cannot end its transaction is broken: not pooled again.
            if conn.batch_execute("COMMIT").await.is_err() {
                let _ = Object::take(conn);
            }
            result
        })
    }

    fn hook_cursor(&self) -> StoreResult<Option<String>> {
        Ok(self
            .query(
                "SELECT value FROM meta WHERE key = 'crm_webhook_cursor'",
                vec![],
            )?
            .first()
            .map(|r| r.get(0)))
    }

    fn advance_hook_cursor(&self, from: Option<&str>, to: &str) -> StoreResult<bool> {
        let changed = match from {
            Some(from) => self.exec(
                "UPDATE meta SET value = $2 WHERE key = 'crm_webhook_cursor' AND value = $1",
                vec![boxed(from.to_owned()), boxed(to.to_owned())],
            )?,
            None => self.exec(
                "INSERT INTO meta (key, value) VALUES ('crm_webhook_cursor', $1)
                 ON CONFLICT (key) DO NOTHING",
                vec![boxed(to.to_owned())],
            )?,
        };
        Ok(changed == 1)
    }

    fn put_session(&self, id: &str, seller: &str, expires_ms: i64) -> StoreResult<()> {
        self.exec(
            "DELETE FROM session_hashes WHERE expires_ms <= $1",
            vec![boxed(now_ms())],
        )?;
        self.exec(
            "INSERT INTO session_hashes (hash, seller, expires_ms) VALUES ($1, $2, $3)
             ON CONFLICT (hash) DO UPDATE SET seller = EXCLUDED.seller, expires_ms = EXCLUDED.expires_ms",
            vec![boxed(session_hash(id)), boxed(seller.to_owned()), boxed(expires_ms)],
        )?;
        Ok(())
    }

    fn session(&self, id: &str, now_ms: i64) -> StoreResult<Option<(String, i64)>> {
        Ok(self
            .query(
                "SELECT seller, expires_ms FROM session_hashes WHERE hash = $1 AND expires_ms > $2",
                vec![boxed(session_hash(id)), boxed(now_ms)],
            )?
            .first()
            .map(|r| (r.get(0), r.get(1))))
    }

    fn delete_session(&self, id: &str) -> StoreResult<()> {
        self.exec(
            "DELETE FROM session_hashes WHERE hash = $1",
            vec![boxed(session_hash(id))],
        )?;
        Ok(())
    }

    fn delete_sessions_of(&self, seller: &str) -> StoreResult<()> {
        self.exec(
            "DELETE FROM session_hashes WHERE seller = $1",
            vec![boxed(seller.to_owned())],
        )?;
        Ok(())
    }

    fn purge_sessions(&self, now_ms: i64) -> StoreResult<()> {
        self.exec(
            "DELETE FROM session_hashes WHERE expires_ms <= $1",
            vec![boxed(now_ms)],
        )?;
        Ok(())
    }

    fn put_subscription(&self, seller: &str, sub: &PushSubscription) -> StoreResult<()> {
        self.exec(
            "INSERT INTO push_subscriptions (endpoint, seller, p256dh, auth) VALUES ($1, $2, $3, $4)
             ON CONFLICT (endpoint) DO UPDATE SET seller = EXCLUDED.seller, p256dh = EXCLUDED.p256dh,
               auth = EXCLUDED.auth",
            vec![
                boxed(sub.endpoint.clone()),
                boxed(seller.to_owned()),
                boxed(sub.p256dh.clone()),
                boxed(sub.auth.clone()),
            ],
        )?;
        Ok(())
    }

    fn add_subscription(
        &self,
        seller: &str,
        sub: &PushSubscription,
        max: usize,
    ) -> StoreResult<bool> {
        let pool = self.pool.clone();
        let (seller, sub) = (seller.to_owned(), sub.clone());
        self.bridge.run(async move {
            let mut conn = pool.get().await.map_err(pool_error)?;
            let tx = conn.transaction().await?;
            // One seller's subscriptions change one at a time across nodes.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext('push:' || $1))",
                &[&seller],
            )
            .await?;
            let others: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM push_subscriptions WHERE seller = $1 AND endpoint <> $2",
                    &[&seller, &sub.endpoint],
                )
                .await?
                .get(0);
            if others as usize >= max {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO push_subscriptions (endpoint, seller, p256dh, auth) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (endpoint) DO UPDATE SET seller = EXCLUDED.seller,
                   p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth",
                &[&sub.endpoint, &seller, &sub.p256dh, &sub.auth],
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn subscriptions(&self, seller: &str) -> StoreResult<Vec<PushSubscription>> {
        Ok(self
            .query(
                "SELECT endpoint, p256dh, auth FROM push_subscriptions WHERE seller = $1",
                vec![boxed(seller.to_owned())],
            )?
            .iter()
            .map(|r| PushSubscription {
                endpoint: r.get(0),
                p256dh: r.get(1),
                auth: r.get(2),
            })
            .collect())
    }

    fn delete_subscription(&self, endpoint: &str) -> StoreResult<()> {
        self.exec(
            "DELETE FROM push_subscriptions WHERE endpoint = $1",
            vec![boxed(endpoint.to_owned())],
        )?;
        Ok(())
    }

    fn delete_own_subscription(&self, seller: &str, endpoint: &str) -> StoreResult<()> {
        self.exec(
            "DELETE FROM push_subscriptions WHERE endpoint = $1 AND seller = $2",
            vec![boxed(endpoint.to_owned()), boxed(seller.to_owned())],
        )?;
        Ok(())
    }

    fn vapid_key(&self) -> StoreResult<Option<String>> {
        Ok(self
            .query("SELECT value FROM meta WHERE key = 'vapid'", vec![])?
            .first()
            .map(|r| r.get(0)))
    }

    fn put_vapid_key(&self, key: &str) -> StoreResult<String> {
        self.exec(
            "INSERT INTO meta (key, value) VALUES ('vapid', $1) ON CONFLICT (key) DO NOTHING",
            vec![boxed(key.to_owned())],
        )?;
        self.vapid_key()?
            .ok_or_else(|| StoreError::PgPool("the VAPID key was not kept".into()))
    }

    fn writable(&self) -> StoreResult<()> {
        self.exec(
            "INSERT INTO meta (key, value) VALUES ('ready_probe', $1)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            vec![boxed(now_ms().to_string())],
        )?;
        Ok(())
    }

    fn release_leases(&self) -> StoreResult<()> {
        self.exec(
            "UPDATE sends SET lease_until_ms = 0 WHERE owner = $1",
            vec![boxed(self.node.clone())],
        )?;
        Ok(())
    }

    fn renew_and_claim(&self) -> StoreResult<Vec<(PendingSend, SendStage)>> {
        let pool = self.pool.clone();
        let (node, lease) = (self.node.clone(), self.lease_ms);
        self.bridge.run(async move {
            {
                let conn = pool.get().await.map_err(pool_error)?;
                conn.execute(
                    "UPDATE sends SET lease_until_ms = $1 WHERE owner = $2",
                    &[&(now_ms() + lease), &node],
                )
                .await?;
            }
            claim_expired(&pool, &node, lease).await
        })
    }

    fn export(&self, customer: &str, is_customer: &dyn Fn(&str) -> bool) -> StoreResult<Export> {
        let pool = self.pool.clone();
        let customer = customer.to_owned();
        let (epoch, conversations, messages, events, sends) = self.bridge.run(async move {
            let conn = pool.get().await.map_err(pool_error)?;
            // One snapshot of the database for every read below.
            conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
            let read = async {
                let epoch: String = conn
                    .query_one("SELECT value FROM meta WHERE key = 'epoch'", &[])
                    .await?
                    .get(0);
                let conversations = conn
                    .query(
                        "SELECT org, customer, record, last_ms, rule, moves
                         FROM history_conversations WHERE customer = $1
                         ORDER BY org COLLATE \"C\", record COLLATE \"C\"",
                        &[&customer],
                    )
                    .await?;
                let messages = conn
                    .query(
                        "SELECT org, customer, record, message FROM history_messages
                         WHERE customer = $1",
                        &[&customer],
                    )
                    .await?;
                let events = conn
                    .query(
                        &format!(
                            "SELECT id, body FROM events WHERE kind IN ({CUSTOMER_KINDS}) ORDER BY id"
                        ),
                        &[],
                    )
                    .await?;
                let sends = conn
                    .query(
                        &format!("SELECT {PENDING_COLUMNS} FROM sends ORDER BY at_ms, seller, client_ref"),
                        &[],
                    )
                    .await?;
                Ok::<_, StoreError>((epoch, conversations, messages, events, sends))
            }
            .await;
            if conn.batch_execute("COMMIT").await.is_err() {
                let _ = Object::take(conn);
            }
            read
        })?;
        let conversations = conversations
            .iter()
            .map(pg_conversation)
            .collect::<StoreResult<Vec<_>>>()?;
        let messages = messages
            .iter()
            .map(|r| {
                message_in(
                    r.get(3),
                    &ConversationKey {
                        org: r.get(0),
                        customer: r.get(1),
                        record: r.get(2),
                    },
                )
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let mut kept = Vec::new();
        for r in &events {
            let e = parse_event(&epoch, r.get(0), r.get::<_, &str>(1))?;
            if names_customer(&e.body, is_customer) {
                kept.push(e);
            }
        }
        Ok(Export {
            conversations: group_export(conversations, messages),
            events: kept,
            sends: sends
                .iter()
                .map(pending_from)
                .filter(|(p, _)| is_customer(&p.to))
                .collect(),
        })
    }
}

/// The latest page of each conversation of a chunk, in one statement: the chunk's
/// keys in order (`$1..$3`), each with its row and its latest `$4` messages,
/// oldest first (a conversation without messages comes once, with NULLs).
const SNAPSHOT_LATEST: &str = "SELECT k.n, c.last_ms, c.rule, c.moves, m.at_ms, m.id, m.message
   FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k(org, customer, record, n)
   JOIN history_conversations c
     ON c.org = k.org AND c.customer = k.customer AND c.record = k.record
   LEFT JOIN LATERAL (
     SELECT h.at_ms, h.id, h.message FROM history_messages h
      WHERE h.org = k.org AND h.customer = k.customer AND h.record = k.record
      ORDER BY h.at_ms DESC, h.id COLLATE \"C\" DESC LIMIT $4) m ON true
  ORDER BY k.n, m.at_ms, m.id COLLATE \"C\"";

/// A page of the messages of one conversation before `($4, $5)` and after
/// `($6, $7)` (`(at_ms, id)`, ids compared bytewise as Rust does), oldest first.
const SNAPSHOT_OLDER_READ: &str = "SELECT at_ms, id, message FROM history_messages
  WHERE org = $1 AND customer = $2 AND record = $3
    AND (at_ms < $4 OR (at_ms = $4 AND id COLLATE \"C\" < $5))
    AND (at_ms > $6 OR (at_ms = $6 AND id COLLATE \"C\" > $7))
  ORDER BY at_ms, id COLLATE \"C\" LIMIT $8";

/// [`LogReader::snapshot`] inside the reader's transaction. `Ok` early when the
/// receiver went.
async fn pg_snapshot(
    conn: &Object,
    page: usize,
    keep: &(dyn Fn(&ConversationKey) -> bool + Send + Sync),
    out: &tokio::sync::mpsc::Sender<SnapshotPart>,
) -> StoreResult<()> {
    let (head, keys, latest, older) = futures_util::future::try_join4(
        conn.prepare_cached(&format!(
            "SELECT (SELECT value FROM meta WHERE key = 'epoch'),
               GREATEST(COALESCE((SELECT MAX(id) FROM events), 0)::bigint, {PG_PRUNED})"
        )),
        conn.prepare_cached("SELECT org, customer, record FROM history_conversations"),
        conn.prepare_cached(SNAPSHOT_LATEST),
        conn.prepare_cached(SNAPSHOT_OLDER_READ),
    )
    .await?;
    // One round trip: the position and every key (the first pass: keys only).
    let (head, rows) =
        futures_util::future::try_join(conn.query_one(&head, &[]), conn.query(&keys, &[])).await?;
    let epoch: Option<String> = head.get(0);
    let head: i64 = head.get(1);
    let mut keys: Vec<ConversationKey> = rows
        .iter()
        .map(|r| ConversationKey {
            org: r.get(0),
            customer: r.get(1),
            record: r.get(2),
        })
        .filter(|k| keep(k))
        .collect();
    drop(rows);
    // Key order as Rust compares strings (bytewise), whatever the database's collation.
    keys.sort_unstable();
    let part = SnapshotPart::Head {
        epoch: epoch.unwrap_or_default(),
        head,
        conversations: keys.len() as u64,
    };
    if out.send(part).await.is_err() {
        return Ok(());
    }
    let limit = page as i64;
    let mut full: Vec<(ConversationKey, (i64, String))> = Vec::new();
    for chunk in keys.chunks(SNAPSHOT_CHUNK) {
        let orgs: Vec<&str> = chunk.iter().map(|k| k.org.as_str()).collect();
        let customers: Vec<&str> = chunk.iter().map(|k| k.customer.as_str()).collect();
        let records: Vec<&str> = chunk.iter().map(|k| k.record.as_str()).collect();
        let rows = conn
            .query(&latest, &[&orgs, &customers, &records, &limit])
            .await?;
        let mut part: Vec<(HistoryConversation, Vec<HistoryMessage>)> =
            Vec::with_capacity(chunk.len());
        let mut firsts: Vec<Option<(i64, String)>> = Vec::with_capacity(chunk.len());
        for r in &rows {
            let n = usize::try_from(r.get::<_, i64>(0) - 1).unwrap_or(usize::MAX);
            let Some(key) = chunk.get(n) else {
                continue;
            };
            if part.last().is_none_or(|(c, _)| c.key != *key) {
                part.push((
                    conversation_row(key.clone(), r.get(1), r.get(2), r.get(3))?,
                    Vec::new(),
                ));
                firsts.push(None);
            }
            let Some(json) = r.get::<_, Option<&str>>(6) else {
                continue;
            };
            let (c, messages) = part.last_mut().expect("pushed above");
            if messages.is_empty() {
                *firsts.last_mut().expect("pushed above") = Some((r.get(4), r.get(5)));
            }
            messages.push(message_in(json, &c.key)?);
        }
        drop(rows);
        for ((c, messages), first) in part.iter().zip(firsts) {
            if let (true, Some(first)) = (messages.len() >= page, first) {
                full.push((c.key.clone(), first));
            }
        }
        if out.send(SnapshotPart::Conversations(part)).await.is_err() {
            return Ok(());
        }
    }
    let page_size = SNAPSHOT_OLDER as i64;
    for (key, (before_at, before_id)) in full {
        let (mut after_at, mut after_id) = (i64::MIN, String::new());
        loop {
            let rows = conn
                .query(
                    &older,
                    &[
                        &key.org,
                        &key.customer,
                        &key.record,
                        &before_at,
                        &before_id,
                        &after_at,
                        &after_id,
                        &page_size,
                    ],
                )
                .await?;
            if rows.is_empty() {
                break;
            }
            let more = rows.len() == SNAPSHOT_OLDER;
            let mut messages = Vec::with_capacity(rows.len());
            for r in &rows {
                (after_at, after_id) = (r.get(0), r.get(1));
                messages.push(message_in(r.get(2), &key)?);
            }
            if out
                .send(SnapshotPart::Older(key.clone(), messages))
                .await
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

/// Starts [`tail`] on a thread of its own (its own small runtime): waking on a
/// notification and reading the log do not queue behind the node's HTTP and SSE
/// tasks.
pub fn spawn_tail(
    url: String,
    seq: crate::sequencer::Sequencer,
    closing: tokio::sync::watch::Receiver<bool>,
    poll: Duration,
    from: (String, i64),
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("pg-tail".into())
        .spawn(move || rt.block_on(tail(url, seq, closing, poll, from)))?;
    Ok(())
}

/// Feeds this node's live subscribers from the shared log: every event once, in id
/// order, whichever node appended it (this node's sequencer publishes its own
/// batches itself when they follow what was published last: those are skipped).
/// Wakes on `NOTIFY` (a connection of its own, outside the pool), re-reads after
/// every reconnect, and polls every `poll` as a fallback. Starts after
/// `(epoch, after)`, read before the node serves (a stream reads what came before
/// from the log). Ends when `closing` turns true.
pub async fn tail(
    url: String,
    seq: crate::sequencer::Sequencer,
    mut closing: tokio::sync::watch::Receiver<bool>,
    poll: Duration,
    from: (String, i64),
) {
    let (mut epoch, mut last) = seq.feed(Some(from));
    let mut backoff = Duration::from_millis(50);
    while !*closing.borrow() {
        let connected = match config(&url) {
            Ok(c) => c.connect(NoTls).await.map_err(StoreError::from),
            Err(e) => Err(e),
        };
        let (client, mut connection) = match connected {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "log tail: cannot connect; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = closing.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        // The connection's messages: notifications wake the reader; its end (an
        // error or a closed socket) makes the reader reconnect.
        let (wake_tx, mut wake) = tokio::sync::mpsc::channel::<()>(1);
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(m)) = messages.next().await {
                if matches!(m, tokio_postgres::AsyncMessage::Notification(_)) {
                    let _ = wake_tx.try_send(());
                }
            }
        });
        let listening = client.batch_execute(&format!("LISTEN {CHANNEL}")).await;
        let read = match listening {
            Ok(()) => client.prepare(TAIL_READ).await,
            Err(e) => Err(e),
        };
        if let Ok(read) = read {
            loop {
                // Read everything after `last` (after every reconnect too).
                if let Err(e) = read_new(&client, &read, &seq, &mut epoch, &mut last).await {
                    tracing::warn!(error = %e, "log tail: read failed; reconnecting");
                    break;
                }
                tokio::select! {
                    w = wake.recv() => if w.is_none() { break },
                    () = tokio::time::sleep(poll) => {}
                    // Closing, or the relay is gone (this runs on a thread of its own).
                    _ = closing.changed() => {
                        driver.abort();
                        return;
                    }
                }
            }
        }
        driver.abort();
    }
}

const TAIL_PAGE: i64 = 2000;

/// The epoch, a page of events after `$1` with their audiences, and the last event
/// pruned, in one statement (one snapshot: the events are of the epoch read with them).
const TAIL_READ: &str = "SELECT m.value, e.id, e.public, e.body,
        ARRAY(SELECT a.seller FROM event_audience a WHERE a.event_id = e.id),
        COALESCE((SELECT p.value::bigint FROM meta p WHERE p.key = 'pruned'), 0)
   FROM meta m LEFT JOIN LATERAL
        (SELECT id, public, body FROM events WHERE id > $1 ORDER BY id LIMIT $2) e ON true
  WHERE m.key = 'epoch' ORDER BY e.id";

async fn read_new(
    client: &tokio_postgres::Client,
    read: &tokio_postgres::Statement,
    seq: &crate::sequencer::Sequencer,
    epoch: &mut String,
    last: &mut i64,
) -> StoreResult<()> {
    loop {
        // What this node's sequencer published itself needs no reading.
        let (fed_epoch, fed) = seq.feed(None);
        if fed_epoch == *epoch {
            *last = (*last).max(fed);
        }
        let rows = client.query(read, &[&*last, &TAIL_PAGE]).await?;
        let mut n = 0;
        for r in rows {
            let now_epoch: &str = r.get(0);
            if now_epoch != epoch.as_str() {
                // Reset by some node: the new epoch's events are read from its start.
                *last = 0;
                *epoch = now_epoch.to_owned();
                seq.feed(Some((epoch.clone(), 0)));
                seq.set_epoch(epoch.clone());
                // This page was read after the old epoch's position: read again.
                n = TAIL_PAGE;
                break;
            }
            let pruned: i64 = r.get(5);
            if pruned > *last {
                // Another node pruned past what this node published: its streams
                // would skip those events. They end instead; their clients resume
                // from the log (or get `410 snapshot_required`).
                tracing::warn!(
                    pruned,
                    last = *last,
                    "log tail: pruned past this node's position"
                );
                seq.close_streams();
                *last = pruned;
                seq.feed(Some((epoch.clone(), pruned)));
                n = TAIL_PAGE;
                break;
            }
            let Some(id) = r.get::<_, Option<i64>>(1) else {
                break;
            };
            n += 1;
            let public: bool = r.get(2);
            let body: &str = r.get(3);
            let sellers: Vec<String> = r.get(4);
            let event = parse_event(epoch, id, body)?;
            let json = format!("{{\"epoch\":\"{epoch}\",\"id\":{id},{}", &body[1..]);
            seq.publish(crate::sequencer::Published {
                event,
                json,
                audience: if public {
                    Audience::All
                } else {
                    Audience::Sellers(sellers)
                },
            });
            *last = id;
        }
        if n < TAIL_PAGE {
            return Ok(());
        }
    }
}

/// Carries out one history op inside the batch's transaction ([`HistoryOp`] says
/// A conversation from a row of `org, customer, record, last_ms, rule, moves`.
fn pg_conversation(r: &tokio_postgres::Row) -> StoreResult<HistoryConversation> {
    conversation_row(
        ConversationKey {
            org: r.get(0),
            customer: r.get(1),
            record: r.get(2),
        },
        r.get(3),
        r.get(4),
        r.get(5),
    )
}

/// what each means; the SQLite store does the same).
async fn pg_history_op(conn: &Object, op: &HistoryOp) -> StoreResult<()> {
    match op {
        HistoryOp::Erase { customer } => {
            conn.execute(
                "DELETE FROM history_messages WHERE customer = $1",
                &[customer],
            )
            .await?;
            conn.execute(
                "DELETE FROM history_conversations WHERE customer = $1",
                &[customer],
            )
            .await?;
        }
        HistoryOp::PutConversation { key, last, rule } => {
            let stmt = conn
                .prepare_cached(
                    "INSERT INTO history_conversations (org, customer, record, last_ms, rule, moves)
                     VALUES ($1, $2, $3, $4, $5, '[]')
                     ON CONFLICT (org, customer, record) DO UPDATE SET last_ms = EXCLUDED.last_ms,
                       rule = COALESCE(EXCLUDED.rule, history_conversations.rule)",
                )
                .await?;
            let rule = rule.as_ref().map(to_json).transpose()?;
            conn.execute(
                &stmt,
                &[
                    &key.org,
                    &key.customer,
                    &key.record,
                    &last.as_millis(),
                    &rule,
                ],
            )
            .await?;
        }
        HistoryOp::Move { from, to, entry } => {
            // Round trip 1: both rows. The merge is the core's rule, computed here.
            let (read, rekey, delete, put) = futures_util::future::try_join4(
                conn.prepare_cached(
                    "SELECT org, customer, record, last_ms, rule, moves FROM history_conversations
                     WHERE (org, customer, record) IN (($1, $2, $3), ($4, $5, $6))",
                ),
                conn.prepare_cached(
                    "UPDATE history_messages SET org = $4, customer = $5, record = $6
                     WHERE org = $1 AND customer = $2 AND record = $3",
                ),
                conn.prepare_cached(
                    "DELETE FROM history_conversations
                     WHERE org = $1 AND customer = $2 AND record = $3",
                ),
                conn.prepare_cached(
                    "INSERT INTO history_conversations (org, customer, record, last_ms, rule, moves)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (org, customer, record) DO UPDATE SET last_ms = EXCLUDED.last_ms,
                       rule = EXCLUDED.rule, moves = EXCLUDED.moves",
                ),
            )
            .await?;
            let both: [&(dyn ToSql + Sync); 6] = [
                &from.org,
                &from.customer,
                &from.record,
                &to.org,
                &to.customer,
                &to.record,
            ];
            let (mut source, mut target) = (None, None);
            for r in conn.query(&read, &both).await? {
                let c = pg_conversation(&r)?;
                if c.key == *from {
                    source = Some(c.clone());
                }
                if c.key == *to && from != to {
                    target = Some(c);
                }
            }
            let moved = HistoryConversation::moved(source, target, to.clone(), entry.clone());
            let (rule, moves) = conversation_columns(&moved)?;
            let last = moved.last.as_millis();
            // Round trip 2, pipelined: re-key the messages, drop the source, put the target.
            let source_p: [&(dyn ToSql + Sync); 3] = [&from.org, &from.customer, &from.record];
            let put_p: [&(dyn ToSql + Sync); 6] = [
                &moved.key.org,
                &moved.key.customer,
                &moved.key.record,
                &last,
                &rule,
                &moves,
            ];
            let same = from == to;
            let (a, b, c) = futures_util::join!(
                conn.execute(&rekey, &both),
                async {
                    if same {
                        Ok(0)
                    } else {
                        conn.execute(&delete, &source_p).await
                    }
                },
                conn.execute(&put, &put_p),
            );
            a.and(b).and(c)?;
        }
        HistoryOp::PutMessage(m) => {
            let mut m = m.clone();
            if let Some(sid) = m.report_key().map(str::to_owned) {
                let stmt = conn
                    .prepare_cached(
                        "DELETE FROM history_pending WHERE message_sid = $1 RETURNING delivery",
                    )
                    .await?;
                let early = match conn.query_opt(&stmt, &[&sid]).await? {
                    Some(r) => Some(from_json(r.get(0))?),
                    None => None,
                };
                m.delivery = history::settle(m.delivery, early.as_ref());
            }
            let stmt = conn
                .prepare_cached(
                    "INSERT INTO history_messages
                     (id, org, customer, record, at_ms, provider_id, outbound, message)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                )
                .await?;
            let k = &m.conversation;
            let json = to_json(&m)?;
            conn.execute(
                &stmt,
                &[
                    &m.id,
                    &k.org,
                    &k.customer,
                    &k.record,
                    &m.at.as_millis(),
                    &m.provider_id,
                    &m.delivery.is_some(),
                    &json,
                ],
            )
            .await?;
        }
        HistoryOp::Report {
            message_sid,
            status,
            error_code,
        } => {
            let stmt = conn
                .prepare_cached(
                    "SELECT id, message FROM history_messages WHERE provider_id = $1 AND outbound",
                )
                .await?;
            match conn.query_opt(&stmt, &[message_sid]).await? {
                Some(r) => {
                    let id: String = r.get(0);
                    let mut m: HistoryMessage = from_json(r.get(1))?;
                    m.delivery = Some(history::report(m.delivery.take(), *status, *error_code));
                    let stmt = conn
                        .prepare_cached("UPDATE history_messages SET message = $2 WHERE id = $1")
                        .await?;
                    conn.execute(&stmt, &[&id, &to_json(&m)?]).await?;
                }
                None => {
                    let stmt = conn
                        .prepare_cached(
                            "SELECT delivery FROM history_pending WHERE message_sid = $1",
                        )
                        .await?;
                    let pending = match conn.query_opt(&stmt, &[message_sid]).await? {
                        Some(r) => Some(from_json(r.get(0))?),
                        None => None,
                    };
                    let d = history::report(pending, *status, *error_code);
                    let stmt = conn
                        .prepare_cached(
                            "INSERT INTO history_pending (message_sid, delivery) VALUES ($1, $2)
                             ON CONFLICT (message_sid) DO UPDATE SET delivery = EXCLUDED.delivery",
                        )
                        .await?;
                    conn.execute(&stmt, &[message_sid, &to_json(&d)?]).await?;
                }
            }
        }
    }
    Ok(())
}
