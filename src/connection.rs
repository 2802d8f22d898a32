//! The relay connection (E1, E4): the core's [`SyncMachine`] driven in the browser. The
//! machine decides (position, gaps, epochs, reconnects and their backoff, caught-up,
//! when the outbox goes out); this file only carries its actions out — the event
//! stream (`EventSource`), fetches (`gloo-net`), timers (`gloo-timers`), `online` /
//! `offline` (`gloo-events`) — and tells the page what happened as typed events.
//! The client owns its connection (a page may drop the handle); every callback holds the
//! driver weakly, and `disconnect()`, `client.close()` or `signOut()` end it all.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use gloo_events::EventListener;
use gloo_net::http::{Method, RequestBuilder};
use gloo_timers::callback::Timeout;
use serde::Serialize;
use sms_core::protocol::{ErrorBody, Position, SendAnswer, SendOutcome, StreamNotice};
use sms_core::sync::{self, Action, Config, Input, Phase, Progress, Status, SyncMachine, Verdict};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;

use crate::client::{decode_event, Client};
use crate::js_error::JsResult;
use crate::to_js;

#[wasm_bindgen(typescript_custom_section)]
const TS_CONNECTION: &'static str = r#"
/** Options of `SmsClient.connect`. */
export interface ConnectOptions {
  /** The relay's base URL; the page's own origin when omitted. The session cookie is
   * `SameSite=Strict`, `EventSource` sends no headers and the relay refuses cross-site
   * writes: serve the page and the relay from the same origin. */
  relay?: string;
  /** Called when the relay says the session is gone (401): get a fresh one (e.g. post
   * the CRM's assertion to `/session`) and resolve; reject to stay signed out. */
  signIn?: () => Promise<unknown>;
}
/** Where the connection stands (`status` events, `Connection.status()`). */
export type SyncStatus =
  | { status: "connecting" } | { status: "catching_up" } | { status: "live" }
  | { status: "reconnecting"; retry_at: number } | { status: "offline" }
  | { status: "storage_problem"; code: string } | { status: "signed_out" }
  /** The relay sent what this module cannot read: reload to get a newer version. */
  | { status: "update_required" };
/** How far long work is: the directory import (records), the snapshot (conversations)
 * or the catch-up (log ids). */
export interface SyncProgress { phase: "directory" | "snapshot" | "catch_up"; done: number; total: number | null }
/** What a connection tells its listeners. */
export type SyncEvent =
  | ({ type: "status" } & SyncStatus)
  | ({ type: "progress" } & SyncProgress)
  /** Something of a conversation changed (a relay event or this tab's own change). */
  | { type: "conversation"; kind: ChangeNotice["kind"]; conversation_id: string | null }
  /** A notification was raised (N1, P3). */
  | { type: "notification"; notification: Notification };
/** How the service worker's `catchUp` ended, and the newest notification it raised. */
export type CatchUpResult = (
  | { end: "caught_up" } | { end: "unavailable"; status: number | null } | { end: "signed_out" }
  | { end: "storage_problem"; code: string } | { end: "interrupted" } | { end: "snapshot_required" }
) & { notification: Notification | null;
  /** Conversations an erasure deleted (F6): close their system notifications. */
  erased: string[] };
"#;

/// The page's handle on the relay connection.
#[wasm_bindgen]
pub struct Connection {
    driver: Rc<Driver>,
}

#[wasm_bindgen]
impl Connection {
    /// Calls `listener(event)` for every status, progress, conversation and
    /// notification event, until `disconnect()`.
    pub fn subscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(event: SyncEvent) => void")]
        listener: js_sys::Function,
    ) {
        self.driver.listeners.borrow_mut().push(listener);
    }

    /// The current status.
    #[wasm_bindgen(unchecked_return_type = "SyncStatus")]
    pub fn status(&self) -> JsResult<JsValue> {
        to_js(&*self.driver.status.borrow())
    }

    /// Closes the stream and stops every retry and timer; listeners hear nothing more.
    pub fn disconnect(&self) {
        let owner = self.driver.client.relay.borrow().clone();
        if owner.is_some_and(|d| Rc::ptr_eq(&d, &self.driver)) {
            self.driver.client.relay.borrow_mut().take();
        }
        self.driver.stop();
    }
}

/// An open event stream: closed when dropped (its listeners go with it).
struct Stream {
    /// The position it resumed from.
    since: Option<String>,
    source: web_sys::EventSource,
    _listeners: [EventListener; 4],
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.source.close();
    }
}

/// Carries the machine's actions out.
pub(crate) struct Driver {
    client: Rc<Client>,
    base: String,
    sign_in: Option<js_sys::Function>,
    machine: RefCell<SyncMachine>,
    stream: RefCell<Option<Stream>>,
    timer: RefCell<Option<Timeout>>,
    network: RefCell<Vec<EventListener>>,
    listeners: RefCell<Vec<js_sys::Function>>,
    status: RefCell<Status>,
    pumping: Cell<bool>,
    /// Which stream is current: a failed one's late news must not close the next.
    generation: Cell<u32>,
}

fn now() -> u64 {
    js_sys::Date::now() as u64
}

/// What a fetch came back with: the status (none: no answer), the body as JSON, and
/// `Retry-After` in seconds.
struct Answer {
    status: Option<u16>,
    body: Option<JsValue>,
    retry_after: Option<u64>,
}

async fn call(method: Method, url: &str, body: Option<&JsValue>) -> Answer {
    let request = RequestBuilder::new(url)
        .method(method)
        .header("content-type", "application/json");
    let request = match body {
        Some(b) => js_sys::JSON::stringify(b)
            .ok()
            .and_then(|text| request.body(String::from(text)).ok()),
        None => request.build().ok(),
    };
    let Some(request) = request else {
        return Answer {
            status: None,
            body: None,
            retry_after: None,
        };
    };
    let Ok(response) = request.send().await else {
        return Answer {
            status: None,
            body: None,
            retry_after: None,
        };
    };
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|s| s.trim().parse().ok());
    let body = match response.text().await {
        Ok(text) if !text.is_empty() => js_sys::JSON::parse(&text).ok(),
        _ => None,
    };
    Answer {
        status: Some(response.status()),
        body,
        retry_after,
    }
}

/// A stream notice read by field (a derived decoder for the tagged enum would add
/// its buffering code to the module).
fn notice(v: &JsValue) -> Option<StreamNotice> {
    let text = |k: &str| js_sys::Reflect::get(v, &k.into()).ok()?.as_string();
    let epoch = text("epoch").unwrap_or_default();
    match text("kind")?.as_str() {
        "reset" => Some(StreamNotice::Reset { epoch }),
        "caught_up" => Some(StreamNotice::CaughtUp {
            epoch,
            head: text("head")?,
        }),
        _ => None,
    }
}

/// The relay's base URL from `options.relay` (the page's origin when absent).
fn relay_base(options: &JsValue) -> String {
    js_sys::Reflect::get(options, &"relay".into())
        .ok()
        .and_then(|r| r.as_string())
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned()
}

fn decode<T: for<'de> serde::Deserialize<'de>>(v: &Option<JsValue>) -> Option<T> {
    v.as_ref()
        .and_then(|v| serde_wasm_bindgen::from_value(v.clone()).ok())
}

impl Driver {
    /// Starts a connection for `client`: the directory first on a device that has
    /// none, then the stream from the stored position.
    pub(crate) async fn start(client: Rc<Client>, options: &JsValue) -> JsResult<Connection> {
        let get = |k: &str| js_sys::Reflect::get(options, &k.into()).ok();
        let base = relay_base(options);
        let sign_in = get("signIn").and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        let seed = (js_sys::Math::random() * u32::MAX as f64) as u64;
        let driver = Rc::new(Self {
            client: client.clone(),
            base,
            sign_in,
            machine: RefCell::new(SyncMachine::new(Config {
                seed,
                ..Config::default()
            })),
            stream: Default::default(),
            timer: Default::default(),
            network: Default::default(),
            listeners: Default::default(),
            status: RefCell::new(Status::Connecting),
            pumping: Cell::new(false),
            generation: Cell::new(0),
        });
        // The previous connection, if any, ends: one per client.
        let old = client.relay.borrow_mut().replace(driver.clone());
        if let Some(old) = old {
            old.stop();
        }
        driver.listen_to_network();
        let connection = Connection {
            driver: driver.clone(),
        };
        spawn_local(async move {
            // A device with no position takes the snapshot, which holds the directory.
            let position = driver.position().await;
            let waiting = client.store.outbox().await.map_or(0, |o| o.len() as u32);
            driver.handle(Input::OutboxWaiting { count: waiting });
            driver.handle(Input::Start { position });
        });
        Ok(connection)
    }

    /// Ends it: the stream closes, no timer or listener remains.
    pub(crate) fn stop(self: &Rc<Self>) {
        self.handle(Input::Stop);
        self.stream.borrow_mut().take();
        self.timer.borrow_mut().take();
        self.network.borrow_mut().clear();
        self.listeners.borrow_mut().clear();
    }

    async fn position(&self) -> Option<Position> {
        let stored = self.client.store.position().await.ok().flatten()?;
        Position::parse(&stored)
    }

    /// Tells the machine, then carries out what it decided.
    pub(crate) fn handle(self: &Rc<Self>, input: Input) {
        self.machine.borrow_mut().handle(input, now());
        self.kick();
    }

    /// Runs the pump unless it runs already (it polls again before it stops).
    fn kick(self: &Rc<Self>) {
        if self.pumping.replace(true) {
            return;
        }
        let me = self.clone();
        spawn_local(async move {
            me.pump().await;
            me.pumping.set(false);
            me.arm_timer();
        });
    }

    async fn pump(self: &Rc<Self>) {
        loop {
            let next = self.machine.borrow_mut().poll();
            let Some(action) = next else { break };
            match action {
                Action::OpenStream { since } => self.open_stream(since),
                Action::CloseStream => drop(self.stream.borrow_mut().take()),
                Action::Ingest { events } => self.spawn(|me| async move {
                    match me.client.ingest_events(&events).await {
                        Ok(outcomes) => Input::Ingested { outcomes },
                        Err(e) => Input::IngestFailed {
                            code: e.code.to_owned(),
                        },
                    }
                }),
                Action::TakeSnapshot => self.spawn(|me| async move { me.take_snapshot().await }),
                Action::ResetPosition => {
                    // A new epoch: what this device holds of the old log is no guide;
                    // the snapshot follows (it holds the directory); without
                    // snapshots, the directory, then the log from its start.
                    let _ = self.client.store.reset_position().await;
                    if !self.machine.borrow().takes_snapshots() {
                        self.import_directory().await;
                    }
                }
                Action::SignIn => self.spawn(|me| async move {
                    let Some(f) = &me.sign_in else {
                        return Input::SignInFailed;
                    };
                    let signed_in = match f.call0(&JsValue::NULL) {
                        Ok(p) => wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&p))
                            .await
                            .is_ok(),
                        Err(_) => false,
                    };
                    match signed_in {
                        true => Input::SignedIn,
                        false => Input::SignInFailed,
                    }
                }),
                Action::FlushOutbox => self.spawn(|me| async move { me.flush().await }),
                Action::Status(status) => {
                    *self.status.borrow_mut() = status.clone();
                    self.emit("status", &status);
                }
                Action::Progress(progress) => self.emit("progress", &progress),
            }
        }
    }

    /// Runs `work` on its own and hands its answer to the machine.
    fn spawn<F, Fut>(self: &Rc<Self>, work: F)
    where
        F: FnOnce(Rc<Self>) -> Fut + 'static,
        Fut: std::future::Future<Output = Input> + 'static,
    {
        let me = self.clone();
        spawn_local(async move {
            let input = work(me.clone()).await;
            me.handle(input);
        });
    }

    fn arm_timer(self: &Rc<Self>) {
        let at = self.machine.borrow().poll_timeout();
        let timer = at.map(|at| {
            let me = Rc::downgrade(self);
            let wait = at.saturating_sub(now()).min(u32::MAX as u64) as u32;
            Timeout::new(wait, move || {
                if let Some(me) = me.upgrade() {
                    me.handle(Input::Timeout);
                }
            })
        });
        *self.timer.borrow_mut() = timer;
    }

    fn weakly(
        self: &Rc<Self>,
        f: impl Fn(&Rc<Self>, &web_sys::Event) + 'static,
    ) -> impl FnMut(&web_sys::Event) + 'static {
        let me: Weak<Self> = Rc::downgrade(self);
        move |e| {
            if let Some(me) = me.upgrade() {
                f(&me, e);
            }
        }
    }

    fn listen_to_network(self: &Rc<Self>) {
        let global: web_sys::EventTarget = js_sys::global().unchecked_into();
        let online = EventListener::new(
            &global,
            "online",
            self.weakly(|me, _| me.handle(Input::Online)),
        );
        let offline = EventListener::new(
            &global,
            "offline",
            self.weakly(|me, _| me.handle(Input::Offline)),
        );
        *self.network.borrow_mut() = vec![online, offline];
        let on_line = js_sys::Reflect::get(&global, &"navigator".into())
            .and_then(|n| js_sys::Reflect::get(&n, &"onLine".into()))
            .ok()
            .and_then(|v| v.as_bool());
        if on_line == Some(false) {
            self.machine.borrow_mut().handle(Input::Offline, now());
        }
    }

    fn open_stream(self: &Rc<Self>, since: Option<String>) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let url = match &since {
            Some(s) => format!(
                "{}/events?since={}",
                self.base,
                String::from(js_sys::encode_uri_component(s))
            ),
            None => format!("{}/events", self.base),
        };
        let Ok(source) = web_sys::EventSource::new(&url) else {
            self.handle(Input::StreamFailed { status: None });
            return;
        };
        let data = |e: &web_sys::Event| {
            e.dyn_ref::<web_sys::MessageEvent>()
                .and_then(|m| m.data().as_string())
                .and_then(|text| js_sys::JSON::parse(&text).ok())
        };
        let listeners = [
            EventListener::new(
                &source,
                "open",
                self.weakly(|me, _| me.handle(Input::StreamOpened)),
            ),
            EventListener::new(
                &source,
                "message",
                self.weakly(move |me, e| {
                    let Some(v) = data(e) else { return };
                    let kind = js_sys::Reflect::get(&v, &"kind".into())
                        .ok()
                        .and_then(|k| k.as_string());
                    let input = if kind.as_deref() == Some("reset") {
                        notice(&v).map(Input::Notice)
                    } else {
                        decode_event(&v).ok().flatten().map(Input::Event)
                    };
                    match input {
                        Some(input) => me.handle(input),
                        // A kind this module does not know (a newer relay): reading it
                        // again would fail again; the machine says an update is needed.
                        None => {
                            me.stream.borrow_mut().take();
                            me.handle(Input::Unreadable);
                        }
                    }
                }),
            ),
            EventListener::new(
                &source,
                "caught_up",
                self.weakly(move |me, e| {
                    if let Some(notice) = data(e).as_ref().and_then(notice) {
                        me.handle(Input::Notice(notice));
                    }
                }),
            ),
            // An `EventSource` retries by itself and hides the status: close it, ask
            // the relay whether the session still holds, and let the machine decide.
            EventListener::new(&source, "error", self.weakly(|me, _| me.stream_failed())),
        ];
        *self.stream.borrow_mut() = Some(Stream {
            since,
            source,
            _listeners: listeners,
        });
    }

    fn stream_failed(self: &Rc<Self>) {
        let Some(stream) = self.stream.borrow_mut().take() else {
            return;
        };
        let generation = self.generation.get();
        let me = self.clone();
        // Whether the session still holds (401), and whether the events after the
        // position are still kept (410): one page of one event answers both.
        let probe = match &stream.since {
            Some(s) => format!(
                "{}/events/page?limit=1&since={}",
                self.base,
                String::from(js_sys::encode_uri_component(s))
            ),
            None => format!("{}/me", self.base),
        };
        spawn_local(async move {
            let probe = call(Method::GET, &probe, None).await;
            // Another stream opened meanwhile (a resync): this news is not about it.
            if me.generation.get() == generation {
                let status = probe.status.filter(|s| matches!(s, 401 | 410));
                me.handle(Input::StreamFailed { status });
            }
        });
    }

    /// Takes the relay's snapshot (E3): reads `GET /snapshot` as it streams in, stores
    /// each line as it comes (a transaction per line of conversations; older
    /// messages in batches), tells the page after each so the grid shows before the
    /// rest arrives, and stores the position with the last batch, once the `end` line
    /// is in. A relay without snapshots (404): the directory instead, and the machine
    /// replays the log.
    async fn take_snapshot(self: &Rc<Self>) -> Input {
        let failed = |status: Option<u16>| Input::SnapshotFailed { status };
        let url = format!("{}/snapshot", self.base);
        let Ok(response) = RequestBuilder::new(&url).method(Method::GET).send().await else {
            return failed(None);
        };
        match response.status() {
            200 => {}
            404 => {
                self.import_directory().await;
                return failed(Some(404));
            }
            status => return failed(Some(status)),
        }
        let Some(reader) = response.body().map(|b| {
            b.get_reader()
                .unchecked_into::<web_sys::ReadableStreamDefaultReader>()
        }) else {
            return failed(None);
        };
        let mut lines = sms_core::sync::Lines::default();
        let mut snapshot = Snapshot::default();
        loop {
            if self.machine.borrow().stopped() {
                let _ = reader.cancel();
                return failed(None);
            }
            let Ok(chunk) = wasm_bindgen_futures::JsFuture::from(reader.read()).await else {
                return failed(None);
            };
            let field = |k: &str| js_sys::Reflect::get(&chunk, &k.into()).unwrap_or_default();
            if field("done").is_truthy() {
                return failed(None); // no `end` line: cut
            }
            let bytes = field("value").unchecked_into::<js_sys::Uint8Array>();
            lines.push(&bytes.to_vec());
            while let Some(line) = lines.next() {
                match self.store_line(&line, &mut snapshot).await {
                    Ok(Some(position)) => return Input::SnapshotTaken { position },
                    Ok(None) => {}
                    Err(code) => return Input::IngestFailed { code },
                }
            }
        }
    }

    /// Stores one snapshot line; the position once the `end` line is stored.
    async fn store_line(
        self: &Rc<Self>,
        line: &str,
        at: &mut Snapshot,
    ) -> Result<Option<Position>, String> {
        use sms_core::protocol::{SnapshotConversation, SnapshotOlder};
        use sms_core::store::snapshot::{
            older_writes, position_write, SnapshotConversations, SnapshotPrune,
        };
        let store_error = |e: crate::store::StoreError| e.code.to_owned();
        let Ok(value) = js_sys::JSON::parse(line) else {
            return Err("snapshot_unreadable".into());
        };
        let kind = js_sys::Reflect::get(&value, &"kind".into())
            .ok()
            .and_then(|k| k.as_string());
        if kind.as_deref() == Some("start") {
            // The directory straight from JS, as `GET /directory`'s is imported.
            let get = |k: &str| js_sys::Reflect::get(&value, &k.into()).ok();
            at.position = get("position")
                .and_then(|p| p.as_string())
                .and_then(|p| Position::parse(&p));
            at.total = get("conversations").and_then(|n| n.as_f64()).unwrap_or(0.0) as u64;
            if let Some(directory) = get("directory") {
                self.client
                    .import_directory(&directory, &self.directory_progress())
                    .await
                    .map_err(|e| {
                        js_sys::Reflect::get(&e, &"code".into())
                            .ok()
                            .and_then(|c| c.as_string())
                            .unwrap_or_else(|| "write_refused".into())
                    })?;
            }
            self.handle(Input::SnapshotProgress {
                done: 0,
                total: at.total,
            });
            return Ok(None);
        }
        // Each kind's fields are read straight into their own types: a `SnapshotLine`
        // (an internally tagged enum) would be buffered through serde's generic content
        // and cost the module its own copy of every type's decoder.
        let field = |k: &str| js_sys::Reflect::get(&value, &k.into()).unwrap_or_default();
        let unreadable = |_| "snapshot_unreadable".to_owned();
        match kind.as_deref() {
            Some("conversations") => {
                let conversations: Vec<SnapshotConversation> =
                    serde_wasm_bindgen::from_value(field("conversations")).map_err(unreadable)?;
                let mut plan = SnapshotConversations::new(&conversations);
                self.client
                    .store
                    .execute(&mut plan)
                    .await
                    .map_err(store_error)?;
                at.done += conversations.len() as u64;
                at.kept.extend(plan.stored);
                self.client.announce("snapshot", None);
                self.handle(Input::SnapshotProgress {
                    done: at.done,
                    total: at.total,
                });
            }
            Some("older") => {
                let older: SnapshotOlder =
                    serde_wasm_bindgen::from_value(value.clone()).map_err(unreadable)?;
                at.older.extend(older_writes(&older));
                if at.older.len() >= 1_000 {
                    let mut plan = SnapshotWrites(std::mem::take(&mut at.older));
                    self.client
                        .store
                        .execute(&mut plan)
                        .await
                        .map_err(store_error)?;
                }
            }
            Some("end") => {
                let Some(position) = at.position.take() else {
                    return Err("snapshot_unreadable".into());
                };
                // What this device held that the snapshot no longer has goes first.
                self.client
                    .store
                    .execute(&mut SnapshotPrune::new(&at.kept))
                    .await
                    .map_err(store_error)?;
                let mut writes = std::mem::take(&mut at.older);
                writes.push(position_write(&position.epoch, position.id));
                self.client
                    .store
                    .execute(&mut SnapshotWrites(writes))
                    .await
                    .map_err(store_error)?;
                self.client.announce("snapshot", None);
                return Ok(Some(position));
            }
            // A kind this module does not know: a newer relay's addition, skipped.
            _ => {}
        }
        Ok(None)
    }

    /// Sends what waits in the outbox, oldest first, judging each answer with the
    /// core's [`sync::send_verdict`]; stops at the first that must wait.
    async fn flush(self: &Rc<Self>) -> Input {
        let store = &self.client.store;
        let queued = store.outbox().await.unwrap_or_default();
        let url = format!("{}/messages", self.base);
        for entry in &queued {
            let request = to_js(&entry.request).ok();
            let answer = call(Method::POST, &url, request.as_ref()).await;
            let ok: Option<SendAnswer> = decode(&answer.body);
            let error: Option<ErrorBody> = decode(&answer.body);
            let verdict = sync::send_verdict(
                answer.status,
                ok.as_ref(),
                error.as_ref(),
                answer.retry_after,
                now(),
            );
            let client_ref = &entry.request.client_ref;
            let settled = match verdict {
                Verdict::Settle { answer } => answer,
                Verdict::Fail {
                    code,
                    reason,
                    error_code,
                } => SendAnswer {
                    client_ref: client_ref.clone(),
                    outcome: SendOutcome::Failed,
                    message_sid: None,
                    error_code,
                    reason: reason.or(Some(code)),
                    provider_error: None,
                    duplicate: false,
                },
                Verdict::Retry { not_before, .. } => {
                    if answer.status.is_none() {
                        let _ = store.send_unreachable(client_ref).await;
                    }
                    return Input::Flushed {
                        remaining: self.waiting().await,
                        not_before,
                    };
                }
            };
            if store.settle_send(client_ref, &settled).await.is_ok() {
                self.client.announce("sent", None);
            }
        }
        Input::Flushed {
            remaining: self.waiting().await,
            not_before: None,
        }
    }

    /// How many sends wait now, read again: counts a send queued during a flush (and
    /// one whose answer could not be stored).
    async fn waiting(&self) -> u32 {
        self.client
            .store
            .outbox()
            .await
            .map_or(1, |o| o.len() as u32)
    }

    /// Asks the relay to move a conversation (`POST /conversations/move`); the refusal's
    /// code when it says no.
    pub(crate) async fn request_move(&self, request: &JsValue) -> Result<(), String> {
        let answer = call(
            Method::POST,
            &format!("{}/conversations/move", self.base),
            Some(request),
        )
        .await;
        match answer.status {
            Some(s) if (200..300).contains(&s) => Ok(()),
            Some(s) => {
                Err(decode::<ErrorBody>(&answer.body)
                    .map_or_else(|| format!("http_{s}"), |e| e.code))
            }
            None => Err("relay_unreachable".into()),
        }
    }

    /// Imports the relay's directory (`GET /directory`), reporting progress, and tells the
    /// machine the log's head (a total for the catch-up's progress). A failure leaves the
    /// device's directory as it was; on a device without a position the next connection
    /// tries again.
    async fn import_directory(self: &Rc<Self>) {
        let answer = call(Method::GET, &format!("{}/directory", self.base), None).await;
        let head = answer
            .body
            .as_ref()
            .and_then(|b| js_sys::Reflect::get(b, &"head".into()).ok())
            .and_then(|h| h.as_string())
            .and_then(|h| Position::parse(&h));
        if let Some(head) = head {
            self.machine.borrow_mut().handle(Input::Head(head), now());
        }
        let directory = answer
            .body
            .filter(|_| answer.status == Some(200))
            .and_then(|b| js_sys::Reflect::get(&b, &"directory".into()).ok());
        let Some(directory) = directory else { return };
        // A directory the module cannot read stays out; the stream still runs.
        let _ = self
            .client
            .import_directory(&directory, &self.directory_progress())
            .await;
    }

    /// Reports a directory import's progress (records) to the listeners.
    fn directory_progress(self: &Rc<Self>) -> impl Fn(usize, usize) {
        let me = Rc::downgrade(self);
        move |done: usize, total: usize| {
            if let Some(me) = me.upgrade() {
                me.emit(
                    "progress",
                    &Progress {
                        phase: Phase::Directory,
                        done: done as u64,
                        total: Some(total as u64),
                    },
                );
            }
        }
    }

    /// Tells every listener `{type, ...payload}`.
    pub(crate) fn emit(&self, kind: &str, payload: &impl Serialize) {
        let Ok(event) = to_js(payload) else { return };
        let event = if event.is_object() {
            event
        } else {
            js_sys::Object::new().into()
        };
        let _ = js_sys::Reflect::set(&event, &"type".into(), &kind.into());
        // A listener may subscribe or disconnect while called: call a copy.
        let listeners = self.listeners.borrow().clone();
        for l in listeners {
            let _ = l.call1(&JsValue::NULL, &event);
        }
    }
}

/// An `/events/page` answer read by field (events through the same decoder as the
/// stream's).
fn events_page(v: &JsValue) -> Option<sms_core::protocol::EventsPage> {
    let get = |k: &str| js_sys::Reflect::get(v, &k.into()).ok();
    let events: js_sys::Array = get("events")?.dyn_into().ok()?;
    let events = events
        .iter()
        .map(|e| decode_event(&e).ok().flatten())
        .collect::<Option<Vec<_>>>()?;
    Some(sms_core::protocol::EventsPage {
        epoch: get("epoch")?.as_string().unwrap_or_default(),
        reset: get("reset").and_then(|r| r.as_bool()).unwrap_or(false),
        events,
        next: get("next")?.as_string()?,
        more: get("more")?.as_bool()?,
    })
}

/// The service worker's catch-up on a doorbell (N2): pages of `/events/page` from the
/// stored position, applied in runs, as the core's [`sync::CatchUp`] decides. Resolves
/// to `{ end, notification }`: how it ended and the newest notification raised.
pub(crate) async fn catch_up(client: Rc<Client>, options: &JsValue) -> JsResult<JsValue> {
    use sync::{CatchUp, CatchUpAction, CatchUpInput};
    let base = relay_base(options);
    let head = js_sys::Reflect::get(options, &"head".into())
        .ok()
        .and_then(|h| h.as_string())
        .and_then(|h| Position::parse(&h));
    let position = match client.store.position().await {
        Ok(p) => p.and_then(|p| Position::parse(&p)),
        Err(e) => return Err(crate::client::store_error(e)),
    };
    let mut machine = CatchUp::new(position, head, 200);
    let mut newest = None;
    let mut erased: Vec<String> = Vec::new();
    while let Some(action) = machine.poll() {
        let input = match action {
            CatchUpAction::FetchPage { since, limit } => {
                let url = format!(
                    "{base}/events/page?since={}&limit={limit}",
                    String::from(js_sys::encode_uri_component(&since))
                );
                let answer = call(Method::GET, &url, None).await;
                match (answer.status, answer.body.as_ref().and_then(events_page)) {
                    (Some(200), Some(page)) => CatchUpInput::Page(page),
                    (status, _) => CatchUpInput::FetchFailed { status },
                }
            }
            CatchUpAction::ResetPosition => {
                let _ = client.store.reset_position().await;
                continue;
            }
            CatchUpAction::Ingest { events } => match client.ingest_events(&events).await {
                Ok(outcomes) => {
                    erased.extend(outcomes.iter().flat_map(|o| o.erased.iter().cloned()));
                    newest = outcomes
                        .iter()
                        .rev()
                        .find_map(|o| o.notification.clone())
                        .or(newest);
                    CatchUpInput::Ingested { outcomes }
                }
                Err(e) => CatchUpInput::IngestFailed {
                    code: e.code.to_owned(),
                },
            },
            CatchUpAction::Progress(_) => continue,
            CatchUpAction::Done(end) => {
                #[derive(Serialize)]
                struct Done {
                    #[serde(flatten)]
                    end: sync::CatchUpEnd,
                    notification: Option<crate::store::records::StoredNotification>,
                    erased: Vec<String>,
                }
                // A notification of an erased conversation is not shown either.
                let newest = newest.filter(|n| !erased.contains(&n.conversation_id));
                return to_js(&Done {
                    end,
                    notification: newest,
                    erased,
                });
            }
        };
        machine.handle(input);
    }
    Err(crate::js_error::js_error(
        "internal",
        "the catch-up ended without an end",
        &[],
    ))
}

/// Where a snapshot being stored stands.
#[derive(Default)]
struct Snapshot {
    position: Option<Position>,
    total: u64,
    done: u64,
    /// Older messages not stored yet (they go in batches, the last with the position).
    older: Vec<sms_core::store::Write>,
    /// The conversations stored.
    kept: std::collections::HashSet<String>,
}

/// A snapshot's writes that need no read: older messages, and the position last.
struct SnapshotWrites(Vec<sms_core::store::Write>);

impl sms_core::store::Plan for SnapshotWrites {
    fn tables(&self) -> &'static [sms_core::store::Table] {
        use sms_core::store::Table;
        &[Table::Messages, Table::Meta]
    }
    fn writes(&self) -> bool {
        true
    }
    fn start(&mut self) -> Vec<sms_core::store::Read> {
        Vec::new()
    }
    fn step(&mut self, _: Vec<sms_core::store::Got>) -> sms_core::store::Next {
        sms_core::store::Next::Write(std::mem::take(&mut self.0))
    }
}
