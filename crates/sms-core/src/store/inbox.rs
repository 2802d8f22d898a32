//! The grid ("My text messages", O1) and the bell (N1) read together: one read-only
//! transaction, conversations by latest activity and every notification in the first
//! round, the records the visible rows name in the second. Only conversations the
//! seller may see are listed (V1).

use super::ingest::Facts;
use super::key::{Key, KeyRange};
use super::ops::{Got, Index, Read, Row, Table};
use super::plan::{Next, Plan};
use super::rows::{StoredConversation, StoredNotification};

/// The first round: conversations by latest activity, and the notifications.
pub fn reads() -> Vec<Read> {
    vec![
        Read::All(Index::ConversationsByLast, KeyRange::all()),
        Read::Scan(Table::Notifications),
    ]
}

/// What the first round found.
#[derive(Debug, Default)]
pub struct Found {
    conversations: Vec<StoredConversation>,
    notifications: Vec<StoredNotification>,
}

/// The grid and the bell.
#[derive(Debug, Default)]
pub struct Inbox {
    /// Visible conversations, newest first, each with its record's name.
    pub conversations: Vec<(StoredConversation, String)>,
    /// Notifications, newest first.
    pub notifications: Vec<StoredNotification>,
}

/// Takes the first round's answers; returns the second round (the records named).
pub fn records(got: Vec<Got>) -> (Found, Vec<Read>) {
    let mut got = got.into_iter();
    let conversations: Vec<StoredConversation> = got
        .next()
        .map(Got::many)
        .unwrap_or_default()
        .into_iter()
        .rev()
        .filter_map(|r| match r {
            Row::Conversation(c) => Some(c),
            _ => None,
        })
        .collect();
    let mut notifications: Vec<StoredNotification> = got
        .next()
        .map(Got::many)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| match r {
            Row::Notification(n) => Some(n),
            _ => None,
        })
        .collect();
    notifications.sort_by(|a, b| b.at_ms.total_cmp(&a.at_ms));
    let mut ids: Vec<&str> = Vec::new();
    for c in &conversations {
        if !ids.contains(&c.record_id.as_str()) {
            ids.push(&c.record_id);
        }
    }
    let reads = ids
        .iter()
        .map(|id| Read::Get(Table::Records, Key::str(*id)))
        .collect();
    let found = Found {
        conversations,
        notifications,
    };
    (found, reads)
}

/// The inbox from both rounds: only the conversations the seller may see.
pub fn decide(found: Found, records: Vec<Got>, facts: &Facts) -> Inbox {
    let records: Vec<_> = records
        .into_iter()
        .filter_map(|g| match g.one() {
            Some(Row::Record(r)) => Some(r.record),
            _ => None,
        })
        .collect();
    let conversations = found
        .conversations
        .into_iter()
        .filter_map(|c| {
            let record = records.iter().find(|r| r.id == c.record_id);
            let owner = record.and_then(|r| r.owner.as_ref());
            facts
                .access
                .can_see(facts.org_owner(&c.org_number), owner)
                .then(|| {
                    let name = record.map(|r| r.name.clone()).unwrap_or_default();
                    (c, name)
                })
        })
        .collect();
    Inbox {
        conversations,
        notifications: found.notifications,
    }
}

/// The grid and the bell as a [`Plan`]: two rounds in one read-only transaction.
#[derive(Debug)]
pub struct InboxPlan<'a> {
    facts: &'a Facts,
    found: Option<Found>,
    /// The inbox, once run.
    pub inbox: Inbox,
}

impl<'a> InboxPlan<'a> {
    /// The inbox as `facts` lets the seller see it.
    pub fn new(facts: &'a Facts) -> Self {
        Self {
            facts,
            found: None,
            inbox: Inbox::default(),
        }
    }
}

impl Plan for InboxPlan<'_> {
    fn tables(&self) -> &'static [Table] {
        &[Table::Conversations, Table::Notifications, Table::Records]
    }
    fn start(&mut self) -> Vec<Read> {
        reads()
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        match self.found.take() {
            None => {
                let (found, reads) = records(got);
                self.found = Some(found);
                Next::Read(reads)
            }
            Some(found) => {
                self.inbox = decide(found, got, self.facts);
                Next::Write(Vec::new())
            }
        }
    }
}
