//! Web Push doorbells (N2): "events are waiting since id N", sent with VAPID
//! (RFC 8292) and aes128gcm (RFC 8291) to every subscription of the sellers an event
//! is for. The browser's service worker then fetches the events over the
//! authenticated channel. Expired subscriptions (404/410) are dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use tokio::sync::mpsc;
use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256KeyPair};
use web_push_native::p256::PublicKey;
use web_push_native::{Auth, WebPushBuilder};

use crate::push_guard::check_endpoint;
use crate::store::{LogReader, PushSubscription};

/// The relay's VAPID identity.
pub struct Vapid {
    key: ES256KeyPair,
    subject: String,
}

impl Vapid {
    /// From a base64url private key (32 bytes), or a new one when `None`.
    pub fn new(private_key: Option<&str>, subject: String) -> Result<Self, String> {
        let key = match private_key {
            Some(k) => {
                let bytes = URL_SAFE_NO_PAD
                    .decode(k.trim_end_matches('='))
                    .map_err(|e| format!("VAPID key is not base64url: {e}"))?;
                ES256KeyPair::from_bytes(&bytes).map_err(|e| format!("VAPID key: {e}"))?
            }
            None => ES256KeyPair::generate(),
        };
        Ok(Self { key, subject })
    }

    /// The private key, base64url, for keeping it across restarts.
    pub fn private_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.to_bytes())
    }

    /// The public key browsers pass to `pushManager.subscribe` (base64url, uncompressed point).
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.public_key().public_key().to_bytes_uncompressed())
    }

    fn request(
        &self,
        sub: &PushSubscription,
        payload: &[u8],
    ) -> Result<http::Request<Vec<u8>>, String> {
        let p256dh = URL_SAFE_NO_PAD
            .decode(sub.p256dh.trim_end_matches('='))
            .map_err(|e| e.to_string())?;
        let auth = URL_SAFE_NO_PAD
            .decode(sub.auth.trim_end_matches('='))
            .map_err(|e| e.to_string())?;
        if auth.len() != 16 {
            return Err("auth secret must be 16 bytes".into());
        }
        let builder = WebPushBuilder::new(
            sub.endpoint.parse().map_err(|e| format!("endpoint: {e}"))?,
            PublicKey::from_sec1_bytes(&p256dh).map_err(|e| format!("p256dh: {e}"))?,
            Auth::clone_from_slice(&auth),
        )
        .with_vapid(&self.key, &self.subject);
        builder.build(payload.to_vec()).map_err(|e| e.to_string())
    }
}

/// Sends doorbells for `(seller, event id)` notices, coalesced per seller, with
/// `http` (built by [`crate::push_guard::client`]: public addresses only, no
/// redirects, no proxy).
pub async fn run(
    reader: Arc<dyn LogReader>,
    vapid: Arc<Vapid>,
    http: reqwest::Client,
    mut notices: mpsc::Receiver<(String, i64)>,
    epoch: tokio::sync::watch::Receiver<String>,
    concurrency: usize,
) {
    // Doorbells are rung concurrently, at most `concurrency` at once.
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    while let Some((seller, id)) = notices.recv().await {
        let mut newest: HashMap<String, i64> = HashMap::from([(seller, id)]);
        // Coalesce a burst into one doorbell per seller.
        tokio::time::sleep(Duration::from_millis(250)).await;
        while let Ok((s, id)) = notices.try_recv() {
            let e = newest.entry(s).or_insert(id);
            *e = (*e).max(id);
        }
        let epoch = epoch.borrow().clone();
        for (seller, id) in newest {
            let subs = {
                let reader = reader.clone();
                let seller = seller.clone();
                tokio::task::spawn_blocking(move || reader.subscriptions(&seller))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default()
            };
            let payload =
                serde_json::json!({ "type": "events_waiting", "epoch": epoch, "head": id })
                    .to_string();
            for sub in subs {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (http, reader, vapid, payload) =
                    (http.clone(), reader.clone(), vapid.clone(), payload.clone());
                tokio::spawn(async move {
                    ring(&http, &reader, &vapid, &sub, payload.as_bytes()).await;
                    drop(permit);
                });
            }
        }
    }
}

async fn ring(
    http: &reqwest::Client,
    reader: &Arc<dyn LogReader>,
    vapid: &Vapid,
    sub: &PushSubscription,
    payload: &[u8],
) {
    // Stored before the registration rules (or by hand): checked again.
    if let Err(why) = check_endpoint(&sub.endpoint) {
        tracing::warn!(
            reason = why.code(),
            "push endpoint refused at send; subscription dropped"
        );
        let _ = reader.delete_subscription(&sub.endpoint);
        return;
    }
    let request = match vapid.request(sub, payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(endpoint = %sub.endpoint, error = %e, "unusable push subscription dropped");
            let _ = reader.delete_subscription(&sub.endpoint);
            return;
        }
    };
    let (parts, body) = request.into_parts();
    let mut builder = http.post(parts.uri.to_string()).body(body);
    for (name, value) in &parts.headers {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    builder = builder.header("Urgency", "high");
    match builder.send().await {
        Ok(r) if r.status().as_u16() == 404 || r.status().as_u16() == 410 => {
            crate::metrics::doorbell("failed");
            tracing::info!(endpoint = %sub.endpoint, "push subscription expired; dropped");
            let _ = reader.delete_subscription(&sub.endpoint);
        }
        Ok(r) if !r.status().is_success() => {
            crate::metrics::doorbell("failed");
            tracing::warn!(endpoint = %sub.endpoint, status = %r.status(), "push service refused a doorbell");
        }
        Ok(_) => crate::metrics::doorbell("sent"),
        Err(e) => {
            crate::metrics::doorbell("failed");
            tracing::warn!(endpoint = %sub.endpoint, error = %e, "push service unreachable or refused by the address guard")
        }
    }
}
