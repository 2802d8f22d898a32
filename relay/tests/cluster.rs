//! Several relay nodes on one PostgreSQL database (X9): any node takes any request,
//! every node's streams see every event once and in log order, and nothing is lost,
//! doubled or resent when a node dies. Runs when `RELAY_TEST_DATABASE_URL` names a
//! PostgreSQL server (`tools/pg-test.sh run cargo test -p sms-relay --tests`); a
//! SQLite file is one node's by construction, so these tests have nothing to do then.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use common::{twilio, Relay, SseClient, SseEvent, AUTH_TOKEN};
use futures_util::StreamExt;
use serde_json::{json, Value};
use sms_relay::app::start;
use sms_relay::signature::sign;

const ASHA_ORG: &str = "+14155550100";
const PRIYA: &str = "+919812345678";

/// The shared database, or `None` (the suite runs on SQLite).
async fn shared_db() -> Option<(tempfile::TempDir, PathBuf)> {
    common::postgres_url()?;
    let dir = tempfile::tempdir().unwrap();
    let db = common::database(dir.path()).await;
    Some((dir, db))
}

/// A node in this process on `db`.
async fn node(db: &std::path::Path) -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let running = start(common::config(db.to_path_buf(), 0), false)
        .await
        .expect("node starts");
    Relay {
        url: format!("http://{}", running.addr),
        running: Some(running),
        db: db.to_path_buf(),
        dir,
        http: reqwest::Client::new(),
    }
}

/// Posts an inbound webhook as the provider does; `Err` when the node is gone or
/// did not answer 200 (the provider then retries, possibly on another node).
async fn deliver(http: &reqwest::Client, url: &str, sid: &str) -> Result<(), String> {
    let params: Vec<(String, String)> = [
        ("MessageSid", sid),
        ("AccountSid", "ACdemo"),
        ("From", PRIYA),
        ("To", ASHA_ORG),
        ("Body", sid),
        ("NumMedia", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let target = format!("{url}/webhooks/twilio/inbound");
    let r = http
        .post(&target)
        .header("X-Twilio-Signature", sign(AUTH_TOKEN, &target, &params))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&params).unwrap())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() == 200 {
        Ok(())
    } else {
        Err(format!("status {}", r.status()))
    }
}

fn event_id(e: &SseEvent) -> i64 {
    e.id.as_deref()
        .and_then(|id| id.split_once(':'))
        .and_then(|(_, n)| n.parse().ok())
        .expect("an SSE id <epoch>:<id>")
}

/// Reads `client` until it has seen an inbound event for every sid in `want`
/// (bounded, so a lost event fails instead of hanging): the events in order.
async fn read_until(client: &mut SseClient, want: &BTreeSet<String>) -> Vec<SseEvent> {
    let mut seen = Vec::new();
    let mut have = BTreeSet::new();
    while !want.is_subset(&have) {
        let Some(e) = client.next(Duration::from_secs(20)).await else {
            let missing: Vec<_> = want.difference(&have).collect();
            panic!("the stream went quiet; missing {missing:?}");
        };
        if e.data["kind"] == "inbound" {
            have.insert(e.data["message_sid"].as_str().unwrap().to_owned());
        }
        seen.push(e);
    }
    seen
}

/// Every id after the one before it, and each inbound sid once.
fn assert_once_in_order(events: &[SseEvent], want: &BTreeSet<String>) {
    let ids: Vec<i64> = events.iter().map(event_id).collect();
    for w in ids.windows(2) {
        assert!(w[0] < w[1], "id {} arrived after {}", w[1], w[0]);
    }
    let mut count: HashMap<String, usize> = HashMap::new();
    for e in events.iter().filter(|e| e.data["kind"] == "inbound") {
        *count
            .entry(e.data["message_sid"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for sid in want {
        assert_eq!(count.get(sid), Some(&1), "{sid} delivered once");
    }
}

/// The log itself: gap-free ids, and each inbound sid stored once.
async fn assert_log(db: &std::path::Path, want: &BTreeSet<String>) {
    let ids: Vec<i64> = common::query_strings(db, "SELECT id::text FROM events ORDER BY events.id")
        .await
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(
        ids,
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "gap-free ids"
    );
    let sids = common::query_strings(
        db,
        "SELECT body::json->>'message_sid' FROM events WHERE kind = 'inbound'",
    )
    .await;
    let mut count: HashMap<String, usize> = HashMap::new();
    for s in sids {
        *count.entry(s).or_default() += 1;
    }
    for sid in want {
        assert_eq!(count.get(sid), Some(&1), "{sid} stored once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_spread_across_nodes_reach_a_stream_on_another_node_once_and_in_order() {
    let Some((_dir, db)) = shared_db().await else {
        return;
    };
    let (a, b, c) = (node(&db).await, node(&db).await, node(&db).await);
    let mut stream = SseClient::connect(&c.url, "asha", None).await;
    let http = reqwest::Client::new();
    let mut want = BTreeSet::new();
    let mut posts = Vec::new();
    for i in 0..80 {
        let sid = format!("SMspread{i:03}");
        want.insert(sid.clone());
        let url = if i % 2 == 0 { &a.url } else { &b.url };
        posts.push((url.clone(), sid.clone()));
        // Every fourth one is delivered to both nodes at once (a provider retry).
        if i % 4 == 0 {
            let other = if i % 2 == 0 { &b.url } else { &a.url };
            posts.push((other.clone(), sid));
        }
    }
    let results: Vec<_> = futures_util::stream::iter(posts)
        .map(|(url, sid)| {
            let http = http.clone();
            async move { deliver(&http, &url, &sid).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let events = read_until(&mut stream, &want).await;
    assert_once_in_order(&events, &want);
    assert_log(&db, &want).await;
    // Any node serves any position: a stream on `a` resuming from the middle gets the rest.
    let middle = &events[events.len() / 2];
    let mut resumed = SseClient::connect(&a.url, "asha", middle.id.as_deref()).await;
    let later: BTreeSet<String> = events[events.len() / 2 + 1..]
        .iter()
        .filter(|e| e.data["kind"] == "inbound")
        .map(|e| e.data["message_sid"].as_str().unwrap().to_owned())
        .collect();
    let rest = read_until(&mut resumed, &later).await;
    assert_eq!(
        rest.iter().map(event_id).collect::<Vec<_>>()[..later.len().min(rest.len())],
        events[events.len() / 2 + 1..]
            .iter()
            .map(event_id)
            .collect::<Vec<_>>()[..later.len().min(rest.len())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_appenders_on_three_nodes_and_every_reader_sees_ids_only_increase() {
    let Some((_dir, db)) = shared_db().await else {
        return;
    };
    let nodes = [node(&db).await, node(&db).await, node(&db).await];
    let mut readers = Vec::new();
    for n in &nodes {
        readers.push(SseClient::connect(&n.url, "asha", None).await);
    }
    let want: BTreeSet<String> = (0..150).map(|i| format!("SMmany{i:03}")).collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let http = reqwest::Client::new();
    let results: Vec<_> = futures_util::stream::iter(want.iter().cloned().enumerate())
        .map(|(i, sid)| {
            let (http, url) = (http.clone(), urls[(i * 7) % 3].clone());
            async move { deliver(&http, &url, &sid).await }
        })
        .buffer_unordered(24)
        .collect()
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let mut orders = Vec::new();
    for r in &mut readers {
        let events = read_until(r, &want).await;
        assert_once_in_order(&events, &want);
        orders.push(events.iter().map(event_id).collect::<Vec<_>>());
    }
    // One order: every node's stream carries the same ids in the same sequence.
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0], orders[2]);
    assert_log(&db, &want).await;
}

// ---- nodes as processes (SIGKILL) ----

struct Proc {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Proc {
    fn kill(&mut self) {
        // SIGKILL: no graceful stop, no chance to finish anything.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the relay binary as a node on `db` (demo sellers; `provider` if given).
async fn spawn_node(db: &std::path::Path, provider: Option<&str>) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo/directory.json");
    let mut toml = format!(
        "bind = \"127.0.0.1:{port}\"\ndatabase = \"{}\"\ndefault_region = \"IN\"\ndemo = true\n\
         directory = \"{}\"\nadmin_token = \"admin-secret\"\n\
         [[sellers]]\nid = \"asha\"\ntoken = \"asha-token\"\n\
         [limits]\nsend_lease_ms = 1500\nsends_per_minute = 0\n",
        db.display(),
        directory.display()
    );
    if let Some(base) = provider {
        toml.push_str(&format!(
            "[provider]\naccount_sid = \"ACtest\"\nauth_token = \"{AUTH_TOKEN}\"\nbase_url = \"{base}\"\n"
        ));
    }
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, toml).unwrap();
    #[allow(clippy::zombie_processes)] // `Proc` waits for it when dropped or killed.
    let child = Command::new(env!("CARGO_BIN_EXE_sms-relay"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the relay binary starts");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{url}/healthz")).send().await {
            if r.status() == 200 {
                return Proc {
                    child,
                    url,
                    _dir: dir,
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
    panic!("node on {url} never became healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_burst_loses_and_doubles_nothing_while_the_sender_retries_elsewhere() {
    let Some((_dir, db)) = shared_db().await else {
        return;
    };
    let mut a = spawn_node(&db, None).await;
    let b = spawn_node(&db, None).await;
    let mut stream = SseClient::connect(&b.url, "asha", None).await;
    let want: BTreeSet<String> = (0..200).map(|i| format!("SMkill{i:03}")).collect();
    let (a_url, b_url) = (a.url.clone(), b.url.clone());
    let http = reqwest::Client::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let sender = tokio::spawn({
        let want = want.clone();
        async move {
            futures_util::stream::iter(want.into_iter().enumerate())
                .map(|(i, sid)| {
                    let (http, done) = (http.clone(), done_tx.clone());
                    let first = if i % 2 == 0 {
                        a_url.clone()
                    } else {
                        b_url.clone()
                    };
                    let second = b_url.clone();
                    async move {
                        // The provider retries an unanswered webhook, here on the other node.
                        let mut url = first;
                        for _ in 0..50 {
                            if deliver(&http, &url, &sid).await.is_ok() {
                                let _ = done.send(());
                                return Ok(());
                            }
                            url = second.clone();
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(sid)
                    }
                })
                .buffer_unordered(8)
                .collect::<Vec<Result<(), String>>>()
                .await
        }
    });
    // Mid-burst: a third of the webhooks answered, others in flight on `a`.
    for _ in 0..60 {
        done_rx.recv().await.unwrap();
    }
    a.kill();
    let results = sender.await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let events = read_until(&mut stream, &want).await;
    assert_once_in_order(&events, &want);
    assert_log(&db, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_during_a_send_leaves_it_to_another_node_which_reconciles_and_never_resends()
{
    let Some((_dir, db)) = shared_db().await else {
        return;
    };
    let fake = twilio::start().await;
    // The provider holds the call long enough for the node to die during it.
    fake.delay_ms
        .store(30_000, std::sync::atomic::Ordering::Relaxed);
    let mut a = spawn_node(&db, Some(&fake.url)).await;
    let b = spawn_node(&db, Some(&fake.url)).await;
    let http = reqwest::Client::new();
    let send = json!({"from": ASHA_ORG, "to": PRIYA, "body": "Killed mid-call",
                      "client_ref": "kill-1", "record_id": "contact:priya"});
    let post = |url: String| {
        let (http, send) = (http.clone(), send.clone());
        async move {
            http.post(format!("{url}/messages"))
                .bearer_auth("asha-token")
                .json(&send)
                .send()
                .await
        }
    };
    let on_a = tokio::spawn(post(a.url.clone()));
    for _ in 0..200 {
        if !fake.creates().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(fake.creates().len(), 1, "the call reached the provider");
    a.kill();
    let _ = on_a.await;
    // The provider did take it: its list shows the message.
    fake.listed.lock().unwrap().push(json!({
        "sid": "SMtaken", "from": ASHA_ORG, "to": PRIYA, "body": "Killed mid-call",
        "status": "delivered", "error_code": null}));
    // The browser's outbox asks again, on the other node, until there is an outcome.
    let mut answer = Value::Null;
    for _ in 0..40 {
        let r = post(b.url.clone()).await.unwrap();
        answer = r.json().await.unwrap();
        if answer["outcome"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(answer["outcome"], "accepted", "{answer}");
    assert_eq!(answer["message_sid"], "SMtaken");
    assert_eq!(fake.creates().len(), 1, "never resent");
    let outbound = common::query_strings(
        &db,
        "SELECT body::json->>'message_sid' FROM events WHERE kind = 'outbound'",
    )
    .await;
    assert_eq!(outbound, vec!["SMtaken".to_owned()], "one outcome logged");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_stopped_gracefully_finishes_its_call_and_hands_its_queued_send_over_at_once() {
    let Some((_dir, db)) = shared_db().await else {
        return;
    };
    let fake = twilio::start().await;
    fake.delay_ms
        .store(1_000, std::sync::atomic::Ordering::Relaxed);
    let config = |lease_ms: u64| {
        let mut c = common::config(db.clone(), 0);
        c.provider = Some(sms_relay::provider::TwilioConfig {
            account_sid: "ACtest".into(),
            auth_token: AUTH_TOKEN.into(),
            base_url: fake.url.clone(),
            ..Default::default()
        });
        c.limits.send_wait_ms = 0;
        c.limits.send_lease_ms = lease_ms;
        c
    };
    // `a` calls the provider once at a time and holds its sends for a minute unless
    // it hands them over; `b` looks for sends to take over twice a second.
    let mut a_config = config(60_000);
    a_config.limits.provider_concurrency = 1;
    let a = start(a_config, false).await.expect("a starts");
    let b = start(config(1_500), false).await.expect("b starts");
    let (a_url, b_url) = (format!("http://{}", a.addr), format!("http://{}", b.addr));
    let http = reqwest::Client::new();
    let post = |url: String, client_ref: &'static str| {
        let http = http.clone();
        async move {
            let send = json!({"from": ASHA_ORG, "to": PRIYA, "body": client_ref,
                              "client_ref": client_ref, "record_id": "contact:priya"});
            let r = http
                .post(format!("{url}/messages"))
                .bearer_auth("asha-token")
                .json(&send)
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()
        }
    };
    // The first send is with the provider; the second waits on `a` for its turn.
    assert_eq!(post(a_url.clone(), "g-1").await["outcome"], "pending");
    for _ in 0..200 {
        if !fake.creates().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(post(a_url.clone(), "g-2").await["outcome"], "pending");
    // A graceful stop: the call under way finishes, the waiting one is not started.
    a.stop().await;
    assert_eq!(fake.creates().len(), 1, "only the call under way was made");
    // The browser asks `b`: the first send's outcome was logged; the second is
    // taken over at once (well before `a`'s minute-long lease runs out) and sent.
    assert_eq!(post(b_url.clone(), "g-1").await["outcome"], "accepted");
    let mut answer = Value::Null;
    for _ in 0..60 {
        answer = post(b_url.clone(), "g-2").await;
        if answer["outcome"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(answer["outcome"], "accepted", "{answer}");
    let bodies: Vec<String> = fake
        .creates()
        .iter()
        .filter_map(|c| c.form_value("Body").map(str::to_owned))
        .collect();
    assert_eq!(
        bodies,
        vec!["g-1".to_owned(), "g-2".to_owned()],
        "each sent once"
    );
    b.stop().await;
}

/// What a node answers about routing and consent, for comparing nodes.
async fn routes(relay: &Relay) -> Vec<Value> {
    let mut out = Vec::new();
    for seller in ["asha", "ravi"] {
        for (from, to) in [
            ("%2B919812345678", "%2B14155550100"),
            ("%2B919876500007", "%2B14155550101"),
        ] {
            let path = format!("/route/preview?from={from}&to={to}");
            let (_, v) = relay.get_as(&path, seller).await;
            out.push(v);
        }
    }
    out
}

async fn prune_to_head(relay: &Relay) -> i64 {
    let (_, head) = relay.head().await;
    assert_eq!(relay.prune(head).await.0, 200);
    head
}

#[tokio::test]
async fn a_node_behind_a_prune_on_another_node_rebuilds_from_the_checkpoint() {
    let Some((_dir, db)) = shared_db().await else {
        return;
    };
    let a = node(&db).await;
    let b = node(&db).await;
    assert_eq!(routes(&a).await, routes(&b).await);
    // Round 1: `a` logs a lead and an opt-out and prunes them; `b` next reads.
    assert_eq!(
        a.inbound("SMc1", "+919876500007", "+14155550101", "Hi")
            .await
            .status(),
        200
    );
    assert_eq!(
        a.inbound("SMc2", PRIYA, ASHA_ORG, "STOP").await.status(),
        200
    );
    prune_to_head(&a).await;
    assert_eq!(
        routes(&b).await,
        routes(&a).await,
        "a read on b after the prune"
    );
    // Round 2: more, pruned again; `b` next writes (a send refused for the opt-out).
    assert_eq!(
        a.inbound("SMc3", PRIYA, ASHA_ORG, "Hello?").await.status(),
        200
    );
    prune_to_head(&a).await;
    let offer = |client_ref: &str| {
        json!({"from": ASHA_ORG, "to": PRIYA, "body": "Offer", "client_ref": client_ref,
               "record_id": "contact:priya"})
    };
    let on_b = b.post_json("/messages", "asha", offer("c-b")).await;
    let on_a = a.post_json("/messages", "asha", offer("c-a")).await;
    assert_eq!(
        on_b.status(),
        on_a.status(),
        "consent came from the checkpoint"
    );
    assert_eq!(on_b.status(), 422);
    assert_eq!(routes(&b).await, routes(&a).await);
}
