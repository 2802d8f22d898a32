//! Commands as plans: queue a send and settle it (B4), count an unreachable attempt,
//! read marks, drafts, the outbox. Each is a [`Plan`]; its outcome is a public field.

use crate::delivery;
use crate::pane::Direction;
use crate::send::{self, SendRefusal};

use super::ingest::{pick, Facts};
use super::key::{Key, KeyRange};
use super::ops::{Got, Index, Read, Row, Table, Write};
use super::plan::{Next, Plan};
use super::rows::*;
use crate::protocol::SendAnswer;

fn done() -> Next {
    Next::Write(Vec::new())
}

/// Queues a send (B4): the outbox entry, the outbound message and its conversation
/// commit together. Checked first with the rule the pane and the relay use (consent,
/// length, numbers, the seller's org numbers); a refusal has the relay's code. A
/// client reference already queued or sent changes nothing (a retried call).
#[derive(Debug)]
pub struct QueueSend<'a> {
    entry: OutboxEntry,
    facts: &'a Facts,
    /// The conversation's id, or why the send was refused, once run.
    pub outcome: Result<String, SendRefusal>,
}

impl<'a> QueueSend<'a> {
    /// Queues `entry` (its `from` and `to` as typed; both are normalised here).
    pub fn new(entry: OutboxEntry, facts: &'a Facts) -> Self {
        Self {
            entry,
            facts,
            outcome: Err(SendRefusal::NoRecord),
        }
    }

    fn record_id(&self) -> Result<String, SendRefusal> {
        send::check_client_ref(&self.entry.request.client_ref)?;
        self.entry
            .request
            .record_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or(SendRefusal::NoRecord)
    }
}

impl Plan for QueueSend<'_> {
    fn tables(&self) -> &'static [Table] {
        &[Table::Outbox, Table::Messages, Table::Conversations]
    }
    fn writes(&self) -> bool {
        true
    }

    fn start(&mut self) -> Vec<Read> {
        if let Err(e) = self.record_id() {
            self.outcome = Err(e);
            return Vec::new();
        }
        let r = &mut self.entry.request;
        r.from = self.facts.key(&r.from);
        let to = self.facts.key(&r.to);
        vec![
            Read::All(
                Index::ConversationsByPair,
                KeyRange::only(Key::pair(&*r.from, to)),
            ),
            Read::Exists(Table::Messages, Key::str(&*r.client_ref)),
        ]
    }

    fn step(&mut self, got: Vec<Got>) -> Next {
        let record_id = match self.record_id() {
            Ok(id) if !got.is_empty() => id,
            _ => return done(),
        };
        let mut got = got.into_iter();
        let pair: Vec<StoredConversation> = got
            .next()
            .map(Got::many)
            .unwrap_or_default()
            .into_iter()
            .filter_map(Row::conversation)
            .collect();
        let exists = got.next().is_some_and(|g| g.exists());
        let r = &self.entry.request;
        let mut conv = pick(pair, &r.from, &self.facts.key(&r.to), &record_id, None);
        let checked = send::check(&send::Outgoing {
            body: &r.body,
            from: &r.from,
            to: &r.to,
            may_send_from: self
                .facts
                .access
                .may_send_from(self.facts.org_owner(&r.from)),
            consent: conv.consent,
            region: self.facts.region.as_deref(),
        });
        let to = match checked {
            Ok(to) => to,
            Err(e) => {
                self.outcome = Err(e);
                return done();
            }
        };
        self.outcome = Ok(conv.id.clone());
        if exists {
            return done();
        }
        let mut entry = self.entry.clone();
        entry.request.to = to.into();
        conv.last_ms = conv.last_ms.max(entry.queued_ms);
        conv.preview = preview(&entry.request.body);
        let message = StoredMessage {
            id: entry.request.client_ref.clone(),
            conversation_id: conv.id.clone(),
            at_ms: entry.queued_ms,
            direction: Direction::Outbound,
            body: entry.request.body.clone(),
            provider_id: None,
            client_ref: Some(entry.request.client_ref.clone()),
            delivery: None,
            media: Vec::new(),
        };
        Next::Write(vec![
            Write::Put(Row::Message(message)),
            Write::Put(Row::Outbox(entry)),
            Write::Put(Row::Conversation(conv)),
        ])
    }
}

/// Records the relay's answer to a send: the entry leaves the outbox and the message
/// gets its provider id and status (merged with a report that came first), in one
/// transaction.
#[derive(Debug)]
pub struct SettleSend<'a> {
    client_ref: &'a str,
    answer: &'a SendAnswer,
}

impl<'a> SettleSend<'a> {
    /// Settles `client_ref` with `answer`.
    pub fn new(client_ref: &'a str, answer: &'a SendAnswer) -> Self {
        Self { client_ref, answer }
    }
}

impl Plan for SettleSend<'_> {
    fn tables(&self) -> &'static [Table] {
        &[Table::Outbox, Table::Messages, Table::PendingReports]
    }
    fn writes(&self) -> bool {
        true
    }
    fn start(&mut self) -> Vec<Read> {
        let mut reads = vec![Read::Get(Table::Messages, Key::str(self.client_ref))];
        if let Some(sid) = &self.answer.message_sid {
            reads.push(Read::Get(Table::PendingReports, Key::str(&**sid)));
        }
        reads
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        let mut got = got.into_iter();
        let mut writes = vec![Write::Delete(Table::Outbox, Key::str(self.client_ref))];
        if let Some(mut m) = got.next().and_then(Got::one).and_then(Row::message) {
            let early = got.next().and_then(Got::one).and_then(Row::pending_report);
            if let Some(r) = &early {
                writes.push(Write::Delete(
                    Table::PendingReports,
                    Key::str(&*r.message_sid),
                ));
            }
            m.delivery = Some(delivery::merge(
                m.delivery.take(),
                self.answer.outcome,
                self.answer.error_code,
                early.as_ref().map(|r| &r.delivery),
            ));
            if m.provider_id.is_none() {
                m.provider_id = self.answer.message_sid.clone();
            }
            writes.push(Write::Put(Row::Message(m)));
        }
        Next::Write(writes)
    }
}

/// Counts an attempt that could not reach the relay (the entry stays queued).
#[derive(Debug)]
pub struct SendUnreachable<'a>(pub &'a str);

impl Plan for SendUnreachable<'_> {
    fn tables(&self) -> &'static [Table] {
        &[Table::Outbox]
    }
    fn writes(&self) -> bool {
        true
    }
    fn start(&mut self) -> Vec<Read> {
        vec![Read::Get(Table::Outbox, Key::str(self.0))]
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        let entry = got
            .into_iter()
            .next()
            .and_then(Got::one)
            .and_then(Row::outbox);
        Next::Write(
            entry
                .map(|mut e| {
                    e.attempts += 1;
                    Write::Put(Row::Outbox(e))
                })
                .into_iter()
                .collect(),
        )
    }
}

/// Marks a conversation's messages and notifications read.
#[derive(Debug)]
pub struct MarkRead<'a>(pub &'a str);

impl Plan for MarkRead<'_> {
    fn tables(&self) -> &'static [Table] {
        &[Table::Conversations, Table::Notifications]
    }
    fn writes(&self) -> bool {
        true
    }
    fn start(&mut self) -> Vec<Read> {
        vec![
            Read::Get(Table::Conversations, Key::str(self.0)),
            Read::All(
                Index::NotificationsByConversation,
                KeyRange::only(Key::pair(self.0, 1.0)),
            ),
        ]
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        let mut got = got.into_iter();
        let mut writes = Vec::new();
        if let Some(mut c) = got.next().and_then(Got::one).and_then(Row::conversation) {
            if c.unread > 0 {
                c.unread = 0;
                writes.push(Write::Put(Row::Conversation(c)));
            }
        }
        for mut n in got
            .next()
            .map(Got::many)
            .unwrap_or_default()
            .into_iter()
            .filter_map(Row::notification)
        {
            n.unread = 0;
            writes.push(Write::Put(Row::Notification(n)));
        }
        Next::Write(writes)
    }
}

/// Stores the draft of a conversation (empty text deletes it).
#[derive(Debug)]
pub struct PutDraft(pub Draft);

impl Plan for PutDraft {
    fn tables(&self) -> &'static [Table] {
        &[Table::Drafts]
    }
    fn writes(&self) -> bool {
        true
    }
    fn start(&mut self) -> Vec<Read> {
        Vec::new()
    }
    fn step(&mut self, _: Vec<Got>) -> Next {
        let d = &self.0;
        Next::Write(vec![match d.text.is_empty() {
            true => Write::Delete(Table::Drafts, Key::str(&*d.conversation_id)),
            false => Write::Put(Row::Draft(d.clone())),
        }])
    }
}

/// Reads one row by key (a draft, a conversation, a message).
#[derive(Debug)]
pub struct GetRow {
    table: Table,
    key: Option<Key>,
    /// The row, once run.
    pub row: Option<Row>,
}

impl GetRow {
    /// The row of `table` with `key`.
    pub fn new(table: Table, key: &str) -> Self {
        Self {
            table,
            key: Some(Key::str(key)),
            row: None,
        }
    }
}

impl Plan for GetRow {
    fn tables(&self) -> &'static [Table] {
        self.table.alone()
    }
    fn start(&mut self) -> Vec<Read> {
        self.key
            .take()
            .map(|k| Read::Get(self.table, k))
            .into_iter()
            .collect()
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        self.row = got.into_iter().next().and_then(Got::one);
        done()
    }
}

/// Sends still waiting, oldest first.
#[derive(Debug, Default)]
pub struct Outbox {
    /// The entries, once run.
    pub entries: Vec<OutboxEntry>,
}

impl Plan for Outbox {
    fn tables(&self) -> &'static [Table] {
        &[Table::Outbox]
    }
    fn start(&mut self) -> Vec<Read> {
        vec![Read::Scan(Table::Outbox)]
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        self.entries = got
            .into_iter()
            .next()
            .map(Got::many)
            .unwrap_or_default()
            .into_iter()
            .filter_map(Row::outbox)
            .collect();
        self.entries
            .sort_by(|a, b| a.queued_ms.total_cmp(&b.queued_ms));
        done()
    }
}

/// Writes decided without reading (a position forgotten, a template stored).
#[derive(Debug)]
pub struct Writes(pub Vec<Write>);

impl Plan for Writes {
    fn tables(&self) -> &'static [Table] {
        match self.0.first() {
            Some(Write::Put(r)) => r.table().alone(),
            Some(Write::Delete(t, _) | Write::Clear(t)) => t.alone(),
            None => &[Table::Meta],
        }
    }
    fn writes(&self) -> bool {
        true
    }
    fn start(&mut self) -> Vec<Read> {
        Vec::new()
    }
    fn step(&mut self, _: Vec<Got>) -> Next {
        Next::Write(std::mem::take(&mut self.0))
    }
}

/// Templates, those for `kind` in `language` first, then by name (B6).
#[derive(Debug, Default)]
pub struct Templates {
    kind: Option<String>,
    language: Option<String>,
    /// The templates, once run.
    pub list: Vec<StoredTemplate>,
}

impl Templates {
    /// Every template, those of `kind` and `language` first.
    pub fn new(kind: Option<String>, language: Option<String>) -> Self {
        Self {
            kind,
            language,
            list: Vec::new(),
        }
    }
}

impl Plan for Templates {
    fn tables(&self) -> &'static [Table] {
        &[Table::Templates]
    }
    fn start(&mut self) -> Vec<Read> {
        vec![Read::Scan(Table::Templates)]
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        let rows = got.into_iter().next().map(Got::many).unwrap_or_default();
        let mut all: Vec<StoredTemplate> = rows
            .into_iter()
            .filter_map(Row::template)
            .map(|v| StoredTemplate::from_value(&v))
            .collect();
        let rank = |t: &StoredTemplate| {
            (
                self.kind.as_ref().is_some_and(|k| &t.category != k),
                self.language.as_ref().is_some_and(|l| &t.language != l),
            )
        };
        all.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.name.cmp(&b.name)));
        self.list = all;
        done()
    }
}
