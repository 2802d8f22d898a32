//! The imperative shell around the pure pane state machine: it seeds the pane from
//! IndexedDB, carries out its effects (history pages, read marks, drafts, sends) and
//! feeds the results back, so JS only dispatches inputs and renders the view.

use std::cell::RefCell;

use sms_core::directory::{OrgNumber, Record};
use sms_core::pane::{
    Effect, LocalState, MessageView, OpenRequest, OpenSource, Pane, PaneConfig, PaneInput,
    RecordRef,
};
use sms_core::protocol::{EventBody, LoggedEvent};
use sms_core::value::Value;
use sms_core::Timestamp;
use wasm_bindgen::prelude::*;

use crate::client::SmsClient;
use crate::js_error::{js_error, JsResult};
use crate::store::records::StoredMessage;
use crate::store::{PaneSeed, StoreError};
use crate::to_js;
use sms_core::pane::HISTORY_PAGE;

/// A pane input from the page, read field by field (the derived, internally tagged
/// decoder of `PaneInput` buffers through a generic tree and costs module size).
#[derive(serde::Deserialize)]
struct UserInput {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    client_ref: Option<String>,
    #[serde(default)]
    confirm_missing: bool,
    #[serde(default)]
    target: Option<RecordRef>,
    #[serde(default)]
    record_id: Option<String>,
}

fn user_input(v: JsValue) -> JsResult<PaneInput> {
    let u: UserInput = serde_wasm_bindgen::from_value(v)
        .map_err(|e| js_error("invalid_input", &e.to_string(), &[]))?;
    let missing =
        |field: &str| js_error("invalid_input", &format!("{} needs {field}", u.kind), &[]);
    Ok(match u.kind.as_str() {
        "load_older" => PaneInput::LoadOlder,
        "composer_edited" => PaneInput::ComposerEdited {
            text: u.text.clone().unwrap_or_default(),
        },
        "template_chosen" => PaneInput::TemplateChosen {
            body: u.body.clone().ok_or_else(|| missing("body"))?,
        },
        "from_chosen" => PaneInput::FromChosen {
            number: u.number.clone().ok_or_else(|| missing("number"))?,
        },
        "to_chosen" => PaneInput::ToChosen {
            number: u.number.clone().ok_or_else(|| missing("number"))?,
        },
        "send" => PaneInput::Send {
            client_ref: u.client_ref.clone().ok_or_else(|| missing("client_ref"))?,
            confirm_missing: u.confirm_missing,
        },
        "move_requested" => PaneInput::MoveRequested {
            target: u.target.clone().ok_or_else(|| missing("target"))?,
        },
        "related_chosen" => PaneInput::RelatedChosen {
            record_id: u.record_id.clone().ok_or_else(|| missing("record_id"))?,
        },
        "close" => PaneInput::Close,
        other => {
            return Err(js_error(
                "invalid_input",
                &format!("unknown pane input {other:?}"),
                &[],
            ))
        }
    })
}

/// How the pane was opened, from `{via, field?, id?}`.
fn open_source(v: &JsValue) -> JsResult<OpenSource> {
    if v.is_undefined() || v.is_null() {
        return Ok(OpenSource::Grid);
    }
    let get = |k: &str| {
        js_sys::Reflect::get(v, &k.into())
            .ok()
            .and_then(|x| x.as_string())
    };
    let text = |k: &str| {
        get(k).ok_or_else(|| js_error("invalid_input", &format!("open source needs {k}"), &[]))
    };
    Ok(match get("via").as_deref() {
        Some("grid") | None => OpenSource::Grid,
        Some("record_phone") => OpenSource::RecordPhone {
            field: text("field")?,
        },
        Some("notification") => OpenSource::Notification { id: text("id")? },
        Some("work_item") => OpenSource::WorkItem { id: text("id")? },
        Some("related") => OpenSource::Related,
        Some(other) => {
            return Err(js_error(
                "invalid_input",
                &format!("unknown open source {other:?}"),
                &[],
            ))
        }
    })
}

/// The open pane, if any (borrowed only between awaits, never across them), and the
/// first history page read with its seed, handed over when the pane asks for it.
#[derive(Default)]
pub(crate) struct PaneSlot(RefCell<Option<Pane>>, RefCell<Option<Preloaded>>);

/// What the pane seed read ahead: the first history page (taken by the first
/// `LoadHistory`), the sends still queued, and how many messages were unread.
struct Preloaded {
    conversation_id: String,
    page: Option<crate::store::HistoryPage>,
    queued: Vec<String>,
    unread: u32,
}

fn now() -> Timestamp {
    Timestamp::from_millis(js_sys::Date::now() as i64)
}

fn store_error(e: StoreError) -> JsValue {
    js_error(e.code, &e.message, &[])
}

fn pane_error(e: sms_core::pane::PaneError) -> JsValue {
    js_error(e.code(), &e.to_string(), &[])
}

pub(crate) fn message_view(m: StoredMessage, queued: bool) -> MessageView {
    // What the store knows of a send: still waiting in the outbox, or taken by the relay.
    let local = if queued {
        Some(LocalState::QueuedOffline)
    } else if m.direction == sms_core::pane::Direction::Outbound && m.provider_id.is_some() {
        Some(LocalState::Accepted)
    } else {
        None
    };
    MessageView {
        id: m.id,
        client_ref: m.client_ref,
        provider_id: m.provider_id,
        direction: m.direction,
        body: m.body,
        at: Timestamp::from_millis(m.at_ms as i64),
        delivery: m.delivery,
        local,
        failure: None,
        media: m.media,
    }
}

/// Stored messages as the pane shows them, those still in the outbox marked queued.
fn page_views(messages: Vec<StoredMessage>, queued: &[String]) -> Vec<MessageView> {
    messages
        .into_iter()
        .map(|m| {
            let q = m.client_ref.as_ref().is_some_and(|r| queued.contains(r));
            message_view(m, q)
        })
        .collect()
}

fn record_ref(r: &Record) -> RecordRef {
    RecordRef {
        id: r.id.clone(),
        kind: r.kind,
        name: r.name.clone(),
        owner: r.owner.clone(),
    }
}

/// Template fields: the record under `record` and under its kind, the seller, the org number.
fn template_data(record: Option<&Record>, seller: &str, seller_name: &str, org: &str) -> Value {
    let mut fields = vec![
        (
            "seller",
            Value::object([
                ("id", Value::from(seller)),
                ("name", Value::from(seller_name)),
            ]),
        ),
        ("org_number", Value::object([("number", Value::from(org))])),
    ];
    if let Some(r) = record {
        let mut words = r.name.split_whitespace();
        let first = words.next().unwrap_or_default().to_owned();
        let last = words.collect::<Vec<_>>().join(" ");
        let value = Value::object([
            ("id", Value::from(r.id.as_str())),
            ("name", Value::from(r.name.as_str())),
            ("first_name", Value::from(first)),
            ("last_name", Value::from(last)),
            ("phone", Value::from(r.phones.first().cloned())),
        ]);
        fields.push(("record", value.clone()));
        fields.push((r.kind.as_str(), value));
    }
    Value::object(fields)
}

fn open_request(
    seed: PaneSeed,
    seller: &str,
    region: Option<&str>,
    source: OpenSource,
) -> (OpenRequest, PaneConfig) {
    let access = sms_core::access::Access::new(seller, &seed.teams, true);
    let conv = &seed.conversation;
    // The conversation's own number first, then the numbers the seller sends from (C4).
    let mut from: Vec<&OrgNumber> = seed
        .org_numbers
        .iter()
        .filter(|o| o.number == conv.org_number)
        .collect();
    from.extend(
        access
            .sends_from(&seed.org_numbers)
            .into_iter()
            .filter(|o| o.number != conv.org_number),
    );
    // The conversation's number first, then the record's other numbers: a phone that is
    // the same number written another way is not offered twice.
    let mut to_choices = vec![conv.customer_number.clone()];
    if let Some(r) = &seed.record {
        for p in &r.phones {
            let key = sms_core::phone::match_key(p, region);
            if !to_choices
                .iter()
                .any(|c| sms_core::phone::match_key(c, region) == key)
            {
                to_choices.push(p.clone());
            }
        }
    }
    let seller_name = seed.me.as_ref().map_or(seller, |m| m.name.as_str());
    let record = seed.record.as_ref().map(record_ref).unwrap_or(RecordRef {
        id: conv.record_id.clone(),
        kind: sms_core::directory::RecordKind::Lead,
        name: conv.record_id.clone(),
        // Not in the directory: the org number alone decides who sees it (V1).
        owner: None,
    });
    let req = OpenRequest {
        source,
        record,
        from_choices: from.iter().map(|o| o.number.clone()).collect(),
        from_owners: from.iter().map(|o| o.owner.clone()).collect(),
        to_choices,
        from: Some(conv.org_number.clone()),
        to: Some(conv.customer_number.clone()),
        related: seed.related.iter().map(record_ref).collect(),
        consent: conv.consent,
        route_rule: conv.rule,
        moves: conv.moves.clone(),
        template_data: template_data(seed.record.as_ref(), seller, seller_name, &conv.org_number),
        draft: seed.draft,
    };
    let config = PaneConfig {
        seller: seller.to_owned(),
        teams: access.teams().to_vec(),
        default_region: None,
    };
    (req, config)
}

impl PaneSlot {
    fn handle(&self, input: PaneInput) -> Result<(), sms_core::pane::PaneError> {
        match self.0.borrow_mut().as_mut() {
            Some(p) => p.handle(input, now()),
            None => Err(sms_core::pane::PaneError::NotOpen),
        }
    }

    fn poll(&self) -> Option<Effect> {
        self.0.borrow_mut().as_mut().and_then(Pane::poll_effect)
    }

    fn view(&self) -> JsResult<JsValue> {
        match self.0.borrow().as_ref().and_then(Pane::view) {
            Some(v) => to_js(&v),
            None => Ok(JsValue::NULL),
        }
    }
}

#[wasm_bindgen(typescript_custom_section)]
const TS_PANE: &'static str = r#"
/** How the pane was opened (O1-O4, C2). */
export type OpenVia = { via: "grid" } | { via: "record_phone"; field: string } | { via: "notification"; id: string }
  | { via: "work_item"; id: string } | { via: "related" };
/** What the seller did in the pane (`dispatch`). */
export type PaneInput =
  | { type: "load_older" }
  | { type: "composer_edited"; text: string }
  | { type: "template_chosen"; body: string }
  | { type: "from_chosen"; number: string }
  | { type: "to_chosen"; number: string }
  | { type: "send"; client_ref: string; confirm_missing?: boolean }
  | { type: "move_requested"; target: RecordRef }
  | { type: "related_chosen"; record_id: string }
  | { type: "close" };
/** A record as the pane shows it. */
export interface RecordRef { id: string; kind: CrmRecord["kind"]; name: string; owner: Owner | null }
/** A move of the conversation between records (M2, B1). */
export interface MoveEntry { by: string; at: string; from_record: string; to_record: string }
/** What went wrong with a failed send (B5, E5): the page words `code` and `fix` in its language. */
export type FailureCode = "invalid_sending_parameters" | "not_mobile_number" | "region_not_enabled"
  | "recipient_unsubscribed" | "invalid_sender" | "body_too_long" | "unreachable_handset" | "message_blocked"
  | "unknown_destination" | "landline_or_unreachable_carrier" | "carrier_filtering" | "unknown_error"
  | "rate_limited" | "provider_error" | "delivery_failed";
/** What the seller can do about a failed send. */
export type FixCode = "fix_number" | "use_mobile" | "enable_country" | "do_not_text" | "choose_sender" | "shorten"
  | "try_later" | "other_channel" | "check_number" | "rephrase" | "try_later_support" | "wait_retry"
  | "contact_support" | "check_and_retry";
/** A failed send explained for the seller as codes (B5, E5); `reason` is the provider-style name. */
export interface FailureReason {
  reason: string; code: FailureCode; error_code: number | null; fix: FixCode; suggested_number: string | null;
}
/** Why the conversation is on its record (B1, E5): the move that brought it here, else the routing rule. */
export type RouteReason =
  | { code: "only_match" | "recent_conversation" | "new_lead"; number: string }
  | { code: "addressed_seller"; seller: string | null }
  | { code: "team_member"; team: string | null }
  | { code: "record_type"; kind: CrmRecord["kind"] }
  | { code: "active" | "recently_updated" | "id" }
  | { code: "moved_here"; by: string; at: string; from_record: string };
/** One message as the pane shows it. */
export interface MessageView {
  id: string; client_ref: string | null; provider_id: string | null; direction: "inbound" | "outbound";
  body: string; at: string; delivery: { status: DeliveryStatus; error_code: number | null } | null;
  local: "sending" | "queued_offline" | "accepted" | "failed" | "unknown" | null;
  failure: FailureReason | null; media: Media[];
}
/** The composer: the text, what will be sent, and why it cannot be sent now if it cannot. */
export interface ComposerView {
  text: string; preview: string; missing: string[];
  template_error: { code: string; offset: number; message: string } | null;
  segments: SegmentCount;
  /** A pane error code (`opted_out`, `empty_message`, `too_long`, `no_from_number`, ...). */
  blocked: string | null;
  /** Characters left before the 1,600 limit, once within 200 of it (B7); negative when over. */
  limit_left: number | null;
}
/** Everything the shell renders for an open pane. */
export interface PaneView {
  source: OpenVia;
  conversation: { record_id: string; org_number: string; customer_number: string };
  record: RecordRef; related: RecordRef[]; from_choices: string[]; to_choices: string[];
  route_rule: RouteRule | null; route: RouteReason | null; moves: MoveEntry[];
  /** `move_error`: a code, the relay's (`not_visible`, `same_record`, ...), `move_refused` or `move_unavailable`. */
  pending_move: RecordRef | null; move_error: string | null; consent: "opted_in" | "opted_out";
  messages: MessageView[]; has_more: boolean; loading: boolean; composer: ComposerView;
}
"#;

#[wasm_bindgen]
impl SmsClient {
    /// Opens the pane on a conversation (O1–O4); resolves to the pane view. `via` is
    /// `{"via":"grid"}`, `{"via":"record_phone","field":..}`, `{"via":"notification","id":..}`
    /// or `{"via":"work_item","id":..}`. Throws `not_visible` for a conversation the
    /// seller may not see (V2).
    #[wasm_bindgen(js_name = openConversation, unchecked_return_type = "PaneView")]
    pub async fn open_conversation(
        &self,
        conversation_id: String,
        #[wasm_bindgen(unchecked_param_type = "OpenVia | undefined")] via: JsValue,
    ) -> JsResult<JsValue> {
        let source = open_source(&via)?;
        let seed = self
            .store
            .pane_seed(&conversation_id, HISTORY_PAGE)
            .await
            .map_err(store_error)?
            .ok_or_else(|| js_error("not_found", "no such conversation", &[]))?;
        self.install(seed, source)?;
        self.drive().await?;
        self.pane.view()
    }

    /// Opens the pane on a record's conversation with `phone` (O2: the message icon
    /// beside a phone field; the record's first phone when omitted): its latest
    /// conversation with that number, or a new one from the seller's org number.
    /// Throws `not_found`, `no_phone`, `invalid_number`, `no_org_number`, `not_visible`.
    #[wasm_bindgen(js_name = openRecord, unchecked_return_type = "PaneView")]
    pub async fn open_record(
        &self,
        record_id: String,
        phone: Option<String>,
        #[wasm_bindgen(unchecked_param_type = "OpenVia | undefined")] via: JsValue,
    ) -> JsResult<JsValue> {
        let source = open_source(&via)?;
        let seed = self
            .store
            .record_seed(&record_id, phone.as_deref(), HISTORY_PAGE)
            .await
            .map_err(store_error)?
            .ok_or_else(|| js_error("not_found", "no such record", &[]))?;
        self.install(seed, source)?;
        self.drive().await?;
        self.pane.view()
    }

    /// Hands a pane input (`{"type": "composer_edited", "text": ..}`, `{"type": "send",
    /// "client_ref": ..}`, ...) to the pane, carries out its effects, resolves to the view.
    #[wasm_bindgen(unchecked_return_type = "PaneView | null")]
    pub async fn dispatch(
        &self,
        #[wasm_bindgen(unchecked_param_type = "PaneInput")] input: JsValue,
    ) -> JsResult<JsValue> {
        self.pane.handle(user_input(input)?).map_err(pane_error)?;
        self.drive().await?;
        self.pane.view()
    }

    /// Re-reads the open conversation's latest page after a change announced by
    /// another tab or the service worker (`subscribe`), when `conversationId` is the
    /// open one (or omitted); resolves to the pane view, or `null` when closed.
    #[wasm_bindgen(js_name = syncPane, unchecked_return_type = "PaneView | null")]
    pub async fn sync_pane(&self, conversation_id: Option<String>) -> JsResult<JsValue> {
        let Some(open) = self
            .open_conversation_id()
            .await?
            .filter(|id| conversation_id.as_ref().is_none_or(|c| c == id))
        else {
            return self.pane.view();
        };
        let (messages, _) = self.read_page(&open, None, HISTORY_PAGE).await?;
        // The pane may have closed or moved on while the page was read.
        if self.open_conversation_id().await?.as_ref() == Some(&open) {
            let _ = self.pane.handle(PaneInput::Synced { messages });
        }
        self.pane.view()
    }

    /// The pane view, or `null` when no conversation is open.
    #[wasm_bindgen(js_name = paneView, unchecked_return_type = "PaneView | null")]
    pub fn pane_view(&self) -> JsResult<JsValue> {
        self.pane.view()
    }
}

impl crate::client::Client {
    /// Opens a fresh pane from `seed`; its first history page waits in the slot.
    fn install(&self, seed: PaneSeed, source: OpenSource) -> JsResult<()> {
        let preloaded = Preloaded {
            conversation_id: seed.conversation.id.clone(),
            page: Some(seed.first_page.clone()),
            queued: seed.queued.clone(),
            unread: seed.conversation.unread,
        };
        let seller = self.store.context().seller.clone();
        let region = self.store.context().default_region.clone();
        let (req, mut config) = open_request(seed, &seller, region.as_deref(), source);
        config.default_region = self.store.context().default_region.clone();
        let mut pane = Pane::new(config);
        pane.handle(PaneInput::Open(Box::new(req)), now())
            .map_err(pane_error)?;
        *self.pane.0.borrow_mut() = Some(pane);
        *self.pane.1.borrow_mut() = Some(preloaded);
        Ok(())
    }

    /// The record to open after a switch to a related record (C2), keeping the
    /// customer's number when that record carries it or has none.
    async fn switch_seed(&self, record_id: &str) -> JsResult<Option<PaneSeed>> {
        let current = self
            .pane
            .0
            .borrow()
            .as_ref()
            .and_then(|p| p.conversation().map(|c| c.customer_number.clone()));
        let target = self.store.record(record_id).await.map_err(store_error)?;
        let region = self.store.context().default_region.clone();
        let keep = target.as_ref().is_some_and(|t| {
            t.phones.is_empty()
                || t.phones.iter().any(|p| {
                    sms_core::phone::normalize(p, region.as_deref())
                        .is_ok_and(|n| Some(n.as_str()) == current.as_deref())
                })
        });
        let customer = current.filter(|_| keep);
        self.store
            .record_seed(record_id, customer.as_deref(), HISTORY_PAGE)
            .await
            .map_err(store_error)
    }

    /// Takes the history page the seed read ahead, with the sends still queued and
    /// the conversation's stored id and unread count.
    fn preloaded_page(&self) -> Option<(crate::store::HistoryPage, Vec<String>, (String, u32))> {
        let mut slot = self.pane.1.borrow_mut();
        let p = slot.as_mut()?;
        let seeded = (p.conversation_id.clone(), p.unread);
        Some((p.page.take()?, std::mem::take(&mut p.queued), seeded))
    }

    /// The stored id of a conversation (kept across moves), if it is stored yet.
    async fn stored_id(&self, key: &sms_core::pane::ConversationKey) -> JsResult<Option<String>> {
        let found = self
            .store
            .find_conversation(&key.org_number, &key.customer_number, &key.record_id)
            .await
            .map_err(store_error)?;
        Ok(found.map(|c| c.id))
    }

    /// The stored id of the conversation open in the pane.
    /// Closes the pane if it is open on a conversation with `customer` (erased, F6).
    pub(crate) fn close_pane_of(&self, customer: &str) {
        let open = self
            .pane
            .0
            .borrow()
            .as_ref()
            .and_then(|p| p.conversation().map(|k| k.customer_number == customer));
        if open == Some(true) {
            let _ = self.pane.handle(PaneInput::Close);
        }
    }

    pub(crate) async fn open_conversation_id(&self) -> JsResult<Option<String>> {
        let key = self
            .pane
            .0
            .borrow()
            .as_ref()
            .and_then(|p| p.conversation().cloned());
        match key {
            Some(key) => self.stored_id(&key).await,
            None => Ok(None),
        }
    }

    /// A history page read for the pane: queued sends marked (B4).
    async fn read_page(
        &self,
        conversation_id: &str,
        before_ms: Option<f64>,
        limit: usize,
    ) -> JsResult<(Vec<MessageView>, bool)> {
        let page = match before_ms {
            Some(at) => self.store.history_through(conversation_id, at, limit).await,
            None => self.store.history(conversation_id, None, limit).await,
        }
        .map_err(store_error)?;
        let queued: Vec<String> = self
            .store
            .outbox()
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|e| e.request.client_ref)
            .collect();
        Ok((page_views(page.messages, &queued), page.has_more))
    }

    /// Carries out the pane's effects until none is left.
    async fn drive(&self) -> JsResult<()> {
        let mut conversation_id = self
            .pane
            .1
            .borrow()
            .as_ref()
            .filter(|p| p.page.is_some())
            .map(|p| p.conversation_id.clone());
        // Set by the seed's first page: the `MarkRead` that follows it needs no lookup.
        let mut just_opened: Option<(String, u32)> = None;
        while let Some(effect) = self.pane.poll() {
            match effect {
                Effect::LoadHistory { before: None, .. }
                    if self
                        .pane
                        .1
                        .borrow()
                        .as_ref()
                        .is_some_and(|p| p.page.is_some()) =>
                {
                    let Some((page, queued, seeded)) = self.preloaded_page() else {
                        continue;
                    };
                    just_opened = Some(seeded);
                    let has_more = page.has_more;
                    let messages = page_views(page.messages, &queued);
                    let _ = self
                        .pane
                        .handle(PaneInput::HistoryLoaded { messages, has_more });
                }
                Effect::LoadHistory {
                    conversation,
                    before,
                    at_edge,
                    limit,
                } => {
                    let conv = self
                        .store
                        .find_conversation(
                            &conversation.org_number,
                            &conversation.customer_number,
                            &conversation.record_id,
                        )
                        .await
                        .map_err(store_error)?;
                    let (messages, has_more) = match &conv {
                        Some(c) => {
                            conversation_id = Some(c.id.clone());
                            let before = before.map(|t| t.as_millis() as f64);
                            self.read_page(&c.id, before, limit + at_edge).await?
                        }
                        None => (Vec::new(), false),
                    };
                    let _ = self
                        .pane
                        .handle(PaneInput::HistoryLoaded { messages, has_more });
                }
                Effect::MarkRead { conversation } => {
                    // Just opened: the seed read the conversation, so nothing to do when
                    // it had nothing unread (notifications are unread only while their
                    // conversation counts them), and no lookup when it had.
                    let id = match just_opened.take() {
                        Some((_, 0)) => continue,
                        Some((id, _)) => Some(id),
                        // Stored ids survive moves, so look the conversation up by its key.
                        None => self.stored_id(&conversation).await?,
                    };
                    if let Some(id) = id {
                        self.store.mark_read(&id).await.map_err(store_error)?;
                        self.announce("read", Some(&id));
                    }
                }
                Effect::PersistDraft { conversation, text } => {
                    let id = match &conversation_id {
                        Some(id) => id.clone(),
                        None => crate::store::records::conversation_id(
                            &conversation.org_number,
                            &conversation.customer_number,
                            &conversation.record_id,
                        ),
                    };
                    self.store
                        .put_draft(&id, &text)
                        .await
                        .map_err(store_error)?;
                }
                Effect::Send(req) => {
                    let client_ref = req.client_ref.clone();
                    self.queue(req).await?;
                    let stored = self.store.message(&client_ref).await.map_err(store_error)?;
                    let queued = self
                        .store
                        .outbox()
                        .await
                        .map_err(store_error)?
                        .iter()
                        .any(|e| e.request.client_ref == client_ref);
                    let input = match stored {
                        _ if queued => PaneInput::SendFailed {
                            client_ref,
                            offline: true,
                            unknown: false,
                            error_code: None,
                        },
                        Some(StoredMessage {
                            provider_id: Some(sid),
                            ..
                        }) => PaneInput::SendAccepted {
                            client_ref,
                            provider_id: sid,
                            status: None,
                        },
                        Some(m) => PaneInput::SendFailed {
                            client_ref,
                            offline: false,
                            unknown: m.delivery.as_ref().is_none_or(|d| !d.status.is_failure()),
                            error_code: m.delivery.and_then(|d| d.error_code),
                        },
                        None => PaneInput::SendFailed {
                            client_ref,
                            offline: true,
                            unknown: false,
                            error_code: None,
                        },
                    };
                    let _ = self.pane.handle(input);
                }
                Effect::RequestMove {
                    conversation,
                    target_record_id,
                } => {
                    let req = to_js(&sms_core::protocol::MoveRequest {
                        org_number: conversation.org_number.clone(),
                        customer_number: conversation.customer_number.clone(),
                        from_record: conversation.record_id.clone(),
                        to_record: target_record_id.clone(),
                    })?;
                    if let Err(reason) = self.request_move(&req).await {
                        let _ = self.pane.handle(PaneInput::MoveFailed { reason });
                    }
                }
                Effect::SwitchRecord { record_id } => {
                    let seed = self
                        .switch_seed(&record_id)
                        .await?
                        .ok_or_else(|| js_error("not_found", "no such record", &[]))?;
                    conversation_id = Some(seed.conversation.id.clone());
                    self.install(seed, OpenSource::Related)?;
                }
                // The store raised notifications already; the caller re-renders.
                Effect::Notify { .. } | Effect::Render => {}
            }
        }
        Ok(())
    }

    /// The conversation open in the pane, if any (ingest stores its messages read).
    pub(crate) fn reading(&self) -> Option<sms_core::pane::ConversationKey> {
        self.pane.0.borrow().as_ref()?.conversation().cloned()
    }

    /// Feeds an ingested event to the open pane, so it updates live (C5, C6), from the
    /// rows the ingest decided (no read back); a message the ingest stored read needs
    /// no read mark of its own.
    pub(crate) async fn show_in_pane(
        &self,
        event: &LoggedEvent,
        outcome: &crate::store::IngestOutcome,
    ) -> JsResult<()> {
        if self.pane.0.borrow().is_none() {
            return Ok(());
        }
        let input = match &event.body {
            EventBody::Inbound(e) => {
                let Some(m) = outcome.message.clone() else {
                    return Ok(());
                };
                PaneInput::Inbound {
                    message: message_view(m, false),
                    record_id: e.record_id.clone(),
                    org_number: e.to.clone(),
                    customer_number: e.from.clone(),
                    read: outcome.read,
                }
            }
            EventBody::Outbound(e) => {
                let Some(m) = outcome.message.clone() else {
                    return Ok(());
                };
                PaneInput::OutboundLogged {
                    message: message_view(m, false),
                    record_id: e.record_id.clone(),
                    org_number: e.from.clone(),
                    customer_number: e.to.clone(),
                }
            }
            EventBody::Delivery(e) => PaneInput::DeliveryReport {
                provider_id: e.message_sid.clone(),
                status: e.status,
                error_code: e.error_code,
            },
            EventBody::ConsentChanged(e) => PaneInput::ConsentChanged { consent: e.consent },
            // The open conversation's customer was erased (F6): nothing of it stays.
            EventBody::Erased(e) => {
                let open = self.pane.0.borrow().as_ref().and_then(|p| {
                    p.conversation()
                        .map(|k| k.customer_number == e.customer_number)
                });
                if open != Some(true) {
                    return Ok(());
                }
                PaneInput::Close
            }
            EventBody::ConversationMoved(e) => {
                let Some(target) = self.store.record(&e.to_record).await.map_err(store_error)?
                else {
                    return Ok(());
                };
                PaneInput::MoveConfirmed {
                    entry: sms_core::pane::MoveEntry {
                        by: e.by.clone(),
                        at: e.at,
                        from_record: e.from_record.clone(),
                        to_record: e.to_record.clone(),
                    },
                    target: record_ref(&target),
                }
            }
            _ => return Ok(()),
        };
        if self.pane.0.borrow().is_some() {
            let _ = self.pane.handle(input);
            self.drive().await?;
        }
        Ok(())
    }
}
