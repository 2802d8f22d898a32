//! The shared state the relay sequences (S1–S3), derived from the log by
//! [`RelayState::apply`], and the decisions it takes over it with the pure core:
//! routing (S2), visibility/audiences (V1), consent (B2). No IO here.

use sms_core::protocol::events::*;
use std::collections::HashMap;

use sms_core::consent::Consent;
use sms_core::directory::{teams_of, Owner, Record, RecordKind};
use sms_core::phone::match_key;
use sms_core::routing::{decide, Candidate, OrgContext, RouteDecision};
use sms_core::visibility::{visibility, Viewer};
use sms_core::Timestamp;

use crate::model::{Audience, Directory, DirectoryPatch, EventBody, SendOutcome};

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

/// In-memory state, rebuilt from the log at start-up.
#[derive(Default)]
pub struct RelayState {
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
    sent: HashMap<String, SentMessage>,
}

impl RelayState {
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

    /// The region national numbers are read in.
    pub fn default_region(&self) -> Option<&str> {
        self.default_region.as_deref()
    }

    /// The directory as it stands.
    pub fn directory(&self) -> &Directory {
        &self.directory
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
                at,
                outcome,
                error_code,
                ..
            }) => {
                self.sent.insert(
                    client_ref.clone(),
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
                at,
                ..
            }) => {
                let key = (org_number.clone(), customer_number.clone());
                let records = self.conversations.entry(key).or_default();
                // The history moves with it: its activity joins the target's (merge, M2).
                let moved = records.remove(from_record).unwrap_or(*at);
                let slot = records.entry(to_record.clone()).or_insert(moved);
                *slot = (*slot).max(moved).max(*at);
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
        let activity = self.conversations.get(&(to.to_owned(), from.to_owned()));
        let mut candidates: Vec<Candidate<'_>> = Vec::new();
        for &i in self.phone_index.get(from).into_iter().flatten() {
            let record = &self.directory.records[i];
            let last_activity = activity.and_then(|a| a.get(&record.id)).copied();
            candidates.push(Candidate {
                record,
                last_activity,
            });
        }
        for (record_id, at) in activity.into_iter().flatten() {
            if let Some(record) = self.record(record_id) {
                candidates.push(Candidate {
                    record,
                    last_activity: Some(*at),
                });
            }
        }
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

    /// An earlier send with this client reference.
    pub fn sent(&self, client_ref: &str) -> Option<&SentMessage> {
        self.sent.get(client_ref)
    }

    fn teams_of(&self, seller: &str) -> Vec<&str> {
        teams_of(seller, &self.directory.teams)
    }

    /// Whether `seller` may send from (and receive on) `org_number` (C4).
    pub fn may_send_from(&self, seller: &str, org_number: &str) -> bool {
        let teams = self.teams_of(seller);
        match self.org_owner(org_number) {
            Some(Owner::Seller(s)) => s == seller,
            Some(Owner::Team(t)) => teams.contains(&t.as_str()),
            None => false,
        }
    }

    /// Whether `seller` may see a conversation on `org` attached to `record` (V1).
    pub fn can_see(&self, seller: &str, org: &str, record: Option<&str>) -> bool {
        let teams = self.teams_of(seller);
        let viewer = Viewer {
            seller,
            teams: &teams,
        };
        let record_owner = record.and_then(|r| self.record(r)).map(|r| &r.owner);
        visibility(viewer, self.org_owner(org), record_owner).is_ok()
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
    fn sellers_seeing(&self, org: &str, records: &[&str]) -> Audience {
        let owners = self.org_owner(org).into_iter().chain(
            records
                .iter()
                .filter_map(|r| self.record(r))
                .map(|r| &r.owner),
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
            EventBody::LeadCreated(LeadCreatedEvent { record }) => {
                self.owner_audience(&record.owner)
            }
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
        }
    }

    fn owner_audience(&self, owner: &Owner) -> Audience {
        let mut out: Vec<String> = self.expand(owner).cloned().collect();
        out.sort();
        out.dedup();
        Audience::Sellers(out)
    }

    /// A new lead record for an unknown number (R3).
    pub fn new_lead(id: String, phone: String, owner: Owner, at: Timestamp) -> Record {
        Record {
            name: phone.clone(),
            id,
            kind: RecordKind::Lead,
            owner,
            active: true,
            updated_at: Some(at),
            phones: vec![phone],
            related: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The audience set and the pure visibility rule agree for every seller,
    /// org number and record of the demo directory.
    #[test]
    fn audiences_match_visibility() {
        let directory: Directory =
            serde_json::from_str(include_str!("../demo/directory.json")).expect("demo directory");
        let mut state = RelayState::new(Some("IN".into()));
        state.apply(&EventBody::DirectoryReplaced(DirectoryReplacedEvent {
            directory: directory.clone(),
        }));
        for org in &directory.org_numbers {
            for record in &directory.records {
                let audience = state.sellers_seeing(&org.number, &[&record.id]);
                for seller in &directory.sellers {
                    assert_eq!(
                        audience.includes(&seller.id),
                        state.can_see(&seller.id, &org.number, Some(&record.id)),
                        "{} / {} / {}",
                        seller.id,
                        org.number,
                        record.id
                    );
                }
            }
        }
    }
}
