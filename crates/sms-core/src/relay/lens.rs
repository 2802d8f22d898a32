//! What part of the directory one seller receives (X5): full rows for the records
//! they or their teams own, or that hold a conversation they can see; their teams
//! and their teams' members; the org numbers they send from or see conversations
//! on; and for every other record only `{id, kind, name}`, for lookup and moves.

use std::collections::HashSet;

use crate::access::Access;
use crate::directory::Record;
use crate::protocol::events::{DirectoryChangedEvent, DirectoryReplacedEvent};
use crate::protocol::{Directory, DirectoryPatch, EventBody};

use super::State;

/// One seller's view of the directory, taken from the state at one moment.
#[derive(Clone, Debug)]
pub struct DirectoryLens {
    access: Access,
    /// Records holding a conversation the seller sees through its org number.
    held: HashSet<String>,
    /// Org numbers of conversations the seller sees through its record.
    orgs: HashSet<String>,
}

impl State {
    /// The lens through which `seller` receives the directory (X5).
    pub fn directory_lens(&self, seller: &str) -> DirectoryLens {
        let access = self.access(seller);
        let mut held = HashSet::new();
        let mut orgs = HashSet::new();
        for ((org, _), records) in self.conversation_index() {
            if access.may_send_from(self.org_owner(org)) {
                held.extend(records.keys().cloned());
            } else if records
                .keys()
                .filter_map(|id| self.record(id)?.owner.as_ref())
                .any(|o| access.holds(o))
            {
                orgs.insert(org.clone());
            }
        }
        DirectoryLens { access, held, orgs }
    }

    /// The directory as `seller` receives it (`GET /directory`).
    pub fn directory_for(&self, seller: &str) -> Directory {
        self.directory_lens(seller).directory(self.directory())
    }

    /// Whether `seller` receives `record_id` in full (a send may name only such a record).
    pub fn receives_in_full(&self, seller: &str, record_id: &str) -> bool {
        let Some(record) = self.record(record_id) else {
            return false;
        };
        let lens = self.directory_lens(seller);
        lens.full(record)
    }
}

impl DirectoryLens {
    /// Whether the seller receives this record in full.
    pub fn full(&self, r: &Record) -> bool {
        r.owner.as_ref().is_some_and(|o| self.access.holds(o)) || self.held.contains(&r.id)
    }

    fn record(&self, r: &Record) -> Record {
        if self.full(r) {
            return r.clone();
        }
        Record {
            id: r.id.clone(),
            kind: r.kind,
            name: r.name.clone(),
            owner: None,
            active: true,
            updated_at: None,
            phones: Vec::new(),
            related: Vec::new(),
        }
    }

    /// `d` as the seller receives it.
    pub fn directory(&self, d: &Directory) -> Directory {
        let teams: Vec<_> = d
            .teams
            .iter()
            .filter(|t| self.access.teams().contains(&t.id))
            .cloned()
            .collect();
        let me = self.access.seller();
        let known = |id: &str| id == me || teams.iter().any(|t| t.members.iter().any(|m| m == id));
        Directory {
            sellers: d.sellers.iter().filter(|s| known(&s.id)).cloned().collect(),
            org_numbers: d
                .org_numbers
                .iter()
                .filter(|o| self.access.holds(&o.owner) || self.orgs.contains(&o.number))
                .cloned()
                .collect(),
            records: d.records.iter().map(|r| self.record(r)).collect(),
            templates: d.templates.clone(),
            teams,
        }
    }

    /// A directory event as the seller receives it; other events pass unchanged.
    pub fn event(&self, body: &EventBody) -> EventBody {
        match body {
            EventBody::DirectoryReplaced(e) => {
                EventBody::DirectoryReplaced(DirectoryReplacedEvent {
                    directory: self.directory(&e.directory),
                })
            }
            EventBody::DirectoryChanged(e) => EventBody::DirectoryChanged(DirectoryChangedEvent {
                patch: DirectoryPatch {
                    upsert: self.directory(&e.patch.upsert),
                    delete: e.patch.delete.clone(),
                },
            }),
            other => other.clone(),
        }
    }
}
