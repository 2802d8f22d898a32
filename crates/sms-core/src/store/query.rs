//! Reads as plans: a history page, the pane's seed (from a conversation or from a
//! record), an export, record lookup and relations, a record's conversations and the
//! routing preview. Each is a [`Plan`] whose outcome is a public field once run.

use serde::Serialize;

use crate::directory::{OrgNumber, Owner, Record, RecordKind, Team};
use crate::protocol::Seller;
use crate::routing::{self, OrgContext, RouteDecision};
use crate::time::Timestamp;

use super::ingest::Facts;
use super::key::{Key, KeyRange};
use super::ops::{Got, Index, Read, Row, Table};
use super::plan::{Next, Plan};
use super::rows::*;

/// A conversation in the grid.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationSummary {
    /// The conversation.
    #[serde(flatten)]
    pub conversation: StoredConversation,
    /// Its record's name.
    pub record_name: String,
}

/// A page of history.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HistoryPage {
    /// Messages, oldest to newest.
    pub messages: Vec<StoredMessage>,
    /// Whether older messages remain.
    pub has_more: bool,
}

/// A conversation as exported: everything stored about it.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationExport {
    /// The conversation (numbers, rule, moves, consent).
    pub conversation: StoredConversation,
    /// Its record, when the directory has it.
    pub record: Option<Record>,
    /// Every message, oldest first, with delivery status.
    pub messages: Vec<StoredMessage>,
}

/// What the pane needs to open on a conversation, read in one transaction.
#[derive(Debug, Clone)]
pub struct PaneSeed {
    /// The conversation (not stored yet when opened from a record with no history).
    pub conversation: StoredConversation,
    /// Its record, when the directory has it.
    pub record: Option<Record>,
    /// Records related to it (C2): a contact's opportunities, an opportunity's contact.
    pub related: Vec<Record>,
    /// Every org number with its owner.
    pub org_numbers: Vec<OrgNumber>,
    /// Every team.
    pub teams: Vec<Team>,
    /// The seller's profile.
    pub me: Option<Seller>,
    /// The conversation's draft.
    pub draft: String,
    /// The latest history page, read with the rest (the pane asks for it first).
    pub first_page: HistoryPage,
    /// Client references still in the outbox (shown as queued, B4).
    pub queued: Vec<String>,
}

/// Why a query was refused, as a stable code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The seller may not see this conversation (V2).
    #[error("not_visible")]
    NotVisible,
    /// The record has no phone number to text.
    #[error("no_phone")]
    NoPhone,
    /// The number given is not a phone number (the reason code says why).
    #[error("invalid_number: {0}")]
    InvalidNumber(&'static str),
    /// No org number is allotted to the seller or their teams (C4).
    #[error("no_org_number")]
    NoOrgNumber,
}

impl QueryError {
    /// The stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotVisible => "not_visible",
            Self::NoPhone => "no_phone",
            Self::InvalidNumber(_) => "invalid_number",
            Self::NoOrgNumber => "no_org_number",
        }
    }
}

fn rows<T>(got: Option<Got>, f: fn(Row) -> Option<T>) -> Vec<T> {
    got.map(Got::many)
        .unwrap_or_default()
        .into_iter()
        .filter_map(f)
        .collect()
}

fn one<T>(got: Option<Got>, f: fn(Row) -> Option<T>) -> Option<T> {
    got.and_then(Got::one).and_then(f)
}

/// The read of a history page: the newest `limit` messages older than `before_ms`
/// (at or before it when `through`).
fn page_read(conversation_id: &str, before_ms: Option<f64>, through: bool, limit: u32) -> Read {
    let range = KeyRange {
        lower: Some((Key::pair(conversation_id, f64::MIN), false)),
        upper: Some((
            Key::pair(conversation_id, before_ms.unwrap_or(f64::MAX)),
            !through,
        )),
    };
    Read::Page(Index::MessagesByConversation, range, limit)
}

fn page(got: Option<Got>) -> HistoryPage {
    match got {
        Some(Got::Page(rows, has_more)) => HistoryPage {
            messages: rows.into_iter().filter_map(Row::message).collect(),
            has_more,
        },
        _ => HistoryPage::default(),
    }
}

/// A page of history: the newest `limit` messages older than `before_ms`, oldest first.
#[derive(Debug)]
pub struct History {
    read: Option<Read>,
    /// The page, once run.
    pub page: HistoryPage,
}

impl History {
    /// The page of `conversation_id` before `before_ms` (the newest without it).
    pub fn new(conversation_id: &str, before_ms: Option<f64>, limit: u32) -> Self {
        Self {
            read: Some(page_read(conversation_id, before_ms, false, limit)),
            page: HistoryPage::default(),
        }
    }

    /// The page of `conversation_id` at or before `at_ms` (messages may share a time:
    /// the pane asks again for those it shows, so none at the edge is skipped).
    pub fn through(conversation_id: &str, at_ms: f64, limit: u32) -> Self {
        Self {
            read: Some(page_read(conversation_id, Some(at_ms), true, limit)),
            page: HistoryPage::default(),
        }
    }
}

impl Plan for History {
    fn tables(&self) -> &'static [Table] {
        &[Table::Messages]
    }
    fn start(&mut self) -> Vec<Read> {
        self.read.take().into_iter().collect()
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        self.page = page(got.into_iter().next());
        Next::Write(Vec::new())
    }
}

/// The reads that find the records linked to `record` either way (C2).
fn related_reads(record: &Record) -> Vec<Read> {
    let mut reads = vec![Read::All(
        Index::RecordsByRelated,
        KeyRange::only(Key::str(&*record.id)),
    )];
    reads.extend(
        record
            .related
            .iter()
            .map(|id| Read::Get(Table::Records, Key::str(&**id))),
    );
    reads
}

/// The records those reads found, without `record` itself or repeats: those it names
/// first, then those naming it.
fn related_found(record: &Record, got: &mut impl Iterator<Item = Got>) -> Vec<Record> {
    let pointing_here = rows(got.next(), Row::record);
    let named = record
        .related
        .iter()
        .filter_map(|_| one(got.next(), Row::record));
    let mut out: Vec<Record> = Vec::new();
    for r in named.chain(pointing_here) {
        if r.record.id != record.id && !out.iter().any(|o| o.id == r.record.id) {
            out.push(r.record);
        }
    }
    out
}

/// Where the pane opens from.
#[derive(Clone, Debug)]
pub enum SeedFrom {
    /// A stored conversation.
    Conversation(String),
    /// A record and one of its numbers (its first phone when `None`): its latest
    /// conversation with that number, or a new one from the seller's own org number.
    Record {
        /// The record.
        record_id: String,
        /// The customer's number, as typed or stored.
        customer: Option<String>,
    },
}

#[derive(Debug)]
enum SeedStage {
    Find,
    Rest(Box<PaneSeed>),
    Related(Box<PaneSeed>),
    Done,
}

/// Everything the pane needs, in one read-only transaction: the conversation, its
/// record and relations, the org numbers, teams, the seller, the draft, the queued
/// sends and the latest history page.
#[derive(Debug)]
pub struct Seed<'a> {
    from: SeedFrom,
    page: u32,
    seller: &'a str,
    facts: &'a Facts,
    stage: SeedStage,
    /// The seed (`None`: no such conversation or record), once run.
    pub seed: Result<Option<PaneSeed>, QueryError>,
}

impl<'a> Seed<'a> {
    /// The pane for `from`, with the latest `page` messages.
    pub fn new(from: SeedFrom, page: u32, seller: &'a str, facts: &'a Facts) -> Self {
        Self {
            from,
            page,
            seller,
            facts,
            stage: SeedStage::Find,
            seed: Ok(None),
        }
    }

    fn found(&mut self, got: Vec<Got>) -> Result<Option<StoredConversation>, QueryError> {
        let mut got = got.into_iter();
        let record_id = match &self.from {
            SeedFrom::Conversation(_) => return Ok(one(got.next(), Row::conversation)),
            SeedFrom::Record { record_id, .. } => record_id,
        };
        let Some(record) = one(got.next(), Row::record).map(|r| r.record) else {
            return Ok(None);
        };
        let SeedFrom::Record { customer, .. } = &self.from else {
            unreachable!()
        };
        let raw = customer
            .as_deref()
            .or(record.phones.first().map(String::as_str))
            .ok_or(QueryError::NoPhone)?;
        let customer = crate::phone::normalize(raw, self.facts.region.as_deref())
            .map_err(|e| QueryError::InvalidNumber(e.reason()))?;
        let latest = rows(got.next(), Row::conversation)
            .into_iter()
            .filter(|c| c.customer_number == customer.as_str())
            .max_by(|a, b| a.last_ms.total_cmp(&b.last_ms));
        Ok(Some(match latest {
            Some(c) => c,
            None => {
                let org = self
                    .facts
                    .access
                    .default_from(&self.facts.org_numbers)
                    .ok_or(QueryError::NoOrgNumber)?;
                new_conversation(org, customer.as_str(), record_id, None)
            }
        }))
    }
}

impl Plan for Seed<'_> {
    fn tables(&self) -> &'static [Table] {
        &[
            Table::Conversations,
            Table::Records,
            Table::OrgNumbers,
            Table::Teams,
            Table::Sellers,
            Table::Drafts,
            Table::Outbox,
            Table::Messages,
        ]
    }

    fn start(&mut self) -> Vec<Read> {
        match &self.from {
            SeedFrom::Conversation(id) => vec![Read::Get(Table::Conversations, Key::str(&**id))],
            SeedFrom::Record { record_id, .. } => vec![
                Read::Get(Table::Records, Key::str(&**record_id)),
                Read::All(
                    Index::ConversationsByRecord,
                    KeyRange::only(Key::str(&**record_id)),
                ),
            ],
        }
    }

    fn step(&mut self, got: Vec<Got>) -> Next {
        match std::mem::replace(&mut self.stage, SeedStage::Done) {
            SeedStage::Find => {
                let conversation = match self.found(got) {
                    Ok(Some(c)) => c,
                    other => {
                        self.seed = other.map(|_| None);
                        return Next::Write(Vec::new());
                    }
                };
                let reads = vec![
                    Read::Get(Table::Records, Key::str(&*conversation.record_id)),
                    Read::Scan(Table::OrgNumbers),
                    Read::Scan(Table::Teams),
                    Read::Get(Table::Sellers, Key::str(self.seller)),
                    Read::Get(Table::Drafts, Key::str(&*conversation.id)),
                    Read::Scan(Table::Outbox),
                    page_read(&conversation.id, None, false, self.page),
                ];
                self.stage = SeedStage::Rest(Box::new(PaneSeed {
                    conversation,
                    record: None,
                    related: Vec::new(),
                    org_numbers: Vec::new(),
                    teams: Vec::new(),
                    me: None,
                    draft: String::new(),
                    first_page: HistoryPage::default(),
                    queued: Vec::new(),
                }));
                Next::Read(reads)
            }
            SeedStage::Rest(mut seed) => {
                let mut got = got.into_iter();
                seed.record = one(got.next(), Row::record).map(|r| r.record);
                seed.org_numbers = rows(got.next(), Row::org_number);
                seed.teams = rows(got.next(), Row::team);
                seed.me = one(got.next(), Row::seller);
                seed.draft = one(got.next(), Row::draft)
                    .map(|d| d.text)
                    .unwrap_or_default();
                seed.queued = rows(got.next(), Row::outbox)
                    .into_iter()
                    .map(|o| o.request.client_ref)
                    .collect();
                seed.first_page = page(got.next());
                match &seed.record {
                    Some(r) if matches!(r.kind, RecordKind::Contact | RecordKind::Opportunity) => {
                        let reads = related_reads(r);
                        self.stage = SeedStage::Related(seed);
                        Next::Read(reads)
                    }
                    _ => {
                        self.seed = Ok(Some(*seed));
                        Next::Write(Vec::new())
                    }
                }
            }
            SeedStage::Related(mut seed) => {
                if let Some(record) = &seed.record {
                    seed.related = related_found(record, &mut got.into_iter());
                }
                self.seed = Ok(Some(*seed));
                Next::Write(Vec::new())
            }
            SeedStage::Done => Next::Write(Vec::new()),
        }
    }
}

/// A whole conversation for export: its record and every message, oldest first.
/// Refused with `not_visible` when the seller may not see it (V2).
#[derive(Debug)]
pub struct Export<'a> {
    id: String,
    facts: &'a Facts,
    conversation: Option<StoredConversation>,
    /// The export (`None`: no such conversation), once run.
    pub export: Result<Option<ConversationExport>, QueryError>,
}

impl<'a> Export<'a> {
    /// The export of `conversation_id`.
    pub fn new(conversation_id: &str, facts: &'a Facts) -> Self {
        Self {
            id: conversation_id.to_owned(),
            facts,
            conversation: None,
            export: Ok(None),
        }
    }
}

impl Plan for Export<'_> {
    fn tables(&self) -> &'static [Table] {
        &[Table::Conversations, Table::Records, Table::Messages]
    }
    fn start(&mut self) -> Vec<Read> {
        vec![Read::Get(Table::Conversations, Key::str(&*self.id))]
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        let mut got = got.into_iter();
        let Some(conversation) = self.conversation.take() else {
            let Some(c) = one(got.next(), Row::conversation) else {
                return Next::Write(Vec::new());
            };
            let reads = vec![
                Read::Get(Table::Records, Key::str(&*c.record_id)),
                Read::All(
                    Index::MessagesByConversation,
                    KeyRange::closed(Key::pair(&*c.id, f64::MIN), Key::pair(&*c.id, f64::MAX)),
                ),
            ];
            self.conversation = Some(c);
            return Next::Read(reads);
        };
        let record = one(got.next(), Row::record).map(|r| r.record);
        let visible = self.facts.access.can_see(
            self.facts.org_owner(&conversation.org_number),
            record.as_ref().and_then(|r| r.owner.as_ref()),
        );
        self.export = match visible {
            true => Ok(Some(ConversationExport {
                messages: rows(got.next(), Row::message),
                record,
                conversation,
            })),
            false => Err(QueryError::NotVisible),
        };
        Next::Write(Vec::new())
    }
}

/// Records found by name, id or phone digits across all kinds (M1).
#[derive(Debug)]
pub struct Lookup {
    query: String,
    limit: usize,
    /// The records found, in id order, at most `limit`, once run.
    pub found: Vec<Record>,
}

impl Lookup {
    /// Records whose name or id contains `query` (any case), or whose phone contains
    /// its digits (three or more).
    pub fn new(query: &str, limit: usize) -> Self {
        Self {
            query: query.trim().to_lowercase(),
            limit,
            found: Vec::new(),
        }
    }
}

impl Plan for Lookup {
    fn tables(&self) -> &'static [Table] {
        &[Table::Records]
    }
    fn start(&mut self) -> Vec<Read> {
        vec![Read::Scan(Table::Records)]
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        let q = &self.query;
        let digits: String = q.chars().filter(char::is_ascii_digit).collect();
        self.found = rows(got.into_iter().next(), Row::record)
            .into_iter()
            .filter(|r| {
                r.record.name.to_lowercase().contains(q)
                    || r.record.id.to_lowercase().contains(q)
                    || (digits.len() >= 3 && r.phone_keys.iter().any(|p| p.contains(&digits)))
            })
            .take(self.limit)
            .map(|r| r.record)
            .collect();
        Next::Write(Vec::new())
    }
}

/// Records linked to a record either way (C2), for the record pages.
#[derive(Debug)]
pub struct Related {
    id: String,
    record: Option<Record>,
    /// The related records, once run.
    pub related: Vec<Record>,
}

impl Related {
    /// The records related to `record_id`.
    pub fn new(record_id: &str) -> Self {
        Self {
            id: record_id.to_owned(),
            record: None,
            related: Vec::new(),
        }
    }
}

impl Plan for Related {
    fn tables(&self) -> &'static [Table] {
        &[Table::Records]
    }
    fn start(&mut self) -> Vec<Read> {
        vec![Read::Get(Table::Records, Key::str(&*self.id))]
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        let mut got = got.into_iter();
        match self.record.take() {
            None => match one(got.next(), Row::record) {
                Some(r) => {
                    let reads = related_reads(&r.record);
                    self.record = Some(r.record);
                    Next::Read(reads)
                }
                None => Next::Write(Vec::new()),
            },
            Some(record) => {
                self.related = related_found(&record, &mut got);
                Next::Write(Vec::new())
            }
        }
    }
}

#[derive(Debug)]
enum OfRecordStage {
    Record,
    Related(Record),
    Opportunities(Vec<Record>),
    Done,
}

/// A record's conversations the seller may see, newest first; for a contact, also
/// those of its opportunities (C2, V2).
#[derive(Debug)]
pub struct RecordConversations<'a> {
    id: String,
    facts: &'a Facts,
    stage: OfRecordStage,
    /// The conversations, once run.
    pub conversations: Vec<ConversationSummary>,
}

impl<'a> RecordConversations<'a> {
    /// The conversations of `record_id`.
    pub fn new(record_id: &str, facts: &'a Facts) -> Self {
        Self {
            id: record_id.to_owned(),
            facts,
            stage: OfRecordStage::Record,
            conversations: Vec::new(),
        }
    }

    fn finish(&mut self, owners: &[Record], got: impl Iterator<Item = Got>) -> Next {
        for (r, g) in owners.iter().zip(got) {
            for c in rows(Some(g), Row::conversation) {
                let visible = self
                    .facts
                    .access
                    .can_see(self.facts.org_owner(&c.org_number), r.owner.as_ref());
                if visible {
                    self.conversations.push(ConversationSummary {
                        record_name: r.name.clone(),
                        conversation: c,
                    });
                }
            }
        }
        self.conversations
            .sort_by(|a, b| b.conversation.last_ms.total_cmp(&a.conversation.last_ms));
        Next::Write(Vec::new())
    }
}

fn of_record(id: &str) -> Read {
    Read::All(Index::ConversationsByRecord, KeyRange::only(Key::str(id)))
}

impl Plan for RecordConversations<'_> {
    fn tables(&self) -> &'static [Table] {
        &[Table::Conversations, Table::Records]
    }
    fn start(&mut self) -> Vec<Read> {
        vec![Read::Get(Table::Records, Key::str(&*self.id))]
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        let mut got = got.into_iter();
        match std::mem::replace(&mut self.stage, OfRecordStage::Done) {
            OfRecordStage::Record => {
                let Some(record) = one(got.next(), Row::record).map(|r| r.record) else {
                    return Next::Write(Vec::new());
                };
                let mut reads = vec![of_record(&record.id)];
                if record.kind == RecordKind::Contact {
                    reads.extend(related_reads(&record));
                }
                self.stage = OfRecordStage::Related(record);
                Next::Read(reads)
            }
            OfRecordStage::Related(record) => {
                let own = got.next();
                let opportunities: Vec<Record> = match record.kind {
                    RecordKind::Contact => related_found(&record, &mut got)
                        .into_iter()
                        .filter(|r| r.kind == RecordKind::Opportunity)
                        .collect(),
                    _ => Vec::new(),
                };
                let next = self.finish(std::slice::from_ref(&record), own.into_iter());
                if opportunities.is_empty() {
                    return next;
                }
                let reads = opportunities.iter().map(|r| of_record(&r.id)).collect();
                self.stage = OfRecordStage::Opportunities(opportunities);
                Next::Read(reads)
            }
            OfRecordStage::Opportunities(owners) => self.finish(&owners, got),
            OfRecordStage::Done => Next::Write(Vec::new()),
        }
    }
}

/// Where a reply from `customer` to `org` would go now, and by which rule (B1): the
/// core's routing over the records carrying the number and those holding a
/// conversation between the two numbers.
#[derive(Debug)]
pub struct RoutePreview {
    customer: String,
    org: String,
    first: Option<(Vec<StoredRecord>, Vec<StoredConversation>, Option<Owner>)>,
    /// The decision, once run.
    pub decision: Option<RouteDecision>,
}

impl RoutePreview {
    /// The preview for two numbers given as match keys ([`Facts::key`]).
    pub fn new(customer: String, org: String) -> Self {
        Self {
            customer,
            org,
            first: None,
            decision: None,
        }
    }
}

impl Plan for RoutePreview {
    fn tables(&self) -> &'static [Table] {
        &[
            Table::Records,
            Table::Conversations,
            Table::OrgNumbers,
            Table::Teams,
        ]
    }

    fn start(&mut self) -> Vec<Read> {
        vec![
            Read::All(
                Index::RecordsByPhone,
                KeyRange::only(Key::str(&*self.customer)),
            ),
            Read::All(
                Index::ConversationsByPair,
                KeyRange::only(Key::pair(&*self.org, &*self.customer)),
            ),
            Read::Get(Table::OrgNumbers, Key::str(&*self.org)),
        ]
    }

    fn step(&mut self, got: Vec<Got>) -> Next {
        let mut got = got.into_iter();
        let Some((mut found, convs, owner)) = self.first.take() else {
            let found = rows(got.next(), Row::record);
            let convs = rows(got.next(), Row::conversation);
            let owner = one(got.next(), Row::org_number).map(|o| o.owner);
            let mut reads: Vec<Read> = Vec::new();
            for c in &convs {
                let read = Read::Get(Table::Records, Key::str(&*c.record_id));
                if !found.iter().any(|r| r.record.id == c.record_id) && !reads.contains(&read) {
                    reads.push(read);
                }
            }
            if let Some(Owner::Team(t)) = &owner {
                reads.push(Read::Get(Table::Teams, Key::str(&**t)));
            }
            self.first = Some((found, convs, owner));
            return Next::Read(reads);
        };
        let team = match &owner {
            Some(Owner::Team(_)) => got.next_back().and_then(Got::one).and_then(Row::team),
            _ => None,
        };
        found.extend(got.filter_map(|g| one(Some(g), Row::record)));
        let members = team.map(|t| t.members).unwrap_or_default();
        let holding: Vec<(&Record, Timestamp)> = convs
            .iter()
            .filter_map(|c| {
                let r = found.iter().find(|r| r.record.id == c.record_id)?;
                Some((&r.record, Timestamp::from_millis(c.last_ms as i64)))
            })
            .collect();
        let with_number: Vec<&Record> = found
            .iter()
            .filter(|r| r.phone_keys.contains(&self.customer))
            .map(|r| &r.record)
            .collect();
        let candidates = routing::candidates(&with_number, &holding);
        self.decision = Some(routing::decide(
            &self.customer,
            OrgContext {
                owner: owner.as_ref(),
                team_members: &members,
            },
            &candidates,
        ));
        Next::Write(Vec::new())
    }
}

/// The conversation between two numbers attached to a record, if stored.
#[derive(Debug)]
pub struct FindConversation<'a> {
    org: &'a str,
    customer: &'a str,
    record_id: &'a str,
    /// The conversation, once run.
    pub found: Option<StoredConversation>,
}

impl<'a> FindConversation<'a> {
    /// The conversation of `org` and `customer` (match keys) on `record_id`.
    pub fn new(org: &'a str, customer: &'a str, record_id: &'a str) -> Self {
        Self {
            org,
            customer,
            record_id,
            found: None,
        }
    }
}

impl Plan for FindConversation<'_> {
    fn tables(&self) -> &'static [Table] {
        &[Table::Conversations]
    }
    fn start(&mut self) -> Vec<Read> {
        vec![Read::All(
            Index::ConversationsByPair,
            KeyRange::only(Key::pair(self.org, self.customer)),
        )]
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        self.found = rows(got.into_iter().next(), Row::conversation)
            .into_iter()
            .find(|c| c.record_id == self.record_id);
        Next::Write(Vec::new())
    }
}
