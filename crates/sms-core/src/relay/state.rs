//! The shared state the relay sequences (S1–S3), derived from the log by
//! [`State::apply`], and the facts [`super::decide`] reads: routing candidates (S2),
//! visibility and audiences (V1), consent (B2), earlier sends. No IO here.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::access::Access;
use crate::consent::Consent;
use crate::directory::{Owner, Record};
use crate::moves::{self, Held, Moved};
use crate::pane::MoveEntry;
use crate::phone::match_key;
use crate::protocol::events::*;
use crate::protocol::{Directory, DirectoryPatch, EventBody, SendOutcome};
use crate::routing::{candidates, decide, OrgContext, RouteDecision};
use crate::time::Timestamp;

use super::Audience;

/// What the relay remembers of an outbound send, for idempotency on `client_ref`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMessage {
    /// Provider message id, when accepted.
    pub message_sid: Option<String>,
    /// How it ended.
    pub outcome: SendOutcome,
    /// Provider error code of a failure.
    pub error_code: Option<u32>,
}

/// A conversation's two numbers.
pub type Pair = (String, String);

/// The shared part of the [`State`] at a log position, as a checkpoint keeps it:
/// the directory, the conversation index and consent. Start-up restores it and
/// replays only the events after its position. The sent map is not in it: sends
/// are kept in a table of their own for a configured time ([`State::remember_sent`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The directory.
    pub directory: Directory,
    /// Conversations by their two numbers, sorted.
    pub conversations: Vec<CheckpointConversation>,
    /// Consent by its two numbers, sorted (only what differs from the default).
    pub consent: Vec<CheckpointConsent>,
}

/// A conversation in a [`Checkpoint`]: the records holding it and their latest activity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointConversation {
    /// Org number (key).
    pub org: String,
    /// Customer number (key).
    pub customer: String,
    /// Record id -> latest activity.
    pub records: BTreeMap<String, Timestamp>,
}

/// Consent in a [`Checkpoint`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointConsent {
    /// Org number (key).
    pub org: String,
    /// Customer number (key).
    pub customer: String,
    /// Its consent.
    pub consent: Consent,
}

/// In-memory state, rebuilt from the log at start-up.
#[derive(Default)]
pub struct State {
    default_region: Option<String>,
    directory: Directory,
    phone_index: HashMap<String, Vec<usize>>,
    record_index: HashMap<String, usize>,
    /// Org number key -> owner.
    org_index: HashMap<String, Owner>,
    /// Team id -> member seller ids.
    members: HashMap<String, Vec<String>>,
    /// (org number, customer) -> record id -> latest activity (message or move).
    conversations: HashMap<Pair, HashMap<String, Timestamp>>,
    consent: HashMap<Pair, Consent>,
    /// (seller, client reference) -> how the send ended.
    sent: HashMap<(String, String), SentMessage>,
    /// Provider ids of the outbound messages logged (reconciliation never claims one twice).
    logged_sids: std::collections::HashSet<String>,
    /// Sends handed to the provider whose outcome is not logged yet.
    in_flight: std::collections::HashSet<(String, String)>,
    /// Customer number -> when it was last erased (F6). Not in checkpoints (they keep
    /// no number of an erased customer): after a restart the send rows it blanked
    /// carry no text.
    erased: HashMap<String, Timestamp>,
}

impl State {
    /// An empty state reading national numbers in `default_region`.
    pub fn new(default_region: Option<String>) -> Self {
        Self {
            default_region,
            ..Self::default()
        }
    }

    /// The comparison key of a number (E.164 when it normalises, else verbatim).
    pub fn key(&self, raw: &str) -> String {
        match_key(raw, self.default_region.as_deref())
    }

    /// The shared part of the state, for a checkpoint (deterministic: sorted).
    pub fn checkpoint(&self) -> Checkpoint {
        let mut conversations: Vec<CheckpointConversation> = self
            .conversations
            .iter()
            .map(|((org, customer), records)| CheckpointConversation {
                org: org.clone(),
                customer: customer.clone(),
                records: records.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            })
            .collect();
        conversations.sort_by(|a, b| (&a.org, &a.customer).cmp(&(&b.org, &b.customer)));
        let mut consent: Vec<CheckpointConsent> = self
            .consent
            .iter()
            .map(|((org, customer), c)| CheckpointConsent {
                org: org.clone(),
                customer: customer.clone(),
                consent: *c,
            })
            .collect();
        consent.sort_by(|a, b| (&a.org, &a.customer).cmp(&(&b.org, &b.customer)));
        Checkpoint {
            directory: self.directory.clone(),
            conversations,
            consent,
        }
    }

    /// A state restored from a checkpoint (sent map and sends in flight empty: the
    /// caller adds what its tables keep).
    pub fn from_checkpoint(default_region: Option<String>, checkpoint: Checkpoint) -> Self {
        let mut state = Self::new(default_region);
        state.directory = checkpoint.directory;
        state.conversations = checkpoint
            .conversations
            .into_iter()
            .map(|c| ((c.org, c.customer), c.records.into_iter().collect()))
            .collect();
        state.consent = checkpoint
            .consent
            .into_iter()
            .map(|c| ((c.org, c.customer), c.consent))
            .collect();
        state.reindex();
        state
    }

    /// Remembers how a send ended, as the sent table keeps it (outlives the log).
    pub fn remember_sent(&mut self, seller: &str, client_ref: &str, sent: SentMessage) {
        if let Some(sid) = &sent.message_sid {
            self.logged_sids.insert(sid.clone());
        }
        self.sent
            .insert((seller.to_owned(), client_ref.to_owned()), sent);
    }

    /// The region national numbers are read in.
    pub fn default_region(&self) -> Option<&str> {
        self.default_region.as_deref()
    }

    /// The directory as it stands.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Conversations by their two numbers: the records holding one, with its latest activity.
    pub fn conversation_index(&self) -> &HashMap<Pair, HashMap<String, Timestamp>> {
        &self.conversations
    }

    /// A record by id.
    pub fn record(&self, id: &str) -> Option<&Record> {
        self.record_index
            .get(id)
            .map(|&i| &self.directory.records[i])
    }

    fn reindex(&mut self) {
        self.phone_index.clear();
        self.record_index.clear();
        self.org_index = self
            .directory
            .org_numbers
            .iter()
            .map(|o| {
                (
                    match_key(&o.number, self.default_region.as_deref()),
                    o.owner.clone(),
                )
            })
            .collect();
        self.members = self
            .directory
            .teams
            .iter()
            .map(|t| (t.id.clone(), t.members.clone()))
            .collect();
        for (i, r) in self.directory.records.iter().enumerate() {
            self.record_index.insert(r.id.clone(), i);
            for p in &r.phones {
                let key = match_key(p, self.default_region.as_deref());
                let entry = self.phone_index.entry(key).or_default();
                if !entry.contains(&i) {
                    entry.push(i);
                }
            }
        }
    }

    fn patch(&mut self, patch: &DirectoryPatch) {
        fn upsert<T: Clone>(list: &mut Vec<T>, items: &[T], id: impl Fn(&T) -> &str) {
            for item in items {
                match list.iter_mut().find(|x| id(x) == id(item)) {
                    Some(x) => *x = item.clone(),
                    None => list.push(item.clone()),
                }
            }
        }
        let d = &mut self.directory;
        let u = &patch.upsert;
        upsert(&mut d.records, &u.records, |r| &r.id);
        upsert(&mut d.sellers, &u.sellers, |s| &s.id);
        upsert(&mut d.teams, &u.teams, |t| &t.id);
        upsert(&mut d.org_numbers, &u.org_numbers, |o| &o.number);
        let del = &patch.delete;
        d.records.retain(|r| !del.records.contains(&r.id));
        d.sellers.retain(|s| !del.sellers.contains(&s.id));
        d.teams.retain(|t| !del.teams.contains(&t.id));
        d.org_numbers
            .retain(|o| !del.org_numbers.contains(&o.number));
        self.reindex();
    }

    fn touch(&mut self, org: &str, customer: &str, record: &str, at: Timestamp) {
        let slot = self
            .conversations
            .entry((org.to_owned(), customer.to_owned()))
            .or_default()
            .entry(record.to_owned())
            .or_insert(at);
        *slot = (*slot).max(at);
    }

    /// Applies a logged event to the state.
    pub fn apply(&mut self, event: &EventBody) {
        match event {
            EventBody::Inbound(InboundEvent {
                from,
                to,
                at,
                record_id,
                ..
            }) => self.touch(to, from, record_id, *at),
            EventBody::Outbound(OutboundEvent {
                client_ref,
                message_sid,
                from,
                to,
                record_id,
                by,
                at,
                outcome,
                error_code,
                ..
            }) => {
                self.in_flight.remove(&(by.clone(), client_ref.clone()));
                if let Some(sid) = message_sid {
                    self.logged_sids.insert(sid.clone());
                }
                self.sent.insert(
                    (by.clone(), client_ref.clone()),
                    SentMessage {
                        message_sid: message_sid.clone(),
                        outcome: *outcome,
                        error_code: *error_code,
                    },
                );
                if *outcome != SendOutcome::Failed {
                    self.touch(from, to, record_id, *at);
                }
            }
            EventBody::Delivery(DeliveryEvent { .. }) => {}
            EventBody::LeadCreated(LeadCreatedEvent { record }) => {
                if self.record(&record.id).is_none() {
                    self.directory.records.push(record.clone());
                    self.reindex();
                }
            }
            EventBody::ConversationMoved(ConversationMovedEvent {
                org_number,
                customer_number,
                from_record,
                to_record,
                by,
                at,
            }) => {
                let key = (org_number.clone(), customer_number.clone());
                let records = self.conversations.entry(key).or_default();
                // The history moves with it: its activity joins the target's (M2).
                let held = |last: Timestamp| Held {
                    last,
                    ..Held::default()
                };
                let source = held(records.remove(from_record).unwrap_or(*at));
                let target = records.get(to_record).copied().map(held);
                let entry = MoveEntry {
                    by: by.clone(),
                    at: *at,
                    from_record: from_record.clone(),
                    to_record: to_record.clone(),
                };
                let (Moved::Reattached(h) | Moved::Merged { target: h, .. }) =
                    moves::apply(source, target, entry);
                records.insert(to_record.clone(), h.last);
            }
            EventBody::ConsentChanged(ConsentChangedEvent {
                org_number,
                customer_number,
                consent,
                ..
            }) => {
                self.consent
                    .insert((org_number.clone(), customer_number.clone()), *consent);
            }
            EventBody::DirectoryChanged(DirectoryChangedEvent { patch }) => self.patch(patch),
            EventBody::DirectoryReplaced(DirectoryReplacedEvent { directory }) => {
                self.directory = directory.clone();
                self.reindex();
            }
            EventBody::Erased(ErasedEvent {
                customer_number,
                leads,
                at,
                ..
            }) => {
                self.erased.insert(customer_number.clone(), *at);
                self.conversations.retain(|(_, c), _| c != customer_number);
                self.consent.retain(|(_, c), _| c != customer_number);
                if !leads.is_empty() {
                    self.directory.records.retain(|r| !leads.contains(&r.id));
                    self.reindex();
                }
            }
        }
    }

    /// Whether a send to `customer` begun at `began` was with the provider when that
    /// number was erased (F6): its outcome is logged without its text.
    pub fn erased_since(&self, customer: &str, began: Timestamp) -> bool {
        self.erased
            .get(&self.key(customer))
            .is_some_and(|at| *at >= began)
    }

    /// What erasing `customer` removes (F6): its conversations (org number, record),
    /// and the leads created only for it — a lead whose only phone is that number.
    pub fn erasure(&self, customer: &str, at: Timestamp) -> ErasedEvent {
        let customer = self.key(customer);
        let mut conversations: Vec<ErasedConversation> = self
            .conversations
            .iter()
            .filter(|((_, c), _)| *c == customer)
            .flat_map(|((org, _), records)| {
                records.keys().map(|r| ErasedConversation {
                    org_number: org.clone(),
                    record_id: r.clone(),
                })
            })
            .collect();
        conversations
            .sort_by(|a, b| (&a.org_number, &a.record_id).cmp(&(&b.org_number, &b.record_id)));
        let mut leads: Vec<String> = self
            .directory
            .records
            .iter()
            .filter(|r| {
                r.kind == crate::directory::RecordKind::Lead
                    && !r.phones.is_empty()
                    && r.phones.iter().all(|p| self.key(p) == customer)
            })
            .map(|r| r.id.clone())
            .collect();
        leads.sort();
        ErasedEvent {
            customer_number: customer,
            conversations,
            leads,
            at,
        }
    }

    /// The owner of an org number (compared by key).
    pub fn org_owner(&self, number: &str) -> Option<&Owner> {
        self.org_index
            .get(number)
            .or_else(|| self.org_index.get(&self.key(number)))
    }

    /// Routes a message from `from` to `to` (both keys) over the directory and the
    /// conversation index (R1–R3).
    pub fn route(&self, from: &str, to: &str) -> RouteDecision {
        let owner = self.org_owner(to);
        let members = match owner {
            Some(Owner::Team(t)) => self.members.get(t).map_or(&[][..], |m| &m[..]),
            _ => &[],
        };
        let holding: Vec<(&Record, Timestamp)> = self
            .conversations
            .get(&(to.to_owned(), from.to_owned()))
            .into_iter()
            .flatten()
            .filter_map(|(id, at)| Some((self.record(id)?, *at)))
            .collect();
        let with_number: Vec<&Record> = self
            .phone_index
            .get(from)
            .into_iter()
            .flatten()
            .map(|&i| &self.directory.records[i])
            .collect();
        let candidates = candidates(&with_number, &holding);
        decide(
            from,
            OrgContext {
                owner,
                team_members: members,
            },
            &candidates,
        )
    }

    /// The record holding the most recent conversation between two numbers.
    pub fn conversation_record(&self, org: &str, customer: &str) -> Option<&str> {
        self.conversations
            .get(&(org.to_owned(), customer.to_owned()))?
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(id, _)| id.as_str())
    }

    /// Every record holding a conversation between two numbers.
    pub fn conversation_records(&self, org: &str, customer: &str) -> Vec<&str> {
        self.conversations
            .get(&(org.to_owned(), customer.to_owned()))
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Consent of `customer` for `org` (B2).
    pub fn consent(&self, org: &str, customer: &str) -> Consent {
        self.consent
            .get(&(org.to_owned(), customer.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    /// An earlier send of `seller` with this client reference.
    pub fn sent(&self, seller: &str, client_ref: &str) -> Option<&SentMessage> {
        self.sent.get(&(seller.to_owned(), client_ref.to_owned()))
    }

    /// Whether an outbound message with this provider id is in the log already.
    pub fn sid_logged(&self, sid: &str) -> bool {
        self.logged_sids.contains(sid)
    }

    /// Whether a send of `seller` with this client reference is with the provider now.
    pub fn in_flight(&self, seller: &str, client_ref: &str) -> bool {
        self.in_flight
            .contains(&(seller.to_owned(), client_ref.to_owned()))
    }

    /// Notes that a send went to the provider (until its outcome is applied).
    pub fn start_send(&mut self, seller: &str, client_ref: &str) {
        self.in_flight
            .insert((seller.to_owned(), client_ref.to_owned()));
    }

    /// Forgets a send that never reached the provider (its batch was not committed).
    pub fn drop_send(&mut self, seller: &str, client_ref: &str) {
        self.in_flight
            .remove(&(seller.to_owned(), client_ref.to_owned()));
    }

    /// What `seller` may do, from the directory (V1, C4).
    pub fn access(&self, seller: &str) -> Access {
        let receives = self
            .directory
            .sellers
            .iter()
            .find(|s| s.id == seller)
            .is_none_or(|s| s.can_receive);
        Access::new(seller, &self.directory.teams, receives)
    }

    /// Whether `seller` may see a conversation on `org` attached to `record` (V1).
    pub fn can_see(&self, seller: &str, org: &str, record: Option<&str>) -> bool {
        let record_owner = record.and_then(|r| self.record(r)?.owner.as_ref());
        self.access(seller)
            .can_see(self.org_owner(org), record_owner)
    }

    /// What `seller` sees, as an owned value: judged off the sequencer's thread by
    /// the same rule as [`Self::can_see`] (a snapshot filters the history with it).
    pub fn sight(&self, seller: &str) -> Sight {
        Sight {
            access: self.access(seller),
            default_region: self.default_region.clone(),
            org_owners: self.org_index.clone(),
            record_owners: self
                .record_index
                .iter()
                .filter_map(|(id, &i)| Some((id.clone(), self.directory.records[i].owner.clone()?)))
                .collect(),
            consent: self.consent.clone(),
        }
    }

    /// The sellers an owner stands for: the seller, or the team's members.
    fn expand<'a>(&'a self, owner: &'a Owner) -> impl Iterator<Item = &'a String> + 'a {
        let (seller, team) = match owner {
            Owner::Seller(s) => (Some(s), None),
            Owner::Team(t) => (None, self.members.get(t)),
        };
        seller.into_iter().chain(team.into_iter().flatten())
    }

    /// V1 as a set: the sellers holding the org number or one of the records
    /// (directly or through a team) — the same rule as [`Self::can_see`].
    pub fn sellers_seeing(&self, org: &str, records: &[&str]) -> Audience {
        let owners = self.org_owner(org).into_iter().chain(
            records
                .iter()
                .filter_map(|r| self.record(r))
                .filter_map(|r| r.owner.as_ref()),
        );
        let mut out: Vec<String> = owners.flat_map(|o| self.expand(o)).cloned().collect();
        out.sort();
        out.dedup();
        Audience::Sellers(out)
    }

    /// Who receives `event`, judged on the state *after* it was applied (V1).
    pub fn audience(&self, event: &EventBody) -> Audience {
        match event {
            EventBody::Inbound(InboundEvent { to, record_id, .. }) => {
                self.sellers_seeing(to, &[record_id])
            }
            EventBody::Outbound(OutboundEvent {
                from, record_id, ..
            }) => self.sellers_seeing(from, &[record_id]),
            EventBody::Delivery(DeliveryEvent { from, to, .. }) => {
                let record = self.conversation_record(from, to);
                self.sellers_seeing(from, record.as_slice())
            }
            // The lead's owner is the org number's owner (R3): its sellers see it.
            EventBody::LeadCreated(LeadCreatedEvent { record }) => match &record.owner {
                Some(owner) => self.owner_audience(owner),
                None => Audience::Sellers(Vec::new()),
            },
            EventBody::ConversationMoved(ConversationMovedEvent {
                org_number,
                from_record,
                to_record,
                ..
            }) => self.sellers_seeing(org_number, &[from_record, to_record]),
            EventBody::ConsentChanged(ConsentChangedEvent {
                org_number,
                customer_number,
                ..
            }) => {
                let records = self.conversation_records(org_number, customer_number);
                self.sellers_seeing(org_number, &records)
            }
            EventBody::DirectoryChanged(DirectoryChangedEvent { .. })
            | EventBody::DirectoryReplaced(DirectoryReplacedEvent { .. }) => Audience::All,
            // Who saw its conversations (their org numbers and records remain).
            EventBody::Erased(ErasedEvent { conversations, .. }) => {
                let mut out: Vec<String> = conversations
                    .iter()
                    .flat_map(
                        |c| match self.sellers_seeing(&c.org_number, &[&c.record_id]) {
                            Audience::Sellers(s) => s,
                            Audience::All => Vec::new(),
                        },
                    )
                    .collect();
                out.sort();
                out.dedup();
                Audience::Sellers(out)
            }
        }
    }

    fn owner_audience(&self, owner: &Owner) -> Audience {
        let mut out: Vec<String> = self.expand(owner).cloned().collect();
        out.sort();
        out.dedup();
        Audience::Sellers(out)
    }
}

/// What one seller sees (V1) and the consent of every conversation (B2), owned:
/// [`State::sight`] at one moment, for work off the sequencer's thread.
#[derive(Clone, Debug, Default)]
pub struct Sight {
    access: Access,
    default_region: Option<String>,
    /// Org number key -> owner.
    org_owners: HashMap<String, Owner>,
    /// Record id -> owner (records with one).
    record_owners: HashMap<String, Owner>,
    consent: HashMap<Pair, Consent>,
}

impl Sight {
    /// Whether the seller sees the conversation `key`: [`State::can_see`] of its org
    /// number and record.
    pub fn sees(&self, key: &super::history::ConversationKey) -> bool {
        let org_owner = self.org_owners.get(&key.org).or_else(|| {
            self.org_owners
                .get(&match_key(&key.org, self.default_region.as_deref()))
        });
        self.access
            .can_see(org_owner, self.record_owners.get(&key.record))
    }

    /// Whether `other` sees exactly what this sight sees (consent aside): the same
    /// seller, teams, number and record owners.
    pub fn sees_as(&self, other: &Self) -> bool {
        self.access == other.access
            && self.default_region == other.default_region
            && self.org_owners == other.org_owners
            && self.record_owners == other.record_owners
    }

    /// Consent of `customer` for `org` ([`State::consent`]).
    pub fn consent(&self, org: &str, customer: &str) -> Consent {
        self.consent
            .get(&(org.to_owned(), customer.to_owned()))
            .copied()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod sight_tests {
    use super::*;
    use crate::relay::history::ConversationKey;

    #[test]
    fn a_sight_sees_what_can_see_sees() {
        let directory: Directory = serde_json::from_value(serde_json::json!({
            "sellers": [{"id": "asha", "name": "Asha"}, {"id": "ravi", "name": "Ravi"},
                        {"id": "zoe", "name": "Zoe"}],
            "teams": [{"id": "north", "members": ["ravi"]}],
            "org_numbers": [
                {"number": "+14155550100", "owner": {"seller": "asha"}},
                {"number": "+14155550101", "owner": {"team": "north"}}
            ],
            "records": [
                {"id": "contact:priya", "kind": "contact", "owner": {"seller": "asha"},
                 "phones": ["+919812345678"]},
                {"id": "contact:dev", "kind": "contact", "owner": {"seller": "zoe"},
                 "phones": ["+919812340000"]},
                {"id": "lead:none", "kind": "lead"}
            ]
        }))
        .unwrap();
        let mut state = State::new(Some("IN".into()));
        state.apply(&EventBody::DirectoryReplaced(DirectoryReplacedEvent {
            directory,
        }));
        state.apply(&EventBody::ConsentChanged(ConsentChangedEvent {
            org_number: "+14155550101".into(),
            customer_number: "+919812345678".into(),
            consent: Consent::OptedOut,
            at: Timestamp::from_millis(1_000),
        }));
        let cases = [
            // A team-owned org number, records of several owners.
            ("+14155550101", "contact:dev"),
            ("+14155550101", "lead:none"),
            // A seller-owned record on someone else's number.
            ("+14155550100", "contact:priya"),
            ("+14155550101", "contact:priya"),
            // Neither held, an unknown record, an unknown number.
            ("+14155550100", "contact:dev"),
            ("+14155550100", "nowhere"),
            ("+14155559999", "contact:dev"),
        ];
        let mut seen = 0;
        for seller in ["asha", "ravi", "zoe", "nobody"] {
            let sight = state.sight(seller);
            for (org, record) in cases {
                let key = ConversationKey::new(org, "+919812345678", record);
                let expected = state.can_see(seller, org, Some(record));
                assert_eq!(sight.sees(&key), expected, "{seller} {org} {record}");
                seen += usize::from(expected);
            }
        }
        assert!(seen > 3 && seen < 28, "a mix of answers: {seen}");
        assert!(state.sight("ravi").sees_as(&state.sight("ravi")));
        assert!(!state.sight("ravi").sees_as(&state.sight("asha")));
        let before = state.sight("zoe");
        state.apply(&EventBody::ConsentChanged(ConsentChangedEvent {
            org_number: "+14155550102".into(),
            customer_number: "+919812345678".into(),
            consent: Consent::OptedOut,
            at: Timestamp::from_millis(2_000),
        }));
        assert!(before.sees_as(&state.sight("zoe")), "consent aside");
        let sight = state.sight("ravi");
        assert!(sight.sees(&ConversationKey::new("+14155550101", "x", "contact:dev")));
        assert!(!sight.sees(&ConversationKey::new("+14155550100", "x", "contact:priya")));
        assert!(state.sight("asha").sees(&ConversationKey::new(
            "+14155550101",
            "x",
            "contact:priya"
        )));
        assert_eq!(
            sight.consent("+14155550101", "+919812345678"),
            Consent::OptedOut
        );
        assert_eq!(
            sight.consent("+14155550100", "+919812345678"),
            state.consent("+14155550100", "+919812345678")
        );
    }
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;
    use crate::routing::RouteRule;

    #[test]
    fn a_state_restored_from_its_checkpoint_routes_and_checkpoints_the_same() {
        let directory: Directory = serde_json::from_value(serde_json::json!({
            "sellers": [{"id": "asha", "name": "Asha"}],
            "org_numbers": [{"number": "+14155550100", "owner": {"seller": "asha"}}],
            "records": [
                {"id": "contact:1", "kind": "contact", "owner": {"seller": "asha"},
                 "phones": ["+919812345678"]},
                {"id": "contact:2", "kind": "contact", "owner": {"seller": "asha"},
                 "phones": ["+919812345678"]}
            ]
        }))
        .unwrap();
        let mut state = State::new(Some("IN".into()));
        state.apply(&EventBody::DirectoryReplaced(DirectoryReplacedEvent {
            directory,
        }));
        state.apply(&EventBody::Inbound(InboundEvent {
            message_sid: "SM1".into(),
            from: "+919812345678".into(),
            to: "+14155550100".into(),
            body: "STOP".into(),
            media: Vec::new(),
            at: Timestamp::from_millis(1_000),
            record_id: "contact:2".into(),
            rule: RouteRule::RecentConversation,
        }));
        state.apply(&EventBody::ConsentChanged(ConsentChangedEvent {
            org_number: "+14155550100".into(),
            customer_number: "+919812345678".into(),
            consent: Consent::OptedOut,
            at: Timestamp::from_millis(1_000),
        }));
        let cp = state.checkpoint();
        let json = serde_json::to_string(&cp).unwrap();
        let restored =
            State::from_checkpoint(Some("IN".into()), serde_json::from_str(&json).unwrap());
        assert_eq!(restored.checkpoint(), cp);
        assert_eq!(
            restored.route("+919812345678", "+14155550100"),
            state.route("+919812345678", "+14155550100")
        );
        assert_eq!(
            restored.consent("+14155550100", "+919812345678"),
            Consent::OptedOut
        );
        assert!(restored.sent("asha", "r1").is_none());
    }
}
