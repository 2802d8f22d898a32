//! The one sequencer of shared state (S1): a thread that owns the log writer and
//! the [`RelayState`], takes commands in batches (one transaction, one sync to disk
//! per batch), answers them only after the batch is durable (D1), then publishes
//! the new events to SSE clients and the push doorbell.

use sms_core::protocol::events::*;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use serde_json::json;
use sms_core::consent::{keyword, Consent};
use sms_core::directory::Owner;
use sms_core::routing::RouteDecision;
use sms_core::segments::MAX_BODY_CHARS;
use sms_core::{normalize, Timestamp};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::error::ApiError;
use crate::model::{Audience, Directory, DirectoryPatch, EventBody, LoggedEvent, SendOutcome};
use crate::provider::{InboundSms, StatusReport};
use crate::state::{RelayState, SentMessage};
use crate::store::{LogWriter, NewEvent, PendingSend, StoreResult};

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
    channels:
        std::sync::Mutex<std::collections::HashMap<String, broadcast::Sender<Arc<Published>>>>,
}

/// Events a seller's channel buffers; a stream that falls further behind is
/// disconnected and resumes from the log.
const SELLER_BUFFER: usize = 4096;

impl Fanout {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<String, broadcast::Sender<Arc<Published>>>,
    > {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to the events `seller` may see.
    pub fn subscribe(&self, seller: &str) -> broadcast::Receiver<Arc<Published>> {
        self.lock()
            .entry(seller.to_owned())
            .or_insert_with(|| broadcast::channel(SELLER_BUFFER).0)
            .subscribe()
    }

    fn publish(&self, p: &Arc<Published>) {
        let mut channels = self.lock();
        channels.retain(|_, tx| tx.receiver_count() > 0);
        match &p.audience {
            Audience::All => {
                for tx in channels.values() {
                    let _ = tx.send(p.clone());
                }
            }
            Audience::Sellers(sellers) => {
                for s in sellers {
                    if let Some(tx) = channels.get(s) {
                        let _ = tx.send(p.clone());
                    }
                }
            }
        }
    }
}

/// A request to move a conversation (M1).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct MoveRequest {
    /// Org number side.
    pub org_number: String,
    /// Customer side.
    pub customer_number: String,
    /// The record it is on now.
    pub from_record: String,
    /// The record to move it to.
    pub to_record: String,
}

/// A send request from a seller (`POST /messages`).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct SendRequest {
    /// Org number to send from.
    pub from: String,
    /// Customer number.
    pub to: String,
    /// Text.
    pub body: String,
    /// Idempotency key chosen by the client.
    pub client_ref: String,
    /// The record the conversation is attached to (defaults to the conversation's).
    #[serde(default)]
    pub record_id: Option<String>,
}

/// What to do with a send after validation.
#[derive(Debug)]
pub enum SendPlan {
    /// Call the provider with this (now durably pending).
    Go(PendingSend),
    /// Already done (same `client_ref`): answer with the earlier outcome.
    Done(SentMessage),
    /// The same `client_ref` is being sent right now.
    InProgress,
}

/// A directory update from the CRM (S3).
#[derive(Debug)]
pub enum DirectoryUpdate {
    /// `PUT /directory`.
    Replace(Directory),
    /// `PATCH /directory`.
    Patch(DirectoryPatch),
}

type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

enum Command {
    Inbound(InboundSms, Reply<Vec<LoggedEvent>>),
    Status(StatusReport, Reply<Vec<LoggedEvent>>),
    Move(String, MoveRequest, Reply<Vec<LoggedEvent>>),
    BeginSend(String, SendRequest, Reply<SendPlan>),
    FinishSend(EventBody, Reply<Vec<LoggedEvent>>),
    Directory(DirectoryUpdate, Reply<Vec<LoggedEvent>>),
    Query(Box<dyn FnOnce(&RelayState) + Send>),
    Reset(Reply<String>),
}

/// Handle to the sequencer thread; cheap to clone.
#[derive(Clone)]
pub struct Sequencer {
    tx: mpsc::Sender<Command>,
    bus: Arc<Fanout>,
    epoch: tokio::sync::watch::Receiver<String>,
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
    /// Starts the sequencer over `log`: rebuilds the state from it, seeds the
    /// directory when the log is empty, and settles sends left pending by a crash.
    pub fn start(
        log: Box<dyn LogWriter>,
        default_region: Option<String>,
        seed: Directory,
        doorbell: mpsc::UnboundedSender<(String, i64)>,
    ) -> StoreResult<Self> {
        let (tx, rx) = mpsc::channel(4096);
        let bus = Arc::new(Fanout::default());
        let (epoch_tx, epoch) = tokio::sync::watch::channel(log.epoch());
        let mut worker = Worker {
            log,
            state: RelayState::new(default_region.clone()),
            default_region,
            seed,
            bus: bus.clone(),
            epoch: epoch_tx,
            doorbell,
            in_flight: Vec::new(),
            batch: Vec::new(),
        };
        worker.recover()?;
        std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || worker.run(rx))?;
        Ok(Self { tx, bus, epoch })
    }

    /// Subscribes to the events `seller` may see, as they are committed.
    pub fn subscribe(&self, seller: &str) -> broadcast::Receiver<Arc<Published>> {
        self.bus.subscribe(seller)
    }

    /// Watches the epoch (changes when the log is reset).
    pub fn epoch(&self) -> tokio::sync::watch::Receiver<String> {
        self.epoch.clone()
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Logs an inbound message (with lead and consent events); empty for a duplicate.
    pub async fn inbound(&self, sms: InboundSms) -> Result<Vec<LoggedEvent>, ApiError> {
        self.call(|r| Command::Inbound(sms, r)).await
    }

    /// Logs a delivery report; empty for a duplicate.
    pub async fn status(&self, report: StatusReport) -> Result<Vec<LoggedEvent>, ApiError> {
        self.call(|r| Command::Status(report, r)).await
    }

    /// Moves a conversation for `seller`.
    pub async fn move_conversation(
        &self,
        seller: String,
        req: MoveRequest,
    ) -> Result<Vec<LoggedEvent>, ApiError> {
        self.call(|r| Command::Move(seller, req, r)).await
    }

    /// Validates a send and makes it durably pending.
    pub async fn begin_send(&self, seller: String, req: SendRequest) -> Result<SendPlan, ApiError> {
        self.call(|r| Command::BeginSend(seller, req, r)).await
    }

    /// Logs the outcome of a send.
    pub async fn finish_send(&self, event: EventBody) -> Result<Vec<LoggedEvent>, ApiError> {
        self.call(|r| Command::FinishSend(event, r)).await
    }

    /// Replaces or patches the directory.
    pub async fn directory(&self, update: DirectoryUpdate) -> Result<Vec<LoggedEvent>, ApiError> {
        self.call(|r| Command::Directory(update, r)).await
    }

    /// Empties the log and starts a new epoch (S4).
    pub async fn reset(&self) -> Result<String, ApiError> {
        self.call(Command::Reset).await
    }

    /// Reads the state.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RelayState) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(move |s: &RelayState| {
            let _ = reply.send(f(s));
        });
        self.tx
            .send(Command::Query(job))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}

struct Worker {
    log: Box<dyn LogWriter>,
    state: RelayState,
    default_region: Option<String>,
    seed: Directory,
    bus: Arc<Fanout>,
    epoch: tokio::sync::watch::Sender<String>,
    doorbell: mpsc::UnboundedSender<(String, i64)>,
    in_flight: Vec<String>,
    batch: Vec<Arc<Published>>,
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
    fn recover(&mut self) -> StoreResult<()> {
        let state = &mut self.state;
        self.log.replay(&mut |e| state.apply(&e))?;
        self.log.begin()?;
        if self.state.directory() == &Directory::default() && !self.seed_is_empty() {
            self.emit(
                EventBody::DirectoryReplaced(DirectoryReplacedEvent {
                    directory: self.seed.clone(),
                }),
                None,
            )?;
        }
        for p in self.log.pending()? {
            // The provider may or may not have it: never resend blindly.
            self.emit(
                EventBody::Outbound(OutboundEvent {
                    client_ref: p.client_ref.clone(),
                    message_sid: None,
                    from: p.from,
                    to: p.to,
                    body: p.body,
                    record_id: p.record_id,
                    by: p.seller,
                    at: now(),
                    outcome: SendOutcome::Unknown,
                    error_code: None,
                }),
                Some(format!("out:{}", p.client_ref)),
            )?;
            self.log.remove_pending(&p.client_ref)?;
        }
        self.log.commit()?;
        self.batch.clear();
        Ok(())
    }

    fn seed_is_empty(&self) -> bool {
        self.seed == Directory::default()
    }

    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.blocking_recv() {
            let mut commands = vec![first];
            while commands.len() < 512 {
                match rx.try_recv() {
                    Ok(c) => commands.push(c),
                    Err(_) => break,
                }
            }
            self.run_batch(commands);
        }
    }

    fn run_batch(&mut self, commands: Vec<Command>) {
        let mut deferred: Vec<Deferred> = Vec::with_capacity(commands.len());
        self.begin_batch();
        for command in commands {
            match command {
                Command::Query(job) => job(&self.state),
                Command::Reset(reply) => {
                    // Commit what came before, then reset outside any batch.
                    self.finish(&mut deferred);
                    let _ = reply.send(self.reset().map_err(ApiError::from));
                    self.begin_batch();
                }
                Command::Inbound(sms, reply) => {
                    let r = self.inbound(sms);
                    deferred.push(defer(reply, r));
                }
                Command::Status(report, reply) => {
                    let r = self.status(report);
                    deferred.push(defer(reply, r));
                }
                Command::Move(seller, req, reply) => {
                    let r = self.move_conversation(&seller, req);
                    deferred.push(defer(reply, r));
                }
                Command::BeginSend(seller, req, reply) => {
                    let r = self.begin_send(seller, req);
                    deferred.push(defer(reply, r));
                }
                Command::FinishSend(event, reply) => {
                    let r = self.finish_send(event);
                    deferred.push(defer(reply, r));
                }
                Command::Directory(update, reply) => {
                    let r = match update {
                        DirectoryUpdate::Replace(directory) => self.emit_logged(
                            EventBody::DirectoryReplaced(DirectoryReplacedEvent { directory }),
                            None,
                        ),
                        DirectoryUpdate::Patch(patch) => self.emit_logged(
                            EventBody::DirectoryChanged(DirectoryChangedEvent { patch }),
                            None,
                        ),
                    };
                    deferred.push(defer(reply, r));
                }
            }
        }
        self.finish(&mut deferred);
    }

    fn begin_batch(&mut self) {
        if let Err(e) = self.log.begin() {
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
                self.state = RelayState::new(self.default_region.clone());
                let state = &mut self.state;
                let _ = self.log.replay(&mut |ev| state.apply(&ev));
                self.batch.clear();
                false
            }
        };
        for reply in deferred.drain(..) {
            reply(committed);
        }
        for published in self.batch.drain(..) {
            if let Audience::Sellers(sellers) = &published.audience {
                for s in sellers {
                    let _ = self.doorbell.send((s.clone(), published.event.id));
                }
            }
            self.bus.publish(&published);
        }
    }

    fn reset(&mut self) -> StoreResult<String> {
        let epoch = self.log.reset()?;
        self.state = RelayState::new(self.default_region.clone());
        self.in_flight.clear();
        self.log.begin()?;
        if !self.seed_is_empty() {
            self.emit(
                EventBody::DirectoryReplaced(DirectoryReplacedEvent {
                    directory: self.seed.clone(),
                }),
                None,
            )?;
        }
        self.log.commit()?;
        self.batch.clear();
        let _ = self.epoch.send(epoch.clone());
        tracing::warn!(%epoch, "event log reset: a new epoch starts");
        Ok(epoch)
    }

    /// Applies, logs and queues an event for publication; `None` for a duplicate.
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
        self.state.apply(&body);
        let audience = self.state.audience(&body);
        let event = NewEvent {
            body,
            dedupe,
            audience,
        };
        let (logged, json) = self.log.append(&event)?;
        self.batch.push(Arc::new(Published {
            event: logged.clone(),
            json,
            audience: event.audience,
        }));
        Ok(Some(logged))
    }

    fn emit_logged(
        &mut self,
        body: EventBody,
        dedupe: Option<String>,
    ) -> Result<Vec<LoggedEvent>, ApiError> {
        Ok(self.emit(body, dedupe)?.into_iter().collect())
    }

    fn inbound(&mut self, sms: InboundSms) -> Result<Vec<LoggedEvent>, ApiError> {
        let dedupe = format!("in:{}", sms.message_sid);
        if self.log.seen(&dedupe)? {
            return Ok(Vec::new());
        }
        let at = now();
        let from = self.state.key(&sms.from);
        let to = self.state.key(&sms.to);
        let mut out = Vec::new();
        let decision = self.state.route(&from, &to);
        if let RouteDecision::NewLead { new_lead, .. } = &decision {
            // Exactly one lead per number: its id is derived from the number, and the
            // sequencer sees every inbound in order.
            let owner = new_lead
                .owner
                .clone()
                .unwrap_or_else(|| Owner::Team("unassigned".into()));
            let record =
                RelayState::new_lead(new_lead.id.clone(), new_lead.phone.clone(), owner, at);
            out.extend(self.emit(
                EventBody::LeadCreated(LeadCreatedEvent { record }),
                Some(format!("lead:{}", new_lead.id)),
            )?);
        }
        if let Some(consent) = keyword(&sms.body) {
            if self.state.consent(&to, &from) != consent {
                out.extend(self.emit(
                    EventBody::ConsentChanged(ConsentChangedEvent {
                        org_number: to.clone(),
                        customer_number: from.clone(),
                        consent,
                        at,
                    }),
                    None,
                )?);
            }
        }
        out.extend(self.emit(
            EventBody::Inbound(InboundEvent {
                message_sid: sms.message_sid,
                from,
                to,
                body: sms.body,
                media: sms.media,
                at,
                record_id: decision.record_id().to_owned(),
                rule: decision.rule(),
            }),
            Some(dedupe),
        )?);
        Ok(out)
    }

    fn status(&mut self, r: StatusReport) -> Result<Vec<LoggedEvent>, ApiError> {
        let dedupe = format!("st:{}:{:?}", r.message_sid, r.status);
        let body = EventBody::Delivery(DeliveryEvent {
            message_sid: r.message_sid,
            status: r.status,
            error_code: r.error_code,
            error_message: r.error_message,
            from: self.state.key(&r.from),
            to: self.state.key(&r.to),
            at: now(),
        });
        self.emit_logged(body, Some(dedupe))
    }

    fn move_conversation(
        &mut self,
        seller: &str,
        req: MoveRequest,
    ) -> Result<Vec<LoggedEvent>, ApiError> {
        let org = self.state.key(&req.org_number);
        let customer = self.state.key(&req.customer_number);
        if !self
            .state
            .conversation_records(&org, &customer)
            .contains(&req.from_record.as_str())
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "no_such_conversation",
                "that record holds no conversation between these numbers (it may have moved already)",
            ));
        }
        if !self.state.can_see(seller, &org, Some(&req.from_record)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "not_visible",
                "this conversation's number and record are assigned to other sellers or teams",
            ));
        }
        if self.state.record(&req.to_record).is_none() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_record",
                "the target record does not exist",
            ));
        }
        if req.to_record == req.from_record {
            return Err(ApiError::bad_request(
                "same_record",
                "the conversation is already on that record",
            ));
        }
        self.emit_logged(
            EventBody::ConversationMoved(ConversationMovedEvent {
                org_number: org,
                customer_number: customer,
                from_record: req.from_record,
                to_record: req.to_record,
                by: seller.to_owned(),
                at: now(),
            }),
            None,
        )
    }

    fn begin_send(&mut self, seller: String, req: SendRequest) -> Result<SendPlan, ApiError> {
        if req.client_ref.trim().is_empty() || req.client_ref.len() > 200 {
            return Err(ApiError::bad_request(
                "invalid_client_ref",
                "client_ref must be 1–200 characters",
            ));
        }
        if let Some(done) = self.state.sent(&req.client_ref) {
            return Ok(SendPlan::Done(done.clone()));
        }
        if self.in_flight.contains(&req.client_ref) {
            return Ok(SendPlan::InProgress);
        }
        let from = self.state.key(&req.from);
        if !self.state.may_send_from(&seller, &from) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "not_your_number",
                format!("{} is not assigned to you or your teams", req.from),
            ));
        }
        let chars = req.body.chars().count();
        if req.body.trim().is_empty() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "empty_body",
                "the message is empty",
            ));
        }
        if chars > MAX_BODY_CHARS {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "body_too_long",
                format!("the message is {chars} characters long; the limit is {MAX_BODY_CHARS}"),
            )
            .with(json!({ "reason": "BodyTooLong", "error_code": 21617, "chars": chars })));
        }
        let to = match normalize(&req.to, self.state.default_region()) {
            Ok(n) => n.to_string(),
            Err(e) => {
                let fix =
                    sms_core::failure::explain(Some(21211), &req.to, self.state.default_region());
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_phone",
                    format!("{} is not a valid destination: {e}", req.to),
                )
                .with(
                    json!({ "reason": "InvalidSendingParameters", "error_code": 21211,
                              "phone_reason": e.reason(), "fix": fix.fix }),
                ));
            }
        };
        if self.state.consent(&from, &to) == Consent::OptedOut {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "opted_out",
                "the customer replied STOP and opted out of texts from this number",
            )
            .with(json!({ "reason": "RecipientUnsubscribed", "error_code": 21610 })));
        }
        let record_id = match req.record_id.filter(|r| !r.is_empty()) {
            Some(r) if self.state.record(&r).is_some() => r,
            Some(r) => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_such_record",
                    format!("no record {r}"),
                ))
            }
            None => self
                .state
                .conversation_record(&from, &to)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "no_record",
                        "say which record the conversation belongs to",
                    )
                })?,
        };
        let pending = PendingSend {
            client_ref: req.client_ref.clone(),
            seller,
            from,
            to,
            body: req.body,
            record_id,
        };
        self.log.add_pending(&pending)?;
        self.in_flight.push(req.client_ref);
        Ok(SendPlan::Go(pending))
    }

    fn finish_send(&mut self, event: EventBody) -> Result<Vec<LoggedEvent>, ApiError> {
        let EventBody::Outbound(OutboundEvent { client_ref, .. }) = &event else {
            return Err(ApiError::internal("finish_send without an outbound event"));
        };
        let client_ref = client_ref.clone();
        self.in_flight.retain(|c| c != &client_ref);
        self.log.remove_pending(&client_ref)?;
        self.emit_logged(event, Some(format!("out:{client_ref}")))
    }
}
