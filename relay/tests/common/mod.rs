//! Test harness: a relay on 127.0.0.1 with a temporary database, the demo
//! directory, and a simulated provider; plus a small SSE client.
//!
//! One suite, two backends: with `RELAY_TEST_DATABASE_URL` set (a PostgreSQL server,
//! `tools/pg-test.sh start`), every relay gets a fresh PostgreSQL database on it
//! instead of a SQLite file.

#![allow(dead_code)]

pub mod twilio;

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use sms_relay::app::{start, Running};
use sms_relay::config::{AuthConfig, Config, SellerToken};
use sms_relay::provider::TwilioConfig;
use sms_relay::signature::sign;

pub const AUTH_TOKEN: &str = "demo-auth-token";
pub const ADMIN: &str = "admin-secret";

/// A non-demo relay's secrets (32 bytes or more, none of the demo's).
pub const PROD_ADMIN: &str = "prod-admin-3b1f9c2e7d4a5b6c8e9f0a1b2c3d4e5f";
pub const PROD_AUTH_TOKEN: &str = "twilio-auth-8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";
pub const JWT_SECRET: &str = "jwt-hs256-5f4e3d2c1b0a9f8e7d6c5b4a39281706";
pub const ISSUER: &str = "https://crm.example.com";
pub const AUDIENCE: &str = "sms-relay";

/// The PostgreSQL server the suite runs against, when it does.
pub fn postgres_url() -> Option<String> {
    std::env::var("RELAY_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A fresh, empty database: a new PostgreSQL database on the test server, or a
/// SQLite file in `dir`.
pub async fn database(dir: &std::path::Path) -> PathBuf {
    let Some(url) = postgres_url() else {
        return dir.join("relay.db");
    };
    let name = format!("relay_t_{:016x}", rand_u64());
    let client = pg_client(&url).await;
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    let (base, _) = url.rsplit_once('/').expect("a database URL");
    PathBuf::from(format!("{base}/{name}"))
}

/// [`database`], on PostgreSQL with a natural-language collation (ICU `en-US`: `a` <
/// `B`), as production databases often have, where the suite's server has `C`.
pub async fn database_en_us(dir: &std::path::Path) -> PathBuf {
    let Some(url) = postgres_url() else {
        return dir.join("relay.db");
    };
    let name = format!("relay_t_{:016x}", rand_u64());
    pg_client(&url)
        .await
        .batch_execute(&format!(
            "CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
        ))
        .await
        .expect("create a test database (ICU)");
    let (base, _) = url.rsplit_once('/').expect("a database URL");
    PathBuf::from(format!("{base}/{name}"))
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// A client of a PostgreSQL database (its connection driven on a task).
pub async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(connection);
    client
}

/// The first column of `sql`'s rows, as text, from either backend.
pub async fn query_strings(db: &std::path::Path, sql: &str) -> Vec<String> {
    match db.to_str().filter(|d| d.starts_with("postgres")) {
        Some(url) => pg_client(url)
            .await
            .query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect(),
        None => {
            let conn = rusqlite::Connection::open(db).unwrap();
            let mut stmt = conn.prepare(sql).unwrap();
            let rows = stmt.query_map([], |r| r.get(0)).unwrap();
            rows.map(Result::unwrap).collect()
        }
    }
}

/// Runs statements on `db`: `sqlite` on a SQLite file, `postgres` on PostgreSQL.
pub async fn execute_sql(db: &std::path::Path, sqlite: &str, postgres: &str) {
    match db.to_str().filter(|d| d.starts_with("postgres")) {
        Some(url) => pg_client(url).await.batch_execute(postgres).await.unwrap(),
        None => rusqlite::Connection::open(db)
            .unwrap()
            .execute_batch(sqlite)
            .unwrap(),
    }
}

/// The store's writer over `db` (either backend), as a test writes rows a crash left.
pub fn open_writer(db: &std::path::Path) -> Box<dyn sms_relay::store::LogWriter> {
    match db.to_str().filter(|d| d.starts_with("postgres")) {
        // A lease of 0: the rows it writes are free to take at once (their node "died").
        Some(url) => Box::new(
            sms_relay::store::pg::open(url, "test-writer", 2, 0)
                .unwrap()
                .0,
        ),
        None => Box::new(sms_relay::store::open_sqlite(db).unwrap().0),
    }
}

/// The store's writer and reader over `db` (either backend). Not from an async task:
/// both block.
pub fn open_store(
    db: &std::path::Path,
) -> (
    Box<dyn sms_relay::store::LogWriter>,
    std::sync::Arc<dyn sms_relay::store::LogReader>,
) {
    match db.to_str().filter(|d| d.starts_with("postgres")) {
        Some(url) => {
            let (w, r) = sms_relay::store::pg::open(url, "test-store", 4, 0).unwrap();
            (Box::new(w), std::sync::Arc::new(r))
        }
        None => {
            let (w, r) = sms_relay::store::open_sqlite(db).unwrap();
            (Box::new(w), std::sync::Arc::new(r))
        }
    }
}

/// On PostgreSQL, send leases short enough for restart tests to see a stopped node's
/// sends taken over.
fn test_limits(c: &mut Config) {
    if postgres_url().is_some() {
        c.limits.send_lease_ms = 1_500;
    }
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A production configuration: no demo, a provider (a closed local port: nothing is
/// sent in these tests), JWT sign-in with an HS256 secret and the fixture JWKS.
pub fn production_config(db: PathBuf) -> Config {
    let mut c = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database: db,
        default_region: Some("IN".into()),
        demo: false,
        admin_token: Some(PROD_ADMIN.into()),
        directory: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo/directory.json")),
        provider: Some(TwilioConfig {
            account_sid: "ACprod".into(),
            auth_token: PROD_AUTH_TOKEN.into(),
            base_url: "http://127.0.0.1:9".into(),
            ..Default::default()
        }),
        auth: AuthConfig {
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            secret: Some(JWT_SECRET.into()),
            jwks_file: Some(fixture("jwks.json")),
            ..AuthConfig::default()
        },
        ..Config::default()
    };
    test_limits(&mut c);
    c
}

pub struct Relay {
    pub running: Option<Running>,
    pub url: String,
    pub db: PathBuf,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

pub fn config(db: PathBuf, port: u16) -> Config {
    let mut c = Config {
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
                token: format!("{s}-token").into(),
            })
            .collect(),
        ..Config::default()
    };
    test_limits(&mut c);
    c
}

impl Relay {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = database(dir.path()).await;
        Self::start_with(dir, db, 0).await
    }

    /// A demo relay, `adjust` changing the harness configuration.
    pub async fn start_demo(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = database(dir.path()).await;
        let mut c = config(db.clone(), 0);
        adjust(&mut c);
        let running = start(c, false).await.expect("relay starts");
        let url = format!("http://{}", running.addr);
        Self {
            running: Some(running),
            url,
            db,
            dir,
            http: reqwest::Client::new(),
        }
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

    /// A non-demo relay, `config` adjusting [`production_config`].
    pub async fn start_production(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = database(dir.path()).await;
        let mut config = production_config(db.clone());
        adjust(&mut config);
        let running = start(config, false).await.expect("relay starts");
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

    /// A signed delivery report of `sid` (`from` the org number, `to` the customer).
    pub async fn status_report(
        &self,
        sid: &str,
        status: &str,
        from: &str,
        to: &str,
    ) -> reqwest::Response {
        let params = [
            ("MessageSid", sid),
            ("MessageStatus", status),
            ("From", from),
            ("To", to),
        ];
        self.webhook("/webhooks/twilio/status", &params, None).await
    }

    /// An inbound webhook to a production relay (signed with its provider token).
    pub async fn inbound_prod(&self, sid: &str, from: &str, to: &str, body: &str) {
        let params: Vec<(String, String)> = [
            ("MessageSid", sid),
            ("AccountSid", "ACprod"),
            ("From", from),
            ("To", to),
            ("Body", body),
            ("NumMedia", "0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let url = format!("{}/webhooks/twilio/inbound", self.url);
        let r = self
            .http
            .post(&url)
            .header("X-Twilio-Signature", sign(PROD_AUTH_TOKEN, &url, &params))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&params).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "inbound webhook");
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
        let path = format!("/events/page?since={since}&limit=1000");
        self.get_as(&path, seller).await.1
    }

    /// All events `seller` may see, via the page endpoint.
    pub async fn events(&self, seller: &str) -> Vec<Value> {
        self.page(seller, "0").await["events"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// `GET path` as `seller`: the status and the JSON body (`null` when none).
    pub async fn get_as(&self, path: &str, seller: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(format!("{seller}-token"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The log's `(epoch, head)`, as `GET /directory` tells it.
    pub async fn head(&self) -> (String, i64) {
        let (status, d) = self.get_as("/directory", "asha").await;
        assert_eq!(status, 200, "{d}");
        let (epoch, id) = d["head"]
            .as_str()
            .and_then(|h| h.split_once(':'))
            .unwrap_or_else(|| panic!("a head in {d}"));
        (epoch.to_owned(), id.parse().unwrap())
    }

    /// `POST /admin/reset` with the admin token.
    pub async fn reset_log(&self) -> reqwest::Response {
        self.http
            .post(format!("{}/admin/reset", self.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
    }

    /// `POST /admin/prune {"keep_after": keep_after}` with the admin token.
    pub async fn prune(&self, keep_after: i64) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/admin/prune", self.url))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({ "keep_after": keep_after }))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// What the demo's customer phone at `number` received.
    pub async fn phone_messages(&self, number: &str) -> Vec<Value> {
        self.http
            .get(format!("{}/demo/phone/messages", self.url))
            .query(&[("number", number)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `PATCH /directory` with an admin token.
    pub async fn patch_directory(&self, admin: &str, patch: &Value) -> reqwest::Response {
        self.http
            .patch(format!("{}/directory", self.url))
            .bearer_auth(admin)
            .json(patch)
            .send()
            .await
            .unwrap()
    }

    /// Sets the demo provider's fault switch (`POST /demo/fault`).
    pub async fn fault(&self, fault: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/demo/fault", self.url))
            .json(&fault)
            .send()
            .await
            .unwrap()
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

/// One SSE event: its id, its event type (`None`: the default, `message`) and
/// parsed data.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
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

    /// Connects to `url` with these headers.
    pub async fn connect_headers(url: &str, headers: &[(&str, &str)]) -> Self {
        let mut req = reqwest::Client::new().get(url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "SSE connect");
        Self {
            stream: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    /// Connects with one header (`Cookie` or `Authorization`).
    pub async fn connect_with(url: &str, name: &str, value: &str) -> Self {
        let resp = reqwest::Client::new()
            .get(format!("{url}/events"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "SSE connect");
        Self {
            stream: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    /// Whether the server ends the stream within `wait` (whatever it sends before).
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Some(Err(_)) | None) => return true,
                Err(_) => return false,
            }
        }
    }

    /// The next event with data of the default type (what `EventSource.onmessage`
    /// sees), or `None` after `wait` without one.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        loop {
            let e = self.next_any(wait).await?;
            if e.event.is_none() {
                return Some(e);
            }
        }
    }

    /// The next event with data, whatever its type, or `None` after `wait` without one.
    pub async fn next_any(&mut self, wait: Duration) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut id = None;
                let mut event = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned()).filter(|t| t != "message");
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() || data == "heartbeat" {
                    continue;
                }
                return Some(SseEvent {
                    id,
                    event,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            match tokio::time::timeout(wait, self.stream.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// Events of the default type until none arrives for `quiet`.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.next(quiet).await {
            out.push(e);
        }
        out
    }

    /// Events of every type until none arrives for `quiet`.
    pub async fn drain_any(&mut self, quiet: Duration) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.next_any(quiet).await {
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

/// A local push service speaking TLS with the fixture certificate for
/// `push.test.example` (signed by the fixture CA), answering every POST with the
/// status for its path; returns its address and what it received.
pub async fn tls_push_service(
    answers: Vec<(&'static str, u16, Option<&'static str>)>,
) -> (std::net::SocketAddr, Seen) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let seen: Seen = Seen::default();
    let mut router = axum::Router::new();
    for (path, status, location) in answers {
        let seen = seen.clone();
        router = router.route(
            path,
            post(move |headers: HeaderMap, body: bytes::Bytes| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push((path.to_owned(), headers, body));
                    let mut h = HeaderMap::new();
                    if let Some(l) = location {
                        h.insert("location", l.parse().unwrap());
                    }
                    (StatusCode::from_u16(status).unwrap(), h)
                }
            }),
        );
    }
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(fixture("push_tls_cert.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(fixture("push_tls_key.pem")).unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls)),
    };
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (addr, seen)
}

pub type Seen =
    std::sync::Arc<std::sync::Mutex<Vec<(String, axum::http::HeaderMap, bytes::Bytes)>>>;

struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Push settings where `push.test.example` resolves to `addr` (a local push
/// service); `reach_it` lets doorbells connect there (demo mode only), otherwise the
/// address guard stands.
pub fn push_network_to(
    addr: std::net::SocketAddr,
    reach_it: bool,
) -> sms_relay::push_guard::PushNetwork {
    use std::collections::HashMap;
    sms_relay::push_guard::PushNetwork {
        lookup: Some(std::sync::Arc::new(sms_relay::push_guard::StaticLookup(
            HashMap::from([("push.test.example".to_owned(), vec![addr])]),
        ))),
        allow_private: reach_it,
        extra_root_pem: reach_it.then(|| std::fs::read(fixture("push_ca_cert.pem")).unwrap()),
    }
}

/// A Web Push subscription's browser keys (fixed).
pub fn browser_keys() -> (
    web_push_native::p256::SecretKey,
    [u8; 16],
    serde_json::Value,
) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use web_push_native::p256::elliptic_curve::sec1::ToEncodedPoint;
    let secret = web_push_native::p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
    let p256dh = URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes());
    let auth = [3u8; 16];
    let keys = serde_json::json!({"p256dh": p256dh, "auth": URL_SAFE_NO_PAD.encode(auth)});
    (secret, auth, keys)
}
