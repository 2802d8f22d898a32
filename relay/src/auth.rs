//! Who is calling: a session cookie (browsers, including `EventSource`, which cannot
//! set headers) or `Authorization: Bearer <jwt>` (the CRM's assertion, X1; static
//! seller tokens in demo mode only). Cookie-authenticated writes must come from our
//! own origin (CSRF), on top of `SameSite=Strict`.
//!
//! [`Gate`] holds the directory's active sellers: a seller removed or made inactive
//! loses every session and open event stream at once.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use rand::RngCore;
use secrecy::ExposeSecret;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::broadcast;

use crate::app::App;
use crate::error::ApiError;
use crate::jwt::{Refusal, Verified};
use crate::sequencer::now;

/// The session cookie's name over plain http (the demo on 127.0.0.1).
pub const COOKIE: &str = "sms_session";
/// Its name when the public URL is https: `Secure`, host-only, `Path=/`.
pub const SECURE_COOKIE: &str = "__Host-sms_session";

/// The session cookie's name for this relay.
pub fn cookie_name(app: &App) -> &'static str {
    if app.config.https() {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}

/// An authenticated seller.
#[derive(Clone, Debug)]
pub struct Seller(pub String);

/// An authenticated seller and what their access hangs on (for long-lived streams).
#[derive(Clone, Debug)]
pub struct SellerAuth {
    /// Seller id.
    pub seller: String,
    /// The session id, when signed in by cookie.
    pub session: Option<String>,
    /// When the credentials expire (Unix ms), for a bearer assertion.
    pub expires_ms: Option<i64>,
}

/// The CRM integration (admin token).
pub struct Admin;

/// The directory's active sellers, and a signal to re-check open streams.
pub struct Gate {
    active: RwLock<HashSet<String>>,
    /// `Some(seller)`: that seller's sessions changed; `None`: re-check everyone.
    revoked: broadcast::Sender<Option<String>>,
    refresh: tokio::sync::Mutex<()>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            active: RwLock::default(),
            revoked: broadcast::channel(256).0,
            refresh: tokio::sync::Mutex::new(()),
        }
    }
}

impl Gate {
    /// Whether `seller` is an active seller of the directory.
    pub fn is_active(&self, seller: &str) -> bool {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(seller)
    }

    /// Replaces the active set; returns the sellers who left it.
    fn set(&self, now_active: HashSet<String>) -> Vec<String> {
        let mut active = self.active.write().unwrap_or_else(|e| e.into_inner());
        let gone = active.difference(&now_active).cloned().collect();
        *active = now_active;
        gone
    }

    /// Tells open streams to re-check their credentials (`None`: every seller's).
    pub fn revoked(&self, seller: Option<String>) {
        let _ = self.revoked.send(seller);
    }

    /// Revocation notices.
    pub fn watch(&self) -> broadcast::Receiver<Option<String>> {
        self.revoked.subscribe()
    }
}

/// Re-reads the active sellers from the directory (after a directory change): the
/// sellers removed or made inactive lose every session, and their streams end.
pub async fn refresh_sellers(app: &App) -> Result<(), ApiError> {
    let _serial = app.gate.refresh.lock().await;
    let active: HashSet<String> = app
        .seq
        .query(|s| {
            s.directory()
                .sellers
                .iter()
                .filter(|x| x.active)
                .map(|x| x.id.clone())
                .collect()
        })
        .await?;
    let gone = app.gate.set(active);
    for seller in &gone {
        tracing::info!(%seller, "seller removed or inactive: sessions ended");
        let (reader, s) = (app.reader.clone(), seller.clone());
        tokio::task::spawn_blocking(move || reader.delete_sessions_of(&s))
            .await
            .map_err(ApiError::internal)??;
    }
    if !gone.is_empty() {
        app.gate.revoked(None);
    }
    Ok(())
}

/// A 401 `invalid_assertion` with its `reason`.
pub fn refused(reason: Refusal) -> ApiError {
    tracing::info!(reason = reason.code(), "assertion refused");
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_assertion",
        format!("the sign-in assertion was refused: {}", reason.code()),
    )
    .with(json!({ "reason": reason.code() }))
}

/// Verifies a CRM assertion and that its seller is active.
pub fn verify_assertion(app: &App, token: &str) -> Result<Verified, ApiError> {
    let Some(verifier) = app.jwt.as_ref() else {
        return Err(refused(Refusal::Algorithm));
    };
    let verified = verifier
        .verify(token, now().as_millis() / 1000)
        .map_err(refused)?;
    if !app.gate.is_active(&verified.seller) {
        return Err(refused(Refusal::UnknownSeller));
    }
    Ok(verified)
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The value of cookie `name` in the request headers.
pub(crate) fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Constant-time static token lookup (demo mode only), for an active seller.
pub fn seller_for_token(app: &App, token: &str) -> Option<String> {
    if !app.config.demo {
        return None;
    }
    app.config
        .sellers
        .iter()
        .find(|s| bool::from(s.token.expose_secret().as_bytes().ct_eq(token.as_bytes())))
        .map(|s| s.id.clone())
        .filter(|s| app.gate.is_active(s))
}

/// Whether a bearer credential is a JWT (three base64url parts).
fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// A new random session id.
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn same_origin(app: &App, parts: &Parts) -> bool {
    let Some(origin) = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        // Browsers send Origin on every cross-site POST; its absence means a
        // same-origin navigation or a non-browser client.
        return true;
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    origin == app.config.public_url()
        || origin == format!("http://{host}")
        || origin == format!("https://{host}")
}

/// Who is calling, from a bearer credential or the session cookie.
async fn authenticate(parts: &Parts, app: &Arc<App>) -> Result<SellerAuth, ApiError> {
    if let Some(token) = bearer(parts) {
        // Outside demo mode every bearer credential is an assertion.
        if looks_like_jwt(token) || !app.config.demo {
            let v = verify_assertion(app, token)?;
            return Ok(SellerAuth {
                seller: v.seller,
                session: None,
                expires_ms: Some(v.exp.saturating_add(app.config.auth.leeway_secs as i64) * 1000),
            });
        }
        return seller_for_token(app, token)
            .map(|seller| SellerAuth {
                seller,
                session: None,
                expires_ms: None,
            })
            .ok_or_else(ApiError::unauthorized);
    }
    let id = cookie(&parts.headers, cookie_name(app))
        .ok_or_else(ApiError::unauthorized)?
        .to_owned();
    if parts.method != Method::GET && !same_origin(app, parts) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site",
            "cross-site request refused",
        ));
    }
    let reader = app.reader.clone();
    let now_ms = now().as_millis();
    let sid = id.clone();
    let (seller, expires_ms) = tokio::task::spawn_blocking(move || reader.session(&sid, now_ms))
        .await
        .map_err(ApiError::internal)??
        .filter(|(s, _)| app.gate.is_active(s))
        .ok_or_else(ApiError::unauthorized)?;
    // A cookie's event stream ends when its session does, like a bearer's with its token.
    Ok(SellerAuth {
        seller,
        session: Some(id),
        expires_ms: Some(expires_ms),
    })
}

impl FromRequestParts<Arc<App>> for SellerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        authenticate(parts, app).await
    }
}

impl FromRequestParts<Arc<App>> for Seller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        authenticate(parts, app).await.map(|a| Seller(a.seller))
    }
}

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        match (bearer(parts), app.config.admin_token.as_ref()) {
            (Some(given), Some(expected))
                if bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes())) =>
            {
                Ok(Self)
            }
            _ => Err(ApiError::unauthorized()),
        }
    }
}
