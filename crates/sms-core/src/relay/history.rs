//! The relay's per-conversation history (issue 17 item 2): messages with their
//! latest delivery status, per conversation, with moves and merges applied — a
//! materialised view of the log that outlives pruning.
//!
//! [`ops`] projects one logged event onto [`HistoryOp`]s, judged on the [`State`]
//! *after* the event was applied (its conversation index names the conversations
//! and holds their latest activity). A store carries the ops out in the same
//! transaction as the event; [`History`] is the in-memory reference they must
//! agree with (the tests fold the log with it).
//!
//! A conversation is keyed as the conversation index keys it: org number, customer
//! number (both match keys) and the record holding it. A move re-keys the
//! source's messages onto the target and drops the source: when the target held a
//! conversation of the same numbers, that is the merge (M2), otherwise a re-attach.
//!
//! Delivery reports follow [`crate::delivery`]: a status only moves forward. A
//! report before its message is kept pending (D2) and folded in when the message
//! arrives ([`settle`]), as the browser's store does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::delivery::{Delivery, DeliveryStatus};
use crate::moves::{self, Held, Moved};
use crate::pane::{Direction, Media, MoveEntry};
use crate::protocol::{EventBody, SendOutcome};
use crate::routing::RouteRule;
use crate::time::Timestamp;

use super::State;

/// A conversation's key: its two numbers (match keys) and the record holding it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConversationKey {
    /// Org number (key).
    pub org: String,
    /// Customer number (key).
    pub customer: String,
    /// Record holding it.
    pub record: String,
}

impl ConversationKey {
    /// The key of `org`/`customer` on `record`.
    pub fn new(org: &str, customer: &str, record: &str) -> Self {
        Self {
            org: org.to_owned(),
            customer: customer.to_owned(),
            record: record.to_owned(),
        }
    }
}

/// A conversation of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryConversation {
    /// Its key.
    pub key: ConversationKey,
    /// Latest activity (message or move), as the conversation index has it.
    pub last: Timestamp,
    /// The routing rule of its latest inbound message (B1).
    pub rule: Option<RouteRule>,
    /// Moves so far, oldest first (M2, B1).
    pub moves: Vec<MoveEntry>,
}

impl HistoryConversation {
    /// A conversation with no rule and no moves yet.
    pub fn new(key: ConversationKey, last: Timestamp) -> Self {
        Self {
            key,
            last,
            rule: None,
            moves: Vec::new(),
        }
    }

    /// What [`HistoryOp::PutConversation`] makes of `self` (the stored row, if any).
    pub fn touched(
        existing: Option<Self>,
        key: ConversationKey,
        last: Timestamp,
        rule: Option<RouteRule>,
    ) -> Self {
        let mut c = existing.unwrap_or_else(|| Self::new(key, last));
        c.last = last;
        c.rule = rule.or(c.rule);
        c
    }

    /// What [`HistoryOp::Move`] makes of the target: `source` re-attached to `to`, or
    /// merged into `target` when that conversation exists (M2) — the same rule as the
    /// browser's ([`moves::apply`]): the target's moves, the source's, then this one.
    pub fn moved(
        source: Option<Self>,
        target: Option<Self>,
        to: ConversationKey,
        entry: MoveEntry,
    ) -> Self {
        let held = |c: &mut Self| Held {
            last: c.last,
            unread: 0,
            moves: std::mem::take(&mut c.moves),
            draft: false,
        };
        let mut source = source.unwrap_or_else(|| Self::new(to.clone(), entry.at));
        let source_held = held(&mut source);
        let (mut out, moved) = match target {
            None => (source, moves::apply(source_held, None, entry)),
            Some(mut target) => {
                let target_held = held(&mut target);
                (target, moves::apply(source_held, Some(target_held), entry))
            }
        };
        let (Moved::Reattached(h) | Moved::Merged { target: h, .. }) = moved;
        out.key = to;
        out.last = h.last;
        out.moves = h.moves;
        out
    }
}

/// A message of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryMessage {
    /// Inbound: the provider's id; outbound: the client reference.
    pub id: String,
    /// The conversation holding it (not serialised: the store's columns and the
    /// snapshot's lines name it).
    #[serde(skip)]
    pub conversation: ConversationKey,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Text.
    pub body: String,
    /// MMS media (inbound).
    pub media: Vec<Media>,
    /// When it was received or sent.
    pub at: Timestamp,
    /// Provider message id (outbound: once accepted).
    pub provider_id: Option<String>,
    /// Sending seller (outbound).
    pub by: Option<String>,
    /// Delivery (outbound): the send's outcome, then the reports.
    pub delivery: Option<Delivery>,
}

impl HistoryMessage {
    /// The provider id delivery reports name it by: an outbound message's (reports
    /// are about sends; an inbound message has none to wait for).
    pub fn report_key(&self) -> Option<&str> {
        match self.direction {
            Direction::Outbound => self.provider_id.as_deref(),
            Direction::Inbound => None,
        }
    }
}

/// One change to the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryOp {
    /// Insert or update a conversation ([`HistoryConversation::touched`]): its latest
    /// activity, and its rule when one is given; its moves stay.
    PutConversation {
        /// Which.
        key: ConversationKey,
        /// Latest activity.
        last: Timestamp,
        /// The rule of an inbound message.
        rule: Option<RouteRule>,
    },
    /// A move (M2): every message of `from` is re-keyed onto `to`, the `to` row
    /// becomes [`HistoryConversation::moved`] of both rows, and `from` is removed.
    Move {
        /// Source conversation.
        from: ConversationKey,
        /// Target conversation.
        to: ConversationKey,
        /// The move, for the conversation's move list.
        entry: MoveEntry,
    },
    /// Insert a message unless one with its id exists. A pending report of its
    /// [`HistoryMessage::report_key`] is folded in ([`settle`]) and removed.
    PutMessage(HistoryMessage),
    /// An erasure (F6): every conversation of this customer number goes, with its
    /// messages.
    Erase {
        /// The customer number (key).
        customer: String,
    },
    /// A delivery report: applied to the message with this provider id
    /// ([`report`]), or kept pending until it arrives.
    Report {
        /// Provider message id.
        message_sid: String,
        /// Reported status.
        status: DeliveryStatus,
        /// Error code of a failure.
        error_code: Option<u32>,
    },
}

/// A delivery after a report: `current` is the message's (or the pending report's)
/// delivery, if any. Statuses only move forward; a failure's code is kept.
pub fn report(
    current: Option<Delivery>,
    status: DeliveryStatus,
    error_code: Option<u32>,
) -> Delivery {
    let mut d = current.unwrap_or_else(|| Delivery::new(status));
    d.apply(status, error_code);
    d
}

/// A new message's delivery with a report that came before it (D2).
pub fn settle(delivery: Option<Delivery>, early: Option<&Delivery>) -> Option<Delivery> {
    match (delivery, early) {
        (Some(mut d), Some(r)) => {
            d.apply(r.status, r.error_code);
            Some(d)
        }
        (d, _) => d,
    }
}

fn conversation(
    state: &State,
    key: ConversationKey,
    fallback: Timestamp,
    rule: Option<RouteRule>,
) -> HistoryOp {
    let last = state
        .conversation_index()
        .get(&(key.org.clone(), key.customer.clone()))
        .and_then(|records| records.get(&key.record))
        .copied()
        .unwrap_or(fallback);
    HistoryOp::PutConversation { key, last, rule }
}

/// The history's changes for `event`, judged on `state` after the event was applied.
pub fn ops(state: &State, event: &EventBody) -> Vec<HistoryOp> {
    match event {
        EventBody::Inbound(e) => {
            let key = ConversationKey::new(&e.to, &e.from, &e.record_id);
            vec![
                conversation(state, key.clone(), e.at, Some(e.rule)),
                HistoryOp::PutMessage(HistoryMessage {
                    id: e.message_sid.clone(),
                    conversation: key,
                    direction: Direction::Inbound,
                    body: e.body.clone(),
                    media: e.media.clone(),
                    at: e.at,
                    provider_id: Some(e.message_sid.clone()),
                    by: None,
                    delivery: None,
                }),
            ]
        }
        EventBody::Outbound(e) => {
            let key = ConversationKey::new(&e.from, &e.to, &e.record_id);
            let delivery = crate::delivery::merge(None, e.outcome, e.error_code, None);
            let mut out = Vec::new();
            // A failed send is kept but is no activity (as the conversation index has it).
            let known = state
                .conversation_records(&e.from, &e.to)
                .contains(&e.record_id.as_str());
            if e.outcome != SendOutcome::Failed || !known {
                out.push(conversation(state, key.clone(), e.at, None));
            }
            out.push(HistoryOp::PutMessage(HistoryMessage {
                id: e.client_ref.clone(),
                conversation: key,
                direction: Direction::Outbound,
                body: e.body.clone(),
                media: Vec::new(),
                at: e.at,
                provider_id: e.message_sid.clone(),
                by: Some(e.by.clone()),
                delivery: Some(delivery),
            }));
            out
        }
        EventBody::Delivery(e) => vec![HistoryOp::Report {
            message_sid: e.message_sid.clone(),
            status: e.status,
            error_code: e.error_code,
        }],
        EventBody::ConversationMoved(e) => {
            let to = ConversationKey::new(&e.org_number, &e.customer_number, &e.to_record);
            let mut out = Vec::new();
            if e.from_record != e.to_record {
                out.push(HistoryOp::Move {
                    from: ConversationKey::new(&e.org_number, &e.customer_number, &e.from_record),
                    to: to.clone(),
                    entry: MoveEntry {
                        by: e.by.clone(),
                        at: e.at,
                        from_record: e.from_record.clone(),
                        to_record: e.to_record.clone(),
                    },
                });
            }
            out.push(conversation(state, to, e.at, None));
            out
        }
        EventBody::LeadCreated(_)
        | EventBody::ConsentChanged(_)
        | EventBody::DirectoryChanged(_)
        | EventBody::DirectoryReplaced(_) => Vec::new(),
        EventBody::Erased(e) => vec![HistoryOp::Erase {
            customer: e.customer_number.clone(),
        }],
    }
}

/// The history in memory: the reference a store's tables must equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Conversations by key.
    pub conversations: BTreeMap<ConversationKey, HistoryConversation>,
    /// Messages by id.
    pub messages: BTreeMap<String, HistoryMessage>,
    /// Reports whose message is not in the history yet, by provider id.
    pub pending: BTreeMap<String, Delivery>,
}

impl History {
    /// Carries out `op`.
    pub fn apply(&mut self, op: HistoryOp) {
        match op {
            HistoryOp::PutConversation { key, last, rule } => {
                let existing = self.conversations.remove(&key);
                let c = HistoryConversation::touched(existing, key, last, rule);
                self.conversations.insert(c.key.clone(), c);
            }
            HistoryOp::Move { from, to, entry } => {
                for m in self.messages.values_mut() {
                    if m.conversation == from {
                        m.conversation = to.clone();
                    }
                }
                let source = self.conversations.remove(&from);
                let target = self.conversations.remove(&to);
                let c = HistoryConversation::moved(source, target, to, entry);
                self.conversations.insert(c.key.clone(), c);
            }
            HistoryOp::PutMessage(mut m) => {
                if self.messages.contains_key(&m.id) {
                    return;
                }
                if let Some(sid) = m.report_key() {
                    let early = self.pending.remove(sid);
                    m.delivery = settle(m.delivery, early.as_ref());
                }
                self.messages.insert(m.id.clone(), m);
            }
            HistoryOp::Erase { customer } => {
                self.conversations.retain(|k, _| k.customer != customer);
                self.messages
                    .retain(|_, m| m.conversation.customer != customer);
            }
            HistoryOp::Report {
                message_sid,
                status,
                error_code,
            } => {
                let found = self
                    .messages
                    .values_mut()
                    .find(|m| m.report_key() == Some(&message_sid));
                match found {
                    Some(m) => m.delivery = Some(report(m.delivery.take(), status, error_code)),
                    None => {
                        let d = report(self.pending.remove(&message_sid), status, error_code);
                        self.pending.insert(message_sid, d);
                    }
                }
            }
        }
    }

    /// Applies `event` to `state` and its ops to the history (a fold step).
    pub fn fold(&mut self, state: &mut State, event: &EventBody) {
        state.apply(event);
        for op in ops(state, event) {
            self.apply(op);
        }
    }

    /// The messages of a conversation, oldest first (ties by id).
    pub fn messages_of(&self, key: &ConversationKey) -> Vec<&HistoryMessage> {
        let mut out: Vec<&HistoryMessage> = self
            .messages
            .values()
            .filter(|m| &m.conversation == key)
            .collect();
        out.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::DeliveryStatus::*;
    use crate::protocol::events::*;
    use crate::protocol::Directory;
    use crate::routing::RouteRule;

    const ORG: &str = "+14155550100";
    const CUST: &str = "+919812345678";

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn state() -> State {
        let directory: Directory = serde_json::from_value(serde_json::json!({
            "sellers": [{"id": "asha", "name": "Asha"}],
            "org_numbers": [{"number": ORG, "owner": {"seller": "asha"}}],
            "records": [
                {"id": "a", "kind": "contact", "owner": {"seller": "asha"}, "phones": [CUST]},
                {"id": "b", "kind": "contact", "owner": {"seller": "asha"}, "phones": [CUST]}
            ]
        }))
        .unwrap();
        let mut s = State::new(Some("IN".into()));
        s.apply(&EventBody::DirectoryReplaced(DirectoryReplacedEvent {
            directory,
        }));
        s
    }

    fn inbound(sid: &str, record: &str, at: i64) -> EventBody {
        EventBody::Inbound(InboundEvent {
            message_sid: sid.into(),
            from: CUST.into(),
            to: ORG.into(),
            body: format!("hi {sid}"),
            media: Vec::new(),
            at: t(at),
            record_id: record.into(),
            rule: RouteRule::RecentConversation,
        })
    }

    fn outbound(
        client_ref: &str,
        sid: Option<&str>,
        record: &str,
        at: i64,
        outcome: SendOutcome,
    ) -> EventBody {
        EventBody::Outbound(OutboundEvent {
            client_ref: client_ref.into(),
            message_sid: sid.map(Into::into),
            from: ORG.into(),
            to: CUST.into(),
            body: "hello".into(),
            record_id: record.into(),
            by: "asha".into(),
            at: t(at),
            outcome,
            error_code: None,
        })
    }

    fn delivery(sid: &str, status: DeliveryStatus, error_code: Option<u32>, at: i64) -> EventBody {
        EventBody::Delivery(DeliveryEvent {
            message_sid: sid.into(),
            status,
            error_code,
            error_message: None,
            from: ORG.into(),
            to: CUST.into(),
            at: t(at),
        })
    }

    fn moved(from: &str, to: &str, at: i64) -> EventBody {
        EventBody::ConversationMoved(ConversationMovedEvent {
            org_number: ORG.into(),
            customer_number: CUST.into(),
            from_record: from.into(),
            to_record: to.into(),
            by: "asha".into(),
            at: t(at),
        })
    }

    fn fold(events: &[EventBody]) -> History {
        let mut s = state();
        let mut h = History::default();
        for e in events {
            h.fold(&mut s, e);
        }
        h
    }

    fn key(record: &str) -> ConversationKey {
        ConversationKey::new(ORG, CUST, record)
    }

    #[test]
    fn messages_land_in_their_conversation_with_its_latest_activity() {
        let h = fold(&[
            inbound("SM1", "a", 1_000),
            outbound("r1", Some("SM2"), "a", 2_000, SendOutcome::Accepted),
        ]);
        assert_eq!(h.conversations.keys().collect::<Vec<_>>(), [&key("a")]);
        assert_eq!(h.conversations[&key("a")].last, t(2_000));
        let ids: Vec<&str> = h
            .messages_of(&key("a"))
            .iter()
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(ids, ["SM1", "r1"]);
        assert_eq!(h.messages["r1"].delivery, Some(Delivery::new(Queued)));
        assert_eq!(h.messages["SM1"].delivery, None);
    }

    #[test]
    fn statuses_only_move_forward_and_a_failure_keeps_its_code() {
        let h = fold(&[
            outbound("r1", Some("SM2"), "a", 1_000, SendOutcome::Accepted),
            delivery("SM2", Delivered, None, 2_000),
            delivery("SM2", Sent, None, 3_000),
            delivery("SM2", Failed, Some(30003), 4_000),
        ]);
        assert_eq!(h.messages["r1"].delivery, Some(Delivery::new(Delivered)));
        let h = fold(&[
            outbound("r1", Some("SM2"), "a", 1_000, SendOutcome::Accepted),
            delivery("SM2", Undelivered, Some(30003), 2_000),
        ]);
        let d = h.messages["r1"].delivery.clone().unwrap();
        assert_eq!((d.status, d.error_code), (Undelivered, Some(30003)));
    }

    #[test]
    fn a_report_before_its_message_waits_and_is_folded_in() {
        let h = fold(&[
            delivery("SM2", Sent, None, 500),
            delivery("SM2", Delivered, None, 600),
        ]);
        assert!(h.messages.is_empty());
        assert_eq!(h.pending["SM2"], Delivery::new(Delivered));
        let h = fold(&[
            delivery("SM2", Delivered, None, 500),
            outbound("r1", Some("SM2"), "a", 1_000, SendOutcome::Accepted),
        ]);
        assert!(h.pending.is_empty());
        assert_eq!(h.messages["r1"].delivery, Some(Delivery::new(Delivered)));
        let h = fold(&[delivery("SM1", Sent, None, 500), inbound("SM1", "a", 1_000)]);
        assert_eq!(h.messages["SM1"].delivery, None, "reports are about sends");
        assert!(h.pending.contains_key("SM1"));
    }

    #[test]
    fn a_failed_send_is_kept_without_counting_as_activity() {
        let h = fold(&[
            inbound("SM1", "a", 1_000),
            outbound("r1", None, "a", 2_000, SendOutcome::Failed),
        ]);
        assert_eq!(h.conversations[&key("a")].last, t(1_000));
        assert_eq!(h.messages["r1"].delivery.as_ref().unwrap().status, Failed);
        let h = fold(&[outbound("r1", None, "b", 2_000, SendOutcome::Failed)]);
        assert_eq!(
            h.conversations[&key("b")].last,
            t(2_000),
            "its conversation shows"
        );
    }

    #[test]
    fn a_move_reattaches_and_a_move_onto_the_same_numbers_merges() {
        let h = fold(&[inbound("SM1", "a", 1_000), moved("a", "b", 5_000)]);
        let lasts = |h: &History| -> Vec<(ConversationKey, Timestamp)> {
            h.conversations
                .values()
                .map(|c| (c.key.clone(), c.last))
                .collect()
        };
        assert_eq!(lasts(&h), [(key("b"), t(5_000))]);
        assert_eq!(h.messages["SM1"].conversation, key("b"));
        let b = &h.conversations[&key("b")];
        assert_eq!(
            b.rule,
            Some(RouteRule::RecentConversation),
            "the rule follows a re-attach"
        );
        assert_eq!(
            b.moves
                .iter()
                .map(|m| (m.from_record.as_str(), m.at))
                .collect::<Vec<_>>(),
            [("a", t(5_000))]
        );

        let h = fold(&[
            inbound("SM1", "a", 1_000),
            inbound("SM2", "b", 2_000),
            outbound("r1", Some("SM3"), "a", 3_000, SendOutcome::Accepted),
            moved("a", "b", 2_500),
            delivery("SM3", Delivered, None, 4_000),
        ]);
        assert_eq!(
            lasts(&h),
            [(key("b"), t(3_000))],
            "one conversation, the latest activity of both"
        );
        assert_eq!(h.conversations[&key("b")].moves.len(), 1);
        let ids: Vec<&str> = h
            .messages_of(&key("b"))
            .iter()
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(ids, ["SM1", "SM2", "r1"]);
        assert_eq!(h.messages["r1"].delivery, Some(Delivery::new(Delivered)));
    }

    #[test]
    fn a_repeated_message_is_kept_once() {
        let h = fold(&[
            outbound("r1", Some("SM2"), "a", 1_000, SendOutcome::Accepted),
            delivery("SM2", Delivered, None, 2_000),
            outbound("r1", Some("SM2"), "a", 1_000, SendOutcome::Accepted),
        ]);
        assert_eq!(h.messages.len(), 1);
        assert_eq!(h.messages["r1"].delivery, Some(Delivery::new(Delivered)));
    }
}
