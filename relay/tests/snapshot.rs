//! `GET /snapshot` (E3, X10) on either backend: each seller gets exactly the
//! conversations they can see (the core's one rule, and what `/events` delivers
//! them), every message of each in the history's fold (a latest page, then the
//! older ones), with rule, moves and consent, all at one log position; after a
//! prune a client that gets `410 snapshot_required` takes the snapshot and
//! streams from its position.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Relay, SseClient};
use serde_json::{json, Value};
use sms_core::consent::Consent;
use sms_core::protocol::events::{DirectoryReplacedEvent, InboundEvent};
use sms_core::protocol::SnapshotLine;
use sms_core::protocol::{Directory, EventBody};
use sms_core::relay::history::{self, ConversationKey, History, HistoryMessage};
use sms_core::relay::State;
use sms_core::routing::RouteRule;
use sms_core::Timestamp;
use sms_relay::store::{Keep, NewEvent, SnapshotPart, SNAPSHOT_CHUNK, SNAPSHOT_OLDER};

const ASHA_ORG: &str = "+14155550100";
const ZOE_ORG: &str = "+14155550102";
const PRIYA: &str = "+919812345678";
const JOHN: &str = "+14155552671";

/// The history the tables hold and the state, both folded from the log (the suite
/// `history.rs` checks the tables equal the fold), read on a thread of its own.
fn history_and_state(db: &std::path::Path) -> (History, State) {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut log = common::open_writer(db);
            let mut state = State::new(Some("IN".into()));
            let mut folded = History::default();
            log.replay(0, &mut |e| folded.fold(&mut state, &e)).unwrap();
            let tables = log.history().unwrap();
            assert_eq!(tables, folded, "the tables are the fold of the log");
            (tables, state)
        })
        .join()
        .unwrap()
    })
}

/// The tables alone (after a prune the log no longer folds).
fn tables(db: &std::path::Path) -> History {
    std::thread::scope(|s| {
        s.spawn(|| common::open_writer(db).history().unwrap())
            .join()
            .unwrap()
    })
}

/// Two sellers' conversations: Asha's on her number (a re-attach, a send with its
/// reports, a merge), Zoe's with John (several messages, then STOP), and Priya
/// writing to Zoe's number (Zoe's number, Asha's record: both see it).
async fn activity(relay: &Relay) {
    for (sid, from, to, body) in [
        ("SMs1", PRIYA, ASHA_ORG, "Hello"),
        ("SMj1", JOHN, ZOE_ORG, "Hi Zoe"),
        ("SMj2", JOHN, ZOE_ORG, "About the order"),
        ("SMj3", JOHN, ZOE_ORG, "Any news?"),
        ("SMp1", PRIYA, ZOE_ORG, "Is this Acme?"),
    ] {
        assert_eq!(relay.inbound(sid, from, to, body).await.status(), 200);
    }
    let mv = json!({"org_number": ASHA_ORG, "customer_number": PRIYA,
                    "from_record": "contact:priya", "to_record": "opportunity:sharma-q3"});
    let r = relay
        .post_json("/conversations/move", "asha", mv.clone())
        .await;
    assert!(r.status().is_success(), "move: {}", r.status());
    let r = relay
        .post_json(
            "/messages",
            "asha",
            json!({"from": ASHA_ORG, "to": PRIYA, "body": "Hi", "client_ref": "s-1",
                   "record_id": "contact:priya"}),
        )
        .await;
    assert!(r.status().is_success(), "send: {}", r.status());
    let sent: Value = r.json().await.unwrap();
    let sid = sent["message_sid"].as_str().expect("accepted").to_owned();
    for status in ["sent", "delivered"] {
        let r = relay.status_report(&sid, status, ASHA_ORG, PRIYA).await;
        assert_eq!(r.status(), 200);
    }
    // Onto the record holding the same numbers: a merge.
    let r = relay.post_json("/conversations/move", "asha", mv).await;
    assert!(r.status().is_success(), "merge: {}", r.status());
    // A consent change.
    assert_eq!(
        relay.inbound("SMj4", JOHN, ZOE_ORG, "STOP").await.status(),
        200
    );
}

/// `GET /snapshot` as `seller`, its lines parsed.
async fn snapshot(relay: &Relay, seller: &str, query: &str) -> Vec<SnapshotLine> {
    let r = relay
        .http
        .get(format!("{}/snapshot{query}", relay.url))
        .bearer_auth(format!("{seller}-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let body = r.text().await.unwrap();
    assert!(body.ends_with('\n'), "every line ends with a newline");
    body.lines()
        .map(|l| serde_json::from_str::<SnapshotLine>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The message ids a seller's events carry (what `/events` delivers them).
async fn delivered_ids(relay: &Relay, seller: &str) -> BTreeSet<String> {
    relay
        .events(seller)
        .await
        .iter()
        .filter_map(|e| match e["kind"].as_str() {
            Some("inbound") => e["message_sid"].as_str().map(str::to_owned),
            Some("outbound") => e["client_ref"].as_str().map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// What a snapshot holds: its position, and per conversation (key order) the
/// conversation line's messages, the older ones, and the line itself.
struct Taken {
    epoch: String,
    position: String,
    directory: Value,
    conversations: Vec<sms_core::protocol::SnapshotConversation>,
    older: BTreeMap<ConversationKey, Vec<HistoryMessage>>,
}

fn key_of(org: &str, customer: &str, record: &str) -> ConversationKey {
    ConversationKey::new(org, customer, record)
}

/// Checks the shape of a snapshot (start first, conversations, older, end last,
/// counts) and splits it.
fn taken(lines: &[SnapshotLine]) -> Taken {
    let Some(SnapshotLine::Start(start)) = lines.first() else {
        panic!("a start line first: {lines:?}");
    };
    let Some(SnapshotLine::End {
        conversations: end_conversations,
        messages: end_messages,
    }) = lines.last()
    else {
        panic!("an end line last: {lines:?}");
    };
    let mut conversations = Vec::new();
    let mut older: BTreeMap<ConversationKey, Vec<HistoryMessage>> = BTreeMap::new();
    let mut messages = 0;
    for line in &lines[1..lines.len() - 1] {
        match line {
            SnapshotLine::Conversations {
                conversations: list,
            } => {
                assert!(
                    older.is_empty(),
                    "older lines come after every conversation"
                );
                assert!(!list.is_empty());
                for c in list {
                    messages += c.messages.len() as u64;
                    conversations.push(c.clone());
                }
            }
            SnapshotLine::Older(o) => {
                assert!(!o.messages.is_empty());
                messages += o.messages.len() as u64;
                older
                    .entry(key_of(&o.org_number, &o.customer_number, &o.record_id))
                    .or_default()
                    .extend(o.messages.iter().cloned());
            }
            other => panic!("one start and one end only: {other:?}"),
        }
    }
    assert_eq!(
        start.conversations,
        conversations.len() as u64,
        "start's count"
    );
    assert_eq!(
        *end_conversations,
        conversations.len() as u64,
        "end's count"
    );
    assert_eq!(*end_messages, messages, "end's count of messages");
    assert!(
        start.position.starts_with(&format!("{}:", start.epoch)),
        "{}",
        start.position
    );
    Taken {
        epoch: start.epoch.clone(),
        position: start.position.clone(),
        directory: serde_json::to_value(&start.directory).unwrap(),
        conversations,
        older,
    }
}

/// Checks a seller's snapshot against the history and the state: exactly the
/// conversations they can see, in key order, each whole (latest `page`, then
/// older), with its last activity, rule, moves and consent.
fn check(t: &Taken, history: &History, state: &State, seller: &str, page: usize) {
    let visible: Vec<&ConversationKey> = history
        .conversations
        .keys()
        .filter(|k| state.can_see(seller, &k.org, Some(&k.record)))
        .collect();
    let got: Vec<ConversationKey> = t
        .conversations
        .iter()
        .map(|c| key_of(&c.org_number, &c.customer_number, &c.record_id))
        .collect();
    assert_eq!(
        got.iter().collect::<Vec<_>>(),
        visible,
        "{seller}: the conversations they can see, in key order"
    );
    for (c, key) in t.conversations.iter().zip(&got) {
        let h = &history.conversations[key];
        assert_eq!(
            (c.last, &c.rule, &c.moves),
            (h.last, &h.rule, &h.moves),
            "{seller}: {key:?}"
        );
        assert_eq!(c.consent, state.consent(&key.org, &key.customer), "{key:?}");
        let expected: Vec<HistoryMessage> = history.messages_of(key).into_iter().cloned().collect();
        let with_key = |list: &[HistoryMessage]| -> Vec<HistoryMessage> {
            list.iter()
                .cloned()
                .map(|mut m| {
                    m.conversation = key.clone();
                    m
                })
                .collect()
        };
        let latest = with_key(&c.messages);
        let older = with_key(t.older.get(key).map_or(&[][..], |o| &o[..]));
        assert_eq!(latest.len(), expected.len().min(page), "{key:?}: a page");
        assert_eq!(
            latest[..],
            expected[expected.len() - latest.len()..],
            "{key:?}: the latest page, oldest first"
        );
        assert_eq!(
            older[..],
            expected[..expected.len() - latest.len()],
            "{key:?}: the older messages, oldest first"
        );
    }
    for key in t.older.keys() {
        assert!(got.contains(key), "older lines of a listed conversation");
    }
}

#[tokio::test]
async fn each_seller_gets_the_history_they_can_see_at_one_position_and_after_a_prune() {
    let relay = Relay::start().await;
    activity(&relay).await;
    let (history, state) = history_and_state(&relay.db);
    let (epoch, head) = relay.head().await;

    let mut before = BTreeMap::new();
    for seller in ["asha", "zoe"] {
        let lines = snapshot(&relay, seller, "").await;
        let t = taken(&lines);
        check(&t, &history, &state, seller, 20);
        assert_eq!(t.epoch, epoch);
        assert_eq!(t.position, format!("{epoch}:{head}"), "the head");
        assert!(t.older.is_empty(), "every conversation fits a page of 20");
        let (_, d) = relay.get_as("/directory", seller).await;
        assert_eq!(
            t.directory, d["directory"],
            "{seller}: as /directory has it"
        );
        // The same messages as the seller's events carry.
        let ids: BTreeSet<String> = t
            .conversations
            .iter()
            .flat_map(|c| c.messages.iter().map(|m| m.id.clone()))
            .collect();
        assert_eq!(ids, delivered_ids(&relay, seller).await, "{seller}");
        before.insert(seller, lines);
    }

    // Different sights: Asha's number and record, Zoe's number; both see Priya on
    // Zoe's number (Zoe's number, a record of Asha's).
    let keys = |seller: &str| -> Vec<(String, String)> {
        taken(&before[seller])
            .conversations
            .iter()
            .map(|c| (c.org_number.clone(), c.customer_number.clone()))
            .collect()
    };
    assert_eq!(
        keys("asha"),
        [
            (ASHA_ORG.to_owned(), PRIYA.to_owned()),
            (ZOE_ORG.to_owned(), PRIYA.to_owned())
        ]
    );
    assert_eq!(
        keys("zoe"),
        [
            (ZOE_ORG.to_owned(), JOHN.to_owned()),
            (ZOE_ORG.to_owned(), PRIYA.to_owned())
        ]
    );
    let asha = taken(&before["asha"]);
    let merged = &asha.conversations[0];
    assert_eq!(merged.record_id, "opportunity:sharma-q3");
    assert_eq!(merged.moves.len(), 2, "a re-attach and a merge");
    assert!(merged.rule.is_some());
    let ids: Vec<&str> = merged.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["SMs1", "s-1"]);
    let sent = &merged.messages[1];
    assert_eq!(
        sent.delivery.as_ref().map(|d| d.status),
        Some(sms_core::delivery::DeliveryStatus::Delivered)
    );
    let zoe = taken(&before["zoe"]);
    let john = &zoe.conversations[0];
    assert_eq!(john.consent, Consent::OptedOut, "after STOP");
    assert_eq!(john.messages.len(), 4);

    // A page of 2: the latest two on the conversation line, the rest in older lines.
    let lines = snapshot(&relay, "zoe", "?page=2").await;
    let t = taken(&lines);
    check(&t, &history, &state, "zoe", 2);
    let john_key = key_of(ZOE_ORG, JOHN, &john.record_id);
    let ids = |list: &[HistoryMessage]| -> Vec<String> {
        list.iter().map(|m| m.id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&t.conversations[0].messages), ["SMj3", "SMj4"]);
    assert_eq!(ids(&t.older[&john_key]), ["SMj1", "SMj2"]);
    // Out of range pages are clamped.
    check(
        &taken(&snapshot(&relay, "zoe", "?page=0").await),
        &history,
        &state,
        "zoe",
        1,
    );
    check(
        &taken(&snapshot(&relay, "asha", "?page=5000").await),
        &history,
        &state,
        "asha",
        200,
    );

    // Prune everything: a client from the start needs the snapshot ...
    assert_eq!(relay.prune(head).await.0, 200);
    let r = relay
        .http
        .get(format!("{}/events?since=0", relay.url))
        .bearer_auth("zoe-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "snapshot_required");
    // ... which still has every message, at the same position.
    assert_eq!(tables(&relay.db), history, "pruning leaves the history");
    for seller in ["asha", "zoe"] {
        let after = snapshot(&relay, seller, "").await;
        assert_eq!(after, before[seller], "{seller}: the same snapshot");
    }
    // Streaming from its position delivers only what came after.
    let position = taken(&before["zoe"]).position;
    let mut stream = SseClient::connect(&relay.url, "zoe", Some(position.as_str())).await;
    assert_eq!(
        relay
            .inbound("SMlater", JOHN, ZOE_ORG, "Still there?")
            .await
            .status(),
        200
    );
    let first = stream
        .next(Duration::from_secs(10))
        .await
        .expect("the later event");
    assert_eq!(first.data["message_sid"], "SMlater", "{:?}", first.data);
    let id: i64 = first
        .id
        .as_deref()
        .and_then(|i| i.split_once(':'))
        .and_then(|(_, i)| i.parse().ok())
        .unwrap();
    assert!(id > head, "{id} after {head}");
}

#[tokio::test]
async fn a_snapshot_needs_a_seller() {
    let relay = Relay::start().await;
    let r = relay
        .http
        .get(format!("{}/snapshot", relay.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");
    let r = relay
        .http
        .get(format!("{}/snapshot", relay.url))
        .bearer_auth("nobody-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Snapshots at once are capped (each holds a database reader while its client
    // reads): past the cap, 503 `snapshot_busy`.
    let all = relay.app().snapshots.available_permits() as u32;
    assert!(all >= 1);
    let held = relay
        .app()
        .snapshots
        .clone()
        .try_acquire_many_owned(all)
        .unwrap();
    let (status, body) = relay.get_as("/snapshot", "zoe").await;
    assert_eq!(
        (status, &body["code"]),
        (503, &json!("snapshot_busy")),
        "{body}"
    );
    drop(held);
    // A seller with nothing to see gets a whole, empty snapshot.
    let lines = snapshot(&relay, "ravi", "").await;
    let t = taken(&lines);
    assert!(t.conversations.is_empty());
    assert_eq!(lines.len(), 2, "start and end");
}

/// Records whose ids sort differently bytewise than in a natural-language collation.
const PREFIXES: [&str; 5] = ["a", "B", "_", "b", "A"];
const SMALL: usize = 450;
const BIG: usize = 2_500;

/// Many conversations and one long one, through the store's seam (each event with
/// the ops the core gives it). The long one's messages come three to a
/// millisecond with ids of mixed case: ties are ordered by id, bytewise.
fn fill(log: &mut dyn sms_relay::store::LogWriter) -> History {
    let mut state = State::new(Some("IN".into()));
    let directory: Directory = serde_json::from_value(json!({
        "sellers": [{"id": "asha", "name": "Asha"}],
        "org_numbers": [{"number": ASHA_ORG, "owner": {"seller": "asha"}}]
    }))
    .unwrap();
    let inbound = |sid: String, record: String, at: i64| {
        EventBody::Inbound(InboundEvent {
            body: format!("hi {sid}"),
            message_sid: sid,
            from: PRIYA.into(),
            to: ASHA_ORG.into(),
            media: Vec::new(),
            at: Timestamp::from_millis(at),
            record_id: record,
            rule: RouteRule::RecordType,
        })
    };
    let mut events = vec![EventBody::DirectoryReplaced(DirectoryReplacedEvent {
        directory,
    })];
    for i in 0..SMALL {
        let record = format!("{}-{i:03}", PREFIXES[i % PREFIXES.len()]);
        events.push(inbound(format!("SMc{i:03}"), record, 1_000 + i as i64));
    }
    for i in 0..BIG {
        let case = if i % 2 == 0 { "m" } else { "M" };
        events.push(inbound(
            format!("{case}{i:05}"),
            "big".into(),
            10_000 + (i / 3) as i64,
        ));
    }
    let mut folded = History::default();
    for batch in events.chunks(500) {
        log.begin(&[]).unwrap();
        for body in batch {
            folded.fold(&mut state, body);
            let event = NewEvent {
                audience: state.audience(body),
                history: history::ops(&state, body),
                dedupe: None,
                body: body.clone(),
            };
            log.append(&event).unwrap();
        }
        log.commit().unwrap();
    }
    folded
}

#[tokio::test]
async fn the_store_reads_a_snapshot_in_chunks_in_key_order_and_stops_when_the_client_goes() {
    let dir = tempfile::tempdir().unwrap();
    // Key order and ties are bytewise (Rust's) whatever the database's collation.
    let db = common::database_en_us(dir.path()).await;
    // Off the test's runtime: the store's calls block.
    std::thread::scope(|s| s.spawn(|| chunks_case(&db)).join().unwrap());
}

fn chunks_case(db: &std::path::Path) {
    let (mut log, reader) = common::open_store(db);
    let folded = fill(&mut *log);
    assert_eq!(log.history().unwrap(), folded);
    let head = reader.head().unwrap();
    let epoch = reader.epoch().unwrap();
    let keep: Keep = std::sync::Arc::new(|k: &ConversationKey| !k.record.starts_with('_'));
    let kept: Vec<&ConversationKey> = folded.conversations.keys().filter(|k| keep(k)).collect();
    assert_eq!(kept.len(), SMALL - SMALL / PREFIXES.len() + 1);

    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let (parts, read) = std::thread::scope(|s| {
        let reader = reader.clone();
        let keep = keep.clone();
        let read = s.spawn(move || reader.snapshot(20, keep, tx));
        let mut parts = Vec::new();
        while let Some(p) = rx.blocking_recv() {
            parts.push(p);
        }
        (parts, read.join().unwrap())
    });
    read.unwrap();
    assert_eq!(
        parts[0],
        SnapshotPart::Head {
            epoch: epoch.clone(),
            head,
            conversations: kept.len() as u64
        }
    );
    let mut listed = Vec::new();
    let mut older: Vec<(ConversationKey, Vec<HistoryMessage>)> = Vec::new();
    for p in &parts[1..] {
        match p {
            SnapshotPart::Conversations(list) => {
                assert!(older.is_empty());
                assert!(!list.is_empty() && list.len() <= SNAPSHOT_CHUNK);
                listed.extend(list.iter().cloned());
            }
            SnapshotPart::Older(key, messages) => {
                assert!(!messages.is_empty() && messages.len() <= SNAPSHOT_OLDER);
                older.push((key.clone(), messages.clone()));
            }
            SnapshotPart::Head { .. } => panic!("one head"),
        }
    }
    let chunks = parts
        .iter()
        .filter(|p| matches!(p, SnapshotPart::Conversations(_)))
        .count();
    assert_eq!(chunks, kept.len().div_ceil(SNAPSHOT_CHUNK));
    assert_eq!(
        listed.iter().map(|(c, _)| &c.key).collect::<Vec<_>>(),
        kept,
        "key order, bytewise"
    );
    for (c, messages) in &listed {
        assert_eq!(c, &folded.conversations[&c.key]);
        let expected: Vec<HistoryMessage> =
            folded.messages_of(&c.key).into_iter().cloned().collect();
        let page = expected.len().min(20);
        assert_eq!(
            messages[..],
            expected[expected.len() - page..],
            "{:?}",
            c.key
        );
    }
    let big = ConversationKey::new(ASHA_ORG, PRIYA, "big");
    assert_eq!(
        older.iter().map(|(k, m)| (k, m.len())).collect::<Vec<_>>(),
        [(&big, 1_000), (&big, 1_000), (&big, BIG - 20 - 2_000)],
        "only the long conversation has older messages, in pages"
    );
    let all: Vec<HistoryMessage> = older.into_iter().flat_map(|(_, m)| m).collect();
    let expected: Vec<HistoryMessage> = folded.messages_of(&big).into_iter().cloned().collect();
    assert_eq!(
        all[..],
        expected[..BIG - 20],
        "oldest first, ties by id bytewise"
    );

    // A client that goes after the head: the read ends, without an error.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let read = std::thread::scope(|s| {
        let reader = reader.clone();
        let read = s.spawn(move || reader.snapshot(20, keep, tx));
        assert!(matches!(
            rx.blocking_recv(),
            Some(SnapshotPart::Head { .. })
        ));
        drop(rx);
        read.join().unwrap()
    });
    read.unwrap();
}

/// PostgreSQL: a read that fails midway (its connection killed while the client is
/// slow) ends the body without its `end` line: the client sees it was cut.
#[tokio::test]
async fn a_snapshot_cut_midway_has_no_end_line() {
    if common::postgres_url().is_none() {
        return; // A SQLite read has no connection to kill.
    }
    let relay = Relay::start().await;
    // One long conversation of Asha's, written straight into the tables: older
    // lines enough to fill every buffer between the read and a client not reading.
    let body = "x".repeat(2_000);
    let message = json!({"id": "m", "direction": "inbound", "body": body, "media": [],
        "at": "2026-11-30T00:00:00Z", "provider_id": null, "by": null, "delivery": null});
    let sql = format!(
        "INSERT INTO history_conversations (org, customer, record, last_ms, rule, moves)
           VALUES ('{ASHA_ORG}', '{PRIYA}', 'contact:priya', 0, NULL, '[]');
         INSERT INTO history_messages (id, org, customer, record, at_ms, provider_id, outbound, message)
           SELECT 'm' || lpad(g::text, 6, '0'), '{ASHA_ORG}', '{PRIYA}', 'contact:priya', g, NULL,
                  false, '{message}' FROM generate_series(1, 30000) g;"
    );
    common::execute_sql(&relay.db, "", &sql).await;
    let r = relay
        .http
        .get(format!("{}/snapshot?page=1", relay.url))
        .bearer_auth("asha-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The read waits for the client, in its transaction: kill its connection.
    let db = relay.db.to_str().unwrap().to_owned();
    let admin = common::pg_client(&db).await;
    let mut killed = 0;
    // Only the snapshot's connection: idle in its transaction after reading messages
    // (a busy machine may take a while to get there).
    for _ in 0..400 {
        killed = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND state = 'idle in transaction'
                   AND query LIKE '%history_messages%'",
                &[],
            )
            .await
            .unwrap()
            .len();
        if killed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(killed, 1, "the snapshot's read, waiting for its client");
    let text = r.text().await.unwrap();
    let lines: Vec<SnapshotLine> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(matches!(lines.first(), Some(SnapshotLine::Start(_))));
    assert!(
        matches!(lines.last(), Some(SnapshotLine::Older(_))),
        "cut: no end line"
    );
    assert!(
        lines
            .iter()
            .filter(|l| matches!(l, SnapshotLine::Older(_)))
            .count()
            < 30,
        "cut before the last older line"
    );
    // Taken again, it is whole.
    let lines = snapshot(&relay, "asha", "?page=1").await;
    let t = taken(&lines);
    assert_eq!(t.older.values().map(Vec::len).sum::<usize>(), 29_999);
}
