//! What part of the directory one seller receives (X5): full rows for the records
//! they or their teams own, or that hold a conversation they can see; their teams
//! and their teams' members; the org numbers they send from or see conversations
//! on; and for every other record only `{id, kind, name}`, for lookup and moves.

use std::collections::HashSet;

use crate::access::Access;
use crate::directory::Record;
use crate::protocol::events::{DirectoryChangedEvent, DirectoryReplacedEvent};
use crate::protocol::{Directory, DirectoryDeletes, DirectoryPatch, EventBody};

/// Whether a patch changes sellers, teams or org numbers (not only records).
fn touches_people(p: &DirectoryPatch) -> bool {
    let (u, d) = (&p.upsert, &p.delete);
    !(u.sellers.is_empty()
        && u.teams.is_empty()
        && u.org_numbers.is_empty()
        && d.sellers.is_empty()
        && d.teams.is_empty()
        && d.org_numbers.is_empty())
}

use super::State;

/// One seller's view of the directory, taken from the state at one moment.
#[derive(Clone, Debug)]
pub struct DirectoryLens {
    access: Access,
    /// Records holding a conversation the seller sees through its org number.
    held: HashSet<String>,
    /// Org numbers (match keys) of conversations the seller sees through its record.
    orgs: HashSet<String>,
    /// Region national numbers are read in (directory numbers compare by match key).
    region: Option<String>,
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
        DirectoryLens {
            access,
            held,
            orgs,
            region: self.default_region().map(str::to_owned),
        }
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
                .filter(|o| {
                    self.access.holds(&o.owner)
                        || self
                            .orgs
                            .contains(&crate::phone::match_key(&o.number, self.region.as_deref()))
                })
                .cloned()
                .collect(),
            records: d.records.iter().map(|r| self.record(r)).collect(),
            templates: d.templates.clone(),
            teams,
        }
    }

    /// A directory event as the seller receives it; other events pass unchanged.
    ///
    /// A patch of records only is narrowed (record ids are no secret: everyone gets
    /// every record by name). A patch that changes sellers, teams or org numbers can
    /// change what the seller may see in ways its own rows cannot say (a team left, a
    /// number given to someone else), and its deletions name other sellers' rows: it
    /// reaches the seller as their whole part of the `current` directory instead. The
    /// log's later patches still follow it, so a replay from any point ends where the
    /// directory is now.
    pub fn event(&self, body: &EventBody, current: &Directory) -> EventBody {
        match body {
            EventBody::DirectoryReplaced(e) => {
                EventBody::DirectoryReplaced(DirectoryReplacedEvent {
                    directory: self.directory(&e.directory),
                })
            }
            EventBody::DirectoryChanged(e) if touches_people(&e.patch) => {
                EventBody::DirectoryReplaced(DirectoryReplacedEvent {
                    directory: self.directory(current),
                })
            }
            EventBody::DirectoryChanged(e) => EventBody::DirectoryChanged(DirectoryChangedEvent {
                patch: DirectoryPatch {
                    upsert: Directory {
                        records: e
                            .patch
                            .upsert
                            .records
                            .iter()
                            .map(|r| self.record(r))
                            .collect(),
                        templates: e.patch.upsert.templates.clone(),
                        ..Directory::default()
                    },
                    delete: DirectoryDeletes {
                        records: e.patch.delete.records.clone(),
                        ..DirectoryDeletes::default()
                    },
                },
            }),
            other => other.clone(),
        }
    }
}
