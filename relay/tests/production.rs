//! A relay in production mode (no demo) over real HTTP on 127.0.0.1: sellers signed
//! in by the CRM's JWTs (X1), push endpoints that cannot reach the relay's network
//! (X2), and the demo kept a demo (X6).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{fixture, Relay, SseClient, AUDIENCE, ISSUER, JWT_SECRET, PROD_ADMIN};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sms_relay::app::start;
use sms_relay::config::SellerToken;
use sms_relay::push_guard::{BoxFuture, Lookup, PushNetwork};

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn claims(sub: &str) -> Value {
    let t = now();
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": t, "exp": t + 300})
}

fn hs256(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn signed(alg: Algorithm, kid: Option<&str>, pem_file: &str, claims: &Value) -> String {
    let pem = std::fs::read(fixture(pem_file)).unwrap();
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => unreachable!(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &key).unwrap()
}

fn valid(sub: &str) -> String {
    hs256(&claims(sub), JWT_SECRET)
}

fn with(mut c: Value, key: &str, value: Value) -> Value {
    c[key] = value;
    c
}

fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().unwrap().remove(key);
    c
}

/// `POST /session {assertion}`: the status, the body and the cookie it sets.
async fn sign_in(relay: &Relay, assertion: &str) -> (u16, Value, Option<String>) {
    let r = relay
        .http
        .post(format!("{}/session", relay.url))
        .json(&json!({ "assertion": assertion }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, r.json().await.unwrap_or(Value::Null), cookie)
}

/// The `name=value` part of a Set-Cookie header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn cookie_for(relay: &Relay, seller: &str) -> String {
    let (status, _, cookie) = sign_in(relay, &valid(seller)).await;
    assert_eq!(status, 200, "{seller} signs in");
    cookie_pair(&cookie.unwrap())
}

async fn me_with(relay: &Relay, header: (&str, &str)) -> (u16, Value) {
    let r = relay
        .http
        .get(format!("{}/me", relay.url))
        .header(header.0, header.1)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn admin_patch(relay: &Relay, patch: Value) {
    let r = relay.patch_directory(PROD_ADMIN, &patch).await;
    assert_eq!(r.status(), 200, "directory patched");
}

#[tokio::test]
async fn assertions_are_verified_and_refused_with_a_reason() {
    let relay = Relay::start_production(|_| {}).await;
    let c = claims("asha");
    let t = now();
    // A valid HS256 assertion gives a session cookie.
    let (status, body, cookie) = sign_in(&relay, &valid("asha")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["seller"], "asha");
    let cookie = cookie.unwrap();
    assert!(cookie.starts_with("sms_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let (status, me) = me_with(&relay, ("cookie", &cookie_pair(&cookie))).await;
    assert_eq!((status, me["seller"].clone()), (200, json!("asha")));

    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(c.to_string())
    );
    let unsigned_none_with_sig = format!("{unsigned}c2ln");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            hs256(
                &with(
                    with(c.clone(), "iat", json!(t - 500)),
                    "exp",
                    json!(t - 200),
                ),
                JWT_SECRET,
            ),
            "expired",
        ),
        (
            "wrong audience",
            hs256(&with(c.clone(), "aud", json!("another-app")), JWT_SECRET),
            "audience",
        ),
        (
            "no audience",
            hs256(&without(c.clone(), "aud"), JWT_SECRET),
            "audience",
        ),
        (
            "wrong issuer",
            hs256(
                &with(c.clone(), "iss", json!("https://evil.example")),
                JWT_SECRET,
            ),
            "issuer",
        ),
        (
            "other key",
            hs256(&c, "another-secret-of-at-least-32-bytes!!"),
            "signature",
        ),
        ("alg none", unsigned, "algorithm"),
        (
            "alg none with a signature",
            unsigned_none_with_sig,
            "algorithm",
        ),
        (
            "no exp",
            hs256(&without(c.clone(), "exp"), JWT_SECRET),
            "lifetime",
        ),
        (
            "no iat",
            hs256(&without(c.clone(), "iat"), JWT_SECRET),
            "lifetime",
        ),
        (
            "too long-lived",
            hs256(&with(c.clone(), "exp", json!(t + 3600)), JWT_SECRET),
            "lifetime",
        ),
        ("unknown seller", valid("mallory"), "unknown_seller"),
        ("not a jwt", "a.b".to_owned(), "malformed"),
        (
            "RS256 signed by another key",
            signed(Algorithm::RS256, Some("rsa-1"), "rsa_other_private.pem", &c),
            "signature",
        ),
        (
            "unknown kid",
            signed(Algorithm::RS256, Some("rsa-9"), "rsa_private.pem", &c),
            "unknown_key",
        ),
        (
            "RS256 token naming the EC key",
            signed(Algorithm::RS256, Some("ec-1"), "rsa_private.pem", &c),
            "algorithm",
        ),
    ];
    for (what, token, reason) in cases {
        let (status, body, cookie) = sign_in(&relay, &token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["code"], "invalid_assertion", "{what}");
        assert_eq!(body["reason"], reason, "{what}");
        assert!(cookie.is_none(), "{what}: no cookie");
        // The same assertion as a bearer token is refused the same way.
        let (status, body) = me_with(&relay, ("authorization", &format!("Bearer {token}"))).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (401, Some(reason)),
            "{what} (bearer)"
        );
    }

    // Public keys from the JWKS file, chosen by kid: RS256 and ES256.
    for (alg, kid, pem) in [
        (Algorithm::RS256, "rsa-1", "rsa_private.pem"),
        (Algorithm::ES256, "ec-1", "ec_private.pem"),
    ] {
        let token = signed(alg, Some(kid), pem, &claims("ravi"));
        let (status, body, _) = sign_in(&relay, &token).await;
        assert_eq!(
            (status, body["seller"].clone()),
            (200, json!("ravi")),
            "{kid}"
        );
        let (status, body) = me_with(&relay, ("authorization", &format!("Bearer {token}"))).await;
        assert_eq!(
            (status, body["seller"].clone()),
            (200, json!("ravi")),
            "{kid} bearer"
        );
    }
    // Static tokens are the demo's only.
    let r = relay
        .http
        .post(format!("{}/session", relay.url))
        .json(&json!({"token": "asha-token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn an_hmac_token_is_refused_when_only_public_keys_are_configured() {
    let relay = Relay::start_production(|c| c.auth.secret = None).await;
    let (status, body, _) = sign_in(&relay, &valid("asha")).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("algorithm")));
    // The classic confusion: HS256 "signed" with the RSA public key's JWK bytes.
    let jwks = std::fs::read_to_string(fixture("jwks.json")).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let forged = encode(
        &header,
        &claims("asha"),
        &EncodingKey::from_secret(jwks.as_bytes()),
    )
    .unwrap();
    let (status, body, _) = sign_in(&relay, &forged).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("algorithm")));
    let rs = signed(
        Algorithm::RS256,
        Some("rsa-1"),
        "rsa_private.pem",
        &claims("asha"),
    );
    assert_eq!(sign_in(&relay, &rs).await.0, 200);
}

#[tokio::test]
async fn a_seller_removed_from_the_directory_loses_sessions_and_streams() {
    let relay = Relay::start_production(|_| {}).await;
    let asha = cookie_for(&relay, "asha").await;
    let ravi = cookie_for(&relay, "ravi").await;
    let mut cookie_stream = SseClient::connect_with(&relay.url, "cookie", &asha).await;
    let mut bearer_stream = SseClient::connect_with(
        &relay.url,
        "authorization",
        &format!("Bearer {}", valid("asha")),
    )
    .await;
    let mut ravi_stream = SseClient::connect_with(&relay.url, "cookie", &ravi).await;
    assert_eq!(me_with(&relay, ("cookie", &asha)).await.0, 200);

    admin_patch(&relay, json!({"delete": {"sellers": ["asha"]}})).await;
    assert_eq!(
        me_with(&relay, ("cookie", &asha)).await.0,
        401,
        "session gone"
    );
    assert!(
        cookie_stream.ends_within(Duration::from_secs(10)).await,
        "cookie stream closed"
    );
    assert!(
        bearer_stream.ends_within(Duration::from_secs(10)).await,
        "bearer stream closed"
    );
    let (status, body, _) = sign_in(&relay, &valid("asha")).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("unknown_seller"))
    );
    // Ravi is untouched: session and stream.
    assert_eq!(me_with(&relay, ("cookie", &ravi)).await.0, 200);
    assert!(!ravi_stream.ends_within(Duration::from_millis(300)).await);

    // Made inactive (still listed): the same.
    admin_patch(
        &relay,
        json!({"upsert": {"sellers": [{"id": "ravi", "name": "Ravi Kumar", "active": false}]}}),
    )
    .await;
    assert_eq!(me_with(&relay, ("cookie", &ravi)).await.0, 401);
    assert!(ravi_stream.ends_within(Duration::from_secs(10)).await);
    assert_eq!(sign_in(&relay, &valid("ravi")).await.0, 401);
    // Back again: signs in anew.
    admin_patch(
        &relay,
        json!({"upsert": {"sellers": [{"id": "ravi", "name": "Ravi Kumar", "active": true}]}}),
    )
    .await;
    assert_eq!(sign_in(&relay, &valid("ravi")).await.0, 200);
    assert_eq!(
        me_with(&relay, ("cookie", &ravi)).await.0,
        401,
        "old session stays gone"
    );
}

#[tokio::test]
async fn sign_out_everywhere_ends_every_session_of_the_seller() {
    let relay = Relay::start_production(|_| {}).await;
    let laptop = cookie_for(&relay, "asha").await;
    let phone = cookie_for(&relay, "asha").await;
    let ravi = cookie_for(&relay, "ravi").await;
    let mut phone_stream = SseClient::connect_with(&relay.url, "cookie", &phone).await;
    // Session ids are kept hashed: the cookie's value is not in the database.
    let raw = phone.split_once('=').unwrap().1.to_owned();
    let stored = common::query_strings(&relay.db, "SELECT hash FROM session_hashes").await;
    assert_eq!(stored.len(), 3);
    assert!(!stored.contains(&raw));
    use sha2::Digest;
    let hashed: String = sha2::Sha256::digest(raw.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(stored.contains(&hashed));

    let r = relay
        .http
        .delete(format!("{}/session?all=true", relay.url))
        .header("cookie", &laptop)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(me_with(&relay, ("cookie", &laptop)).await.0, 401);
    assert_eq!(me_with(&relay, ("cookie", &phone)).await.0, 401);
    assert!(phone_stream.ends_within(Duration::from_secs(10)).await);
    assert_eq!(
        me_with(&relay, ("cookie", &ravi)).await.0,
        200,
        "others stay"
    );
}

#[tokio::test]
async fn the_session_cookie_is_secure_over_https_and_the_page_cannot_be_framed_elsewhere() {
    let relay = Relay::start_production(|c| {
        c.public_url = Some("https://relay.example.com".into());
        c.frame_ancestors = Some("'self' https://crm.example.com".into());
    })
    .await;
    let (status, _, cookie) = sign_in(&relay, &valid("asha")).await;
    assert_eq!(status, 200);
    let cookie = cookie.unwrap();
    assert!(cookie.starts_with("__Host-sms_session="), "{cookie}");
    assert!(cookie.contains("; Secure") && cookie.contains("Path=/"));
    assert!(!cookie.contains("Domain"));
    assert_eq!(
        me_with(&relay, ("cookie", &cookie_pair(&cookie))).await.0,
        200
    );
    let r = relay
        .http
        .get(format!("{}/healthz", relay.url))
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'self' https://crm.example.com"),
        "{csp}"
    );
    assert!(csp.contains("base-uri 'none'"), "{csp}");
    // The default: only our own pages frame the page.
    let plain = Relay::start_production(|_| {}).await;
    let r = plain
        .http
        .get(format!("{}/healthz", plain.url))
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'self'") && csp.contains("base-uri 'none'"),
        "{csp}"
    );
    let (_, _, cookie) = sign_in(&plain, &valid("asha")).await;
    assert!(!cookie.unwrap().contains("Secure"), "plain http: no Secure");
}

async fn subscribe(relay: &Relay, auth: &str, endpoint: &str) -> reqwest::Response {
    let (_, _, keys) = common::browser_keys();
    relay
        .http
        .post(format!("{}/push/subscriptions", relay.url))
        .header("authorization", format!("Bearer {auth}"))
        .json(&json!({"endpoint": endpoint, "keys": keys}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn push_endpoints_aimed_inside_are_refused_at_registration() {
    let relay = Relay::start_production(|_| {}).await;
    let asha = valid("asha");
    for endpoint in [
        "http://127.0.0.1:9/push",
        "http://fcm.googleapis.com/fcm/send/x",
        "https://127.0.0.1/push",
        "https://127.0.0.1:8443/push",
        "https://localhost/push",
        "https://localhost:8080/push",
        "https://push.localhost/x",
        "https://[::1]/push",
        "https://[::1]:8080/push",
        "https://2130706433/push",
        "https://0x7f000001/push",
        "https://0177.0.0.1/push",
        "https://127.1/push",
        "https://[::ffff:127.0.0.1]/push",
        "https://[::ffff:7f00:1]/push",
        "https://10.1.2.3/",
        "https://192.168.0.1/",
        "https://100.64.0.1/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00::1]/",
        "https://[fe80::1]/",
        "https://[64:ff9b::7f00:1]/",
        "https://printer.local/x",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://nas.home.arpa/x",
        "https://intranet/x",
        "https://push.example.com:8443/x",
        "https://user:pass@push.example.com/x",
        "javascript:alert(1)",
    ] {
        let r = subscribe(&relay, &asha, endpoint).await;
        assert_eq!(r.status(), 422, "{endpoint}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "push_endpoint_refused", "{endpoint}");
        assert!(body["reason"].is_string(), "{endpoint}");
    }
    assert!(relay.app().reader.subscriptions("asha").unwrap().is_empty());
    let ok = subscribe(&relay, &asha, "https://fcm.googleapis.com/fcm/send/abc").await;
    assert_eq!(ok.status(), 201);
}

#[tokio::test]
async fn a_seller_holds_five_subscriptions_and_deletes_only_their_own() {
    let relay = Relay::start_production(|_| {}).await;
    let asha = valid("asha");
    for i in 0..5 {
        let r = subscribe(
            &relay,
            &asha,
            &format!("https://fcm.googleapis.com/fcm/send/{i}"),
        )
        .await;
        assert_eq!(r.status(), 201, "{i}");
    }
    // Registering one of them again is an update, not a sixth.
    let again = subscribe(&relay, &asha, "https://fcm.googleapis.com/fcm/send/0").await;
    assert_eq!(again.status(), 201);
    let sixth = subscribe(&relay, &asha, "https://fcm.googleapis.com/fcm/send/5").await;
    assert_eq!(sixth.status(), 422);
    assert_eq!(
        sixth.json::<Value>().await.unwrap()["code"],
        "push_subscription_limit"
    );
    assert_eq!(relay.app().reader.subscriptions("asha").unwrap().len(), 5);
    // Ravi deleting asha's endpoint changes nothing.
    let r = relay
        .http
        .delete(format!("{}/push/subscriptions", relay.url))
        .bearer_auth(valid("ravi"))
        .json(&json!({"endpoint": "https://fcm.googleapis.com/fcm/send/0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(relay.app().reader.subscriptions("asha").unwrap().len(), 5);
    // Asha deleting it does.
    let r = relay
        .http
        .delete(format!("{}/push/subscriptions", relay.url))
        .bearer_auth(&asha)
        .json(&json!({"endpoint": "https://fcm.googleapis.com/fcm/send/0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(relay.app().reader.subscriptions("asha").unwrap().len(), 4);
}

/// A lookup that answers `push.test.example` with a fixed address and counts calls.
struct CountingLookup {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
}

impl Lookup for CountingLookup {
    fn lookup(&self, host: String) -> BoxFuture<std::io::Result<Vec<SocketAddr>>> {
        let addr = self.addr;
        let calls = self.calls.clone();
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            if host == "push.test.example" {
                Ok(vec![addr])
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such host",
                ))
            }
        })
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn doorbells_never_connect_to_a_private_address() {
    // A listener on loopback that counts the connections it gets.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            a.fetch_add(1, Ordering::SeqCst);
        }
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let lookup = CountingLookup {
        addr,
        calls: calls.clone(),
    };
    let relay = Relay::start_production(|c| {
        c.push_network = PushNetwork {
            lookup: Some(Arc::new(lookup)),
            ..PushNetwork::default()
        }
    })
    .await;
    // A public-looking name that resolves to loopback (DNS rebinding, or a hostile
    // zone): accepted at registration, refused at connection time.
    let r = subscribe(&relay, &valid("asha"), "https://push.test.example/push/ok").await;
    assert_eq!(r.status(), 201);
    // One stored before these rules, with an IP literal: dropped at send time.
    relay
        .app()
        .reader
        .put_subscription(
            "asha",
            &sms_relay::store::PushSubscription {
                endpoint: format!("https://{addr}/push/old"),
                p256dh: common::browser_keys().2["p256dh"].as_str().unwrap().into(),
                auth: common::browser_keys().2["auth"].as_str().unwrap().into(),
            },
        )
        .unwrap();
    relay
        .inbound_prod("SMring1", "+919812345678", "+14155550100", "ring")
        .await;
    wait_for("the first doorbell round", || {
        calls.load(Ordering::SeqCst) >= 1
            && relay.app().reader.subscriptions("asha").unwrap().len() == 1
    })
    .await;
    // Doorbells go out one round after another: once the second round resolves the
    // name, the first round's request is over.
    relay
        .inbound_prod("SMring2", "+919812345678", "+14155550100", "ring again")
        .await;
    wait_for("the second doorbell round", || {
        calls.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "no connection to loopback"
    );
    // The subscription itself stays (the push host may recover).
    let subs = relay.app().reader.subscriptions("asha").unwrap();
    assert_eq!(subs.len(), 1);
    assert!(subs[0].endpoint.contains("push.test.example"));
}

#[tokio::test]
async fn a_push_service_redirect_is_not_followed() {
    // Demo mode may reach a local push service (tests only): one that redirects.
    let (addr, seen) = common::tls_push_service(vec![
        (
            "/push/redirect",
            307,
            Some("https://push.test.example/push/elsewhere"),
        ),
        ("/push/elsewhere", 201, None),
    ])
    .await;
    let relay = Relay::start_demo(|c| c.push_network = common::push_network_to(addr, true)).await;
    let (_, _, keys) = common::browser_keys();
    let r = relay
        .post_json(
            "/push/subscriptions",
            "asha",
            json!({"endpoint": "https://push.test.example/push/redirect", "keys": keys}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let hits = |path: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .count()
    };
    relay
        .inbound("SMr1", "+919812345678", "+14155550100", "one")
        .await;
    wait_for("the first doorbell", || hits("/push/redirect") >= 1).await;
    relay
        .inbound("SMr2", "+919812345678", "+14155550100", "two")
        .await;
    wait_for("the second doorbell", || hits("/push/redirect") >= 2).await;
    assert_eq!(hits("/push/elsewhere"), 0, "the redirect was not followed");
}

#[tokio::test]
async fn demo_mode_refuses_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    for bind in ["0.0.0.0:0", "[::]:0", "192.0.2.10:0"] {
        let mut c = common::config(common::database(dir.path()).await, 0);
        c.bind = bind.parse().unwrap();
        let err = start(c, false).await.err().expect("refused");
        assert!(err.contains("loopback"), "{bind}: {err}");
    }
    // Loopback is fine.
    let c = common::config(common::database(dir.path()).await, 0);
    start(c, false)
        .await
        .expect("loopback demo starts")
        .stop()
        .await;
}

#[tokio::test]
async fn production_refuses_weak_demo_or_missing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let db = || dir.path().join("relay.db");
    type Adjust = Box<dyn Fn(&mut sms_relay::config::Config)>;
    let cases: Vec<(&str, Adjust)> = vec![
        (
            "short admin token",
            Box::new(|c| c.admin_token = Some("short-admin-token".into())),
        ),
        (
            "demo admin token",
            Box::new(|c| c.admin_token = Some("demo-admin-token".into())),
        ),
        (
            "demo provider token",
            Box::new(|c| c.provider.as_mut().unwrap().auth_token = "demo-auth-token".into()),
        ),
        (
            "short provider token",
            Box::new(|c| c.provider.as_mut().unwrap().auth_token = "abc".into()),
        ),
        (
            "short JWT secret",
            Box::new(|c| c.auth.secret = Some("0123456789".into())),
        ),
        (
            "no sign-in",
            Box::new(|c| {
                c.auth.secret = None;
                c.auth.jwks_file = None;
            }),
        ),
        ("no issuer", Box::new(|c| c.auth.issuer = None)),
        ("no audience", Box::new(|c| c.auth.audience = None)),
        (
            "a missing JWKS file",
            Box::new(|c| c.auth.jwks_file = Some(PathBuf::from("/nonexistent/jwks.json"))),
        ),
        (
            "static seller tokens",
            Box::new(|c| {
                c.sellers = vec![SellerToken {
                    id: "asha".into(),
                    token: "a-long-static-token-of-more-than-32-bytes".into(),
                }]
            }),
        ),
        ("no provider", Box::new(|c| c.provider = None)),
        (
            "push to private addresses",
            Box::new(|c| c.push_network.allow_private = true),
        ),
        (
            "a bad frame-ancestors",
            Box::new(|c| c.frame_ancestors = Some("'self'; script-src *".into())),
        ),
    ];
    for (what, adjust) in cases {
        let mut c = common::production_config(db());
        adjust(&mut c);
        assert!(start(c, false).await.is_err(), "{what} must be refused");
    }
    // The untouched configuration starts (so each refusal above is the change's).
    start(common::production_config(db()), false)
        .await
        .expect("starts")
        .stop()
        .await;
    // Secrets never show in Debug output.
    let printed = format!("{:?}", common::production_config(db()));
    for secret in [PROD_ADMIN, JWT_SECRET, common::PROD_AUTH_TOKEN] {
        assert!(!printed.contains(secret), "{secret} printed");
    }
}

#[tokio::test]
async fn demo_routes_are_not_mounted_outside_demo_mode() {
    let relay = Relay::start_production(|_| {}).await;
    for (method, path) in [
        ("GET", "/demo/sellers"),
        ("POST", "/demo/phone/send"),
        ("GET", "/demo/phone/messages"),
        ("POST", "/demo/fault"),
        (
            "POST",
            "/fake-twilio/2010-04-01/Accounts/ACdemo/Messages.json",
        ),
    ] {
        let r = relay
            .http
            .request(method.parse().unwrap(), format!("{}{path}", relay.url))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
    }
}

#[tokio::test]
async fn provider_errors_reach_the_browser_as_codes_only() {
    // The provider (a closed port here) is unreachable: the browser gets a code, not
    // the provider's URL with the account id.
    let relay = Relay::start_production(|_| {}).await;
    let r = relay
        .http
        .post(format!("{}/messages", relay.url))
        .bearer_auth(valid("asha"))
        .json(
            &json!({"from": "+14155550100", "to": "+919812345678", "body": "Hi",
                      "client_ref": "p1", "record_id": "contact:priya"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["outcome"], "failed");
    assert_eq!(body["provider_error"], "provider_unreachable");
    assert!(
        !text.contains("ACprod") && !text.contains("127.0.0.1"),
        "{text}"
    );
}
