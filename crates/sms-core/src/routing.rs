//! Which record an inbound message belongs to (R1–R3), and which rule decided.
//!
//! [`decide`] ranks candidate records by R2's keys; [`route`] builds the candidates
//! from flat directory lists (the shape the JS API takes). The relay and the
//! browser store build candidates from their own indexes and call [`decide`], so
//! both reach the same decision for the same data.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::directory::{OrgNumber, Owner, Record, RecordKind, Team};
use crate::phone::match_key;
use crate::time::Timestamp;

/// The R2 rule (or special case) that decided where a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteRule {
    /// Exactly one record was a candidate.
    OnlyMatch,
    /// Rule 1: the record holding the most recent conversation with these two numbers.
    RecentConversation,
    /// Rule 2: owned by the seller who owns the org number.
    AddressedSeller,
    /// Rule 3: owned by the team owning the org number, or one of its members.
    TeamMember,
    /// Rule 4: contact before account before opportunity before lead.
    RecordType,
    /// Rule 5: active before inactive.
    Active,
    /// Rule 6: the most recently updated.
    RecentlyUpdated,
    /// The last resort: smallest id.
    Id,
    /// No record carries the number: a lead is created (R3).
    NewLead,
}

/// Why a conversation is on its record (B1), as a code with parameters: the page
/// says it in the seller's language (E5); [`fmt::Display`] says it in English for logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum RouteReason {
    /// [`RouteRule::OnlyMatch`]: the only record carrying the customer's number.
    OnlyMatch {
        /// The customer's number.
        number: String,
    },
    /// [`RouteRule::RecentConversation`]: it holds the latest conversation with the number.
    RecentConversation {
        /// The customer's number.
        number: String,
    },
    /// [`RouteRule::AddressedSeller`]: owned by the seller who owns the number texted.
    AddressedSeller {
        /// That seller's id, when the org number's owner is known.
        seller: Option<String>,
    },
    /// [`RouteRule::TeamMember`]: owned by the team owning the number texted, or a member.
    TeamMember {
        /// That team's id, when the org number's owner is known.
        team: Option<String>,
    },
    /// [`RouteRule::RecordType`]: its kind comes first (contact, account, opportunity, lead).
    RecordType {
        /// The record's kind.
        kind: RecordKind,
    },
    /// [`RouteRule::Active`]: active records before inactive ones.
    Active,
    /// [`RouteRule::RecentlyUpdated`]: the most recently updated record.
    RecentlyUpdated,
    /// [`RouteRule::Id`]: otherwise equal; the first by id.
    Id,
    /// [`RouteRule::NewLead`]: no record had the number; a lead was created.
    NewLead {
        /// The customer's number.
        number: String,
    },
    /// A seller moved the conversation here (M2): who, when, and from which record.
    MovedHere {
        /// The seller who moved it.
        by: String,
        /// When.
        at: Timestamp,
        /// The record it was on before.
        from_record: String,
    },
}

impl RouteReason {
    /// The reason for `rule` with its parameters: the customer's `number`, the
    /// record's `kind`, and the owner of the org number texted.
    pub fn of_rule(rule: RouteRule, number: &str, kind: RecordKind, org: Option<&Owner>) -> Self {
        let number = number.to_owned();
        match rule {
            RouteRule::OnlyMatch => Self::OnlyMatch { number },
            RouteRule::RecentConversation => Self::RecentConversation { number },
            RouteRule::AddressedSeller => Self::AddressedSeller {
                seller: match org {
                    Some(Owner::Seller(s)) => Some(s.clone()),
                    _ => None,
                },
            },
            RouteRule::TeamMember => Self::TeamMember {
                team: match org {
                    Some(Owner::Team(t)) => Some(t.clone()),
                    _ => None,
                },
            },
            RouteRule::RecordType => Self::RecordType { kind },
            RouteRule::Active => Self::Active,
            RouteRule::RecentlyUpdated => Self::RecentlyUpdated,
            RouteRule::Id => Self::Id,
            RouteRule::NewLead => Self::NewLead { number },
        }
    }

    /// The stable snake_case code (the serialized `code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::OnlyMatch { .. } => "only_match",
            Self::RecentConversation { .. } => "recent_conversation",
            Self::AddressedSeller { .. } => "addressed_seller",
            Self::TeamMember { .. } => "team_member",
            Self::RecordType { .. } => "record_type",
            Self::Active => "active",
            Self::RecentlyUpdated => "recently_updated",
            Self::Id => "id",
            Self::NewLead { .. } => "new_lead",
            Self::MovedHere { .. } => "moved_here",
        }
    }
}

impl fmt::Display for RouteReason {
    /// In English, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_unknown = |o: &Option<String>| o.clone().unwrap_or_else(|| "?".into());
        match self {
            Self::OnlyMatch { number } => write!(f, "the only record with {number}"),
            Self::RecentConversation { number } => {
                write!(f, "it holds the most recent conversation with {number}")
            }
            Self::AddressedSeller { seller } => write!(
                f,
                "it belongs to {}, who owns the number texted",
                or_unknown(seller)
            ),
            Self::TeamMember { team } => write!(
                f,
                "it belongs to team {}, which owns the number texted, or one of its members",
                or_unknown(team)
            ),
            Self::RecordType { kind } => write!(
                f,
                "it is a {}: contacts come before accounts, opportunities and leads",
                kind.as_str()
            ),
            Self::Active => f.write_str("active records come before inactive ones"),
            Self::RecentlyUpdated => f.write_str("it is the most recently updated record"),
            Self::Id => f.write_str("records were otherwise equal; the first by id was chosen"),
            Self::NewLead { number } => {
                write!(f, "no record had {number}, so a new lead was created")
            }
            Self::MovedHere {
                by,
                at,
                from_record,
            } => write!(f, "moved here from {from_record} by {by} at {at}"),
        }
    }
}

/// A lead to create for an unknown number (R3): the same for every device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewLead {
    /// `lead:` followed by the number, so every creator creates the same lead.
    pub id: String,
    /// The customer number (E.164, or verbatim for a non-phone sender).
    pub phone: String,
    /// The org number's owner; `None` when the org number is unknown.
    pub owner: Option<Owner>,
}

impl NewLead {
    /// The lead for `phone` (a match key), owned by `owner`.
    pub fn for_number(phone: &str, owner: Option<Owner>) -> Self {
        Self {
            id: lead_id(phone),
            phone: phone.to_owned(),
            owner,
        }
    }
}

/// The id of the lead created for an unknown number.
pub fn lead_id(phone_key: &str) -> String {
    format!("lead:{phone_key}")
}

/// Where an inbound message goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RouteDecision {
    /// An existing record.
    Record {
        /// The chosen record.
        record_id: String,
        /// The rule that separated it from the runner-up.
        rule: RouteRule,
    },
    /// No candidate: create this lead and attach the message to it.
    NewLead {
        /// The lead to create.
        new_lead: NewLead,
        /// Always [`RouteRule::NewLead`].
        rule: RouteRule,
    },
}

impl RouteDecision {
    /// The record the message is attached to (the new lead's id for a new lead).
    pub fn record_id(&self) -> &str {
        match self {
            Self::Record { record_id, .. } => record_id,
            Self::NewLead { new_lead, .. } => &new_lead.id,
        }
    }

    /// The rule that decided.
    pub fn rule(&self) -> RouteRule {
        match self {
            Self::Record { rule, .. } | Self::NewLead { rule, .. } => *rule,
        }
    }
}

/// What routing needs to know about the org number a message was sent to.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrgContext<'a> {
    /// Its owner, when the org number is known.
    pub owner: Option<&'a Owner>,
    /// Members of the owning team (empty when a seller owns it).
    pub team_members: &'a [String],
}

impl OrgContext<'_> {
    fn addressed_seller(&self, owner: Option<&Owner>) -> bool {
        matches!((self.owner, owner), (Some(Owner::Seller(s)), Some(Owner::Seller(o))) if s == o)
    }

    fn team_member(&self, owner: Option<&Owner>) -> bool {
        match (self.owner, owner) {
            (Some(Owner::Team(t)), Some(Owner::Team(o))) => t == o,
            (Some(Owner::Team(_)), Some(Owner::Seller(s))) => self.team_members.contains(s),
            _ => false,
        }
    }
}

/// A record that may receive the message, with the latest activity (message or
/// move onto it) of its conversation between this org number and this customer.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// The record.
    pub record: &'a Record,
    /// Latest activity of its conversation with these two numbers, if it has one.
    pub last_activity: Option<Timestamp>,
}

/// Orders two candidates by R2 (`Less` = ranks first) and names the deciding key.
fn compare(org: &OrgContext<'_>, a: &Candidate<'_>, b: &Candidate<'_>) -> (Ordering, RouteRule) {
    let (ra, rb) = (a.record, b.record);
    let keys = [
        // Newest activity first; None (no conversation) last.
        (
            b.last_activity.cmp(&a.last_activity),
            RouteRule::RecentConversation,
        ),
        (
            org.addressed_seller(rb.owner.as_ref())
                .cmp(&org.addressed_seller(ra.owner.as_ref())),
            RouteRule::AddressedSeller,
        ),
        (
            org.team_member(rb.owner.as_ref())
                .cmp(&org.team_member(ra.owner.as_ref())),
            RouteRule::TeamMember,
        ),
        (ra.kind.cmp(&rb.kind), RouteRule::RecordType),
        (rb.active.cmp(&ra.active), RouteRule::Active),
        (
            rb.updated_at.cmp(&ra.updated_at),
            RouteRule::RecentlyUpdated,
        ),
        (ra.id.cmp(&rb.id), RouteRule::Id),
    ];
    keys.into_iter()
        .find(|(o, _)| o.is_ne())
        .unwrap_or((Ordering::Equal, RouteRule::Id))
}

/// Picks the record for a message from `customer` (a match key) among `candidates`.
///
/// Candidates with the same record id are merged (latest activity kept). With no
/// candidate, the decision is a new lead owned by the org number's owner.
pub fn decide(customer: &str, org: OrgContext<'_>, candidates: &[Candidate<'_>]) -> RouteDecision {
    let mut unique: Vec<Candidate<'_>> = Vec::with_capacity(candidates.len());
    for c in candidates {
        match unique.iter_mut().find(|u| u.record.id == c.record.id) {
            Some(u) => u.last_activity = u.last_activity.max(c.last_activity),
            None => unique.push(*c),
        }
    }
    let better = |a: &Candidate<'_>, b: &Candidate<'_>| compare(&org, a, b).0;
    let Some(winner) = unique.iter().min_by(|a, b| better(a, b)) else {
        return RouteDecision::NewLead {
            new_lead: NewLead::for_number(customer, org.owner.cloned()),
            rule: RouteRule::NewLead,
        };
    };
    let runner_up = unique
        .iter()
        .filter(|c| c.record.id != winner.record.id)
        .min_by(|a, b| better(a, b));
    let rule = runner_up.map_or(RouteRule::OnlyMatch, |r| compare(&org, winner, r).1);
    RouteDecision::Record {
        record_id: winner.record.id.clone(),
        rule,
    }
}

/// The records that may receive a message from a customer (R2): those carrying the
/// customer's number, and those holding a conversation between the two numbers, each
/// with the latest activity of its conversation (`holding`: record and activity).
pub fn candidates<'a>(
    with_number: &[&'a Record],
    holding: &[(&'a Record, Timestamp)],
) -> Vec<Candidate<'a>> {
    let activity = |id: &str| {
        holding
            .iter()
            .filter(|(r, _)| r.id == id)
            .map(|&(_, at)| at)
            .max()
    };
    let mut out: Vec<Candidate<'a>> = Vec::new();
    for &record in with_number.iter().chain(holding.iter().map(|(r, _)| r)) {
        if !out.iter().any(|c| c.record.id == record.id) {
            out.push(Candidate {
                record,
                last_activity: activity(&record.id),
            });
        }
    }
    out
}

/// The two numbers of an inbound message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundAddress {
    /// The customer's number (or sender id).
    pub from: String,
    /// The org number it was sent to.
    pub to: String,
}

/// A conversation as routing sees it: which record holds it and its latest activity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConversationActivity {
    /// The record the conversation is attached to.
    pub record_id: String,
    /// The org number side.
    pub org_number: String,
    /// The customer side.
    pub customer_number: String,
    /// Latest activity: last message, or the move onto this record if later.
    pub last_message_at: Timestamp,
}

/// Everything [`route`] needs, in the flat shape of the JS `routeInbound` input.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteInput {
    /// The message's numbers.
    pub inbound: InboundAddress,
    /// Region for reading national numbers (ISO 3166 alpha-2).
    #[serde(default)]
    pub default_region: Option<String>,
    /// Org numbers and their owners.
    #[serde(default)]
    pub org_numbers: Vec<OrgNumber>,
    /// Teams and their members.
    #[serde(default)]
    pub teams: Vec<Team>,
    /// Records (only those carrying the number or holding its conversations matter).
    #[serde(default)]
    pub records: Vec<Record>,
    /// Conversations with their latest activity.
    #[serde(default)]
    pub conversations: Vec<ConversationActivity>,
}

/// Routes an inbound message over flat directory lists; every number is compared
/// by its match key (E.164 when it normalises, else verbatim).
pub fn route(input: &RouteInput) -> RouteDecision {
    let region = input.default_region.as_deref();
    let key = |n: &str| match_key(n, region);
    let from = key(&input.inbound.from);
    let to = key(&input.inbound.to);
    let org_owner = input
        .org_numbers
        .iter()
        .find(|o| key(&o.number) == to)
        .map(|o| &o.owner);
    let team_members = match org_owner {
        Some(Owner::Team(t)) => input
            .teams
            .iter()
            .find(|team| &team.id == t)
            .map_or(&[][..], |team| &team.members[..]),
        _ => &[],
    };
    let org = OrgContext {
        owner: org_owner,
        team_members,
    };
    let records = |id: &str| input.records.iter().find(|r| r.id == id);
    let holding: Vec<(&Record, Timestamp)> = input
        .conversations
        .iter()
        .filter(|c| key(&c.org_number) == to && key(&c.customer_number) == from)
        .filter_map(|c| Some((records(&c.record_id)?, c.last_message_at)))
        .collect();
    let with_number: Vec<&Record> = input
        .records
        .iter()
        .filter(|r| r.phones.iter().any(|p| key(p) == from))
        .collect();
    let candidates = candidates(&with_number, &holding);
    decide(&from, org, &candidates)
}
