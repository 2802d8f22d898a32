//! The per-conversation history (issue 17 item 2) on either backend: the tables
//! equal the core's fold of the log (moves, merges, delivery reports before their
//! message, statuses only moving forward), and pruning the log leaves them intact.

mod common;

use common::Relay;
use serde_json::json;
use sms_core::delivery::{Delivery, DeliveryStatus};
use sms_core::protocol::events::*;
use sms_core::protocol::{Directory, EventBody, SendOutcome};
use sms_core::relay::history::{self, ConversationKey, History, HistoryMessage};
use sms_core::relay::State;
use sms_core::routing::RouteRule;
use sms_core::Timestamp;
use sms_relay::store::{LogWriter, NewEvent};

const ASHA_ORG: &str = "+14155550100";
const PRIYA: &str = "+919812345678";

/// The history the core folds from the log the store holds.
fn fold(log: &mut dyn LogWriter) -> History {
    let mut state = State::new(Some("IN".into()));
    let mut h = History::default();
    log.replay(0, &mut |e| h.fold(&mut state, &e)).unwrap();
    h
}

/// The tables and the fold of the log, read by a writer on a thread of its own (as
/// the sequencer's).
fn tables_and_fold(db: &std::path::Path) -> (History, History) {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut log = common::open_writer(db);
            (log.history().unwrap(), fold(&mut *log))
        })
        .join()
        .unwrap()
    })
}

fn key(record: &str) -> ConversationKey {
    ConversationKey::new(ASHA_ORG, PRIYA, record)
}

/// Appends `events` through the store's seam, each with the ops the core gives it.
fn append(log: &mut dyn LogWriter, state: &mut State, events: Vec<EventBody>) {
    log.begin(&[]).unwrap();
    for body in events {
        state.apply(&body);
        let event = NewEvent {
            audience: state.audience(&body),
            history: history::ops(state, &body),
            dedupe: None,
            body,
        };
        log.append(&event).unwrap();
    }
    log.commit().unwrap();
}

#[tokio::test]
async fn the_tables_equal_the_fold_of_the_log_with_a_merge_and_an_early_report() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::database(dir.path()).await;
    std::thread::scope(|s| s.spawn(|| merge_case(&db)).join().unwrap());
}

fn merge_case(db: &std::path::Path) {
    let mut log = common::open_writer(db);
    let mut state = State::new(Some("IN".into()));
    let directory: Directory = serde_json::from_value(json!({
        "sellers": [{"id": "asha", "name": "Asha"}],
        "org_numbers": [{"number": ASHA_ORG, "owner": {"seller": "asha"}}],
        "records": [
            {"id": "a", "kind": "contact", "owner": {"seller": "asha"}, "phones": [PRIYA]},
            {"id": "b", "kind": "contact", "owner": {"seller": "asha"}, "phones": [PRIYA]}
        ]
    }))
    .unwrap();
    let t = Timestamp::from_millis;
    let inbound = |sid: &str, record: &str, at| {
        EventBody::Inbound(InboundEvent {
            message_sid: sid.into(),
            from: PRIYA.into(),
            to: ASHA_ORG.into(),
            body: format!("hi {sid}"),
            media: Vec::new(),
            at: t(at),
            record_id: record.into(),
            rule: RouteRule::RecentConversation,
        })
    };
    let outbound = |client_ref: &str, sid: &str, record: &str, at| {
        EventBody::Outbound(OutboundEvent {
            client_ref: client_ref.into(),
            message_sid: Some(sid.into()),
            from: ASHA_ORG.into(),
            to: PRIYA.into(),
            body: "hello".into(),
            record_id: record.into(),
            by: "asha".into(),
            at: t(at),
            outcome: SendOutcome::Accepted,
            error_code: None,
        })
    };
    let report = |sid: &str, status, at| {
        EventBody::Delivery(DeliveryEvent {
            message_sid: sid.into(),
            status,
            error_code: None,
            error_message: None,
            from: ASHA_ORG.into(),
            to: PRIYA.into(),
            at: t(at),
        })
    };
    use DeliveryStatus::*;
    append(
        &mut *log,
        &mut state,
        vec![
            EventBody::DirectoryReplaced(DirectoryReplacedEvent { directory }),
            inbound("SM1", "a", 1_000),
            // A report before its message (D2), and one that never finds its message.
            report("SM3", Delivered, 1_500),
            report("SMlost", Sent, 1_600),
        ],
    );
    append(
        &mut *log,
        &mut state,
        vec![
            inbound("SM2", "b", 2_000),
            outbound("r1", "SM3", "a", 3_000),
            outbound("r2", "SM4", "b", 3_100),
            report("SM4", Delivered, 3_200),
            report("SM4", Sent, 3_300),
            // Onto a record holding the same numbers: a merge.
            EventBody::ConversationMoved(ConversationMovedEvent {
                org_number: ASHA_ORG.into(),
                customer_number: PRIYA.into(),
                from_record: "a".into(),
                to_record: "b".into(),
                by: "asha".into(),
                at: t(4_000),
            }),
        ],
    );
    let tables = log.history().unwrap();
    assert_eq!(tables, fold(&mut *log));
    assert_eq!(
        tables.conversations.keys().collect::<Vec<_>>(),
        [&key("b")],
        "merged into one"
    );
    let ids: Vec<&str> = tables
        .messages_of(&key("b"))
        .iter()
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(ids, ["SM1", "SM2", "r1", "r2"]);
    assert_eq!(
        tables.messages["r1"].delivery,
        Some(Delivery::new(Delivered))
    );
    assert_eq!(
        tables.messages["r2"].delivery,
        Some(Delivery::new(Delivered)),
        "a late sent does not move it back"
    );
    assert_eq!(
        tables.pending.keys().collect::<Vec<_>>(),
        ["SMlost"],
        "the early report was folded in"
    );
    let b = &tables.conversations[&key("b")];
    assert_eq!(
        b.rule,
        Some(RouteRule::RecentConversation),
        "the rule stays"
    );
    assert_eq!(
        b.moves
            .iter()
            .map(|m| (m.from_record.as_str(), m.to_record.as_str(), m.at))
            .collect::<Vec<_>>(),
        [("a", "b", t(4_000))],
        "the merge is in the target's moves"
    );
}

/// Messages, a send with its reports, a re-attach and a merge, through the relay.
async fn activity(relay: &Relay) {
    assert_eq!(
        relay
            .inbound("SMh1", PRIYA, ASHA_ORG, "Hello")
            .await
            .status(),
        200
    );
    let mv = json!({"org_number": ASHA_ORG, "customer_number": PRIYA,
                    "from_record": "contact:priya", "to_record": "opportunity:sharma-q3"});
    let r = relay
        .post_json("/conversations/move", "asha", mv.clone())
        .await;
    assert!(r.status().is_success(), "move: {}", r.status());
    // A conversation on the contact again, then moved onto the opportunity: a merge.
    let r = relay
        .post_json(
            "/messages",
            "asha",
            json!({"from": ASHA_ORG, "to": PRIYA, "body": "Hi", "client_ref": "h-1",
                   "record_id": "contact:priya"}),
        )
        .await;
    assert!(r.status().is_success(), "send: {}", r.status());
    let sent: serde_json::Value = r.json().await.unwrap();
    let sid = sent["message_sid"].as_str().expect("accepted").to_owned();
    for status in ["delivered", "sent"] {
        let r = relay.status_report(&sid, status, ASHA_ORG, PRIYA).await;
        assert_eq!(r.status(), 200);
    }
    let r = relay.post_json("/conversations/move", "asha", mv).await;
    assert!(r.status().is_success(), "merge: {}", r.status());
}

#[tokio::test]
async fn the_history_follows_the_relay_and_survives_pruning_and_a_restart() {
    let relay = Relay::start().await;
    activity(&relay).await;
    let (before, folded) = tables_and_fold(&relay.db);
    assert_eq!(before, folded);
    let opportunity = key("opportunity:sharma-q3");
    assert_eq!(
        before.conversations.keys().collect::<Vec<_>>(),
        [&opportunity]
    );
    let ids: Vec<&str> = before
        .messages_of(&opportunity)
        .iter()
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(ids, ["SMh1", "h-1"]);
    assert_eq!(
        before.messages["h-1"].delivery.as_ref().map(|d| d.status),
        Some(DeliveryStatus::Delivered)
    );
    // The re-attach, then the merge: both moves, the inbound message's rule.
    let c = &before.conversations[&opportunity];
    assert_eq!(
        c.moves
            .iter()
            .map(|m| (m.from_record.as_str(), m.to_record.as_str(), m.by.as_str()))
            .collect::<Vec<_>>(),
        [
            ("contact:priya", "opportunity:sharma-q3", "asha"),
            ("contact:priya", "opportunity:sharma-q3", "asha")
        ]
    );
    assert!(c.rule.is_some(), "{c:?}");

    let (_, head) = relay.head().await;
    assert_eq!(relay.prune(head).await.0, 200);
    let relay = relay.restart().await;
    let (after, _) = std::thread::scope(|s| {
        s.spawn(|| (common::open_writer(&relay.db).history().unwrap(), ()))
            .join()
            .unwrap()
    });
    assert_eq!(after, before, "pruning leaves the history");

    // The reads the snapshot pages with.
    let reader = relay.app().reader.clone();
    let key = opportunity.clone();
    let (conversations, rest, messages, latest) = tokio::task::spawn_blocking(move || {
        (
            reader.history_conversations(None, 10).unwrap(),
            reader.history_conversations(Some(&key), 10).unwrap(),
            reader.history_messages(&key, 10).unwrap(),
            reader.history_messages(&key, 1).unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(conversations, [before.conversations[&opportunity].clone()]);
    assert!(rest.is_empty());
    let all: Vec<HistoryMessage> = before
        .messages_of(&opportunity)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(messages, all);
    assert_eq!(latest, all[all.len() - 1..], "the latest page");
}

#[tokio::test]
async fn a_log_written_before_the_history_tables_fills_them_on_upgrade() {
    let relay = Relay::start().await;
    activity(&relay).await;
    let (before, _) = tables_and_fold(&relay.db);
    // The database as an older version left it: no history tables.
    let port = relay.running.as_ref().unwrap().addr.port();
    let mut relay = relay;
    relay.running.take().unwrap().stop().await;
    common::execute_sql(
        &relay.db,
        "DROP TABLE history_conversations; DROP TABLE history_messages;
         DROP TABLE history_pending; DELETE FROM meta WHERE key = 'history_filled';",
        "DROP TABLE history_conversations; DROP TABLE history_messages;
         DROP TABLE history_pending; DELETE FROM meta WHERE key = 'history_filled';
         DELETE FROM relay_migrations WHERE version = 3;",
    )
    .await;
    let relay = Relay::start_with(relay.dir, relay.db, port).await;
    let (after, folded) = tables_and_fold(&relay.db);
    assert_eq!(after, folded);
    assert_eq!(after, before);
    assert_eq!(after.messages.len(), 2);
}
