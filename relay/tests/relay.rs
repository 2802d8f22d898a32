//! The relay over real HTTP on 127.0.0.1: webhooks, signatures, the log, SSE
//! replay and isolation, leads, moves, consent, sends, directory, push.

mod common;

use std::time::Duration;

use common::{kinds, Relay, SseClient, ADMIN};
use serde_json::{json, Value};

const ASHA_ORG: &str = "+14155550100";
const PRIYA: &str = "+919812345678";

#[tokio::test]
async fn signatures_are_checked() {
    let relay = Relay::start().await;
    let params = [
        ("MessageSid", "SM1"),
        ("From", PRIYA),
        ("To", ASHA_ORG),
        ("Body", "hi"),
    ];
    let missing = relay
        .webhook("/webhooks/twilio/inbound", &params, Some(""))
        .await;
    assert_eq!(missing.status(), 403);
    let bad = relay
        .webhook(
            "/webhooks/twilio/inbound",
            &params,
            Some("RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        )
        .await;
    assert_eq!(bad.status(), 403);
    assert_eq!(bad.json::<Value>().await.unwrap()["code"], "bad_signature");
    // A signature over other parameters (one byte changed) fails too.
    let url = format!("{}/webhooks/twilio/inbound", relay.url);
    let other: Vec<(String, String)> = [
        ("MessageSid", "SM1"),
        ("From", PRIYA),
        ("To", ASHA_ORG),
        ("Body", "hj"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sig = sms_relay::signature::sign(common::AUTH_TOKEN, &url, &other);
    assert_eq!(
        relay
            .webhook("/webhooks/twilio/inbound", &params, Some(&sig))
            .await
            .status(),
        403
    );
    assert!(kinds(&relay.events("asha").await)
        .iter()
        .all(|k| k != "inbound"));

    let ok = relay
        .webhook("/webhooks/twilio/inbound", &params, None)
        .await;
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("<Response/>"));
    assert!(kinds(&relay.events("asha").await).contains(&"inbound".to_owned()));
}

#[tokio::test]
async fn malformed_and_oversized_requests_are_rejected() {
    let relay = Relay::start().await;
    let r = relay
        .webhook(
            "/webhooks/twilio/inbound",
            &[("From", PRIYA), ("To", ASHA_ORG)],
            None,
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "malformed_webhook");
    assert!(body["message"].as_str().unwrap().contains("MessageSid"));
    let r = relay
        .webhook(
            "/webhooks/twilio/status",
            &[("MessageSid", "SM1"), ("MessageStatus", "teleported")],
            None,
        )
        .await;
    assert_eq!(r.status(), 400);
    let huge = "x".repeat(200 * 1024);
    let r = relay
        .http
        .post(format!("{}/webhooks/twilio/inbound", relay.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("Body={huge}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn a_duplicate_webhook_is_stored_once() {
    let relay = Relay::start().await;
    for _ in 0..3 {
        assert_eq!(
            relay
                .inbound("SMdup", PRIYA, ASHA_ORG, "hello")
                .await
                .status(),
            200
        );
    }
    let inbound: Vec<Value> = relay
        .events("asha")
        .await
        .into_iter()
        .filter(|e| e["kind"] == "inbound")
        .collect();
    assert_eq!(inbound.len(), 1);
    // Priya's number is on a contact and an opportunity of asha's (who owns the org
    // number) and on ravi's account: asha's records win, the contact before the opportunity.
    assert_eq!(inbound[0]["record_id"], "contact:priya");
    assert_eq!(inbound[0]["rule"], "record_type");
    // Duplicate status reports too; a late "sent" is still logged once for the browser to ignore.
    for status in ["delivered", "sent", "delivered"] {
        let r = relay.status_report("SMout", status, ASHA_ORG, PRIYA).await;
        assert_eq!(r.status(), 200);
    }
    let deliveries = relay
        .events("asha")
        .await
        .into_iter()
        .filter(|e| e["kind"] == "delivery")
        .count();
    assert_eq!(deliveries, 2);
}

#[tokio::test]
async fn an_unknown_number_creates_exactly_one_lead_even_when_webhooks_race() {
    let relay = Relay::start().await;
    let stranger = "+919811122233";
    let sends = (0..8).map(|i| {
        let relay = &relay;
        async move {
            relay
                .inbound(&format!("SMrace{i}"), stranger, ASHA_ORG, "who is this?")
                .await
                .status()
        }
    });
    for status in futures_util::future::join_all(sends).await {
        assert_eq!(status, 200);
    }
    let events = relay.events("asha").await;
    let leads: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "lead_created")
        .collect();
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0]["record"]["id"], "lead:+919811122233");
    assert_eq!(leads[0]["record"]["owner"], json!({"seller": "asha"}));
    let inbound: Vec<&Value> = events.iter().filter(|e| e["kind"] == "inbound").collect();
    assert_eq!(inbound.len(), 8);
    assert_eq!(inbound[0]["rule"], "new_lead");
    assert!(inbound[1..]
        .iter()
        .all(|e| e["record_id"] == "lead:+919811122233"));
    // The lead was logged before its message.
    let lead_pos = events
        .iter()
        .position(|e| e["kind"] == "lead_created")
        .unwrap();
    let first_in = events.iter().position(|e| e["kind"] == "inbound").unwrap();
    assert!(lead_pos < first_in);
    // A short code is kept verbatim, never dropped.
    assert_eq!(
        relay
            .inbound("SMshort", "56789", ASHA_ORG, "promo")
            .await
            .status(),
        200
    );
    let events = relay.events("asha").await;
    assert!(events
        .iter()
        .any(|e| e["kind"] == "inbound" && e["from"] == "56789" && e["record_id"] == "lead:56789"));
}

#[tokio::test]
async fn sellers_only_receive_what_they_may_see() {
    let relay = Relay::start().await;
    let mut asha = SseClient::connect(&relay.url, "asha", None).await;
    let mut zoe = SseClient::connect(&relay.url, "zoe", None).await;
    asha.drain(Duration::from_millis(300)).await;
    zoe.drain(Duration::from_millis(300)).await;
    relay.inbound("SMa", PRIYA, ASHA_ORG, "for asha").await;
    relay
        .inbound("SMz", "+14155552671", "+14155550102", "for zoe")
        .await;
    let a = asha.drain(Duration::from_millis(500)).await;
    let z = zoe.drain(Duration::from_millis(500)).await;
    let bodies = |evs: &[common::SseEvent]| -> Vec<String> {
        evs.iter()
            .filter_map(|e| e.data["body"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(bodies(&a), ["for asha"]);
    assert_eq!(bodies(&z), ["for zoe"]);
    // The same holds for replays.
    let zoe_all = relay.events("zoe").await;
    assert!(zoe_all.iter().all(|e| e["body"] != "for asha"));
    // No credentials, no stream.
    let r = relay
        .http
        .get(format!("{}/events", relay.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn restart_and_resume_lose_nothing_and_repeat_nothing() {
    let relay = Relay::start().await;
    let mut sse = SseClient::connect(&relay.url, "asha", None).await;
    for i in 0..5 {
        relay
            .inbound(&format!("SMr{i}"), PRIYA, ASHA_ORG, &format!("m{i}"))
            .await;
    }
    let first = sse.drain(Duration::from_millis(500)).await;
    let last_id = first.last().unwrap().id.clone().unwrap();
    drop(sse);
    let relay = relay.restart().await;
    for i in 5..8 {
        relay
            .inbound(&format!("SMr{i}"), PRIYA, ASHA_ORG, &format!("m{i}"))
            .await;
    }
    let mut sse = SseClient::connect(&relay.url, "asha", Some(&last_id)).await;
    relay.inbound("SMr8", PRIYA, ASHA_ORG, "m8").await;
    let rest = sse.drain(Duration::from_millis(700)).await;
    let bodies: Vec<&str> = first
        .iter()
        .chain(&rest)
        .filter_map(|e| e.data["body"].as_str())
        .collect();
    assert_eq!(
        bodies,
        ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"]
    );
    let ids: Vec<i64> = first
        .iter()
        .chain(&rest)
        .map(|e| e.data["id"].as_i64().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids strictly increase: {ids:?}"
    );
    // ?since= works like Last-Event-ID (a new EventSource cannot set the header).
    let page = relay.page("asha", &last_id).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn caught_up_comes_once_after_the_replay_and_before_live_events() {
    let relay = Relay::start().await;
    for i in 0..3 {
        relay
            .inbound(&format!("SMc{i}"), PRIYA, ASHA_ORG, &format!("c{i}"))
            .await;
    }
    // An event asha may not see moves the head past her last event.
    relay
        .inbound("SMcz", "+14155552671", "+14155550102", "for zoe")
        .await;
    let health: Value = relay
        .http
        .get(format!("{}/healthz", relay.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let epoch = health["epoch"].as_str().unwrap().to_owned();
    let head = format!("{epoch}:{}", health["head"]);

    let mut sse = SseClient::connect(&relay.url, "asha", None).await;
    let replay = sse.drain_any(Duration::from_millis(500)).await;
    relay.inbound("SMc3", PRIYA, ASHA_ORG, "live").await;
    let live = sse.drain_any(Duration::from_millis(500)).await;
    let seen: Vec<String> = replay
        .iter()
        .chain(&live)
        .map(|e| match e.event.as_deref() {
            Some(t) => t.to_owned(),
            None => e.data["body"].as_str().unwrap_or("-").to_owned(),
        })
        .collect();
    let replayed = kinds(&relay.events("asha").await).len() - 1;
    let mut want: Vec<String> = vec!["-".into(); replayed - 3];
    want.extend(["c0", "c1", "c2", "caught_up", "live"].map(String::from));
    assert_eq!(seen, want);
    let notice = replay.last().unwrap();
    assert_eq!(
        notice.data,
        json!({ "kind": "caught_up", "epoch": epoch, "head": head })
    );
    assert_eq!(notice.id, None, "a notice never moves Last-Event-ID");

    // Nothing to replay: the notice comes first, and once.
    let last_id = replay[replay.len() - 2].id.clone().unwrap();
    let mut resumed =
        SseClient::connect(&relay.url, "asha", Some(&live[0].id.clone().unwrap())).await;
    let events = resumed.drain_any(Duration::from_millis(500)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event.as_deref(), Some("caught_up"));

    // An `onmessage` consumer never sees it.
    let mut plain = SseClient::connect(&relay.url, "asha", Some(&last_id)).await;
    let events = plain.drain(Duration::from_millis(500)).await;
    assert_eq!(
        kinds(&events.iter().map(|e| e.data.clone()).collect::<Vec<_>>()),
        ["inbound"]
    );
}

#[tokio::test]
async fn a_reset_log_announces_a_new_epoch() {
    let relay = Relay::start().await;
    relay.inbound("SMe1", PRIYA, ASHA_ORG, "before").await;
    let before = relay.page("asha", "0").await;
    let old_next = before["next"].as_str().unwrap().to_owned();
    let old_epoch = before["epoch"].as_str().unwrap().to_owned();
    let r = relay.reset_log().await;
    assert_eq!(r.status(), 200);
    let new_epoch = r.json::<Value>().await.unwrap()["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_epoch, old_epoch);
    relay.inbound("SMe2", PRIYA, ASHA_ORG, "after").await;
    let mut sse = SseClient::connect(&relay.url, "asha", Some(&old_next)).await;
    let events = sse.drain(Duration::from_millis(500)).await;
    assert_eq!(events[0].data["kind"], "reset");
    assert_eq!(events[0].data["epoch"], new_epoch.as_str());
    let bodies: Vec<&str> = events
        .iter()
        .filter_map(|e| e.data["body"].as_str())
        .collect();
    assert_eq!(bodies, ["after"]);
    assert!(events[1..]
        .iter()
        .all(|e| e.id.as_deref().unwrap().starts_with(&new_epoch)));
    // Without the admin token, no reset.
    let r = relay
        .http
        .post(format!("{}/admin/reset", relay.url))
        .bearer_auth("asha-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_move_changes_where_the_next_reply_goes_and_who_gets_it() {
    let relay = Relay::start().await;
    // Rahul's number is on two north-team leads; ravi owns the inactive one.
    let rahul = "+919988776655";
    let north_org = "+14155550101";
    relay.inbound("SMm1", rahul, north_org, "hello").await;
    let first: Vec<Value> = relay
        .events("ravi")
        .await
        .into_iter()
        .filter(|e| e["kind"] == "inbound")
        .collect();
    assert_eq!(first[0]["record_id"], "lead:rahul");
    // Asha moves the conversation to Anita's contact (team south): a cross-type move.
    let r = relay
        .post_json(
            "/conversations/move",
            "asha",
            json!({"org_number": north_org, "customer_number": rahul, "from_record": "lead:rahul", "to_record": "contact:anita"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    relay
        .inbound("SMm2", rahul, north_org, "are you there?")
        .await;
    let zoe: Vec<Value> = relay.events("zoe").await;
    let moved = zoe
        .iter()
        .find(|e| e["kind"] == "conversation_moved")
        .expect("zoe sees the move onto her team's record");
    assert_eq!(moved["by"], "asha");
    let reply = zoe
        .iter()
        .find(|e| e["kind"] == "inbound" && e["body"] == "are you there?")
        .expect("zoe gets the reply");
    assert_eq!(reply["record_id"], "contact:anita");
    assert_eq!(reply["rule"], "recent_conversation");
    assert!(
        zoe.iter().all(|e| e["body"] != "hello"),
        "the first message was on a north record"
    );
    // Moving a conversation that is not there any more is refused.
    let r = relay
        .post_json(
            "/conversations/move",
            "asha",
            json!({"org_number": north_org, "customer_number": rahul, "from_record": "lead:rahul", "to_record": "contact:priya"}),
        )
        .await;
    assert_eq!(r.status(), 409);
}

#[tokio::test]
async fn sends_are_validated_idempotent_and_reported() {
    let relay = Relay::start().await;
    let send = |client_ref: &str, to: &str, body: &str| {
        relay.post_json(
            "/messages",
            "asha",
            json!({"from": ASHA_ORG, "to": to, "body": body, "client_ref": client_ref, "record_id": "contact:priya"}),
        )
    };
    let r = send("c1", "098123 45678", "Hi Priya").await;
    assert_eq!(r.status(), 201);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["outcome"], "accepted");
    let sid = first["message_sid"].as_str().unwrap().to_owned();
    // The same client_ref again: the same answer, nothing resent.
    let again: Value = send("c1", "098123 45678", "Hi Priya")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["message_sid"], sid.as_str());
    assert_eq!(again["duplicate"], true);
    let phone: Vec<Value> = relay
        .http
        .get(format!(
            "{}/demo/phone/messages?number=%2B919812345678",
            relay.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(phone.len(), 1);
    assert_eq!(phone[0]["body"], "Hi Priya");
    assert_eq!(phone[0]["from"], ASHA_ORG);
    // Delivery reports come back signed from the simulated provider.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let statuses: Vec<String> = relay
        .events("asha")
        .await
        .into_iter()
        .filter(|e| e["kind"] == "delivery" && e["message_sid"] == sid.as_str())
        .map(|e| e["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["sent", "delivered"]);
    // Invalid destination: refused before the provider, with the reason and a fix.
    let r = send("c2", "12345", "x").await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["reason"], "InvalidSendingParameters");
    // Too long.
    let r = send("c3", PRIYA, &"a".repeat(1601)).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "BodyTooLong");
    // Not her number.
    let r = relay
        .post_json("/messages", "asha", json!({"from": "+14155550102", "to": PRIYA, "body": "x", "client_ref": "c4", "record_id": "contact:priya"}))
        .await;
    assert_eq!(r.status(), 403);
    // STOP opts out; sends are refused with 21610 until START.
    relay.inbound("SMstop", PRIYA, ASHA_ORG, " Stop ").await;
    let r = send("c5", PRIYA, "still there?").await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_code"], 21610);
    assert!(relay
        .events("asha")
        .await
        .iter()
        .any(|e| e["kind"] == "consent_changed" && e["consent"] == "opted_out"));
    relay.inbound("SMstart", PRIYA, ASHA_ORG, "START").await;
    assert_eq!(send("c5", PRIYA, "welcome back").await.status(), 201);
    // Other devices of the seller see the outbound message.
    assert!(relay
        .events("asha")
        .await
        .iter()
        .any(|e| e["kind"] == "outbound" && e["body"] == "welcome back"));
}

#[tokio::test]
async fn the_directory_is_served_and_patched() {
    let relay = Relay::start().await;
    let r = relay
        .http
        .get(format!("{}/directory", relay.url))
        .bearer_auth("asha-token")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-security-policy"],
        sms_relay::app::CSP,
        "every response carries the strict policy"
    );
    let d: Value = r.json().await.unwrap();
    assert!(d["directory"]["records"].as_array().unwrap().len() >= 8);
    let patch = json!({
        "upsert": {"records": [{"id": "contact:new", "kind": "contact", "owner": {"seller": "asha"}, "phones": ["+91 90000 22222"]}]},
        "delete": {"records": ["contact:priya"]}
    });
    let r = relay.patch_directory(ADMIN, &patch).await;
    assert_eq!(r.status(), 200);
    let r = relay.patch_directory("asha-token", &patch).await;
    assert_eq!(r.status(), 401);
    // Routing follows: Priya's number now lands on the account (rule: record type vs opportunity).
    relay.inbound("SMd1", PRIYA, ASHA_ORG, "hi").await;
    let events = relay.events("asha").await;
    assert!(events.iter().any(|e| e["kind"] == "directory_changed"));
    let inbound = events.iter().find(|e| e["kind"] == "inbound").unwrap();
    assert_eq!(inbound["record_id"], "opportunity:sharma-q3");
    assert_eq!(inbound["rule"], "addressed_seller");
}

#[tokio::test]
async fn cookie_sessions_and_cross_site_posts() {
    let relay = Relay::start().await;
    let r = relay
        .http
        .post(format!("{}/session", relay.url))
        .json(&json!({"token": "asha-token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let session = cookie.split(';').next().unwrap().to_owned();
    let me: Value = relay
        .http
        .get(format!("{}/me", relay.url))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["seller"], "asha");
    assert_eq!(me["org_numbers"], json!(["+14155550100", "+14155550101"]));
    let body = json!({"from": ASHA_ORG, "to": PRIYA, "body": "x", "client_ref": "csrf", "record_id": "contact:priya"});
    let r = relay
        .http
        .post(format!("{}/messages", relay.url))
        .header("Cookie", &session)
        .header("Origin", "https://evil.example")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = relay
        .http
        .post(format!("{}/messages", relay.url))
        .header("Cookie", &session)
        .header("Origin", relay.url.as_str())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = relay
        .http
        .post(format!("{}/session", relay.url))
        .json(&json!({"token": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
