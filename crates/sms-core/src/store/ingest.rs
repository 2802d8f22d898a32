//! Applying one relay event to the browser store (D1, D2, S1–S3, N1, P3, M2), as a
//! plan and a decision: [`Ingest::start`] says what to read, [`Ingest::step`] takes
//! what was read and answers with more reads or the writes and the outcome. No IO:
//! an executor carries the reads and writes out, inside one transaction.
//!
//! Every event checks the stored position first: an event of another epoch asks for
//! a resync, an event at or before the position is a duplicate, and in a run an event
//! whose predecessor was not applied is a gap. Either way nothing is written.

use serde::Serialize;

use crate::access::Access;
use crate::delivery::{self, Delivery, DeliveryStatus};
use crate::directory::{OrgNumber, Owner, Record};
use crate::moves::{self, Held, Moved};
use crate::pane::{ConversationKey, Direction, MoveEntry};
use crate::phone::match_key;
use crate::protocol::events::*;
use crate::protocol::{Directory, EventBody, LoggedEvent};
use crate::routing::RouteRule;
use crate::time::Timestamp;

use super::key::{Key, KeyRange};
use super::ops::{Got, Index, Read, Row, Table, Write};
use super::plan::{Next, Plan};
use super::rows::*;

/// The directory facts ingest decides with: the seller's access, the org numbers (in
/// key order) and the region national numbers are read in.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// What the seller may see and send from.
    pub access: Access,
    /// Org numbers in key (number) order.
    pub org_numbers: Vec<OrgNumber>,
    /// Region for national numbers.
    pub region: Option<String>,
}

impl Facts {
    /// The facts for `seller` from the directory tables: teams, the seller's own row
    /// (their privilege, P3) and the org numbers in key order.
    pub fn new(
        seller: &str,
        teams: &[crate::directory::Team],
        me: Option<&crate::protocol::Seller>,
        org_numbers: Vec<OrgNumber>,
        region: Option<String>,
    ) -> Self {
        Self {
            access: Access::new(seller, teams, me.is_none_or(|s| s.can_receive)),
            org_numbers,
            region,
        }
    }

    /// The owner of an org number (a match key).
    pub fn org_owner(&self, number: &str) -> Option<&Owner> {
        let i = self
            .org_numbers
            .binary_search_by(|o| o.number.as_str().cmp(number))
            .ok()?;
        Some(&self.org_numbers[i].owner)
    }

    /// The match key of a number.
    pub fn key(&self, raw: &str) -> String {
        match_key(raw, self.region.as_deref())
    }

    /// A record as stored, with its phones' match keys.
    pub fn stored(&self, record: Record) -> StoredRecord {
        let phone_keys = record.phones.iter().map(|p| self.key(p)).collect();
        StoredRecord { record, phone_keys }
    }
}

/// What applying one relay event did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IngestOutcome {
    /// The event was applied before (or is older than the position): nothing changed.
    pub duplicate: bool,
    /// The relay's epoch changed: the caller must resynchronise (S4).
    pub resync: bool,
    /// Not applied because the event before it in a run was not: resume from the position.
    pub gap: bool,
    /// The event's kind.
    pub kind: String,
    /// The record the message was attached to.
    pub record_id: Option<String>,
    /// The routing rule that attached it.
    pub rule: Option<RouteRule>,
    /// A lead created for an unknown number.
    pub created_lead: Option<String>,
    /// The conversation touched.
    pub conversation_id: Option<String>,
    /// A notification raised (N1/P3).
    pub notification: Option<StoredNotification>,
    /// The message row written (inbound or outbound), so an open pane shows it without
    /// reading it back.
    #[serde(skip)]
    pub message: Option<StoredMessage>,
    /// The message arrived in the conversation open in the pane: it was stored read.
    #[serde(skip)]
    pub read: bool,
    /// The conversations an erasure deleted (F6): their notifications go too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erased: Vec<String>,
}

impl IngestOutcome {
    /// `event` was not applied because the one before it was not: fetch it again.
    pub fn gap(event: &LoggedEvent) -> Self {
        Self {
            gap: true,
            kind: event.body.kind().to_owned(),
            ..Self::default()
        }
    }
}

/// What to do next (one per round: the size of `Done` does not matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Step {
    /// Read these (in the same transaction) and call [`Ingest::step`] again.
    Read(Vec<Read>),
    /// Write these, then the transaction may commit; nothing to write means drop it.
    Done(Vec<Write>, IngestOutcome),
}

/// Every store a relay event may touch (a run's transaction scope).
pub const fn tables_all() -> &'static [Table] {
    ALL_TABLES
}

const ALL_TABLES: &[Table] = &[
    Table::Meta,
    Table::Drafts,
    Table::Records,
    Table::OrgNumbers,
    Table::Sellers,
    Table::Teams,
    Table::Templates,
    Table::Conversations,
    Table::Messages,
    Table::PendingReports,
    Table::Notifications,
    Table::Outbox,
];

/// The stores an event may touch (the transaction's scope).
pub fn tables(body: &EventBody) -> &'static [Table] {
    const INBOUND: &[Table] = &[
        Table::Meta,
        Table::Records,
        Table::Conversations,
        Table::Messages,
        Table::Notifications,
    ];
    match body {
        EventBody::Inbound(_) => INBOUND,
        _ => ALL_TABLES,
    }
}

/// A merge waiting for the source's messages, notifications and drafts.
#[derive(Debug)]
struct Merge {
    source: StoredConversation,
    target: StoredConversation,
    entry: MoveEntry,
}

#[derive(Debug)]
enum Stage {
    First,
    Merge(Box<Merge>),
    /// An erasure waiting for its conversations' messages and notifications.
    Erase(Vec<String>),
}

/// One event being applied.
#[derive(Debug)]
pub struct Ingest<'a> {
    event: &'a LoggedEvent,
    prev: Option<i64>,
    facts: &'a Facts,
    reading: Option<&'a ConversationKey>,
    stage: Stage,
    out: IngestOutcome,
    /// Writes decided before a second round of reads (an erasure's).
    pending: Vec<Write>,
}

fn pair(org: &str, customer: &str) -> Read {
    Read::All(
        Index::ConversationsByPair,
        KeyRange::only(Key::pair(org, customer)),
    )
}

fn conversations(rows: Vec<Row>) -> Vec<StoredConversation> {
    rows.into_iter()
        .filter_map(|r| match r {
            Row::Conversation(c) => Some(c),
            _ => None,
        })
        .collect()
}

impl<'a> Ingest<'a> {
    /// Starts applying `event`; in a run, `prev` is the id of the event before it,
    /// which must be the stored position. `reading` is the conversation open in the
    /// pane: a message to it is stored read, in the same transaction (no separate read
    /// mark). Returns the first reads.
    pub fn start(
        event: &'a LoggedEvent,
        prev: Option<i64>,
        facts: &'a Facts,
        reading: Option<&'a ConversationKey>,
    ) -> (Self, Vec<Read>) {
        let mut reads = vec![Read::Get(Table::Meta, Key::str("position"))];
        match &event.body {
            EventBody::Inbound(e) => {
                reads.push(pair(&e.to, &e.from));
                reads.push(Read::Exists(Table::Messages, Key::str(&*e.message_sid)));
                // The record is needed to create a lead, or to tell whether the seller
                // may see a message to a number that is not theirs (V1).
                let org_visible = facts.access.can_see(facts.org_owner(&e.to), None);
                if e.rule == RouteRule::NewLead || !org_visible {
                    reads.push(Read::Get(Table::Records, Key::str(&*e.record_id)));
                }
            }
            EventBody::Outbound(e) => {
                reads.push(pair(&e.from, &e.to));
                reads.push(Read::Get(Table::Messages, Key::str(&*e.client_ref)));
                if let Some(sid) = &e.message_sid {
                    reads.push(Read::Get(Table::PendingReports, Key::str(&**sid)));
                }
            }
            EventBody::Delivery(e) => {
                reads.push(Read::First(
                    Index::MessagesByProvider,
                    Key::str(&*e.message_sid),
                ));
                reads.push(Read::Get(Table::PendingReports, Key::str(&*e.message_sid)));
            }
            EventBody::LeadCreated(e) => {
                reads.push(Read::Exists(Table::Records, Key::str(&*e.record.id)));
            }
            EventBody::ConversationMoved(e) => reads.push(pair(&e.org_number, &e.customer_number)),
            EventBody::ConsentChanged(e) => reads.push(pair(&e.org_number, &e.customer_number)),
            EventBody::DirectoryChanged(_) | EventBody::DirectoryReplaced(_) => {}
            EventBody::Erased(e) => {
                // Every conversation of the number on the org numbers named (a move
                // may have re-keyed one since), and the sends waiting for it.
                let mut orgs: Vec<&str> = e
                    .conversations
                    .iter()
                    .map(|c| c.org_number.as_str())
                    .collect();
                orgs.sort_unstable();
                orgs.dedup();
                reads.extend(orgs.into_iter().map(|o| pair(o, &e.customer_number)));
                reads.push(Read::Scan(Table::Outbox));
            }
        }
        let out = IngestOutcome {
            kind: event.body.kind().to_owned(),
            ..IngestOutcome::default()
        };
        let ingest = Self {
            event,
            prev,
            facts,
            reading,
            stage: Stage::First,
            out,
            pending: Vec::new(),
        };
        (ingest, reads)
    }

    /// Takes the answers to the last reads, in their order.
    pub fn step(&mut self, got: Vec<Got>) -> Step {
        let mut got = got.into_iter();
        match std::mem::replace(&mut self.stage, Stage::First) {
            Stage::Merge(m) => {
                let writes = self.merge(*m, &mut got);
                self.finish(writes)
            }
            Stage::Erase(ids) => {
                let mut writes = std::mem::take(&mut self.pending);
                writes.extend(
                    got.flat_map(Got::many)
                        .map(|row| Write::Delete(row.table(), row.key())),
                );
                for id in &ids {
                    writes.push(Write::Delete(Table::Conversations, Key::str(&**id)));
                    writes.push(Write::Delete(Table::Drafts, Key::str(&**id)));
                }
                self.out.conversation_id = ids.first().cloned();
                self.out.erased = ids;
                self.finish(writes)
            }
            Stage::First => {
                let position = match got.next().and_then(Got::one) {
                    Some(Row::Position(p)) => Some(p),
                    _ => None,
                };
                if let Some(p) = &position {
                    if p.epoch != self.event.epoch {
                        self.out.resync = true;
                        return self.nothing();
                    }
                    if self.event.id <= p.id {
                        self.out.duplicate = true;
                        return self.nothing();
                    }
                }
                if self.prev.is_some() && position.as_ref().map(|p| p.id) != self.prev {
                    self.out.gap = true;
                    return self.nothing();
                }
                let mut writes = Vec::new();
                match self.event(&mut got, &mut writes) {
                    Some(reads) => Step::Read(reads),
                    None => self.finish(writes),
                }
            }
        }
    }

    fn nothing(&mut self) -> Step {
        Step::Done(Vec::new(), std::mem::take(&mut self.out))
    }

    /// The event's writes and the new position.
    fn finish(&mut self, mut writes: Vec<Write>) -> Step {
        writes.push(Write::Put(Row::Position(Position {
            key: "position".into(),
            epoch: self.event.epoch.clone(),
            id: self.event.id,
        })));
        Step::Done(writes, std::mem::take(&mut self.out))
    }

    /// Decides the event from its first reads; `Some` when a merge needs more.
    fn event(
        &mut self,
        got: &mut std::vec::IntoIter<Got>,
        w: &mut Vec<Write>,
    ) -> Option<Vec<Read>> {
        let facts = self.facts;
        let reading = self.reading;
        let out = &mut self.out;
        match &self.event.body {
            EventBody::Inbound(e) => {
                out.record_id = Some(e.record_id.clone());
                out.rule = Some(e.rule);
                let pair = conversations(got.next().map(Got::many).unwrap_or_default());
                if matches!(got.next(), Some(Got::Exists(true))) {
                    out.duplicate = true;
                    return None;
                }
                let mut record = match got.next().and_then(Got::one) {
                    Some(Row::Record(r)) => Some(r.record),
                    _ => None,
                };
                if e.rule == RouteRule::NewLead && record.is_none() {
                    // The relay's rule, so every tab writes the same row (R3).
                    let owner = facts.org_owner(&facts.key(&e.to)).cloned();
                    let lead = crate::lead::for_unknown_number(&e.record_id, &e.from, owner, e.at);
                    w.push(Write::Put(Row::Record(facts.stored(lead.clone()))));
                    out.created_lead = Some(lead.id.clone());
                    record = Some(lead);
                }
                let mut conv = pick(pair, &e.to, &e.from, &e.record_id, Some(e.rule));
                let message = StoredMessage {
                    id: e.message_sid.clone(),
                    conversation_id: conv.id.clone(),
                    at_ms: e.at.as_millis() as f64,
                    direction: Direction::Inbound,
                    body: e.body.clone(),
                    provider_id: Some(e.message_sid.clone()),
                    client_ref: None,
                    delivery: None,
                    media: e.media.clone(),
                };
                conv.last_ms = conv.last_ms.max(message.at_ms);
                conv.preview = preview(&e.body);
                // Open in the pane: the seller is reading it as it arrives.
                let read = reading.is_some_and(|k| {
                    k.record_id == e.record_id
                        && k.org_number == e.to
                        && k.customer_number == e.from
                });
                if read {
                    conv.unread = 0;
                } else {
                    conv.unread += 1;
                }
                out.read = read;
                out.conversation_id = Some(conv.id.clone());
                let owner = record.as_ref().and_then(|r| r.owner.as_ref());
                if facts
                    .access
                    .can_see(facts.org_owner(&conv.org_number), owner)
                {
                    // N1, or the missing-privilege notice (P3); the message is kept either way.
                    let kind = if facts.access.receives() {
                        NotificationKind::NewMessage
                    } else {
                        NotificationKind::MissingPrivilege
                    };
                    let n = StoredNotification {
                        id: message.id.clone(),
                        kind,
                        conversation_id: conv.id.clone(),
                        text: preview(&message.body),
                        at_ms: message.at_ms,
                        unread: u8::from(!read),
                    };
                    out.notification = Some(n.clone());
                    w.push(Write::Put(Row::Notification(n)));
                }
                out.message = Some(message.clone());
                w.push(Write::Put(Row::Message(message)));
                w.push(Write::Put(Row::Conversation(conv)));
            }
            EventBody::Outbound(e) => {
                let pair = conversations(got.next().map(Got::many).unwrap_or_default());
                let existing = match got.next().and_then(Got::one) {
                    Some(Row::Message(m)) => Some(m),
                    _ => None,
                };
                let early = match e.message_sid.as_ref().and_then(|_| got.next()?.one()) {
                    Some(Row::PendingReport(r)) => {
                        w.push(Write::Delete(
                            Table::PendingReports,
                            Key::str(&*r.message_sid),
                        ));
                        Some(r.delivery)
                    }
                    _ => None,
                };
                let mut conv = pick(pair, &e.from, &e.to, &e.record_id, None);
                let d = delivery::merge(
                    existing.as_ref().and_then(|m| m.delivery.clone()),
                    e.outcome,
                    e.error_code,
                    early.as_ref(),
                );
                let message = StoredMessage {
                    id: e.client_ref.clone(),
                    conversation_id: conv.id.clone(),
                    at_ms: existing
                        .as_ref()
                        .map_or(e.at.as_millis() as f64, |m| m.at_ms),
                    direction: Direction::Outbound,
                    body: e.body.clone(),
                    provider_id: e.message_sid.clone(),
                    client_ref: Some(e.client_ref.clone()),
                    delivery: Some(d),
                    media: Vec::new(),
                };
                conv.last_ms = conv.last_ms.max(message.at_ms);
                conv.preview = preview(&e.body);
                out.conversation_id = Some(conv.id.clone());
                out.record_id = Some(e.record_id.clone());
                out.message = Some(message.clone());
                w.push(Write::Put(Row::Message(message)));
                w.push(Write::Put(Row::Conversation(conv)));
            }
            EventBody::Delivery(e) => {
                let found = got.next().and_then(Got::one);
                let pending = got.next().and_then(Got::one);
                match found {
                    Some(Row::Message(mut m)) => {
                        let d = m
                            .delivery
                            .get_or_insert_with(|| Delivery::new(DeliveryStatus::Queued));
                        if d.apply(e.status, e.error_code) {
                            out.conversation_id = Some(m.conversation_id.clone());
                            w.push(Write::Put(Row::Message(m)));
                        }
                    }
                    _ => {
                        // Kept until its message arrives (D2).
                        let mut delivery = match pending {
                            Some(Row::PendingReport(r)) => r.delivery,
                            _ => Delivery::new(e.status),
                        };
                        delivery.apply(e.status, e.error_code);
                        w.push(Write::Put(Row::PendingReport(PendingReport {
                            message_sid: e.message_sid.clone(),
                            delivery,
                        })));
                    }
                }
            }
            EventBody::LeadCreated(e) => {
                if !matches!(got.next(), Some(Got::Exists(true))) {
                    w.push(Write::Put(Row::Record(facts.stored(e.record.clone()))));
                    out.created_lead = Some(e.record.id.clone());
                }
                out.record_id = Some(e.record.id.clone());
            }
            EventBody::ConversationMoved(e) => {
                let all = conversations(got.next().map(Got::many).unwrap_or_default());
                let entry = MoveEntry {
                    by: e.by.clone(),
                    at: e.at,
                    from_record: e.from_record.clone(),
                    to_record: e.to_record.clone(),
                };
                let mut source = all.iter().find(|c| c.record_id == e.from_record).cloned()?;
                let Some(target) = all.into_iter().find(|c| c.record_id == e.to_record) else {
                    let (Moved::Reattached(h) | Moved::Merged { target: h, .. }) =
                        moves::apply(held(&mut source, false), None, entry);
                    source.record_id = e.to_record.clone();
                    settle(&mut source, h);
                    out.conversation_id = Some(source.id.clone());
                    w.push(Write::Put(Row::Conversation(source)));
                    return None;
                };
                // Merge (M2): the source's messages, notifications and draft follow.
                let reads = vec![
                    Read::All(
                        Index::MessagesByConversation,
                        KeyRange::closed(
                            Key::pair(&*source.id, f64::MIN),
                            Key::pair(&*source.id, f64::MAX),
                        ),
                    ),
                    Read::All(
                        Index::NotificationsByConversation,
                        KeyRange::closed(Key::pair(&*source.id, 0.0), Key::pair(&*source.id, 1.0)),
                    ),
                    Read::Exists(Table::Drafts, Key::str(&*target.id)),
                    Read::Get(Table::Drafts, Key::str(&*source.id)),
                ];
                self.stage = Stage::Merge(Box::new(Merge {
                    source,
                    target,
                    entry,
                }));
                return Some(reads);
            }
            EventBody::ConsentChanged(e) => {
                for mut c in conversations(got.next().map(Got::many).unwrap_or_default()) {
                    c.consent = e.consent;
                    out.conversation_id = Some(c.id.clone());
                    w.push(Write::Put(Row::Conversation(c)));
                }
            }
            EventBody::DirectoryChanged(DirectoryChangedEvent { patch }) => {
                directory_rows(facts, &patch.upsert, w);
                let d = &patch.delete;
                for (table, ids) in [
                    (Table::Records, &d.records),
                    (Table::Sellers, &d.sellers),
                    (Table::Teams, &d.teams),
                ] {
                    w.extend(ids.iter().map(|id| Write::Delete(table, Key::str(&**id))));
                }
                for n in &d.org_numbers {
                    w.push(Write::Delete(Table::OrgNumbers, Key::str(facts.key(n))));
                }
            }
            EventBody::Erased(e) => {
                let orgs = e
                    .conversations
                    .iter()
                    .map(|c| c.org_number.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
                let ids: Vec<String> = got
                    .by_ref()
                    .take(orgs)
                    .flat_map(|g| conversations(g.many()))
                    .map(|c| c.id)
                    .collect();
                for row in got.next().map(Got::many).unwrap_or_default() {
                    if let Row::Outbox(o) = row {
                        if facts.key(&o.request.to) == e.customer_number {
                            w.push(Write::Delete(
                                Table::Outbox,
                                Key::str(&*o.request.client_ref),
                            ));
                        }
                    }
                }
                for lead in &e.leads {
                    w.push(Write::Delete(Table::Records, Key::str(&**lead)));
                }
                let reads = ids
                    .iter()
                    .flat_map(|id| {
                        [
                            Read::All(
                                Index::MessagesByConversation,
                                KeyRange::closed(
                                    Key::pair(&**id, f64::MIN),
                                    Key::pair(&**id, f64::MAX),
                                ),
                            ),
                            Read::All(
                                Index::NotificationsByConversation,
                                KeyRange::closed(Key::pair(&**id, 0.0), Key::pair(&**id, 1.0)),
                            ),
                        ]
                    })
                    .collect();
                self.stage = Stage::Erase(ids);
                // The deletes decided so far go with the second round's.
                self.pending = std::mem::take(w);
                return Some(reads);
            }
            EventBody::DirectoryReplaced(DirectoryReplacedEvent { directory }) => {
                for table in [
                    Table::Records,
                    Table::Sellers,
                    Table::Teams,
                    Table::OrgNumbers,
                ] {
                    w.push(Write::Clear(table));
                }
                directory_rows(facts, directory, w);
            }
        }
        None
    }

    fn merge(&mut self, m: Merge, got: &mut std::vec::IntoIter<Got>) -> Vec<Write> {
        let Merge {
            mut source,
            mut target,
            entry,
        } = m;
        let mut w = Vec::new();
        for row in got.next().map(Got::many).unwrap_or_default() {
            if let Row::Message(mut m) = row {
                m.conversation_id = target.id.clone();
                w.push(Write::Put(Row::Message(m)));
            }
        }
        for row in got.next().map(Got::many).unwrap_or_default() {
            if let Row::Notification(mut n) = row {
                n.conversation_id = target.id.clone();
                w.push(Write::Put(Row::Notification(n)));
            }
        }
        let theirs = matches!(got.next(), Some(Got::Exists(true)));
        let ours = match got.next().and_then(Got::one) {
            Some(Row::Draft(d)) => Some(d),
            _ => None,
        };
        let source_held = held(&mut source, ours.is_some());
        let target_held = held(&mut target, theirs);
        if let Moved::Merged {
            target: h,
            carry_draft,
        } = moves::apply(source_held, Some(target_held), entry)
        {
            if let (true, Some(mut d)) = (carry_draft, ours) {
                d.conversation_id = target.id.clone();
                w.push(Write::Put(Row::Draft(d)));
            }
            settle(&mut target, h);
        }
        w.push(Write::Delete(Table::Drafts, Key::str(&*source.id)));
        self.out.conversation_id = Some(target.id.clone());
        w.push(Write::Put(Row::Conversation(target)));
        w.push(Write::Delete(Table::Conversations, Key::str(&*source.id)));
        w
    }
}

/// A directory's rows (org numbers keyed by their match key; templates with an id).
fn directory_rows(facts: &Facts, d: &Directory, w: &mut Vec<Write>) {
    w.extend(directory_writes(facts, d.clone()));
}

/// The writes that store a directory (or a part of one, S3): records with their
/// phones' match keys, sellers, teams, org numbers keyed by their match key,
/// templates that have an id.
pub fn directory_writes(facts: &Facts, d: Directory) -> Vec<Write> {
    let mut w: Vec<Write> =
        Vec::with_capacity(d.records.len() + d.sellers.len() + d.teams.len() + d.org_numbers.len());
    w.extend(
        d.records
            .into_iter()
            .map(|r| Write::Put(Row::Record(facts.stored(r)))),
    );
    w.extend(d.sellers.into_iter().map(|s| Write::Put(Row::Seller(s))));
    w.extend(d.teams.into_iter().map(|t| Write::Put(Row::Team(t))));
    w.extend(d.org_numbers.into_iter().map(|o| {
        Write::Put(Row::OrgNumber(OrgNumber {
            number: facts.key(&o.number),
            owner: o.owner,
        }))
    }));
    w.extend(
        d.templates
            .into_iter()
            .filter(|t| t.lookup(["id"]).is_some())
            .map(|t| Write::Put(Row::Template(t))),
    );
    w
}

/// The conversation between two numbers on `record_id`, or a new one that keeps the
/// pair's consent (B2: an opt-out holds whichever record the number is on).
pub fn pick(
    all: Vec<StoredConversation>,
    org: &str,
    customer: &str,
    record_id: &str,
    rule: Option<RouteRule>,
) -> StoredConversation {
    let consent = all.first().map(|c| c.consent);
    if let Some(mut c) = all.into_iter().find(|c| c.record_id == record_id) {
        if rule.is_some() {
            c.rule = rule;
        }
        return c;
    }
    let mut c = new_conversation(org, customer, record_id, rule);
    c.consent = consent.unwrap_or_default();
    c
}

/// What a move needs of a stored conversation (its move list is taken, then given
/// back by [`settle`]).
fn held(c: &mut StoredConversation, draft: bool) -> Held {
    Held {
        last: Timestamp::from_millis(c.last_ms as i64),
        unread: c.unread,
        moves: std::mem::take(&mut c.moves),
        draft,
    }
}

/// Writes a move's result back into a stored conversation.
fn settle(c: &mut StoredConversation, h: Held) {
    c.last_ms = c.last_ms.max(h.last.as_millis() as f64);
    c.unread = h.unread;
    c.moves = h.moves;
}

/// One relay event as a [`Plan`]: its own transaction over the stores it touches.
#[derive(Debug)]
pub struct EventPlan<'a> {
    ingest: Ingest<'a>,
    first: Vec<Read>,
    tables: &'static [Table],
    /// What applying it did, once run.
    pub outcome: IngestOutcome,
}

impl<'a> EventPlan<'a> {
    /// Applies `event` (see [`Ingest::start`]).
    pub fn new(
        event: &'a LoggedEvent,
        prev: Option<i64>,
        facts: &'a Facts,
        reading: Option<&'a ConversationKey>,
    ) -> Self {
        let (ingest, first) = Ingest::start(event, prev, facts, reading);
        Self {
            ingest,
            first,
            tables: tables(&event.body),
            outcome: IngestOutcome::default(),
        }
    }
}

impl Plan for EventPlan<'_> {
    fn tables(&self) -> &'static [Table] {
        self.tables
    }
    fn writes(&self) -> bool {
        true
    }
    fn start(&mut self) -> Vec<Read> {
        std::mem::take(&mut self.first)
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        match self.ingest.step(got) {
            Step::Read(reads) => Next::Read(reads),
            Step::Done(writes, outcome) => {
                self.outcome = outcome;
                Next::Write(writes)
            }
        }
    }
}

/// Reads the directory facts of a seller: teams, the seller's own row, org numbers.
#[derive(Debug)]
pub struct FactsPlan<'a> {
    seller: &'a str,
    region: Option<String>,
    /// The facts, once run.
    pub facts: Facts,
}

impl<'a> FactsPlan<'a> {
    /// The facts for `seller`, reading national numbers in `region`.
    pub fn new(seller: &'a str, region: Option<String>) -> Self {
        Self {
            seller,
            region,
            facts: Facts::default(),
        }
    }
}

impl Plan for FactsPlan<'_> {
    fn tables(&self) -> &'static [Table] {
        &[Table::Teams, Table::Sellers, Table::OrgNumbers]
    }
    fn start(&mut self) -> Vec<Read> {
        vec![
            Read::Scan(Table::Teams),
            Read::Get(Table::Sellers, Key::str(self.seller)),
            Read::Scan(Table::OrgNumbers),
        ]
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        let mut got = got.into_iter();
        let teams: Vec<_> = got.next().map(Got::many).unwrap_or_default();
        let teams: Vec<_> = teams.into_iter().filter_map(Row::team).collect();
        let me = got.next().and_then(Got::one).and_then(Row::seller);
        let orgs = got.next().map(Got::many).unwrap_or_default();
        let orgs = orgs.into_iter().filter_map(Row::org_number).collect();
        self.facts = Facts::new(self.seller, &teams, me.as_ref(), orgs, self.region.take());
        Next::Write(Vec::new())
    }
}
