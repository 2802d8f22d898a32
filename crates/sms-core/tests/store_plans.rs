//! The store's queries and commands as plans, run on the memory store: what each reads
//! and decides (the browser runs the same plans on IndexedDB).

use serde_json::json;
use sms_core::protocol::{SendAnswer, SendOutcome, SendRequest};
use sms_core::store::command::{
    GetRow, MarkRead, Outbox, QueueSend, SendUnreachable, SettleSend, Templates,
};
use sms_core::store::query::{
    Export, History, QueryError, RecordConversations, Related, RoutePreview, Seed, SeedFrom,
};
use sms_core::store::rows::*;
use sms_core::store::{Facts, MemoryStore, Row, Table, Write};

fn row<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("row")
}

fn record(id: &str, kind: &str, owner: &str, phones: &[&str], related: &[&str]) -> Row {
    Row::Record(StoredRecord {
        record: row(
            json!({"id": id, "kind": kind, "owner": {"seller": owner}, "phones": phones,
            "name": id.to_uppercase(), "related": related}),
        ),
        phone_keys: phones.iter().map(|p| p.to_string()).collect(),
    })
}

fn conversation(record_id: &str, org: &str, customer: &str, last_ms: f64) -> StoredConversation {
    let mut c = new_conversation(org, customer, record_id, None);
    c.last_ms = last_ms;
    c
}

fn message(conversation_id: &str, id: &str, at_ms: f64) -> Row {
    Row::Message(row(
        json!({"id": id, "conversation_id": conversation_id, "at_ms": at_ms,
        "direction": "inbound", "body": id}),
    ))
}

/// Zoe owns `+15550000001`; Ann owns `+15550000009`.
fn store() -> (MemoryStore, Facts) {
    let mut s = MemoryStore::new();
    let rows = vec![
        Row::Seller(row(json!({"id": "zoe"}))),
        Row::OrgNumber(row(
            json!({"number": "+15550000001", "owner": {"seller": "zoe"}}),
        )),
        Row::OrgNumber(row(
            json!({"number": "+15550000009", "owner": {"seller": "ann"}}),
        )),
        record("contact:1", "contact", "zoe", &["+15551110001"], &[]),
        record("opp:1", "opportunity", "zoe", &[], &["contact:1"]),
        record("contact:2", "contact", "ann", &["+15551110002"], &[]),
        record("contact:3", "contact", "zoe", &[], &[]),
    ];
    s.write(rows.into_iter().map(Write::Put).collect())
        .expect("seed");
    let facts = s.facts("zoe", Some("US"));
    (s, facts)
}

#[test]
fn a_history_page_is_the_newest_messages_oldest_first_and_says_whether_more_remain() {
    let (mut s, _) = store();
    let c = conversation("contact:1", "+15550000001", "+15551110001", 0.0);
    let mut rows = vec![Write::Put(Row::Conversation(c.clone()))];
    for (i, at) in [1.0, 2.0, 2.0, 3.0, 4.0].iter().enumerate() {
        rows.push(Write::Put(message(&c.id, &format!("m{i}"), *at)));
    }
    rows.push(Write::Put(message("other", "x", 5.0)));
    s.write(rows).unwrap();
    let ids =
        |p: &History| -> Vec<String> { p.page.messages.iter().map(|m| m.id.clone()).collect() };

    let mut newest = History::new(&c.id, None, 2);
    s.execute(&mut newest).unwrap();
    assert_eq!(ids(&newest), ["m3", "m4"]);
    assert!(newest.page.has_more);

    let mut older = History::new(&c.id, Some(3.0), 2);
    s.execute(&mut older).unwrap();
    assert_eq!(ids(&older), ["m1", "m2"]);
    assert!(older.page.has_more);

    let mut all = History::new(&c.id, Some(3.0), 3);
    s.execute(&mut all).unwrap();
    assert_eq!(ids(&all), ["m0", "m1", "m2"]);
    assert!(!all.page.has_more);
}

#[test]
fn the_pane_opens_from_a_record_on_a_new_conversation_from_the_sellers_number() {
    let (mut s, facts) = store();
    let from = SeedFrom::Record {
        record_id: "contact:1".into(),
        customer: None,
    };
    let mut seed = Seed::new(from, 20, "zoe", &facts);
    s.execute(&mut seed).unwrap();
    let seed = seed.seed.unwrap().expect("a seed");
    assert_eq!(seed.conversation.org_number, "+15550000001");
    assert_eq!(seed.conversation.customer_number, "+15551110001");
    assert_eq!(seed.record.unwrap().id, "contact:1");
    // opp:1 names contact:1: found through the relation index.
    assert_eq!(
        seed.related.iter().map(|r| &*r.id).collect::<Vec<_>>(),
        ["opp:1"]
    );
    assert_eq!(seed.org_numbers.len(), 2);
    assert_eq!(seed.me.unwrap().id, "zoe");
}

#[test]
fn the_pane_opens_on_the_latest_conversation_with_that_number_with_its_draft_and_queue() {
    let (mut s, facts) = store();
    let old = conversation("contact:1", "+15550000009", "+15551110001", 1.0);
    let new = conversation("contact:1", "+15550000001", "+15551110001", 9.0);
    let entry: OutboxEntry = row(json!({"client_ref": "r1", "from": "+15550000001",
        "to": "+15551110001", "body": "hi", "record_id": "contact:1"}));
    s.write(vec![
        Write::Put(Row::Conversation(old)),
        Write::Put(Row::Conversation(new.clone())),
        Write::Put(Row::Draft(Draft {
            conversation_id: new.id.clone(),
            text: "draft".into(),
        })),
        Write::Put(Row::Outbox(entry)),
        Write::Put(message(&new.id, "m1", 9.0)),
    ])
    .unwrap();
    let from = SeedFrom::Record {
        record_id: "contact:1".into(),
        customer: Some("(555) 111-0001".into()),
    };
    let mut seed = Seed::new(from, 20, "zoe", &facts);
    s.execute(&mut seed).unwrap();
    let seed = seed.seed.unwrap().unwrap();
    assert_eq!(seed.conversation.id, new.id);
    assert_eq!(seed.draft, "draft");
    assert_eq!(seed.queued, ["r1"]);
    assert_eq!(seed.first_page.messages.len(), 1);

    let mut by_id = Seed::new(SeedFrom::Conversation(new.id.clone()), 20, "zoe", &facts);
    s.execute(&mut by_id).unwrap();
    assert_eq!(by_id.seed.unwrap().unwrap().conversation, seed.conversation);
}

#[test]
fn a_seed_says_why_it_cannot_open() {
    let (mut s, facts) = store();
    let seed = |s: &mut MemoryStore, from| {
        let mut plan = Seed::new(from, 20, "zoe", &facts);
        s.execute(&mut plan).unwrap();
        plan.seed
    };
    let from = |id: &str, customer: Option<&str>| SeedFrom::Record {
        record_id: id.into(),
        customer: customer.map(Into::into),
    };
    assert_eq!(
        seed(&mut s, from("contact:3", None)).unwrap_err(),
        QueryError::NoPhone
    );
    assert_eq!(
        seed(&mut s, from("contact:1", Some("12")))
            .unwrap_err()
            .code(),
        "invalid_number"
    );
    assert!(seed(&mut s, from("nobody", None)).unwrap().is_none());
    assert!(seed(&mut s, SeedFrom::Conversation("none".into()))
        .unwrap()
        .is_none());
    // A seller with no org number of their own cannot start a conversation.
    let facts = s.facts("bob", Some("US"));
    let mut plan = Seed::new(from("contact:1", None), 20, "bob", &facts);
    s.execute(&mut plan).unwrap();
    assert_eq!(plan.seed.unwrap_err(), QueryError::NoOrgNumber);
}

#[test]
fn an_export_holds_every_message_and_is_refused_for_a_conversation_the_seller_cannot_see() {
    let (mut s, facts) = store();
    let mine = conversation("contact:1", "+15550000001", "+15551110001", 2.0);
    let theirs = conversation("contact:2", "+15550000009", "+15551110002", 2.0);
    s.write(vec![
        Write::Put(Row::Conversation(mine.clone())),
        Write::Put(Row::Conversation(theirs.clone())),
        Write::Put(message(&mine.id, "b", 2.0)),
        Write::Put(message(&mine.id, "a", 1.0)),
    ])
    .unwrap();
    let mut export = Export::new(&mine.id, &facts);
    s.execute(&mut export).unwrap();
    let export = export.export.unwrap().unwrap();
    assert_eq!(
        export.messages.iter().map(|m| &*m.id).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let mut refused = Export::new(&theirs.id, &facts);
    s.execute(&mut refused).unwrap();
    assert_eq!(refused.export.unwrap_err(), QueryError::NotVisible);
}

#[test]
fn a_contacts_conversations_include_its_opportunities_and_only_visible_ones() {
    let (mut s, facts) = store();
    let a = conversation("contact:1", "+15550000001", "+15551110001", 1.0);
    let b = conversation("opp:1", "+15550000001", "+15551110001", 5.0);
    let hidden = conversation("contact:1", "+15550000009", "+15551110001", 9.0);
    for c in [&a, &b, &hidden] {
        s.write(vec![Write::Put(Row::Conversation(c.clone()))])
            .unwrap();
    }
    let mut plan = RecordConversations::new("contact:1", &facts);
    s.execute(&mut plan).unwrap();
    let ids: Vec<_> = plan
        .conversations
        .iter()
        .map(|c| &*c.conversation.id)
        .collect();
    // Ann's number on Zoe's record is visible to Zoe (her record), newest first.
    assert_eq!(ids, [&*hidden.id, &*b.id, &*a.id]);
    assert_eq!(plan.conversations[1].record_name, "OPP:1");

    let mut related = Related::new("opp:1");
    s.execute(&mut related).unwrap();
    assert_eq!(related.related[0].id, "contact:1");
}

#[test]
fn the_route_preview_routes_like_the_relay() {
    let (mut s, _) = store();
    let mut plan = RoutePreview::new("+15551110001".into(), "+15550000001".into());
    s.execute(&mut plan).unwrap();
    let decision = plan.decision.unwrap();
    assert_eq!(decision.record_id(), "contact:1");
}

fn send(client_ref: &str, body: &str) -> OutboxEntry {
    OutboxEntry {
        request: SendRequest {
            client_ref: client_ref.into(),
            from: "+1 555 000 0001".into(),
            to: "(555) 111-0001".into(),
            body: body.into(),
            record_id: Some("contact:1".into()),
        },
        queued_ms: 7.0,
        attempts: 0,
    }
}

#[test]
fn queueing_a_send_writes_the_message_the_outbox_and_the_conversation_once() {
    let (mut s, facts) = store();
    let mut plan = QueueSend::new(send("r1", "hello"), &facts);
    assert!(s.execute(&mut plan).unwrap());
    let id = plan.outcome.unwrap();
    let mut outbox = Outbox::default();
    s.execute(&mut outbox).unwrap();
    assert_eq!(outbox.entries[0].request.to, "+15551110001");
    assert_eq!(outbox.entries[0].request.from, "+15550000001");
    let mut conv = GetRow::new(Table::Conversations, &id);
    s.execute(&mut conv).unwrap();
    let conv = conv.row.and_then(Row::conversation).unwrap();
    assert_eq!((conv.last_ms, &*conv.preview), (7.0, "hello"));

    // The same client reference again (a retried call) writes nothing.
    let mut again = QueueSend::new(send("r1", "hello"), &facts);
    assert!(!s.execute(&mut again).unwrap());
    assert_eq!(again.outcome.unwrap(), id);
}

#[test]
fn a_refused_send_writes_nothing_and_says_why() {
    let (mut s, facts) = store();
    let mut empty = QueueSend::new(send("r1", "  "), &facts);
    assert!(!s.execute(&mut empty).unwrap());
    assert_eq!(empty.outcome.unwrap_err().code(), "empty_message");
    let mut entry = send("r2", "hi");
    entry.request.from = "+15550000009".into();
    let mut theirs = QueueSend::new(entry, &facts);
    assert!(!s.execute(&mut theirs).unwrap());
    assert_eq!(theirs.outcome.unwrap_err().code(), "not_your_number");
    let mut entry = send("r3", "hi");
    entry.request.record_id = None;
    let mut no_record = QueueSend::new(entry, &facts);
    s.execute(&mut no_record).unwrap();
    assert_eq!(no_record.outcome.unwrap_err().code(), "no_record");
}

#[test]
fn settling_a_send_takes_the_report_that_came_first() {
    let (mut s, facts) = store();
    s.execute(&mut QueueSend::new(send("r1", "hi"), &facts))
        .unwrap();
    s.execute(&mut SendUnreachable("r1")).unwrap();
    let mut outbox = Outbox::default();
    s.execute(&mut outbox).unwrap();
    assert_eq!(outbox.entries[0].attempts, 1);
    s.write(vec![Write::Put(Row::PendingReport(row(json!({
        "message_sid": "SM1", "delivery": {"status": "delivered"}
    }))))])
    .unwrap();
    let answer = SendAnswer {
        client_ref: "r1".into(),
        outcome: SendOutcome::Accepted,
        message_sid: Some("SM1".into()),
        ..row(json!({"outcome": "accepted"}))
    };
    s.execute(&mut SettleSend::new("r1", &answer)).unwrap();
    let m = s
        .rows(Table::Messages)
        .next()
        .cloned()
        .and_then(Row::message)
        .unwrap();
    assert_eq!(m.provider_id.as_deref(), Some("SM1"));
    assert_eq!(
        serde_json::to_value(m.delivery.unwrap().status).unwrap(),
        "delivered"
    );
    assert_eq!(s.rows(Table::PendingReports).count(), 0);
    assert_eq!(s.rows(Table::Outbox).count(), 0);
}

#[test]
fn marking_read_clears_the_count_and_the_unread_notifications_only_of_that_conversation() {
    let (mut s, _) = store();
    let mut c = conversation("contact:1", "+15550000001", "+15551110001", 1.0);
    c.unread = 2;
    let note = |id: &str, conv: &str| {
        Write::Put(Row::Notification(row(
            json!({"id": id, "kind": "new_message",
            "conversation_id": conv, "text": "", "at_ms": 1.0, "unread": 1}),
        )))
    };
    s.write(vec![
        Write::Put(Row::Conversation(c.clone())),
        note("n1", &c.id),
        note("n2", "other"),
    ])
    .unwrap();
    assert!(s.execute(&mut MarkRead(&c.id)).unwrap());
    let unread: Vec<u8> = s
        .rows(Table::Notifications)
        .cloned()
        .filter_map(Row::notification)
        .map(|n| n.unread)
        .collect();
    assert_eq!(unread, [0, 1]);
    // Nothing left to mark: nothing written.
    assert!(!s.execute(&mut MarkRead(&c.id)).unwrap());
}

#[test]
fn templates_of_the_kind_and_language_come_first() {
    let (mut s, _) = store();
    let t = |id: &str, name: &str, category: &str, language: &str| {
        Write::Put(Row::Template(
            StoredTemplate {
                id: id.into(),
                name: name.into(),
                category: category.into(),
                language: language.into(),
                body: "x".into(),
            }
            .to_value(),
        ))
    };
    s.write(vec![
        t("1", "a", "lead", "en"),
        t("2", "b", "contact", "hi"),
        t("3", "c", "contact", "en"),
    ])
    .unwrap();
    let mut plan = Templates::new(Some("contact".into()), Some("en".into()));
    s.execute(&mut plan).unwrap();
    let names: Vec<_> = plan.list.iter().map(|t| &*t.name).collect();
    assert_eq!(names, ["c", "b", "a"]);
}

#[test]
fn a_run_writes_the_position_once_at_its_last_event() {
    use sms_core::protocol::LoggedEvent;
    use sms_core::store::run::RunPlan;
    use sms_core::store::{Next, Plan};
    let (s, facts) = store();
    let events: Vec<LoggedEvent> = (1..=3)
        .map(|i| {
            row(
                json!({"epoch": "e1", "id": i, "kind": "inbound", "message_sid": format!("SM{i}"),
                "from": "+15551110001", "to": "+15550000001", "body": format!("m{i}"), "media": [],
                "at": "2026-11-30T10:00:00Z", "record_id": "contact:1", "rule": "only_match"}),
            )
        })
        .collect();
    let mut plan = RunPlan::new(&events, None, &facts, None);
    let mut reads = plan.start();
    let writes = loop {
        let got = reads.iter().map(|r| s.read(r)).collect();
        match plan.step(got) {
            Next::Read(more) => reads = more,
            Next::Write(writes) => break writes,
        }
    };
    let positions: Vec<i64> = writes
        .iter()
        .filter_map(|w| match w {
            Write::Put(Row::Position(p)) => Some(p.id),
            _ => None,
        })
        .collect();
    assert_eq!(positions, [3]);
    assert_eq!(plan.outcomes.len(), 3);
}

#[test]
fn a_record_with_one_number_written_twice_is_found_once() {
    use sms_core::store::{Index, Key, KeyRange, Read};
    let (mut s, _) = store();
    s.write(vec![Write::Put(record(
        "contact:9",
        "contact",
        "zoe",
        &["+15551119999", "+15551119999"],
        &[],
    ))])
    .unwrap();
    let got = s.read(&Read::All(
        Index::RecordsByPhone,
        KeyRange::only(Key::str("+15551119999")),
    ));
    assert_eq!(
        got.many().len(),
        1,
        "IndexedDB keeps one entry per distinct value"
    );
}

#[test]
fn a_snapshot_stores_conversations_then_older_messages_keeping_local_read_marks() {
    use sms_core::protocol::{SnapshotConversation, SnapshotOlder};
    use sms_core::relay::history::HistoryMessage;
    use sms_core::store::snapshot::{older_writes, position_write, SnapshotConversations};
    let msg = |id: &str, at: i64, outbound: bool| -> HistoryMessage {
        let mut m: HistoryMessage = row(json!({
            "id": id, "direction": if outbound { "outbound" } else { "inbound" },
            "body": format!("body {id}"), "media": [], "at": at,
            "provider_id": if outbound { serde_json::Value::Null } else { json!(id) },
            "by": if outbound { json!("zoe") } else { serde_json::Value::Null },
            "delivery": if outbound { json!({"status": "delivered"}) } else { serde_json::Value::Null },
        }));
        m.conversation = Default::default();
        m
    };
    let line = |record: &str, customer: &str, messages: Vec<HistoryMessage>| SnapshotConversation {
        org_number: "+15550000001".into(),
        customer_number: customer.into(),
        record_id: record.into(),
        last: sms_core::Timestamp::from_millis(messages.last().unwrap().at.as_millis()),
        rule: Some(sms_core::routing::RouteRule::NewLead),
        moves: Vec::new(),
        consent: sms_core::consent::Consent::OptedOut,
        messages,
    };
    let (mut s, _) = store();
    // contact:3's conversation is already on this device, read up to now.
    let held = conversation("contact:3", "+15550000001", "+15551110003", 1.0);
    s.write(vec![Write::Put(Row::Conversation(held.clone()))])
        .unwrap();
    let lines = [
        // The customer wrote twice after the seller's reply: two waiting.
        line(
            "contact:1",
            "+15551110001",
            vec![
                msg("m1", 10, false),
                msg("r1", 20, true),
                msg("m2", 30, false),
                msg("m3", 40, false),
            ],
        ),
        line("contact:3", "+15551110003", vec![msg("m9", 50, false)]),
    ];
    let mut plan = SnapshotConversations::new(&lines);
    s.execute(&mut plan).unwrap();
    let c1 = conversation_id("+15550000001", "+15551110001", "contact:1");
    assert_eq!(plan.stored, [c1.clone(), held.id.clone()]);
    let stored = |s: &MemoryStore, id: &str| -> StoredConversation {
        s.rows(Table::Conversations)
            .find_map(|r| match r {
                Row::Conversation(c) if c.id == id => Some(c.clone()),
                _ => None,
            })
            .unwrap()
    };
    let c = stored(&s, &c1);
    assert_eq!(
        (c.unread, c.last_ms, c.preview.as_str()),
        (2, 40.0, "body m3")
    );
    assert_eq!(c.consent, sms_core::consent::Consent::OptedOut);
    assert_eq!(c.rule, Some(sms_core::routing::RouteRule::NewLead));
    assert_eq!(
        stored(&s, &held.id).unread,
        0,
        "this device's read mark stays"
    );

    // Older messages land in the same conversation; the position comes last.
    let older = SnapshotOlder {
        org_number: "+15550000001".into(),
        customer_number: "+15551110001".into(),
        record_id: "contact:1".into(),
        messages: vec![msg("m0", 5, false)],
    };
    let mut w = older_writes(&older);
    w.push(position_write("e1", 77));
    s.write(w).unwrap();
    let mut all = History::new(&c1, None, 50);
    s.execute(&mut all).unwrap();
    let ids: Vec<&str> = all.page.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["m0", "m1", "r1", "m2", "m3"]);
    let reply = &all.page.messages[2];
    assert_eq!(
        reply.client_ref.as_deref(),
        Some("r1"),
        "an outbound message is its client_ref"
    );
    assert!(s
        .rows(Table::Meta)
        .any(|r| matches!(r, Row::Position(p) if p.id == 77 && p.epoch == "e1")));
}

#[test]
fn after_a_snapshot_what_it_no_longer_has_goes_unless_a_send_to_it_waits() {
    use sms_core::store::snapshot::SnapshotPrune;
    let (mut s, _) = store();
    let kept = conversation("contact:1", "+15550000001", "+15551110001", 1.0);
    let moved = conversation("contact:3", "+15550000001", "+15551110001", 2.0);
    let waiting = conversation("contact:2", "+15550000001", "+15551110002", 3.0);
    let mut w: Vec<Write> = [&kept, &moved, &waiting]
        .iter()
        .map(|c| Write::Put(Row::Conversation((*c).clone())))
        .collect();
    w.push(Write::Put(message(&kept.id, "k1", 1.0)));
    w.push(Write::Put(message(&moved.id, "m1", 2.0)));
    w.push(Write::Put(Row::Notification(row(
        json!({"id": "m1", "kind": "new_message",
        "conversation_id": moved.id, "text": "m1", "at_ms": 2.0, "unread": 1}),
    ))));
    let mut out = send("r9", "Still going out");
    out.request.from = "+15550000001".into();
    out.request.to = "+15551110002".into();
    out.request.record_id = Some("contact:2".into());
    w.push(Write::Put(Row::Outbox(out)));
    s.write(w).unwrap();

    let snapshot: std::collections::HashSet<String> = [kept.id.clone()].into();
    s.execute(&mut SnapshotPrune::new(&snapshot)).unwrap();
    let ids = |t: Table| -> Vec<String> {
        let mut v: Vec<String> = s
            .rows(t)
            .map(|r| match r {
                Row::Conversation(c) => c.id.clone(),
                Row::Message(m) => m.id.clone(),
                Row::Notification(n) => n.id.clone(),
                _ => String::new(),
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(Table::Conversations), {
        let mut v = vec![kept.id.clone(), waiting.id.clone()];
        v.sort();
        v
    });
    assert_eq!(ids(Table::Messages), ["k1"]);
    assert!(ids(Table::Notifications).is_empty());
}
