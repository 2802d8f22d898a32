//! The conversation pane as a deterministic state machine (C1–C6, M1–M2).
//!
//! Shaped like quinn-proto: [`Pane::handle`] takes a [`PaneInput`] and `now`, changes
//! state, and queues [`Effect`]s for the shell to carry out (load history, persist a
//! draft, send through the relay, mark read, notify); [`Pane::poll_effect`] drains
//! them in the order they were queued, and [`Pane::view`] is what to render. No IO,
//! no clock: the shell owns IndexedDB, the relay connection and the DOM.

mod effect;
mod input;

pub use crate::protocol::SendRequest;
pub use effect::{ConversationKey, Effect};
pub use input::{OpenRequest, OpenSource, PaneInput, RecordRef};

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::access::Access;
use crate::consent::Consent;
use crate::delivery::{Delivery, DeliveryStatus};
use crate::directory::Owner;
use crate::failure::{explain, FailureReason};
use crate::phone::E164;
use crate::routing::{RouteReason, RouteRule};
use crate::segments::{count, SegmentCount, MAX_BODY_CHARS};
use crate::send::{self, Outgoing, SendRefusal};
use crate::template::{Template, TemplateError};
use crate::time::Timestamp;
use crate::value::Value;
use crate::visibility::Hidden;

/// Messages per history page.
pub const HISTORY_PAGE: usize = 50;

/// Inbound or outbound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the customer.
    Inbound,
    /// From the seller.
    Outbound,
}

/// Where an outbound message is before the provider reports on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalState {
    /// Handed to the relay, no answer yet.
    Sending,
    /// The relay was unreachable: waiting in the outbox (B4).
    QueuedOffline,
    /// The relay accepted it; the provider's reports follow.
    Accepted,
    /// Refused by the relay or provider.
    Failed,
    /// The outcome is unknown (timeout after sending): not resent blindly.
    Unknown,
}

/// An attachment of an inbound MMS (B8).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    /// Where the provider stores it.
    pub url: String,
    /// Its MIME type.
    pub content_type: String,
}

/// One message as the pane shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    /// Stable id (provider id, or client reference before the provider answers).
    pub id: String,
    /// Client reference of an outbound message.
    #[serde(default)]
    pub client_ref: Option<String>,
    /// Provider message id, once known.
    #[serde(default)]
    pub provider_id: Option<String>,
    /// Inbound or outbound.
    pub direction: Direction,
    /// The text.
    pub body: String,
    /// When it was sent or received.
    pub at: Timestamp,
    /// Provider delivery status of an outbound message (C5).
    #[serde(default)]
    pub delivery: Option<Delivery>,
    /// Local state of an outbound message.
    #[serde(default)]
    pub local: Option<LocalState>,
    /// Why it failed, in plain language (B5); derived from `delivery`, never stored.
    #[serde(skip_deserializing)]
    pub failure: Option<FailureReason>,
    /// Inbound media (B8).
    #[serde(default)]
    pub media: Vec<Media>,
}

/// A move of the conversation between records (M2, B1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveEntry {
    /// Who moved it (seller id).
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// Source record id.
    pub from_record: String,
    /// Target record id.
    pub to_record: String,
}

/// The composer as shown: the text, what will be sent, and whether it can be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ComposerView {
    /// What the seller typed (may hold placeholders).
    pub text: String,
    /// The text as it will be sent, placeholders filled.
    pub preview: String,
    /// Placeholders with no value (C3): shown before sending.
    pub missing: Vec<String>,
    /// A template syntax error: code and byte offset.
    pub template_error: Option<TemplateErrorView>,
    /// Encoding and segments of the preview (B3).
    pub segments: SegmentCount,
    /// Why sending is not possible now, if it is not.
    pub blocked: Option<&'static str>,
    /// Characters left before the 1,600-character limit, once within
    /// [`LIMIT_WARNING`] of it (B7: announced before it is hit); negative when over.
    pub limit_left: Option<i64>,
}

/// How close to the 1,600-character limit the composer starts counting down (B7).
pub const LIMIT_WARNING: usize = 200;

/// A template syntax error for display.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TemplateErrorView {
    /// Stable code, e.g. `unclosed_expression`.
    pub code: &'static str,
    /// Byte offset in the composer text.
    pub offset: usize,
    /// Explanation.
    pub message: String,
}

/// Everything the shell renders for an open pane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PaneView {
    /// How it was opened.
    pub source: OpenSource,
    /// The conversation.
    pub conversation: ConversationKey,
    /// The record it is attached to.
    pub record: RecordRef,
    /// Related records (C2).
    pub related: Vec<RecordRef>,
    /// Org numbers to choose from (C4).
    pub from_choices: Vec<String>,
    /// Customer numbers to choose from (C4).
    pub to_choices: Vec<String>,
    /// The rule that routed the conversation (B1), even after a move.
    pub route_rule: Option<RouteRule>,
    /// Why it is on this record now, as a code with parameters (B1, E5): the move
    /// that brought it here (who, when, from where), else the routing rule.
    pub route: Option<RouteReason>,
    /// Moves so far (B1).
    pub moves: Vec<MoveEntry>,
    /// A move waiting for the relay's confirmation.
    pub pending_move: Option<RecordRef>,
    /// The last move failure, as a code: the relay's error code (`not_visible`,
    /// `same_record`, ...) or `move_refused` when it gave none (E5).
    pub move_error: Option<String>,
    /// Consent badge (B2).
    pub consent: Consent,
    /// History, oldest to newest (C1).
    pub messages: Vec<MessageView>,
    /// Whether older messages can be loaded.
    pub has_more: bool,
    /// Whether a history page is being read.
    pub loading: bool,
    /// The composer.
    pub composer: ComposerView,
}

/// Why the pane refused an input.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PaneError {
    /// The input needs an open pane.
    #[error("no conversation is open")]
    NotOpen,
    /// V2: a direct open of a conversation the seller may not see.
    #[error(transparent)]
    NotVisible(#[from] Hidden),
    /// A chosen number is not one of the choices.
    #[error("{0} is not one of the numbers to choose from")]
    UnknownNumber(String),
    /// The message may not be sent (the same refusals as the relay's).
    #[error(transparent)]
    Send(#[from] SendRefusal),
    /// Placeholders with no value, and the seller did not confirm (C3).
    #[error("these fields have no value: {}", .0.join(", "))]
    MissingFields(Vec<String>),
    /// The composer text is not a valid template.
    #[error("template error: {0}")]
    Template(#[from] TemplateError),
    /// A move is already waiting for confirmation.
    #[error("a move is already in progress")]
    MoveInProgress,
}

impl PaneError {
    /// A stable snake_case code for the JS boundary.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotOpen => "not_open",
            Self::NotVisible(_) => "not_visible",
            Self::UnknownNumber(_) => "unknown_number",
            Self::Send(r) => r.code(),
            Self::MissingFields(_) => "missing_fields",
            Self::Template(_) => "template_syntax",
            Self::MoveInProgress => "move_in_progress",
        }
    }
}

/// The signed-in seller, the teams they belong to, and the region for national numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaneConfig {
    /// Seller id.
    pub seller: String,
    /// The seller's team ids.
    pub teams: Vec<String>,
    /// Region for reading national numbers.
    pub default_region: Option<String>,
}

struct Open {
    req: OpenRequest,
    conversation: ConversationKey,
    messages: Vec<MessageView>,
    has_more: bool,
    loading: bool,
    text: String,
    template: Result<Template, TemplateError>,
    pending_move: Option<RecordRef>,
    move_error: Option<String>,
}

/// The conversation pane. See the module docs for the input/effect cycle.
pub struct Pane {
    config: PaneConfig,
    access: Access,
    open: Option<Open>,
    effects: VecDeque<Effect>,
}

impl Pane {
    /// A closed pane for the seller in `config`.
    pub fn new(config: PaneConfig) -> Self {
        Self {
            access: Access::from_teams(&config.seller, config.teams.clone()),
            config,
            open: None,
            effects: VecDeque::new(),
        }
    }

    /// The next thing the shell must do, in the order queued.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Whether a conversation is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The open conversation's record and numbers (cheaper than [`Pane::view`]).
    pub fn conversation(&self) -> Option<&ConversationKey> {
        self.open.as_ref().map(|o| &o.conversation)
    }

    /// What to render, or `None` when closed.
    pub fn view(&self) -> Option<PaneView> {
        let o = self.open.as_ref()?;
        Some(PaneView {
            source: o.req.source.clone(),
            conversation: o.conversation.clone(),
            record: o.req.record.clone(),
            related: o.req.related.clone(),
            from_choices: o.req.from_choices.clone(),
            to_choices: o.req.to_choices.clone(),
            route_rule: o.req.route_rule,
            route: self.route(o),
            moves: o.req.moves.clone(),
            pending_move: o.pending_move.clone(),
            move_error: o.move_error.clone(),
            consent: o.req.consent,
            messages: o.messages.clone(),
            has_more: o.has_more,
            loading: o.loading,
            composer: self.composer(o),
        })
    }

    fn composer(&self, o: &Open) -> ComposerView {
        let (preview, missing, template_error) = match &o.template {
            Ok(t) => {
                let r = t.render(&o.req.template_data);
                (r.text, r.missing, None)
            }
            Err(e) => (
                o.text.clone(),
                Vec::new(),
                Some(TemplateErrorView {
                    code: e.kind.code(),
                    offset: e.offset,
                    message: e.detail.clone(),
                }),
            ),
        };
        let segments = count(&preview);
        let blocked = self.send_check(o, &preview).err().map(|e| e.code());
        let chars = preview.chars().count();
        let limit_left =
            (chars + LIMIT_WARNING > MAX_BODY_CHARS).then(|| MAX_BODY_CHARS as i64 - chars as i64);
        ComposerView {
            limit_left,
            text: o.text.clone(),
            preview,
            missing,
            template_error,
            segments,
            blocked,
        }
    }

    /// The owner of the org number the conversation is on, when known.
    fn org_owner<'a>(&self, o: &'a Open) -> Option<&'a Owner> {
        let from = &o.conversation.org_number;
        o.req
            .from_choices
            .iter()
            .position(|c| self.key(c) == *from)
            .and_then(|i| o.req.from_owners.get(i))
    }

    /// Why the conversation is on its record: the latest move onto it, else the rule (B1).
    fn route(&self, o: &Open) -> Option<RouteReason> {
        let record = &o.conversation.record_id;
        if let Some(m) = o.req.moves.iter().rev().find(|m| &m.to_record == record) {
            return Some(RouteReason::MovedHere {
                by: m.by.clone(),
                at: m.at,
                from_record: m.from_record.clone(),
            });
        }
        let rule = o.req.route_rule?;
        Some(RouteReason::of_rule(
            rule,
            &o.conversation.customer_number,
            o.req.record.kind,
            self.org_owner(o),
        ))
    }

    /// Checks everything but missing placeholders (which the seller may confirm).
    fn send_check(&self, o: &Open, body: &str) -> Result<E164, PaneError> {
        if let Err(e) = &o.template {
            return Err(PaneError::Template(e.clone()));
        }
        let from = &o.conversation.org_number;
        let org_owner = self.org_owner(o);
        Ok(send::check(&Outgoing {
            body,
            from,
            to: &o.conversation.customer_number,
            may_send_from: self.access.may_send_from(org_owner),
            consent: o.req.consent,
            region: self.region(),
        })?)
    }

    fn region(&self) -> Option<&str> {
        self.config.default_region.as_deref()
    }

    fn open_mut(&mut self) -> Result<&mut Open, PaneError> {
        self.open.as_mut().ok_or(PaneError::NotOpen)
    }

    fn key(&self, raw: &str) -> String {
        crate::phone::match_key(raw, self.region())
    }

    /// The key of the conversation an event is about, numbers normalised.
    fn conversation_key(&self, record_id: String, org: &str, customer: &str) -> ConversationKey {
        ConversationKey {
            record_id,
            org_number: self.key(org),
            customer_number: self.key(customer),
        }
    }

    /// Applies one input at time `now`; on `Err` nothing changed.
    pub fn handle(&mut self, input: PaneInput, now: Timestamp) -> Result<(), PaneError> {
        match input {
            PaneInput::Open(req) => self.handle_open(*req)?,
            PaneInput::HistoryLoaded { messages, has_more } => {
                let region = self.config.default_region.clone();
                let o = self.open_mut()?;
                o.loading = false;
                o.has_more = has_more;
                o.merge_stored(messages, region.as_deref());
            }
            PaneInput::Synced { messages } => {
                let region = self.config.default_region.clone();
                self.open_mut()?.merge_stored(messages, region.as_deref());
            }
            PaneInput::LoadOlder => {
                let o = self.open_mut()?;
                if !o.has_more || o.loading {
                    return Ok(());
                }
                o.loading = true;
                let before = o.messages.first().map(|m| m.at);
                let at_edge = o
                    .messages
                    .iter()
                    .take_while(|m| Some(m.at) == before)
                    .count();
                let effect = Effect::LoadHistory {
                    conversation: o.conversation.clone(),
                    before,
                    at_edge,
                    limit: HISTORY_PAGE,
                };
                self.effects.push_back(effect);
            }
            PaneInput::ComposerEdited { text } | PaneInput::TemplateChosen { body: text } => {
                let o = self.open_mut()?;
                o.template = Template::compile(&text);
                o.text = text;
                let effect = Effect::PersistDraft {
                    conversation: o.conversation.clone(),
                    text: o.text.clone(),
                };
                self.effects.push_back(effect);
            }
            PaneInput::FromChosen { number } => self.choose_number(number, true)?,
            PaneInput::ToChosen { number } => self.choose_number(number, false)?,
            PaneInput::Send {
                client_ref,
                confirm_missing,
            } => self.handle_send(client_ref, confirm_missing, now)?,
            PaneInput::SendAccepted {
                client_ref,
                provider_id,
                status,
            } => {
                let o = self.open_mut()?;
                if let Some(m) = find_outbound(&mut o.messages, &client_ref) {
                    m.provider_id = Some(provider_id);
                    m.local = Some(LocalState::Accepted);
                    let st = status.unwrap_or(DeliveryStatus::Queued);
                    match &mut m.delivery {
                        Some(d) => {
                            d.apply(st, None);
                        }
                        None => m.delivery = Some(Delivery::new(st)),
                    }
                }
            }
            PaneInput::SendFailed {
                client_ref,
                offline,
                unknown,
                error_code,
            } => {
                let region = self.config.default_region.clone();
                let o = self.open_mut()?;
                let to = o.conversation.customer_number.clone();
                if let Some(m) = find_outbound(&mut o.messages, &client_ref) {
                    m.local = Some(if offline {
                        LocalState::QueuedOffline
                    } else if unknown {
                        LocalState::Unknown
                    } else {
                        let d = m
                            .delivery
                            .get_or_insert_with(|| Delivery::new(DeliveryStatus::Failed));
                        d.apply(DeliveryStatus::Failed, error_code);
                        m.failure = Some(explain(d.error_code, &to, region.as_deref()));
                        LocalState::Failed
                    });
                }
            }
            PaneInput::Inbound {
                message,
                record_id,
                org_number,
                customer_number,
                read,
            } => {
                let conversation = self.conversation_key(record_id, &org_number, &customer_number);
                match self.open.as_mut() {
                    Some(o) if o.conversation == conversation => {
                        merge_message(&mut o.messages, message);
                        if !read {
                            self.effects.push_back(Effect::MarkRead { conversation });
                        }
                    }
                    _ => self.effects.push_back(Effect::Notify {
                        conversation,
                        message_id: message.id,
                    }),
                }
            }
            PaneInput::OutboundLogged {
                message,
                record_id,
                org_number,
                customer_number,
            } => {
                let conversation = self.conversation_key(record_id, &org_number, &customer_number);
                let region = self.config.default_region.clone();
                if let Some(o) = self
                    .open
                    .as_mut()
                    .filter(|o| o.conversation == conversation)
                {
                    o.merge_stored(vec![message], region.as_deref());
                }
            }
            PaneInput::DeliveryReport {
                provider_id,
                status,
                error_code,
            } => {
                let region = self.config.default_region.clone();
                let o = self.open_mut()?;
                let to = o.conversation.customer_number.clone();
                let found = o
                    .messages
                    .iter_mut()
                    .find(|m| m.provider_id.as_deref() == Some(provider_id.as_str()));
                if let Some(m) = found {
                    let d = m
                        .delivery
                        .get_or_insert_with(|| Delivery::new(DeliveryStatus::Queued));
                    d.apply(status, error_code);
                    if d.status.is_failure() {
                        m.failure = Some(explain(d.error_code, &to, region.as_deref()));
                    }
                }
            }
            PaneInput::MoveRequested { target } => {
                let o = self.open_mut()?;
                if o.pending_move.is_some() {
                    return Err(PaneError::MoveInProgress);
                }
                let effect = Effect::RequestMove {
                    conversation: o.conversation.clone(),
                    target_record_id: target.id.clone(),
                };
                o.pending_move = Some(target);
                o.move_error = None;
                self.effects.push_back(effect);
            }
            PaneInput::MoveConfirmed { entry, target } => {
                let o = self.open_mut()?;
                if entry.from_record != o.conversation.record_id {
                    return Ok(()); // another conversation's move
                }
                o.conversation.record_id = target.id.clone();
                o.req.record = target;
                o.req.moves.push(entry);
                o.pending_move = None;
            }
            PaneInput::MoveFailed { reason } => {
                let o = self.open_mut()?;
                o.pending_move = None;
                o.move_error = Some(reason);
            }
            PaneInput::RelatedChosen { record_id } => {
                let o = self.open_mut()?;
                if !o.req.related.iter().any(|r| r.id == record_id) {
                    return Err(PaneError::UnknownNumber(record_id));
                }
                self.effects.push_back(Effect::SwitchRecord { record_id });
            }
            PaneInput::ConsentChanged { consent } => self.open_mut()?.req.consent = consent,
            PaneInput::Close => self.open = None,
        }
        self.effects.push_back(Effect::Render);
        Ok(())
    }

    /// Picks the org number (`from`) or customer number among the choices (C4) and
    /// reloads the history of the conversation those numbers make.
    fn choose_number(&mut self, number: String, from: bool) -> Result<(), PaneError> {
        let key = self.key(&number);
        let region = self.config.default_region.clone();
        let o = self.open_mut()?;
        let choices = if from {
            &o.req.from_choices
        } else {
            &o.req.to_choices
        };
        let choice = choices
            .iter()
            .find(|c| crate::phone::match_key(c, region.as_deref()) == key)
            .cloned()
            .ok_or(PaneError::UnknownNumber(number))?;
        if from {
            o.req.from = Some(choice);
            o.conversation.org_number = key;
        } else {
            o.req.to = Some(choice);
            o.conversation.customer_number = key;
        }
        self.reload_history();
        Ok(())
    }

    fn handle_open(&mut self, req: OpenRequest) -> Result<(), PaneError> {
        let from = req
            .from
            .clone()
            .or_else(|| req.from_choices.first().cloned());
        let org_owner = from.as_ref().and_then(|f| {
            let key = self.key(f);
            req.from_choices
                .iter()
                .position(|c| self.key(c) == key)
                .and_then(|i| req.from_owners.get(i))
        });
        if !self.access.can_see(org_owner, req.record.owner.as_ref()) {
            return Err(PaneError::NotVisible(Hidden));
        }
        let to = req.to.clone().or_else(|| req.to_choices.first().cloned());
        let conversation = ConversationKey {
            record_id: req.record.id.clone(),
            org_number: from.as_deref().map(|f| self.key(f)).unwrap_or_default(),
            customer_number: to.as_deref().map(|t| self.key(t)).unwrap_or_default(),
        };
        let text = req.draft.clone();
        self.open = Some(Open {
            template: Template::compile(&text),
            text,
            req: OpenRequest { from, to, ..req },
            conversation,
            messages: Vec::new(),
            has_more: false,
            loading: false,
            pending_move: None,
            move_error: None,
        });
        self.reload_history();
        Ok(())
    }

    /// Drops the shown history and asks for the newest page of the current conversation.
    fn reload_history(&mut self) {
        let Some(o) = self.open.as_mut() else { return };
        o.messages.clear();
        o.has_more = false;
        o.loading = true;
        let conversation = o.conversation.clone();
        self.effects.push_back(Effect::LoadHistory {
            conversation: conversation.clone(),
            before: None,
            at_edge: 0,
            limit: HISTORY_PAGE,
        });
        self.effects.push_back(Effect::MarkRead { conversation });
    }

    fn handle_send(
        &mut self,
        client_ref: String,
        confirm_missing: bool,
        now: Timestamp,
    ) -> Result<(), PaneError> {
        let o = self.open.as_ref().ok_or(PaneError::NotOpen)?;
        let template = o
            .template
            .as_ref()
            .map_err(|e| PaneError::Template(e.clone()))?;
        let rendered = template.render(&o.req.template_data);
        let to = self.send_check(o, &rendered.text)?;
        if !rendered.missing.is_empty() && !confirm_missing {
            return Err(PaneError::MissingFields(rendered.missing));
        }
        let request = SendRequest {
            client_ref: client_ref.clone(),
            from: o.conversation.org_number.clone(),
            to: to.into(),
            body: rendered.text.clone(),
            record_id: Some(o.conversation.record_id.clone()),
        };
        let o = self.open_mut()?;
        merge_message(
            &mut o.messages,
            MessageView {
                id: client_ref.clone(),
                client_ref: Some(client_ref),
                provider_id: None,
                direction: Direction::Outbound,
                body: rendered.text,
                at: now,
                delivery: None,
                local: Some(LocalState::Sending),
                failure: None,
                media: Vec::new(),
            },
        );
        o.text.clear();
        o.template = Template::compile("");
        let draft = Effect::PersistDraft {
            conversation: o.conversation.clone(),
            text: String::new(),
        };
        self.effects.push_back(Effect::Send(request));
        self.effects.push_back(draft);
        Ok(())
    }
}

fn find_outbound<'a>(
    messages: &'a mut [MessageView],
    client_ref: &str,
) -> Option<&'a mut MessageView> {
    messages
        .iter_mut()
        .find(|m| m.client_ref.as_deref() == Some(client_ref))
}

/// Inserts `m` in time order, or merges it into the message it duplicates (same id,
/// provider id or client reference), keeping the furthest delivery status.
impl Open {
    /// Merges stored messages into the history, explaining failed deliveries (B5).
    fn merge_stored(&mut self, messages: Vec<MessageView>, region: Option<&str>) {
        for mut m in messages {
            if let Some(d) = m.delivery.as_ref().filter(|d| d.status.is_failure()) {
                m.failure = Some(explain(
                    d.error_code,
                    &self.conversation.customer_number,
                    region,
                ));
            }
            merge_message(&mut self.messages, m);
        }
    }
}

fn merge_message(messages: &mut Vec<MessageView>, m: MessageView) {
    let same = |x: &MessageView| {
        x.id == m.id
            || (m.provider_id.is_some() && x.provider_id == m.provider_id)
            || (m.client_ref.is_some() && x.client_ref == m.client_ref)
    };
    if let Some(existing) = messages.iter_mut().find(|x| same(x)) {
        if existing.provider_id.is_none() {
            existing.provider_id = m.provider_id;
        }
        if let Some(d) = m.delivery {
            match &mut existing.delivery {
                Some(e) => {
                    e.apply(d.status, d.error_code);
                }
                None => existing.delivery = Some(d),
            }
        }
        if m.local.is_some() && existing.local != Some(LocalState::Accepted) {
            existing.local = m.local;
        }
        if existing.failure.is_none() {
            existing.failure = m.failure;
        }
        return;
    }
    let at = messages.partition_point(|x| (x.at, &x.id) <= (m.at, &m.id));
    messages.insert(at, m);
}

/// Template data helper: an object with one field per `(name, value)`.
pub fn template_data<'a>(fields: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value::object(fields)
}
