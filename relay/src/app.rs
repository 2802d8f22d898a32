//! The HTTP surface: routes, shared application state, start-up and shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, OriginalUri, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::auth::{self, Admin, Gate, Seller, SellerAuth};
use crate::config::Config;
use crate::demo::FakeProvider;
use crate::error::ApiError;
use crate::jwt::JwtVerifier;
use crate::model::{Directory, DirectoryPatch, SendOutcome};
use crate::provider::{Provider, Twilio, TwilioConfig};
use crate::push::{self, Vapid};
use crate::push_guard::check_endpoint;
use crate::sequencer::{now, DirectoryUpdate, MoveRequest, SendRequest, Sequencer};
use crate::sse;
use crate::store::{open_sqlite_with, LogReader, LogWriter, PushSubscription};
use sms_core::protocol::SendAnswer;
use sms_core::relay::{ProviderAnswer, SendPlan};

/// The demo/test fault switch: like a deploy, open event streams drop and `/events`
/// answers 503 until a time.
pub struct Fault {
    events_unavailable_until_ms: AtomicI64,
    /// Bumped when a fault starts: open streams end.
    started: tokio::sync::watch::Sender<u64>,
}

impl Default for Fault {
    fn default() -> Self {
        Self {
            events_unavailable_until_ms: AtomicI64::new(0),
            started: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Fault {
    /// Whether `/events` is switched off now.
    pub fn events_unavailable(&self) -> bool {
        self.events_unavailable_until_ms.load(Ordering::Relaxed) > now().as_millis()
    }

    /// Switches `/events` off for `ms` milliseconds, dropping the open streams.
    pub fn set(&self, ms: i64) {
        self.events_unavailable_until_ms
            .store(now().as_millis() + ms, Ordering::Relaxed);
        if ms > 0 {
            self.started.send_modify(|n| *n += 1);
        }
    }

    /// Notified when a fault starts.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.started.subscribe()
    }
}

/// Everything handlers share.
pub struct App {
    /// Configuration.
    pub config: Config,
    /// The sequencer of shared state.
    pub seq: Sequencer,
    /// Log reader, sessions, push subscriptions.
    pub reader: Arc<dyn LogReader>,
    /// The SMS provider.
    pub provider: Arc<dyn Provider>,
    /// The VAPID identity for Web Push.
    pub vapid: Arc<Vapid>,
    /// Demo/test fault switch.
    pub fault: Fault,
    /// The simulated provider (demo mode only).
    pub fake: Option<Arc<FakeProvider>>,
    /// Flips to `true` when the relay shuts down: long-lived streams end.
    pub closing: tokio::sync::watch::Receiver<bool>,
    /// Verifies the CRM's sign-in assertions (X1); `None` when not configured (demo).
    pub jwt: Option<JwtVerifier>,
    /// The directory's active sellers; revokes sessions and streams.
    pub gate: Gate,
    /// The send worker: provider calls, detached from requests (X3).
    pub sends: Arc<crate::sends::Sends>,
    /// Per-seller send rate and daily cap (X4).
    pub send_limits: crate::limits::SendLimits,
    /// Open event streams per seller (X4).
    pub streams: Arc<crate::limits::Streams>,
    /// Snapshots read at once: each holds a database reader for as long as its
    /// client takes (half the reader pool, at least one).
    pub snapshots: Arc<tokio::sync::Semaphore>,
    /// The automatic replies configured (F5), handed to the sequencer with each
    /// inbound message.
    pub auto_reply: Arc<sms_core::autoreply::AutoReply>,
}

/// Most push subscriptions one seller may hold (X2).
pub const MAX_PUSH_SUBSCRIPTIONS: usize = 5;

/// A running relay.
pub struct Running {
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
    /// Shared state (for tests).
    pub app: Arc<App>,
    /// Resolves when the server has stopped.
    pub done: tokio::task::JoinHandle<()>,
    shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    /// Stops accepting, finishes in-flight requests, and waits.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.done.await;
        // The sends this node holds go to another node at once (a shared database),
        // not when their lease runs out, once no provider call is under way here.
        if self.app.sends.stop(std::time::Duration::from_secs(5)).await {
            let reader = self.app.reader.clone();
            match tokio::task::spawn_blocking(move || reader.release_leases()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot hand this node's sends over"),
                Err(_) => {}
            }
        }
    }
}

/// Builds the relay from `config` and starts serving on its bind address (port 0
/// picks a free port; `public_url` then defaults to the real address).
pub async fn start(mut config: Config, reset_log: bool) -> Result<Running, String> {
    // Refuse unsafe settings before anything listens (X6).
    config.check()?;
    let jwt = JwtVerifier::new(&config.auth)?;
    let push_http = crate::push_guard::client(&config.push_network)?;
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|e| format!("bind {}: {e}", config.bind))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    config.bind = addr;
    let public_url = config.public_url();
    // A node's name: which sends it holds in a shared database (new at every start).
    let node = format!("{}-{}", addr, crate::sequencer::now().as_millis());
    let pg_url = config.database_url().map(str::to_owned);
    let (writer, reader): (Box<dyn LogWriter>, Arc<dyn LogReader>) = match &pg_url {
        Some(url) => {
            let (url, node) = (url.clone(), node.clone());
            let (readers, lease) = (config.limits.db_readers, config.limits.send_lease_ms);
            // Connecting and migrating wait on the driver's own runtime.
            let (w, r) = tokio::task::spawn_blocking(move || {
                crate::store::pg::open(&url, &node, readers, lease)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("postgresql: {e}"))?;
            (Box::new(w), Arc::new(r))
        }
        None => {
            let (w, r) = open_sqlite_with(&config.database, config.limits.db_readers)
                .map_err(|e| e.to_string())?;
            (Box::new(w), Arc::new(r))
        }
    };
    let seed = config.seed_directory()?;
    let (doorbell_tx, doorbell_rx) = mpsc::channel(config.limits.doorbell_queue.max(1));
    let (seq, unsettled_sends) = Sequencer::start(
        writer,
        config.default_region.clone(),
        seed.clone(),
        doorbell_tx,
    )
    .map_err(|e| e.to_string())?;
    // In the demo the seed file plays the CRM: what changed in it since the log was
    // seeded arrives as the CRM's `PATCH /directory` would (upserts only: leads the
    // relay created stay).
    if config.demo && seed != Directory::default() {
        let current = seq
            .query(|s| s.directory().clone())
            .await
            .map_err(|e| e.message)?;
        let patch = seed_changes(&current, seed);
        if patch.upsert != Directory::default() {
            seq.directory(DirectoryUpdate::Patch(DirectoryPatch {
                upsert: patch.upsert,
                delete: Default::default(),
            }))
            .await
            .map_err(|e| e.message)?;
        }
    }
    if reset_log {
        seq.reset().await.map_err(|e| e.message)?;
    }
    let vapid_key: Option<SecretString> = match config.vapid_private_key.clone() {
        Some(k) => Some(k),
        None => reader
            .vapid_key()
            .map_err(|e| e.to_string())?
            .map(SecretString::from),
    };
    let subject = config
        .vapid_subject
        .clone()
        .unwrap_or_else(|| "mailto:ops@example.com".into());
    let mut vapid = Arc::new(Vapid::new(
        vapid_key.as_ref().map(|k| k.expose_secret()),
        subject.clone(),
    )?);
    if vapid_key.is_none() {
        // Nodes starting at once on a shared database keep the first key stored.
        let kept = reader
            .put_vapid_key(&vapid.private_key())
            .map_err(|e| e.to_string())?;
        if kept != vapid.private_key() {
            vapid = Arc::new(Vapid::new(Some(&kept), subject)?);
        }
    }
    let (provider, fake): (Arc<dyn Provider>, Option<Arc<FakeProvider>>) = {
        let callback = format!("{public_url}/webhooks/twilio/status");
        match (&config.provider, config.demo) {
            (Some(p), _) => (Arc::new(Twilio::new(p.clone(), callback)), None),
            (None, false) => return Err("no [provider] configured (or run with --demo)".into()),
            (None, true) => {
                let fake_config = TwilioConfig {
                    account_sid: "ACdemo".into(),
                    auth_token: "demo-auth-token".into(),
                    base_url: format!("{public_url}/fake-twilio"),
                    ..TwilioConfig::default()
                };
                config.provider = Some(fake_config.clone());
                let fake = Arc::new(FakeProvider::new(fake_config.clone(), public_url.clone()));
                (Arc::new(Twilio::new(fake_config, callback)), Some(fake))
            }
        }
    };
    tokio::spawn(push::run(
        reader.clone(),
        vapid.clone(),
        push_http,
        doorbell_rx,
        seq.epoch(),
        config.limits.doorbell_concurrency,
    ));
    let sends = crate::sends::Sends::new(
        seq.clone(),
        provider.clone(),
        config.limits.provider_concurrency,
    );
    let send_limits = crate::limits::SendLimits::new(&config.limits);
    let streams = crate::limits::Streams::new(config.limits.streams_per_seller);
    reader
        .purge_sessions(now().as_millis())
        .map_err(|e| e.to_string())?;
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let snapshots = Arc::new(tokio::sync::Semaphore::new(
        (config.limits.db_readers as usize / 2).max(1),
    ));
    // Replies go only where sends may go (X4): texting HELP from abroad does not make
    // the relay text a country it does not serve.
    let auto_reply = Arc::new(sms_core::autoreply::AutoReply {
        allowed_country_codes: config.limits.allowed_country_codes.clone(),
        ..config.auto_reply.clone()
    });
    let app = Arc::new(App {
        config,
        seq,
        reader,
        provider,
        vapid,
        fault: Fault::default(),
        fake,
        closing,
        jwt,
        gate: Gate::default(),
        sends,
        send_limits,
        streams,
        snapshots,
        auto_reply,
    });
    auth::refresh_sellers(&app).await.map_err(|e| e.message)?;
    // Sends a stop left: queued ones go out, calling ones are reconciled (X3).
    app.sends.recover(unsettled_sends);
    if let Some(url) = pg_url {
        let reader = app.reader.clone();
        let from = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::store::StoreError>((reader.epoch()?, reader.head()?))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        // Several nodes: this node's streams are fed from the shared log, and the
        // sends whose node died are taken over when their lease expires.
        crate::store::pg::spawn_tail(
            url,
            app.seq.clone(),
            app.closing.clone(),
            std::time::Duration::from_millis(500),
            from,
        )
        .map_err(|e| e.to_string())?;
        tokio::spawn(take_over_sends(app.clone()));
    }
    tokio::spawn(upkeep(app.clone()));
    if let Some(hook) = app.config.crm_webhook.clone() {
        tokio::spawn(crate::crm_webhook::run(
            app.clone(),
            hook,
            public_url.clone(),
        ));
    }
    crate::metrics::handle();
    let metrics_server = match app.config.metrics_bind {
        Some(bind) => {
            let l = TcpListener::bind(bind)
                .await
                .map_err(|e| format!("metrics_bind {bind}: {e}"))?;
            let r = Router::new().route("/metrics", get(metrics_open));
            Some(tokio::spawn(async move {
                let _ = axum::serve(l, r).await;
            }))
        }
        None => None,
    };
    let router = router(app.clone());
    let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let server = axum::serve(listener, service).with_graceful_shutdown(async move {
            let _ = shutdown_rx.await;
            // End SSE streams so their connections can finish; in-flight webhooks
            // and sends complete (they answer only once their events are durable).
            let _ = closing_tx.send(true);
        });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "server stopped");
        }
        if let Some(m) = metrics_server {
            m.abort();
        }
    });
    tracing::info!(%addr, %public_url, "relay listening");
    Ok(Running {
        addr,
        app,
        done,
        shutdown,
    })
}

/// Renews this node's send leases and takes over the sends of nodes that stopped
/// renewing theirs, every third of a lease, until the relay stops.
async fn take_over_sends(app: Arc<App>) {
    let every = std::time::Duration::from_millis((app.config.limits.send_lease_ms / 3).max(100));
    let mut closing = app.closing.clone();
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = closing.changed() => return,
        }
        let reader = app.reader.clone();
        match tokio::task::spawn_blocking(move || reader.renew_and_claim()).await {
            Ok(Ok(claimed)) => {
                if !claimed.is_empty() {
                    tracing::warn!(
                        sends = claimed.len(),
                        "taking over the sends of a node that stopped"
                    );
                    app.sends.recover(claimed);
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew send leases"),
            Err(_) => return,
        }
    }
}

/// All routes.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.max_body_bytes;
    let directory_limit = app.config.limits.directory_body_bytes;
    let mut r = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/webhooks/twilio/inbound", post(inbound_webhook))
        .route("/webhooks/twilio/status", post(status_webhook))
        .route("/session", post(sign_in).delete(sign_out))
        .route("/me", get(me))
        .route("/events", get(sse::events))
        .route("/events/page", get(sse::page))
        .route("/snapshot", get(crate::snapshot::snapshot))
        .route(
            "/directory",
            get(get_directory)
                .put(put_directory)
                .patch(patch_directory)
                .layer(DefaultBodyLimit::max(directory_limit)),
        )
        .route("/route/preview", get(route_preview))
        .route("/messages", post(send_message))
        .route("/conversations/move", post(move_conversation))
        .route("/push/subscriptions", post(subscribe_push))
        .route("/push/subscriptions", delete(unsubscribe_push))
        .route("/push/vapid-public-key", get(vapid_public_key))
        .route("/admin/events", get(crate::feed::admin_events))
        .route("/admin/reset", post(reset_log))
        .route("/admin/prune", post(prune_log))
        .route("/admin/customers/erase", post(crate::erasure::erase))
        .route("/admin/customers/export", get(crate::erasure::export));
    // Demo routes hand out every seller's token and forge messages: demo mode only.
    if app.config.demo && app.fake.is_some() {
        r = r.merge(crate::demo::routes());
    }
    let csp =
        HeaderValue::from_str(&app.config.csp()).unwrap_or_else(|_| HeaderValue::from_static(CSP));
    if let Some(www) = app.config.www.clone() {
        r = r.fallback_service(tower_http::services::ServeDir::new(www));
    }
    let limits = &app.config.limits;
    // One semaphore for every route (`Router::layer` layers each route on its own).
    let overload = tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(overloaded))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_concurrent_requests.max(1),
        ));
    let trusted = Arc::new(app.config.trusted_proxies.clone());
    r.layer(DefaultBodyLimit::max(limit))
        .layer(overload)
        // Until the response head: event streams answer at once and are not cut.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            std::time::Duration::from_millis(limits.request_timeout_ms.max(1)),
        ))
        .layer(crate::proxy::trace_layer(trusted))
        .layer(
            // The page runs under a strict policy: its own scripts and WASM only, no
            // inline script, nothing from other origins (D3).
            tower_http::set_header::SetResponseHeaderLayer::if_not_present(
                header::CONTENT_SECURITY_POLICY,
                csp,
            ),
        )
        .layer(
            tower_http::set_header::SetResponseHeaderLayer::if_not_present(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        )
        .with_state(app)
}

/// The default content security policy of every response (the page's included);
/// `frame_ancestors` in the config changes who may frame the page.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; base-uri 'none'; frame-ancestors 'self'";

async fn healthz(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, ApiError> {
    let reader = app.reader.clone();
    let head = tokio::task::spawn_blocking(move || reader.head())
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(
        json!({ "ok": true, "epoch": *app.seq.epoch().borrow(), "head": head }),
    ))
}

/// `GET /readyz`: 200 while the database takes a write, else 503.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    let reader = app.reader.clone();
    match tokio::task::spawn_blocking(move || reader.writable()).await {
        Ok(Ok(())) => Json(json!({ "ready": true })).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "not ready: the database takes no write");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the database takes no write",
            )
            .into_response()
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// `GET /metrics` (Prometheus text) with the admin token.
async fn metrics(_: Admin) -> Response {
    metrics_open().await
}

/// `GET /metrics` on `metrics_bind` (a private address): no token.
async fn metrics_open() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
        .into_response()
}

/// 503 `overloaded` past the concurrency limit (X4).
async fn overloaded(e: axum::BoxError) -> Response {
    if e.is::<tower::load_shed::error::Overloaded>() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests at once; try again",
        )
        .into_response()
    } else {
        ApiError::internal(e).into_response()
    }
}

fn form(body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_bytes(body)
        .map_err(|e| ApiError::bad_request("malformed_form", format!("not a form body: {e}")))
}

fn twiml() -> Response {
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>",
    )
        .into_response()
}

/// Checks the provider's signature over the URL it called and the form.
fn verified(
    app: &App,
    uri: &OriginalUri,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<(), ApiError> {
    let path_and_query = uri.0.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{}", app.config.public_url(), path_and_query);
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    app.provider.verify(&url, params, signature).map_err(|why| {
        tracing::warn!(%url, why, "webhook refused");
        ApiError::new(StatusCode::FORBIDDEN, "bad_signature", why)
    })
}

async fn inbound_webhook(
    State(app): State<Arc<App>>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let result = async {
        let params = form(&body)?;
        verified(&app, &uri, &headers, &params)?;
        let sms = app
            .provider
            .parse_inbound(&params)
            .map_err(|e| ApiError::bad_request("malformed_webhook", e.to_string()))?;
        let outcome = app.seq.inbound(sms, app.auto_reply.clone()).await?;
        // The automatic reply is durably queued with the message: the worker calls
        // the provider on a task of its own, so the webhook is answered at once (a
        // stop before the call leaves it queued for the next start).
        if let Some(SendPlan::Go(p)) = outcome.send {
            app.sends.dispatch(p);
        }
        Ok(outcome.events)
    }
    .await;
    let events = counted("inbound", started, result)?;
    tracing::info!(events = events.len(), "inbound webhook logged");
    Ok(twiml())
}

/// Counts a webhook by kind and result, and times it to its durable events.
fn counted(
    kind: &'static str,
    started: std::time::Instant,
    result: Result<Vec<crate::model::LoggedEvent>, ApiError>,
) -> Result<Vec<crate::model::LoggedEvent>, ApiError> {
    let outcome = match &result {
        Ok(events) if events.is_empty() => "duplicate",
        Ok(_) => {
            crate::metrics::webhook_latency(kind, started.elapsed().as_secs_f64());
            "logged"
        }
        Err(e) if e.code == "bad_signature" => "bad_signature",
        Err(e) if e.status == StatusCode::BAD_REQUEST => "malformed",
        Err(_) => "error",
    };
    crate::metrics::webhook(kind, outcome);
    result
}

async fn status_webhook(
    State(app): State<Arc<App>>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let result = async {
        let params = form(&body)?;
        verified(&app, &uri, &headers, &params)?;
        let report = app
            .provider
            .parse_status(&params)
            .map_err(|e| ApiError::bad_request("malformed_webhook", e.to_string()))?;
        app.seq.status(report).await
    }
    .await;
    counted("status", started, result)?;
    Ok(twiml())
}

/// `POST /session`: `{"assertion": "<jwt>"}` (the CRM's), or `{"token"}` in demo mode.
#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    assertion: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

async fn sign_in(
    State(app): State<Arc<App>>,
    Json(req): Json<SignIn>,
) -> Result<Response, ApiError> {
    let seller = match (req.assertion.as_deref(), req.token.as_deref()) {
        (Some(assertion), _) => auth::verify_assertion(&app, assertion)?.seller,
        (None, Some(token)) => {
            auth::seller_for_token(&app, token.trim()).ok_or_else(ApiError::unauthorized)?
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "malformed_sign_in",
                "send {\"assertion\": \"<jwt>\"}",
            ))
        }
    };
    let id = auth::new_session_id();
    let hours = app.config.session_hours;
    let expires = now().as_millis() + (hours as i64) * 3_600_000;
    let reader = app.reader.clone();
    let (sid, s) = (id.clone(), seller.clone());
    tokio::task::spawn_blocking(move || reader.put_session(&sid, &s, expires))
        .await
        .map_err(ApiError::internal)??;
    let cookie = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        auth::cookie_name(&app),
        hours * 3600,
        secure_attr(&app),
    );
    let body = Json(json!({ "seller": seller, "epoch": *app.seq.epoch().borrow() }));
    Ok(([(header::SET_COOKIE, cookie)], body).into_response())
}

/// `; Secure` whenever browsers reach us over https.
fn secure_attr(app: &App) -> &'static str {
    if app.config.https() {
        "; Secure"
    } else {
        ""
    }
}

#[derive(Deserialize)]
struct SignOut {
    #[serde(default)]
    all: bool,
}

/// `DELETE /session` ends this browser's session; `?all=true` every session of the
/// seller (their open event streams end too).
async fn sign_out(
    State(app): State<Arc<App>>,
    Query(q): Query<SignOut>,
    headers: HeaderMap,
    who: Result<SellerAuth, ApiError>,
) -> Result<Response, ApiError> {
    let who = who.ok();
    let reader = app.reader.clone();
    if q.all {
        let who = who.ok_or_else(ApiError::unauthorized)?;
        let seller = who.seller.clone();
        tokio::task::spawn_blocking(move || reader.delete_sessions_of(&seller))
            .await
            .map_err(ApiError::internal)??;
        app.gate.revoked(Some(who.seller));
    } else if let Some(id) = auth::cookie(&headers, auth::cookie_name(&app)).map(str::to_owned) {
        tokio::task::spawn_blocking(move || reader.delete_session(&id))
            .await
            .map_err(ApiError::internal)??;
        if let Some(who) = who {
            app.gate.revoked(Some(who.seller));
        }
    }
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        auth::cookie_name(&app),
        secure_attr(&app),
    );
    Ok(([(header::SET_COOKIE, cookie)], StatusCode::NO_CONTENT).into_response())
}

async fn me(
    State(app): State<Arc<App>>,
    Seller(seller): Seller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let s = seller.clone();
    let (profile, teams, numbers) = app
        .seq
        .query(move |state| {
            let d = state.directory();
            let profile = d.sellers.iter().find(|x| x.id == s).cloned();
            let access = state.access(&s);
            let teams = access.teams().to_vec();
            // The numbers they send from, the default first (C4).
            let numbers: Vec<String> = access
                .sends_from(&d.org_numbers)
                .into_iter()
                .map(|o| o.number.clone())
                .collect();
            (profile, teams, numbers)
        })
        .await?;
    Ok(Json(json!({
        "seller": seller,
        "profile": profile,
        "teams": teams,
        "org_numbers": numbers,
        "default_region": app.config.default_region,
        "epoch": *app.seq.epoch().borrow(),
        "vapid_public_key": app.vapid.public_key(),
    })))
}

async fn get_directory(
    State(app): State<Arc<App>>,
    Seller(seller): Seller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reader = app.reader.clone();
    // The head is read before the directory, so replaying from it never misses a change.
    let head = tokio::task::spawn_blocking(move || reader.head())
        .await
        .map_err(ApiError::internal)??;
    // Their part only (X5): other sellers' records by name, no phones or owners.
    let directory = app.seq.query(move |s| s.directory_for(&seller)).await?;
    let epoch = app.seq.epoch().borrow().clone();
    Ok(Json(
        json!({ "epoch": epoch, "head": format!("{epoch}:{head}"), "directory": directory }),
    ))
}

#[derive(Deserialize)]
struct RoutePreview {
    from: String,
    to: String,
}

/// `GET /route/preview?from=&to=`: where a reply from `from` (a customer) to `to` (an
/// org number) would go now, by the relay's routing over the whole directory (B1). The
/// record is named only when the seller may see that conversation (X5).
async fn route_preview(
    State(app): State<Arc<App>>,
    Seller(seller): Seller,
    axum::extract::Query(q): axum::extract::Query<RoutePreview>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let answer = app
        .seq
        .query(move |s| {
            let (from, to) = (s.key(&q.from), s.key(&q.to));
            let decision = s.route(&from, &to);
            let visible = s.can_see(&seller, &to, Some(decision.record_id()));
            let record = visible
                .then(|| {
                    s.record(decision.record_id())
                        .map(|r| (r.id.clone(), r.name.clone()))
                })
                .flatten();
            json!({
                // The rule too says whether a record carries the number (only_match
                // against new_lead): only to who may see the conversation (X5).
                "rule": visible.then(|| decision.rule()),
                "visible": visible,
                "record_id": record.as_ref().map(|r| &r.0),
                "record_name": record.as_ref().map(|r| &r.1),
            })
        })
        .await?;
    Ok(Json(answer))
}

async fn put_directory(
    State(app): State<Arc<App>>,
    _: Admin,
    Json(directory): Json<Directory>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let events = app
        .seq
        .directory(DirectoryUpdate::Replace(directory))
        .await?;
    auth::refresh_sellers(&app).await?;
    Ok(Json(
        json!({ "events": events.iter().map(|e| e.id).collect::<Vec<_>>() }),
    ))
}

async fn patch_directory(
    State(app): State<Arc<App>>,
    _: Admin,
    Json(patch): Json<DirectoryPatch>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let events = app.seq.directory(DirectoryUpdate::Patch(patch)).await?;
    auth::refresh_sellers(&app).await?;
    Ok(Json(
        json!({ "events": events.iter().map(|e| e.id).collect::<Vec<_>>() }),
    ))
}

async fn send_message(
    State(app): State<Arc<App>>,
    Seller(seller): Seller,
    Json(req): Json<SendRequest>,
) -> Result<Response, ApiError> {
    let region = app.config.default_region.clone();
    let client_ref = req.client_ref.clone();
    // Limits apply to new sends only: a retry of a send the relay holds is answered.
    let (s, r) = (seller.clone(), client_ref.clone());
    let known = app
        .seq
        .query(move |state| state.sent(&s, &r).is_some() || state.in_flight(&s, &r))
        .await?;
    if !known {
        let limits = &app.config.limits;
        if !crate::limits::destination_allowed(
            &limits.allowed_country_codes,
            &req.to,
            region.as_deref(),
        ) {
            crate::metrics::send_refused("destination_not_allowed");
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "destination_not_allowed",
                "sending to that country is not allowed",
            ));
        }
        if let Err(e) = app.send_limits.check(&seller) {
            crate::metrics::send_refused(e.code);
            let body = json!({ "code": e.code, "message": "too many sends; try again later",
                               "retry_after": e.retry_after_secs });
            return Ok((
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, e.retry_after_secs.to_string())],
                Json(body),
            )
                .into_response());
        }
    }
    // Wait before asking, so an outcome logged after the sequencer's answer is seen.
    let mut waiter = app.sends.wait(&seller, &client_ref);
    // Queued and handed to the worker on a task of its own: a client that goes away
    // while the sequencer commits cannot leave a queued send behind unsent.
    let queued = {
        let app = app.clone();
        tokio::spawn(async move {
            let plan = app.seq.begin_send(seller, req).await?;
            if let SendPlan::Go(p) = &plan {
                app.sends.dispatch(p.clone());
            }
            Ok::<_, ApiError>(plan)
        })
    };
    let duplicate = match queued.await.map_err(ApiError::internal)?? {
        SendPlan::Done(sent) => {
            let answer = ProviderAnswer {
                message_sid: sent.message_sid,
                outcome: sent.outcome,
                error_code: sent.error_code,
            };
            let answer = crate::sends::answer(client_ref, &answer, true);
            return Ok(send_answer(answer, region.as_deref()));
        }
        // Queued or with the provider: wait for the same outcome (X3).
        SendPlan::InProgress => true,
        // Durably queued: the worker calls the provider, whatever this request does.
        SendPlan::Go(_) => false,
    };
    let wait = std::time::Duration::from_millis(app.config.limits.send_wait_ms);
    let answer = match waiter.outcome(wait).await {
        Some(mut a) => {
            a.duplicate |= duplicate;
            a
        }
        None => crate::sends::pending(client_ref),
    };
    Ok(send_answer(answer, region.as_deref()))
}

/// A send's answer: 201 accepted, 422 failed (with the failure's reason code), 202
/// unknown or pending; the provider's own error text stays in the relay's log.
fn send_answer(mut answer: SendAnswer, region: Option<&str>) -> Response {
    let status = match answer.outcome {
        SendOutcome::Accepted => StatusCode::CREATED,
        SendOutcome::Failed => {
            answer.reason = Some(
                sms_core::failure::explain(answer.error_code, "", region)
                    .reason
                    .into(),
            );
            StatusCode::UNPROCESSABLE_ENTITY
        }
        SendOutcome::Unknown | SendOutcome::Pending => StatusCode::ACCEPTED,
    };
    (status, Json(answer)).into_response()
}

async fn move_conversation(
    State(app): State<Arc<App>>,
    Seller(seller): Seller,
    Json(req): Json<MoveRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let events = app.seq.move_conversation(seller, req).await?;
    Ok(Json(json!({ "events": events })))
}

#[derive(Deserialize)]
struct Subscription {
    endpoint: String,
    keys: HashMap<String, String>,
}

async fn subscribe_push(
    State(app): State<Arc<App>>,
    Seller(seller): Seller,
    Json(sub): Json<Subscription>,
) -> Result<StatusCode, ApiError> {
    let (Some(p256dh), Some(auth)) = (sub.keys.get("p256dh"), sub.keys.get("auth")) else {
        return Err(ApiError::bad_request(
            "malformed_subscription",
            "keys.p256dh and keys.auth are required",
        ));
    };
    if p256dh.len() > 256 || auth.len() > 64 {
        return Err(ApiError::bad_request(
            "malformed_subscription",
            "keys.p256dh or keys.auth is too long",
        ));
    }
    // X2: a public https host only; re-checked, and resolved through the guard, at
    // every send.
    if let Err(why) = check_endpoint(&sub.endpoint) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "push_endpoint_refused",
            format!("push endpoint refused: {}", why.code()),
        )
        .with(json!({ "reason": why.code() })));
    }
    let s = PushSubscription {
        endpoint: sub.endpoint,
        p256dh: p256dh.clone(),
        auth: auth.clone(),
    };
    let reader = app.reader.clone();
    let added = tokio::task::spawn_blocking(move || {
        reader.add_subscription(&seller, &s, MAX_PUSH_SUBSCRIPTIONS)
    })
    .await
    .map_err(ApiError::internal)??;
    if !added {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "push_subscription_limit",
            format!("at most {MAX_PUSH_SUBSCRIPTIONS} push subscriptions per seller"),
        )
        .with(json!({ "max": MAX_PUSH_SUBSCRIPTIONS })));
    }
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize)]
struct Unsubscribe {
    endpoint: String,
}

async fn unsubscribe_push(
    State(app): State<Arc<App>>,
    Seller(seller): Seller,
    Json(u): Json<Unsubscribe>,
) -> Result<StatusCode, ApiError> {
    let reader = app.reader.clone();
    // Only the caller's own: the same answer whether or not the endpoint exists.
    tokio::task::spawn_blocking(move || reader.delete_own_subscription(&seller, &u.endpoint))
        .await
        .map_err(ApiError::internal)??;
    Ok(StatusCode::NO_CONTENT)
}

async fn vapid_public_key(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(json!({ "key": app.vapid.public_key() }))
}

async fn reset_log(
    State(app): State<Arc<App>>,
    _: Admin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let epoch = app.seq.reset().await?;
    auth::refresh_sellers(&app).await?;
    Ok(Json(json!({ "epoch": epoch })))
}

/// `POST /admin/prune` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PruneRequest {
    /// Events at or before this id go.
    keep_after: i64,
}

/// `POST /admin/prune {"keep_after": id}`: deletes the events at or before that id
/// (never past the head), after storing a checkpoint at the head when none is at or
/// after it. Clients at an older position get `410 snapshot_required` (X10).
async fn prune_log(
    State(app): State<Arc<App>>,
    _: Admin,
    body: Result<Json<PruneRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::sequencer::Pruned>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request("bad_request", e.body_text()))?;
    Ok(Json(app.seq.prune(req.keep_after).await?))
}

/// Stores a checkpoint every `checkpoint_every_secs` when events were logged since
/// the last, prunes to `retention_days` and expires the sent map and idempotency
/// keys after `idempotency_days`, until the relay stops.
async fn upkeep(app: Arc<App>) {
    let every = std::time::Duration::from_secs(app.config.checkpoint_every_secs.max(1));
    let mut closing = app.closing.clone();
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = closing.changed() => return,
        }
        // Events the CRM's webhook has not delivered yet stay (read before the
        // upkeep: the cursor only moves forward, so this errs on keeping).
        let hold_after = match app.config.crm_webhook {
            Some(_) => {
                let reader = app.reader.clone();
                let epoch = app.seq.epoch().borrow().clone();
                let cursor = tokio::task::spawn_blocking(move || reader.hook_cursor()).await;
                match cursor {
                    Ok(Ok(c)) => Some(crate::crm_webhook::delivered_through(c.as_deref(), &epoch)),
                    _ => continue,
                }
            }
            None => None,
        };
        let retention = crate::sequencer::Retention {
            log_days: app.config.retention_days,
            idempotency_days: app.config.idempotency_days,
            hold_after,
        };
        if let Err(e) = app.seq.maintain(retention).await {
            tracing::warn!(error = %e.message, "log upkeep failed; retried next time");
        }
    }
}

/// The rows of `seed` that `current` lacks or holds differently.
fn seed_changes(current: &Directory, seed: Directory) -> DirectoryPatch {
    fn changed<T: PartialEq>(have: &[T], want: Vec<T>, same_id: impl Fn(&T, &T) -> bool) -> Vec<T> {
        want.into_iter()
            .filter(|w| !have.iter().any(|h| same_id(h, w) && h == w))
            .collect()
    }
    DirectoryPatch {
        upsert: Directory {
            sellers: changed(&current.sellers, seed.sellers, |a, b| a.id == b.id),
            teams: changed(&current.teams, seed.teams, |a, b| a.id == b.id),
            org_numbers: changed(&current.org_numbers, seed.org_numbers, |a, b| {
                a.number == b.number
            }),
            records: changed(&current.records, seed.records, |a, b| a.id == b.id),
            templates: changed(&current.templates, seed.templates, |a, b| a == b),
        },
        delete: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_changes_are_the_changed_rows_only_and_keep_created_leads() {
        let seed: Directory = serde_json::from_value(json!({
            "sellers": [{"id": "asha", "name": "Asha"}],
            "records": [
                {"id": "contact:1", "kind": "contact", "owner": {"seller": "asha"}, "name": "One"},
                {"id": "contact:2", "kind": "contact", "owner": {"seller": "asha"}, "name": "Two"}
            ]
        }))
        .unwrap();
        let mut current = seed.clone();
        current.records[1].name = "Two (old)".into();
        current.records.push(
            serde_json::from_value(json!(
                {"id": "lead:+919000000001", "kind": "lead", "owner": {"seller": "asha"}}
            ))
            .unwrap(),
        );
        let patch = seed_changes(&current, seed.clone());
        assert_eq!(patch.upsert.records.len(), 1);
        assert_eq!(patch.upsert.records[0].name, "Two");
        assert!(patch.upsert.sellers.is_empty());
        assert_eq!(patch.delete, Default::default(), "the relay's leads stay");
        assert_eq!(
            seed_changes(&seed, seed.clone()).upsert,
            Directory::default()
        );
    }
}
