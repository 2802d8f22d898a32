//! Configuration: a TOML file, overridden by environment variables and CLI flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use sms_core::autoreply::AutoReply;

use crate::model::Directory;
use crate::provider::TwilioConfig;
use crate::push_guard::PushNetwork;

/// Command-line flags (each also read from the environment).
#[derive(Debug, Parser)]
#[command(
    name = "sms-relay",
    about = "SMS provider callbacks in, Server-Sent Events out, outbound sends"
)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(long, env = "RELAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "RELAY_BIND")]
    pub bind: Option<SocketAddr>,
    /// SQLite database file, or a `postgres://…` URL (several nodes share it).
    #[arg(long, env = "RELAY_DATABASE")]
    pub database: Option<PathBuf>,
    /// The URL the provider calls (signatures cover it), e.g. https://relay.example.com.
    #[arg(long, env = "RELAY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Run the built-in simulated provider and customer phone.
    #[arg(long, env = "RELAY_DEMO")]
    pub demo: bool,
    /// Directory of static files to serve (the demo page).
    #[arg(long, env = "RELAY_WWW")]
    pub www: Option<PathBuf>,
    /// Empty the event log and start a new epoch before serving.
    #[arg(long)]
    pub reset_log: bool,
}

/// A seller's static credentials (demo only: the token is exchanged for a session
/// cookie). A real deployment signs sellers in with JWTs from the CRM (`[auth]`).
#[derive(Clone, Debug, Deserialize)]
pub struct SellerToken {
    /// Seller id.
    pub id: String,
    /// Long-lived secret; never put it in a URL.
    pub token: SecretString,
}

fn default_max_lifetime() -> u64 {
    600
}

fn default_leeway() -> u64 {
    60
}

/// How the CRM signs sellers in (X1): a short-lived JWT, `sub` = seller id.
#[derive(Clone, Debug, Deserialize)]
pub struct AuthConfig {
    /// Expected `iss` (env `RELAY_JWT_ISSUER`).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Expected `aud` (env `RELAY_JWT_AUDIENCE`).
    #[serde(default)]
    pub audience: Option<String>,
    /// HS256 shared secret, at least 32 bytes (env `RELAY_JWT_SECRET`).
    #[serde(default)]
    pub secret: Option<SecretString>,
    /// A file holding the HS256 secret (env `RELAY_JWT_SECRET_FILE`).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// A JWKS file with the CRM's public keys (RS256 / ES256, chosen by `kid`; env
    /// `RELAY_JWT_JWKS_FILE`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Longest accepted `exp − iat`, in seconds.
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_secs: u64,
    /// Clock leeway for `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            secret: None,
            secret_file: None,
            jwks_file: None,
            max_lifetime_secs: default_max_lifetime(),
            leeway_secs: default_leeway(),
        }
    }
}

impl AuthConfig {
    /// Whether any way of verifying a JWT is configured.
    pub fn configured(&self) -> bool {
        self.secret.is_some() || self.jwks_file.is_some()
    }
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_database() -> PathBuf {
    PathBuf::from("relay.db")
}

fn default_idempotency_days() -> u32 {
    30
}

fn default_checkpoint_secs() -> u64 {
    300
}

fn default_session_hours() -> u64 {
    12
}

fn default_max_body() -> usize {
    64 * 1024
}

/// Abuse and resource limits (X4). Per-seller limits are keyed by the signed-in
/// seller, never by address (behind a proxy every request has the proxy's).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// A request that has not produced its response head by then is answered 408
    /// (event streams are not cut: their head comes at once).
    pub request_timeout_ms: u64,
    /// Requests handled at once; more are answered 503 `overloaded`.
    pub max_concurrent_requests: usize,
    /// Open event streams per seller; opening one more closes the oldest.
    pub streams_per_seller: usize,
    /// Pooled reader connections (SQLite readers; PostgreSQL: the whole pool).
    pub db_readers: u32,
    /// PostgreSQL: how long a node holds a send row it works on without renewing
    /// it (renewed every third of it); past it another node takes the send over.
    pub send_lease_ms: u64,
    /// Doorbells waiting to be rung; past it they are dropped (the events are in
    /// the log, the next doorbell rings).
    pub doorbell_queue: usize,
    /// Doorbells rung at once.
    pub doorbell_concurrency: usize,
    /// How long `POST /messages` waits for the provider before answering 202
    /// `pending` (the send goes on).
    pub send_wait_ms: u64,
    /// Provider calls at once.
    pub provider_concurrency: usize,
    /// New sends per seller per minute (0: no limit); answered 429 with `Retry-After`.
    pub sends_per_minute: u32,
    /// New sends per seller per day (0: no limit); answered 429 with `Retry-After`.
    pub sends_per_day: u32,
    /// Country calling codes a send may go to (e.g. `[91, 44]`); empty: any. Others
    /// are refused 422 `destination_not_allowed`.
    pub allowed_country_codes: Vec<u16>,
    /// Largest `PUT`/`PATCH /directory` body (the CRM's import), in bytes; every
    /// other route takes `max_body_bytes` (webhooks 64 KiB).
    pub directory_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout_ms: 30_000,
            max_concurrent_requests: 2048,
            streams_per_seller: 8,
            db_readers: crate::store::DEFAULT_READERS,
            send_lease_ms: 30_000,
            doorbell_queue: 10_000,
            doorbell_concurrency: 16,
            send_wait_ms: 5_000,
            provider_concurrency: 32,
            sends_per_minute: 30,
            sends_per_day: 1_000,
            allowed_country_codes: Vec::new(),
            directory_body_bytes: 32 * 1024 * 1024,
        }
    }
}

/// The relay's configuration.
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    /// Address to listen on (default 127.0.0.1:8080).
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// The public base URL (default `http://<bind>`).
    #[serde(default)]
    pub public_url: Option<String>,
    /// SQLite database file, or a `postgres://` / `postgresql://` URL: several relay
    /// nodes then share that database (X9). See [`Config::database_url`].
    #[serde(default = "default_database")]
    pub database: PathBuf,
    /// Region for national numbers (ISO 3166 alpha-2).
    #[serde(default)]
    pub default_region: Option<String>,
    /// Simulated provider and customer phone (demo and tests).
    #[serde(default)]
    pub demo: bool,
    /// Static files to serve.
    #[serde(default)]
    pub www: Option<PathBuf>,
    /// Token for CRM integration calls (`PUT`/`PATCH /directory`, `POST /admin/reset`);
    /// env `RELAY_ADMIN_TOKEN`, or a file: `admin_token_file` / `RELAY_ADMIN_TOKEN_FILE`.
    #[serde(default)]
    pub admin_token: Option<SecretString>,
    /// A file holding the admin token.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// JWT sign-in (X1).
    #[serde(default)]
    pub auth: AuthConfig,
    /// CSP `frame-ancestors` sources: who may frame the page (default `'self'`; a CRM
    /// that embeds the page in a frame adds its origin). Env `RELAY_FRAME_ANCESTORS`.
    #[serde(default)]
    pub frame_ancestors: Option<String>,
    /// Twilio-compatible provider; in demo mode it defaults to the built-in fake.
    #[serde(default)]
    pub provider: Option<TwilioConfig>,
    /// Outgoing webhooks to the CRM's backend (F1): every logged event, signed in the
    /// Standard Webhooks format.
    #[serde(default)]
    pub crm_webhook: Option<CrmWebhook>,
    /// Sellers' static tokens (demo only; refused outside demo mode).
    #[serde(default)]
    pub sellers: Vec<SellerToken>,
    /// JSON file with the directory to seed an empty log with.
    #[serde(default)]
    pub directory: Option<PathBuf>,
    /// VAPID private key (base64url, 32 bytes); generated and kept in the database when
    /// absent. Env `RELAY_VAPID_PRIVATE_KEY` or a file (`vapid_private_key_file`,
    /// `RELAY_VAPID_PRIVATE_KEY_FILE`).
    #[serde(default)]
    pub vapid_private_key: Option<SecretString>,
    /// A file holding the VAPID private key.
    #[serde(default)]
    pub vapid_private_key_file: Option<PathBuf>,
    /// VAPID contact (`mailto:` or `https:` URL).
    #[serde(default)]
    pub vapid_subject: Option<String>,
    /// Session lifetime in hours.
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    /// Largest request body accepted, in bytes (webhooks and every route but the
    /// directory import: `limits.directory_body_bytes`).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Abuse and resource limits (X4).
    #[serde(default)]
    pub limits: Limits,
    /// Addresses of the reverse proxies in front of the relay: only their
    /// `X-Forwarded-For` is believed (request logs); anyone else's is ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// A second address serving `GET /metrics` without the admin token (a private
    /// network for the scraper); `/metrics` on `bind` always needs the admin token.
    #[serde(default)]
    pub metrics_bind: Option<SocketAddr>,
    /// Days of events the log keeps (X10): older events are pruned, up to the newest
    /// checkpoint stored at least that long ago; unset: the log is never pruned by
    /// age (`POST /admin/prune` still prunes on demand).
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Days the sent map (a retried send's original answer) and the webhooks'
    /// idempotency keys are kept, whatever the log keeps (default 30).
    #[serde(default = "default_idempotency_days")]
    pub idempotency_days: u32,
    /// Seconds between checkpoints of the shared state (and retention and expiry
    /// runs); a checkpoint is stored only when events were logged since the last
    /// (default 300).
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_every_secs: u64,
    /// HELP / INFO auto-replies and opt-out confirmations (F5), per org number:
    /// `[auto_reply]` with `help`, `stop`, `start`, `provider_handles_opt_out` and
    /// `[[auto_reply.numbers]]` overrides (`sms_core::autoreply::AutoReply`).
    #[serde(default)]
    pub auto_reply: AutoReply,
    /// How doorbells reach push services (tests swap the DNS lookup; only demo mode
    /// may let them reach private addresses). Not configurable from files.
    #[serde(skip)]
    pub push_network: PushNetwork,
}

/// Whether `database` names a PostgreSQL server rather than a SQLite file.
pub fn is_postgres_url(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// `[crm_webhook]`: where the CRM hears every logged event (F1).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CrmWebhook {
    /// The CRM's endpoint (`https://…`); env `RELAY_CRM_WEBHOOK_URL`.
    pub url: String,
    /// The Standard Webhooks secret (`whsec_` + base64 of 24–64 random bytes); env
    /// `RELAY_CRM_WEBHOOK_SECRET`, or a file (`secret_file`,
    /// `RELAY_CRM_WEBHOOK_SECRET_FILE`). Never logged.
    #[serde(default)]
    pub secret: Option<SecretString>,
    /// A file holding the secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// How long one delivery may take (ms, default 10,000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// The longest wait between retries (s, default 300).
    #[serde(default)]
    pub max_backoff_secs: Option<u64>,
}

impl CrmWebhook {
    /// The signing key: the secret's bytes after `whsec_`, base64-decoded.
    pub fn key(&self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        let secret = self
            .secret
            .as_ref()
            .ok_or("crm_webhook needs a secret (RELAY_CRM_WEBHOOK_SECRET)")?;
        let text = secret.expose_secret();
        let b64 = text.strip_prefix("whsec_").unwrap_or(text);
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "the crm_webhook secret is not whsec_ + base64")?;
        if key.len() < 24 {
            return Err("the crm_webhook secret is shorter than 24 bytes".into());
        }
        Ok(key)
    }
}

impl Config {
    /// The PostgreSQL URL when `database` is one (it may hold a password: never log it).
    pub fn database_url(&self) -> Option<&str> {
        self.database.to_str().filter(|d| is_postgres_url(d))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: default_bind(),
            public_url: None,
            database: default_database(),
            default_region: None,
            demo: false,
            www: None,
            admin_token: None,
            admin_token_file: None,
            auth: AuthConfig::default(),
            frame_ancestors: None,
            provider: None,
            crm_webhook: None,
            sellers: Vec::new(),
            directory: None,
            vapid_private_key: None,
            vapid_private_key_file: None,
            vapid_subject: None,
            session_hours: default_session_hours(),
            max_body_bytes: default_max_body(),
            limits: Limits::default(),
            trusted_proxies: Vec::new(),
            metrics_bind: None,
            retention_days: None,
            idempotency_days: default_idempotency_days(),
            checkpoint_every_secs: default_checkpoint_secs(),
            auto_reply: AutoReply::default(),
            push_network: PushNetwork::default(),
        }
    }
}

/// Secrets of the demo configuration (`relay/demo/relay.toml`) and the examples: a
/// non-demo start refuses them.
pub const DEMO_SECRETS: &[&str] = &[
    "demo-admin-token",
    "demo-auth-token",
    "asha-demo-token",
    "ravi-demo-token",
    "meera-demo-token",
    "zoe-demo-token",
    "admin-secret",
];

/// Shortest secret accepted outside demo mode, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A secret from a file (surrounding whitespace trimmed).
fn read_secret(path: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("secret file {}: {e}", path.display()))?;
    Ok(SecretString::from(text.trim().to_owned()))
}

/// A secret from `NAME`, else the file named by `NAME_FILE`, else the config's file,
/// else the config's value.
fn secret_from(
    name: &str,
    file: Option<&Path>,
    current: Option<SecretString>,
) -> Result<Option<SecretString>, String> {
    if let Some(v) = env(name) {
        return Ok(Some(SecretString::from(v)));
    }
    if let Some(path) = env(&format!("{name}_FILE")) {
        return read_secret(Path::new(&path)).map(Some);
    }
    if let Some(path) = file {
        return read_secret(path).map(Some);
    }
    Ok(current)
}

impl Config {
    /// Reads the file named by the CLI (if any), then applies env and flags.
    pub fn load(cli: &Cli) -> Result<Self, String> {
        let mut config = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let mut c: Self =
                    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                c.resolve_paths(path.parent().unwrap_or(Path::new(".")));
                c
            }
            None => Self::default(),
        };
        if let Some(b) = cli.bind {
            config.bind = b;
        }
        if let Some(d) = &cli.database {
            config.database = d.clone();
        }
        if let Some(u) = &cli.public_url {
            config.public_url = Some(u.clone());
        }
        if cli.demo {
            config.demo = true;
        }
        if let Some(w) = &cli.www {
            config.www = Some(w.clone());
        }
        if let Some(p) = config.provider.as_mut() {
            if let Some(token) =
                secret_from("RELAY_AUTH_TOKEN", p.auth_token_file.as_deref(), None)?
            {
                p.auth_token = token;
            }
            p.api_key_secret = secret_from(
                "RELAY_TWILIO_API_KEY_SECRET",
                p.api_key_secret_file.as_deref(),
                p.api_key_secret.take(),
            )?;
        }
        if let Some(url) = env("RELAY_CRM_WEBHOOK_URL") {
            config
                .crm_webhook
                .get_or_insert_with(CrmWebhook::default)
                .url = url;
        }
        if let Some(hook) = config.crm_webhook.as_mut() {
            hook.secret = secret_from(
                "RELAY_CRM_WEBHOOK_SECRET",
                hook.secret_file.as_deref(),
                hook.secret.take(),
            )?;
        }
        config.admin_token = secret_from(
            "RELAY_ADMIN_TOKEN",
            config.admin_token_file.as_deref(),
            config.admin_token.take(),
        )?;
        config.vapid_private_key = secret_from(
            "RELAY_VAPID_PRIVATE_KEY",
            config.vapid_private_key_file.as_deref(),
            config.vapid_private_key.take(),
        )?;
        let auth = &mut config.auth;
        auth.secret = secret_from(
            "RELAY_JWT_SECRET",
            auth.secret_file.as_deref(),
            auth.secret.take(),
        )?;
        if let Some(f) = env("RELAY_JWT_JWKS_FILE") {
            auth.jwks_file = Some(PathBuf::from(f));
        }
        if let Some(i) = env("RELAY_JWT_ISSUER") {
            auth.issuer = Some(i);
        }
        if let Some(a) = env("RELAY_JWT_AUDIENCE") {
            auth.audience = Some(a);
        }
        if let Some(f) = env("RELAY_FRAME_ANCESTORS") {
            config.frame_ancestors = Some(f);
        }
        config.check()?;
        Ok(config)
    }

    /// What a start refuses (X6): demo mode on a non-loopback address; outside demo
    /// mode, no provider, no JWT sign-in, static seller tokens, secrets shorter than
    /// 32 bytes or known from the demo, test-only push settings.
    pub fn check(&self) -> Result<(), String> {
        if let Some(f) = &self.frame_ancestors {
            if f.trim().is_empty() || f.contains([';', ',', '\r', '\n']) {
                return Err("frame_ancestors: a space-separated list of CSP sources".into());
            }
        }
        if let Some(p) = &self.provider {
            p.check()?;
        }
        self.auto_reply.check(self.default_region.as_deref())?;
        if let Some(hook) = &self.crm_webhook {
            hook.key()?;
            let own = self.demo && hook.url.starts_with('/');
            if !(own || hook.url.starts_with("https://") || hook.url.starts_with("http://")) {
                return Err(
                    "crm_webhook url: an http(s) URL (a path on the relay in demo mode)".into(),
                );
            }
        }
        if self.demo {
            if !self.bind.ip().is_loopback() {
                return Err(format!(
                    "demo mode serves every seller's token and forges messages: it only binds a \
                     loopback address, not {}",
                    self.bind
                ));
            }
            // Nor behind a proxy that publishes it: the public URL must be this machine.
            if let Some(url) = &self.public_url {
                let host = reqwest::Url::parse(url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .unwrap_or_default();
                let local = host == "localhost"
                    || host
                        .trim_matches(|c| c == '[' || c == ']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !local {
                    return Err(format!(
                        "demo mode is for this machine only: public_url {url} is not a loopback address"
                    ));
                }
            }
            return Ok(());
        }
        if self.provider.is_none() {
            return Err("no [provider] configured (or run with --demo)".into());
        }
        if !self.auth.configured() {
            return Err(
                "no seller sign-in configured: set [auth] secret / jwks_file \
                 (RELAY_JWT_SECRET, RELAY_JWT_JWKS_FILE) with issuer and audience"
                    .into(),
            );
        }
        if !self.sellers.is_empty() {
            return Err(
                "[[sellers]] static tokens are for the demo only; sellers sign in with JWTs".into(),
            );
        }
        if self.push_network.allow_private || self.push_network.extra_root_pem.is_some() {
            return Err("push test settings are for demo mode only".into());
        }
        let mut secrets: Vec<(&str, &SecretString)> = Vec::new();
        if let Some(t) = &self.admin_token {
            secrets.push(("admin_token", t));
        }
        if let Some(p) = &self.provider {
            secrets.push(("provider auth_token", &p.auth_token));
            if let Some(k) = &p.api_key_secret {
                secrets.push(("provider api_key_secret", k));
            }
        }
        if let Some(s) = &self.auth.secret {
            secrets.push(("auth secret", s));
        }
        for (what, secret) in secrets {
            weak_secret(what, secret.expose_secret())?;
        }
        Ok(())
    }

    /// Paths in a config file are relative to the file.
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if self.database_url().is_none() {
            fix(&mut self.database);
        }
        for p in [
            self.directory.as_mut(),
            self.www.as_mut(),
            self.admin_token_file.as_mut(),
            self.vapid_private_key_file.as_mut(),
            self.auth.secret_file.as_mut(),
            self.auth.jwks_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        if let Some(p) = self.provider.as_mut() {
            for f in [p.auth_token_file.as_mut(), p.api_key_secret_file.as_mut()]
                .into_iter()
                .flatten()
            {
                fix(f);
            }
        }
    }

    /// The CSP of every response: the page's own scripts and WASM only, no base URL
    /// changes, framed only by `frame_ancestors`.
    pub fn csp(&self) -> String {
        format!(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; base-uri 'none'; \
             frame-ancestors {}",
            self.frame_ancestors.as_deref().unwrap_or("'self'").trim()
        )
    }

    /// Whether browsers reach the relay over https (the cookie is then `Secure`).
    pub fn https(&self) -> bool {
        self.public_url().starts_with("https://")
    }

    /// The public base URL, without a trailing slash.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The directory to seed an empty log with.
    pub fn seed_directory(&self) -> Result<Directory, String> {
        match &self.directory {
            None => Ok(Directory::default()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
            }
        }
    }
}

/// Refuses a secret shorter than [`MIN_SECRET_BYTES`] or one of the demo's.
fn weak_secret(what: &str, secret: &str) -> Result<(), String> {
    if DEMO_SECRETS.contains(&secret) || secret.contains("demo-") {
        return Err(format!(
            "{what}: a demo secret; use a random one outside demo mode"
        ));
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "{what}: at least {MIN_SECRET_BYTES} bytes outside demo mode (e.g. `openssl rand -hex 32`)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwt");
        std::fs::write(&file, "  from-a-file-0123456789abcdef0123456789\n").unwrap();
        let got = secret_from("RELAY_TEST_UNSET_SECRET", Some(&file), None)
            .unwrap()
            .unwrap();
        assert_eq!(
            got.expose_secret(),
            "from-a-file-0123456789abcdef0123456789"
        );
        let inline = Some(SecretString::from("inline"));
        let kept = secret_from("RELAY_TEST_UNSET_SECRET", None, inline).unwrap();
        assert_eq!(kept.unwrap().expose_secret(), "inline");
        assert!(secret_from(
            "RELAY_TEST_UNSET_SECRET",
            Some(&dir.path().join("none")),
            None
        )
        .is_err());

        let c: Config = toml::from_str(
            r#"
            admin_token = "admin-0123456789abcdef0123456789abcdef"
            [auth]
            issuer = "https://crm.example.com"
            audience = "sms-relay"
            secret = "jwt-0123456789abcdef0123456789abcdef"
            [provider]
            account_sid = "AC1"
            auth_token = "auth-0123456789abcdef0123456789abcdef"
            base_url = "https://api.twilio.com"
            "#,
        )
        .unwrap();
        assert_eq!(c.auth.max_lifetime_secs, 600);
        assert_eq!(c.auth.leeway_secs, 60);
        assert!(c.check().is_ok());
        let printed = format!("{c:?}");
        for secret in ["admin-0123", "jwt-0123", "auth-0123"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }
}
