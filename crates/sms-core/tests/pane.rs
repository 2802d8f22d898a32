//! Scripted pane scenarios through a harness with a fake clock.

use serde_json::json;
use sms_core::consent::Consent;
use sms_core::delivery::DeliveryStatus;
use sms_core::pane::{
    Direction, Effect, LocalState, Pane, PaneConfig, PaneError, PaneInput, PaneView,
};
use sms_core::send::SendRefusal;
use sms_core::Timestamp;

struct Harness {
    pane: Pane,
    now: i64,
}

impl Harness {
    fn new() -> Self {
        Self {
            pane: Pane::new(PaneConfig {
                seller: "asha".into(),
                teams: vec!["north".into()],
                default_region: Some("IN".into()),
            }),
            now: 1_714_557_600_000,
        }
    }

    fn step(&mut self, input: serde_json::Value) -> Result<Vec<Effect>, PaneError> {
        self.now += 1000;
        let input: PaneInput = serde_json::from_value(input).expect("valid input");
        self.pane.handle(input, Timestamp::from_millis(self.now))?;
        Ok(std::iter::from_fn(|| self.pane.poll_effect()).collect())
    }

    fn view(&self) -> PaneView {
        self.pane.view().expect("open")
    }

    fn open(&mut self) -> Vec<Effect> {
        self.step(open_input(json!({"seller": "asha"}))).unwrap()
    }
}

fn open_input(owner: serde_json::Value) -> serde_json::Value {
    json!({
        "type": "open",
        "source": {"via": "record_phone", "field": "mobile_phone"},
        "record": {"id": "contact:1", "kind": "contact", "name": "Priya Sharma", "owner": owner},
        "from_choices": ["+14155550100", "+14155550101"],
        "from_owners": [{"seller": "asha"}, {"team": "north"}],
        "to_choices": ["098123 45678", "+91 98123 00000"],
        "route_rule": "recent_conversation",
        "template_data": {"contact": {"first_name": "priya", "city": ""}, "seller": {"name": "Asha"}},
        "draft": ""
    })
}

fn message(id: &str, dir: &str, at: &str, body: &str) -> serde_json::Value {
    json!({"id": id, "provider_id": id, "direction": dir, "body": body, "at": at})
}

#[test]
fn opening_loads_the_newest_page_and_marks_read() {
    let mut h = Harness::new();
    let effects = h.open();
    assert!(
        matches!(&effects[0], Effect::LoadHistory { before: None, limit: 50, conversation, .. }
        if conversation.customer_number == "+919812345678" && conversation.org_number == "+14155550100")
    );
    assert!(matches!(effects[1], Effect::MarkRead { .. }));
    assert!(matches!(effects.last(), Some(Effect::Render)));
    assert!(h.view().loading);
    // B1, E5: the rule as a code with its parameters; English only for logs.
    let route = h.view().route.expect("a route reason");
    assert_eq!(
        serde_json::to_value(&route).unwrap(),
        json!({"code": "recent_conversation", "number": "+919812345678"})
    );
    assert_eq!(
        route.to_string(),
        "it holds the most recent conversation with +919812345678"
    );

    h.step(
        json!({"type": "history_loaded", "has_more": true, "messages": [
            message("SM2", "outbound", "2024-05-01T10:00:00Z", "second"),
            message("SM1", "inbound", "2024-05-01T09:00:00Z", "first"),
        ]}),
    )
    .unwrap();
    let v = h.view();
    assert_eq!(
        v.messages
            .iter()
            .map(|m| m.body.as_str())
            .collect::<Vec<_>>(),
        ["first", "second"]
    );
    assert!(!v.loading && v.has_more);

    let effects = h.step(json!({"type": "load_older"})).unwrap();
    assert!(
        matches!(&effects[0], Effect::LoadHistory { before: Some(t), at_edge: 1, .. }
        if *t == Timestamp::parse("2024-05-01T09:00:00Z").unwrap())
    );
}

#[test]
fn older_pages_lose_no_message_that_shares_the_oldest_shown_time() {
    let mut h = Harness::new();
    h.open();
    // Two of three messages sent in the same second are shown; the third is older in
    // the store's order and must come with the next page.
    h.step(
        json!({"type": "history_loaded", "has_more": true, "messages": [
            message("SMb", "inbound", "2024-05-01T09:00:00Z", "b"),
            message("SMc", "inbound", "2024-05-01T09:00:00Z", "c"),
        ]}),
    )
    .unwrap();
    let effects = h.step(json!({"type": "load_older"})).unwrap();
    assert!(matches!(
        &effects[0],
        Effect::LoadHistory {
            at_edge: 2,
            limit: 50,
            ..
        }
    ));
    // The page read at or before that time, messages shown included: each stays once.
    h.step(
        json!({"type": "history_loaded", "has_more": false, "messages": [
            message("SMa", "inbound", "2024-05-01T09:00:00Z", "a"),
            message("SMb", "inbound", "2024-05-01T09:00:00Z", "b"),
            message("SMc", "inbound", "2024-05-01T09:00:00Z", "c"),
        ]}),
    )
    .unwrap();
    let bodies: Vec<String> = h.view().messages.iter().map(|m| m.body.clone()).collect();
    assert_eq!(bodies.len(), 3);
    assert!(bodies.contains(&"a".to_owned()));
}

#[test]
fn a_conversation_the_seller_may_not_see_is_refused() {
    let mut h = Harness::new();
    let mut input = open_input(json!({"seller": "zoe"}));
    input["from_owners"] = json!([{"seller": "ravi"}, {"seller": "ravi"}]);
    let err = h.step(input).unwrap_err();
    assert_eq!(err.code(), "not_visible");
    assert!(!h.pane.is_open());
    // Visible through the team that owns the chosen org number.
    let mut input = open_input(json!({"seller": "zoe"}));
    input["from"] = json!("+14155550101");
    assert!(h.step(input).is_ok());
}

#[test]
fn templates_show_missing_fields_before_sending() {
    let mut h = Harness::new();
    h.open();
    h.step(json!({"type": "template_chosen", "body": "Hi {{ contact.first_name | capitalize }}, see you in {{ contact.city }}"}))
        .unwrap();
    let c = h.view().composer;
    assert_eq!(c.preview, "Hi Priya, see you in ");
    assert_eq!(c.missing, ["contact.city"]);
    let err = h
        .step(json!({"type": "send", "client_ref": "c1"}))
        .unwrap_err();
    assert_eq!(err, PaneError::MissingFields(vec!["contact.city".into()]));

    h.step(
        json!({"type": "composer_edited", "text": "Hi {{ contact.first_name | capitalize }} 🙂"}),
    )
    .unwrap();
    assert_eq!(h.view().composer.segments.ucs2_chars, ["🙂"]);
    let effects = h.step(json!({"type": "send", "client_ref": "c1"})).unwrap();
    match &effects[0] {
        Effect::Send(req) => {
            assert_eq!(req.body, "Hi Priya 🙂");
            assert_eq!(req.to, "+919812345678");
            assert_eq!(req.from, "+14155550100");
            assert_eq!(req.client_ref, "c1");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&effects[1], Effect::PersistDraft { text, .. } if text.is_empty()));
    let v = h.view();
    assert_eq!(v.composer.text, "");
    assert_eq!(v.messages[0].local, Some(LocalState::Sending));
    assert_eq!(v.messages[0].direction, Direction::Outbound);
}

#[test]
fn delivery_reports_only_move_forward_and_failures_explain_themselves() {
    let mut h = Harness::new();
    h.open();
    h.step(json!({"type": "composer_edited", "text": "hello"}))
        .unwrap();
    h.step(json!({"type": "send", "client_ref": "c1"})).unwrap();
    h.step(json!({"type": "send_accepted", "client_ref": "c1", "provider_id": "SM9", "status": "queued"})).unwrap();
    h.step(json!({"type": "delivery_report", "provider_id": "SM9", "status": "delivered"}))
        .unwrap();
    h.step(json!({"type": "delivery_report", "provider_id": "SM9", "status": "sent"}))
        .unwrap();
    let m = &h.view().messages[0];
    assert_eq!(
        m.delivery.as_ref().unwrap().status,
        DeliveryStatus::Delivered
    );
    assert_eq!(m.local, Some(LocalState::Accepted));

    h.step(json!({"type": "composer_edited", "text": "again"}))
        .unwrap();
    h.step(json!({"type": "send", "client_ref": "c2"})).unwrap();
    h.step(json!({"type": "send_failed", "client_ref": "c2", "error_code": 21211}))
        .unwrap();
    let m = &h.view().messages[1];
    let f = m.failure.as_ref().unwrap();
    assert_eq!(f.reason, "InvalidSendingParameters");
    // E5: what went wrong and the fix as codes (the number is E.164 already: no suggestion).
    assert_eq!(
        serde_json::to_value(f).unwrap(),
        json!({"reason": "InvalidSendingParameters", "code": "invalid_sending_parameters",
            "error_code": 21211, "fix": "fix_number", "suggested_number": null})
    );
    assert_eq!(m.local, Some(LocalState::Failed));

    h.step(json!({"type": "composer_edited", "text": "offline"}))
        .unwrap();
    h.step(json!({"type": "send", "client_ref": "c3"})).unwrap();
    h.step(json!({"type": "send_failed", "client_ref": "c3", "offline": true}))
        .unwrap();
    assert_eq!(h.view().messages[2].local, Some(LocalState::QueuedOffline));
}

#[test]
fn opted_out_and_too_long_are_refused_with_reasons() {
    let mut h = Harness::new();
    h.open();
    h.step(json!({"type": "composer_edited", "text": "a".repeat(1399)}))
        .unwrap();
    assert_eq!(h.view().composer.limit_left, None, "far from the limit");
    h.step(json!({"type": "composer_edited", "text": "a".repeat(1401)}))
        .unwrap();
    assert_eq!(
        h.view().composer.limit_left,
        Some(199),
        "counting down before the limit"
    );
    h.step(json!({"type": "composer_edited", "text": "a".repeat(1601)}))
        .unwrap();
    assert_eq!(h.view().composer.limit_left, Some(-1));
    assert_eq!(h.view().composer.blocked, Some("too_long"));
    assert_eq!(
        h.step(json!({"type": "send", "client_ref": "c1"}))
            .unwrap_err(),
        PaneError::Send(SendRefusal::TooLong(1601))
    );
    h.step(json!({"type": "composer_edited", "text": "hi"}))
        .unwrap();
    h.step(json!({"type": "consent_changed", "consent": "opted_out"}))
        .unwrap();
    assert_eq!(h.view().consent, Consent::OptedOut);
    assert_eq!(h.view().composer.blocked, Some("opted_out"));
    assert_eq!(
        h.step(json!({"type": "send", "client_ref": "c1"}))
            .unwrap_err(),
        PaneError::Send(SendRefusal::OptedOut)
    );
    h.step(json!({"type": "to_chosen", "number": "+919812300000"}))
        .unwrap();
    h.step(json!({"type": "consent_changed", "consent": "opted_in"}))
        .unwrap();
    assert!(h.step(json!({"type": "send", "client_ref": "c1"})).is_ok());
    assert_eq!(
        h.step(json!({"type": "to_chosen", "number": "+15550000000"}))
            .unwrap_err()
            .code(),
        "unknown_number"
    );
}

#[test]
fn inbound_messages_join_the_open_conversation_or_notify() {
    let mut h = Harness::new();
    h.open();
    let inbound = |id: &str, record: &str| {
        json!({"type": "inbound", "record_id": record, "org_number": "+14155550100",
               "customer_number": "+919812345678",
               "message": message(id, "inbound", "2024-05-02T10:00:00Z", "नमस्ते")})
    };
    let effects = h.step(inbound("SM5", "contact:1")).unwrap();
    assert!(matches!(effects[0], Effect::MarkRead { .. }));
    h.step(inbound("SM5", "contact:1")).unwrap();
    assert_eq!(h.view().messages.len(), 1);
    let effects = h.step(inbound("SM6", "account:2")).unwrap();
    assert!(matches!(&effects[0], Effect::Notify { message_id, .. } if message_id == "SM6"));
    assert_eq!(h.view().messages.len(), 1);
}

#[test]
fn moving_waits_for_the_relay_then_follows_the_conversation() {
    let mut h = Harness::new();
    h.open();
    let target = json!({"id": "account:2", "kind": "account", "name": "Sharma Traders", "owner": {"seller": "asha"}});
    let effects = h
        .step(json!({"type": "move_requested", "target": target}))
        .unwrap();
    assert!(
        matches!(&effects[0], Effect::RequestMove { target_record_id, .. } if target_record_id == "account:2")
    );
    assert_eq!(h.view().pending_move.as_ref().unwrap().id, "account:2");
    assert_eq!(
        h.step(json!({"type": "move_requested", "target": target}))
            .unwrap_err(),
        PaneError::MoveInProgress
    );
    h.step(json!({"type": "move_confirmed", "target": target, "entry": {
        "by": "asha", "at": "2024-05-03T10:00:00Z", "from_record": "contact:1", "to_record": "account:2"}}))
        .unwrap();
    let v = h.view();
    assert_eq!(v.record.id, "account:2");
    assert_eq!(v.conversation.record_id, "account:2");
    assert_eq!(v.moves.len(), 1);
    assert!(v.pending_move.is_none());
    // B1: the pane now says who moved it here and when, not the original rule.
    assert_eq!(
        v.route_rule,
        Some(sms_core::routing::RouteRule::RecentConversation)
    );
    assert_eq!(
        serde_json::to_value(v.route.as_ref().unwrap()).unwrap(),
        json!({"code": "moved_here", "by": "asha", "at": "2024-05-03T10:00:00Z", "from_record": "contact:1"})
    );
    // Later inbound messages on the new record join the open pane.
    let effects = h
        .step(json!({"type": "inbound", "record_id": "account:2", "org_number": "+14155550100",
            "customer_number": "+919812345678", "message": message("SM7", "inbound", "2024-05-04T10:00:00Z", "ok")}))
        .unwrap();
    assert!(matches!(effects[0], Effect::MarkRead { .. }));
}

#[test]
fn inputs_need_an_open_pane() {
    let mut h = Harness::new();
    assert_eq!(
        h.step(json!({"type": "load_older"})).unwrap_err(),
        PaneError::NotOpen
    );
    h.open();
    h.step(json!({"type": "close"})).unwrap();
    assert!(h.pane.view().is_none());
}

#[test]
fn messages_sent_from_another_tab_join_the_history_once() {
    let mut h = Harness::new();
    h.open();
    let logged = |record: &str, status: &str, code: serde_json::Value| {
        json!({"type": "outbound_logged", "record_id": record, "org_number": "+14155550100",
               "customer_number": "+919812345678",
               "message": {"id": "c7", "client_ref": "c7", "provider_id": "SM7", "direction": "outbound",
                           "body": "sent elsewhere", "at": "2024-05-02T10:00:00Z",
                           "delivery": {"status": status, "error_code": code}}})
    };
    let effects = h.step(logged("contact:1", "queued", json!(null))).unwrap();
    assert!(
        effects.iter().all(|e| matches!(e, Effect::Render)),
        "no read mark, no notification: {effects:?}"
    );
    h.step(logged("contact:1", "undelivered", json!(30003)))
        .unwrap();
    let messages = h.view().messages;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].direction, Direction::Outbound);
    assert_eq!(
        messages[0].delivery.as_ref().map(|d| d.status),
        Some(DeliveryStatus::Undelivered)
    );
    h.step(logged("account:2", "queued", json!(null))).unwrap();
    assert_eq!(h.view().messages.len(), 1, "another record's conversation");
}

#[test]
fn route_reasons_carry_their_parameters() {
    use sms_core::directory::{Owner, RecordKind};
    use sms_core::routing::{RouteReason, RouteRule};
    let team = Owner::Team("north".into());
    let seller = Owner::Seller("asha".into());
    let of = |rule, org| RouteReason::of_rule(rule, "+919812345678", RecordKind::Account, org);
    let codes = [
        (
            of(RouteRule::TeamMember, Some(&team)),
            json!({"code": "team_member", "team": "north"}),
        ),
        (
            of(RouteRule::AddressedSeller, Some(&seller)),
            json!({"code": "addressed_seller", "seller": "asha"}),
        ),
        (
            of(RouteRule::AddressedSeller, None),
            json!({"code": "addressed_seller", "seller": null}),
        ),
        (
            of(RouteRule::RecordType, None),
            json!({"code": "record_type", "kind": "account"}),
        ),
        (of(RouteRule::Active, None), json!({"code": "active"})),
        (
            of(RouteRule::NewLead, None),
            json!({"code": "new_lead", "number": "+919812345678"}),
        ),
    ];
    for (reason, want) in codes {
        assert_eq!(serde_json::to_value(&reason).unwrap(), want);
        assert_eq!(reason.code(), want["code"]);
    }
    // In the pane, the org number's owner comes from the chosen number.
    let mut h = Harness::new();
    let mut input = open_input(json!({"seller": "asha"}));
    input["route_rule"] = json!("team_member");
    input["from"] = json!("+14155550101");
    h.step(input).unwrap();
    assert_eq!(
        serde_json::to_value(h.view().route.unwrap()).unwrap(),
        json!({"code": "team_member", "team": "north"})
    );
}
