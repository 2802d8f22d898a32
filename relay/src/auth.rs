//! Who is calling: a session cookie (browsers, including `EventSource`, which cannot
//! set headers) or `Authorization: Bearer <token>` (integrations). Cookie-authenticated
//! writes must come from our own origin (CSRF), on top of `SameSite=Strict`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::error::ApiError;
use crate::sequencer::now;

/// The session cookie's name.
pub const COOKIE: &str = "sms_session";

/// An authenticated seller.
#[derive(Clone, Debug)]
pub struct Seller(pub String);

/// The CRM integration (admin token).
pub struct Admin;

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

/// Constant-time token lookup.
pub fn seller_for_token(app: &App, token: &str) -> Option<String> {
    app.config
        .sellers
        .iter()
        .find(|s| bool::from(s.token.as_bytes().ct_eq(token.as_bytes())))
        .map(|s| s.id.clone())
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

impl FromRequestParts<Arc<App>> for Seller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        if let Some(token) = bearer(parts) {
            return seller_for_token(app, token)
                .map(Seller)
                .ok_or_else(ApiError::unauthorized);
        }
        let id = cookie(&parts.headers, COOKIE)
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
        let seller = tokio::task::spawn_blocking(move || reader.session(&id, now_ms))
            .await
            .map_err(ApiError::internal)??;
        seller.map(Seller).ok_or_else(ApiError::unauthorized)
    }
}

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        match (bearer(parts), app.config.admin_token.as_deref()) {
            (Some(given), Some(expected))
                if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) =>
            {
                Ok(Self)
            }
            _ => Err(ApiError::unauthorized()),
        }
    }
}
