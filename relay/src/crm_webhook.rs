//! Outgoing webhooks to the CRM's backend (F1): every logged event, in log order (so
//! in order per conversation), at least once, signed in the Standard Webhooks format
//! (<https://www.standardwebhooks.com>) so the CRM verifies it with any Standard
//! Webhooks library.
//!
//! A request per event: `POST <url>` with `webhook-id` (`evt_<epoch>_<id>`: the same on
//! every retry, the CRM's idempotency key), `webhook-timestamp` (unix seconds of this
//! attempt) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of
//! "<id>.<timestamp>.<body>">` keyed with the secret's bytes after `whsec_`); the body
//! is `{"type": "<event kind>", "timestamp": "<attempt, RFC 3339>", "data": <logged event>}`.
//! A 2xx answer delivers it; anything else (or no answer within the timeout) is
//! retried with exponential backoff and jitter, the same event again until it is
//! delivered — later events wait behind it.
//!
//! The last delivered position lives in the database (`crm_webhook_cursor`), so
//! delivery resumes after a restart where it stopped (an event may then arrive twice:
//! the id tells). It runs beside the log: a slow or dead endpoint delays only the
//! CRM's copy, never an append, a stream or a send; automatic retention keeps the
//! events it has not delivered yet. With several nodes, each runs a worker; the cursor
//! moves by compare-and-set, so a node that loses the race re-reads it (the CRM may
//! see an event twice, never out of order per worker).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::app::App;
use crate::config::CrmWebhook;
use crate::model::LoggedEvent;
use crate::store::StoreError;

const PAGE: usize = 100;
/// Metric: deliveries by `result` (`delivered`, `failed`).
pub const DELIVERIES: &str = "relay_crm_webhooks_total";

/// The signed request's headers and body for `event` at `timestamp` (unix seconds).
pub fn sign(key: &[u8], event: &LoggedEvent, timestamp: i64) -> (String, String, String) {
    let id = format!("evt_{}_{}", event.epoch, event.id);
    let at = sms_core::Timestamp::from_millis(timestamp.saturating_mul(1000)).to_string();
    let body = serde_json::json!({
        "type": event.body.kind(),
        "timestamp": at,
        "data": event,
    })
    .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let signature = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    (id, signature, body)
}

/// Whether a request is signed with `key` in the Standard Webhooks format, at most
/// five minutes from `now` (unix seconds): what a CRM checks (the demo's CRM inbox
/// does; the tests also check with the `standardwebhooks` package).
pub fn verify(key: &[u8], headers: &axum::http::HeaderMap, body: &str, now: i64) -> bool {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let (Some(id), Some(ts), Some(signatures)) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        return false;
    };
    let Ok(ts) = ts.parse::<i64>() else {
        return false;
    };
    if (now - ts).abs() > 300 {
        return false;
    }
    let signed = format!("{id}.{ts}.{body}");
    signatures.split(' ').any(|s| {
        s.strip_prefix("v1,")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|sig| {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
                mac.update(signed.as_bytes());
                mac.verify_slice(&sig).is_ok() // constant time
            })
    })
}

/// Delivers every logged event to the CRM until the relay stops. A `url` that starts
/// with `/` is on the relay itself (`own`: its public URL; the demo's CRM inbox).
pub async fn run(app: Arc<App>, mut hook: CrmWebhook, own: String) {
    if hook.url.starts_with('/') {
        hook.url = format!("{}{}", own.trim_end_matches('/'), hook.url);
    }
    let Ok(key) = hook.key() else { return };
    let timeout = Duration::from_millis(hook.timeout_ms.unwrap_or(10_000));
    let max_backoff = Duration::from_secs(hook.max_backoff_secs.unwrap_or(300).max(1));
    let Ok(client) = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    else {
        return;
    };
    let mut live = app.seq.subscribe_all();
    let mut closing = app.closing.clone();
    let mut failures = 0u32;
    loop {
        match next_page(&app).await {
            Ok((cursor, events)) if !events.is_empty() => {
                let mut cursor = cursor;
                for listed in events {
                    // The same event until it is delivered, read again before each
                    // attempt: an erasure meanwhile (F6) has redacted the stored one.
                    let mut event = listed;
                    loop {
                        match current(&app, &event).await {
                            Some(e) => event = e,
                            None => break, // pruned meanwhile: nothing left to send
                        }
                        let now = crate::sequencer::now().as_millis() / 1000;
                        let (id, signature, body) = sign(&key, &event, now);
                        let answer = client
                            .post(&hook.url)
                            .header("content-type", "application/json")
                            .header("webhook-id", &id)
                            .header("webhook-timestamp", now.to_string())
                            .header("webhook-signature", signature)
                            .body(body)
                            .send()
                            .await;
                        let delivered = answer.as_ref().is_ok_and(|r| r.status().is_success());
                        metrics::counter!(DELIVERIES, "result" => if delivered { "delivered" } else { "failed" })
                            .increment(1);
                        if delivered {
                            failures = 0;
                            break;
                        }
                        failures = failures.saturating_add(1);
                        let wait = backoff(failures, max_backoff);
                        tracing::warn!(event = event.id, status = ?answer.as_ref().ok().map(|r| r.status().as_u16()), retry_in_ms = wait.as_millis() as u64, "CRM webhook not delivered");
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            _ = closing.changed() => return,
                        }
                    }
                    let to = format!("{}:{}", event.epoch, event.id);
                    let reader = app.reader.clone();
                    let from = cursor.clone();
                    let moved = tokio::task::spawn_blocking(move || {
                        reader.advance_hook_cursor(from.as_deref(), &to)
                    })
                    .await;
                    match moved {
                        Ok(Ok(true)) => cursor = Some(format!("{}:{}", event.epoch, event.id)),
                        // Another node moved it, or the store failed: read it again.
                        _ => break,
                    }
                }
            }
            Ok(_) => {
                // Nothing new: wait for an event (or poll, for a shared log's other nodes).
                tokio::select! {
                    _ = live.recv() => {}
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = closing.changed() => return,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "CRM webhook: reading the log failed");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = closing.changed() => return,
                }
            }
        }
        if *closing.borrow() {
            return;
        }
    }
}

/// The cursor as stored and the events after it (of the current epoch: after a reset
/// the new log is delivered from its start). Events pruned before they were delivered
/// (an administrator's explicit prune) are skipped, with a warning.
async fn next_page(app: &Arc<App>) -> Result<(Option<String>, Vec<LoggedEvent>), StoreError> {
    let reader = app.reader.clone();
    let epoch = app.seq.epoch().borrow().clone();
    tokio::task::spawn_blocking(move || {
        let cursor = reader.hook_cursor()?;
        let after = delivered_through(cursor.as_deref(), &epoch);
        match reader.all_since(after, PAGE) {
            Ok(events) => Ok((cursor, events)),
            Err(StoreError::Pruned { through, .. }) => {
                tracing::warn!(
                    after,
                    through,
                    "CRM webhook: events pruned before delivery were skipped"
                );
                Ok((cursor, reader.all_since(through, PAGE)?))
            }
            Err(e) => Err(e),
        }
    })
    .await
    .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
}

/// The event as stored now (`None` once pruned; the copy in hand if the store fails).
async fn current(app: &Arc<App>, event: &LoggedEvent) -> Option<LoggedEvent> {
    let reader = app.reader.clone();
    let id = event.id;
    match tokio::task::spawn_blocking(move || reader.all_since(id - 1, 1)).await {
        Ok(Ok(mut page)) => page.pop().filter(|e| e.id == id && e.epoch == event.epoch),
        Ok(Err(StoreError::Pruned { .. })) => None,
        _ => Some(event.clone()),
    }
}

/// The last event of `epoch` the cursor says was delivered (0: none of this epoch).
pub fn delivered_through(cursor: Option<&str>, epoch: &str) -> i64 {
    cursor
        .and_then(|c| c.split_once(':'))
        .filter(|(e, _)| *e == epoch)
        .and_then(|(_, id)| id.parse().ok())
        .unwrap_or(0)
}

/// Exponential backoff with full jitter: up to 1 s × 2^(failures-1), capped.
fn backoff(failures: u32, max: Duration) -> Duration {
    let cap =
        Duration::from_millis(1_000u64.saturating_mul(1 << failures.min(20).saturating_sub(1)))
            .min(max);
    let jitter = rand::random::<f64>();
    cap.mul_f64(0.5 + jitter / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sms_core::protocol::events::ConsentChangedEvent;
    use sms_core::protocol::EventBody;

    #[test]
    fn a_signed_request_verifies_and_a_changed_one_does_not() {
        let key = b"a key of at least twenty-four bytes";
        let event = LoggedEvent {
            epoch: "e1".into(),
            id: 7,
            body: EventBody::ConsentChanged(ConsentChangedEvent {
                org_number: "+14155550100".into(),
                customer_number: "+919812345678".into(),
                consent: sms_core::consent::Consent::OptedOut,
                at: sms_core::Timestamp::from_millis(0),
            }),
        };
        let (id, signature, body) = sign(key, &event, 1_700_000_000);
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", "1700000000".parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        assert_eq!(id, "evt_e1_7");
        assert!(verify(key, &headers, &body, 1_700_000_100));
        assert!(!verify(
            key,
            &headers,
            &body.replace("opted_out", "opted_in"),
            1_700_000_100
        ));
        assert!(!verify(
            b"another key of twenty-four bytes",
            &headers,
            &body,
            1_700_000_100
        ));
        assert!(
            !verify(key, &headers, &body, 1_700_000_000 + 301),
            "too old"
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["data"]["id"].as_i64()),
            (Some("consent_changed"), Some(7))
        );
    }
}
