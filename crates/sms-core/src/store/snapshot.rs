//! Storing a relay snapshot (E3): the lines of `GET /snapshot` become conversation and
//! message rows, a chunk per transaction, and the snapshot's position is stored last
//! (with its `end` line), so a cut snapshot leaves no position and is taken again.
//!
//! Once the whole snapshot is stored, [`SnapshotPrune`] removes what the device held
//! that the snapshot no longer has (a conversation moved or merged while this device's
//! position was pruned, or one of an older epoch), unless a send to it still waits in
//! the outbox.
//!
//! A conversation the device already holds keeps its unread count (read marks are
//! the device's own); a new one counts the inbound messages after the seller's last
//! reply ([`unanswered`]): the relay keeps no read marks, and a customer who wrote
//! last is waiting for an answer. Snapshots raise no notifications: the bell is for
//! what arrives, not for history.

use std::collections::HashSet;

use crate::protocol::{SnapshotConversation, SnapshotOlder};
use crate::relay::history::HistoryMessage;

use super::key::{Key, KeyRange};
use super::ops::{Got, Index, Read, Row, Table, Write};
use super::plan::{Next, Plan};
use super::rows::{conversation_id, preview, Position, StoredConversation, StoredMessage};
use crate::pane::Direction;

/// The inbound messages after the last outbound one (`messages` oldest first).
pub fn unanswered(messages: &[HistoryMessage]) -> u32 {
    messages
        .iter()
        .rev()
        .take_while(|m| m.direction == Direction::Inbound)
        .count() as u32
}

/// A history message as the browser stores it.
pub fn message_row(m: &HistoryMessage, conversation_id: &str) -> StoredMessage {
    let outbound = m.direction == Direction::Outbound;
    StoredMessage {
        id: m.id.clone(),
        conversation_id: conversation_id.to_owned(),
        at_ms: m.at.as_millis() as f64,
        direction: m.direction,
        body: m.body.clone(),
        provider_id: m.provider_id.clone(),
        client_ref: outbound.then(|| m.id.clone()),
        delivery: m.delivery.clone(),
        media: m.media.clone(),
    }
}

/// Stores a `conversations` line: each conversation and its latest messages.
#[derive(Debug)]
pub struct SnapshotConversations<'a> {
    conversations: &'a [SnapshotConversation],
    /// The ids stored, once run (for the page's change notices).
    pub stored: Vec<String>,
}

impl<'a> SnapshotConversations<'a> {
    /// A plan for one line's conversations.
    pub fn new(conversations: &'a [SnapshotConversation]) -> Self {
        Self {
            conversations,
            stored: Vec::new(),
        }
    }
}

fn id_of(c: &SnapshotConversation) -> String {
    conversation_id(&c.org_number, &c.customer_number, &c.record_id)
}

impl Plan for SnapshotConversations<'_> {
    fn tables(&self) -> &'static [Table] {
        &[Table::Conversations, Table::Messages]
    }
    fn writes(&self) -> bool {
        true
    }
    fn start(&mut self) -> Vec<Read> {
        self.conversations
            .iter()
            .map(|c| Read::Get(Table::Conversations, Key::str(id_of(c))))
            .collect()
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        let mut writes = Vec::new();
        for (c, held) in self.conversations.iter().zip(got) {
            let id = id_of(c);
            let held = held.one().and_then(Row::conversation);
            let last = c.messages.last();
            let row = StoredConversation {
                id: id.clone(),
                record_id: c.record_id.clone(),
                org_number: c.org_number.clone(),
                customer_number: c.customer_number.clone(),
                last_ms: c.last.as_millis() as f64,
                preview: last.map(|m| preview(&m.body)).unwrap_or_default(),
                unread: held.map_or_else(|| unanswered(&c.messages), |h| h.unread),
                rule: c.rule,
                moves: c.moves.clone(),
                consent: c.consent,
            };
            writes.extend(
                c.messages
                    .iter()
                    .map(|m| Write::Put(Row::Message(message_row(m, &id)))),
            );
            writes.push(Write::Put(Row::Conversation(row)));
            self.stored.push(id);
        }
        Next::Write(writes)
    }
}

/// Stores an `older` line: messages before a conversation's latest page.
pub fn older_writes(line: &SnapshotOlder) -> Vec<Write> {
    let id = conversation_id(&line.org_number, &line.customer_number, &line.record_id);
    line.messages
        .iter()
        .map(|m| Write::Put(Row::Message(message_row(m, &id))))
        .collect()
}

/// The write that ends a snapshot: the position it reflects (S4, D1).
pub fn position_write(epoch: &str, id: i64) -> Write {
    Write::Put(Row::Position(Position {
        key: "position".into(),
        epoch: epoch.to_owned(),
        id,
    }))
}

/// Removes the conversations the snapshot did not have (with their messages,
/// notifications and drafts), keeping those a waiting send belongs to.
#[derive(Debug)]
pub struct SnapshotPrune<'a> {
    kept: &'a HashSet<String>,
    stale: Vec<String>,
}

impl<'a> SnapshotPrune<'a> {
    /// `kept`: the ids the snapshot stored.
    pub fn new(kept: &'a HashSet<String>) -> Self {
        Self {
            kept,
            stale: Vec::new(),
        }
    }
}

impl Plan for SnapshotPrune<'_> {
    fn tables(&self) -> &'static [Table] {
        &[
            Table::Conversations,
            Table::Messages,
            Table::Notifications,
            Table::Drafts,
            Table::Outbox,
        ]
    }
    fn writes(&self) -> bool {
        true
    }
    fn start(&mut self) -> Vec<Read> {
        vec![Read::Scan(Table::Conversations), Read::Scan(Table::Outbox)]
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        let mut got = got.into_iter();
        if !self.stale.is_empty() {
            // The second round: the stale conversations' messages and notifications.
            let mut writes = Vec::new();
            for row in got.flat_map(Got::many) {
                writes.push(Write::Delete(row.table(), row.key()));
            }
            for id in &self.stale {
                writes.push(Write::Delete(Table::Conversations, Key::str(&**id)));
                writes.push(Write::Delete(Table::Drafts, Key::str(&**id)));
            }
            return Next::Write(writes);
        }
        let conversations = got.next().map(Got::many).unwrap_or_default();
        let waiting: HashSet<String> = got
            .next()
            .map(Got::many)
            .unwrap_or_default()
            .into_iter()
            .filter_map(Row::outbox)
            .filter_map(|o| {
                let r = o.request;
                Some(conversation_id(&r.from, &r.to, r.record_id.as_deref()?))
            })
            .collect();
        self.stale = conversations
            .into_iter()
            .filter_map(Row::conversation)
            .map(|c| c.id)
            .filter(|id| !self.kept.contains(id) && !waiting.contains(id))
            .collect();
        if self.stale.is_empty() {
            return Next::Write(Vec::new());
        }
        let reads = self
            .stale
            .iter()
            .flat_map(|id| {
                [
                    Read::All(
                        Index::MessagesByConversation,
                        KeyRange::closed(Key::pair(&**id, f64::MIN), Key::pair(&**id, f64::MAX)),
                    ),
                    Read::All(
                        Index::NotificationsByConversation,
                        KeyRange::closed(Key::pair(&**id, 0.0), Key::pair(&**id, 1.0)),
                    ),
                ]
            })
            .collect();
        Next::Read(reads)
    }
}
