//! Limits (X4), each with a small configured value, asserting status codes; and the
//! operable relay (X8): `/metrics` counters move, `/readyz`.

mod common;

use std::time::Duration;

use common::{twilio, Relay, SseClient, ADMIN};
use serde_json::{json, Value};
use sms_relay::provider::TwilioConfig;

const ASHA_ORG: &str = "+14155550100";

async fn send(relay: &Relay, client_ref: &str, to: &str) -> reqwest::Response {
    relay
        .post_json(
            "/messages",
            "asha",
            json!({"from": ASHA_ORG, "to": to, "body": "Hi", "client_ref": client_ref,
                   "record_id": "contact:priya"}),
        )
        .await
}

#[tokio::test]
async fn the_send_rate_answers_429_with_retry_after_but_never_for_a_retry() {
    let relay = Relay::start_demo(|c| {
        c.limits.sends_per_minute = 2;
        c.limits.sends_per_day = 0;
    })
    .await;
    assert_eq!(send(&relay, "r1", "+919812345678").await.status(), 201);
    assert_eq!(send(&relay, "r2", "+919812345678").await.status(), 201);
    let r = send(&relay, "r3", "+919812345678").await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "send_rate_limited");
    // A retry of a send the relay holds is answered, not limited.
    let again = send(&relay, "r1", "+919812345678").await;
    assert_eq!(again.status(), 201);
    // Per seller: ravi is not limited by asha's sends.
    let r = relay
        .post_json(
            "/messages",
            "ravi",
            json!({"from": "+14155550101", "to": "+919812345678", "body": "Hi",
                   "client_ref": "v1", "record_id": "contact:priya"}),
        )
        .await;
    assert_ne!(r.status(), 429);
}

#[tokio::test]
async fn the_daily_cap_answers_429() {
    let relay = Relay::start_demo(|c| {
        c.limits.sends_per_minute = 0;
        c.limits.sends_per_day = 1;
    })
    .await;
    assert_eq!(send(&relay, "d1", "+919812345678").await.status(), 201);
    let r = send(&relay, "d2", "+919812345678").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "daily_send_cap");
}

#[tokio::test]
async fn destinations_outside_the_allow_list_are_refused_with_a_code() {
    let relay = Relay::start_demo(|c| c.limits.allowed_country_codes = vec![91]).await;
    let r = send(&relay, "a1", "+447700900123").await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "destination_not_allowed"
    );
    assert_eq!(send(&relay, "a2", "+919812345678").await.status(), 201);
}

#[tokio::test]
async fn a_seller_past_the_stream_limit_loses_the_oldest_stream() {
    let relay = Relay::start_demo(|c| c.limits.streams_per_seller = 2).await;
    let mut oldest = SseClient::connect(&relay.url, "asha", None).await;
    let mut second = SseClient::connect(&relay.url, "asha", None).await;
    let _ravi = SseClient::connect(&relay.url, "ravi", None).await;
    let _ravi2 = SseClient::connect(&relay.url, "ravi", None).await;
    second.drain(Duration::from_millis(200)).await;
    let mut third = SseClient::connect(&relay.url, "asha", None).await;
    third.drain(Duration::from_millis(200)).await;
    assert!(
        oldest.ends_within(Duration::from_secs(10)).await,
        "the oldest stream is closed"
    );
    // The two newest still get events.
    relay
        .inbound("SMs1", "+919812345678", ASHA_ORG, "still there?")
        .await;
    for s in [&mut second, &mut third] {
        let e = s.next(Duration::from_secs(10)).await.expect("an event");
        assert_eq!(e.data["kind"], "inbound");
    }
}

#[tokio::test]
async fn bodies_are_limited_per_route() {
    let relay = Relay::start_demo(|c| {
        c.max_body_bytes = 2048;
        c.limits.directory_body_bytes = 256 * 1024;
    })
    .await;
    let big = "x".repeat(4096);
    let r = relay
        .inbound("SMbig", "+919812345678", ASHA_ORG, &big)
        .await;
    assert_eq!(r.status(), 413, "a webhook over the webhook limit");
    // A directory import far over the webhook limit (and under its own) is taken.
    let records: Vec<Value> = (0..600)
        .map(|i| json!({"id": format!("contact:bulk{i}"), "kind": "contact",
                        "owner": {"seller": "asha"}, "phones": [format!("+9198{:08}", 20_000_000 + i)]}))
        .collect();
    let patch = json!({"upsert": {"records": records}});
    assert!(patch.to_string().len() > 2048 * 10);
    let r = relay.patch_directory(ADMIN, &patch).await;
    assert_eq!(r.status(), 200);
    let huge = json!({"upsert": {"records": [{"id": "contact:huge", "kind": "contact",
        "owner": {"seller": "asha"}, "name": "y".repeat(300 * 1024)}]}});
    let r = relay.patch_directory(ADMIN, &huge).await;
    assert_eq!(r.status(), 413, "over the directory's own limit");
}

/// A slow provider of its own (the demo's lives on the relay's address, under the
/// same limits).
async fn slow_twilio(ms: u64) -> twilio::FakeTwilio {
    let fake = twilio::start().await;
    fake.delay_ms
        .store(ms, std::sync::atomic::Ordering::Relaxed);
    fake
}

fn provider(fake: &twilio::FakeTwilio) -> Option<TwilioConfig> {
    Some(TwilioConfig {
        account_sid: "ACtest".into(),
        auth_token: common::AUTH_TOKEN.into(),
        base_url: fake.url.clone(),
        ..TwilioConfig::default()
    })
}

#[tokio::test]
async fn a_request_past_the_timeout_is_answered_408() {
    let fake = slow_twilio(3000).await;
    let relay = Relay::start_demo(|c| {
        c.provider = provider(&fake);
        c.limits.request_timeout_ms = 200;
        c.limits.send_wait_ms = 60_000;
    })
    .await;
    assert_eq!(send(&relay, "t1", "+919812345678").await.status(), 408);
    // The send went on without the request; a later retry gets its outcome.
    let mut status = 0;
    for _ in 0..100 {
        status = send(&relay, "t1", "+919812345678").await.status().as_u16();
        if status == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 201);
    assert_eq!(fake.creates().len(), 1, "sent once");
}

#[tokio::test]
async fn past_the_concurrency_limit_requests_are_shed_with_503() {
    let fake = slow_twilio(3000).await;
    let relay = Relay::start_demo(|c| {
        c.provider = provider(&fake);
        c.limits.max_concurrent_requests = 1;
        c.limits.send_wait_ms = 60_000;
    })
    .await;
    let (http, url) = (relay.http.clone(), relay.url.clone());
    let slow = tokio::spawn(async move {
        http.post(format!("{url}/messages"))
            .bearer_auth("asha-token")
            .json(
                &json!({"from": ASHA_ORG, "to": "+919812345678", "body": "Hi",
                          "client_ref": "busy", "record_id": "contact:priya"}),
            )
            .send()
            .await
            .unwrap()
            .status()
    });
    let mut shed = None;
    for _ in 0..100 {
        let r = relay
            .http
            .get(format!("{}/healthz", relay.url))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            shed = Some(r.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(shed.expect("a request was shed")["code"], "overloaded");
    assert_eq!(slow.await.unwrap(), 201);
    let r = relay
        .http
        .get(format!("{}/healthz", relay.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The value of one sample in Prometheus text (0 when absent).
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

async fn metrics(relay: &Relay) -> String {
    let r = relay
        .http
        .get(format!("{}/metrics", relay.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn metrics_move_after_a_webhook_and_a_send_and_need_the_admin_token() {
    let relay = Relay::start().await;
    let r = relay
        .http
        .get(format!("{}/metrics", relay.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = relay
        .http
        .get(format!("{}/metrics", relay.url))
        .bearer_auth("asha-token")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200, "a seller is not the admin");
    let webhooks = r#"relay_webhooks_total{kind="inbound",result="logged"}"#;
    let bad = r#"relay_webhooks_total{kind="inbound",result="bad_signature"}"#;
    let inbound_events = r#"relay_events_appended_total{kind="inbound"}"#;
    let accepted = r#"relay_sends_total{outcome="accepted"}"#;
    let latency = r#"relay_webhook_to_event_seconds_count{kind="inbound"}"#;
    let before = metrics(&relay).await;
    let mut sse = SseClient::connect(&relay.url, "asha", None).await;
    sse.drain(Duration::from_millis(200)).await;
    assert_eq!(
        relay
            .inbound("SMm1", "+919812345678", ASHA_ORG, "hi")
            .await
            .status(),
        200
    );
    let forged = relay
        .webhook(
            "/webhooks/twilio/inbound",
            &[
                ("MessageSid", "SMm2"),
                ("From", "+919812345678"),
                ("To", ASHA_ORG),
            ],
            Some("AAAA"),
        )
        .await;
    assert_eq!(forged.status(), 403);
    assert_eq!(send(&relay, "m1", "+919812345678").await.status(), 201);
    let after = metrics(&relay).await;
    // Tests share one process and so one registry: counters only grow.
    for name in [webhooks, bad, inbound_events, accepted, latency] {
        assert!(
            sample(&after, name) >= sample(&before, name) + 1.0,
            "{name}: {} -> {}",
            sample(&before, name),
            sample(&after, name)
        );
    }
    assert!(after.contains("relay_sse_clients"), "{after}");
    assert!(after.contains("relay_webhook_to_event_seconds_bucket"));
    // Readiness: the database takes a write.
    let r = relay
        .http
        .get(format!("{}/readyz", relay.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn metrics_on_their_own_address_need_no_token() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let relay = Relay::start_demo(|c| c.metrics_bind = Some(bind)).await;
    let r = relay
        .http
        .get(format!("http://{bind}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("relay_"));
}
