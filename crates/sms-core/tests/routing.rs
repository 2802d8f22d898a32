//! Routing scenarios (R1–R3) and properties: deterministic, order-independent, and
//! the winner never loses a pairwise comparison.

#![cfg(not(target_family = "wasm"))]

use proptest::prelude::*;
use serde_json::json;
use sms_core::directory::{OrgNumber, Owner, Record, RecordKind, Team};
use sms_core::routing::{route, ConversationActivity, RouteDecision, RouteInput, RouteRule};
use sms_core::Timestamp;

const ORG: &str = "+14155550100";
const CUSTOMER: &str = "+919812345678";

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn record(id: &str, kind: RecordKind, owner: Owner) -> Record {
    Record {
        id: id.into(),
        kind,
        owner: Some(owner),
        active: true,
        updated_at: Some(ts("2024-01-01T00:00:00Z")),
        phones: vec!["098123 45678".into()],
        name: id.into(),
        related: Vec::new(),
    }
}

fn seller(id: &str) -> Owner {
    Owner::Seller(id.into())
}

fn input(records: Vec<Record>, conversations: Vec<ConversationActivity>) -> RouteInput {
    RouteInput {
        inbound: sms_core::routing::InboundAddress {
            from: CUSTOMER.into(),
            to: "+1 (415) 555-0100".into(),
        },
        default_region: Some("IN".into()),
        org_numbers: vec![
            OrgNumber {
                number: ORG.into(),
                owner: seller("asha"),
            },
            OrgNumber {
                number: "+14155550199".into(),
                owner: Owner::Team("north".into()),
            },
        ],
        teams: vec![Team {
            id: "north".into(),
            members: vec!["asha".into(), "ravi".into()],
        }],
        records,
        conversations,
    }
}

fn conv(record_id: &str, at: &str) -> ConversationActivity {
    ConversationActivity {
        record_id: record_id.into(),
        org_number: ORG.into(),
        customer_number: CUSTOMER.into(),
        last_message_at: ts(at),
    }
}

fn decided(i: &RouteInput) -> (String, RouteRule) {
    let d = route(i);
    (d.record_id().to_owned(), d.rule())
}

#[test]
fn only_match_and_new_lead() {
    let i = input(
        vec![record("contact:1", RecordKind::Contact, seller("zoe"))],
        vec![],
    );
    assert_eq!(decided(&i), ("contact:1".into(), RouteRule::OnlyMatch));

    let mut i = input(vec![], vec![]);
    i.inbound.to = "+14155550199".into();
    match route(&i) {
        RouteDecision::NewLead { new_lead, rule } => {
            assert_eq!(rule, RouteRule::NewLead);
            assert_eq!(new_lead.id, "lead:+919812345678");
            assert_eq!(new_lead.owner, Some(Owner::Team("north".into())));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_rule_can_decide() {
    let base = || {
        vec![
            record("lead:9", RecordKind::Lead, seller("zoe")),
            record("account:5", RecordKind::Account, seller("zoe")),
        ]
    };
    // 4: record type.
    assert_eq!(
        decided(&input(base(), vec![])),
        ("account:5".into(), RouteRule::RecordType)
    );
    // 1: the most recent conversation wins over type, offsets compared as instants.
    let convs = vec![
        conv("lead:9", "2024-05-01T10:00:00+05:30"),
        conv("account:5", "2024-05-01T04:00:00Z"),
    ];
    assert_eq!(
        decided(&input(base(), convs)),
        ("lead:9".into(), RouteRule::RecentConversation)
    );
    // 2: the seller owning the org number.
    let mut recs = base();
    recs[0].owner = Some(seller("asha"));
    assert_eq!(
        decided(&input(recs, vec![])),
        ("lead:9".into(), RouteRule::AddressedSeller)
    );
    // 3: a member of the team owning the org number.
    let mut i = input(base(), vec![]);
    i.inbound.to = "+14155550199".into();
    i.records[0].owner = Some(seller("ravi"));
    assert_eq!(decided(&i), ("lead:9".into(), RouteRule::TeamMember));
    // 5: active first.
    let mut recs = base();
    recs[0].kind = RecordKind::Account;
    recs[1].active = false;
    assert_eq!(
        decided(&input(recs, vec![])),
        ("lead:9".into(), RouteRule::Active)
    );
    // 6: most recently updated, compared as instants.
    let mut recs = base();
    recs[0].kind = RecordKind::Account;
    recs[0].updated_at = Some(ts("2024-01-01T05:45:00+05:30")); // 00:15Z
    recs[1].updated_at = Some(ts("2023-12-31T23:59:59Z"));
    assert_eq!(
        decided(&input(recs, vec![])),
        ("lead:9".into(), RouteRule::RecentlyUpdated)
    );
    // 7: id.
    let mut recs = base();
    recs[0].kind = RecordKind::Account;
    assert_eq!(
        decided(&input(recs, vec![])),
        ("account:5".into(), RouteRule::Id)
    );
}

#[test]
fn a_moved_conversation_is_a_candidate_without_the_number() {
    let mut moved = record("contact:7", RecordKind::Contact, seller("zoe"));
    moved.phones.clear();
    let recs = vec![
        record("account:5", RecordKind::Account, seller("zoe")),
        moved,
    ];
    let i = input(recs, vec![conv("contact:7", "2024-02-01T00:00:00Z")]);
    assert_eq!(
        decided(&i),
        ("contact:7".into(), RouteRule::RecentConversation)
    );
    // A conversation with another org number does not count.
    let mut i = i;
    i.conversations[0].org_number = "+14155550199".into();
    assert_eq!(decided(&i), ("account:5".into(), RouteRule::OnlyMatch));
}

#[test]
fn non_phone_senders_are_matched_verbatim() {
    let mut r = record("account:1", RecordKind::Account, seller("zoe"));
    r.phones = vec!["ACME".into()];
    let mut i = input(vec![r], vec![]);
    i.inbound.from = " ACME".into();
    assert_eq!(decided(&i), ("account:1".into(), RouteRule::OnlyMatch));
}

#[test]
fn json_shapes() {
    let i: RouteInput = serde_json::from_value(json!({
        "inbound": {"from": "+919812345678", "to": "+14155550100"},
        "org_numbers": [{"number": "+14155550100", "owner": {"seller": "asha"}}],
        "records": [{"id": "c1", "kind": "contact", "owner": {"team": "t"}, "active": true,
                     "updated_at": "2024-01-01T00:00:00Z", "phones": ["+919812345678"]}],
    }))
    .unwrap();
    assert_eq!(
        serde_json::to_value(route(&i)).unwrap(),
        json!({"record_id": "c1", "rule": "only_match"})
    );
    let i: RouteInput = serde_json::from_value(json!({
        "inbound": {"from": "+919812345678", "to": "+14155550100"},
        "org_numbers": [{"number": "+14155550100", "owner": {"seller": "asha"}}],
    }))
    .unwrap();
    assert_eq!(
        serde_json::to_value(route(&i)).unwrap(),
        json!({"new_lead": {"id": "lead:+919812345678", "phone": "+919812345678", "owner": {"seller": "asha"}}, "rule": "new_lead"})
    );
}

fn arb_record() -> impl Strategy<Value = Record> {
    (
        0u8..6,
        0u8..4,
        prop_oneof![Just("asha"), Just("ravi"), Just("zoe"), Just("north")],
        any::<bool>(),
        any::<bool>(),
        prop::option::of(0i64..3),
        any::<bool>(),
    )
        .prop_map(|(id, kind, owner, team, active, updated, carries)| Record {
            id: format!("r{id}"),
            kind: [
                RecordKind::Contact,
                RecordKind::Account,
                RecordKind::Opportunity,
                RecordKind::Lead,
            ][kind as usize],
            owner: Some(if team {
                Owner::Team(owner.into())
            } else {
                Owner::Seller(owner.into())
            }),
            active,
            updated_at: updated.map(|h| Timestamp::from_millis(h * 3_600_000)),
            phones: if carries {
                vec![CUSTOMER.into()]
            } else {
                vec![]
            },
            name: String::new(),
            related: Vec::new(),
        })
}

fn arb_input() -> impl Strategy<Value = RouteInput> {
    (
        prop::collection::vec(arb_record(), 0..7),
        prop::collection::vec((0u8..6, 0i64..3), 0..4),
        any::<bool>(),
    )
        .prop_map(|(mut records, convs, team_org)| {
            records.sort_by(|a, b| a.id.cmp(&b.id));
            records.dedup_by(|a, b| a.id == b.id);
            let convs = convs
                .into_iter()
                .map(|(id, h)| ConversationActivity {
                    record_id: format!("r{id}"),
                    org_number: ORG.into(),
                    customer_number: CUSTOMER.into(),
                    last_message_at: Timestamp::from_millis(h * 3_600_000),
                })
                .collect();
            let mut i = input(records, convs);
            if team_org {
                i.inbound.to = "+14155550199".into();
                for c in &mut i.conversations {
                    c.org_number = "+14155550199".into();
                }
            }
            i
        })
}

proptest! {
    #[test]
    fn routing_is_deterministic_and_order_independent(i in arb_input(), seed in any::<u64>()) {
        let first = route(&i);
        let mut shuffled = i.clone();
        let n = shuffled.records.len();
        if n > 1 {
            shuffled.records.rotate_left((seed as usize) % n);
            shuffled.records.reverse();
        }
        shuffled.conversations.reverse();
        prop_assert_eq!(&route(&shuffled), &first);
        prop_assert_eq!(&route(&i), &first);
    }

    #[test]
    fn the_winner_wins_every_pairwise_contest(i in arb_input()) {
        let winner = route(&i);
        if let RouteDecision::Record { record_id, .. } = &winner {
            // Against each other candidate alone, the winner still wins.
            let candidates: Vec<&Record> = i.records.iter().filter(|r| {
                r.phones.iter().any(|p| p == CUSTOMER) || i.conversations.iter().any(|c| c.record_id == r.id)
            }).collect();
            for other in candidates.iter().filter(|r| &r.id != record_id) {
                let mut pair = i.clone();
                pair.records.retain(|r| &r.id == record_id || r.id == other.id);
                let pair_winner = route(&pair);
                prop_assert_eq!(pair_winner.record_id(), record_id.as_str());
            }
        } else {
            prop_assert!(i.records.iter().all(|r| r.phones.is_empty()
                && !i.conversations.iter().any(|c| c.record_id == r.id)));
        }
    }
}
