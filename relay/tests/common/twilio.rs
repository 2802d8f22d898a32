//! A local fake of Twilio's Messages API on 127.0.0.1: records every request the
//! relay makes (method, path, query, content type, basic-auth user, body), answers a
//! create with a new sid (after an optional delay) and a list with what the test
//! put there.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

/// One request the relay made.
#[derive(Clone, Debug)]
pub struct Captured {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: Option<String>,
    /// Basic-auth user and password.
    pub auth: Option<(String, String)>,
    pub form: Vec<(String, String)>,
}

impl Captured {
    pub fn form_value(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
pub struct FakeTwilio {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Captured>>>,
    /// What a list answers (Twilio's message resources).
    pub listed: Arc<Mutex<Vec<Value>>>,
    pub delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl FakeTwilio {
    pub fn requests(&self) -> Vec<Captured> {
        self.seen.lock().unwrap().clone()
    }

    pub fn creates(&self) -> Vec<Captured> {
        self.requests()
            .into_iter()
            .filter(|c| c.method == Method::POST)
            .collect()
    }

    pub fn lists(&self) -> Vec<Captured> {
        self.requests()
            .into_iter()
            .filter(|c| c.method == Method::GET)
            .collect()
    }
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let raw = STANDARD.decode(v.strip_prefix("Basic ")?).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

async fn handle(
    State(fake): State<FakeTwilio>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.0.query().unwrap_or("")).unwrap_or_default();
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let captured = Captured {
        method: method.clone(),
        path: uri.0.path().to_owned(),
        query,
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        auth: basic(&headers),
        form,
    };
    fake.seen.lock().unwrap().push(captured.clone());
    if method == Method::POST {
        let delay = fake.delay_ms.load(std::sync::atomic::Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let n = fake.seen.lock().unwrap().len();
        let sid = format!("SMfake{n:026}");
        return (
            StatusCode::CREATED,
            Json(json!({
                "sid": sid, "status": "queued",
                "to": captured.form_value("To"), "from": captured.form_value("From"),
                "body": captured.form_value("Body"),
            })),
        )
            .into_response();
    }
    let messages = fake.listed.lock().unwrap().clone();
    Json(json!({ "messages": messages, "page": 0, "page_size": 50, "next_page_uri": null }))
        .into_response()
}

/// Starts the fake on 127.0.0.1 (a free port).
pub async fn start() -> FakeTwilio {
    let mut fake = FakeTwilio::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    fake.url = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .fallback(handle)
        .with_state(fake.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    fake
}
