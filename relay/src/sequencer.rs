//! The one sequencer of shared state (S1): a thread that owns the log writer and
//! the [`State`], takes commands in batches (one transaction, one sync to disk per
//! batch), answers them only after the batch is durable (D1), then publishes the new
//! events to SSE clients and the push doorbell.
//!
//! It decides nothing itself: [`sms_core::relay::decide`] does, over the state and the
//! command with `now` passed in; this executor checks idempotency keys, carries out
//! the decision's writes, applies the appended events to the state, and answers.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use sms_core::autoreply::AutoReply;
use sms_core::protocol::events::*;
use sms_core::relay::{
    decide, Command, ListedMessage, Op, PendingSend, ProviderAnswer, Reconciled, SendPlan,
    SendStage, State,
};
use sms_core::Timestamp;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::error::ApiError;
use crate::model::{Audience, Directory, EventBody, LoggedEvent};
use crate::store::{LogWriter, NewEvent, StoreError, StoreResult};
use sms_core::relay::retention;

pub use sms_core::protocol::{MoveRequest, SendRequest};
pub use sms_core::relay::{DirectoryUpdate, InboundSms, StatusReport};

/// An event as published to live subscribers.
#[derive(Debug)]
pub struct Published {
    /// The event.
    pub event: LoggedEvent,
    /// Its JSON, serialised once for every subscriber.
    pub json: String,
    /// Who may receive it.
    pub audience: Audience,
}

/// Per-seller live channels: an event wakes only the streams of the sellers who may
/// see it (a single shared channel would wake every stream for every event).
#[derive(Default)]
pub struct Fanout {
    inner: std::sync::Mutex<Channels>,
}

#[derive(Default)]
struct Channels {
    sellers: std::collections::HashMap<String, broadcast::Sender<Arc<Published>>>,
    /// Every event, whoever may see it (the CRM's feed and webhooks, F1).
    all: Option<broadcast::Sender<Arc<Published>>>,
    /// A shared log's position published last on this node: `(epoch, id)`.
    feed: (String, i64),
}

impl Channels {
    fn send(&mut self, p: &Arc<Published>) {
        if let Some(all) = &self.all {
            let _ = all.send(p.clone());
        }
        self.sellers.retain(|_, tx| tx.receiver_count() > 0);
        match &p.audience {
            Audience::All => {
                for tx in self.sellers.values() {
                    let _ = tx.send(p.clone());
                }
            }
            Audience::Sellers(sellers) => {
                for s in sellers {
                    if let Some(tx) = self.sellers.get(s) {
                        let _ = tx.send(p.clone());
                    }
                }
            }
        }
    }
}

/// Events a seller's channel buffers; a stream that falls further behind is
/// disconnected and resumes from the log.
const SELLER_BUFFER: usize = 4096;

impl Fanout {
    fn lock(&self) -> std::sync::MutexGuard<'_, Channels> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to the events `seller` may see.
    pub fn subscribe(&self, seller: &str) -> broadcast::Receiver<Arc<Published>> {
        self.lock()
            .sellers
            .entry(seller.to_owned())
            .or_insert_with(|| broadcast::channel(SELLER_BUFFER).0)
            .subscribe()
    }

    /// Subscribes to every event (the CRM's feed and webhooks).
    pub fn subscribe_all(&self) -> broadcast::Receiver<Arc<Published>> {
        self.lock()
            .all
            .get_or_insert_with(|| broadcast::channel(SELLER_BUFFER).0)
            .subscribe()
    }

    /// Hands an event to the streams of the sellers who may see it.
    pub fn publish(&self, p: &Arc<Published>) {
        self.lock().send(p);
    }

    /// A shared log: publishes `p` if it is the event after the last one published
    /// (same epoch, next id; ids are allocated without gaps under the append lock).
    /// `true` when published now or before; `false` when events before it are not
    /// published yet (the log's tail publishes it after them).
    pub fn publish_next(&self, p: &Arc<Published>) -> bool {
        let mut c = self.lock();
        if c.feed.0 != p.event.epoch {
            return false;
        }
        if p.event.id <= c.feed.1 {
            return true;
        }
        if p.event.id != c.feed.1 + 1 {
            return false;
        }
        c.feed.1 = p.event.id;
        c.send(p);
        true
    }

    /// A shared log's tail: publishes `p`, read back from the log after the
    /// position published last, unless it was published already.
    pub fn publish_read(&self, p: &Arc<Published>) {
        let mut c = self.lock();
        if c.feed.0 == p.event.epoch && p.event.id <= c.feed.1 {
            return;
        }
        c.feed = (p.event.epoch.clone(), p.event.id);
        c.send(p);
    }

    /// Ends every live stream (each client resumes from the log): what was
    /// published here fell behind a prune of the shared log.
    pub fn close_streams(&self) {
        self.lock().sellers.clear();
    }

    /// A shared log's tail: where publication stands, or starts (a new epoch).
    pub fn feed(&self, position: Option<(String, i64)>) -> (String, i64) {
        let mut c = self.lock();
        if let Some(p) = position {
            c.feed = p;
        }
        c.feed.clone()
    }
}

type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// What a decided command produced: the events it logged and, for a send, the plan.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Events appended (none for a duplicate callback).
    pub events: Vec<LoggedEvent>,
    /// For a send: what happens next.
    pub send: Option<SendPlan>,
    /// For a reconciliation: what was found.
    pub reconciled: Option<Reconciled>,
}

enum Job {
    Decide(Box<Command>, Reply<Outcome>),
    Query(Box<dyn FnOnce(&State) + Send>),
    Reset(Reply<String>),
    /// Prune the events at or before this id (a checkpoint first if none covers it).
    Prune(i64, Reply<Pruned>),
    /// Periodic upkeep: a checkpoint when due, retention, expiry.
    Maintain(Retention, Reply<Pruned>),
    /// Erase a customer number (F6), in a batch of its own.
    Erase(String, Reply<Erasure>),
}

/// What an erasure did (F6).
#[derive(Clone, Debug)]
pub struct Erasure {
    /// The `erased` event it logged.
    pub event: LoggedEvent,
    /// Events whose body and media it redacted.
    pub events_redacted: u64,
    /// Queued sends to the number it deleted (not yet with the provider).
    pub sends_deleted: usize,
}

/// What the log keeps (config: `retention_days`, `idempotency_days`).
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Events older than this many days go (to a checkpoint); `None`: all stay.
    pub log_days: Option<u32>,
    /// Sent rows and webhook idempotency keys are kept this many days.
    pub idempotency_days: u32,
    /// Never prune past this event: the last one the CRM's webhook delivered (F1).
    pub hold_after: Option<i64>,
}

/// Where the log stands after a prune or upkeep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    /// The last event deleted (0: none).
    pub pruned_through: i64,
    /// The newest checkpoint's position.
    pub checkpoint: i64,
}

/// Handle to the sequencer thread; cheap to clone.
#[derive(Clone)]
pub struct Sequencer {
    tx: mpsc::Sender<Job>,
    bus: Arc<Fanout>,
    epoch: tokio::sync::watch::Receiver<String>,
    epoch_tx: Arc<tokio::sync::watch::Sender<String>>,
}

/// Milliseconds since the epoch, from the wall clock (the shell's job, not the core's).
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Timestamp::from_millis(ms)
}

fn gone() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the relay is shutting down",
    )
}

impl Sequencer {
    /// Starts the sequencer over `log`: rebuilds the state from it and seeds the
    /// directory when the log is empty. Returns the sends whose outcome is not logged
    /// (left by a stop or a crash), in flight again: `queued` ones are to be sent,
    /// `calling` ones reconciled with the provider (X3).
    pub fn start(
        log: Box<dyn LogWriter>,
        default_region: Option<String>,
        seed: Directory,
        doorbell: mpsc::Sender<(String, i64)>,
    ) -> StoreResult<(Self, Vec<(PendingSend, SendStage)>)> {
        let (tx, rx) = mpsc::channel(4096);
        let bus = Arc::new(Fanout::default());
        let (epoch_tx, epoch) = tokio::sync::watch::channel(log.epoch());
        let epoch_tx = Arc::new(epoch_tx);
        let mut worker = Worker {
            log,
            state: State::new(default_region.clone()),
            default_region,
            seed,
            bus: bus.clone(),
            epoch: epoch_tx.clone(),
            doorbell,
            batch: Vec::new(),
        };
        // The writer is driven from the sequencer's thread only (a shared log's
        // driver runs there): recovery too, waited for here.
        let (ready, recovered) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || match worker.recover() {
                Ok(pending) => {
                    let _ = ready.send(Ok(pending));
                    worker.run(rx);
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            })?;
        let pending = recovered
            .recv()
            .map_err(|_| std::io::Error::other("the sequencer stopped while recovering"))??;
        Ok((
            Self {
                tx,
                bus,
                epoch,
                epoch_tx,
            },
            pending,
        ))
    }

    /// Publishes an event read back from a shared log ([`crate::store::pg::tail`]) to
    /// this node's live subscribers, unless this node published it already.
    pub fn publish(&self, p: Published) {
        self.bus.publish_read(&Arc::new(p));
    }

    /// A shared log's position published last on this node (`(epoch, id)`); with
    /// `Some`, publication starts there (the tail's start, a new epoch).
    pub fn feed(&self, position: Option<(String, i64)>) -> (String, i64) {
        self.bus.feed(position)
    }

    /// Ends this node's live streams (a shared log was pruned past what this node
    /// published: the streams would skip events); their clients resume from the log.
    pub fn close_streams(&self) {
        self.bus.close_streams();
    }

    /// Tells this node's streams the log's epoch (a reset seen in a shared log).
    pub fn set_epoch(&self, epoch: String) {
        self.epoch_tx.send_if_modified(|e| {
            if *e == epoch {
                false
            } else {
                *e = epoch;
                true
            }
        });
    }

    /// Subscribes to the events `seller` may see, as they are committed.
    pub fn subscribe(&self, seller: &str) -> broadcast::Receiver<Arc<Published>> {
        self.bus.subscribe(seller)
    }

    /// Subscribes to every event as it is committed (the CRM's feed, F1).
    pub fn subscribe_all(&self) -> broadcast::Receiver<Arc<Published>> {
        self.bus.subscribe_all()
    }

    /// Watches the epoch (changes when the log is reset).
    pub fn epoch(&self) -> tokio::sync::watch::Receiver<String> {
        self.epoch.clone()
    }

    /// Sequences one command: decided, logged and durable when this returns.
    pub async fn run(&self, command: Command) -> Result<Outcome, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Decide(Box::new(command), reply))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    async fn events(&self, command: Command) -> Result<Vec<LoggedEvent>, ApiError> {
        Ok(self.run(command).await?.events)
    }

    /// Logs an inbound message (with lead and consent events; no events for a
    /// duplicate) and queues the automatic reply it calls for (F5): the outcome's
    /// `send` is then `Go`, for the send worker to call after this commit.
    pub async fn inbound(
        &self,
        sms: InboundSms,
        auto_reply: Arc<AutoReply>,
    ) -> Result<Outcome, ApiError> {
        self.run(Command::Inbound { sms, auto_reply }).await
    }

    /// Logs a delivery report; empty for a duplicate.
    pub async fn status(&self, report: StatusReport) -> Result<Vec<LoggedEvent>, ApiError> {
        self.events(Command::Status(report)).await
    }

    /// Moves a conversation for `seller`.
    pub async fn move_conversation(
        &self,
        seller: String,
        request: MoveRequest,
    ) -> Result<Vec<LoggedEvent>, ApiError> {
        self.events(Command::Move { seller, request }).await
    }

    /// Validates a send and makes it durably pending.
    pub async fn begin_send(
        &self,
        seller: String,
        request: SendRequest,
    ) -> Result<SendPlan, ApiError> {
        let outcome = self.run(Command::BeginSend { seller, request }).await?;
        outcome
            .send
            .ok_or_else(|| ApiError::internal("a send was decided without a plan"))
    }

    /// Marks a queued send `calling`, durably, before its provider call: `Go` to
    /// call, `Done` when its outcome is logged already.
    pub async fn call(&self, pending: PendingSend) -> Result<SendPlan, ApiError> {
        let outcome = self.run(Command::Call(pending)).await?;
        outcome
            .send
            .ok_or_else(|| ApiError::internal("a call was decided without a plan"))
    }

    /// Logs the outcome of a send that was `calling` when the relay stopped, from
    /// what the provider lists (`None`: it could not be asked).
    pub async fn reconcile(
        &self,
        pending: PendingSend,
        listed: Option<Vec<ListedMessage>>,
    ) -> Result<Outcome, ApiError> {
        self.run(Command::Reconcile { pending, listed }).await
    }

    /// Logs what the provider said about a pending send.
    pub async fn finish_send(
        &self,
        pending: PendingSend,
        answer: ProviderAnswer,
    ) -> Result<Vec<LoggedEvent>, ApiError> {
        self.events(Command::FinishSend { pending, answer }).await
    }

    /// Replaces or patches the directory.
    pub async fn directory(&self, update: DirectoryUpdate) -> Result<Vec<LoggedEvent>, ApiError> {
        self.events(Command::Directory(update)).await
    }

    /// Hands the sequencer a job that answers on `reply`, and waits for the answer.
    async fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(job(reply)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Empties the log and starts a new epoch (S4).
    pub async fn reset(&self) -> Result<String, ApiError> {
        self.ask(Job::Reset).await
    }

    /// Prunes the events at or before `keep_after` (never past the head), storing a
    /// checkpoint at the head first when none is at or after it (X10).
    pub async fn prune(&self, keep_after: i64) -> Result<Pruned, ApiError> {
        self.ask(|reply| Job::Prune(keep_after, reply)).await
    }

    /// Upkeep: a checkpoint when events were logged since the newest, the log's
    /// retention, the sent map's and idempotency keys' expiry.
    pub async fn maintain(&self, retention: Retention) -> Result<Pruned, ApiError> {
        self.ask(|reply| Job::Maintain(retention, reply)).await
    }

    /// Erases a customer number (F6): logs the `erased` event (the state forgets the
    /// number's conversations, consent and leads; the history drops its
    /// conversations), redacts its bodies and media from the log, deletes its queued
    /// sends and replaces every checkpoint with one at the head, in one transaction.
    pub async fn erase(&self, number: String) -> Result<Erasure, ApiError> {
        self.ask(|reply| Job::Erase(number, reply)).await
    }

    /// Reads the state.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&State) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(move |s: &State| {
            let _ = reply.send(f(s));
        });
        self.tx.send(Job::Query(job)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}

struct Worker {
    log: Box<dyn LogWriter>,
    state: State,
    default_region: Option<String>,
    seed: Directory,
    bus: Arc<Fanout>,
    epoch: Arc<tokio::sync::watch::Sender<String>>,
    doorbell: mpsc::Sender<(String, i64)>,
    batch: Vec<Arc<Published>>,
}

/// What an upkeep batch does.
#[derive(Clone, Copy)]
enum Upkeep {
    Prune(i64),
    Maintain(Retention),
}

/// Replies held back until the batch is durable.
type Deferred = Box<dyn FnOnce(bool)>;

fn defer<T: Send + 'static>(reply: Reply<T>, result: Result<T, ApiError>) -> Deferred {
    Box::new(move |committed| {
        let _ = reply.send(if committed {
            result
        } else {
            Err(ApiError::internal("could not write the event log"))
        });
    })
}

impl Worker {
    /// Rebuilds the state from the newest checkpoint, the sent table, and the
    /// events after the checkpoint.
    fn rebuild(&mut self) -> StoreResult<()> {
        let mut attempt = 0;
        loop {
            let (after, mut state) = match self.log.checkpoint()? {
                Some((position, json)) => {
                    let checkpoint =
                        serde_json::from_str(&json).map_err(|source| StoreError::Corrupt {
                            id: position,
                            source,
                        })?;
                    (
                        position,
                        State::from_checkpoint(self.default_region.clone(), checkpoint),
                    )
                }
                None => (0, State::new(self.default_region.clone())),
            };
            for (seller, client_ref, sent) in self.log.sent()? {
                state.remember_sent(&seller, &client_ref, sent);
            }
            match self.log.replay(after, &mut |e| state.apply(&e)) {
                Ok(()) => {
                    self.state = state;
                    return Ok(());
                }
                // Another node pruned between the checkpoint and the replay: again.
                Err(StoreError::Pruned { .. }) if attempt < 3 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn recover(&mut self) -> StoreResult<Vec<(PendingSend, SendStage)>> {
        self.backfill_history()?;
        self.rebuild()?;
        // Under the batch's lock (several nodes may start at once on an empty log:
        // the first seeds the directory, the others catch up with it).
        self.log.begin(&[])?;
        self.catch_up()?;
        if self.state.directory() == &Directory::default() {
            self.seed_directory()?;
        }
        self.log.commit()?;
        self.batch.clear();
        let _ = self.epoch.send(self.log.epoch());
        self.rebuild_in_flight()?;
        // The sends no live node holds are this node's to finish.
        self.log.claim()
    }

    /// Fills the per-conversation history from the log, once (a database an older
    /// version left), under the append lock: the core's fold of the log from event
    /// 0, or of what follows the newest checkpoint when the log was pruned before
    /// (only this branch's pruning could have: no released version prunes).
    fn backfill_history(&mut self) -> StoreResult<()> {
        if self.log.history_filled()? {
            return Ok(());
        }
        self.log.begin(&[])?;
        let done = self.fill_history();
        match done {
            Ok(()) => self.log.commit(),
            Err(e) => {
                let _ = self.log.rollback();
                Err(e)
            }
        }
    }

    fn fill_history(&mut self) -> StoreResult<()> {
        if self.log.history_filled()? {
            return Ok(()); // Another node did, while this one waited for the lock.
        }
        let region = self.default_region.clone();
        let fold = |state: &mut State, ops: &mut Vec<_>, e: EventBody| {
            state.apply(&e);
            ops.extend(sms_core::relay::history::ops(state, &e));
        };
        let (mut state, mut ops) = (State::new(region.clone()), Vec::new());
        match self.log.replay(0, &mut |e| fold(&mut state, &mut ops, e)) {
            Ok(()) => {}
            Err(StoreError::Pruned { .. }) => {
                let (after, checkpoint) = match self.log.checkpoint()? {
                    Some((position, json)) => (
                        position,
                        serde_json::from_str(&json).map_err(|source| StoreError::Corrupt {
                            id: position,
                            source,
                        })?,
                    ),
                    None => (0, Default::default()),
                };
                (state, ops) = (State::from_checkpoint(region, checkpoint), Vec::new());
                self.log
                    .replay(after, &mut |e| fold(&mut state, &mut ops, e))?;
            }
            Err(e) => return Err(e),
        }
        self.log.fill_history(&ops)
    }

    /// Applies the events other nodes appended since this node's last batch (a
    /// shared log); starts over from an empty state when the log was reset.
    fn catch_up(&mut self) -> StoreResult<()> {
        let state = &mut self.state;
        if let Some(epoch) = self.log.catch_up(&mut |e| state.apply(&e))? {
            // Reset, or pruned past this node's position: from the newest checkpoint.
            tracing::warn!(%epoch, "the shared event log was reset or pruned: rebuilding");
            self.rebuild()?;
            let state = &mut self.state;
            self.log.catch_up(&mut |e| state.apply(&e))?;
            self.new_epoch(epoch);
        }
        Ok(())
    }

    /// Tells streams of a new epoch (not of the same one again: a rebuild after a
    /// prune keeps the epoch and the streams).
    fn new_epoch(&self, epoch: String) {
        self.epoch.send_if_modified(|e| {
            if *e == epoch {
                false
            } else {
                *e = epoch;
                true
            }
        });
    }

    /// Before deciding a send, its in-flight mark follows the send rows (another
    /// node may have queued it). `Some(Calling)`: a provider call started already.
    fn sync_send(&mut self, seller: &str, client_ref: &str) -> StoreResult<Option<SendStage>> {
        let stage = self.log.send_stage(seller, client_ref)?;
        if stage.is_some() {
            self.state.start_send(seller, client_ref);
        } else {
            self.state.drop_send(seller, client_ref);
        }
        Ok(stage)
    }

    /// Marks the sends whose outcome is not logged as in flight (the log's events
    /// do not say which are): a retry waits for them instead of sending again.
    fn rebuild_in_flight(&mut self) -> StoreResult<()> {
        let pending = self.log.pending()?;
        for (p, _) in &pending {
            self.state.start_send(&p.seller, &p.client_ref);
        }
        Ok(())
    }

    /// Logs the configured directory, when there is one (an empty log starts from it).
    fn seed_directory(&mut self) -> StoreResult<()> {
        if self.seed != Directory::default() {
            self.emit(
                EventBody::DirectoryReplaced(DirectoryReplacedEvent {
                    directory: self.seed.clone(),
                }),
                None,
            )?;
        }
        Ok(())
    }

    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < 512 {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            self.run_batch(jobs);
        }
    }

    /// Reads only: answered over the state caught up without the append lock (a
    /// shared log), outside any batch.
    fn run_reads(&mut self, jobs: Vec<Job>) {
        let state = &mut self.state;
        let refreshed = match self.log.refresh(&mut |e| state.apply(&e)) {
            Ok(Some(epoch)) => {
                tracing::warn!(%epoch, "the shared event log was reset or pruned: rebuilding");
                let r = self.rebuild().and_then(|()| {
                    let state = &mut self.state;
                    self.log.refresh(&mut |e| state.apply(&e))
                });
                self.new_epoch(epoch);
                r.map(|_| ())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = refreshed {
            // Answered over the state as it is; the next batch catches up under the lock.
            tracing::warn!(error = %e, "cannot read the shared log's new events");
        }
        for job in jobs {
            if let Job::Query(f) = job {
                f(&self.state);
            }
        }
    }

    fn run_batch(&mut self, jobs: Vec<Job>) {
        if jobs.iter().all(|j| matches!(j, Job::Query(_))) {
            return self.run_reads(jobs);
        }
        let mut deferred: Vec<Deferred> = Vec::with_capacity(jobs.len());
        // The idempotency keys the batch asks about, looked up as it begins.
        let keys: Vec<String> = jobs
            .iter()
            .filter_map(|j| match j {
                Job::Decide(command, _) => command.dedupe_key(),
                _ => None,
            })
            .collect();
        self.begin_batch(&keys);
        for job in jobs {
            match job {
                Job::Query(f) => f(&self.state),
                Job::Reset(reply) => {
                    // Commit what came before, then reset outside any batch.
                    self.finish(&mut deferred);
                    let _ = reply.send(self.reset().map_err(ApiError::from));
                    self.begin_batch(&keys);
                }
                Job::Prune(keep_after, reply) => {
                    self.finish(&mut deferred);
                    let _ = reply.send(self.upkeep(Upkeep::Prune(keep_after)));
                    self.begin_batch(&keys);
                }
                Job::Maintain(retention, reply) => {
                    self.finish(&mut deferred);
                    let _ = reply.send(self.upkeep(Upkeep::Maintain(retention)));
                    self.begin_batch(&keys);
                }
                Job::Erase(number, reply) => {
                    // A batch of its own: every event before it is in the log when
                    // it redacts (a shared log inserts a batch's events at commit).
                    self.finish(&mut deferred);
                    self.begin_batch(&[]);
                    match self.erase(number) {
                        Ok(done) => {
                            deferred.push(defer(reply, Ok(done)));
                            self.finish(&mut deferred);
                        }
                        Err(e) => {
                            self.abandon();
                            let _ = reply.send(Err(e));
                        }
                    }
                    self.begin_batch(&keys);
                }
                Job::Decide(command, reply) => {
                    let result = self.execute(*command);
                    deferred.push(defer(reply, result));
                }
            }
        }
        self.finish(&mut deferred);
    }

    /// Carries out one command: a repeated callback is answered with nothing; else the
    /// core decides over the state, and its writes go into the open batch in order.
    fn execute(&mut self, command: Command) -> Result<Outcome, ApiError> {
        if let Some(key) = command.dedupe_key() {
            if self.log.seen(&key)? {
                return Ok(Outcome::default());
            }
        }
        // Only a queued send is called, once: a second worker (a node that took an
        // expired lease over) finds it `calling` and leaves it.
        let called_already = match &command {
            Command::BeginSend { seller, request } => {
                self.sync_send(seller, &request.client_ref)?;
                false
            }
            Command::Call(p) => {
                self.sync_send(&p.seller, &p.client_ref)? == Some(SendStage::Calling)
                    && self.state.sent(&p.seller, &p.client_ref).is_none()
            }
            _ => false,
        };
        if called_already {
            return Ok(Outcome {
                send: Some(SendPlan::InProgress),
                ..Outcome::default()
            });
        }
        let decision = decide(&self.state, command, now())?;
        let mut out = Outcome {
            events: Vec::new(),
            send: decision.send,
            reconciled: decision.reconciled,
        };
        for op in decision.ops {
            match op {
                Op::Append { body, dedupe } => out.events.extend(self.emit(body, dedupe)?),
                Op::AddPending(p) => {
                    self.log.add_pending(&p)?;
                    self.state.start_send(&p.seller, &p.client_ref);
                }
                Op::MarkCalling(p) => self.log.mark_calling(&p.seller, &p.client_ref)?,
                Op::RemovePending(p) => self.log.remove_pending(&p.seller, &p.client_ref)?,
            }
        }
        Ok(out)
    }

    fn begin_batch(&mut self, keys: &[String]) {
        if let Err(e) = self.log.begin(keys).and_then(|()| self.catch_up()) {
            // The commit will fail too, and the state is rebuilt from the log then.
            tracing::error!(error = %e, "cannot begin a batch");
        }
    }

    /// Commits the batch, answers its commands, publishes its events.
    fn finish(&mut self, deferred: &mut Vec<Deferred>) {
        let committed = match self.log.commit() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "batch commit failed; rebuilding state from the log");
                let _ = self.log.rollback();
                // What the batch marked (sends in flight included) goes with it;
                // sends of earlier batches stay in flight.
                if let Err(e) = self.rebuild() {
                    tracing::error!(error = %e, "cannot rebuild the state from the log");
                }
                if let Err(e) = self.rebuild_in_flight() {
                    tracing::error!(error = %e, "cannot read the pending sends back");
                }
                self.batch.clear();
                false
            }
        };
        for reply in deferred.drain(..) {
            reply(committed);
        }
        let mut in_order = true;
        for published in self.batch.drain(..) {
            crate::metrics::event_appended(published.event.body.kind());
            if let Audience::Sellers(sellers) = &published.audience {
                for s in sellers {
                    // A bounded queue: when push services fall behind, doorbells
                    // are dropped (the events are in the log; the next one rings).
                    if self
                        .doorbell
                        .try_send((s.clone(), published.event.id))
                        .is_err()
                    {
                        crate::metrics::doorbell("dropped");
                    }
                }
            }
            // One node's own log is published as committed. A shared log is
            // published in id order across nodes: this batch's events go out now
            // when they follow what this node published last (its tail read the
            // other nodes' events before them); else the tail publishes them after
            // those, reading them back from the log.
            if !self.log.shared() {
                self.bus.publish(&published);
            } else if in_order {
                in_order = self.bus.publish_next(&published);
            }
        }
    }

    /// Drops the open batch after a failure inside it: what it applied to the state
    /// goes too (rebuilt from the log).
    fn abandon(&mut self) {
        let _ = self.log.rollback();
        if !self.batch.is_empty() {
            self.batch.clear();
            if let Err(e) = self.rebuild().and_then(|()| self.rebuild_in_flight()) {
                tracing::error!(error = %e, "cannot rebuild the state from the log");
            }
        }
    }

    /// An erasure (F6) in the open batch: the core decides the `erased` event; then
    /// the log's copies of the number's bodies and media are redacted, its queued
    /// sends deleted, and the checkpoints (which hold its leads and conversations)
    /// replaced by one of the state at the head.
    fn erase(&mut self, number: String) -> Result<Erasure, ApiError> {
        let decision = decide(&self.state, Command::Erase { number }, now())?;
        let mut logged = None;
        for op in decision.ops {
            if let Op::Append { body, dedupe } = op {
                logged = self.emit(body, dedupe)?.or(logged);
            }
        }
        let event = logged.ok_or_else(|| ApiError::internal("an erasure logged no event"))?;
        let EventBody::Erased(erased) = &event.body else {
            return Err(ApiError::internal("an erasure logged another event"));
        };
        let customer = erased.customer_number.clone();
        // Its leads may be made again (its next text): their idempotency keys go.
        let keys: Vec<String> = erased
            .leads
            .iter()
            .map(|id| sms_core::relay::lead_dedupe_key(id))
            .collect();
        self.log.forget_dedupe(&keys)?;
        let state = &self.state;
        let redacted = self.log.redact(&|n| state.key(n) == customer)?;
        for (seller, client_ref) in &redacted.sends {
            self.state.drop_send(seller, client_ref);
        }
        let head = self.log.head()?;
        let at = now();
        let json = serde_json::to_string(&self.state.checkpoint())
            .map_err(|source| StoreError::Corrupt { id: head, source })?;
        let older: Vec<i64> = self
            .log
            .checkpoints()?
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| *p != head)
            .collect();
        self.log.drop_checkpoints(&older)?;
        self.log.save_checkpoint(head, &json, at.as_millis())?;
        Ok(Erasure {
            event,
            events_redacted: redacted.events,
            sends_deleted: redacted.sends.len(),
        })
    }

    /// A prune or the periodic upkeep, in a batch of its own (under the append lock
    /// of a shared log, caught up: the state is the head's).
    fn upkeep(&mut self, job: Upkeep) -> Result<Pruned, ApiError> {
        self.log.begin(&[])?;
        let done = self.catch_up().and_then(|()| self.upkeep_in_batch(job));
        match done {
            Ok(p) => {
                self.log.commit()?;
                Ok(p)
            }
            Err(e) => {
                let _ = self.log.rollback();
                Err(e.into())
            }
        }
    }

    fn upkeep_in_batch(&mut self, job: Upkeep) -> StoreResult<Pruned> {
        let now = now();
        let head = self.log.head()?;
        let mut checkpoints: Vec<(i64, Timestamp)> = self
            .log
            .checkpoints()?
            .into_iter()
            .map(|(p, at)| (p, Timestamp::from_millis(at)))
            .collect();
        let newest = |c: &[(i64, Timestamp)]| c.last().map(|(p, _)| *p);
        let (keep_after, due) = match job {
            Upkeep::Prune(keep_after) => {
                let plan = retention::prune_plan(keep_after, head, newest(&checkpoints));
                (Some(plan.through), plan.checkpoint_first)
            }
            Upkeep::Maintain(r) => {
                self.log
                    .expire(retention::cutoff(now, r.idempotency_days).as_millis())?;
                let due = retention::checkpoint_due(head, newest(&checkpoints));
                let target = r
                    .log_days
                    .and_then(|days| retention::retention_target(&checkpoints, now, days))
                    .map(|t| r.hold_after.map_or(t, |h| t.min(h)));
                (target, due)
            }
        };
        if due {
            let json = serde_json::to_string(&self.state.checkpoint())
                .map_err(|source| StoreError::Corrupt { id: head, source })?;
            self.log.save_checkpoint(head, &json, now.as_millis())?;
            checkpoints.push((head, now));
            tracing::info!(position = head, "checkpoint stored");
        }
        let mut pruned_through = 0;
        if let Some(through) = keep_after.filter(|t| *t > 0) {
            self.log.prune(through)?;
            pruned_through = through;
            tracing::info!(through, "event log pruned");
        }
        if let Upkeep::Maintain(r) = job {
            // Checkpoints do not pile up: the newest, and one a day for retention.
            let drop = retention::checkpoints_to_drop(&checkpoints, now, r.log_days);
            self.log.drop_checkpoints(&drop)?;
        }
        Ok(Pruned {
            pruned_through,
            checkpoint: newest(&checkpoints).unwrap_or(0),
        })
    }

    fn reset(&mut self) -> StoreResult<String> {
        let epoch = self.log.reset()?;
        // No events and no checkpoints now; the sent table stays (a retry of a send
        // the old epoch logged still gets its answer).
        self.rebuild()?;
        // Sends still queued or calling survive the reset (their rows are kept): a
        // retry while the provider has one must get `pending`, not a second send.
        self.rebuild_in_flight()?;
        self.log.begin(&[])?;
        self.catch_up()?;
        self.seed_directory()?;
        self.log.commit()?;
        self.batch.clear();
        let _ = self.epoch.send(epoch.clone());
        tracing::warn!(%epoch, "event log reset: a new epoch starts");
        Ok(epoch)
    }

    /// Logs an event, applies it to the state and queues it for publication; `None`
    /// when its idempotency key is in the log already.
    fn emit(
        &mut self,
        body: EventBody,
        dedupe: Option<String>,
    ) -> StoreResult<Option<LoggedEvent>> {
        if let Some(key) = &dedupe {
            if self.log.seen(key)? {
                return Ok(None);
            }
        }
        // An erasure goes to who saw the number's conversations: judged before it
        // removes the leads whose owners may be among them.
        let erased_audience =
            matches!(body, EventBody::Erased(_)).then(|| self.state.audience(&body));
        self.state.apply(&body);
        let audience = erased_audience.unwrap_or_else(|| self.state.audience(&body));
        let history = sms_core::relay::history::ops(&self.state, &body);
        let event = NewEvent {
            body,
            dedupe,
            audience,
            history,
        };
        let (logged, json) = self.log.append(&event)?;
        self.batch.push(Arc::new(Published {
            event: logged.clone(),
            json,
            audience: event.audience,
        }));
        Ok(Some(logged))
    }
}

#[cfg(test)]
mod tests {
    use sms_core::relay::State;

    use crate::model::{Directory, EventBody};
    use sms_core::protocol::events::DirectoryReplacedEvent;

    /// The audience set and the pure visibility rule agree for every seller,
    /// org number and record of the demo directory.
    #[test]
    fn audiences_match_visibility() {
        let directory: Directory =
            serde_json::from_str(include_str!("../demo/directory.json")).expect("demo directory");
        let mut state = State::new(Some("IN".into()));
        state.apply(&EventBody::DirectoryReplaced(DirectoryReplacedEvent {
            directory: directory.clone(),
        }));
        for org in &directory.org_numbers {
            for record in &directory.records {
                let audience = state.sellers_seeing(&org.number, &[&record.id]);
                for seller in &directory.sellers {
                    assert_eq!(
                        audience.includes(&seller.id),
                        state.can_see(&seller.id, &org.number, Some(&record.id)),
                        "{} / {} / {}",
                        seller.id,
                        org.number,
                        record.id
                    );
                }
            }
        }
    }
}
