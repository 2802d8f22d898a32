//! Real Twilio accounts (X7): sends through a Messaging Service (with `From`), REST
//! calls authenticated with an API key, webhooks still verified with the auth token,
//! and every request the relay makes checked against Twilio's published OpenAPI
//! description (`fixtures/twilio_api_v2010_messages.json`, from twilio/twilio-oai).

mod common;

use std::time::Duration;

use axum::http::Method;
use common::twilio::{self, Captured};
use serde_json::{json, Value};
use sms_relay::app::start;
use sms_relay::provider::TwilioConfig;
use sms_relay::store::PendingSend;

const ASHA_ORG: &str = "+14155550100";
const NORTH_ORG: &str = "+14155550101";
const SERVICE: &str = "MG0123456789abcdef0123456789abcdef";
const API_KEY: &str = "SK0123456789abcdef0123456789abcdef";
const API_SECRET: &str = "api-secret-9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const OPERATION_PATH: &str = "/2010-04-01/Accounts/{AccountSid}/Messages.json";

fn spec() -> Value {
    serde_json::from_str(include_str!("fixtures/twilio_api_v2010_messages.json")).unwrap()
}

/// Whether `path` is an instance of the template (`{Name}` is one segment).
fn matches_template(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    if t.len() != p.len() {
        return None;
    }
    let mut vars = Vec::new();
    for (a, b) in t.iter().zip(&p) {
        match a.strip_prefix('{') {
            Some(rest) => {
                let (name, suffix) = rest.split_once('}').unwrap();
                let value = b.strip_suffix(suffix)?;
                if value.is_empty() {
                    return None;
                }
                vars.push((name.to_owned(), value.to_owned()));
            }
            None if a == b => {}
            None => return None,
        }
    }
    Some(vars)
}

/// Checks one captured request against the operation the spec declares for its
/// method and path: path parameters, query parameter names, content type, form
/// fields and the required ones, basic auth.
fn check_against_spec(spec: &Value, c: &Captured) {
    let (template, item) = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(t, _)| matches_template(t, &c.path).is_some())
        .unwrap_or_else(|| panic!("{} is no path of the spec", c.path));
    let vars = matches_template(template, &c.path).unwrap();
    let op = &item[c.method.as_str().to_ascii_lowercase()];
    assert!(op.is_object(), "{} {template}: no such operation", c.method);
    let params = op["parameters"].as_array().cloned().unwrap_or_default();
    let declared = |place: &str| -> Vec<String> {
        params
            .iter()
            .filter(|p| p["in"] == place)
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    for (name, value) in &vars {
        assert!(declared("path").contains(name), "path parameter {name}");
        assert!(!value.is_empty());
    }
    for (name, _) in &c.query {
        assert!(
            declared("query").contains(name),
            "{} {template}: query parameter {name:?} is not in the spec ({:?})",
            c.method,
            declared("query")
        );
    }
    match op.get("requestBody") {
        Some(body) => {
            let content_type = c.content_type.as_deref().expect("a content type");
            let media = content_type.split(';').next().unwrap().trim();
            let schema = &body["content"][media]["schema"];
            assert!(
                schema.is_object(),
                "content type {media} is not in the spec"
            );
            let properties = schema["properties"].as_object().unwrap();
            for (name, _) in &c.form {
                assert!(
                    properties.contains_key(name),
                    "form field {name:?} is not in the spec"
                );
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let required = required.as_str().unwrap();
                assert!(
                    c.form_value(required).is_some(),
                    "required {required} missing"
                );
            }
        }
        None => assert!(c.form.is_empty(), "{} with a body", c.method),
    }
    // The spec's security scheme: HTTP basic.
    assert_eq!(
        spec["components"]["securitySchemes"]["accountSid_authToken"]["scheme"],
        "basic"
    );
    assert!(c.auth.is_some(), "basic auth on {} {}", c.method, c.path);
}

fn provider(fake: &twilio::FakeTwilio) -> TwilioConfig {
    TwilioConfig {
        account_sid: "ACtest".into(),
        auth_token: common::AUTH_TOKEN.into(),
        base_url: fake.url.clone(),
        api_key_sid: Some(API_KEY.into()),
        api_key_secret: Some(API_SECRET.into()),
        messaging_services: [(ASHA_ORG.to_owned(), SERVICE.to_owned())].into(),
        ..TwilioConfig::default()
    }
}

#[tokio::test]
async fn messaging_service_and_api_key_requests_match_the_published_api() {
    let fake = twilio::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = common::database(dir.path()).await;
    let mut config = common::config(db.clone(), 0);
    config.provider = Some(provider(&fake));
    let running = start(config.clone(), false).await.unwrap();
    let url = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let send = |from: &str, client_ref: &str| {
        http.post(format!("{url}/messages"))
            .bearer_auth("asha-token")
            .json(
                &json!({"from": from, "to": "+919812345678", "body": "Hello & welcome",
                          "client_ref": client_ref, "record_id": "contact:priya"}),
            )
            .send()
    };
    assert_eq!(send(ASHA_ORG, "ms-1").await.unwrap().status(), 201);
    // A number without a Messaging Service sends with `From` alone.
    assert_eq!(send(NORTH_ORG, "ms-2").await.unwrap().status(), 201);
    let creates = fake.creates();
    assert_eq!(creates.len(), 2);
    let (with, without) = (&creates[0], &creates[1]);
    assert_eq!(
        with.form_value("From"),
        Some(ASHA_ORG),
        "From keeps replies on the number (R2)"
    );
    assert_eq!(with.form_value("MessagingServiceSid"), Some(SERVICE));
    assert_eq!(without.form_value("From"), Some(NORTH_ORG));
    assert_eq!(without.form_value("MessagingServiceSid"), None);
    assert_eq!(
        with.path, "/2010-04-01/Accounts/ACtest/Messages.json",
        "the account in the URL"
    );
    assert_eq!(
        with.auth,
        Some((API_KEY.to_owned(), API_SECRET.to_owned())),
        "REST calls authenticate with the API key"
    );
    // The auth token still verifies webhooks; the API secret does not.
    let params = vec![
        ("MessageSid".to_owned(), "SMin1".to_owned()),
        ("From".to_owned(), "+919812345678".to_owned()),
        ("To".to_owned(), ASHA_ORG.to_owned()),
        ("Body".to_owned(), "hi".to_owned()),
    ];
    let hook = format!("{url}/webhooks/twilio/inbound");
    for (key, status) in [(API_SECRET, 403), (common::AUTH_TOKEN, 200)] {
        let r = http
            .post(&hook)
            .header(
                "X-Twilio-Signature",
                sms_relay::signature::sign(key, &hook, &params),
            )
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&params).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
    }
    running.stop().await;

    // A send whose call started before a stop: the restart lists the messages.
    // A writer is driven from a thread of its own (as the sequencer's).
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut w = common::open_writer(&db);
            w.begin(&[]).unwrap();
            w.add_pending(&PendingSend {
                client_ref: "ms-3".into(),
                seller: "asha".into(),
                from: ASHA_ORG.into(),
                to: "+919812345678".into(),
                body: "Interrupted".into(),
                record_id: "contact:priya".into(),
                at: sms_relay::sequencer::now(),
            })
            .unwrap();
            w.mark_calling("asha", "ms-3").unwrap();
            w.commit().unwrap();
        });
    });
    let running = start(config, false).await.unwrap();
    for _ in 0..100 {
        if !fake.lists().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lists = fake.lists();
    assert_eq!(lists.len(), 1);
    assert_eq!(
        lists[0].auth,
        Some((API_KEY.to_owned(), API_SECRET.to_owned()))
    );
    let query: std::collections::HashMap<_, _> = lists[0].query.iter().cloned().collect();
    assert_eq!(query["To"], "+919812345678");
    assert_eq!(query["From"], ASHA_ORG);
    assert!(
        sms_core::Timestamp::parse(&query["DateSent>"]).is_ok(),
        "a date-time"
    );
    running.stop().await;

    // Every request the relay made, against the published description.
    let spec = spec();
    assert!(spec["paths"][OPERATION_PATH].is_object());
    let all = fake.requests();
    assert!(
        all.iter().any(|c| c.method == Method::POST) && all.iter().any(|c| c.method == Method::GET)
    );
    for c in &all {
        check_against_spec(&spec, c);
    }
}

#[test]
fn the_checker_refuses_what_the_spec_does_not_declare() {
    let spec = spec();
    let good = Captured {
        method: Method::POST,
        path: "/2010-04-01/Accounts/AC1/Messages.json".into(),
        query: Vec::new(),
        content_type: Some("application/x-www-form-urlencoded".into()),
        auth: Some(("SK1".into(), "x".into())),
        form: vec![("To".into(), "+1".into()), ("Body".into(), "b".into())],
    };
    check_against_spec(&spec, &good);
    let mut bad_field = good.clone();
    bad_field.form.push(("Sender".into(), "+1".into()));
    let mut no_to = good.clone();
    no_to.form.retain(|(k, _)| k != "To");
    let mut json_body = good.clone();
    json_body.content_type = Some("application/json".into());
    let mut bad_query = good.clone();
    bad_query.method = Method::GET;
    bad_query.form.clear();
    bad_query.query = vec![("DateSent>=".into(), "2025-01-01".into())];
    let mut bad_path = good.clone();
    bad_path.path = "/2010-04-01/Accounts/AC1/Message.json".into();
    for bad in [bad_field, no_to, json_body, bad_query, bad_path] {
        let refused = std::panic::catch_unwind(|| check_against_spec(&spec, &bad)).is_err();
        assert!(refused, "{bad:?}");
    }
}

#[test]
fn half_an_api_key_or_a_wrong_sid_refuses_to_start() {
    let ok = TwilioConfig {
        account_sid: "AC1".into(),
        api_key_sid: Some(API_KEY.into()),
        api_key_secret: Some(API_SECRET.into()),
        messaging_services: [(ASHA_ORG.to_owned(), SERVICE.to_owned())].into(),
        ..TwilioConfig::default()
    };
    assert!(ok.check().is_ok());
    let mut no_secret = ok.clone();
    no_secret.api_key_secret = None;
    let mut not_a_key = ok.clone();
    not_a_key.api_key_sid = Some("AC0123".into());
    let mut not_a_service = ok.clone();
    not_a_service.messaging_services = [(ASHA_ORG.to_owned(), "PN123".to_owned())].into();
    for bad in [no_secret, not_a_key, not_a_service] {
        assert!(bad.check().is_err(), "{bad:?}");
        assert!(
            !format!("{bad:?}").contains(API_SECRET),
            "secrets never print"
        );
    }
}
