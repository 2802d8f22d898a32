//! The browser schema as data (tables, indexes, key paths) and the operations the core
//! asks of a store: [`Read`]s answered with [`Got`], then [`Write`]s. One executor per
//! backend carries them out (IndexedDB in the browser, [`super::MemoryStore`] natively).

use crate::directory::{OrgNumber, Team};
use crate::protocol::Seller;
use crate::value::Value;

use super::key::{Key, KeyRange};
use super::rows::*;

/// An object store of schema v2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Key/value: `position`. Key path `key`.
    Meta,
    /// Directory records. Key path `record.id`.
    Records,
    /// Org numbers. Key path `number` (normalised).
    OrgNumbers,
    /// Sellers. Key path `id`.
    Sellers,
    /// Teams. Key path `id`.
    Teams,
    /// Templates (stored as given). Key path `id`.
    Templates,
    /// Conversations. Key path `id`.
    Conversations,
    /// Messages. Key path `id`.
    Messages,
    /// Reports that came before their message. Key path `message_sid`.
    PendingReports,
    /// Notifications. Key path `id`.
    Notifications,
    /// Drafts. Key path `conversation_id`.
    Drafts,
    /// Sends waiting for the relay (B4). Key path `client_ref`.
    Outbox,
}

impl Table {
    /// The object store's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::Records => "records",
            Self::OrgNumbers => "org_numbers",
            Self::Sellers => "sellers",
            Self::Teams => "teams",
            Self::Templates => "templates",
            Self::Conversations => "conversations",
            Self::Messages => "messages",
            Self::PendingReports => "pending_reports",
            Self::Notifications => "notifications",
            Self::Drafts => "drafts",
            Self::Outbox => "outbox",
        }
    }

    /// The table as a transaction's whole scope.
    pub fn alone(self) -> &'static [Self] {
        match self {
            Self::Meta => &[Self::Meta],
            Self::Records => &[Self::Records],
            Self::OrgNumbers => &[Self::OrgNumbers],
            Self::Sellers => &[Self::Sellers],
            Self::Teams => &[Self::Teams],
            Self::Templates => &[Self::Templates],
            Self::Conversations => &[Self::Conversations],
            Self::Messages => &[Self::Messages],
            Self::PendingReports => &[Self::PendingReports],
            Self::Notifications => &[Self::Notifications],
            Self::Drafts => &[Self::Drafts],
            Self::Outbox => &[Self::Outbox],
        }
    }
}

/// An index of schema v2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Index {
    /// Records by phone match key (multi-entry).
    RecordsByPhone,
    /// Records by the ids they link to (`record.related`, multi-entry, C2).
    RecordsByRelated,
    /// Conversations by `record_id`.
    ConversationsByRecord,
    /// Conversations by `[org_number, customer_number]`.
    ConversationsByPair,
    /// Conversations by `last_ms` (latest activity).
    ConversationsByLast,
    /// Messages by `[conversation_id, at_ms]`.
    MessagesByConversation,
    /// Messages by `provider_id` (unique).
    MessagesByProvider,
    /// Notifications by `[conversation_id, unread]`.
    NotificationsByConversation,
}

impl Index {
    /// Every index, in order.
    pub const ALL: [Self; 8] = [
        Self::RecordsByPhone,
        Self::RecordsByRelated,
        Self::ConversationsByRecord,
        Self::ConversationsByPair,
        Self::ConversationsByLast,
        Self::MessagesByConversation,
        Self::MessagesByProvider,
        Self::NotificationsByConversation,
    ];

    /// The table it indexes.
    pub fn table(self) -> Table {
        match self {
            Self::RecordsByPhone | Self::RecordsByRelated => Table::Records,
            Self::ConversationsByPair | Self::ConversationsByLast | Self::ConversationsByRecord => {
                Table::Conversations
            }
            Self::MessagesByConversation | Self::MessagesByProvider => Table::Messages,
            Self::NotificationsByConversation => Table::Notifications,
        }
    }

    /// The index's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::RecordsByPhone => "by_phone",
            Self::RecordsByRelated => "by_related",
            Self::ConversationsByRecord => "by_record",
            Self::ConversationsByPair => "by_pair",
            Self::ConversationsByLast => "by_last",
            Self::MessagesByConversation | Self::NotificationsByConversation => "by_conversation",
            Self::MessagesByProvider => "by_provider",
        }
    }
}

/// A stored row of any table.
#[derive(Clone, Debug, PartialEq)]
pub enum Row {
    /// `meta` `position`.
    Position(Position),
    /// A record with its phone keys.
    Record(StoredRecord),
    /// An org number (normalised).
    OrgNumber(OrgNumber),
    /// A seller.
    Seller(Seller),
    /// A team.
    Team(Team),
    /// A template, as the directory gave it.
    Template(Value),
    /// A conversation.
    Conversation(StoredConversation),
    /// A message.
    Message(StoredMessage),
    /// A report waiting for its message.
    PendingReport(PendingReport),
    /// A notification.
    Notification(StoredNotification),
    /// A draft.
    Draft(Draft),
    /// A send waiting in the outbox.
    Outbox(OutboxEntry),
}

/// `fn name(self) -> Option<T>`: the row if it is of that kind.
macro_rules! row_as {
    ($($name:ident: $variant:ident($ty:ty);)*) => {
        impl Row {
            $(
                #[doc = concat!("The row as a `", stringify!($variant), "`, if it is one.")]
                pub fn $name(self) -> Option<$ty> {
                    match self {
                        Self::$variant(x) => Some(x),
                        _ => None,
                    }
                }
            )*
        }
    };
}

row_as! {
    record: Record(StoredRecord);
    conversation: Conversation(StoredConversation);
    message: Message(StoredMessage);
    notification: Notification(StoredNotification);
    draft: Draft(Draft);
    outbox: Outbox(OutboxEntry);
    org_number: OrgNumber(OrgNumber);
    team: Team(Team);
    seller: Seller(Seller);
    pending_report: PendingReport(PendingReport);
    template: Template(Value);
}

impl Row {
    /// The table it lives in.
    pub fn table(&self) -> Table {
        match self {
            Self::Position(_) => Table::Meta,
            Self::Record(_) => Table::Records,
            Self::OrgNumber(_) => Table::OrgNumbers,
            Self::Seller(_) => Table::Sellers,
            Self::Team(_) => Table::Teams,
            Self::Template(_) => Table::Templates,
            Self::Conversation(_) => Table::Conversations,
            Self::Message(_) => Table::Messages,
            Self::PendingReport(_) => Table::PendingReports,
            Self::Notification(_) => Table::Notifications,
            Self::Draft(_) => Table::Drafts,
            Self::Outbox(_) => Table::Outbox,
        }
    }

    /// Its primary key (the table's key path).
    pub fn key(&self) -> Key {
        match self {
            Self::Position(p) => Key::str(&*p.key),
            Self::Record(r) => Key::str(&*r.record.id),
            Self::OrgNumber(o) => Key::str(&*o.number),
            Self::Seller(s) => Key::str(&*s.id),
            Self::Team(t) => Key::str(&*t.id),
            Self::Template(v) => match v.lookup(["id"]) {
                Some(Value::String(s)) => Key::str(&**s),
                Some(Value::Number(n)) => Key::Num(*n),
                _ => Key::str(""),
            },
            Self::Conversation(c) => Key::str(&*c.id),
            Self::Message(m) => Key::str(&*m.id),
            Self::PendingReport(r) => Key::str(&*r.message_sid),
            Self::Notification(n) => Key::str(&*n.id),
            Self::Draft(d) => Key::str(&*d.conversation_id),
            Self::Outbox(o) => Key::str(&*o.request.client_ref),
        }
    }

    /// Its keys in `index` (none when the row is not in it: a message without a
    /// provider id is not in `by_provider`).
    pub fn index_keys(&self, index: Index) -> Vec<Key> {
        match (index, self) {
            // Multi-entry: one entry per distinct value, as IndexedDB keeps them.
            (Index::RecordsByPhone, Self::Record(r)) => distinct(&r.phone_keys),
            (Index::ConversationsByPair, Self::Conversation(c)) => {
                vec![Key::pair(&*c.org_number, &*c.customer_number)]
            }
            (Index::RecordsByRelated, Self::Record(r)) => distinct(&r.record.related),
            (Index::ConversationsByRecord, Self::Conversation(c)) => vec![Key::str(&*c.record_id)],
            (Index::ConversationsByLast, Self::Conversation(c)) => vec![Key::Num(c.last_ms)],
            (Index::MessagesByConversation, Self::Message(m)) => {
                vec![Key::pair(&*m.conversation_id, m.at_ms)]
            }
            (Index::MessagesByProvider, Self::Message(m)) => {
                m.provider_id.iter().map(|p| Key::str(&**p)).collect()
            }
            (Index::NotificationsByConversation, Self::Notification(n)) => {
                vec![Key::pair(&*n.conversation_id, f64::from(n.unread))]
            }
            _ => Vec::new(),
        }
    }
}

/// The distinct values of a multi-entry index's array, as keys.
fn distinct(values: &[String]) -> Vec<Key> {
    let mut keys: Vec<Key> = values.iter().map(|v| Key::str(&**v)).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// A read the core asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Read {
    /// The row with this key.
    Get(Table, Key),
    /// Whether a row with this key exists (only its key is read).
    Exists(Table, Key),
    /// Every row whose key in `index` lies in the range, in index order.
    All(Index, KeyRange),
    /// The first row whose key in `index` is this one.
    First(Index, Key),
    /// Every row of a table, in key order.
    Scan(Table),
    /// The last `limit` rows whose key in `index` lies in the range, in index order,
    /// and whether rows before them remain (a history page, read from the newest end).
    Page(Index, KeyRange, u32),
}

impl Read {
    /// The table it reads.
    pub fn table(&self) -> Table {
        match self {
            Self::Get(t, _) | Self::Exists(t, _) => *t,
            Self::All(i, _) | Self::First(i, _) | Self::Page(i, _, _) => i.table(),
            Self::Scan(t) => *t,
        }
    }
}

/// The answer to a [`Read`], in the same position as the read.
#[derive(Clone, Debug)]
pub enum Got {
    /// For `Get` and `First`.
    One(Option<Row>),
    /// For `Exists`.
    Exists(bool),
    /// For `All` and `Scan`.
    Many(Vec<Row>),
    /// For `Page`: the rows, and whether earlier ones remain.
    Page(Vec<Row>, bool),
}

impl Got {
    /// The row of a `Get`/`First`, if any.
    pub fn one(self) -> Option<Row> {
        match self {
            Self::One(r) => r,
            _ => None,
        }
    }

    /// The rows of an `All`, `Scan` or `Page`.
    pub fn many(self) -> Vec<Row> {
        match self {
            Self::Many(rows) | Self::Page(rows, _) => rows,
            _ => Vec::new(),
        }
    }

    /// Whether an `Exists` found its row.
    pub fn exists(&self) -> bool {
        matches!(self, Self::Exists(true))
    }
}

/// A write the core decided.
#[derive(Clone, Debug)]
pub enum Write {
    /// Insert or replace a row.
    Put(Row),
    /// Delete the row with this key.
    Delete(Table, Key),
    /// Delete every row of a table.
    Clear(Table),
}
