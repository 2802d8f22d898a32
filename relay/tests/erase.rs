//! Erasing and exporting a customer number (F6), on either backend: the export
//! holds everything stored about the number; after `POST /admin/customers/erase`
//! no body or media of it is left in the admin feed, a seller's events, the
//! history, a snapshot, the export, the directory or the database's tables — after
//! a restart from the checkpoint too — and the `erased` event reached exactly the
//! sellers who had seen the number's events. Another customer's messages stay.

mod common;

use std::collections::BTreeSet;

use common::{execute_sql, query_strings, Relay, ADMIN};
use serde_json::{json, Value};

const ASHA_ORG: &str = "+14155550100";
const NORTH_ORG: &str = "+14155550101";
const PRIYA: &str = "+919812345678";
/// Not in the directory: its first text makes a lead.
const STRANGER: &str = "+919876500001";
const SELLERS: [&str; 4] = ["asha", "ravi", "meera", "zoe"];
/// Every body and media URL of the stranger carries this; nothing else does.
const MARK: &str = "SECRET-";

async fn erase(relay: &Relay, token: &str, number: &str) -> (u16, Value) {
    let r = relay
        .http
        .post(format!("{}/admin/customers/erase", relay.url))
        .bearer_auth(token)
        .json(&json!({ "number": number }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn export(relay: &Relay, token: &str, number: &str) -> (u16, Value) {
    let r = relay
        .http
        .get(format!("{}/admin/customers/export", relay.url))
        .query(&[("number", number)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The admin feed, whole.
async fn feed(relay: &Relay) -> Vec<Value> {
    let r = relay
        .http
        .get(format!("{}/admin/events?since=0&limit=1000", relay.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["more"], false);
    page["events"].as_array().unwrap().clone()
}

/// `GET /snapshot` as `seller`: its NDJSON lines, parsed.
async fn snapshot(relay: &Relay, seller: &str) -> Vec<Value> {
    let r = relay
        .http
        .get(format!("{}/snapshot", relay.url))
        .bearer_auth(format!("{seller}-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Whether an event names the stranger as its customer.
fn names_stranger(e: &Value) -> bool {
    e["from"] == STRANGER
        || e["to"] == STRANGER
        || e["customer_number"] == STRANGER
        || e["record"]["phones"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == STRANGER))
}

/// Priya texts Asha; the stranger texts the north team's number (a lead), Asha
/// replies (delivered), the stranger sends an MMS, then STOP to Asha's number; a
/// send to the stranger waits, queued. Returns the lead's id.
async fn activity(relay: &Relay) -> String {
    assert_eq!(
        relay
            .inbound("SMe1", PRIYA, ASHA_ORG, "Priya keeps this")
            .await
            .status(),
        200
    );
    assert_eq!(
        relay
            .inbound("SMe2", STRANGER, NORTH_ORG, "SECRET-hello")
            .await
            .status(),
        200
    );
    let lead = relay
        .events("asha")
        .await
        .into_iter()
        .find(|e| e["kind"] == "lead_created")
        .expect("a lead for the stranger");
    let lead = lead["record"]["id"].as_str().unwrap().to_owned();
    let r = relay
        .post_json(
            "/messages",
            "asha",
            json!({"from": NORTH_ORG, "to": STRANGER, "body": "SECRET-reply",
                   "client_ref": "erase-1", "record_id": lead}),
        )
        .await;
    assert!(r.status().is_success(), "send: {}", r.status());
    let sent: Value = r.json().await.unwrap();
    let sid = sent["message_sid"].as_str().expect("a provider id");
    assert_eq!(
        relay
            .status_report(sid, "delivered", NORTH_ORG, STRANGER)
            .await
            .status(),
        200
    );
    let r = relay
        .webhook(
            "/webhooks/twilio/inbound",
            &[
                ("MessageSid", "SMe3"),
                ("AccountSid", "ACdemo"),
                ("From", STRANGER),
                ("To", NORTH_ORG),
                ("Body", "SECRET-picture"),
                ("NumMedia", "1"),
                ("MediaUrl0", "https://media.example/SECRET-photo.jpg"),
                ("MediaContentType0", "image/jpeg"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        relay
            .inbound("SMe4", STRANGER, ASHA_ORG, "STOP")
            .await
            .status(),
        200
    );
    // A send queued (not yet with the provider), as a crash would leave it; another
    // node's row, with a long lease (no node takes it over meanwhile).
    execute_sql(
        &relay.db,
        &format!(
            "INSERT INTO sends (seller, client_ref, from_number, to_number, body, record_id, stage, at_ms)
             VALUES ('ravi', 'erase-queued', '{NORTH_ORG}', '{STRANGER}', 'SECRET-queued', '{lead}', 'queued', 1)"
        ),
        &format!(
            "INSERT INTO sends (seller, client_ref, from_number, to_number, body, record_id, stage, at_ms,
               owner, lease_until_ms)
             VALUES ('ravi', 'erase-queued', '{NORTH_ORG}', '{STRANGER}', 'SECRET-queued', '{lead}', 'queued', 1,
               'elsewhere', 9000000000000000)"
        ),
    )
    .await;
    lead
}

/// No body or media URL of the stranger anywhere the relay answers or stores.
async fn nothing_left(relay: &Relay, lead: &str) {
    let feed = feed(relay).await;
    assert!(!json!(feed).to_string().contains(MARK), "feed: {feed:?}");
    // Their inbound and outbound events are there, emptied.
    let redacted: Vec<&Value> = feed
        .iter()
        .filter(|e| (e["kind"] == "inbound" || e["kind"] == "outbound") && names_stranger(e))
        .collect();
    assert_eq!(redacted.len(), 4, "{redacted:?}");
    for e in redacted {
        assert_eq!(e["body"], "", "{e}");
        assert!(
            e["media"].is_null() || e["media"] == json!([]),
            "no media: {e}"
        );
    }
    for seller in SELLERS {
        let events = relay.events(seller).await;
        assert!(
            !json!(events).to_string().contains(MARK),
            "{seller}: {events:?}"
        );
        let lines = snapshot(relay, seller).await;
        let text = json!(lines).to_string();
        assert!(!text.contains(MARK), "{seller}'s snapshot: {text}");
        assert!(!text.contains(STRANGER), "{seller}'s snapshot: {text}");
        let (status, d) = relay.get_as("/directory", seller).await;
        assert_eq!(status, 200);
        assert!(!d.to_string().contains(lead), "{seller}'s directory: {d}");
    }
    let (status, x) = export(relay, ADMIN, STRANGER).await;
    assert_eq!(status, 200, "{x}");
    assert!(!x.to_string().contains(MARK), "export: {x}");
    assert_eq!(x["conversations"], json!([]));
    assert_eq!(x["records"], json!([]));
    assert_eq!(x["sends"], json!([]));
    assert!(
        x["consent"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["consent"] == "opted_in"),
        "{x}"
    );
    for (table, sql) in [
        ("events", "SELECT body FROM events"),
        ("history_messages", "SELECT message FROM history_messages"),
        ("checkpoints", "SELECT state FROM checkpoints"),
        ("sends", "SELECT body FROM sends"),
    ] {
        let rows = query_strings(&relay.db, sql).await;
        assert!(rows.iter().all(|r| !r.contains(MARK)), "{table}: {rows:?}");
    }
    // The checkpoints hold neither its conversations nor its lead.
    let states = query_strings(&relay.db, "SELECT state FROM checkpoints").await;
    assert!(!states.is_empty());
    assert!(states.iter().all(|s| !s.contains(STRANGER)), "{states:?}");
    // Priya's messages stay.
    let asha = relay.events("asha").await;
    assert!(
        asha.iter().any(|e| e["body"] == "Priya keeps this"),
        "{asha:?}"
    );
    let (_, x) = export(relay, ADMIN, PRIYA).await;
    assert!(x.to_string().contains("Priya keeps this"), "{x}");
}

#[tokio::test]
async fn erasing_a_number_leaves_no_body_of_it_anywhere_and_reaches_who_saw_it() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let relay = Relay::start().await;
    let lead = activity(&relay).await;

    // Before: the export holds it all.
    let (status, before) = export(&relay, ADMIN, STRANGER).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["number"], STRANGER);
    let text = before.to_string();
    for body in [
        "SECRET-hello",
        "SECRET-reply",
        "SECRET-picture",
        "SECRET-photo.jpg",
    ] {
        assert!(text.contains(body), "{body} in {before}");
    }
    let conversations = before["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 2, "{before}");
    let messages: Vec<&Value> = conversations
        .iter()
        .flat_map(|c| c["messages"].as_array().unwrap())
        .collect();
    assert_eq!(messages.len(), 4, "{messages:?}");
    let reply = messages
        .iter()
        .find(|m| m["body"] == "SECRET-reply")
        .unwrap();
    assert_eq!(reply["delivery"]["status"], "delivered", "{reply}");
    assert_eq!(before["records"][0]["id"], lead.as_str());
    assert!(
        before["consent"]
            .as_array()
            .unwrap()
            .contains(&json!({"org_number": ASHA_ORG, "consent": "opted_out"})),
        "{before}"
    );
    assert_eq!(before["sends"][0]["body"], "SECRET-queued", "{before}");
    assert_eq!(before["sends"][0]["stage"], "queued", "{before}");
    let kinds: BTreeSet<&str> = before["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "lead_created",
        "inbound",
        "outbound",
        "delivery",
        "consent_changed",
    ] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
    assert!(
        before["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(names_stranger),
        "only its events"
    );

    // Who had seen its events.
    let mut saw = BTreeSet::new();
    for seller in SELLERS {
        if relay.events(seller).await.iter().any(names_stranger) {
            saw.insert(seller);
        }
    }
    assert_eq!(saw, BTreeSet::from(["asha", "ravi"]));

    // Admins only; an E.164 number only.
    assert_eq!(erase(&relay, "asha-token", STRANGER).await.0, 401);
    assert_eq!(export(&relay, "asha-token", STRANGER).await.0, 401);
    let (status, body) = erase(&relay, ADMIN, "not a number").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_number"))
    );
    let (status, body) = export(&relay, ADMIN, "not a number").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_number"))
    );

    let (status, done) = erase(&relay, ADMIN, STRANGER).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["conversations"], 2, "{done}");
    assert_eq!(done["leads"], json!([lead]), "{done}");
    // Two inbound texts, the MMS and STOP; the reply.
    assert_eq!(done["events_redacted"], 4, "{done}");
    assert_eq!(done["sends_deleted"], 1, "{done}");
    let erased_id = done["event_id"].as_i64().unwrap();

    // The erased event reached exactly who had seen the number.
    let mut told = BTreeSet::new();
    for seller in SELLERS {
        let events = relay.events(seller).await;
        if let Some(e) = events.iter().find(|e| e["kind"] == "erased") {
            assert_eq!(e["id"], erased_id);
            assert_eq!(e["customer_number"], STRANGER);
            assert_eq!(e["leads"], json!([lead]));
            told.insert(seller);
        }
    }
    assert_eq!(told, saw);

    nothing_left(&relay, &lead).await;

    // Again: nothing more to redact; another erased event is logged.
    let (status, again) = erase(&relay, ADMIN, STRANGER).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (
            &again["conversations"],
            &again["leads"],
            &again["events_redacted"],
            &again["sends_deleted"]
        ),
        (&json!(0), &json!([]), &json!(0), &json!(0))
    );
    assert!(again["event_id"].as_i64().unwrap() > erased_id);

    // A restart (from the erasure's checkpoint) keeps it erased.
    let relay = relay.restart().await;
    nothing_left(&relay, &lead).await;
    // A new text from the number starts afresh: a new lead, a new conversation.
    assert_eq!(
        relay
            .inbound("SMe5", STRANGER, NORTH_ORG, "Back again")
            .await
            .status(),
        200
    );
    let (_, x) = export(&relay, ADMIN, STRANGER).await;
    assert_eq!(x["conversations"].as_array().unwrap().len(), 1, "{x}");
    assert_eq!(x["records"][0]["id"], lead.as_str(), "its lead again: {x}");
    let (_, d) = relay.get_as("/directory", "ravi").await;
    assert!(d.to_string().contains(&lead), "{d}");
    assert_eq!(
        x["conversations"][0]["messages"].as_array().unwrap().len(),
        1
    );
}

/// A node of a shared PostgreSQL database on `db` (in this process).
async fn node(db: &std::path::Path) -> Relay {
    let running = sms_relay::app::start(common::config(db.to_path_buf(), 0), false)
        .await
        .expect("node starts");
    Relay {
        url: format!("http://{}", running.addr),
        running: Some(running),
        db: db.to_path_buf(),
        dir: tempfile::tempdir().unwrap(),
        http: reqwest::Client::new(),
    }
}

/// Several nodes on PostgreSQL (X9): an erasure on one node is the other's too — its
/// state forgets the lead and conversations, its snapshot holds nothing of the
/// number, and the number's next text through it makes the lead again. (Nothing to
/// do on SQLite: a file is one node's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erasure_on_one_node_is_the_other_nodes_too() {
    if common::postgres_url().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = common::database(dir.path()).await;
    let a = node(&db).await;
    let b = node(&db).await;
    assert_eq!(
        a.inbound("SMn1", STRANGER, NORTH_ORG, "SECRET-on-a")
            .await
            .status(),
        200
    );
    let (_, d) = a.get_as("/directory", "ravi").await;
    assert!(d.to_string().contains(STRANGER), "the lead on a: {d}");
    let (status, done) = erase(&b, ADMIN, STRANGER).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["events_redacted"], 1, "{done}");
    assert_eq!(done["leads"].as_array().unwrap().len(), 1, "{done}");
    for relay in [&a, &b] {
        let (_, d) = relay.get_as("/directory", "ravi").await;
        assert!(!d.to_string().contains(STRANGER), "{d}");
        let text = json!(snapshot(relay, "ravi").await).to_string();
        assert!(!text.contains(STRANGER) && !text.contains(MARK), "{text}");
        let events = relay.events("ravi").await;
        assert!(!json!(events).to_string().contains(MARK), "{events:?}");
        assert!(events.iter().any(|e| e["kind"] == "erased"));
    }
    assert_eq!(
        a.inbound("SMn2", STRANGER, NORTH_ORG, "Back on a")
            .await
            .status(),
        200
    );
    for relay in [&a, &b] {
        let (_, d) = relay.get_as("/directory", "ravi").await;
        assert!(d.to_string().contains(STRANGER), "the lead again: {d}");
    }
}

/// The `erased` event reaches a seller who saw the number's conversation only
/// through its lead's owner (the lead it removes).
#[tokio::test]
async fn the_erased_event_reaches_who_saw_it_through_the_lead() {
    let relay = Relay::start().await;
    assert_eq!(
        relay
            .inbound("SMl1", STRANGER, NORTH_ORG, "SECRET-lead")
            .await
            .status(),
        200
    );
    let lead = format!("lead:{STRANGER}");
    let r = relay
        .patch_directory(
            ADMIN,
            &json!({"upsert": {"records": [{"id": lead, "kind": "lead",
                "owner": {"seller": "zoe"}, "name": STRANGER, "phones": [STRANGER]}]}}),
        )
        .await;
    assert!(r.status().is_success(), "patch: {}", r.status());
    assert_eq!(
        relay
            .inbound("SMl2", STRANGER, NORTH_ORG, "SECRET-zoe-sees")
            .await
            .status(),
        200
    );
    assert!(
        relay.events("zoe").await.iter().any(names_stranger),
        "zoe sees it through the lead"
    );
    let (status, done) = erase(&relay, ADMIN, STRANGER).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["leads"], json!([lead]), "{done}");
    for seller in ["asha", "ravi", "zoe"] {
        let events = relay.events(seller).await;
        assert!(
            events.iter().any(|e| e["kind"] == "erased"),
            "{seller}: {events:?}"
        );
        assert!(!json!(events).to_string().contains(MARK), "{seller}");
    }
    let meera = relay.events("meera").await;
    assert!(!meera.iter().any(|e| e["kind"] == "erased"), "{meera:?}");
}
