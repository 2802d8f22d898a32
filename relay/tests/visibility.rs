//! X5 over HTTP: each seller receives their part of the directory (on `GET /directory`
//! and in directory events), visibility is checked before existence, client references
//! are per seller, and the route preview names a record only to those who may see it.

mod common;

use common::{Relay, ADMIN};
use serde_json::{json, Value};

const ASHA_ORG: &str = "+14155550100";
const NORTH_ORG: &str = "+14155550101";
const PRIYA: &str = "+919812345678";

async fn get(relay: &Relay, path: &str, seller: &str) -> (u16, Value) {
    relay.get_as(path, seller).await
}

fn record<'a>(directory: &'a Value, id: &str) -> &'a Value {
    directory["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} missing"))
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[field].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_seller_receives_only_their_part_of_the_directory() {
    let relay = Relay::start().await;
    let (_, body) = get(&relay, "/directory", "zoe").await;
    let d = &body["directory"];
    // Asha's contact: by name only, for lookup and moves.
    let priya = record(d, "contact:priya");
    assert_eq!(priya["name"], "Priya Sharma");
    assert!(priya.get("owner").is_none(), "{priya}");
    assert_eq!(priya["phones"], json!([]));
    // Her own and her team's records in full.
    assert_eq!(record(d, "contact:john")["owner"], json!({"seller": "zoe"}));
    assert_eq!(record(d, "account:acme")["owner"], json!({"team": "south"}));
    assert_eq!(
        ids(&d["org_numbers"], "number"),
        ["+14155550102", "+919800000001"]
    );
    assert_eq!(ids(&d["teams"], "id"), ["south"]);
    assert_eq!(ids(&d["sellers"], "id"), ["meera", "zoe"]);

    // A directory change reaches each seller through the same lens.
    let patch = json!({"upsert": {"records": [{"id": "contact:priya", "kind": "contact",
        "name": "Priya S.", "owner": {"seller": "asha"}, "phones": [PRIYA]}]}});
    let r = relay.patch_directory(ADMIN, &patch).await;
    assert_eq!(r.status(), 200);
    let changed = |events: Vec<Value>| {
        events
            .into_iter()
            .rfind(|e| e["kind"] == "directory_changed")
            .unwrap()
    };
    let zoe = changed(relay.events("zoe").await);
    let row = &zoe["patch"]["upsert"]["records"][0];
    assert_eq!(
        (row["name"].as_str(), row.get("owner")),
        (Some("Priya S."), None)
    );
    assert_eq!(row["phones"], json!([]));
    let asha = changed(relay.events("asha").await);
    assert_eq!(
        asha["patch"]["upsert"]["records"][0]["phones"],
        json!([PRIYA])
    );
    // The replayed directory snapshot is narrowed the same way.
    let zoe_all = relay.events("zoe").await;
    let replaced = zoe_all
        .iter()
        .find(|e| e["kind"] == "directory_replaced")
        .unwrap();
    assert!(record(&replaced["directory"], "contact:priya")
        .get("owner")
        .is_none());

    // The CRM must name every record's owner.
    let r = relay
        .http
        .patch(format!("{}/directory", relay.url))
        .bearer_auth(ADMIN)
        .json(&json!({"upsert": {"records": [{"id": "contact:x", "kind": "contact"}]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "record_without_owner");
}

#[tokio::test]
async fn not_there_and_not_yours_get_the_same_answer() {
    let relay = Relay::start().await;
    relay.inbound("SMv1", PRIYA, ASHA_ORG, "hello").await;
    let mv = |from_record: &str| {
        json!({"org_number": ASHA_ORG, "customer_number": PRIYA,
               "from_record": from_record, "to_record": "contact:john"})
    };
    for from_record in ["opportunity:sharma-q3", "contact:nobody"] {
        let r = relay
            .post_json("/conversations/move", "zoe", mv(from_record))
            .await;
        assert_eq!(r.status(), 403, "{from_record}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "not_visible");
    }
    // A send may name only a record the seller receives in full.
    for record_id in ["account:acme", "account:nope"] {
        let r = relay
            .post_json(
                "/messages",
                "asha",
                json!({"client_ref": format!("v-{record_id}"), "from": ASHA_ORG, "to": PRIYA,
                       "body": "hi", "record_id": record_id}),
            )
            .await;
        assert_eq!(r.status(), 404, "{record_id}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "no_such_record");
    }
}

#[tokio::test]
async fn client_references_are_per_seller() {
    let relay = Relay::start().await;
    let send = |seller: &'static str, from: &'static str, record: &'static str| {
        relay.post_json(
            "/messages",
            seller,
            json!({"client_ref": "same-ref", "from": from, "to": PRIYA, "body": format!("from {seller}"),
                   "record_id": record}),
        )
    };
    let asha = send("asha", ASHA_ORG, "opportunity:sharma-q3").await;
    assert_eq!(asha.status(), 201);
    let asha: Value = asha.json().await.unwrap();
    let ravi = send("ravi", NORTH_ORG, "account:sharma-traders").await;
    assert_eq!(ravi.status(), 201, "ravi's reference is his own");
    let ravi: Value = ravi.json().await.unwrap();
    assert_ne!(asha["message_sid"], ravi["message_sid"]);
    assert!(ravi.get("duplicate").is_none());
    let again: Value = send("asha", ASHA_ORG, "opportunity:sharma-q3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (again["message_sid"].clone(), again["duplicate"].clone()),
        (asha["message_sid"].clone(), json!(true))
    );
}

#[tokio::test]
async fn the_route_preview_names_a_record_only_to_who_may_see_it() {
    let relay = Relay::start().await;
    let path = "/route/preview?from=%2B919812345678&to=%2B14155550100";
    let (status, asha) = get(&relay, path, "asha").await;
    assert_eq!(status, 200);
    assert_eq!(asha["visible"], true);
    assert!(asha["record_id"].is_string(), "{asha}");
    let (_, zoe) = get(&relay, path, "zoe").await;
    assert_eq!(zoe["visible"], false);
    assert_eq!(zoe["record_id"], Value::Null);
    assert_eq!(
        zoe["rule"],
        Value::Null,
        "the rule would say whether a record carries the number"
    );
    assert!(asha["rule"].is_string());
}

#[tokio::test]
async fn a_patch_of_people_reaches_each_seller_as_their_whole_part() {
    let relay = Relay::start().await;
    // Zoe's number goes: the deletion names it, so other sellers must not receive it.
    let r = relay
        .http
        .patch(format!("{}/directory", relay.url))
        .bearer_auth(ADMIN)
        .json(&json!({"delete": {"org_numbers": ["+14155550102"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let last = relay.events("asha").await.pop().unwrap();
    assert_eq!(last["kind"], "directory_replaced", "{last}");
    assert!(!last.to_string().contains("+14155550102"), "{last}");
    assert_eq!(
        ids(&last["directory"]["org_numbers"], "number"),
        [ASHA_ORG, NORTH_ORG]
    );
    // Zoe receives her part without it, so her browser drops the number.
    let zoe = relay.events("zoe").await.pop().unwrap();
    assert_eq!(zoe["kind"], "directory_replaced");
    assert_eq!(
        ids(&zoe["directory"]["org_numbers"], "number"),
        ["+919800000001"]
    );
}
