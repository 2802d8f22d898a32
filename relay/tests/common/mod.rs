//! Test harness: a relay on 127.0.0.1 with a temporary database, the demo
//! directory, and a simulated provider; plus a small SSE client.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use sms_relay::app::{start, Running};
use sms_relay::config::{Config, SellerToken};
use sms_relay::signature::sign;

pub const AUTH_TOKEN: &str = "demo-auth-token";
pub const ADMIN: &str = "admin-secret";

pub struct Relay {
    pub running: Option<Running>,
    pub url: String,
    pub db: PathBuf,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

pub fn config(db: PathBuf, port: u16) -> Config {
    Config {
        bind: format!("127.0.0.1:{port}").parse().unwrap(),
        database: db,
        default_region: Some("IN".into()),
        demo: true,
        admin_token: Some(ADMIN.into()),
        directory: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo/directory.json")),
        sellers: ["asha", "ravi", "meera", "zoe"]
            .iter()
            .map(|s| SellerToken {
                id: s.to_string(),
                token: format!("{s}-token"),
            })
            .collect(),
        ..Config::default()
    }
}

impl Relay {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("relay.db");
        Self::start_with(dir, db, 0).await
    }

    pub async fn start_with(dir: tempfile::TempDir, db: PathBuf, port: u16) -> Self {
        let running = start(config(db.clone(), port), false)
            .await
            .expect("relay starts");
        let url = format!("http://{}", running.addr);
        Self {
            running: Some(running),
            url,
            db,
            dir,
            http: reqwest::Client::new(),
        }
    }

    /// Stops this relay and starts another on the same database and port.
    pub async fn restart(mut self) -> Self {
        let port = self.running.as_ref().unwrap().addr.port();
        self.running.take().unwrap().stop().await;
        let (dir, db) = (self.dir, self.db);
        Self::start_with(dir, db, port).await
    }

    pub fn app(&self) -> &sms_relay::app::App {
        &self.running.as_ref().unwrap().app
    }

    /// Posts a provider webhook, signed unless `signature` says otherwise.
    pub async fn webhook(
        &self,
        path: &str,
        params: &[(&str, &str)],
        signature: Option<&str>,
    ) -> reqwest::Response {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let url = format!("{}{path}", self.url);
        let sig = signature.map_or_else(|| sign(AUTH_TOKEN, &url, &params), str::to_owned);
        let mut req = self
            .http
            .post(&url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&params).unwrap());
        if !sig.is_empty() {
            req = req.header("X-Twilio-Signature", sig);
        }
        req.send().await.unwrap()
    }

    pub async fn inbound(&self, sid: &str, from: &str, to: &str, body: &str) -> reqwest::Response {
        self.webhook(
            "/webhooks/twilio/inbound",
            &[
                ("MessageSid", sid),
                ("AccountSid", "ACdemo"),
                ("From", from),
                ("To", to),
                ("Body", body),
                ("NumMedia", "0"),
            ],
            None,
        )
        .await
    }

    pub async fn page(&self, seller: &str, since: &str) -> Value {
        self.http
            .get(format!("{}/events/page?since={since}&limit=1000", self.url))
            .bearer_auth(format!("{seller}-token"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// All events `seller` may see, via the page endpoint.
    pub async fn events(&self, seller: &str) -> Vec<Value> {
        self.page(seller, "0").await["events"]
            .as_array()
            .unwrap()
            .clone()
    }

    pub async fn post_json(&self, path: &str, seller: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(format!("{seller}-token"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

/// One SSE event: its id and parsed data.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub data: Value,
}

/// A minimal SSE client over reqwest.
pub struct SseClient {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl SseClient {
    pub async fn connect(url: &str, seller: &str, last_event_id: Option<&str>) -> Self {
        let mut req = reqwest::Client::new()
            .get(format!("{url}/events"))
            .bearer_auth(format!("{seller}-token"));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "SSE connect");
        Self {
            stream: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event with data, or `None` after `wait` without one.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() || data == "heartbeat" {
                    continue;
                }
                return Some(SseEvent {
                    id,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            match tokio::time::timeout(wait, self.stream.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// Events until none arrives for `quiet`.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.next(quiet).await {
            out.push(e);
        }
        out
    }
}

pub fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}
