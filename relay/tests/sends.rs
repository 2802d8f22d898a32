//! Sends that never hang or double (X3): the provider is called by the relay's
//! worker, not the request; a retry gets the outcome or `pending`; a restart sends
//! `queued` rows and reconciles `calling` ones, never resending them.

mod common;

use std::time::Duration;

use common::{twilio, Relay};
use serde_json::{json, Value};
use sms_relay::app::start;
use sms_relay::config::Config;
use sms_relay::provider::TwilioConfig;
use sms_relay::store::PendingSend;

const ASHA_ORG: &str = "+14155550100";
const PRIYA: &str = "+919812345678";

fn request(client_ref: &str, body: &str) -> Value {
    json!({"from": ASHA_ORG, "to": PRIYA, "body": body, "client_ref": client_ref,
           "record_id": "contact:priya"})
}

async fn phone(relay: &Relay) -> Vec<Value> {
    relay.phone_messages(PRIYA).await
}

async fn outbound(relay: &Relay, client_ref: &str) -> Vec<Value> {
    relay
        .events("asha")
        .await
        .into_iter()
        .filter(|e| e["kind"] == "outbound" && e["client_ref"] == client_ref)
        .collect()
}

/// Polls (bounded) until `f` holds.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn a_client_that_disconnects_during_a_slow_call_gets_the_outcome_on_retry() {
    let relay = Relay::start_demo(|c| c.limits.send_wait_ms = 30_000).await;
    let r = relay.fault(json!({"send_delay_ms": 1500})).await;
    assert_eq!(r.status(), 204);
    // The client gives up (and drops its connection) while the provider is slow.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(format!("{}/messages", relay.url))
        .bearer_auth("asha-token")
        .json(&request("slow-1", "Are you free today?"))
        .send()
        .await;
    assert!(
        gave_up.is_err(),
        "the first attempt timed out on the client"
    );
    // The retry is neither refused (409) nor sent again: it gets the outcome.
    let r = relay
        .post_json(
            "/messages",
            "asha",
            request("slow-1", "Are you free today?"),
        )
        .await;
    assert_eq!(r.status(), 201);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["outcome"], "accepted");
    assert_eq!(answer["duplicate"], true);
    let sid = answer["message_sid"].as_str().unwrap().to_owned();
    let received = phone(&relay).await;
    assert_eq!(received.len(), 1, "sent once: {received:?}");
    assert_eq!(received[0]["sid"], sid.as_str());
    let logged = outbound(&relay, "slow-1").await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["message_sid"], sid.as_str());
}

#[tokio::test]
async fn a_send_slower_than_the_wait_is_pending_then_answered() {
    let relay = Relay::start_demo(|c| c.limits.send_wait_ms = 0).await;
    relay.fault(json!({"send_delay_ms": 500})).await;
    let r = relay
        .post_json("/messages", "asha", request("p-1", "Pending for a while"))
        .await;
    assert_eq!(r.status(), 202);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["outcome"], "pending");
    assert_eq!(answer["client_ref"], "p-1");
    assert!(answer.get("provider_error").is_none());
    // The browser asks again with the same reference until it has the outcome.
    let mut last = Value::Null;
    for _ in 0..100 {
        let r = relay
            .post_json("/messages", "asha", request("p-1", "Pending for a while"))
            .await;
        assert!(matches!(r.status().as_u16(), 201 | 202), "{}", r.status());
        last = r.json().await.unwrap();
        if last["outcome"] == "accepted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["outcome"], "accepted");
    assert_eq!(last["duplicate"], true);
    assert_eq!(phone(&relay).await.len(), 1, "sent once");
}

fn pending(client_ref: &str, body: &str, at_ms: i64) -> PendingSend {
    PendingSend {
        client_ref: client_ref.into(),
        seller: "asha".into(),
        from: ASHA_ORG.into(),
        to: PRIYA.into(),
        body: body.into(),
        record_id: "contact:priya".into(),
        at: sms_core::Timestamp::from_millis(at_ms),
    }
}

/// A demo relay (static seller tokens) whose provider is the local fake Twilio.
fn config_for(fake: &twilio::FakeTwilio, db: std::path::PathBuf) -> Config {
    let mut c = common::config(db, 0);
    c.provider = Some(TwilioConfig {
        account_sid: "ACtest".into(),
        auth_token: common::AUTH_TOKEN.into(),
        base_url: fake.url.clone(),
        ..TwilioConfig::default()
    });
    c
}

#[tokio::test]
async fn a_restart_sends_queued_rows_once_and_reconciles_calling_ones_never_resending() {
    let fake = twilio::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = common::database(dir.path()).await;
    // A first run makes the database (directory seeded), then stops.
    start(config_for(&fake, db.clone()), false)
        .await
        .unwrap()
        .stop()
        .await;
    // What a crash left: one send accepted but not handed over, two whose provider
    // call had started — the provider has one of them.
    let now = sms_relay::sequencer::now().as_millis();
    let queued = pending("q-1", "Queued before the crash", now - 60_000);
    let found = pending("c-1", "With the provider", now - 50_000);
    let lost = pending("c-2", "Maybe with the provider", now - 40_000);
    // A writer is driven from a thread of its own (as the sequencer's).
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut w = common::open_writer(&db);
            w.begin(&[]).unwrap();
            for p in [&queued, &found, &lost] {
                w.add_pending(p).unwrap();
            }
            w.mark_calling("asha", "c-1").unwrap();
            w.mark_calling("asha", "c-2").unwrap();
            w.commit().unwrap();
        });
    });
    fake.listed.lock().unwrap().extend([
        json!({"sid": "SMother", "from": ASHA_ORG, "to": PRIYA, "body": "Something else",
               "status": "delivered", "error_code": null}),
        json!({"sid": "SMfound", "from": ASHA_ORG, "to": PRIYA, "body": "With the provider",
               "status": "delivered", "error_code": null}),
    ]);

    let running = start(config_for(&fake, db.clone()), false).await.unwrap();
    let relay = Relay {
        url: format!("http://{}", running.addr),
        running: Some(running),
        db: db.clone(),
        dir,
        http: reqwest::Client::new(),
    };
    eventually("three outcomes logged", || async {
        relay
            .events("asha")
            .await
            .iter()
            .filter(|e| e["kind"] == "outbound")
            .count()
            == 3
    })
    .await;
    let q = &outbound(&relay, "q-1").await[0];
    assert_eq!(q["outcome"], "accepted");
    let c1 = &outbound(&relay, "c-1").await[0];
    assert_eq!(
        (&c1["outcome"], &c1["message_sid"]),
        (&json!("accepted"), &json!("SMfound"))
    );
    let c2 = &outbound(&relay, "c-2").await[0];
    assert_eq!(c2["outcome"], "unknown");
    assert!(c2["message_sid"].is_null());

    let creates = fake.creates();
    assert_eq!(
        creates.len(),
        1,
        "only the queued send is sent: {creates:?}"
    );
    assert_eq!(
        creates[0].form_value("Body"),
        Some("Queued before the crash")
    );
    assert!(q["message_sid"].as_str().unwrap().starts_with("SMfake"));
    // The calling sends were looked up by numbers and window.
    let lists = fake.lists();
    assert_eq!(lists.len(), 2);
    for l in &lists {
        let names: Vec<&str> = l.query.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            names.contains(&"To") && names.contains(&"From") && names.contains(&"DateSent>"),
            "{names:?}"
        );
    }
    // A retry of a reconciled send gets its outcome; another start sends nothing.
    let r = relay
        .post_json("/messages", "asha", request("c-1", "With the provider"))
        .await;
    assert_eq!(r.status(), 201);
    let again: Value = r.json().await.unwrap();
    assert_eq!(
        (again["message_sid"].as_str(), again["duplicate"].as_bool()),
        (Some("SMfound"), Some(true))
    );
    let Relay { running, dir, .. } = relay;
    running.unwrap().stop().await;
    let running = start(config_for(&fake, db.clone()), false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fake.creates().len(),
        1,
        "nothing resent after another restart"
    );
    running.stop().await;
    drop(dir);
}

#[tokio::test]
async fn a_send_with_the_provider_during_a_log_reset_is_not_sent_again() {
    let relay = Relay::start_demo(|c| c.limits.send_wait_ms = 0).await;
    relay.fault(json!({"send_delay_ms": 1500})).await;
    let r = relay
        .post_json("/messages", "asha", request("reset-1", "Across a reset"))
        .await;
    assert_eq!(r.status(), 202, "pending while the provider is slow");
    // The administrator starts a new epoch while the provider has the send.
    let r = relay
        .http
        .post(format!("{}/admin/reset", relay.url))
        .bearer_auth(common::ADMIN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // A retry is still that send (pending, then its outcome), never a second SMS.
    let retry = relay
        .post_json("/messages", "asha", request("reset-1", "Across a reset"))
        .await;
    let answer: Value = retry.json().await.unwrap();
    assert_eq!(answer["outcome"], "pending", "{answer}");
    eventually("the outcome is logged in the new epoch", || async {
        outbound(&relay, "reset-1").await.len() == 1
    })
    .await;
    let received = phone(&relay).await;
    assert_eq!(received.len(), 1, "sent once: {received:?}");
}
