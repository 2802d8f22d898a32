//! Bounded load test on 127.0.0.1 (`make bench`; a measurement, not a test).
//!
//! Starts the release relay as a child process with a generated directory, connects
//! `LOAD_CLIENTS` SSE clients spread over the sellers, sends `LOAD_RATE` signed
//! inbound webhooks per second for `LOAD_SECONDS`, and reports webhook-to-browser
//! latency (p50/p99), events lost and duplicated, and the relay's memory. Then it
//! measures the webhook rate the relay sustains with its log on disk.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use sms_relay::signature::sign;

const AUTH_TOKEN: &str = "demo-auth-token";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn raise_open_file_limit() {
    // SAFETY: plain libc calls on a stack value.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

struct Relay {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SELLERS: usize = 50;
const CUSTOMERS: usize = 2000;
/// Event streams one seller may hold in the benchmark (the relay's default is 8;
/// 1,000 clients over 50 sellers are 20 each, and `LOAD_CLIENTS` may ask for more).
const CLIENTS_PER_SELLER_MAX: usize = 1000;

fn org(s: usize) -> String {
    format!("+1415555{:04}", 1000 + s)
}

fn customer(c: usize) -> String {
    format!("+9198{:08}", 10_000 + c)
}

fn start_relay(port: u16, database: &str) -> Relay {
    let dir = tempfile::tempdir().expect("temp dir");
    let sellers: Vec<Value> = (0..SELLERS)
        .map(|s| json!({"id": format!("s{s}"), "name": format!("Seller {s}")}))
        .collect();
    let orgs: Vec<Value> = (0..SELLERS)
        .map(|s| json!({"number": org(s), "owner": {"seller": format!("s{s}")}}))
        .collect();
    let records: Vec<Value> = (0..CUSTOMERS)
        .map(|c| json!({"id": format!("contact:{c}"), "kind": "contact", "owner": {"seller": format!("s{}", c % SELLERS)},
                        "updated_at": "2026-01-01T00:00:00Z", "phones": [customer(c)]}))
        .collect();
    let directory = json!({"sellers": sellers, "org_numbers": orgs, "records": records});
    std::fs::write(dir.path().join("directory.json"), directory.to_string())
        .expect("write directory");
    let mut toml = format!(
        "bind = \"127.0.0.1:{port}\"\ndatabase = \"{database}\"\ndirectory = \"directory.json\"\ndemo = true\nmax_body_bytes = 65536\n\
         [limits]\nstreams_per_seller = {}\n",
        CLIENTS_PER_SELLER_MAX
    );
    for s in 0..SELLERS {
        toml.push_str(&format!("[[sellers]]\nid = \"s{s}\"\ntoken = \"t{s}\"\n"));
    }
    std::fs::write(dir.path().join("relay.toml"), toml).expect("write config");
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(|d| d.join("sms-relay")))
        .filter(|p| p.exists())
        .expect("build the relay first: cargo build --release -p sms-relay");
    let child = Command::new(bin)
        .arg("--config")
        .arg(dir.path().join("relay.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start relay");
    Relay {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

async fn wait_healthy(http: &reqwest::Client, url: &str) {
    for _ in 0..100 {
        if http
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("relay did not start");
}

fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn inbound_form(sid: &str, from: &str, to: &str, body: &str) -> Vec<(String, String)> {
    [
        ("MessageSid", sid),
        ("AccountSid", "ACdemo"),
        ("From", from),
        ("To", to),
        ("Body", body),
        ("NumMedia", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

async fn post_webhook(http: &reqwest::Client, url: &str, params: &[(String, String)]) -> bool {
    let target = format!("{url}/webhooks/twilio/inbound");
    let sig = sign(AUTH_TOKEN, &target, params);
    http.post(&target)
        .header("X-Twilio-Signature", sig)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(params).unwrap_or_default())
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[derive(Default)]
struct Received {
    latencies_us: Vec<u64>,
    /// With several nodes: latencies of events posted to another node than the client's.
    cross_us: Vec<u64>,
    seen: HashSet<u32>,
    duplicates: u64,
}

/// The digits after `prefix` in an SSE frame.
fn field<'a>(block: &'a str, prefix: &str) -> Option<&'a str> {
    let start = block.find(prefix)? + prefix.len();
    let len = block[start..].find(|c: char| !c.is_ascii_digit())?;
    Some(&block[start..start + len])
}

#[tokio::main]
async fn main() {
    raise_open_file_limit();
    let seconds = env("LOAD_SECONDS", 30);
    let rate = env("LOAD_RATE", 1000);
    let clients = env("LOAD_CLIENTS", 1000) as usize;
    // LOAD_NODES relays on LOAD_DATABASE (a postgres:// URL shares it; default: one
    // node on a SQLite file). Clients and webhooks are spread over the nodes.
    let database = std::env::var("LOAD_DATABASE").unwrap_or_else(|_| "relay.db".into());
    let nodes = env("LOAD_NODES", 1).max(1) as usize;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let mut relays = Vec::new();
    for n in 0..nodes {
        relays.push(start_relay(18_080 + n as u16, &database));
        wait_healthy(&http, &relays[n].url).await;
    }
    let urls: Vec<String> = relays.iter().map(|r| r.url.clone()).collect();
    let relay = &relays[0];
    println!(
        "{nodes} node(s) on {}",
        if database.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    // Like a browser: import the directory (GET /directory), then stream from its head.
    let head: Value = http
        .get(format!("{}/healthz", relay.url))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    let since = format!(
        "{}:{}",
        head["epoch"].as_str().unwrap_or_default(),
        head["head"]
    );
    let t0 = Instant::now();
    // Each client keeps its own results (no shared lock on the hot path) and scans
    // frames for the two fields it needs instead of parsing whole JSON documents.
    let results: Vec<Arc<Mutex<Received>>> = (0..clients).map(|_| Arc::default()).collect();
    let connected = Arc::new(AtomicU64::new(0));
    for (c, received) in results.iter().enumerate() {
        let seller = c % SELLERS;
        // A seller's clients are spread over the nodes (client c on node (c / SELLERS)
        // mod nodes), so each event reaches clients on every node: through the node
        // it was posted to and through the others' tails.
        let node = (c / SELLERS) % nodes;
        let (url, received, connected, since) = (
            urls[node].clone(),
            received.clone(),
            connected.clone(),
            since.clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let Ok(resp) = client
                .get(format!("{url}/events?since={since}"))
                .bearer_auth(format!("t{seller}"))
                .send()
                .await
            else {
                return;
            };
            connected.fetch_add(1, Ordering::Relaxed);
            let mut stream = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = stream.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                let mut consumed = 0;
                while let Some(end) = buf[consumed..].find("\n\n") {
                    let block = &buf[consumed..consumed + end];
                    consumed += end + 2;
                    let (Some(sid), Some(sent)) = (
                        field(block, "\"message_sid\":\"SMload"),
                        field(block, "\"body\":\"t="),
                    ) else {
                        continue;
                    };
                    let (Ok(sid), Ok(sent_us)) = (sid.parse::<u32>(), sent.parse::<u64>()) else {
                        continue;
                    };
                    let now_us = t0.elapsed().as_micros() as u64;
                    let mut r = received.lock().unwrap_or_else(|e| e.into_inner());
                    if r.seen.insert(sid) {
                        let us = now_us.saturating_sub(sent_us);
                        r.latencies_us.push(us);
                        if sid as usize % nodes != node {
                            r.cross_us.push(us);
                        }
                    } else {
                        r.duplicates += 1;
                    }
                }
                buf.drain(..consumed);
            }
        });
    }
    while connected.load(Ordering::Relaxed) < clients as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("{clients} SSE clients connected over {SELLERS} sellers; sending {rate} webhooks/s for {seconds} s");
    let total = rate * seconds;
    let expected: Arc<Mutex<HashMap<usize, u64>>> = Arc::default();
    let failed = Arc::new(AtomicU64::new(0));
    let answered: Arc<Mutex<Vec<u64>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut sends = Vec::with_capacity(total as usize);
    for i in 0..total {
        tick.tick().await;
        let c = (i as usize * 7919) % CUSTOMERS;
        let seller = c % SELLERS;
        let (http, url, failed, answered) = (
            http.clone(),
            urls[i as usize % nodes].clone(),
            failed.clone(),
            answered.clone(),
        );
        *expected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(seller)
            .or_default() += 1;
        sends.push(tokio::spawn(async move {
            let body = format!("t={}", t0.elapsed().as_micros());
            let params = inbound_form(&format!("SMload{i}"), &customer(c), &org(seller), &body);
            let posted = Instant::now();
            if !post_webhook(&http, &url, &params).await {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            let us = posted.elapsed().as_micros() as u64;
            answered.lock().unwrap_or_else(|e| e.into_inner()).push(us);
        }));
    }
    for s in sends {
        let _ = s.await;
    }
    let send_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, hwm) = rss_kb(relay.child.id());
    let mut lat: Vec<u64> = Vec::new();
    let mut cross: Vec<u64> = Vec::new();
    let mut duplicates = 0;
    for r in &results {
        let r = r.lock().unwrap_or_else(|e| e.into_inner());
        lat.extend(&r.latencies_us);
        cross.extend(&r.cross_us);
        duplicates += r.duplicates;
    }
    let clients_per_seller = clients / SELLERS;
    let expected_deliveries: u64 = expected
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .sum::<u64>()
        * clients_per_seller as u64;
    lat.sort_unstable();
    cross.sort_unstable();
    let mut answered = std::mem::take(&mut *answered.lock().unwrap_or_else(|e| e.into_inner()));
    answered.sort_unstable();
    let pct_of = |v: &[u64], p: f64| {
        v.get(((v.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let pct = |p: f64| pct_of(&lat, p);
    println!(
        "webhooks sent: {total} (failed {}), in {send_secs:.1} s",
        failed.load(Ordering::Relaxed)
    );
    println!(
        "deliveries: expected {expected_deliveries}, received {}, lost {}, duplicates {duplicates}",
        lat.len(),
        expected_deliveries.saturating_sub(lat.len() as u64)
    );
    println!(
        "webhook-to-browser latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "webhook answered (durable): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct_of(&answered, 0.5),
        pct_of(&answered, 0.99),
        pct_of(&answered, 1.0)
    );
    if nodes > 1 {
        println!(
            "  through another node's tail ({} deliveries): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            cross.len(),
            pct_of(&cross, 0.5),
            pct_of(&cross, 0.99),
            pct_of(&cross, 1.0)
        );
    }
    println!(
        "relay memory: RSS {} MB now, peak {} MB",
        rss / 1024,
        hwm / 1024
    );

    // Sustained webhook rate with the log on disk (no SSE clients of interest).
    let n = env("LOAD_BURST", 20_000);
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..64)
        .map(|w| {
            let (http, url, next) = (http.clone(), urls[w % nodes].clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let c = (i as usize * 31) % CUSTOMERS;
                    let params = inbound_form(
                        &format!("SMburst{i:08}"),
                        &customer(c),
                        &org(c % SELLERS),
                        "burst",
                    );
                    post_webhook(&http, &url, &params).await;
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("sustained: {n} webhooks in {secs:.1} s = {:.0} webhooks/s (64 concurrent senders, synchronous=FULL)", n as f64 / secs);
}
