//! The relay's sequencer as a pure machine (S1–S3): [`decide`] takes the [`State`],
//! one [`Command`] and `now`, and answers with the [`Decision`] — the events to log
//! (with their idempotency keys), the pending-send rows to write, and what to answer —
//! or a [`Refusal`] with a domain code. It reads no clock and does no IO: the relay's
//! sequencer thread batches commands, calls it, appends and commits, then applies
//! each appended event to the state with [`State::apply`].

pub mod history;
mod lens;
pub mod retention;
mod state;

pub use lens::DirectoryLens;
pub use state::{
    Checkpoint, CheckpointConsent, CheckpointConversation, Pair, SentMessage, Sight, State,
};

use std::sync::Arc;

use thiserror::Error;

use crate::autoreply::{self, AutoReply, AUTO_REPLY_SENDER};
use crate::consent::keyword;
use crate::delivery::DeliveryStatus;
use crate::lead;
use crate::pane::Media;
use crate::phone::normalize;
use crate::protocol::events::*;
use crate::protocol::SendOutcome;
use crate::protocol::{Directory, DirectoryPatch, EventBody, MoveRequest, SendRequest};
use crate::routing::RouteDecision;
use crate::send::{self, Outgoing, SendRefusal};
use crate::time::Timestamp;

/// Who receives an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Every signed-in seller (directory changes).
    All,
    /// These sellers (V1).
    Sellers(Vec<String>),
}

impl Audience {
    /// Whether `seller` is in the audience.
    pub fn includes(&self, seller: &str) -> bool {
        match self {
            Self::All => true,
            Self::Sellers(list) => list.iter().any(|s| s == seller),
        }
    }
}

/// An inbound message as the provider's webhook delivered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundSms {
    /// Provider message id.
    pub message_sid: String,
    /// Sender as received (a number, short code or alphanumeric id).
    pub from: String,
    /// Org number it was sent to.
    pub to: String,
    /// Text.
    pub body: String,
    /// MMS media.
    pub media: Vec<Media>,
}

/// A delivery report as the provider's webhook delivered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusReport {
    /// Provider message id.
    pub message_sid: String,
    /// Reported status.
    pub status: DeliveryStatus,
    /// Error code of a failure.
    pub error_code: Option<u32>,
    /// Error message of a failure.
    pub error_message: Option<String>,
    /// Org number.
    pub from: String,
    /// Customer number.
    pub to: String,
}

/// A send made durable before the provider is called (its outcome not logged yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingSend {
    /// Client reference.
    pub client_ref: String,
    /// Sending seller.
    pub seller: String,
    /// Org number (match key).
    pub from: String,
    /// Customer number (E.164).
    pub to: String,
    /// Text.
    pub body: String,
    /// Record id.
    pub record_id: String,
    /// When it was accepted (the start of the window a reconciliation searches).
    pub at: Timestamp,
}

/// Where a durable send is: accepted and not handed to the provider yet, or with the
/// provider (the call started; its outcome is not logged yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStage {
    /// Accepted: a worker sends it (also after a restart).
    Queued,
    /// The provider call started: after a restart it is reconciled, never resent.
    Calling,
}

impl SendStage {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Calling => "calling",
        }
    }

    /// From its stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(Self::Queued),
            "calling" => Some(Self::Calling),
            _ => None,
        }
    }
}

/// A message as the provider lists it (reconciliation after a crash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedMessage {
    /// Provider message id.
    pub sid: String,
    /// Sender.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// Text.
    pub body: String,
    /// Status at the provider.
    pub status: Option<DeliveryStatus>,
    /// Error code at the provider.
    pub error_code: Option<u32>,
}

/// What a reconciliation found at the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reconciled {
    /// Exactly one message with these numbers and this text: that is the send.
    Found(String),
    /// None: the call may not have reached the provider, or the list misses it.
    NotFound,
    /// Several: which one is ours cannot be told.
    Ambiguous(usize),
    /// The provider could not be asked.
    NotAsked,
}

impl Reconciled {
    /// A stable code for logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Found(_) => "found",
            Self::NotFound => "not_found_at_provider",
            Self::Ambiguous(_) => "ambiguous_at_provider",
            Self::NotAsked => "provider_not_asked",
        }
    }
}

/// Matches a send whose provider call started before a crash against what the
/// provider lists for its numbers and window: only an exact single match (same
/// numbers, same text) counts; anything else is an unknown outcome (never resent).
pub fn reconcile(
    pending: &PendingSend,
    listed: Option<&[ListedMessage]>,
) -> (ProviderAnswer, Reconciled) {
    let unknown = ProviderAnswer {
        message_sid: None,
        outcome: SendOutcome::Unknown,
        error_code: None,
    };
    let Some(listed) = listed else {
        return (unknown, Reconciled::NotAsked);
    };
    let matches: Vec<&ListedMessage> = listed
        .iter()
        .filter(|m| m.from == pending.from && m.to == pending.to && m.body == pending.body)
        .collect();
    match matches.as_slice() {
        [m] => {
            let failed = m.status == Some(DeliveryStatus::Failed);
            let answer = ProviderAnswer {
                message_sid: Some(m.sid.clone()),
                outcome: if failed {
                    SendOutcome::Failed
                } else {
                    SendOutcome::Accepted
                },
                error_code: m.error_code.filter(|_| failed),
            };
            (answer, Reconciled::Found(m.sid.clone()))
        }
        [] => (unknown, Reconciled::NotFound),
        many => (unknown, Reconciled::Ambiguous(many.len())),
    }
}

/// What the provider said about a send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderAnswer {
    /// Provider message id when accepted.
    pub message_sid: Option<String>,
    /// How it ended.
    pub outcome: SendOutcome,
    /// Provider error code of a failure.
    pub error_code: Option<u32>,
}

/// A directory update from the CRM (S3).
#[derive(Clone, Debug, PartialEq)]
pub enum DirectoryUpdate {
    /// `PUT /directory`.
    Replace(Directory),
    /// `PATCH /directory`.
    Patch(DirectoryPatch),
}

/// One thing to sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// An inbound message (R1–R3, B2), with the automatic replies configured (F5).
    Inbound {
        /// The message.
        sms: InboundSms,
        /// The configured replies (HELP / INFO, opt-out and opt-in confirmations).
        auto_reply: Arc<AutoReply>,
    },
    /// A delivery report (C5).
    Status(StatusReport),
    /// A seller moves a conversation (M1).
    Move {
        /// Who asks.
        seller: String,
        /// What to move where.
        request: MoveRequest,
    },
    /// A seller sends a message: validate it and make it pending.
    BeginSend {
        /// Who sends.
        seller: String,
        /// The request.
        request: SendRequest,
    },
    /// The provider answered a pending send.
    FinishSend {
        /// The send.
        pending: PendingSend,
        /// What the provider said.
        answer: ProviderAnswer,
    },
    /// A worker is about to call the provider with a queued send: it becomes
    /// `calling` (durably, before the call).
    Call(PendingSend),
    /// A send whose provider call started before a crash, with what the provider
    /// lists for its numbers and window (`None`: it could not be asked).
    Reconcile {
        /// The send.
        pending: PendingSend,
        /// The provider's messages.
        listed: Option<Vec<ListedMessage>>,
    },
    /// A send left pending by a crash: the provider may or may not have it; it is
    /// logged with an unknown outcome, never resent blindly.
    Abandon(PendingSend),
    /// The CRM replaces or patches the directory (S3).
    Directory(DirectoryUpdate),
    /// An administrator erases a customer number (F6): logged as `erased` whatever it
    /// finds (the log's own record of the request); the store redacts the rest.
    Erase {
        /// The customer number (E.164).
        number: String,
    },
}

impl Command {
    /// The idempotency key of the provider callback this command carries: a repeat
    /// is answered with nothing (the executor checks the log before deciding).
    pub fn dedupe_key(&self) -> Option<String> {
        match self {
            Self::Inbound { sms, .. } => Some(format!("in:{}", sms.message_sid)),
            Self::Status(r) => Some(format!("st:{}:{:?}", r.message_sid, r.status)),
            _ => None,
        }
    }
}

/// What a send does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendPlan {
    /// Call the provider with this (written as pending by the same decision).
    Go(PendingSend),
    /// Already done (same seller and `client_ref`): answer with the earlier outcome.
    Done(SentMessage),
    /// The same send is queued or with the provider right now.
    InProgress,
}

/// A write the executor carries out, in order, inside the batch's transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Append an event unless its idempotency key is in the log already.
    Append {
        /// What happened.
        body: EventBody,
        /// Its idempotency key.
        dedupe: Option<String>,
    },
    /// Record a send as `queued` (accepted, not yet handed to the provider).
    AddPending(PendingSend),
    /// Mark a queued send `calling`: the provider call starts after the commit.
    MarkCalling(PendingSend),
    /// Forget a pending send (its outcome is in the same batch).
    RemovePending(PendingSend),
}

/// What [`decide`] settled: the writes, and for a send what happens next.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// Writes, in order.
    pub ops: Vec<Op>,
    /// For [`Command::BeginSend`] and [`Command::Call`]: the plan; for
    /// [`Command::Inbound`]: the automatic reply to send, if any (F5).
    pub send: Option<SendPlan>,
    /// For [`Command::Reconcile`]: what was found.
    pub reconciled: Option<Reconciled>,
}

/// The idempotency key of a lead's `lead_created` event. An erasure (F6) forgets
/// the keys of the leads it removes, so the number's next text makes its lead again.
pub fn lead_dedupe_key(lead_id: &str) -> String {
    format!("lead:{lead_id}")
}

impl Decision {
    fn append(&mut self, body: EventBody, dedupe: Option<String>) {
        self.ops.push(Op::Append { body, dedupe });
    }
}

/// Why a command is refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Not the seller's to see, or not there: the same answer for both (X5).
    #[error("that conversation is not visible to you")]
    NotVisible,
    /// The seller sees it, but that record holds no conversation of these numbers
    /// (it may have moved already).
    #[error("that record holds no conversation between these numbers")]
    NoSuchConversation,
    /// The target record does not exist.
    #[error("no such record")]
    NoSuchRecord,
    /// The conversation is already on the target record.
    #[error("the conversation is already on that record")]
    SameRecord,
    /// A directory from the CRM names a record without its owner.
    #[error("record {0} has no owner")]
    RecordWithoutOwner(String),
    /// A send is refused.
    #[error(transparent)]
    Send(#[from] SendRefusal),
    /// The send to call is no longer pending (its outcome is logged, or the batch
    /// that queued it did not commit).
    #[error("that send is not pending")]
    NotPending,
    /// Not a phone number in E.164 form.
    #[error("not an E.164 phone number")]
    InvalidNumber,
}

impl Refusal {
    /// The stable snake_case code (the HTTP boundary maps it to a status).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotVisible => "not_visible",
            Self::NoSuchConversation => "no_such_conversation",
            Self::NoSuchRecord => "no_such_record",
            Self::SameRecord => "same_record",
            Self::RecordWithoutOwner(_) => "record_without_owner",
            Self::Send(r) => r.code(),
            Self::NotPending => "not_pending",
            Self::InvalidNumber => "invalid_number",
        }
    }
}

/// Decides one command over `state` at `now` (see the module docs).
pub fn decide(state: &State, command: Command, now: Timestamp) -> Result<Decision, Refusal> {
    let mut d = Decision::default();
    match command {
        Command::Inbound { sms, auto_reply } => inbound(state, sms, &auto_reply, now, &mut d),
        Command::Status(r) => {
            let dedupe = format!("st:{}:{:?}", r.message_sid, r.status);
            d.append(
                EventBody::Delivery(DeliveryEvent {
                    message_sid: r.message_sid,
                    status: r.status,
                    error_code: r.error_code,
                    error_message: r.error_message,
                    from: state.key(&r.from),
                    to: state.key(&r.to),
                    at: now,
                }),
                Some(dedupe),
            );
        }
        Command::Move { seller, request } => {
            let body = move_conversation(state, &seller, request, now)?;
            d.append(body, None);
        }
        Command::BeginSend { seller, request } => {
            let plan = begin_send(state, seller, request, now)?;
            if let SendPlan::Go(p) = &plan {
                d.ops.push(Op::AddPending(p.clone()));
            }
            d.send = Some(plan);
        }
        Command::Call(p) => {
            if let Some(done) = state.sent(&p.seller, &p.client_ref) {
                d.send = Some(SendPlan::Done(done.clone()));
            } else if state.in_flight(&p.seller, &p.client_ref) {
                d.ops.push(Op::MarkCalling(p.clone()));
                d.send = Some(SendPlan::Go(p));
            } else {
                return Err(Refusal::NotPending);
            }
        }
        Command::Reconcile { pending, listed } => {
            if state.sent(&pending.seller, &pending.client_ref).is_some() {
                return Err(Refusal::NotPending);
            }
            // A message already logged for another send is not this one's (two sends of
            // the same text within the window): only unclaimed messages may match.
            let unclaimed: Option<Vec<ListedMessage>> = listed.map(|l| {
                l.into_iter()
                    .filter(|m| !state.sid_logged(&m.sid))
                    .collect()
            });
            let (answer, found) = reconcile(&pending, unclaimed.as_deref());
            finish_send(state, pending, answer, now, &mut d);
            d.reconciled = Some(found);
        }
        Command::FinishSend { pending, answer } => finish_send(state, pending, answer, now, &mut d),
        Command::Abandon(pending) => {
            let answer = ProviderAnswer {
                message_sid: None,
                outcome: SendOutcome::Unknown,
                error_code: None,
            };
            finish_send(state, pending, answer, now, &mut d);
        }
        Command::Directory(update) => {
            let upserted = match &update {
                DirectoryUpdate::Replace(d) => &d.records,
                DirectoryUpdate::Patch(p) => &p.upsert.records,
            };
            // Every record the CRM sends has an owner; only sellers' views omit it.
            if let Some(r) = upserted.iter().find(|r| r.owner.is_none()) {
                return Err(Refusal::RecordWithoutOwner(r.id.clone()));
            }
            directory(update, &mut d);
        }
        Command::Erase { number } => {
            if crate::phone::normalize(&number, None).is_err() {
                return Err(Refusal::InvalidNumber);
            }
            d.append(EventBody::Erased(state.erasure(&number, now)), None);
        }
    }
    Ok(d)
}

fn directory(update: DirectoryUpdate, d: &mut Decision) {
    match update {
        DirectoryUpdate::Replace(directory) => d.append(
            EventBody::DirectoryReplaced(DirectoryReplacedEvent { directory }),
            None,
        ),
        DirectoryUpdate::Patch(patch) => d.append(
            EventBody::DirectoryChanged(DirectoryChangedEvent { patch }),
            None,
        ),
    }
}

/// An inbound message: a lead for an unknown number (R3), a consent change for a
/// keyword (B2), then the message with its routing decision (S2), then the automatic
/// reply it calls for (F5), queued like a seller's send.
fn inbound(
    state: &State,
    sms: InboundSms,
    auto_reply: &AutoReply,
    now: Timestamp,
    d: &mut Decision,
) {
    let from = state.key(&sms.from);
    let to = state.key(&sms.to);
    let decision = state.route(&from, &to);
    if let RouteDecision::NewLead { new_lead, .. } = &decision {
        // Exactly one lead per number: its id is derived from the number, and the
        // sequencer sees every inbound in order.
        let record =
            lead::for_unknown_number(&new_lead.id, &new_lead.phone, new_lead.owner.clone(), now);
        d.append(
            EventBody::LeadCreated(LeadCreatedEvent { record }),
            Some(lead_dedupe_key(&new_lead.id)),
        );
    }
    let before = state.consent(&to, &from);
    let reply =
        auto_reply_to(state, &sms, &from, &to, auto_reply, before).map(|body| PendingSend {
            client_ref: autoreply::client_ref(&sms.message_sid),
            seller: AUTO_REPLY_SENDER.to_owned(),
            from: to.clone(),
            to: from.clone(),
            body,
            record_id: decision.record_id().to_owned(),
            at: now,
        });
    if let Some(consent) = keyword(&sms.body) {
        if before != consent {
            d.append(
                EventBody::ConsentChanged(ConsentChangedEvent {
                    org_number: to.clone(),
                    customer_number: from.clone(),
                    consent,
                    at: now,
                }),
                None,
            );
        }
    }
    let dedupe = format!("in:{}", sms.message_sid);
    d.append(
        EventBody::Inbound(InboundEvent {
            message_sid: sms.message_sid,
            from,
            to,
            body: sms.body,
            media: sms.media,
            at: now,
            record_id: decision.record_id().to_owned(),
            rule: decision.rule(),
        }),
        Some(dedupe),
    );
    if let Some(p) = reply {
        d.ops.push(Op::AddPending(p.clone()));
        d.send = Some(SendPlan::Go(p));
    }
}

/// The text of the automatic reply to an inbound message (F5): never to one of the
/// org's own numbers (two auto-replying numbers would answer each other), never twice
/// for the same message (its client reference is derived from the message).
fn auto_reply_to(
    state: &State,
    sms: &InboundSms,
    from: &str,
    to: &str,
    config: &AutoReply,
    before: crate::consent::Consent,
) -> Option<String> {
    if state.org_owner(from).is_some() {
        return None;
    }
    let client_ref = autoreply::client_ref(&sms.message_sid);
    if state.sent(AUTO_REPLY_SENDER, &client_ref).is_some()
        || state.in_flight(AUTO_REPLY_SENDER, &client_ref)
    {
        return None;
    }
    let replies = config.for_number(to, state.default_region());
    autoreply::reply(replies, &sms.from, &sms.body, before).map(|r| r.body)
}

/// A move (M1): visibility first, so a seller learns nothing of conversations that
/// are not theirs (X5); then whether the conversation is there and the target exists.
fn move_conversation(
    state: &State,
    seller: &str,
    req: MoveRequest,
    now: Timestamp,
) -> Result<EventBody, Refusal> {
    let org = state.key(&req.org_number);
    let customer = state.key(&req.customer_number);
    if !state.can_see(seller, &org, Some(&req.from_record)) {
        return Err(Refusal::NotVisible);
    }
    if !state
        .conversation_records(&org, &customer)
        .contains(&req.from_record.as_str())
    {
        return Err(Refusal::NoSuchConversation);
    }
    // Any record the seller receives at least by name is a target (M1, X5).
    if state.record(&req.to_record).is_none() {
        return Err(Refusal::NoSuchRecord);
    }
    if req.to_record == req.from_record {
        return Err(Refusal::SameRecord);
    }
    Ok(EventBody::ConversationMoved(ConversationMovedEvent {
        org_number: org,
        customer_number: customer,
        from_record: req.from_record,
        to_record: req.to_record,
        by: seller.to_owned(),
        at: now,
    }))
}

/// A send (B2, B7, C4): an earlier answer for the same seller and `client_ref`, or
/// the shared send check, then the record it goes on.
fn begin_send(
    state: &State,
    seller: String,
    req: SendRequest,
    now: Timestamp,
) -> Result<SendPlan, Refusal> {
    send::check_client_ref(&req.client_ref)?;
    if let Some(done) = state.sent(&seller, &req.client_ref) {
        return Ok(SendPlan::Done(done.clone()));
    }
    if state.in_flight(&seller, &req.client_ref) {
        return Ok(SendPlan::InProgress);
    }
    let from = state.key(&req.from);
    let region = state.default_region();
    // Consent is keyed by the normalised customer number (as inbound messages are).
    let to_key = normalize(&req.to, region).map_or_else(|_| req.to.clone(), String::from);
    let to = send::check(&Outgoing {
        body: &req.body,
        from: &from,
        to: &req.to,
        may_send_from: state.access(&seller).may_send_from(state.org_owner(&from)),
        consent: state.consent(&from, &to_key),
        region,
    })?;
    let record_id = match req.record_id.filter(|r| !r.is_empty()) {
        // Only a record the seller receives in full: "not there" and "not yours" get
        // the same answer (X5).
        Some(r) if state.receives_in_full(&seller, &r) => r,
        Some(_) => return Err(SendRefusal::NoSuchRecord.into()),
        None => state
            .conversation_record(&from, to.as_str())
            .map(str::to_owned)
            .ok_or(SendRefusal::NoRecord)?,
    };
    Ok(SendPlan::Go(PendingSend {
        client_ref: req.client_ref,
        seller,
        from,
        to: to.into(),
        body: req.body,
        record_id,
        at: now,
    }))
}

/// The outcome of a send: the outbound event, and the pending row goes.
fn finish_send(
    state: &State,
    mut pending: PendingSend,
    answer: ProviderAnswer,
    now: Timestamp,
    d: &mut Decision,
) {
    // Its customer was erased while the provider had it (F6): the outcome is logged,
    // the text is not.
    if state.erased_since(&pending.to, pending.at) {
        pending.body.clear();
    }
    // The seller's id is length-prefixed: a `:` in it cannot make two sends' keys meet.
    let dedupe = format!(
        "out:{}:{}:{}",
        pending.seller.len(),
        pending.seller,
        pending.client_ref
    );
    d.ops.push(Op::RemovePending(pending.clone()));
    d.append(
        EventBody::Outbound(OutboundEvent {
            client_ref: pending.client_ref,
            message_sid: answer.message_sid,
            from: pending.from,
            to: pending.to,
            body: pending.body,
            record_id: pending.record_id,
            by: pending.seller,
            at: now,
            outcome: answer.outcome,
            error_code: answer.error_code,
        }),
        Some(dedupe),
    );
}
