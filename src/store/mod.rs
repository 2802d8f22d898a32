//! The browser store: the pure core run against IndexedDB (the only code that
//! names IndexedDB). One readwrite transaction per logical change: an event, its
//! routing decision, a created lead and its notification commit together or not
//! at all, along with the position of the last applied relay event (D1).
//!
//! See <https://developer.mozilla.org/en-US/docs/Web/API/IndexedDB_API>.

mod commands;
mod exec;
pub(crate) mod keys;
mod migrations;
mod queries;
pub mod records;

pub use queries::{ConversationExport, ConversationSummary, HistoryPage, PaneSeed};
pub use sms_core::protocol::SendAnswer;

use indexed_db_futures::database::Database;
use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::TransactionMode;
use sms_core::directory::Record;
use sms_core::pane::ConversationKey;
use sms_core::phone::match_key;
use sms_core::protocol::{Directory, LoggedEvent};
use sms_core::store::command::{GetRow, Writes};
use sms_core::store::ingest::{directory_writes, EventPlan};
use sms_core::store::run::RunPlan;
use sms_core::store::{Plan, Row, Table, Write};
use wasm_bindgen::{JsCast, JsValue};

use keys::v2 as k;

/// A storage failure, flattened into owned data at one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct StoreError {
    /// Stable snake_case code (`db_blocked`, `quota_exceeded`, `write_refused`, `storage`, ...).
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
            // A commit that ends in `abort` without a failed request: the browser
            // refused the write (in practice, storage full). The crate does not pass
            // the transaction's own error on, so say what is known.
            E::MissingData(indexed_db_futures::error::UnexpectedDataError::TransactionAborted) => (
                "write_refused",
                "the browser refused to save the change (is the storage full?); nothing of it was written"
                    .to_owned(),
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

/// How long an upgrade may wait for older connections to close before `db_blocked`.
pub const BLOCKED_GRACE_MS: i32 = 1500;

/// Resolves [`BLOCKED_GRACE_MS`] after `blocked` is set (never, if it is not).
async fn wait_blocked(blocked: std::rc::Rc<std::cell::Cell<bool>>) {
    // The flag is set by the open request's `blocked` event; check it on a short
    // timer rather than wiring a waker through the listener.
    let mut waited = 0;
    loop {
        sleep(100).await;
        if blocked.get() {
            waited += 100;
            if waited >= BLOCKED_GRACE_MS {
                return;
            }
        }
    }
}

/// A timer on the global scope (window or worker).
async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let set_timeout = js_sys::Reflect::get(&js_sys::global(), &"setTimeout".into())
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        if let Some(f) = set_timeout {
            let _ = f.call2(&JsValue::NULL, &resolve, &ms.into());
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// A future polled once when made, so that what it starts (a commit) starts now;
/// awaiting it later finishes it.
enum Started<F: std::future::Future + Unpin> {
    Running(F),
    Done(Option<F::Output>),
}

impl<F: std::future::Future + Unpin> Started<F> {
    fn new(mut fut: F) -> Self {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(&mut fut).poll(&mut cx) {
            std::task::Poll::Ready(out) => Self::Done(Some(out)),
            std::task::Poll::Pending => Self::Running(fut),
        }
    }
}

// Nothing in it is ever pinned in place: the output is moved out, the future is Unpin.
impl<F: std::future::Future + Unpin> Unpin for Started<F> {}

impl<F: std::future::Future + Unpin> std::future::Future for Started<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        match self.get_mut() {
            Self::Running(fut) => std::pin::Pin::new(fut).poll(cx),
            Self::Done(out) => match out.take() {
                Some(out) => std::task::Poll::Ready(out),
                None => std::task::Poll::Pending,
            },
        }
    }
}

/// Runs `a` until it finishes (`Ok`), or until `b` does first (`Err(a)`, still pending).
async fn first_of<A, B>(a: A, b: B) -> Result<A::Output, A>
where
    A: std::future::Future + Unpin,
    B: std::future::Future<Output = ()>,
{
    let mut a = Some(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(move |cx| {
        let Some(fut) = a.as_mut() else {
            return std::task::Poll::Pending;
        };
        if let std::task::Poll::Ready(out) = std::pin::Pin::new(fut).poll(cx) {
            return std::task::Poll::Ready(Ok(out));
        }
        match b.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => {
                std::task::Poll::Ready(Err(a.take().expect("polled once")))
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    })
    .await
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

pub use sms_core::store::IngestOutcome;

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
    /// Directory facts every ingest needs, read once (cleared by directory events).
    cache: std::cell::RefCell<Option<std::rc::Rc<DirectoryCache>>>,
}

/// The directory facts every ingest and query needs (the seller's access, the org
/// numbers in key order, the region), read once and cleared by directory events.
pub(crate) type DirectoryCache = sms_core::store::Facts;

impl IdbStore {
    /// Opens (creating or upgrading) the database `name` for `ctx`'s seller.
    ///
    /// An upgrade waits while older connections close (ours do, on `versionchange`).
    /// When one still holds the database after [`BLOCKED_GRACE_MS`], the open fails
    /// with `db_blocked`; the upgrade itself runs later, whole, in its own
    /// version-change transaction, and that late connection is closed at once.
    pub async fn open(name: &str, ctx: SellerContext) -> StoreResult<Self> {
        let blocked = std::rc::Rc::new(std::cell::Cell::new(false));
        let flag = blocked.clone();
        let open = Database::open(name)
            .with_version(k::VERSION)
            .with_on_blocked(move |_| {
                flag.set(true);
                Ok(())
            })
            .with_on_upgrade_needed(|event, db| {
                let old = event.old_version() as u64;
                if old < u64::from(keys::v1::VERSION) {
                    migrations::v1(&db)?;
                }
                if old < u64::from(keys::v2::VERSION) {
                    migrations::v2(&db)?;
                }
                Ok(())
            });
        let open = std::future::IntoFuture::into_future(open);
        let db = match first_of(open, wait_blocked(blocked)).await {
            Ok(result) => result?,
            Err(late) => {
                wasm_bindgen_futures::spawn_local(async move {
                    if let Ok(db) = late.await {
                        db.close();
                    }
                });
                return Err(StoreError {
                    code: "db_blocked",
                    message: "another tab still uses an older version of this database; \
                              close or reload the other tabs"
                        .into(),
                });
            }
        };
        // Another tab opening a newer version must not wait on us: close this
        // connection on `versionchange` (later calls fail with `db_closed`).
        let mut changes = db.version_changes()?;
        let closing = db.clone();
        wasm_bindgen_futures::spawn_local(async move {
            if changes.recv().await.is_some() {
                closing.close();
            }
        });
        Ok(Self {
            db,
            ctx,
            cache: Default::default(),
        })
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.db.clone().close();
    }

    /// The seller context.
    pub fn context(&self) -> &SellerContext {
        &self.ctx
    }

    fn key(&self, raw: &str) -> String {
        match_key(raw, self.ctx.default_region.as_deref())
    }

    /// Imports a directory snapshot: one transaction per `batch` rows.
    pub async fn import_directory(
        &self,
        directory: &Directory,
        batch: usize,
    ) -> StoreResult<usize> {
        let rest = Directory {
            sellers: directory.sellers.clone(),
            teams: directory.teams.clone(),
            org_numbers: directory.org_numbers.clone(),
            templates: directory.templates.clone(),
            records: Vec::new(),
        };
        let parts = directory
            .records
            .chunks(batch.max(1))
            .map(|part| Ok(part.to_vec()));
        self.import_parts(&rest, parts).await
    }

    /// Imports a directory snapshot (S3): `rest`'s tables, then each part of the
    /// records in a transaction of its own. A part is decoded and queued while the
    /// database still commits the one before it (two transactions in flight at most).
    pub async fn import_parts(
        &self,
        rest: &Directory,
        parts: impl Iterator<Item = StoreResult<Vec<Record>>>,
    ) -> StoreResult<usize> {
        let stores = [
            k::RECORDS,
            k::ORG_NUMBERS,
            k::SELLERS,
            k::TEAMS,
            k::TEMPLATES,
        ];
        let mut count = rest.records.len();
        let mut in_flight = None;
        // Only the region is needed to key numbers.
        let facts = sms_core::store::Facts {
            region: self.ctx.default_region.clone(),
            ..Default::default()
        };
        for part in std::iter::once(Ok(Vec::new())).chain(parts) {
            let part = part?;
            count += part.len();
            let tx = self
                .db
                .transaction(stores)
                .with_mode(TransactionMode::Readwrite)
                .build()?;
            let part = match part.is_empty() {
                true => rest.clone(),
                false => Directory {
                    records: part,
                    ..Directory::default()
                },
            };
            exec::write_all(&tx, directory_writes(&facts, part))?;
            let commit = Started::new(Box::pin(tx.commit()));
            if let Some(before) = in_flight.replace(commit) {
                before.await?;
            }
        }
        if let Some(last) = in_flight {
            last.await?;
        }
        self.cache.borrow_mut().take();
        Ok(count)
    }

    /// A record by id.
    pub async fn record(&self, id: &str) -> StoreResult<Option<Record>> {
        let row = self.get(Table::Records, id).await?;
        Ok(row.and_then(Row::record).map(|r| r.record))
    }

    /// The row of `table` with key `key`.
    pub(crate) async fn get(&self, table: Table, key: &str) -> StoreResult<Option<Row>> {
        let mut plan = GetRow::new(table, key);
        self.execute(&mut plan).await?;
        Ok(plan.row)
    }

    /// The directory facts (the seller's access, org numbers), cached.
    pub async fn facts(&self) -> StoreResult<std::rc::Rc<DirectoryCache>> {
        self.directory_cache().await
    }

    /// The directory facts ingest needs, read in one transaction when not cached.
    async fn directory_cache(&self) -> StoreResult<std::rc::Rc<DirectoryCache>> {
        if let Some(c) = self.cache.borrow().as_ref() {
            return Ok(c.clone());
        }
        let mut plan = sms_core::store::ingest::FactsPlan::new(
            &self.ctx.seller,
            self.ctx.default_region.clone(),
        );
        self.execute(&mut plan).await?;
        let cache = std::rc::Rc::new(plan.facts);
        *self.cache.borrow_mut() = Some(cache.clone());
        Ok(cache)
    }

    /// Carries out one of the core's plans in one transaction (readwrite if the plan
    /// may write): its rounds of reads, then its writes and the commit — or, when it
    /// wrote nothing, no commit at all. Every store operation goes through here.
    pub(crate) async fn execute(&self, plan: &mut dyn Plan) -> StoreResult<bool> {
        let tables: Vec<&str> = plan.tables().iter().map(|t| t.name()).collect();
        let mode = match plan.writes() {
            true => TransactionMode::Readwrite,
            false => TransactionMode::Readonly,
        };
        let tx = self.db.transaction(tables).with_mode(mode).build()?;
        let wrote = exec::run_in(&tx, plan).await?;
        if wrote {
            tx.commit().await?;
        }
        Ok(wrote)
    }

    /// Applies one relay event in one transaction, with its position (D1).
    pub async fn ingest(&self, event: &LoggedEvent) -> StoreResult<IngestOutcome> {
        self.ingest_after(event, None, None).await
    }

    /// [`IdbStore::ingest`] while `reading` is open in the pane: a message to it is
    /// stored read in the same transaction.
    pub async fn ingest_in_view(
        &self,
        event: &LoggedEvent,
        reading: Option<&ConversationKey>,
    ) -> StoreResult<IngestOutcome> {
        self.ingest_after(event, None, reading).await
    }

    /// [`IdbStore::ingest`], applied only if the stored position is `prev` (when given).
    async fn ingest_after(
        &self,
        event: &LoggedEvent,
        prev: Option<i64>,
        reading: Option<&ConversationKey>,
    ) -> StoreResult<IngestOutcome> {
        if event.body.changes_directory() {
            // Applied here or by another tab: either way the cached facts are stale.
            self.cache.borrow_mut().take();
        }
        let facts = self.directory_cache().await?;
        let mut plan = EventPlan::new(event, prev, &facts, reading);
        self.execute(&mut plan).await?;
        let outcome = plan.outcome;
        if event.body.changes_directory() {
            // The facts were read before the change was written: read them again next time.
            self.cache.borrow_mut().take();
        }
        Ok(outcome)
    }

    /// Applies a run of consecutive relay events (a burst from the stream, a catch-up
    /// page) in as few transactions as it can: up to `sms_core::store::run::MAX_RUN` events commit together
    /// (D1: a run of events is one unit), each seeing the ones before it. A directory
    /// event goes alone (it changes the facts the others are decided with). When a
    /// run's transaction fails, its events are applied one transaction each, so the
    /// failing one is found and reported and nothing after it is applied (those come
    /// back `gap`; the caller resumes from the position).
    pub async fn ingest_run(&self, events: &[LoggedEvent]) -> Vec<StoreResult<IngestOutcome>> {
        self.ingest_run_in_view(events, None).await
    }

    /// [`IdbStore::ingest_run`] while `reading` is open in the pane.
    pub async fn ingest_run_in_view(
        &self,
        events: &[LoggedEvent],
        reading: Option<&ConversationKey>,
    ) -> Vec<StoreResult<IngestOutcome>> {
        let mut outcomes: Vec<StoreResult<IngestOutcome>> = Vec::with_capacity(events.len());
        let prev = |i: usize| i.checked_sub(1).map(|p| events[p].id);
        let mut start = 0;
        while start < events.len() {
            let end = sms_core::store::run::run_end(events, start);
            let done = match self
                .run_in_one(&events[start..end], prev(start), reading)
                .await
            {
                Ok(done) => done,
                Err(_) => {
                    // Nothing of the run stayed: find the failing event one by one.
                    let mut done = Vec::new();
                    for (i, e) in events.iter().enumerate().take(end).skip(start) {
                        let r = self.ingest_after(e, prev(i), reading).await;
                        let failed = r.is_err();
                        done.push(r);
                        if failed {
                            break;
                        }
                    }
                    done
                }
            };
            let stop = done.len() < end - start
                || done
                    .iter()
                    .any(|o| o.as_ref().map_or(true, |o| o.gap || o.resync));
            outcomes.extend(done);
            if stop {
                break;
            }
            start = end;
        }
        // Whatever was not attempted comes back as a gap, to be fetched again.
        for e in &events[outcomes.len()..] {
            outcomes.push(Ok(IngestOutcome::gap(e)));
        }
        outcomes
    }

    /// Applies consecutive events in one transaction; the first must follow `prev`.
    async fn run_in_one(
        &self,
        events: &[LoggedEvent],
        prev: Option<i64>,
        reading: Option<&ConversationKey>,
    ) -> StoreResult<Vec<StoreResult<IngestOutcome>>> {
        if events.iter().any(|e| e.body.changes_directory()) {
            self.cache.borrow_mut().take();
        }
        let facts = self.directory_cache().await?;
        let mut plan = RunPlan::new(events, prev, &facts, reading);
        self.execute(&mut plan).await?;
        let done = plan.outcomes;
        if events.iter().any(|e| e.body.changes_directory()) {
            // The facts were read before the change was written: read them again next time.
            self.cache.borrow_mut().take();
        }
        Ok(done.into_iter().map(Ok).collect())
    }

    /// Every row of a table, in key order (the conformance suite compares stores by it).
    pub async fn rows(
        &self,
        table: sms_core::store::Table,
    ) -> StoreResult<Vec<sms_core::store::Row>> {
        let tx = self.db.transaction(table.name()).build()?;
        let all = tx
            .object_store(table.name())?
            .get_all()
            .primitive()?
            .await?;
        let mut rows = Vec::new();
        for v in all {
            let v: JsValue = v?;
            rows.push(exec::decode(table, v)?);
        }
        Ok(rows)
    }

    /// Writes rows in one transaction (fixtures that start from stored rows).
    pub async fn put_rows(&self, rows: Vec<sms_core::store::Row>) -> StoreResult<()> {
        let mut tables: Vec<&str> = rows.iter().map(|r| r.table().name()).collect();
        tables.sort_unstable();
        tables.dedup();
        if tables.is_empty() {
            return Ok(());
        }
        let tx = self
            .db
            .transaction(tables)
            .with_mode(TransactionMode::Readwrite)
            .build()?;
        exec::write_all(
            &tx,
            rows.into_iter().map(sms_core::store::Write::Put).collect(),
        )?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets the relay position (after a new epoch): the next events replay from the start.
    pub async fn reset_position(&self) -> StoreResult<()> {
        let position = Write::Delete(Table::Meta, sms_core::store::Key::str("position"));
        self.execute(&mut Writes(vec![position])).await?;
        Ok(())
    }

    /// The position to resume the relay stream from (`<epoch>:<id>`), if any.
    pub async fn position(&self) -> StoreResult<Option<String>> {
        Ok(match self.get(Table::Meta, "position").await? {
            Some(Row::Position(p)) => Some(format!("{}:{}", p.epoch, p.id)),
            _ => None,
        })
    }
}
