//! The built-in simulated provider (demo and tests): a Twilio-compatible Messages
//! API that answers sends and posts signed status callbacks, a "customer phone" that
//! posts signed inbound webhooks, and a fault switch for `/events` and slow sends.
//! All over real HTTP on the relay's own address, so the whole loop runs on one
//! machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sms_core::Timestamp;

use crate::app::App;
use crate::error::ApiError;
use crate::provider::TwilioConfig;
use crate::sequencer::now;
use crate::signature::sign;

/// A message the fake provider accepted (what the customer's phone receives).
#[derive(Clone, Debug, Serialize)]
pub struct FakeMessage {
    /// Provider id.
    pub sid: String,
    /// Org number.
    pub from: String,
    /// Customer number.
    pub to: String,
    /// Text.
    pub body: String,
    /// When it was accepted.
    pub at: Timestamp,
}

/// The simulated provider.
pub struct FakeProvider {
    config: TwilioConfig,
    public_url: String,
    http: reqwest::Client,
    counter: AtomicU64,
    sent: Mutex<Vec<FakeMessage>>,
    /// Each send waits this long before the fake answers (fault switch).
    send_delay_ms: AtomicU64,
    /// What the demo's CRM received on `/demo/crm/webhook`, newest last.
    crm: Mutex<std::collections::VecDeque<CrmReceived>>,
}

/// A webhook the demo's CRM received.
#[derive(Clone, Debug, Serialize)]
pub struct CrmReceived {
    /// `webhook-id`.
    pub webhook_id: String,
    /// The event's kind (`type`).
    pub kind: String,
    /// The logged event's id.
    pub event_id: i64,
    /// Whether its Standard Webhooks signature verified.
    pub verified: bool,
    /// When it arrived.
    pub at: Timestamp,
}

/// Webhooks the demo's CRM keeps.
const CRM_KEEP: usize = 50;

impl FakeProvider {
    /// A fake with these credentials, calling back to `public_url`.
    pub fn new(config: TwilioConfig, public_url: String) -> Self {
        Self {
            config,
            public_url,
            http: reqwest::Client::new(),
            counter: AtomicU64::new(now().as_millis() as u64),
            sent: Mutex::new(Vec::new()),
            send_delay_ms: AtomicU64::new(0),
            crm: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    fn sid(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}{n:032x}")
    }

    /// Posts a signed form to the relay, as the provider would.
    pub async fn post_signed(
        &self,
        path: &str,
        params: Vec<(String, String)>,
    ) -> Result<StatusCode, String> {
        let url = format!("{}{path}", self.public_url);
        let signature = sign(self.config.auth_token.expose_secret(), &url, &params);
        let body = serde_urlencoded::to_string(&params).map_err(|e| e.to_string())?;
        let r = self
            .http
            .post(&url)
            .header("X-Twilio-Signature", signature)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        Ok(StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FakeMessage>> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Demo routes (mounted only in demo mode).
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/fake-twilio/2010-04-01/Accounts/{account}/Messages.json",
            post(fake_send).get(fake_list),
        )
        .route("/demo/phone/send", post(phone_send))
        .route("/demo/phone/messages", get(phone_messages))
        .route("/demo/fault", post(fault))
        .route("/demo/sellers", get(demo_sellers))
        .route("/demo/crm/webhook", post(crm_webhook))
        .route("/demo/crm/received", get(crm_received))
}

/// The demo's CRM backend: receives the relay's webhooks (F1), verifies them as a CRM
/// would, keeps the last few for the page's "CRM inbox" panel.
async fn crm_webhook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: String,
) -> Result<StatusCode, ApiError> {
    let fake = fake(&app)?;
    let key = app.config.crm_webhook.as_ref().and_then(|h| h.key().ok());
    let verified = key
        .is_some_and(|k| crate::crm_webhook::verify(&k, &headers, &body, now().as_millis() / 1000));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let received = CrmReceived {
        webhook_id: headers
            .get("webhook-id")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        kind: v["type"].as_str().unwrap_or_default().to_owned(),
        event_id: v["data"]["id"].as_i64().unwrap_or_default(),
        verified,
        at: now(),
    };
    let mut crm = fake.crm.lock().unwrap_or_else(|e| e.into_inner());
    // A retry of one already verified here: done. An unverified one is replaced.
    if crm
        .iter()
        .any(|r| r.webhook_id == received.webhook_id && r.verified)
    {
        return Ok(StatusCode::NO_CONTENT);
    }
    crm.retain(|r| r.webhook_id != received.webhook_id);
    crm.push_back(received);
    while crm.len() > CRM_KEEP {
        crm.pop_front();
    }
    Ok(if verified {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    })
}

/// What the demo's CRM received, newest last.
async fn crm_received(State(app): State<Arc<App>>) -> Result<Json<Vec<CrmReceived>>, ApiError> {
    let fake = fake(&app)?;
    let crm = fake.crm.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Json(crm.iter().cloned().collect()))
}

fn fake(app: &App) -> Result<&Arc<FakeProvider>, ApiError> {
    app.fake
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "demo mode is off"))
}

#[derive(Deserialize)]
struct ApiSend {
    #[serde(rename = "To")]
    to: String,
    #[serde(rename = "From")]
    from: String,
    #[serde(rename = "Body", default)]
    body: String,
    #[serde(rename = "StatusCallback", default)]
    status_callback: Option<String>,
}

fn twilio_error(status: u16, code: u32, message: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        Json(json!({ "code": code, "message": message, "status": status.as_u16() })),
    )
        .into_response()
}

/// Whether a request to the fake carries its account and credentials.
fn authorized(fake: &FakeProvider, account: &str, headers: &HeaderMap) -> bool {
    let (user, password) = fake.config.api_credentials();
    let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    account == fake.config.account_sid && given == Some(expected.as_str())
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "To")]
    to: Option<String>,
    #[serde(rename = "From")]
    from: Option<String>,
    #[serde(rename = "DateSent>")]
    sent_after: Option<String>,
}

/// The fake message list (`GET …/Messages.json?To=&From=&DateSent>`), newest first,
/// one page.
async fn fake_list(
    State(app): State<Arc<App>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let fake = fake(&app)?.clone();
    if !authorized(&fake, &account, &headers) {
        return Ok(twilio_error(401, 20003, "Authenticate".into()));
    }
    let after = match q.sent_after.as_deref().map(Timestamp::parse) {
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => return Ok(twilio_error(400, 20001, "Invalid DateSent".into())),
        None => None,
    };
    let messages: Vec<serde_json::Value> = fake
        .lock()
        .iter()
        .rev()
        .filter(|m| q.to.as_deref().is_none_or(|t| t == m.to))
        .filter(|m| q.from.as_deref().is_none_or(|f| f == m.from))
        .filter(|m| after.is_none_or(|a| m.at > a))
        .map(|m| {
            json!({ "sid": m.sid, "from": m.from, "to": m.to, "body": m.body,
                    "status": "delivered", "direction": "outbound-api", "error_code": null })
        })
        .collect();
    Ok(Json(json!({
        "messages": messages, "page": 0, "page_size": 50, "next_page_uri": null,
    }))
    .into_response())
}

/// The fake Messages API: validates like the real one, then reports delivery.
async fn fake_send(
    State(app): State<Arc<App>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    Form(req): Form<ApiSend>,
) -> Result<Response, ApiError> {
    let fake = fake(&app)?.clone();
    if !authorized(&fake, &account, &headers) {
        return Ok(twilio_error(401, 20003, "Authenticate".into()));
    }
    let delay = fake.send_delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let valid_to = sms_core::normalize(&req.to, None).is_ok_and(|n| n.as_str() == req.to);
    if !valid_to {
        return Ok(twilio_error(
            400,
            21211,
            format!("The 'To' number {} is not a valid phone number.", req.to),
        ));
    }
    // Twilio's magic test numbers (test credentials): the provider itself refuses
    // them, although they are well-formed; the demo uses them to show failures.
    let magic = match req.to.as_str() {
        "+15005550001" => Some((21211, "is not a valid phone number")),
        "+15005550002" => Some((21612, "is not currently reachable via SMS")),
        "+15005550003" => Some((21408, "is in a region that is not enabled")),
        "+15005550004" => Some((21610, "has unsubscribed (replied STOP)")),
        "+15005550009" => Some((21614, "is not a mobile number")),
        _ => None,
    };
    if let Some((code, what)) = magic {
        return Ok(twilio_error(
            400,
            code,
            format!("The 'To' number {} {what}.", req.to),
        ));
    }
    if req.body.chars().count() > 1600 {
        return Ok(twilio_error(
            400,
            21617,
            "The concatenated message body exceeds the 1600 character limit.".into(),
        ));
    }
    let sid = fake.sid("SM");
    let message = FakeMessage {
        sid: sid.clone(),
        from: req.from.clone(),
        to: req.to.clone(),
        body: req.body.clone(),
        at: now(),
    };
    fake.lock().push(message);
    if let Some(callback) = req.status_callback {
        // Numbers ending in 0000 play an unreachable handset in the demo.
        let unreachable = req.to.ends_with("0000");
        let path = callback
            .strip_prefix(&fake.public_url)
            .unwrap_or("/webhooks/twilio/status")
            .to_owned();
        let (from, to, sid) = (req.from.clone(), req.to.clone(), sid.clone());
        tokio::spawn(async move {
            let mut steps = vec![("sent", None)];
            steps.push(if unreachable {
                ("undelivered", Some("30003"))
            } else {
                ("delivered", None)
            });
            for (status, code) in steps {
                tokio::time::sleep(Duration::from_millis(400)).await;
                let mut params = vec![
                    ("MessageSid".to_owned(), sid.clone()),
                    ("MessageStatus".to_owned(), status.to_owned()),
                    ("AccountSid".to_owned(), fake.config.account_sid.clone()),
                    ("From".to_owned(), from.clone()),
                    ("To".to_owned(), to.clone()),
                ];
                if let Some(code) = code {
                    params.push(("ErrorCode".to_owned(), code.to_owned()));
                }
                if let Err(e) = fake.post_signed(&path, params).await {
                    tracing::warn!(error = %e, "fake provider could not post a status callback");
                }
            }
        });
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "sid": sid, "status": "queued", "to": req.to, "from": req.from, "body": req.body })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct PhoneSend {
    from: String,
    to: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    media: Vec<sms_core::pane::Media>,
}

/// The customer's phone: sends an inbound SMS/MMS through a signed webhook.
async fn phone_send(
    State(app): State<Arc<App>>,
    Json(req): Json<PhoneSend>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let fake = fake(&app)?.clone();
    let sid = fake.sid(if req.media.is_empty() { "SM" } else { "MM" });
    let mut params = vec![
        ("MessageSid".to_owned(), sid.clone()),
        ("AccountSid".to_owned(), fake.config.account_sid.clone()),
        ("From".to_owned(), req.from),
        ("To".to_owned(), req.to),
        ("Body".to_owned(), req.body),
        ("NumMedia".to_owned(), req.media.len().to_string()),
        ("NumSegments".to_owned(), "1".to_owned()),
    ];
    for (i, m) in req.media.iter().enumerate() {
        params.push((format!("MediaUrl{i}"), m.url.clone()));
        params.push((format!("MediaContentType{i}"), m.content_type.clone()));
    }
    let status = fake
        .post_signed("/webhooks/twilio/inbound", params)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({ "message_sid": sid, "webhook_status": status.as_u16() }),
    ))
}

#[derive(Deserialize)]
struct PhoneQuery {
    number: Option<String>,
}

/// What the customer's phone has received.
async fn phone_messages(
    State(app): State<Arc<App>>,
    Query(q): Query<PhoneQuery>,
) -> Result<Json<Vec<FakeMessage>>, ApiError> {
    let fake = fake(&app)?;
    let list = fake.lock();
    Ok(Json(
        list.iter()
            .filter(|m| q.number.as_deref().is_none_or(|n| n == m.to))
            .cloned()
            .collect(),
    ))
}

#[derive(Deserialize)]
struct FaultReq {
    #[serde(default)]
    events_unavailable_ms: Option<i64>,
    #[serde(default)]
    send_delay_ms: Option<u64>,
}

/// Switches `/events` to 503 for a while (so reconnects can be tested), and/or makes
/// every send wait before the fake provider answers (`0` ends it).
async fn fault(
    State(app): State<Arc<App>>,
    Json(req): Json<FaultReq>,
) -> Result<StatusCode, ApiError> {
    let fake = fake(&app)?;
    if let Some(ms) = req.events_unavailable_ms {
        app.fault.set(ms.clamp(0, 600_000));
    }
    if let Some(ms) = req.send_delay_ms {
        fake.send_delay_ms.store(ms.min(600_000), Ordering::Relaxed);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The demo's sellers with their tokens, so the demo page can offer a sign-in
/// picker. Only mounted in demo mode; a real deployment signs in through the CRM.
async fn demo_sellers(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, ApiError> {
    fake(&app)?;
    let names = app.seq.query(|s| s.directory().sellers.clone()).await?;
    let list: Vec<serde_json::Value> = app
        .config
        .sellers
        .iter()
        .map(|t| {
            let profile = names.iter().find(|s| s.id == t.id);
            json!({
                "id": t.id,
                "name": profile.map_or(t.id.as_str(), |p| p.name.as_str()),
                "token": t.token.expose_secret(),
            })
        })
        .collect();
    Ok(Json(json!(list)))
}
