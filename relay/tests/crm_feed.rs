//! The CRM hears back (F1): the admin feed (`GET /admin/events`, pages and a stream,
//! no audience filter) and outgoing webhooks in the Standard Webhooks format —
//! verified with the `standardwebhooks` npm package — delivered in order, retried
//! across a restart, and never holding up the log when the endpoint is dead.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::{Relay, SseClient, ADMIN};
use serde_json::{json, Value};
use sms_relay::config::CrmWebhook;

const ASHA_ORG: &str = "+14155550100";
const NORTH_ORG: &str = "+14155550101";
const PRIYA: &str = "+919812345678";
const STRANGER: &str = "+919876500001";
/// A Standard Webhooks secret: `whsec_` + base64 of 32 bytes.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn admin_page(relay: &Relay, since: &str, limit: usize, token: Option<&str>) -> (u16, Value) {
    let mut req = relay.http.get(format!(
        "{}/admin/events?since={since}&limit={limit}",
        relay.url
    ));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Every event of the feed, page by page.
async fn feed(relay: &Relay) -> Vec<Value> {
    let (mut since, mut all) = ("0".to_owned(), Vec::new());
    loop {
        let (status, page) = admin_page(relay, &since, 2, Some(ADMIN)).await;
        assert_eq!(status, 200, "{page}");
        all.extend(page["events"].as_array().unwrap().iter().cloned());
        since = page["next"].as_str().unwrap().to_owned();
        if !page["more"].as_bool().unwrap() {
            return all;
        }
    }
}

async fn activity(relay: &Relay) {
    for (sid, from, to, body) in [
        ("SMf1", PRIYA, ASHA_ORG, "Hello Asha"),
        ("SMf2", STRANGER, NORTH_ORG, "Hello North"),
        ("SMf3", PRIYA, NORTH_ORG, "STOP"),
    ] {
        assert_eq!(relay.inbound(sid, from, to, body).await.status(), 200);
    }
}

#[tokio::test]
async fn the_feed_pages_every_event_whoever_may_see_it() {
    let relay = Relay::start().await;
    activity(&relay).await;
    let all = feed(&relay).await;
    let (_, head) = relay.head().await;
    let ids: Vec<i64> = all.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(
        ids,
        (1..=head).collect::<Vec<_>>(),
        "every event, in order, once"
    );
    // No seller sees all of it; the feed does.
    for seller in ["meera", "zoe"] {
        assert!(
            relay.events(seller).await.len() < all.len(),
            "{seller} sees less"
        );
    }
    let kinds: Vec<&str> = all.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in [
        "lead_created",
        "inbound",
        "consent_changed",
        "directory_replaced",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    // Admins only.
    assert_eq!(admin_page(&relay, "0", 10, None).await.0, 401);
    assert_eq!(admin_page(&relay, "0", 10, Some("asha-token")).await.0, 401);
    // A pruned position is said, not skipped.
    assert_eq!(relay.prune(head).await.0, 200);
    let (status, body) = admin_page(&relay, "0", 10, Some(ADMIN)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (410, Some("events_pruned"))
    );
    let (status, body) = admin_page(&relay, &head.to_string(), 10, Some(ADMIN)).await;
    assert_eq!(
        (status, body["events"].as_array().map(Vec::len)),
        (200, Some(0))
    );
}

#[tokio::test]
async fn the_feed_streams_with_accept_event_stream() {
    let relay = Relay::start().await;
    activity(&relay).await;
    let (_, head) = relay.head().await;
    let mut stream = SseClient::connect_headers(
        &format!("{}/admin/events", relay.url),
        &[
            ("authorization", &format!("Bearer {ADMIN}")),
            ("accept", "text/event-stream"),
        ],
    )
    .await;
    let replay = stream.drain_any(Duration::from_millis(500)).await;
    let ids: Vec<i64> = replay
        .iter()
        .filter(|e| e.event.is_none())
        .map(|e| e.data["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=head).collect::<Vec<_>>());
    assert_eq!(replay.last().unwrap().event.as_deref(), Some("caught_up"));
    // Live: an event only Ravi's team may see still reaches the CRM.
    relay.inbound("SMf4", STRANGER, NORTH_ORG, "Live one").await;
    let live = stream
        .next(Duration::from_secs(5))
        .await
        .expect("a live event");
    assert_eq!(live.data["body"], "Live one");
}

/// What the CRM's endpoint received, and how it answers.
#[derive(Clone, Default)]
struct Crm {
    received: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<Mutex<usize>>,
    /// Never answer (a hung endpoint).
    hang: Arc<Mutex<bool>>,
}

async fn crm_endpoint(State(crm): State<Crm>, headers: HeaderMap, body: String) -> StatusCode {
    if *crm.hang.lock().unwrap() {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    crm.received.lock().unwrap().push((headers, body));
    let mut fail = crm.fail_first.lock().unwrap();
    if *fail > 0 {
        *fail -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::NO_CONTENT
}

async fn start_crm(crm: Crm) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hooks/sms", post(crm_endpoint))
        .with_state(crm);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hooks/sms")
}

fn hook(url: &str) -> CrmWebhook {
    CrmWebhook {
        url: url.to_owned(),
        secret: Some(SECRET.into()),
        timeout_ms: Some(1_000),
        max_backoff_secs: Some(1),
        ..CrmWebhook::default()
    }
}

/// The event ids delivered with a 2xx, in arrival order, once each.
fn delivered(crm: &Crm) -> Vec<i64> {
    let mut ids: Vec<i64> = Vec::new();
    for (_, body) in crm.received.lock().unwrap().iter() {
        let v: Value = serde_json::from_str(body).unwrap();
        ids.push(v["data"]["id"].as_i64().unwrap());
    }
    ids.dedup();
    ids
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..200 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting: {what}");
}

/// Verifies each request as a CRM would, with the `standardwebhooks` npm package.
fn verify_with_standardwebhooks(requests: &[(HeaderMap, String)]) -> Vec<String> {
    let cases: Vec<Value> = requests
        .iter()
        .map(|(h, body)| {
            let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default();
            json!({"body": body, "headers": {
                "webhook-id": header("webhook-id"),
                "webhook-timestamp": header("webhook-timestamp"),
                "webhook-signature": header("webhook-signature"),
            }})
        })
        .collect();
    let script = r#"
        import { Webhook } from "standardwebhooks";
        const [secret, cases] = [process.argv[1], JSON.parse(process.argv[2])];
        const wh = new Webhook(secret);
        const out = cases.map((c) => { try { return wh.verify(c.body, c.headers).type; } catch (e) { return `rejected: ${e.message}`; } });
        // A tampered body must fail.
        try { wh.verify(cases[0].body.replace("Hello", "Jello"), cases[0].headers); out.push("tampered body accepted"); } catch { out.push("tampered rejected"); }
        console.log(JSON.stringify(out));
    "#;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(
        root.join("node_modules/standardwebhooks").exists(),
        "the standardwebhooks npm package (make node-tools) is needed"
    );
    let out = std::process::Command::new("node")
        .current_dir(&root)
        .args([
            "--input-type=module",
            "-e",
            script,
            SECRET,
            &Value::Array(cases).to_string(),
        ])
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn webhooks_are_signed_for_standard_webhooks_libraries_and_come_in_order() {
    let crm = Crm::default();
    let url = start_crm(crm.clone()).await;
    let relay = Relay::start_demo(|c| c.crm_webhook = Some(hook(&url))).await;
    activity(&relay).await;
    let (_, head) = relay.head().await;
    until("every event delivered", || {
        delivered(&crm).len() as i64 == head
    })
    .await;
    assert_eq!(
        delivered(&crm),
        (1..=head).collect::<Vec<_>>(),
        "in log order"
    );
    let requests = crm.received.lock().unwrap().clone();
    let verdicts = verify_with_standardwebhooks(&requests);
    let (checked, tamper) = verdicts.split_at(verdicts.len() - 1);
    assert!(
        checked.iter().all(|v| !v.starts_with("rejected")),
        "{verdicts:?}"
    );
    assert_eq!(tamper, ["tampered rejected"]);
    let (headers, body) = &requests[0];
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        headers["webhook-id"].to_str().unwrap(),
        format!(
            "evt_{}_{}",
            v["data"]["epoch"].as_str().unwrap(),
            v["data"]["id"]
        ),
        "the event is the idempotency key"
    );
    assert_eq!(v["type"], v["data"]["kind"]);
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_across_a_restart_and_a_dead_one_blocks_nothing() {
    let crm = Crm::default();
    *crm.fail_first.lock().unwrap() = 3;
    let url = start_crm(crm.clone()).await;
    let mut relay = Relay::start_demo(|c| c.crm_webhook = Some(hook(&url))).await;
    activity(&relay).await;
    // Failing: the first event is tried again and again; nothing after it goes first.
    until("three failed attempts", || {
        crm.received.lock().unwrap().len() >= 3
    })
    .await;
    assert_eq!(delivered(&crm), [1]);

    // A dead endpoint holds up nothing else: webhooks, streams and pages go on.
    *crm.hang.lock().unwrap() = true;
    let started = std::time::Instant::now();
    assert_eq!(
        relay
            .inbound("SMf9", PRIYA, ASHA_ORG, "Still flowing")
            .await
            .status(),
        200
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    let asha = relay.events("asha").await;
    assert_eq!(asha.last().unwrap()["body"], "Still flowing");

    // Restart on the same database: delivery resumes where it stopped.
    let port = relay.running.as_ref().unwrap().addr.port();
    relay.running.take().unwrap().stop().await;
    *crm.hang.lock().unwrap() = false;
    let mut config = common::config(relay.db.clone(), port);
    config.crm_webhook = Some(hook(&url));
    relay.running = Some(sms_relay::app::start(config, false).await.unwrap());
    let (_, head) = relay.head().await;
    until("delivered after the restart", || {
        delivered(&crm).last() == Some(&head)
    })
    .await;
    assert_eq!(
        delivered(&crm),
        (1..=head).collect::<Vec<_>>(),
        "each, in order"
    );
}

#[tokio::test]
async fn the_demo_crm_inbox_receives_and_verifies_every_event() {
    let relay = Relay::start_demo(|c| {
        c.crm_webhook = Some(CrmWebhook {
            url: "/demo/crm/webhook".into(),
            ..hook("")
        })
    })
    .await;
    activity(&relay).await;
    let (_, head) = relay.head().await;
    let received = || async {
        relay
            .http
            .get(format!("{}/demo/crm/received", relay.url))
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap()
    };
    for _ in 0..100 {
        if received().await.len() as i64 == head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received().await;
    assert_eq!(got.len() as i64, head, "{got:?}");
    assert!(got.iter().all(|r| r["verified"] == true), "{got:?}");
    assert!(got.iter().any(|r| r["kind"] == "lead_created"), "{got:?}");
}

#[tokio::test]
async fn an_erasure_while_the_crm_is_down_reaches_it_redacted() {
    let crm = Crm::default();
    *crm.fail_first.lock().unwrap() = usize::MAX;
    let url = start_crm(crm.clone()).await;
    let relay = Relay::start_demo(|c| c.crm_webhook = Some(hook(&url))).await;
    activity(&relay).await;
    until("a failed attempt", || {
        !crm.received.lock().unwrap().is_empty()
    })
    .await;
    let r = relay
        .http
        .post(format!("{}/admin/customers/erase", relay.url))
        .bearer_auth(ADMIN)
        .json(&json!({ "number": STRANGER }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let before = crm.received.lock().unwrap().len();
    *crm.fail_first.lock().unwrap() = 0;
    let (_, head) = relay.head().await;
    until("every event delivered", || {
        delivered(&crm).last() == Some(&head)
    })
    .await;
    let after: Vec<String> = crm.received.lock().unwrap()[before..]
        .iter()
        .map(|(_, b)| b.clone())
        .collect();
    assert!(
        after.iter().any(|b| b.contains("\"erased\"")),
        "the erasure itself is delivered"
    );
    assert!(
        after.iter().all(|b| !b.contains("Hello North")),
        "no text of the erased number after its erasure"
    );
}
