//! `SmsClient`: the stateful JS API over the IndexedDB store (browser runtime).
//! Works in a page and in a service worker (it never touches `window`).

use serde::Deserialize;
use sms_core::protocol::{Directory, EventBody, LoggedEvent};
use wasm_bindgen::prelude::*;

use crate::js_error::{js_error, JsResult};
use crate::store::records::{OutboxEntry, StoredTemplate};
use crate::store::{IdbStore, IngestOutcome, SellerContext, SendAnswer, StoreError};
use crate::to_js;
use sms_core::protocol::{SendOutcome, SendRequest};
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(typescript_custom_section)]
const TS_CLIENT: &'static str = r#"
/** Options of `SmsClient.open`. */
export interface SmsClientOptions {
  dbName: string; seller: string; defaultRegion?: string;
  /** Sends: resolve with the relay's answer, reject when the relay is unreachable. */
  transport?: (request: { client_ref: string; from: string; to: string; body: string; record_id: string })
    => Promise<{ outcome: "accepted" | "failed" | "unknown" | "pending"; message_sid?: string; error_code?: number }>;
  /** Moves: resolve when the relay accepted, reject with the reason. */
  moveTransport?: (request: { org_number: string; customer_number: string; from_record: string; to_record: string })
    => Promise<unknown>;
}
/** What `ingest` did with one relay event. */
export interface IngestOutcome {
  duplicate: boolean; resync: boolean; gap: boolean; kind: string;
  record_id: string | null; rule: RouteRule | null; created_lead: string | null;
  conversation_id: string | null; notification: Notification | null;
}
/** An in-app notification (N1) or the missing-privilege notice (P3). */
export interface Notification {
  id: string; kind: "new_message" | "missing_privilege"; conversation_id: string;
  text: string; at_ms: number; unread: 0 | 1;
}
/** A conversation as stored: one per record, org number and customer number. */
export interface Conversation {
  id: string; record_id: string; org_number: string; customer_number: string;
  last_ms: number; preview: string; unread: number; rule: RouteRule | null;
  moves: { by: string; at: string; from_record: string; to_record: string }[];
  consent: "opted_in" | "opted_out";
}
/** A conversation in "My text messages": with its record's name. */
export interface ConversationSummary extends Conversation { record_name: string }
/** The grid and the bell, read together (`inbox()`). */
export interface Inbox { conversations: ConversationSummary[]; notifications: Notification[] }
/** A stored message. */
export interface StoredMessage {
  id: string; conversation_id: string; at_ms: number; direction: "inbound" | "outbound"; body: string;
  provider_id?: string; client_ref: string | null;
  delivery: { status: string; error_code: number | null } | null;
  media: { url: string; content_type: string }[];
}
/** A directory record (contact, account, opportunity or lead). A record that is not the
 * seller's comes by name only (no owner, no phones): for lookup and moves. */
export interface CrmRecord {
  id: string; kind: "contact" | "account" | "opportunity" | "lead"; name: string;
  owner?: Owner; active: boolean; updated_at: string | null; phones: string[]; related?: string[];
}
/** A page of history, oldest to newest. */
export interface HistoryPage { messages: StoredMessage[]; has_more: boolean }
/** A whole conversation, as `exportConversation` writes it out (V2-checked). */
export interface ExportedConversation { conversation: Conversation; record: CrmRecord | null; messages: StoredMessage[] }
/** A record as the relay sends it (`updated_at`: RFC 3339 or ms since the epoch). */
export interface CrmRecordInput {
  id: string; kind: CrmRecord["kind"]; owner: Owner; active?: boolean;
  updated_at?: string | number | null; phones?: string[]; name?: string; related?: string[];
}
/** The CRM directory snapshot (`GET /directory`, S3). */
export interface Directory {
  sellers?: { id: string; name?: string; language?: string | null; can_receive?: boolean; active?: boolean }[];
  teams?: { id: string; members?: string[] }[];
  org_numbers?: { number: string; owner: Owner }[];
  records?: CrmRecordInput[];
  templates?: Template[];
}
/** A provider delivery status, in the order it can only move forward (D2). */
export type DeliveryStatus = "accepted" | "scheduled" | "queued" | "sending" | "sent" | "delivered"
  | "undelivered" | "failed" | "canceled" | "read";
/** An inbound MMS attachment. */
export interface Media { url: string; content_type: string }
/** One relay event as pushed over SSE (`id` increases within an `epoch`, S4). */
export type RelayEvent = { epoch: string; id: number } & (
  | { kind: "inbound"; message_sid: string; from: string; to: string; body: string; media?: Media[];
      at: string; record_id: string; rule: RouteRule }
  | { kind: "delivery"; message_sid: string; status: DeliveryStatus; error_code?: number | null;
      error_message?: string | null; from: string; to: string; at: string }
  | { kind: "outbound"; client_ref: string; message_sid?: string | null; from: string; to: string; body: string;
      record_id: string; by: string; at: string; outcome: "accepted" | "failed" | "unknown"; error_code?: number | null }
  | { kind: "lead_created"; record: CrmRecordInput }
  | { kind: "conversation_moved"; org_number: string; customer_number: string; from_record: string;
      to_record: string; by: string; at: string }
  | { kind: "consent_changed"; org_number: string; customer_number: string; consent: "opted_in" | "opted_out"; at: string }
  | { kind: "directory_changed"; patch: { upsert?: Directory; delete?: { records?: string[]; sellers?: string[];
      teams?: string[]; org_numbers?: string[] } } }
  | { kind: "directory_replaced"; directory: Directory }
  /** A customer number was erased (F6): every copy of its conversations is deleted. */
  | { kind: "erased"; customer_number: string; conversations: { org_number: string; record_id: string }[];
      leads?: string[]; at: string });
/** The relay's log has a new epoch: forget the position and resynchronise (S4). */
export interface ResetEvent { kind: "reset"; epoch?: string }
/** A message template (B6); defaults are written in the body (`{{ x | default: "..." }}`). */
export interface Template { id: string; name: string; category: string; language: string; body: string }
/** A send waiting in the outbox (B4). */
export interface OutboxEntry {
  client_ref: string; from: string; to: string; body: string; record_id: string; queued_ms: number; attempts: number;
}
/** What `subscribe` listeners receive when a tab or the service worker changed something. */
export interface ChangeNotice {
  /** The relay event's kind, or a local change: `queued` (a send), `sent` (the outbox flushed), `read`, `snapshot` (part of the relay's snapshot was stored). */
  kind: RelayEvent["kind"] | "queued" | "sent" | "read" | "snapshot";
  conversation_id: string | null;
  /** For `erased` (F6): the customer number erased. */
  customer_number?: string;
}
"#;

impl Client {
    /// Sends what waits in the outbox, in order, through the transport; stops at the
    /// first unreachable attempt. Resolves to the number still queued.
    pub(crate) async fn flush_outbox(&self) -> JsResult<u32> {
        let Some(transport) = &self.transport else {
            return Err(js_error(
                "no_transport",
                "no transport was given to SmsClient.open",
                &[],
            ));
        };
        let queued = self.store.outbox().await.map_err(store_error)?;
        let total = queued.len() as u32;
        for (i, entry) in queued.into_iter().enumerate() {
            let request = to_js(&entry.request)?;
            let answer = match transport.call1(&JsValue::NULL, &request) {
                Ok(p) => JsFuture::from(js_sys::Promise::resolve(&p)).await,
                Err(e) => Err(e),
            };
            match answer.and_then(input::<SendAnswer>) {
                // The relay holds it and has no outcome yet: it stays queued (same
                // client_ref) and the next flush asks again, in order.
                Ok(answer) if answer.outcome == SendOutcome::Pending => {
                    return Ok(total - i as u32);
                }
                Ok(answer) => {
                    self.store
                        .settle_send(&entry.request.client_ref, &answer)
                        .await
                        .map_err(store_error)?;
                    self.announce("sent", None);
                }
                Err(_) => {
                    self.store
                        .send_unreachable(&entry.request.client_ref)
                        .await
                        .map_err(store_error)?;
                    return Ok(total - i as u32);
                }
            }
        }
        Ok(0)
    }

    /// After an event was stored: tell other tabs (once per kind and conversation in
    /// `announced`) and update the open pane. Nothing for one that was not applied.
    async fn applied(
        &self,
        event: &LoggedEvent,
        outcome: &IngestOutcome,
        announced: &mut Vec<(String, Option<String>)>,
    ) -> JsResult<()> {
        if outcome.duplicate || outcome.resync || outcome.gap {
            return Ok(());
        }
        let change = (outcome.kind.clone(), outcome.conversation_id.clone());
        if !announced.contains(&change) {
            let customer = match &event.body {
                EventBody::Erased(e) => Some(e.customer_number.as_str()),
                _ => None,
            };
            self.announce_about(&change.0, change.1.as_deref(), customer);
            announced.push(change);
        }
        self.show_in_pane(event, outcome).await
    }

    /// Tells other tabs `{kind, conversation_id}` (their `subscribe` listeners), and
    /// this tab's connection listeners as a `conversation` event — never this tab's
    /// own subscribers, which would hear the same change twice.
    pub(crate) fn announce(&self, kind: &str, conversation_id: Option<&str>) {
        self.announce_about(kind, conversation_id, None);
    }

    /// [`Self::announce`], naming the customer number an erasure was about (F6): other
    /// tabs close a pane open on it.
    fn announce_about(&self, kind: &str, conversation_id: Option<&str>, customer: Option<&str>) {
        #[derive(serde::Serialize)]
        struct Change<'a> {
            kind: &'a str,
            conversation_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            customer_number: Option<&'a str>,
            from: &'a str,
        }
        let change = Change {
            kind,
            conversation_id,
            customer_number: customer,
            from: &self.tab,
        };
        if let Some(channel) = &self.changes {
            if let Ok(msg) = to_js(&change) {
                let _ = channel.post_message(&msg);
            }
        }
        // Not borrowed while listeners run: one may disconnect or close.
        let driver = self.relay.borrow().clone();
        if let Some(driver) = driver {
            #[derive(serde::Serialize)]
            struct Changed<'a> {
                kind: &'a str,
                conversation_id: Option<&'a str>,
            }
            driver.emit(
                "conversation",
                &Changed {
                    kind,
                    conversation_id,
                },
            );
        }
    }

    /// Applies a run of relay events (from the stream or a catch-up page) and tells
    /// the pane, the other tabs and this tab's listeners; the first storage failure
    /// after the events before it.
    pub(crate) async fn ingest_events(
        &self,
        events: &[LoggedEvent],
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let mut announced = Vec::new();
        let reading = self.reading();
        let results = self
            .store
            .ingest_run_in_view(events, reading.as_ref())
            .await;
        let mut outcomes = Vec::with_capacity(events.len());
        let driver = self.relay.borrow().clone();
        for (event, result) in events.iter().zip(results) {
            let outcome = result?;
            // The pane's update failing is not the store's: the events stay applied.
            let _ = self.applied(event, &outcome, &mut announced).await;
            if let (Some(driver), Some(n)) = (&driver, &outcome.notification) {
                #[derive(serde::Serialize)]
                struct Raised<'a> {
                    notification: &'a crate::store::records::StoredNotification,
                }
                driver.emit("notification", &Raised { notification: n });
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Imports a directory snapshot (`GET /directory`'s `directory`), in batches,
    /// calling `progress(done, total)` as records go in.
    pub(crate) async fn import_directory(
        &self,
        directory: &JsValue,
        progress: &dyn Fn(usize, usize),
    ) -> JsResult<u32> {
        // The small tables at once; records a part at a time, each part decoded
        // while the database writes the one before.
        let rest: DirectoryRest = input(directory.clone())?;
        let records = match js_sys::Reflect::get(directory, &"records".into()) {
            Ok(r) if r.is_undefined() || r.is_null() => js_sys::Array::new(),
            Ok(r) => r.dyn_into::<js_sys::Array>().map_err(|_| {
                js_error("invalid_input", "directory.records must be an array", &[])
            })?,
            Err(_) => js_sys::Array::new(),
        };
        let rest = Directory {
            sellers: rest.sellers,
            teams: rest.teams,
            org_numbers: rest.org_numbers,
            templates: rest.templates,
            records: Vec::new(),
        };
        let len = records.length();
        progress(0, len as usize);
        let parts = (0..len).step_by(IMPORT_BATCH as usize).map(|i| {
            progress(i as usize, len as usize);
            serde_wasm_bindgen::from_value::<Vec<sms_core::directory::Record>>(
                records.slice(i, i + IMPORT_BATCH).into(),
            )
            .map_err(|e| StoreError {
                code: "invalid_input",
                message: e.to_string(),
            })
        });
        let n = self
            .store
            .import_parts(&rest, parts)
            .await
            .map_err(store_error)?;
        progress(len as usize, len as usize);
        Ok(n as u32)
    }

    /// Queues a send now and sends it: through the connection when there is one (its
    /// machine decides when), else through the page's transport. Resolves to the
    /// conversation id.
    pub(crate) async fn queue(&self, request: SendRequest) -> JsResult<String> {
        let entry = OutboxEntry {
            request,
            queued_ms: js_sys::Date::now(),
            attempts: 0,
        };
        let conv = self.store.queue_send(entry).await.map_err(store_error)?;
        self.announce("queued", Some(&conv));
        let driver = self.relay.borrow().clone();
        match driver {
            Some(driver) => driver.handle(sms_core::sync::Input::Queued),
            None if self.transport.is_some() => {
                self.flush_outbox().await?;
            }
            None => {}
        }
        Ok(conv)
    }

    /// Asks the relay to move a conversation: through the connection when there is
    /// one, else through the page's `moveTransport`. The refusal's reason otherwise.
    pub(crate) async fn request_move(&self, request: &JsValue) -> Result<(), String> {
        let driver = self.relay.borrow().clone();
        if let Some(driver) = driver {
            return driver.request_move(request).await;
        }
        let Some(f) = &self.move_transport else {
            return Err("move_unavailable".into());
        };
        let answer = match f.call1(&JsValue::NULL, request) {
            Ok(p) => JsFuture::from(js_sys::Promise::resolve(&p)).await,
            Err(e) => Err(e),
        };
        // The pane keeps a code (E5): the rejection's `code`, else `move_refused`.
        answer.map(|_| ()).map_err(|e| {
            js_sys::Reflect::get(&e, &"code".into())
                .ok()
                .and_then(|c| c.as_string())
                .unwrap_or_else(|| "move_refused".into())
        })
    }
}

/// A change subscription (RAII: dropping or closing it stops the listener). Keep a
/// reference to it in JS: once the wrapper is garbage-collected, it stops too.
#[wasm_bindgen]
pub struct Subscription {
    channel: web_sys::BroadcastChannel,
    _callback: Closure<dyn FnMut(web_sys::MessageEvent)>,
}

#[wasm_bindgen]
impl Subscription {
    /// Stops listening.
    pub fn close(self) {}
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

/// Reads a relay event by its `kind`, deserialising only that kind's fields (a
/// derived internally-tagged decoder would buffer every event through a generic
/// tree and add ~30 KB to the module). `None` for a `reset` notice.
pub(crate) fn decode_event(v: &JsValue) -> JsResult<Option<LoggedEvent>> {
    let get = |key: &str| js_sys::Reflect::get(v, &key.into()).ok();
    let bad = |what: &str| js_error("invalid_input", &format!("relay event without {what}"), &[]);
    let kind = get("kind")
        .and_then(|k| k.as_string())
        .ok_or_else(|| bad("a kind"))?;
    if kind == "reset" {
        return Ok(None);
    }
    let epoch = get("epoch")
        .and_then(|e| e.as_string())
        .ok_or_else(|| bad("an epoch"))?;
    let id = get("id")
        .and_then(|i| i.as_f64())
        .ok_or_else(|| bad("an id"))? as i64;
    let v = v.clone();
    let body = match kind.as_str() {
        "inbound" => EventBody::Inbound(input(v)?),
        "delivery" => EventBody::Delivery(input(v)?),
        "outbound" => EventBody::Outbound(input(v)?),
        "lead_created" => EventBody::LeadCreated(input(v)?),
        "conversation_moved" => EventBody::ConversationMoved(input(v)?),
        "consent_changed" => EventBody::ConsentChanged(input(v)?),
        "directory_changed" => EventBody::DirectoryChanged(input(v)?),
        "directory_replaced" => EventBody::DirectoryReplaced(input(v)?),
        "erased" => EventBody::Erased(input(v)?),
        other => {
            return Err(js_error(
                "unknown_event",
                &format!("unknown relay event kind {other:?}"),
                &[],
            ))
        }
    };
    Ok(Some(LoggedEvent { epoch, id, body }))
}

pub(crate) fn store_error(e: StoreError) -> JsValue {
    js_error(e.code, &e.message, &[])
}

fn input<T: for<'de> Deserialize<'de>>(value: JsValue) -> JsResult<T> {
    serde_wasm_bindgen::from_value(value)
        .map_err(|e| js_error("invalid_input", &e.to_string(), &[]))
}

/// Directory records per import transaction (S3: one per few thousand rows).
const IMPORT_BATCH: u32 = 2000;

/// A directory snapshot's tables but its records, which are decoded a part at a time.
#[derive(Deserialize)]
struct DirectoryRest {
    #[serde(default)]
    sellers: Vec<sms_core::protocol::Seller>,
    #[serde(default)]
    teams: Vec<sms_core::directory::Team>,
    #[serde(default)]
    org_numbers: Vec<sms_core::directory::OrgNumber>,
    #[serde(default)]
    templates: Vec<sms_core::value::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Options {
    db_name: String,
    seller: String,
    #[serde(default)]
    default_region: Option<String>,
}

/// The browser runtime: relay events in, queries out, all in IndexedDB. JavaScript
/// holds it; the connection ([`crate::connection`]) shares what it holds.
#[wasm_bindgen]
pub struct SmsClient {
    inner: Rc<Client>,
}

impl std::ops::Deref for SmsClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.inner
    }
}

impl SmsClient {
    /// What the client holds, for the connection to share.
    pub(crate) fn shared(&self) -> Rc<Client> {
        self.inner.clone()
    }
}

/// What an [`SmsClient`] holds: the store, the pane, the change channel, transports.
pub struct Client {
    pub(crate) store: IdbStore,
    pub(crate) pane: crate::pane_driver::PaneSlot,
    /// Tells other tabs (and this tab's subscribers) what changed.
    changes: Option<web_sys::BroadcastChannel>,
    channel_name: String,
    /// `(request) => Promise<{outcome, message_sid?, error_code?}>`; a rejection
    /// means the relay is unreachable (the send stays queued).
    transport: Option<js_sys::Function>,
    /// `(request) => Promise` that asks the relay to move a conversation
    /// (`POST /conversations/move`); the move shows as pending until its
    /// `conversation_moved` event is ingested. A rejection is the refusal reason.
    pub(crate) move_transport: Option<js_sys::Function>,
    /// The relay connection, once `connect` was called: sends and moves go through it.
    /// The client owns it (the page need not keep the handle) until `disconnect()`
    /// or `close()` ends it.
    pub(crate) relay: std::cell::RefCell<Option<Rc<crate::connection::Driver>>>,
    /// This client's id in change announcements (its own subscribers skip them).
    tab: String,
}

#[wasm_bindgen]
impl SmsClient {
    /// Opens (creating or upgrading) the seller's database.
    pub async fn open(
        #[wasm_bindgen(unchecked_param_type = "SmsClientOptions")] options: JsValue,
    ) -> JsResult<SmsClient> {
        let transport = js_sys::Reflect::get(&options, &"transport".into())
            .ok()
            .and_then(|t| t.dyn_into::<js_sys::Function>().ok());
        let move_transport = js_sys::Reflect::get(&options, &"moveTransport".into())
            .ok()
            .and_then(|t| t.dyn_into::<js_sys::Function>().ok());
        let o: Options = input(options)?;
        let ctx = SellerContext {
            seller: o.seller,
            default_region: o.default_region,
        };
        let channel_name = format!("sms-changes:{}", o.db_name);
        let store = IdbStore::open(&o.db_name, ctx).await.map_err(store_error)?;
        let changes = web_sys::BroadcastChannel::new(&channel_name).ok();
        Ok(Self {
            inner: Rc::new(Client {
                store,
                pane: Default::default(),
                transport,
                move_transport,
                changes,
                channel_name,
                relay: Default::default(),
                tab: format!("{:x}", (js_sys::Math::random() * 1e15) as u64),
            }),
        })
    }

    /// Queues an outbound message (it survives reloads) and tries to send the outbox.
    /// Resolves to the conversation id.
    pub async fn send(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "{ client_ref: string; from: string; to: string; body: string; record_id: string }"
        )]
        request: JsValue,
    ) -> JsResult<String> {
        // The request decodes straight into an outbox row (its `queued_ms` and
        // `attempts` default), with one codec instead of two.
        let entry: OutboxEntry = input(request)?;
        self.queue(entry.request).await
    }

    /// Sends what waits in the outbox, in order, through the transport given to
    /// `open`; stops at the first unreachable attempt. Resolves to the number still
    /// queued. (With `connect`, the connection sends the outbox by itself.)
    pub async fn flush(&self) -> JsResult<u32> {
        self.flush_outbox().await
    }

    /// Sends still waiting (B4), oldest first.
    #[wasm_bindgen(unchecked_return_type = "OutboxEntry[]")]
    pub async fn outbox(&self) -> JsResult<JsValue> {
        to_js(&self.store.outbox().await.map_err(store_error)?)
    }

    /// Applies one relay event (in log order) in one transaction.
    #[wasm_bindgen(unchecked_return_type = "IngestOutcome")]
    pub async fn ingest(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RelayEvent | ResetEvent")] event: JsValue,
    ) -> JsResult<JsValue> {
        let Some(event) = decode_event(&event)? else {
            // `{"kind":"reset"}`: the relay's log has a new epoch (S4).
            self.store.reset_position().await.map_err(store_error)?;
            return to_js(&IngestOutcome {
                resync: true,
                kind: "reset".into(),
                ..Default::default()
            });
        };
        let reading = self.reading();
        let outcome = self
            .store
            .ingest_in_view(&event, reading.as_ref())
            .await
            .map_err(store_error)?;
        self.applied(&event, &outcome, &mut Vec::new()).await?;
        to_js(&outcome)
    }

    /// Applies a run of relay events in log order (a burst from the stream, a catch-up
    /// page): one transaction each, all queued at once. Resolves to their outcomes;
    /// events after one that could not be applied come back with `gap: true` (resume
    /// from `position()`). Throws the first storage error after the events before it
    /// are applied and announced.
    #[wasm_bindgen(js_name = ingestMany, unchecked_return_type = "IngestOutcome[]")]
    pub async fn ingest_many(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(RelayEvent | ResetEvent)[]")] events: js_sys::Array,
    ) -> JsResult<JsValue> {
        let mut decoded = Vec::with_capacity(events.length() as usize);
        let mut reset = false;
        for v in events.iter() {
            match decode_event(&v)? {
                Some(e) => decoded.push(e),
                None => {
                    reset = true; // a new epoch: what follows is fetched again
                    break;
                }
            }
        }
        let mut outcomes = Vec::with_capacity(decoded.len() + 1);
        let mut failure = None;
        // One announcement per kind and conversation of the run: listeners re-read anyway.
        let mut announced: Vec<(String, Option<String>)> = Vec::new();
        let reading = self.reading();
        let results = self
            .store
            .ingest_run_in_view(&decoded, reading.as_ref())
            .await;
        for (event, result) in decoded.iter().zip(results) {
            match result {
                Ok(outcome) => {
                    self.applied(event, &outcome, &mut announced).await?;
                    outcomes.push(outcome);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(store_error(e));
        }
        if reset && outcomes.iter().all(|o| !o.gap && !o.resync) {
            self.store.reset_position().await.map_err(store_error)?;
            outcomes.push(IngestOutcome {
                resync: true,
                kind: "reset".into(),
                ..Default::default()
            });
        }
        to_js(&outcomes)
    }

    /// Imports a directory snapshot from the relay (`GET /directory`), in batches.
    #[wasm_bindgen(js_name = importDirectory)]
    pub async fn import_directory(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Directory")] directory: JsValue,
    ) -> JsResult<u32> {
        self.inner.import_directory(&directory, &|_, _| {}).await
    }

    /// The org numbers of the stored directory, in number order, with their owners.
    #[wasm_bindgen(js_name = orgNumbers, unchecked_return_type = "{ number: string; owner: { seller: string } | { team: string } }[]")]
    pub async fn org_numbers(&self) -> JsResult<JsValue> {
        let facts = self.store.facts().await.map_err(store_error)?;
        to_js(&facts.org_numbers)
    }

    /// The service worker's catch-up on a push doorbell (N2): applies what the relay
    /// holds after the stored position, page by page, and resolves to `{ end,
    /// notification }` (how it ended: `caught_up`, `unavailable`, `signed_out`,
    /// `storage_problem`, `interrupted`; the newest notification raised, if any).
    #[wasm_bindgen(js_name = catchUp, unchecked_return_type = "CatchUpResult")]
    pub async fn catch_up(
        &self,
        #[wasm_bindgen(unchecked_param_type = "{ relay?: string; head?: string }")]
        options: JsValue,
    ) -> JsResult<JsValue> {
        crate::connection::catch_up(self.shared(), &options).await
    }

    /// Connects to the relay (E1): imports the directory on a new device, streams
    /// events from the stored position, catches up, reconnects with backoff, follows
    /// epochs, and sends the outbox — all by itself. Listen to the returned
    /// connection for status, progress, conversation and notification events.
    pub async fn connect(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ConnectOptions")] options: JsValue,
    ) -> JsResult<crate::connection::Connection> {
        crate::connection::Driver::start(self.shared(), &options).await
    }

    /// "My text messages": visible conversations, newest first.
    #[wasm_bindgen(unchecked_return_type = "ConversationSummary[]")]
    pub async fn conversations(&self) -> JsResult<JsValue> {
        to_js(&self.store.conversations().await.map_err(store_error)?)
    }

    /// The newest `limit` messages older than `beforeMs`, oldest to newest.
    #[wasm_bindgen(unchecked_return_type = "HistoryPage")]
    pub async fn history(
        &self,
        conversation_id: String,
        before_ms: Option<f64>,
        limit: Option<u32>,
    ) -> JsResult<JsValue> {
        let limit = limit.unwrap_or(50).clamp(1, 500) as usize;
        to_js(
            &self
                .store
                .history(&conversation_id, before_ms, limit)
                .await
                .map_err(store_error)?,
        )
    }

    /// A whole conversation (record, numbers, moves, every message with its delivery
    /// status), for the seller to save or hand on; the pane's when `conversationId` is
    /// omitted. Throws `not_found`, `not_visible`.
    #[wasm_bindgen(
        js_name = exportConversation,
        unchecked_return_type = "ExportedConversation"
    )]
    pub async fn export_conversation(&self, conversation_id: Option<String>) -> JsResult<JsValue> {
        let id = match conversation_id {
            Some(id) => id,
            None => self
                .open_conversation_id()
                .await?
                .ok_or_else(|| js_error("not_found", "no stored conversation is open", &[]))?,
        };
        match self.store.export(&id).await.map_err(store_error)? {
            Some(export) => to_js(&export),
            None => Err(js_error("not_found", "no such conversation", &[])),
        }
    }

    /// Notifications, newest first.
    #[wasm_bindgen(unchecked_return_type = "Notification[]")]
    pub async fn notifications(&self) -> JsResult<JsValue> {
        to_js(&self.store.notifications().await.map_err(store_error)?)
    }

    /// The grid and the bell in one read: `{ conversations, notifications }` as
    /// `conversations()` and `notifications()` give them, from one read-only transaction.
    #[wasm_bindgen(unchecked_return_type = "Inbox")]
    pub async fn inbox(&self) -> JsResult<JsValue> {
        #[derive(serde::Serialize)]
        struct Inbox {
            conversations: Vec<crate::store::ConversationSummary>,
            notifications: Vec<crate::store::records::StoredNotification>,
        }
        let (conversations, notifications) = self.store.inbox().await.map_err(store_error)?;
        to_js(&Inbox {
            conversations,
            notifications,
        })
    }

    /// A preference of the seller on this device, or `undefined`.
    #[wasm_bindgen(unchecked_return_type = "unknown")]
    pub async fn setting(&self, key: String) -> JsResult<JsValue> {
        let v = self.store.setting(&key).await.map_err(store_error)?;
        Ok(v.unwrap_or(JsValue::UNDEFINED))
    }

    /// Stores a preference on this device (any structured-cloneable value); signing
    /// out wipes it with the rest.
    #[wasm_bindgen(js_name = putSetting)]
    pub async fn put_setting(
        &self,
        key: String,
        #[wasm_bindgen(unchecked_param_type = "unknown")] value: JsValue,
    ) -> JsResult<()> {
        self.store
            .put_setting(&key, &value)
            .await
            .map_err(store_error)
    }

    /// A directory record by id (record pages, O2), or `undefined`.
    #[wasm_bindgen(unchecked_return_type = "CrmRecord | undefined")]
    pub async fn record(&self, id: String) -> JsResult<JsValue> {
        match self.store.record(&id).await.map_err(store_error)? {
            Some(r) => to_js(&r),
            None => Ok(JsValue::UNDEFINED),
        }
    }

    /// Records linked to `id` either way: a contact's opportunities, an
    /// opportunity's contact and account (C2).
    #[wasm_bindgen(unchecked_return_type = "CrmRecord[]")]
    pub async fn related(&self, id: String) -> JsResult<JsValue> {
        to_js(&self.store.related(&id).await.map_err(store_error)?)
    }

    /// Conversations of a record the seller may see, newest first; for a contact
    /// also those of its opportunities (O2 activities tab, C2, V2).
    #[wasm_bindgen(js_name = recordConversations, unchecked_return_type = "ConversationSummary[]")]
    pub async fn record_conversations(&self, id: String) -> JsResult<JsValue> {
        to_js(
            &self
                .store
                .record_conversations(&id)
                .await
                .map_err(store_error)?,
        )
    }

    /// Records whose name, id or phone matches `query` (move dialog, M1).
    #[wasm_bindgen(unchecked_return_type = "CrmRecord[]")]
    pub async fn lookup(&self, query: String, limit: Option<u32>) -> JsResult<JsValue> {
        let limit = limit.unwrap_or(20).clamp(1, 200) as usize;
        to_js(
            &self
                .store
                .lookup(&query, limit)
                .await
                .map_err(store_error)?,
        )
    }

    /// Where to resume the relay stream: `<epoch>:<id>`, or `undefined` when fresh.
    pub async fn position(&self) -> JsResult<Option<String>> {
        self.store.position().await.map_err(store_error)
    }

    /// Forgets the relay position (after a `reset` event: a new epoch).
    #[wasm_bindgen(js_name = resetPosition)]
    pub async fn reset_position(&self) -> JsResult<()> {
        self.store.reset_position().await.map_err(store_error)
    }

    /// Templates, those for `kind` in `language` first (B6).
    #[wasm_bindgen(unchecked_return_type = "Template[]")]
    pub async fn templates(
        &self,
        kind: Option<String>,
        language: Option<String>,
    ) -> JsResult<JsValue> {
        to_js(
            &self
                .store
                .templates(kind.as_deref(), language.as_deref())
                .await
                .map_err(store_error)?,
        )
    }

    /// Creates or replaces a template; throws `template_syntax` when its body does not compile.
    #[wasm_bindgen(js_name = putTemplate)]
    pub async fn put_template(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Template")] template: JsValue,
    ) -> JsResult<()> {
        let t: StoredTemplate = input(template)?;
        self.store.put_template(t).await.map_err(store_error)
    }

    /// Deletes a template.
    #[wasm_bindgen(js_name = deleteTemplate)]
    pub async fn delete_template(&self, id: String) -> JsResult<()> {
        self.store.delete_template(&id).await.map_err(store_error)
    }

    /// The draft of a conversation ("" when none).
    pub async fn draft(&self, conversation_id: String) -> JsResult<String> {
        self.store
            .draft(&conversation_id)
            .await
            .map_err(store_error)
    }

    /// Stores the draft of a conversation (empty text deletes it).
    #[wasm_bindgen(js_name = putDraft)]
    pub async fn put_draft(&self, conversation_id: String, text: String) -> JsResult<()> {
        self.store
            .put_draft(&conversation_id, &text)
            .await
            .map_err(store_error)
    }

    /// Marks a conversation and its notifications read.
    #[wasm_bindgen(js_name = markRead)]
    pub async fn mark_read(&self, conversation_id: String) -> JsResult<()> {
        self.store
            .mark_read(&conversation_id)
            .await
            .map_err(store_error)?;
        self.announce("read", Some(&conversation_id));
        Ok(())
    }

    /// Calls `listener({kind, conversation_id})` whenever this or another tab changes
    /// the database (multi-tab: a change reaches every open pane without reload).
    /// Keep the returned subscription referenced; call `close()` on it to stop.
    pub fn subscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(change: ChangeNotice) => void")]
        listener: js_sys::Function,
    ) -> JsResult<Subscription> {
        let channel = web_sys::BroadcastChannel::new(&self.channel_name)?;
        let tab = JsValue::from(&self.tab);
        let client = Rc::downgrade(&self.shared());
        let callback =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                let data = e.data();
                let get = |k: &str| js_sys::Reflect::get(&data, &k.into()).unwrap_or_default();
                if get("from") == tab {
                    return;
                }
                // Another tab applied an erasure (F6): a pane open on that customer closes
                // before the page hears of it.
                if let (Some(customer), Some(client)) =
                    (get("customer_number").as_string(), client.upgrade())
                {
                    client.close_pane_of(&customer);
                }
                let _ = listener.call1(&JsValue::NULL, &data);
            });
        channel.set_onmessage(Some(callback.as_ref().unchecked_ref()));
        Ok(Subscription {
            channel,
            _callback: callback,
        })
    }

    /// Where a reply from `customer` to `org` would go now, and by which rule (B1).
    #[wasm_bindgen(js_name = previewRoute, unchecked_return_type = "RouteDecision")]
    pub async fn preview_route(&self, customer: String, org: String) -> JsResult<JsValue> {
        to_js(
            &self
                .store
                .preview_route(&customer, &org)
                .await
                .map_err(store_error)?,
        )
    }

    /// Asks the browser to keep this origin's storage (D4): `"granted"`, `"denied"`
    /// or `"unsupported"`. Works in pages and workers (no `window`).
    pub async fn persist() -> JsResult<String> {
        let storage = js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
            .and_then(|n| js_sys::Reflect::get(&n, &"storage".into()))
            .ok()
            .filter(|s| !s.is_undefined());
        let Some(storage) = storage else {
            return Ok("unsupported".into());
        };
        let Ok(persist) = js_sys::Reflect::get(&storage, &"persist".into())
            .and_then(|f| f.dyn_into::<js_sys::Function>())
        else {
            return Ok("unsupported".into());
        };
        let promise = persist.call0(&storage)?;
        let granted = JsFuture::from(js_sys::Promise::resolve(&promise)).await?;
        Ok(if granted.as_bool() == Some(true) {
            "granted"
        } else {
            "denied"
        }
        .into())
    }

    /// Signs out (D4): deletes the local data once the outbox is empty; throws
    /// `outbox_not_empty` unless `discardOutbox` is true (the client stays usable then).
    #[wasm_bindgen(js_name = signOut)]
    pub async fn sign_out(&self, discard_outbox: bool) -> JsResult<()> {
        let queued = self.store.outbox().await.map_err(store_error)?.len();
        if queued > 0 && !discard_outbox {
            return Err(js_error(
                "outbox_not_empty",
                &format!("{queued} message(s) are still waiting to be sent"),
                &[],
            ));
        }
        // The connection ends first: nothing is fetched, stored or signed in again after.
        let driver = self.relay.borrow_mut().take();
        if let Some(driver) = driver {
            driver.stop();
        }
        self.store.wipe(true).await.map_err(store_error)
    }

    /// Ends the relay connection, if any, and closes the database connection.
    pub fn close(self) {
        let driver = self.relay.borrow_mut().take();
        if let Some(driver) = driver {
            driver.stop();
        }
        if let Some(c) = &self.changes {
            c.close();
        }
        self.store.close();
    }
}
