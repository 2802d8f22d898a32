//! The IndexedDB store in a real browser: every ingest path, visibility, moves,
//! paging, persistence, epochs. A unique database per test, deleted afterwards.

#![cfg(target_arch = "wasm32")]

use sms_core::protocol::events::*;
use std::cell::Cell;

use sms_core::delivery::DeliveryStatus;
use sms_core::directory::{OrgNumber, Owner, Record, RecordKind, Team};
use sms_core::protocol::{Directory, EventBody, LoggedEvent, Seller, SendOutcome};
use sms_core::routing::RouteRule;
use sms_core::Timestamp;
use sms_module::store::records::NotificationKind;
use sms_module::store::{IdbStore, SellerContext};
use wasm_bindgen::JsCast as _;
use wasm_bindgen_test::wasm_bindgen_test as test;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const ORG: &str = "+14155550100";
const PRIYA: &str = "+919812345678";

thread_local!(static N: Cell<u32> = const { Cell::new(0) });

fn db_name() -> String {
    let n = N.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    format!("test-{}-{n}", js_sys::Date::now())
}

fn record(id: &str, kind: RecordKind, owner: Owner, phone: &str) -> Record {
    Record {
        id: id.into(),
        kind,
        owner: Some(owner),
        active: true,
        updated_at: None,
        phones: vec![phone.into()],
        name: id.into(),
        related: Vec::new(),
    }
}

fn directory() -> Directory {
    Directory {
        sellers: vec![
            Seller {
                id: "asha".into(),
                name: "Asha".into(),
                language: None,
                can_receive: true,
                active: true,
            },
            Seller {
                id: "meera".into(),
                name: "Meera".into(),
                language: None,
                can_receive: false,
                active: true,
            },
        ],
        teams: vec![Team {
            id: "north".into(),
            members: vec!["asha".into(), "meera".into()],
        }],
        org_numbers: vec![
            OrgNumber {
                number: ORG.into(),
                owner: Owner::Seller("asha".into()),
            },
            OrgNumber {
                number: "+14155550101".into(),
                owner: Owner::Team("north".into()),
            },
            OrgNumber {
                number: "+14155550102".into(),
                owner: Owner::Seller("zoe".into()),
            },
        ],
        records: vec![
            record(
                "contact:priya",
                RecordKind::Contact,
                Owner::Seller("asha".into()),
                "098123 45678",
            ),
            record(
                "account:sharma",
                RecordKind::Account,
                Owner::Seller("ravi".into()),
                PRIYA,
            ),
            record(
                "contact:john",
                RecordKind::Contact,
                Owner::Seller("zoe".into()),
                "+14155552671",
            ),
        ],
        templates: vec![],
    }
}

async fn open(name: &str, seller: &str) -> IdbStore {
    let ctx = SellerContext {
        seller: seller.into(),
        default_region: Some("IN".into()),
    };
    let store = IdbStore::open(name, ctx).await.expect("open");
    store
        .import_directory(&directory(), 2)
        .await
        .expect("import");
    store
}

struct Log {
    id: i64,
    epoch: String,
}

impl Log {
    fn new() -> Self {
        Self {
            id: 0,
            epoch: "e1".into(),
        }
    }

    fn next(&mut self, body: EventBody) -> LoggedEvent {
        self.id += 1;
        LoggedEvent {
            epoch: self.epoch.clone(),
            id: self.id,
            body,
        }
    }
}

fn inbound(
    sid: &str,
    from: &str,
    to: &str,
    body: &str,
    record: &str,
    rule: RouteRule,
    at_ms: i64,
) -> EventBody {
    EventBody::Inbound(InboundEvent {
        message_sid: sid.into(),
        from: from.into(),
        to: to.into(),
        body: body.into(),
        media: vec![],
        at: Timestamp::from_millis(at_ms),
        record_id: record.into(),
        rule,
    })
}

async fn cleanup(store: IdbStore, name: &str) {
    store.close();
    let _ = indexed_db_futures::database::Database::delete_by_name(name);
}

#[test]
async fn inbound_to_a_known_record_notifies_and_dedupes() {
    let name = db_name();
    let store = open(&name, "asha").await;
    let mut log = Log::new();
    let e = log.next(inbound(
        "SM1",
        PRIYA,
        ORG,
        "Namaste",
        "contact:priya",
        RouteRule::RecordType,
        1000,
    ));
    let out = store.ingest(&e).await.unwrap();
    assert!(!out.duplicate);
    assert_eq!(out.record_id.as_deref(), Some("contact:priya"));
    let n = out.notification.expect("notified");
    assert_eq!(n.kind, NotificationKind::NewMessage);
    // The same event again: nothing changes.
    assert!(store.ingest(&e).await.unwrap().duplicate);
    // The same message under a new event id (a provider retry): stored once.
    let again = log.next(inbound(
        "SM1",
        PRIYA,
        ORG,
        "Namaste",
        "contact:priya",
        RouteRule::RecordType,
        1000,
    ));
    assert!(store.ingest(&again).await.unwrap().duplicate);
    let convs = store.conversations().await.unwrap();
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0].conversation.unread, 1);
    assert_eq!(convs[0].conversation.rule, Some(RouteRule::RecordType));
    assert_eq!(
        store
            .history(&convs[0].conversation.id, None, 50)
            .await
            .unwrap()
            .messages
            .len(),
        1
    );
    assert_eq!(store.notifications().await.unwrap().len(), 1);
    cleanup(store, &name).await;
}

#[test]
async fn an_unknown_number_creates_one_lead_even_when_the_relay_announces_it() {
    let name = db_name();
    let store = open(&name, "asha").await;
    let mut log = Log::new();
    let stranger = "+919811122233";
    let lead = record(
        "lead:+919811122233",
        RecordKind::Lead,
        Owner::Seller("asha".into()),
        stranger,
    );
    let out = store
        .ingest(&log.next(EventBody::LeadCreated(LeadCreatedEvent { record: lead })))
        .await
        .unwrap();
    assert_eq!(out.created_lead.as_deref(), Some("lead:+919811122233"));
    let out = store
        .ingest(&log.next(inbound(
            "SM2",
            stranger,
            ORG,
            "hi",
            "lead:+919811122233",
            RouteRule::NewLead,
            2000,
        )))
        .await
        .unwrap();
    assert_eq!(out.created_lead, None, "the announced lead is the same row");
    // Without an announcement (a page fed by another source) the lead is created locally, once.
    let other = "+919800000099";
    let out = store
        .ingest(&log.next(inbound(
            "SM3",
            other,
            ORG,
            "hello",
            "lead:+919800000099",
            RouteRule::NewLead,
            3000,
        )))
        .await
        .unwrap();
    assert_eq!(out.created_lead.as_deref(), Some("lead:+919800000099"));
    let lead = store
        .record("lead:+919800000099")
        .await
        .unwrap()
        .expect("lead stored");
    assert_eq!(lead.owner, Some(Owner::Seller("asha".into())));
    assert_eq!(
        store.lookup("98000000", 10).await.unwrap()[0].id,
        "lead:+919800000099"
    );
    cleanup(store, &name).await;
}

#[test]
async fn sellers_see_only_their_conversations_and_privilege_is_explained() {
    let name = db_name();
    let mut log = Log::new();
    let events = [
        log.next(inbound(
            "SMa",
            PRIYA,
            ORG,
            "for asha",
            "contact:priya",
            RouteRule::RecordType,
            1000,
        )),
        log.next(inbound(
            "SMz",
            "+14155552671",
            "+14155550102",
            "for zoe",
            "contact:john",
            RouteRule::OnlyMatch,
            2000,
        )),
        log.next(inbound(
            "SMn",
            PRIYA,
            "+14155550101",
            "for north",
            "account:sharma",
            RouteRule::OnlyMatch,
            3000,
        )),
    ];
    let asha = open(&name, "asha").await;
    for e in &events {
        asha.ingest(e).await.unwrap();
    }
    let previews: Vec<String> = asha
        .conversations()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.conversation.preview)
        .collect();
    assert_eq!(previews, ["for north", "for asha"]);
    assert_eq!(asha.notifications().await.unwrap().len(), 2);
    cleanup(asha, &name).await;

    // Meera (team north) lacks the privilege: the message is kept, the notice explains.
    let name = db_name();
    let meera = open(&name, "meera").await;
    for e in &events {
        meera.ingest(e).await.unwrap();
    }
    let notes = meera.notifications().await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].kind, NotificationKind::MissingPrivilege);
    assert_eq!(meera.conversations().await.unwrap().len(), 1);
    cleanup(meera, &name).await;
}

#[test]
async fn reports_before_their_message_and_backwards_reports() {
    let name = db_name();
    let store = open(&name, "asha").await;
    let mut log = Log::new();
    let report = |sid: &str, status| {
        EventBody::Delivery(DeliveryEvent {
            message_sid: sid.into(),
            status,
            error_code: None,
            error_message: None,
            from: ORG.into(),
            to: PRIYA.into(),
            at: Timestamp::from_millis(5000),
        })
    };
    store
        .ingest(&log.next(report("SMo", DeliveryStatus::Delivered)))
        .await
        .unwrap();
    store
        .ingest(&log.next(report("SMo", DeliveryStatus::Sent)))
        .await
        .unwrap();
    let out = store
        .ingest(&log.next(EventBody::Outbound(OutboundEvent {
            client_ref: "c1".into(),
            message_sid: Some("SMo".into()),
            from: ORG.into(),
            to: PRIYA.into(),
            body: "Your order ships today".into(),
            record_id: "contact:priya".into(),
            by: "asha".into(),
            at: Timestamp::from_millis(4000),
            outcome: SendOutcome::Accepted,
            error_code: None,
        })))
        .await
        .unwrap();
    let conv = out.conversation_id.unwrap();
    let page = store.history(&conv, None, 10).await.unwrap();
    assert_eq!(
        page.messages[0].delivery.as_ref().unwrap().status,
        DeliveryStatus::Delivered
    );
    // A late "sent" never moves it back.
    store
        .ingest(&log.next(report("SMo", DeliveryStatus::Sent)))
        .await
        .unwrap();
    let page = store.history(&conv, None, 10).await.unwrap();
    assert_eq!(
        page.messages[0].delivery.as_ref().unwrap().status,
        DeliveryStatus::Delivered
    );
    cleanup(store, &name).await;
}

/// Asha moves Priya's conversation from her contact to the Sharma account.
fn priya_moved_to_sharma(at_ms: i64) -> EventBody {
    EventBody::ConversationMoved(ConversationMovedEvent {
        org_number: ORG.into(),
        customer_number: PRIYA.into(),
        from_record: "contact:priya".into(),
        to_record: "account:sharma".into(),
        by: "asha".into(),
        at: Timestamp::from_millis(at_ms),
    })
}

#[test]
async fn a_move_across_types_carries_the_history_and_later_replies_follow() {
    let name = db_name();
    let store = open(&name, "asha").await;
    let mut log = Log::new();
    store
        .ingest(&log.next(inbound(
            "SM1",
            PRIYA,
            ORG,
            "first",
            "contact:priya",
            RouteRule::RecordType,
            1000,
        )))
        .await
        .unwrap();
    store
        .ingest(&log.next(priya_moved_to_sharma(1500)))
        .await
        .unwrap();
    let out = store
        .ingest(&log.next(inbound(
            "SM2",
            PRIYA,
            ORG,
            "second",
            "account:sharma",
            RouteRule::RecentConversation,
            2000,
        )))
        .await
        .unwrap();
    let convs = store.conversations().await.unwrap();
    assert_eq!(convs.len(), 1);
    let c = &convs[0].conversation;
    assert_eq!(c.record_id, "account:sharma");
    assert_eq!(c.moves.len(), 1);
    assert_eq!(out.conversation_id.as_deref(), Some(c.id.as_str()));
    let bodies: Vec<String> = store
        .history(&c.id, None, 10)
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, ["first", "second"]);
    cleanup(store, &name).await;
}

#[test]
async fn a_move_onto_an_existing_conversation_takes_its_notifications_and_draft() {
    let name = db_name();
    let store = open(&name, "asha").await;
    let mut log = Log::new();
    for (sid, record, at) in [
        ("SM0", "account:sharma", 500),
        ("SM1", "contact:priya", 1000),
    ] {
        store
            .ingest(&log.next(inbound(
                sid,
                PRIYA,
                ORG,
                "unread",
                record,
                RouteRule::RecordType,
                at,
            )))
            .await
            .unwrap();
    }
    let before = store.conversations().await.unwrap();
    assert_eq!(before.len(), 2);
    let source = before
        .iter()
        .find(|c| c.conversation.record_id == "contact:priya")
        .map(|c| c.conversation.id.clone())
        .unwrap();
    store.put_draft(&source, "half-typed reply").await.unwrap();
    store
        .ingest(&log.next(priya_moved_to_sharma(1500)))
        .await
        .unwrap();
    let convs = store.conversations().await.unwrap();
    assert_eq!(convs.len(), 1, "merged into the account's conversation");
    let target = convs[0].conversation.clone();
    assert_eq!(target.unread, 2);
    let notes = store.notifications().await.unwrap();
    assert_eq!(notes.len(), 2);
    assert!(
        notes.iter().all(|n| n.conversation_id == target.id),
        "the bell opens the merged conversation, not the deleted one"
    );
    assert_eq!(
        store.draft(&target.id).await.unwrap(),
        "half-typed reply",
        "an unsent draft is not lost"
    );
    assert_eq!(store.draft(&source).await.unwrap(), "");
    store.mark_read(&target.id).await.unwrap();
    let notes = store.notifications().await.unwrap();
    assert!(notes.iter().all(|n| n.unread == 0), "reading it reads both");
    cleanup(store, &name).await;
}

#[test]
async fn history_pages_newest_first_and_persists_across_reopen() {
    let name = db_name();
    let store = open(&name, "asha").await;
    let mut log = Log::new();
    let mut conv = String::new();
    for i in 0..120 {
        let out = store
            .ingest(&log.next(inbound(
                &format!("SM{i}"),
                PRIYA,
                ORG,
                &format!("m{i}"),
                "contact:priya",
                RouteRule::RecordType,
                1000 + i,
            )))
            .await
            .unwrap();
        conv = out.conversation_id.unwrap();
    }
    let page = store.history(&conv, None, 50).await.unwrap();
    assert!(page.has_more);
    assert_eq!(page.messages.first().unwrap().body, "m70");
    assert_eq!(page.messages.last().unwrap().body, "m119");
    let older = store
        .history(&conv, Some(page.messages[0].at_ms), 50)
        .await
        .unwrap();
    assert_eq!(older.messages.last().unwrap().body, "m69");
    let position = store.position().await.unwrap();
    store.close();
    let ctx = SellerContext {
        seller: "asha".into(),
        default_region: Some("IN".into()),
    };
    let store = IdbStore::open(&name, ctx).await.unwrap();
    assert_eq!(store.position().await.unwrap(), position);
    assert_eq!(store.position().await.unwrap().as_deref(), Some("e1:120"));
    assert_eq!(
        store
            .history(&conv, None, 200)
            .await
            .unwrap()
            .messages
            .len(),
        120
    );
    cleanup(store, &name).await;
}

#[test]
async fn a_new_epoch_forces_a_resync() {
    let name = db_name();
    let store = open(&name, "asha").await;
    let mut log = Log::new();
    store
        .ingest(&log.next(inbound(
            "SM1",
            PRIYA,
            ORG,
            "old",
            "contact:priya",
            RouteRule::RecordType,
            1000,
        )))
        .await
        .unwrap();
    // The first event of a new epoch, offered before and after the resync.
    let new_epoch = Log {
        id: 0,
        epoch: "e2".into(),
    }
    .next(inbound(
        "SM9",
        PRIYA,
        ORG,
        "new",
        "contact:priya",
        RouteRule::RecordType,
        9000,
    ));
    let out = store.ingest(&new_epoch).await.unwrap();
    assert!(out.resync);
    store.reset_position().await.unwrap();
    assert_eq!(store.position().await.unwrap(), None);
    let out = store.ingest(&new_epoch).await.unwrap();
    assert!(!out.resync && !out.duplicate);
    cleanup(store, &name).await;
}

#[test]
async fn an_upgrade_in_another_tab_is_not_blocked_by_this_connection() {
    let name = db_name();
    let store = open(&name, "asha").await;
    // Another tab opens a newer version: this connection closes itself on `versionchange`.
    let newer = indexed_db_futures::database::Database::open(name.as_str())
        .with_version(99u8)
        .await
        .expect("the upgrade is not blocked");
    assert_eq!(newer.version(), 99.0);
    newer.close();
    let err = store.position().await.unwrap_err();
    assert_eq!(err.code, "db_closed");
    store.close();
    let _ = indexed_db_futures::database::Database::delete_by_name(&name);
}

#[test]
async fn the_outbox_sends_exactly_once_across_a_reload() {
    use std::rc::Rc;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;

    let name = db_name();
    let online = Rc::new(Cell::new(false));
    let calls: Rc<std::cell::RefCell<Vec<String>>> = Rc::default();
    let transport = {
        let (online, calls) = (online.clone(), calls.clone());
        Closure::wrap(Box::new(move |req: JsValue| -> js_sys::Promise {
            if !online.get() {
                return js_sys::Promise::reject(&"relay unreachable".into());
            }
            let client_ref = js_sys::Reflect::get(&req, &"client_ref".into())
                .unwrap()
                .as_string()
                .unwrap();
            calls.borrow_mut().push(client_ref);
            let answer =
                js_sys::JSON::parse(r#"{"outcome":"accepted","message_sid":"SMsent"}"#).unwrap();
            js_sys::Promise::resolve(&answer)
        }) as Box<dyn FnMut(JsValue) -> js_sys::Promise>)
    };
    let options = || {
        let o = js_sys::Object::new();
        js_sys::Reflect::set(&o, &"dbName".into(), &name.as_str().into()).unwrap();
        js_sys::Reflect::set(&o, &"seller".into(), &"asha".into()).unwrap();
        js_sys::Reflect::set(&o, &"transport".into(), transport.as_ref().unchecked_ref()).unwrap();
        JsValue::from(o)
    };
    let request = js_sys::JSON::parse(
        r#"{"client_ref":"c1","from":"+14155550100","to":"+919812345678","body":"Offline hello","record_id":"contact:priya"}"#,
    )
    .unwrap();
    // The directory says which numbers asha sends from (the outbox checks it).
    open(&name, "asha").await.close();
    let client = sms_module::SmsClient::open(options()).await.unwrap();
    let conv = client.send(request).await.unwrap();
    assert!(calls.borrow().is_empty());
    assert_eq!(
        client.flush().await.unwrap(),
        1,
        "still queued while offline"
    );
    client.close();

    // "Reload": a new client on the same database, the relay reachable again.
    online.set(true);
    let client = sms_module::SmsClient::open(options()).await.unwrap();
    assert_eq!(client.flush().await.unwrap(), 0);
    assert_eq!(client.flush().await.unwrap(), 0);
    assert_eq!(*calls.borrow(), ["c1"], "sent exactly once");
    client.close();
    let ctx = SellerContext {
        seller: "asha".into(),
        default_region: None,
    };
    let store = IdbStore::open(&name, ctx).await.unwrap();
    let page = store.history(&conv, None, 10).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].provider_id.as_deref(), Some("SMsent"));
    assert!(store.outbox().await.unwrap().is_empty());
    cleanup(store, &name).await;
    drop(transport);
}

#[test]
async fn templates_drafts_reads_preview_and_sign_out() {
    use sms_module::store::records::StoredTemplate;
    let name = db_name();
    let store = open(&name, "asha").await;
    let t = |id: &str, category: &str, language: &str, body: &str| StoredTemplate {
        id: id.into(),
        name: id.into(),
        category: category.into(),
        language: language.into(),
        body: body.into(),
    };
    store
        .put_template(t("b-lead", "lead", "en", "Hi"))
        .await
        .unwrap();
    store
        .put_template(t(
            "a-contact-hi",
            "contact",
            "hi",
            "नमस्ते {{ contact.first_name }}",
        ))
        .await
        .unwrap();
    store
        .put_template(t(
            "c-contact-en",
            "contact",
            "en",
            "Hello {{ contact.first_name | default: 'there' }}",
        ))
        .await
        .unwrap();
    let err = store
        .put_template(t("bad", "contact", "en", "Hi {{ name"))
        .await
        .unwrap_err();
    assert_eq!(err.code, "template_syntax");
    let ids: Vec<String> = store
        .templates(Some("contact"), Some("en"))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["c-contact-en", "a-contact-hi", "b-lead"]);
    store.delete_template("b-lead").await.unwrap();
    assert_eq!(store.templates(None, None).await.unwrap().len(), 2);

    store.put_draft("conv-1", "half a thought").await.unwrap();
    assert_eq!(store.draft("conv-1").await.unwrap(), "half a thought");
    store.put_draft("conv-1", "").await.unwrap();
    assert_eq!(store.draft("conv-1").await.unwrap(), "");

    // Unread counts and notifications clear together.
    let mut log = Log::new();
    let out = store
        .ingest(&log.next(inbound(
            "SM1",
            PRIYA,
            ORG,
            "hi",
            "contact:priya",
            RouteRule::RecordType,
            1000,
        )))
        .await
        .unwrap();
    let conv = out.conversation_id.unwrap();
    store.mark_read(&conv).await.unwrap();
    assert_eq!(
        store.conversations().await.unwrap()[0].conversation.unread,
        0
    );
    assert_eq!(store.notifications().await.unwrap()[0].unread, 0);

    // Preview: the contact holds the most recent conversation with this number.
    let d = store.preview_route("098123 45678", ORG).await.unwrap();
    assert_eq!(d.record_id(), "contact:priya");
    assert_eq!(d.rule(), RouteRule::RecentConversation);
    let d = store.preview_route("+919822233344", ORG).await.unwrap();
    assert_eq!(d.rule(), RouteRule::NewLead);

    // Sign-out refuses while something waits in the outbox, unless the seller agrees.
    store
        .queue_send(sms_module::store::records::OutboxEntry {
            request: sms_core::protocol::SendRequest {
                client_ref: "c9".into(),
                from: ORG.into(),
                to: PRIYA.into(),
                body: "pending".into(),
                record_id: Some("contact:priya".into()),
            },
            queued_ms: 5000.0,
            attempts: 0,
        })
        .await
        .unwrap();
    assert_eq!(
        store.wipe(false).await.unwrap_err().code,
        "outbox_not_empty"
    );
    store.wipe(true).await.unwrap();
    let ctx = SellerContext {
        seller: "asha".into(),
        default_region: None,
    };
    let reopened = IdbStore::open(&name, ctx).await.unwrap();
    assert!(
        reopened.conversations().await.unwrap().is_empty(),
        "everything wiped"
    );
    cleanup(reopened, &name).await;
}

#[test]
async fn the_js_client_decodes_relay_events_by_kind() {
    let name = db_name();
    let o = js_sys::Object::new();
    js_sys::Reflect::set(&o, &"dbName".into(), &name.as_str().into()).unwrap();
    js_sys::Reflect::set(&o, &"seller".into(), &"asha".into()).unwrap();
    let client = sms_module::SmsClient::open(o.into()).await.unwrap();
    let json = |s: &str| js_sys::JSON::parse(s).unwrap();
    let dir = json(
        r#"{"sellers":[{"id":"asha"}],"org_numbers":[{"number":"+14155550100","owner":{"seller":"asha"}}],
        "records":[{"id":"contact:priya","kind":"contact","owner":{"seller":"asha"},"phones":["+919812345678"]}]}"#,
    );
    assert_eq!(client.import_directory(dir).await.unwrap(), 1);
    // Exactly the JSON the relay pushes over SSE.
    let event = json(
        r#"{"epoch":"e1","id":7,"kind":"inbound","message_sid":"SMj","from":"+919812345678",
        "to":"+14155550100","body":"from JS","media":[],"at":"2026-11-27T10:00:00Z","record_id":"contact:priya","rule":"only_match"}"#,
    );
    let out = client.ingest(event).await.unwrap();
    let get = |v: &wasm_bindgen::JsValue, k: &str| js_sys::Reflect::get(v, &k.into()).unwrap();
    assert_eq!(
        get(&out, "record_id").as_string().as_deref(),
        Some("contact:priya")
    );
    assert_eq!(get(&out, "rule").as_string().as_deref(), Some("only_match"));
    assert_eq!(client.position().await.unwrap().as_deref(), Some("e1:7"));
    let out = client
        .ingest(json(r#"{"kind":"reset","epoch":"e2"}"#))
        .await
        .unwrap();
    assert_eq!(get(&out, "resync").as_bool(), Some(true));
    assert_eq!(client.position().await.unwrap(), None);
    let err = client
        .ingest(json(r#"{"epoch":"e2","id":1,"kind":"teleport"}"#))
        .await
        .unwrap_err();
    assert_eq!(
        get(&err, "code").as_string().as_deref(),
        Some("unknown_event")
    );
    client.close();
    let _ = indexed_db_futures::database::Database::delete_by_name(&name);
}

#[test]
async fn the_js_client_imports_a_large_directory_in_parts() {
    let name = db_name();
    let o = js_sys::Object::new();
    js_sys::Reflect::set(&o, &"dbName".into(), &name.as_str().into()).unwrap();
    js_sys::Reflect::set(&o, &"seller".into(), &"asha".into()).unwrap();
    let client = sms_module::SmsClient::open(o.into()).await.unwrap();
    let get = |v: &wasm_bindgen::JsValue, k: &str| js_sys::Reflect::get(v, &k.into()).unwrap();
    // 4,500 records: three transactions (2,000 + 2,000 + 500), every row kept.
    let records: Vec<String> = (0..4500)
        .map(|i| {
            format!(
                r#"{{"id":"contact:{i}","kind":"contact","owner":{{"seller":"asha"}},"phones":["+9198{:08}"],"name":"C {i}"}}"#,
                10_000_000 + i
            )
        })
        .collect();
    let dir = |records: &str| {
        js_sys::JSON::parse(&format!(
            r#"{{"sellers":[{{"id":"asha"}}],"org_numbers":[{{"number":"+14155550100","owner":{{"seller":"asha"}}}}],"records":[{records}]}}"#
        ))
        .unwrap()
    };
    assert_eq!(
        client
            .import_directory(dir(&records.join(",")))
            .await
            .unwrap(),
        4500
    );
    for id in ["contact:0", "contact:1999", "contact:2000", "contact:4499"] {
        let r = client.record(id.into()).await.unwrap();
        assert_eq!(get(&r, "id").as_string().as_deref(), Some(id));
    }
    let found = client.lookup("+919810004499".into(), None).await.unwrap();
    assert_eq!(js_sys::Array::from(&found).length(), 1, "phone index built");
    // A malformed record in a later part: a coded error; the parts before it stay
    // (a snapshot import is idempotent: the next one completes it).
    let mut bad = records.clone();
    bad[4200] = r#"{"id":"contact:bad","kind":"spaceship"}"#.into();
    let err = client
        .import_directory(dir(&bad.join(",")))
        .await
        .unwrap_err();
    assert_eq!(
        get(&err, "code").as_string().as_deref(),
        Some("invalid_input")
    );
    // No records at all is an empty import, not an error; records that are not a
    // list are refused.
    let empty = js_sys::JSON::parse(r#"{"sellers":[{"id":"asha"}]}"#).unwrap();
    assert_eq!(client.import_directory(empty).await.unwrap(), 0);
    let odd = js_sys::JSON::parse(r#"{"records":{"id":"contact:x"}}"#).unwrap();
    let err = client.import_directory(odd).await.unwrap_err();
    assert_eq!(
        get(&err, "code").as_string().as_deref(),
        Some("invalid_input")
    );
    client.close();
    let _ = indexed_db_futures::database::Database::delete_by_name(&name);
}

#[test]
async fn two_tabs_store_once_create_one_lead_and_hear_each_other() {
    use std::rc::Rc;
    use wasm_bindgen::prelude::*;

    let name = db_name();
    let options = || {
        let o = js_sys::Object::new();
        js_sys::Reflect::set(&o, &"dbName".into(), &name.as_str().into()).unwrap();
        js_sys::Reflect::set(&o, &"seller".into(), &"asha".into()).unwrap();
        JsValue::from(o)
    };
    let json = |s: &str| js_sys::JSON::parse(s).unwrap();
    let tab_a = sms_module::SmsClient::open(options()).await.unwrap();
    let tab_b = sms_module::SmsClient::open(options()).await.unwrap();
    let dir = json(
        r#"{"sellers":[{"id":"asha"}],"org_numbers":[{"number":"+14155550100","owner":{"seller":"asha"}}],"records":[]}"#,
    );
    tab_a.import_directory(dir).await.unwrap();

    let heard: Rc<std::cell::RefCell<Vec<String>>> = Rc::default();
    let listener = {
        let heard = heard.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |msg: JsValue| {
            let kind = js_sys::Reflect::get(&msg, &"kind".into())
                .unwrap()
                .as_string()
                .unwrap();
            heard.borrow_mut().push(kind);
        })
    };
    let subscription = tab_b.subscribe(listener.as_ref().clone().into()).unwrap();

    // Both tabs receive the same events from the relay, concurrently.
    let lead = r#"{"epoch":"e1","id":1,"kind":"inbound","message_sid":"SMx","from":"+919811122233",
        "to":"+14155550100","body":"who?","media":[],"at":"2026-11-27T10:00:00Z",
        "record_id":"lead:+919811122233","rule":"new_lead"}"#;
    let (a, b) = futures_join(tab_a.ingest(json(lead)), tab_b.ingest(json(lead))).await;
    let dup = |v: &JsValue| {
        js_sys::Reflect::get(v, &"duplicate".into())
            .unwrap()
            .as_bool()
            .unwrap()
    };
    let created = |v: &JsValue| {
        !js_sys::Reflect::get(v, &"created_lead".into())
            .unwrap()
            .is_null()
    };
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(dup(&a), dup(&b), "exactly one tab applied it");
    assert!(created(&a) ^ created(&b), "exactly one lead");
    let convs: js_sys::Array = tab_a.conversations().await.unwrap().into();
    assert_eq!(convs.length(), 1);
    let history = tab_a
        .history(
            js_sys::Reflect::get(&convs.get(0), &"id".into())
                .unwrap()
                .as_string()
                .unwrap(),
            None,
            None,
        )
        .await
        .unwrap();
    let messages: js_sys::Array = js_sys::Reflect::get(&history, &"messages".into())
        .unwrap()
        .into();
    assert_eq!(messages.length(), 1);

    // The tab that applied it told the other one.
    let mut waited = 0;
    while heard.borrow().is_empty() && waited < 50 {
        gloo_sleep(20).await;
        waited += 1;
    }
    assert_eq!(*heard.borrow(), ["inbound"]);
    subscription.close();
    tab_a.close();
    tab_b.close();
    let _ = indexed_db_futures::database::Database::delete_by_name(&name);
}

/// Polls two futures to completion concurrently (no extra crates).
async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    use std::pin::pin;
    use std::task::Poll;
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (ra.unwrap(), rb.unwrap())
}

async fn gloo_sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let global: web_sys_global::Global = wasm_bindgen::JsValue::from(js_sys::global()).into();
        let _ = global.set_timeout(&resolve, ms);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

mod web_sys_global {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen]
    extern "C" {
        /// The global scope (window or worker).
        pub type Global;
        #[wasm_bindgen(method, js_name = setTimeout)]
        pub fn set_timeout(this: &Global, handler: &js_sys::Function, ms: i32) -> i32;
    }
}

#[test]
async fn the_pane_runs_against_the_store_and_updates_live() {
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;

    let name = db_name();
    let transport = Closure::wrap(Box::new(|_req: JsValue| -> js_sys::Promise {
        js_sys::Promise::resolve(
            &js_sys::JSON::parse(r#"{"outcome":"accepted","message_sid":"SMout1"}"#).unwrap(),
        )
    }) as Box<dyn FnMut(JsValue) -> js_sys::Promise>);
    let o = js_sys::Object::new();
    js_sys::Reflect::set(&o, &"dbName".into(), &name.as_str().into()).unwrap();
    js_sys::Reflect::set(&o, &"seller".into(), &"asha".into()).unwrap();
    js_sys::Reflect::set(&o, &"defaultRegion".into(), &"IN".into()).unwrap();
    js_sys::Reflect::set(&o, &"transport".into(), transport.as_ref().unchecked_ref()).unwrap();
    let client = sms_module::SmsClient::open(o.into()).await.unwrap();
    let json = |s: &str| js_sys::JSON::parse(s).unwrap();
    let get = |v: &JsValue, path: &str| {
        path.split('.').fold(v.clone(), |v, k| {
            js_sys::Reflect::get(&v, &k.into())
                .unwrap_or_else(|_| panic!("{path}: no {k} in {:?}", js_sys::JSON::stringify(&v)))
        })
    };
    client
        .import_directory(json(
            r#"{"sellers":[{"id":"asha","name":"Asha Rao"}],"org_numbers":[{"number":"+14155550100","owner":{"seller":"asha"}}],
            "records":[{"id":"contact:priya","kind":"contact","name":"Priya Sharma","owner":{"seller":"asha"},"phones":["+919812345678"]}]}"#,
        ))
        .await
        .unwrap();
    let out = client
        .ingest(json(
            r#"{"epoch":"e1","id":1,"kind":"inbound","message_sid":"SM1","from":"+919812345678","to":"+14155550100",
            "body":"Is my order ready?","media":[],"at":"2026-11-27T10:00:00Z","record_id":"contact:priya","rule":"only_match"}"#,
        ))
        .await
        .unwrap();
    let conv = get(&out, "conversation_id").as_string().unwrap();

    let view = client
        .open_conversation(conv.clone(), JsValue::UNDEFINED)
        .await
        .unwrap();
    assert_eq!(
        get(&view, "record.name").as_string().as_deref(),
        Some("Priya Sharma")
    );
    assert_eq!(js_sys::Array::from(&get(&view, "messages")).length(), 1);
    assert_eq!(
        get(&view, "route_rule").as_string().as_deref(),
        Some("only_match")
    );

    let view = client
        .dispatch(json(r#"{"type":"composer_edited","text":"Hi {{ contact.first_name }}, yes! — {{ seller.name }}"}"#))
        .await
        .unwrap();
    assert_eq!(
        get(&view, "composer.preview").as_string().as_deref(),
        Some("Hi Priya, yes! — Asha Rao")
    );
    assert_eq!(
        get(&view, "composer.segments.encoding")
            .as_string()
            .as_deref(),
        Some("UCS-2")
    );
    assert_eq!(
        client.draft(conv.clone()).await.unwrap(),
        "Hi {{ contact.first_name }}, yes! — {{ seller.name }}"
    );

    let view = client
        .dispatch(json(r#"{"type":"send","client_ref":"c1"}"#))
        .await
        .unwrap();
    let messages = js_sys::Array::from(&get(&view, "messages"));
    assert_eq!(messages.length(), 2);
    let sent = messages.get(1);
    assert_eq!(
        get(&sent, "body").as_string().as_deref(),
        Some("Hi Priya, yes! — Asha Rao")
    );
    assert_eq!(get(&sent, "local").as_string().as_deref(), Some("accepted"));
    assert_eq!(
        get(&sent, "provider_id").as_string().as_deref(),
        Some("SMout1")
    );
    assert_eq!(
        client.draft(conv.clone()).await.unwrap(),
        "",
        "the draft is cleared once sent"
    );

    // Live: a reply and a delivery report reach the open pane without reopening it.
    client
        .ingest(json(
            r#"{"epoch":"e1","id":2,"kind":"delivery","message_sid":"SMout1","status":"delivered","from":"+14155550100",
            "to":"+919812345678","at":"2026-11-27T10:01:00Z"}"#,
        ))
        .await
        .unwrap();
    client
        .ingest(json(
            r#"{"epoch":"e1","id":3,"kind":"inbound","message_sid":"SM2","from":"+919812345678","to":"+14155550100",
            "body":"धन्यवाद!","media":[],"at":"2099-01-01T10:02:00Z","record_id":"contact:priya","rule":"recent_conversation"}"#,
        ))
        .await
        .unwrap();
    let view = client.pane_view().unwrap();
    let messages = js_sys::Array::from(&get(&view, "messages"));
    assert_eq!(messages.length(), 3);
    assert_eq!(
        get(&messages.get(1), "delivery.status")
            .as_string()
            .as_deref(),
        Some("delivered")
    );
    assert_eq!(
        get(&messages.get(2), "body").as_string().as_deref(),
        Some("धन्यवाद!")
    );

    // Change (M1): pending until the relay's conversation_moved comes back (M2).
    let target = json(
        r#"{"id":"account:sharma","kind":"account","name":"Sharma Traders","owner":{"seller":"asha"}}"#,
    );
    let input = js_sys::Object::new();
    js_sys::Reflect::set(&input, &"type".into(), &"move_requested".into()).unwrap();
    js_sys::Reflect::set(&input, &"target".into(), &target).unwrap();
    let view = client.dispatch(input.into()).await.unwrap();
    assert_eq!(
        get(&view, "move_error").as_string().as_deref(),
        Some("move_unavailable")
    );
    client
        .ingest(json(
            r#"{"epoch":"e1","id":4,"kind":"directory_changed","patch":{"upsert":{"records":[{"id":"account:sharma","kind":"account",
            "name":"Sharma Traders","owner":{"seller":"asha"},"phones":[]}]}}}"#,
        ))
        .await
        .unwrap();
    client
        .ingest(json(
            r#"{"epoch":"e1","id":5,"kind":"conversation_moved","org_number":"+14155550100","customer_number":"+919812345678",
            "from_record":"contact:priya","to_record":"account:sharma","by":"asha","at":"2099-01-02T00:00:00Z"}"#,
        ))
        .await
        .unwrap();
    let view = client.pane_view().unwrap();
    assert_eq!(
        get(&view, "record.id").as_string().as_deref(),
        Some("account:sharma")
    );
    assert_eq!(js_sys::Array::from(&get(&view, "moves")).length(), 1);
    // B1: who moved it here and when, instead of the original rule.
    assert_eq!(
        get(&view, "route.code").as_string().as_deref(),
        Some("moved_here")
    );
    assert_eq!(get(&view, "route.by").as_string().as_deref(), Some("asha"));
    client.close();
    let _ = indexed_db_futures::database::Database::delete_by_name(&name);
    drop(transport);
}

mod v1_fixture {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen(module = "/tests/fixtures/idb_v1.js")]
    extern "C" {
        /// Writes a schema-v1 database with a row in every store.
        #[wasm_bindgen(js_name = createV1)]
        pub async fn create_v1(name: &str);
        /// Opens a connection that ignores `versionchange`, like an old tab.
        #[wasm_bindgen(js_name = holdOpen)]
        pub async fn hold_open(name: &str, version: u32) -> JsValue;
        #[wasm_bindgen(js_name = closeDb)]
        pub fn close_db(db: &JsValue);
    }
}

fn asha() -> SellerContext {
    SellerContext {
        seller: "asha".into(),
        default_region: Some("IN".into()),
    }
}

/// Every row of the v1 fixture, read through the current schema.
async fn assert_v1_rows_kept(store: &IdbStore) {
    assert_eq!(store.position().await.unwrap().as_deref(), Some("e1:7"));
    let convs = store.conversations().await.unwrap();
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0].record_name, "Priya Sharma");
    assert_eq!(convs[0].conversation.unread, 1);
    let conv = convs[0].conversation.id.clone();
    let page = store.history(&conv, None, 50).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].body, "Is my order ready?");
    assert_eq!(store.notifications().await.unwrap().len(), 1);
    let templates = store.templates(None, None).await.unwrap();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].body, "Hi {{ contact.first_name }}");
    let outbox = store.outbox().await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(
        (outbox[0].request.client_ref.as_str(), outbox[0].attempts),
        ("c-offline", 2)
    );
    assert_eq!(store.draft(&conv).await.unwrap(), "Half a tho");
    // The relation index is built over rows written before it existed.
    let related = store.related("contact:priya").await.unwrap();
    assert_eq!(
        related.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["opportunity:q3"]
    );
}

#[test]
async fn a_v1_database_upgrades_keeping_every_row() {
    let name = db_name();
    v1_fixture::create_v1(&name).await;
    let store = IdbStore::open(&name, asha()).await.expect("upgrade");
    assert_v1_rows_kept(&store).await;
    // The report that waited in v1 still meets its message.
    let mut log = Log::new();
    log.id = 7;
    let out = store
        .ingest(&log.next(EventBody::Outbound(OutboundEvent {
            client_ref: "c-later".into(),
            message_sid: Some("SMlater".into()),
            from: ORG.into(),
            to: PRIYA.into(),
            body: "Yes".into(),
            record_id: "contact:priya".into(),
            by: "asha".into(),
            at: Timestamp::from_millis(1_764_237_800_000),
            outcome: SendOutcome::Accepted,
            error_code: None,
        })))
        .await
        .unwrap();
    assert!(!out.duplicate && !out.resync);
    let m = store.message("c-later").await.unwrap().expect("stored");
    assert_eq!(
        m.delivery.map(|d| d.status),
        Some(DeliveryStatus::Delivered)
    );
    cleanup(store, &name).await;
}

#[test]
async fn a_blocked_upgrade_fails_clearly_and_migrates_nothing() {
    let name = db_name();
    v1_fixture::create_v1(&name).await;
    let old_tab = v1_fixture::hold_open(&name, 1).await;
    let err = IdbStore::open(&name, asha())
        .await
        .err()
        .expect("an old tab that never lets go blocks the upgrade");
    assert_eq!(err.code, "db_blocked");
    // The old tab still has the whole v1 database and nothing of v2.
    let names = js_sys::Reflect::get(&old_tab, &"objectStoreNames".into()).unwrap();
    let contains = |n: &str| {
        js_sys::Reflect::get(&names, &"contains".into())
            .unwrap()
            .dyn_into::<js_sys::Function>()
            .unwrap()
            .call1(&names, &n.into())
            .unwrap()
            .as_bool()
    };
    assert_eq!(contains("messages"), Some(true));
    assert_eq!(contains("settings"), Some(false));
    // Once the old tab lets go, the upgrade runs whole and every row is there.
    v1_fixture::close_db(&old_tab);
    let store = IdbStore::open(&name, asha())
        .await
        .expect("open after the old tab closed");
    assert_v1_rows_kept(&store).await;
    cleanup(store, &name).await;
}

#[test]
async fn records_open_their_numbers_and_switch_to_related_records() {
    use wasm_bindgen::prelude::*;

    let name = db_name();
    let o = js_sys::Object::new();
    js_sys::Reflect::set(&o, &"dbName".into(), &name.as_str().into()).unwrap();
    js_sys::Reflect::set(&o, &"seller".into(), &"asha".into()).unwrap();
    js_sys::Reflect::set(&o, &"defaultRegion".into(), &"IN".into()).unwrap();
    let client = sms_module::SmsClient::open(o.into()).await.unwrap();
    let json = |s: &str| js_sys::JSON::parse(s).unwrap();
    let get = |v: &JsValue, path: &str| {
        path.split('.').fold(v.clone(), |v, k| {
            js_sys::Reflect::get(&v, &k.into()).unwrap()
        })
    };
    let text = |v: &JsValue, path: &str| get(v, path).as_string();
    client
        .import_directory(json(
            r#"{"sellers":[{"id":"asha","name":"Asha Rao"}],
            "teams":[{"id":"north","members":["asha"]}],
            "org_numbers":[{"number":"+14155550101","owner":{"team":"north"}},{"number":"+14155550100","owner":{"seller":"asha"}}],
            "records":[
              {"id":"contact:priya","kind":"contact","name":"Priya Sharma","owner":{"seller":"asha"},"phones":["098123 45678","+91 98123 00000"]},
              {"id":"opportunity:q3","kind":"opportunity","name":"Q3 order","owner":{"seller":"asha"},"phones":[],"related":["contact:priya"]},
              {"id":"opportunity:q4","kind":"opportunity","name":"Q4 order","owner":{"seller":"asha"},"phones":["+91 90000 11111"]},
              {"id":"contact:ravi","kind":"contact","name":"Ravi","owner":{"seller":"asha"},"phones":["+91 90000 22222"],"related":["opportunity:q4"]}]}"#,
        ))
        .await
        .unwrap();

    // O2: the mobile-phone icon opens a new conversation on the seller's own number.
    let via = json(r#"{"via":"record_phone","field":"mobile_phone"}"#);
    let view = client
        .open_record("contact:priya".into(), Some("+91 98123 00000".into()), via)
        .await
        .unwrap();
    assert_eq!(text(&view, "record.id").as_deref(), Some("contact:priya"));
    assert_eq!(
        text(&view, "conversation.customer_number").as_deref(),
        Some("+919812300000")
    );
    assert_eq!(
        text(&view, "conversation.org_number").as_deref(),
        Some("+14155550100")
    );
    assert_eq!(js_sys::Array::from(&get(&view, "messages")).length(), 0);
    // C2: the contact's opportunity, linked from the opportunity's side.
    let related = js_sys::Array::from(&get(&view, "related"));
    assert_eq!(related.length(), 1);
    assert_eq!(
        text(&related.get(0), "id").as_deref(),
        Some("opportunity:q3")
    );

    // Switching keeps the customer's number (the opportunity has none of its own).
    let view = client
        .dispatch(json(
            r#"{"type":"related_chosen","record_id":"opportunity:q3"}"#,
        ))
        .await
        .unwrap();
    assert_eq!(text(&view, "record.id").as_deref(), Some("opportunity:q3"));
    assert_eq!(
        text(&view, "conversation.customer_number").as_deref(),
        Some("+919812300000")
    );
    let back = js_sys::Array::from(&get(&view, "related"));
    assert_eq!(text(&back.get(0), "id").as_deref(), Some("contact:priya"));

    // A record's conversations include its opportunities' (a contact's activities).
    client
        .ingest(json(
            r#"{"epoch":"e1","id":1,"kind":"inbound","message_sid":"SM9","from":"+919000011111","to":"+14155550100",
            "body":"About Q4","media":[],"at":"2026-11-27T10:00:00Z","record_id":"opportunity:q4","rule":"only_match"}"#,
        ))
        .await
        .unwrap();
    let convs = js_sys::Array::from(
        &client
            .record_conversations("contact:ravi".into())
            .await
            .unwrap(),
    );
    assert_eq!(convs.length(), 1);
    assert_eq!(
        text(&convs.get(0), "record_id").as_deref(),
        Some("opportunity:q4")
    );
    let rel = js_sys::Array::from(&client.related("contact:ravi".into()).await.unwrap());
    assert_eq!(text(&rel.get(0), "id").as_deref(), Some("opportunity:q4"));

    // Opening a record with no phone is refused with a code, not a panic.
    let err = client
        .open_record("opportunity:q3".into(), None, JsValue::UNDEFINED)
        .await
        .unwrap_err();
    assert_eq!(text(&err, "code").as_deref(), Some("no_phone"));

    // Settings keep structured values.
    assert!(client.setting("pane".into()).await.unwrap().is_undefined());
    client
        .put_setting("pane".into(), json(r#"{"conversation":"c1","width":420}"#))
        .await
        .unwrap();
    let pane = client.setting("pane".into()).await.unwrap();
    assert_eq!(get(&pane, "width").as_f64(), Some(420.0));
    client.close();
    let _ = indexed_db_futures::database::Database::delete_by_name(&name);
}

#[test]
async fn a_run_of_events_applies_in_order_and_stops_where_one_is_not_applied() {
    let name = db_name();
    let store = open(&name, "asha").await;
    let mut log = Log::new();
    let events: Vec<LoggedEvent> = (0..30)
        .map(|i| {
            log.next(inbound(
                &format!("SMrun{i}"),
                PRIYA,
                ORG,
                &format!("run {i}"),
                "contact:priya",
                RouteRule::RecordType,
                10_000 + i,
            ))
        })
        .collect();
    let outcomes = store.ingest_run(&events).await;
    assert!(outcomes
        .iter()
        .all(|o| o.as_ref().is_ok_and(|o| !o.duplicate && !o.gap)));
    assert_eq!(store.position().await.unwrap().as_deref(), Some("e1:30"));
    let conv = outcomes[0]
        .as_ref()
        .unwrap()
        .conversation_id
        .clone()
        .unwrap();
    let page = store.history(&conv, None, 50).await.unwrap();
    let bodies: Vec<String> = page.messages.into_iter().map(|m| m.body).collect();
    assert_eq!(
        bodies,
        (0..30).map(|i| format!("run {i}")).collect::<Vec<_>>()
    );

    // Replayed with new ones after: the old ones are duplicates, the new ones apply.
    let more: Vec<LoggedEvent> = (30..35)
        .map(|i| {
            log.next(inbound(
                &format!("SMrun{i}"),
                "+919000000001",
                ORG,
                &format!("new number {i}"),
                "lead:+919000000001",
                RouteRule::NewLead,
                10_000 + i,
            ))
        })
        .collect();
    let replay: Vec<LoggedEvent> = events[25..].iter().cloned().chain(more).collect();
    let outcomes = store.ingest_run(&replay).await;
    let outcomes: Vec<_> = outcomes.into_iter().map(Result::unwrap).collect();
    assert!(outcomes[..5].iter().all(|o| o.duplicate));
    assert!(outcomes[5..].iter().all(|o| !o.duplicate && !o.gap));
    let leads: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.created_lead.clone())
        .collect();
    assert_eq!(
        leads,
        ["lead:+919000000001"],
        "one lead for five messages in one run"
    );

    // An event that is not applied (here: another epoch) stops the run there.
    let mut tail: Vec<LoggedEvent> = (0..3)
        .map(|i| {
            log.next(inbound(
                &format!("SMtail{i}"),
                PRIYA,
                ORG,
                "tail",
                "contact:priya",
                RouteRule::RecordType,
                20_000 + i,
            ))
        })
        .collect();
    tail[1].epoch = "e2".into();
    let outcomes: Vec<_> = store
        .ingest_run(&tail)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(!outcomes[0].gap && !outcomes[0].resync);
    assert!(outcomes[1].resync);
    assert!(outcomes[2].gap, "not applied after the one that was not");
    assert_eq!(store.position().await.unwrap().as_deref(), Some("e1:36"));
    assert!(store.message("SMtail2").await.unwrap().is_none());
    cleanup(store, &name).await;
}

#[test]
async fn a_conversation_exports_whole_for_those_who_may_see_it() {
    let name = db_name();
    let store = open(&name, "asha").await;
    let mut log = Log::new();
    let mut ids = Vec::new();
    for (i, (org, record)) in [
        (ORG, "contact:priya"),
        (ORG, "contact:priya"),
        ("+14155550102", "contact:john"),
    ]
    .into_iter()
    .enumerate()
    {
        let from = if record == "contact:john" {
            "+14155552671"
        } else {
            PRIYA
        };
        let out = store
            .ingest(&log.next(inbound(
                &format!("SMx{i}"),
                from,
                org,
                &format!("export {i}"),
                record,
                RouteRule::RecordType,
                5_000 - i as i64, // stored out of time order on purpose
            )))
            .await
            .unwrap();
        ids.push(out.conversation_id.unwrap());
    }
    let export = store.export(&ids[0]).await.unwrap().expect("stored");
    assert_eq!(
        export.record.map(|r| r.id).as_deref(),
        Some("contact:priya")
    );
    let bodies: Vec<&str> = export.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["export 1", "export 0"], "oldest first");
    // Zoe's number and Zoe's contact: not Asha's to export (V2).
    assert_eq!(store.export(&ids[2]).await.unwrap_err().code, "not_visible");
    assert!(store.export("nope").await.unwrap().is_none());
    cleanup(store, &name).await;
}

#[test]
async fn events_after_a_directory_change_are_decided_with_the_new_directory() {
    use sms_core::protocol::DirectoryPatch;
    let name = db_name();
    let store = open(&name, "asha").await;
    let mut log = Log::new();
    // Asha is given a new number; then a customer texts it. Ingest must see her as its
    // owner (notified), not the directory it read before the change (not visible).
    let new_org = "+14155550199";
    let patch = DirectoryPatch {
        upsert: Directory {
            org_numbers: vec![OrgNumber {
                number: new_org.into(),
                owner: Owner::Seller("asha".into()),
            }],
            ..Directory::default()
        },
        ..DirectoryPatch::default()
    };
    let change = log.next(EventBody::DirectoryChanged(DirectoryChangedEvent { patch }));
    let text = |log: &mut Log, sid: &str| {
        log.next(inbound(
            sid,
            "+919822233344",
            new_org,
            "hello",
            "lead:+919822233344",
            RouteRule::NewLead,
            1000,
        ))
    };
    store.ingest(&change).await.unwrap();
    let one = store.ingest(&text(&mut log, "SMn1")).await.unwrap();
    assert!(one.notification.is_some(), "one by one: {one:?}");
    // The same through a run: the change goes alone, the message after it.
    let change = log.next(EventBody::DirectoryChanged(DirectoryChangedEvent {
        patch: DirectoryPatch::default(),
    }));
    let run = [change, text(&mut log, "SMn2")];
    let outcomes = store.ingest_run(&run).await;
    let two = outcomes[1].as_ref().unwrap();
    assert!(two.notification.is_some(), "in a run: {two:?}");
    let lead = store.record("lead:+919822233344").await.unwrap().unwrap();
    assert_eq!(lead.owner, Some(Owner::Seller("asha".into())));
    cleanup(store, &name).await;
}

#[path = "fixtures/store/check.rs"]
mod check;

/// The store conformance suite on IndexedDB: the fixture files the memory store runs
/// natively, applied one transaction per event and as runs, compared the same way.
async fn conformance(runs: bool) {
    use serde_json::Value;
    let mut failures = Vec::new();
    for (name, text) in check::FIXTURES {
        let f: Value = serde_json::from_str(text).expect("fixture JSON");
        let db = db_name();
        let ctx = SellerContext {
            seller: f["seller"].as_str().unwrap().into(),
            default_region: f["region"].as_str().map(str::to_owned),
        };
        let store = IdbStore::open(&db, ctx).await.expect("open");
        store.put_rows(check::given(&f)).await.unwrap();
        let events: Vec<LoggedEvent> = serde_json::from_value(f["events"].clone()).unwrap();
        let reading = check::reading(&f);
        let mut outcomes = Vec::new();
        if runs {
            for range in check::runs(&events) {
                outcomes.extend(
                    store
                        .ingest_run_in_view(&events[range], reading.as_ref())
                        .await,
                );
            }
        } else {
            for e in &events {
                outcomes.push(store.ingest_in_view(e, reading.as_ref()).await);
            }
        }
        let outcomes: Vec<Value> = outcomes
            .into_iter()
            .map(|o| match o {
                Ok(o) => serde_json::to_value(o).unwrap(),
                Err(e) => serde_json::json!({ "error": e.code }),
            })
            .collect();
        let (want_outcomes, want_tables) = check::expected(&f, runs);
        let mut result = check::matches(want_outcomes, &Value::Array(outcomes), "outcomes");
        for (t, rows) in want_tables.as_object().expect("expect") {
            if result.is_err() {
                break;
            }
            let stored: Vec<Value> = store
                .rows(check::table(t))
                .await
                .unwrap()
                .iter()
                .map(check::row_json)
                .collect();
            result = check::matches(rows, &Value::Array(stored), t);
        }
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
        cleanup(store, &db).await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
async fn conformance_one_transaction_per_event() {
    conformance(false).await;
}

#[test]
async fn conformance_as_runs() {
    conformance(true).await;
}

/// Counts the transactions the page's database opens, by mode, from now on.
fn count_transactions() -> impl Fn() -> (u32, u32) {
    js_sys::Function::new_no_args(
        r#"const proto = IDBDatabase.prototype;
        if (!proto.__countedTransaction) {
          proto.__countedTransaction = proto.transaction;
          proto.transaction = function (stores, mode, options) {
            globalThis.__transactions[mode === "readwrite" ? "readwrite" : "readonly"] += 1;
            return proto.__countedTransaction.call(this, stores, mode, options);
          };
        }
        globalThis.__transactions = { readwrite: 0, readonly: 0 };"#,
    )
    .call0(&wasm_bindgen::JsValue::NULL)
    .unwrap();
    || {
        let t = js_sys::Reflect::get(&js_sys::global(), &"__transactions".into()).unwrap();
        let n = |m: &str| {
            js_sys::Reflect::get(&t, &m.into())
                .unwrap()
                .as_f64()
                .unwrap() as u32
        };
        (n("readwrite"), n("readonly"))
    }
}

#[test]
async fn an_inbound_message_to_the_open_conversation_costs_one_transaction() {
    use wasm_bindgen::JsValue;
    let name = db_name();
    let client = asha_with_priya(&name).await;
    let json = |s: &str| js_sys::JSON::parse(s).unwrap();
    let inbound = |id: u32, sid: &str| {
        json(&format!(
            r#"{{"epoch":"e1","id":{id},"kind":"inbound","message_sid":"{sid}","from":"+919812345678","to":"+14155550100",
            "body":"Is my order ready?","media":[],"at":"2026-11-27T10:0{id}:00Z","record_id":"contact:priya","rule":"only_match"}}"#
        ))
    };
    let out = client.ingest(inbound(1, "SM1")).await.unwrap();
    let conv = js_sys::Reflect::get(&out, &"conversation_id".into())
        .unwrap()
        .as_string()
        .unwrap();
    client
        .open_conversation(conv.clone(), JsValue::UNDEFINED)
        .await
        .unwrap();
    let counted = count_transactions();
    client.ingest(inbound(2, "SM2")).await.unwrap();
    // The message, its conversation, its (read) notification and the position in one
    // transaction; the pane updated from the rows decided, with no read back and no
    // read mark of its own.
    assert_eq!(counted(), (1, 0));
    let view = client.pane_view().unwrap();
    let messages = js_sys::Array::from(&js_sys::Reflect::get(&view, &"messages".into()).unwrap());
    assert_eq!(messages.length(), 2);
    // The grid and the bell: one read-only transaction, the same rows as apart.
    let counted = count_transactions();
    let inbox = client.inbox().await.unwrap();
    assert_eq!(counted(), (0, 1));
    let field = |v: &JsValue, k: &str| js_sys::Reflect::get(v, &k.into()).unwrap();
    let same = |a: JsValue, b: JsValue| {
        assert_eq!(
            js_sys::JSON::stringify(&a).unwrap(),
            js_sys::JSON::stringify(&b).unwrap()
        );
    };
    same(
        field(&inbox, "conversations"),
        client.conversations().await.unwrap(),
    );
    same(
        field(&inbox, "notifications"),
        client.notifications().await.unwrap(),
    );
    let convs = field(&inbox, "conversations");
    let unread = field(&js_sys::Array::from(&convs).get(0), "unread");
    assert_eq!(unread.as_f64(), Some(0.0), "read as it arrived");
    client.close();
    let _ = indexed_db_futures::database::Database::delete_by_name(&name);
}

#[test]
async fn load_older_keeps_messages_that_share_the_oldest_shown_time() {
    use wasm_bindgen::prelude::*;
    let name = db_name();
    let client = asha_with_priya(&name).await;
    let json = |s: &str| js_sys::JSON::parse(s).unwrap();
    // 52 messages; the three oldest arrive in the same second (provider times are
    // whole seconds): the first page (50) shows only one of them.
    let events = js_sys::Array::new();
    for i in 0..52 {
        let at = if i < 3 { 0 } else { i };
        events.push(&json(&format!(
            r#"{{"epoch":"e1","id":{},"kind":"inbound","message_sid":"SM{i:02}","from":"+919812345678","to":"+14155550100",
            "body":"m{i}","media":[],"at":"2026-11-27T10:00:{at:02}Z","record_id":"contact:priya","rule":"only_match"}}"#,
            i + 1
        )));
    }
    let outcomes = client.ingest_many(events).await.unwrap();
    let conv = js_sys::Reflect::get(
        &js_sys::Array::from(&outcomes).get(0),
        &"conversation_id".into(),
    )
    .unwrap()
    .as_string()
    .unwrap();
    let count = |v: &JsValue| {
        js_sys::Array::from(&js_sys::Reflect::get(v, &"messages".into()).unwrap()).length()
    };
    let view = client
        .open_conversation(conv, JsValue::UNDEFINED)
        .await
        .unwrap();
    assert_eq!(count(&view), 50);
    let view = client
        .dispatch(json(r#"{"type":"load_older"}"#))
        .await
        .unwrap();
    assert_eq!(
        count(&view),
        52,
        "the two others of that second come with the older page"
    );
    client.close();
    let _ = indexed_db_futures::database::Database::delete_by_name(&name);
}

/// Asha's client on a fresh database, with a directory of one contact (Priya) on her
/// org number.
async fn asha_with_priya(name: &str) -> sms_module::SmsClient {
    let o = js_sys::Object::new();
    js_sys::Reflect::set(&o, &"dbName".into(), &name.into()).unwrap();
    js_sys::Reflect::set(&o, &"seller".into(), &"asha".into()).unwrap();
    js_sys::Reflect::set(&o, &"defaultRegion".into(), &"IN".into()).unwrap();
    let client = sms_module::SmsClient::open(o.into()).await.unwrap();
    client
        .import_directory(js_sys::JSON::parse(
            r#"{"sellers":[{"id":"asha","name":"Asha Rao"}],"org_numbers":[{"number":"+14155550100","owner":{"seller":"asha"}}],
            "records":[{"id":"contact:priya","kind":"contact","name":"Priya Sharma","owner":{"seller":"asha"},"phones":["+919812345678"]}]}"#,
        ).unwrap())
        .await
        .unwrap();
    client
}
