//! The relay's sequencer decisions, run without HTTP or a database: a harness keeps
//! the state and a fake clock, and stands in for the log (idempotency keys, pending
//! sends) the way the relay's executor does.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use sms_core::autoreply::{AutoReply, AUTO_REPLY_SENDER};
use sms_core::protocol::{EventBody, MoveRequest, SendOutcome, SendRequest};
use sms_core::relay::{
    decide, reconcile, Command, DirectoryUpdate, InboundSms, ListedMessage, Op, PendingSend,
    ProviderAnswer, Reconciled, Refusal, SendPlan, State,
};
use sms_core::routing::RouteRule;
use sms_core::Timestamp;

struct Harness {
    state: State,
    now: i64,
    seen: HashSet<String>,
    pending: Vec<PendingSend>,
    /// Sends marked `calling` (the provider call may start).
    calling: Vec<PendingSend>,
    log: Vec<EventBody>,
    /// What the last reconciliation found.
    reconciled: Option<Reconciled>,
    /// The automatic replies configured (none by default).
    auto_reply: Arc<AutoReply>,
}

impl Harness {
    fn new() -> Self {
        let directory = json!({
            "sellers": [{"id": "asha"}, {"id": "ravi"}, {"id": "zoe"}],
            "teams": [{"id": "north", "members": ["asha", "ravi"]}],
            "org_numbers": [
                {"number": "+14155550100", "owner": {"seller": "asha"}},
                {"number": "+14155550101", "owner": {"team": "north"}},
                {"number": "+14155550102", "owner": {"seller": "zoe"}}
            ],
            "records": [
                {"id": "contact:priya", "kind": "contact", "name": "Priya", "owner": {"seller": "asha"},
                 "phones": ["+919812345678"]},
                {"id": "account:acme", "kind": "account", "name": "Acme", "owner": {"seller": "zoe"},
                 "phones": ["+14155552671"]}
            ]
        });
        let mut h = Self {
            state: State::new(Some("IN".into())),
            now: 1_000_000,
            seen: HashSet::new(),
            pending: Vec::new(),
            calling: Vec::new(),
            log: Vec::new(),
            reconciled: None,
            auto_reply: Arc::new(AutoReply::default()),
        };
        let update = DirectoryUpdate::Replace(serde_json::from_value(directory).unwrap());
        h.run(Command::Directory(update)).unwrap();
        h
    }

    /// Decides at the next tick and carries the decision out like the relay's executor.
    fn run(&mut self, command: Command) -> Result<(Vec<EventBody>, Option<SendPlan>), Refusal> {
        self.now += 1000;
        if let Some(key) = command.dedupe_key() {
            if self.seen.contains(&key) {
                return Ok((Vec::new(), None));
            }
        }
        let decision = decide(&self.state, command, Timestamp::from_millis(self.now))?;
        let mut events = Vec::new();
        for op in decision.ops {
            match op {
                Op::Append { body, dedupe } => {
                    if dedupe.is_some_and(|k| !self.seen.insert(k)) {
                        continue;
                    }
                    self.state.apply(&body);
                    self.log.push(body.clone());
                    events.push(body);
                }
                Op::AddPending(p) => {
                    self.state.start_send(&p.seller, &p.client_ref);
                    self.pending.push(p);
                }
                Op::MarkCalling(p) => self.calling.push(p),
                Op::RemovePending(p) => {
                    self.pending.retain(|x| x != &p);
                    self.calling.retain(|x| x != &p);
                }
            }
        }
        self.reconciled = decision.reconciled;
        Ok((events, decision.send))
    }

    fn inbound(&mut self, sid: &str, from: &str, to: &str, body: &str) -> Vec<EventBody> {
        self.inbound_replied(sid, from, to, body).0
    }

    /// An inbound message: its events and the automatic reply it queued.
    fn inbound_replied(
        &mut self,
        sid: &str,
        from: &str,
        to: &str,
        body: &str,
    ) -> (Vec<EventBody>, Option<PendingSend>) {
        let sms = InboundSms {
            message_sid: sid.into(),
            from: from.into(),
            to: to.into(),
            body: body.into(),
            media: Vec::new(),
        };
        let auto_reply = self.auto_reply.clone();
        let (events, plan) = self.run(Command::Inbound { sms, auto_reply }).unwrap();
        let reply = match plan {
            Some(SendPlan::Go(p)) => Some(p),
            None => None,
            other => panic!("an inbound message plans a reply or nothing: {other:?}"),
        };
        (events, reply)
    }

    fn send(&mut self, seller: &str, client_ref: &str, to: &str) -> Result<SendPlan, Refusal> {
        let request = SendRequest {
            client_ref: client_ref.into(),
            from: "+14155550100".into(),
            to: to.into(),
            body: "Hello".into(),
            record_id: Some("contact:priya".into()),
        };
        let seller = seller.into();
        Ok(self.run(Command::BeginSend { seller, request })?.1.unwrap())
    }

    fn finish(&mut self, pending: PendingSend, sid: &str) -> Vec<EventBody> {
        let answer = ProviderAnswer {
            message_sid: Some(sid.into()),
            outcome: SendOutcome::Accepted,
            error_code: None,
        };
        self.run(Command::FinishSend { pending, answer }).unwrap().0
    }

    fn move_request(
        &mut self,
        seller: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<EventBody>, Refusal> {
        let request = MoveRequest {
            org_number: "+14155550100".into(),
            customer_number: "+919812345678".into(),
            from_record: from.into(),
            to_record: to.into(),
        };
        let seller = seller.into();
        Ok(self.run(Command::Move { seller, request })?.0)
    }
}

fn kinds(events: &[EventBody]) -> Vec<&'static str> {
    events.iter().map(EventBody::kind).collect()
}

#[test]
fn an_unknown_number_gets_one_lead_owned_like_the_org_number_at_now() {
    let mut h = Harness::new();
    let events = h.inbound("SM1", "+15550001111", "+14155550101", "hi");
    assert_eq!(kinds(&events), ["lead_created", "inbound"]);
    let EventBody::LeadCreated(lead) = &events[0] else {
        unreachable!()
    };
    assert_eq!(lead.record.id, "lead:+15550001111");
    assert_eq!(
        lead.record.owner,
        Some(sms_core::directory::Owner::Team("north".into()))
    );
    assert_eq!(lead.record.updated_at, Some(Timestamp::from_millis(h.now)));
    let EventBody::Inbound(m) = &events[1] else {
        unreachable!()
    };
    assert_eq!(
        (m.rule, m.at),
        (RouteRule::NewLead, Timestamp::from_millis(h.now))
    );
    // The second message from the number goes to that lead, and a repeated webhook
    // is nothing at all.
    let again = h.inbound("SM2", "+15550001111", "+14155550101", "there?");
    assert_eq!(kinds(&again), ["inbound"]);
    assert!(h
        .inbound("SM2", "+15550001111", "+14155550101", "there?")
        .is_empty());
}

#[test]
fn stop_is_logged_before_its_message_and_then_refuses_sends() {
    let mut h = Harness::new();
    let events = h.inbound("SM1", "098123 45678", "+14155550100", "STOP");
    assert_eq!(kinds(&events), ["consent_changed", "inbound"]);
    assert_eq!(
        h.send("asha", "c1", "+919812345678").unwrap_err().code(),
        "opted_out"
    );
    h.inbound("SM2", "+919812345678", "+14155550100", "START");
    assert!(matches!(
        h.send("asha", "c1", "+919812345678"),
        Ok(SendPlan::Go(_))
    ));
}

#[test]
fn sends_are_idempotent_per_seller() {
    let mut h = Harness::new();
    let Ok(SendPlan::Go(p)) = h.send("asha", "c1", "098123 45678") else {
        panic!("expected a go")
    };
    assert_eq!(p.to, "+919812345678");
    assert_eq!(h.pending.len(), 1);
    assert_eq!(
        h.send("asha", "c1", "098123 45678"),
        Ok(SendPlan::InProgress)
    );
    let events = h.finish(p, "SMx");
    assert_eq!(kinds(&events), ["outbound"]);
    assert!(h.pending.is_empty());
    let Ok(SendPlan::Done(done)) = h.send("asha", "c1", "098123 45678") else {
        panic!("expected the earlier answer")
    };
    assert_eq!(done.message_sid.as_deref(), Some("SMx"));
    // Another seller's reference is their own: ravi (north) may not send from
    // asha's number, whatever the reference.
    assert_eq!(
        h.send("ravi", "c1", "098123 45678").unwrap_err().code(),
        "not_your_number"
    );
}

#[test]
fn a_send_is_checked_with_the_shared_rule() {
    let mut h = Harness::new();
    for (to, code) in [("12", "invalid_phone"), ("", "no_to_number")] {
        assert_eq!(h.send("asha", "c", to).unwrap_err().code(), code);
    }
    assert_eq!(
        h.send("asha", " ", "+919812345678").unwrap_err().code(),
        "invalid_client_ref"
    );
}

#[test]
fn an_abandoned_send_is_logged_unknown_never_resent() {
    let mut h = Harness::new();
    let Ok(SendPlan::Go(p)) = h.send("asha", "c9", "+919812345678") else {
        panic!("expected a go")
    };
    let (events, _) = h.run(Command::Abandon(p)).unwrap();
    let EventBody::Outbound(o) = &events[0] else {
        unreachable!()
    };
    assert_eq!(o.outcome, SendOutcome::Unknown);
    assert!(matches!(
        h.send("asha", "c9", "+919812345678"),
        Ok(SendPlan::Done(_))
    ));
}

#[test]
fn a_move_checks_visibility_before_existence() {
    let mut h = Harness::new();
    h.inbound("SM1", "+919812345678", "+14155550100", "hello");
    // zoe sees neither the number nor the record: the same answer whether the
    // conversation is there or not.
    assert_eq!(
        h.move_request("zoe", "contact:priya", "account:acme"),
        Err(Refusal::NotVisible)
    );
    assert_eq!(
        h.move_request("zoe", "contact:nobody", "account:acme"),
        Err(Refusal::NotVisible)
    );
    assert_eq!(
        h.move_request("asha", "account:acme", "contact:priya"),
        Err(Refusal::NoSuchConversation)
    );
    assert_eq!(
        h.move_request("asha", "contact:priya", "contact:none"),
        Err(Refusal::NoSuchRecord)
    );
    assert_eq!(
        h.move_request("asha", "contact:priya", "contact:priya"),
        Err(Refusal::SameRecord)
    );
    let moved = h
        .move_request("asha", "contact:priya", "account:acme")
        .unwrap();
    assert_eq!(kinds(&moved), ["conversation_moved"]);
    // The next reply follows the move (R2 rule 1: the most recent conversation).
    let reply = h.inbound("SM2", "+919812345678", "+14155550100", "ok");
    let EventBody::Inbound(m) = &reply[0] else {
        unreachable!()
    };
    assert_eq!(m.record_id, "account:acme");
    assert_eq!(
        kinds(&h.log),
        [
            "directory_replaced",
            "inbound",
            "conversation_moved",
            "inbound"
        ]
    );
}

#[test]
fn each_seller_receives_their_part_of_the_directory() {
    let mut h = Harness::new();
    let zoe = h.state.directory_for("zoe");
    let acme = zoe.records.iter().find(|r| r.id == "account:acme").unwrap();
    assert!(
        acme.owner.is_some() && !acme.phones.is_empty(),
        "her own record in full"
    );
    let priya = zoe
        .records
        .iter()
        .find(|r| r.id == "contact:priya")
        .unwrap();
    assert_eq!(
        (
            priya.owner.as_ref(),
            priya.phones.len(),
            priya.name.as_str()
        ),
        (None, 0, "Priya")
    );
    let numbers: Vec<&str> = zoe.org_numbers.iter().map(|o| o.number.as_str()).collect();
    assert_eq!(numbers, ["+14155550102"]);
    assert!(zoe.teams.is_empty());
    let sellers: Vec<&str> = zoe.sellers.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(sellers, ["zoe"]);
    let asha = h.state.directory_for("asha");
    let sellers: Vec<&str> = asha.sellers.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(sellers, ["asha", "ravi"], "herself and her team's members");
    assert_eq!(asha.org_numbers.len(), 2);

    // A message to zoe's number from Priya's phone lands on asha's contact: zoe now
    // sees that conversation, so she gets the contact in full (it holds it) ...
    h.inbound("SM1", "+919812345678", "+14155550102", "hi");
    let zoe = h.state.directory_for("zoe");
    let priya = zoe
        .records
        .iter()
        .find(|r| r.id == "contact:priya")
        .unwrap();
    assert!(priya.owner.is_some());
    // ... and asha gets zoe's number, the one the conversation is on.
    let asha = h.state.directory_for("asha");
    assert!(asha.org_numbers.iter().any(|o| o.number == "+14155550102"));
}

#[test]
fn a_send_names_only_a_record_the_seller_receives_in_full() {
    let mut h = Harness::new();
    let request = |record: &str| SendRequest {
        client_ref: format!("c-{record}"),
        from: "+14155550100".into(),
        to: "+919812345678".into(),
        body: "Hello".into(),
        record_id: Some(record.into()),
    };
    for record in ["account:acme", "account:none"] {
        let (seller, request) = ("asha".into(), request(record));
        let refused = h.run(Command::BeginSend { seller, request }).unwrap_err();
        assert_eq!(refused.code(), "no_such_record", "{record}");
    }
}

fn go(plan: Result<SendPlan, Refusal>) -> PendingSend {
    match plan {
        Ok(SendPlan::Go(p)) => p,
        other => panic!("expected a go, got {other:?}"),
    }
}

#[test]
fn a_queued_send_becomes_calling_before_the_provider_is_called() {
    let mut h = Harness::new();
    let p = go(h.send("asha", "c1", "+919812345678"));
    assert_eq!(p.at, Timestamp::from_millis(h.now), "queued at now");
    assert!(h.calling.is_empty(), "queued, not calling");
    let (events, plan) = h.run(Command::Call(p.clone())).unwrap();
    assert!(events.is_empty());
    assert_eq!(plan, Some(SendPlan::Go(p.clone())));
    assert_eq!(h.calling, std::slice::from_ref(&p));
    // A retry while it is with the provider is told it is in progress, not refused.
    assert_eq!(
        h.send("asha", "c1", "+919812345678"),
        Ok(SendPlan::InProgress)
    );
    h.finish(p.clone(), "SM1");
    assert!(h.pending.is_empty() && h.calling.is_empty());
    // A worker that calls it again (a duplicate hand-over) gets the outcome instead.
    let (_, plan) = h.run(Command::Call(p)).unwrap();
    assert!(matches!(plan, Some(SendPlan::Done(d)) if d.message_sid.as_deref() == Some("SM1")));
}

#[test]
fn a_send_whose_queueing_did_not_commit_is_never_called() {
    let mut h = Harness::new();
    let p = go(h.send("asha", "c1", "+919812345678"));
    // The batch that queued it failed: the executor rebuilds the state from the log,
    // which holds no trace of the send.
    let mut fresh = Harness::new();
    fresh.now = h.now;
    assert_eq!(
        fresh.run(Command::Call(p.clone())),
        Err(Refusal::NotPending)
    );
    assert!(fresh.calling.is_empty());
    assert_eq!(Refusal::NotPending.code(), "not_pending");
    // ... and the same request again is a new send.
    assert!(matches!(
        fresh.send("asha", "c1", "+919812345678"),
        Ok(SendPlan::Go(_))
    ));
}

fn listed(sid: &str, p: &PendingSend, body: &str) -> ListedMessage {
    ListedMessage {
        sid: sid.into(),
        from: p.from.clone(),
        to: p.to.clone(),
        body: body.into(),
        status: Some(sms_core::delivery::DeliveryStatus::Delivered),
        error_code: None,
    }
}

#[test]
fn a_calling_send_is_reconciled_only_by_an_exact_single_match() {
    let mut h = Harness::new();
    let p = go(h.send("asha", "c1", "+919812345678"));
    h.run(Command::Call(p.clone())).unwrap();
    let other_body = listed("SMother", &p, "Hello again");
    let mut other_number = listed("SMnum", &p, "Hello");
    other_number.to = "+919800000000".into();
    let ours = listed("SMours", &p, "Hello");
    let (events, _) = h
        .run(Command::Reconcile {
            pending: p.clone(),
            listed: Some(vec![other_body.clone(), ours.clone(), other_number.clone()]),
        })
        .unwrap();
    let EventBody::Outbound(o) = &events[0] else {
        unreachable!()
    };
    assert_eq!(
        (o.outcome, o.message_sid.as_deref()),
        (SendOutcome::Accepted, Some("SMours"))
    );
    assert_eq!(h.reconciled, Some(Reconciled::Found("SMours".into())));
    assert!(h.pending.is_empty() && h.calling.is_empty());
    // Reconciling it again is refused: its outcome is logged.
    assert_eq!(
        h.run(Command::Reconcile {
            pending: p.clone(),
            listed: None
        })
        .unwrap_err(),
        Refusal::NotPending
    );

    // Two identical messages, none, or a provider that cannot be asked: unknown.
    let cases = [
        (
            Some(vec![
                listed("SMtwin1", &p, "Hello"),
                listed("SMtwin2", &p, "Hello"),
            ]),
            Reconciled::Ambiguous(2),
        ),
        // The only match is the first send's message, already logged: not this one's.
        (Some(vec![ours.clone()]), Reconciled::NotFound),
        (Some(vec![other_body, other_number]), Reconciled::NotFound),
        (None, Reconciled::NotAsked),
    ];
    for (i, (list, expected)) in cases.into_iter().enumerate() {
        let p = go(h.send("asha", &format!("r{i}"), "+919812345678"));
        h.run(Command::Call(p.clone())).unwrap();
        let (events, _) = h
            .run(Command::Reconcile {
                pending: p,
                listed: list,
            })
            .unwrap();
        let EventBody::Outbound(o) = &events[0] else {
            unreachable!()
        };
        assert_eq!(
            (o.outcome, o.message_sid.as_deref()),
            (SendOutcome::Unknown, None)
        );
        assert_eq!(
            h.reconciled.as_ref(),
            Some(&expected),
            "{}",
            expected.code()
        );
    }
}

#[test]
fn a_match_the_provider_failed_is_a_failed_send() {
    let p = PendingSend {
        client_ref: "c".into(),
        seller: "asha".into(),
        from: "+14155550100".into(),
        to: "+919812345678".into(),
        body: "Hi".into(),
        record_id: "contact:priya".into(),
        at: Timestamp::from_millis(0),
    };
    let mut m = listed("SMf", &p, "Hi");
    m.status = Some(sms_core::delivery::DeliveryStatus::Failed);
    m.error_code = Some(30007);
    let (answer, found) = reconcile(&p, Some(&[m]));
    assert_eq!(found, Reconciled::Found("SMf".into()));
    assert_eq!(
        (
            answer.outcome,
            answer.error_code,
            answer.message_sid.as_deref()
        ),
        (SendOutcome::Failed, Some(30007), Some("SMf"))
    );
}

fn replying() -> Harness {
    let mut h = Harness::new();
    h.auto_reply = Arc::new(
        serde_json::from_value(json!({
            "help": "Acme help: reply STOP to opt out",
            "stop": "Acme: you are unsubscribed",
            "start": "Acme: you are subscribed again",
            "provider_handles_opt_out": false,
            "numbers": [{"number": "+14155550101", "help": "North help"}]
        }))
        .unwrap(),
    );
    h
}

#[test]
fn help_queues_the_numbers_reply_as_a_send_on_the_conversations_record() {
    let mut h = replying();
    let (events, reply) = h.inbound_replied("SM1", "+919812345678", "+14155550100", " help ");
    assert_eq!(kinds(&events), ["inbound"]);
    let p = reply.expect("a reply");
    assert_eq!(p.seller, AUTO_REPLY_SENDER);
    assert_eq!(p.client_ref, "auto:SM1");
    assert_eq!(
        (p.from.as_str(), p.to.as_str()),
        ("+14155550100", "+919812345678")
    );
    assert_eq!(p.body, "Acme help: reply STOP to opt out");
    assert_eq!(p.record_id, "contact:priya");
    assert_eq!(
        h.pending,
        std::slice::from_ref(&p),
        "durably queued by the same decision"
    );
    // Another number's own text; a new lead's reply goes on the lead.
    let (_, north) = h.inbound_replied("SM2", "+15550001111", "+14155550101", "INFO");
    let north = north.unwrap();
    assert_eq!(north.body, "North help");
    assert_eq!(north.record_id, "lead:+15550001111");
    // It ends like any send: an outbound event by the system sender.
    let events = h.finish(p, "SMr1");
    let EventBody::Outbound(o) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(o.by, AUTO_REPLY_SENDER);
    assert_eq!(o.message_sid.as_deref(), Some("SMr1"));
}

#[test]
fn the_same_help_message_twice_is_answered_once() {
    let mut h = replying();
    let (_, first) = h.inbound_replied("SM1", "+919812345678", "+14155550100", "HELP");
    let p = first.unwrap();
    assert_eq!(
        h.inbound_replied("SM1", "+919812345678", "+14155550100", "HELP"),
        (vec![], None)
    );
    h.finish(p, "SMr1");
    // Even with the webhook's key gone, the reply's reference is known.
    h.seen.remove("in:SM1");
    let (events, again) = h.inbound_replied("SM1", "+919812345678", "+14155550100", "HELP");
    assert_eq!(kinds(&events), ["inbound"]);
    assert_eq!(again, None);
}

#[test]
fn stop_gets_its_confirmation_although_the_customer_is_now_opted_out() {
    let mut h = replying();
    let (events, reply) = h.inbound_replied("SM1", "+919812345678", "+14155550100", "STOP");
    assert_eq!(kinds(&events), ["consent_changed", "inbound"]);
    let p = reply.expect("the confirmation");
    assert_eq!(p.body, "Acme: you are unsubscribed");
    // A seller's send is refused; the confirmation is called and logged.
    assert_eq!(
        h.send("asha", "c1", "+919812345678").unwrap_err().code(),
        "opted_out"
    );
    let (_, plan) = h.run(Command::Call(p.clone())).unwrap();
    assert_eq!(plan, Some(SendPlan::Go(p.clone())));
    assert_eq!(kinds(&h.finish(p, "SMr1")), ["outbound"]);
    // A second STOP, or HELP, while opted out: nothing more.
    assert_eq!(
        h.inbound_replied("SM2", "+919812345678", "+14155550100", "stop")
            .1,
        None
    );
    assert_eq!(
        h.inbound_replied("SM3", "+919812345678", "+14155550100", "HELP")
            .1,
        None
    );
    let (_, start) = h.inbound_replied("SM4", "+919812345678", "+14155550100", "START");
    assert_eq!(start.unwrap().body, "Acme: you are subscribed again");
}

#[test]
fn no_reply_to_short_codes_alphanumeric_senders_or_our_own_numbers() {
    let mut h = replying();
    for (sid, from) in [
        ("SM1", "12345"),
        ("SM2", "ACMEBANK"),
        ("SM3", "+14155550102"),
    ] {
        let (events, reply) = h.inbound_replied(sid, from, "+14155550100", "HELP");
        assert!(kinds(&events).contains(&"inbound"), "{from} is logged");
        assert_eq!(reply, None, "{from}");
    }
    assert!(h.pending.is_empty());
    // Without a configuration, nothing either.
    let mut plain = Harness::new();
    assert_eq!(
        plain
            .inbound_replied("SM1", "+919812345678", "+14155550100", "HELP")
            .1,
        None
    );
}

#[test]
fn a_send_with_the_provider_when_its_number_is_erased_is_logged_without_its_text() {
    let mut h = Harness::new();
    let p = go(h.send("asha", "c1", "+919812345678"));
    h.run(Command::Call(p.clone())).unwrap();
    let (erased, _) = h
        .run(Command::Erase {
            number: "+919812345678".into(),
        })
        .unwrap();
    assert_eq!(kinds(&erased), ["erased"]);
    let events = h.finish(p, "SM1");
    let EventBody::Outbound(o) = &events[0] else {
        panic!("expected the outcome: {events:?}")
    };
    assert_eq!((o.body.as_str(), o.outcome), ("", SendOutcome::Accepted));
    // A send begun after the erasure is a new message: its text is logged.
    h.now += 1_000;
    let later = go(h.send("asha", "c2", "+919812345678"));
    let events = h.finish(later, "SM2");
    assert!(matches!(&events[0], EventBody::Outbound(o) if o.body == "Hello"));
    // Not a number: refused with a code.
    assert_eq!(
        h.run(Command::Erase {
            number: "call me".into()
        })
        .unwrap_err()
        .code(),
        "invalid_number"
    );
}
