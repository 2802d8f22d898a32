//! Web Push doorbells against a local fake push service, the provider API request
//! against a local fake provider, and the demo fault switch.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use common::Relay;
use serde_json::{json, Value};
use sms_relay::provider::{OutboundSms, Provider, SendResult, Twilio, TwilioConfig};
use web_push_native::Auth;

type Seen = Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>;

/// A local HTTP server answering every POST with the status for its path.
async fn fake_server(answers: Vec<(&'static str, u16)>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let mut router = Router::new();
    for (path, status) in answers {
        let seen = seen.clone();
        router = router.route(
            path,
            post(move |headers: HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push((path.to_owned(), headers, body));
                    let code = StatusCode::from_u16(status).unwrap();
                    (code, axum::Json(json!({"sid": "SMfromfake", "status": "queued", "code": 21211, "message": "nope"})))
                }
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn doorbells_reach_the_push_service_and_gone_subscriptions_are_dropped() {
    // A push service on this machine, reached as https://push.test.example through a
    // swapped resolver that demo mode lets reach a private address.
    let (push_addr, seen) =
        common::tls_push_service(vec![("/push/ok", 201, None), ("/push/gone", 410, None)]).await;
    let relay =
        Relay::start_demo(|c| c.push_network = common::push_network_to(push_addr, true)).await;
    let (ua_secret, auth_bytes, keys) = common::browser_keys();
    for path in ["/push/ok", "/push/gone"] {
        let r = relay
            .post_json(
                "/push/subscriptions",
                "asha",
                json!({"endpoint": format!("https://push.test.example{path}"), "keys": keys}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    relay
        .inbound("SMpush", "+919812345678", "+14155550100", "ring ring")
        .await;
    let mut waited = 0;
    while seen.lock().unwrap().len() < 2 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    // The 404/410 answer is handled after the request is seen: wait for the drop.
    let mut waited = 0;
    while relay.app().reader.subscriptions("asha").unwrap().len() > 1 && waited < 50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let seen = seen.lock().unwrap().clone();
    let (_, headers, body) = seen
        .iter()
        .find(|(p, _, _)| p == "/push/ok")
        .expect("doorbell delivered");
    assert_eq!(headers["content-encoding"], "aes128gcm");
    assert!(headers["authorization"]
        .to_str()
        .unwrap()
        .starts_with("vapid t="));
    assert!(body.len() < 3993, "a doorbell fits a push payload");
    let plain = web_push_native::decrypt(
        body.to_vec(),
        &ua_secret,
        &Auth::clone_from_slice(&auth_bytes),
    )
    .unwrap();
    let doorbell: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(doorbell["type"], "events_waiting");
    assert!(doorbell["head"].as_i64().unwrap() > 0);
    // The 410 subscription is gone; the good one stays.
    let subs = relay.app().reader.subscriptions("asha").unwrap();
    assert_eq!(subs.len(), 1);
    assert!(subs[0].endpoint.ends_with("/push/ok"));
    // Zoe saw nothing of it: her doorbell was not rung.
    assert!(relay.app().reader.subscriptions("zoe").unwrap().is_empty());
}

fn twilio(base_url: &str) -> Twilio {
    Twilio::new(
        TwilioConfig {
            account_sid: "AC123".into(),
            auth_token: "secret".into(),
            base_url: base_url.into(),
            ..Default::default()
        },
        "https://relay.example.com/webhooks/twilio/status".into(),
    )
}

fn sms() -> OutboundSms {
    OutboundSms {
        from: "+14155550100".into(),
        to: "+919812345678".into(),
        body: "Hi & bye".into(),
    }
}

#[tokio::test]
async fn the_provider_receives_a_messages_api_request() {
    let (url, seen) = fake_server(vec![("/2010-04-01/Accounts/AC123/Messages.json", 201)]).await;
    let result = twilio(&url).send(&sms()).await;
    assert_eq!(
        result,
        SendResult::Accepted {
            sid: "SMfromfake".into()
        }
    );
    let seen = seen.lock().unwrap();
    let (_, headers, body) = &seen[0];
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("AC123:secret")
    );
    assert_eq!(headers["authorization"].to_str().unwrap(), expected_auth);
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("To"), Some("+919812345678"));
    assert_eq!(get("From"), Some("+14155550100"));
    assert_eq!(get("Body"), Some("Hi & bye"));
    assert_eq!(
        get("StatusCallback"),
        Some("https://relay.example.com/webhooks/twilio/status")
    );
}

#[tokio::test]
async fn provider_failures_are_classified() {
    let (url, seen) = fake_server(vec![("/2010-04-01/Accounts/AC123/Messages.json", 400)]).await;
    match twilio(&url).send(&sms()).await {
        SendResult::Failed { code, .. } => assert_eq!(code, Some(21211)),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 1);
    // A 5xx after the request went out is ambiguous: unknown, not retried.
    let (url, seen) = fake_server(vec![("/2010-04-01/Accounts/AC123/Messages.json", 503)]).await;
    assert!(matches!(
        twilio(&url).send(&sms()).await,
        SendResult::Unknown { .. }
    ));
    assert_eq!(seen.lock().unwrap().len(), 1);
    // Nothing listening: the request never left, so it is retried, then reported failed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    assert!(matches!(
        twilio(&closed).send(&sms()).await,
        SendResult::Failed { code: None, .. }
    ));
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_advised_delay() {
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let router = Router::new().route(
        "/2010-04-01/Accounts/AC123/Messages.json",
        post(move || {
            let c = c.clone();
            async move {
                let mut n = c.lock().unwrap();
                *n += 1;
                if *n == 1 {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("Retry-After", "1")],
                        axum::Json(json!({"code": 20429})),
                    )
                } else {
                    (
                        StatusCode::CREATED,
                        [("Retry-After", "0")],
                        axum::Json(json!({"sid": "SMlater"})),
                    )
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let started = std::time::Instant::now();
    assert_eq!(
        twilio(&url).send(&sms()).await,
        SendResult::Accepted {
            sid: "SMlater".into()
        }
    );
    assert_eq!(*calls.lock().unwrap(), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for Retry-After"
    );
}

#[tokio::test]
async fn the_fault_switch_makes_events_answer_503() {
    let relay = Relay::start().await;
    let r = relay
        .post_json(
            "/demo/fault",
            "asha",
            json!({"events_unavailable_ms": 60_000}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = relay
        .http
        .get(format!("{}/events", relay.url))
        .bearer_auth("asha-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    relay
        .post_json("/demo/fault", "asha", json!({"events_unavailable_ms": 0}))
        .await;
    let r = relay
        .http
        .get(format!("{}/events", relay.url))
        .bearer_auth("asha-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
}
