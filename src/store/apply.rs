//! Writes outside the relay-event path that still run inside a caller's transaction:
//! a directory snapshot imported in parts, and the conversation a queued send goes to.

use indexed_db_futures::prelude::*;
use sms_core::directory::Record;
use sms_core::routing::RouteRule;
use sms_core::store::ingest::pick;

use super::keys::v2 as k;
use super::records::StoredConversation;
use super::{pair_key, IdbStore, StoreResult};

/// Writes inside an open transaction (IndexedDB awaits only).
pub(super) struct Apply<'a> {
    pub(super) store: &'a IdbStore,
    pub(super) tx: &'a indexed_db_futures::transaction::Transaction<'a>,
}

impl Apply<'_> {
    /// The conversations between two numbers (on any record).
    async fn by_pair(&self, org: &str, customer: &str) -> StoreResult<Vec<StoredConversation>> {
        Ok(self
            .tx
            .object_store(k::CONVERSATIONS)?
            .index(k::CONVERSATIONS_BY_PAIR)?
            .get_all()
            .with_query(pair_key(org, customer))
            .serde()?
            .await?
            .collect::<Result<_, _>>()?)
    }

    /// Upserts records with their normalised phone keys.
    pub(super) fn put_records(&self, records: &[Record]) -> StoreResult<()> {
        let store = self.tx.object_store(k::RECORDS)?;
        for r in records {
            store.put(self.store.stored(r.clone())).serde()?;
        }
        Ok(())
    }

    /// Upserts a directory's rows (org numbers keyed by their normalised form).
    pub(super) fn put_directory(&self, d: &sms_core::protocol::Directory) -> StoreResult<()> {
        self.put_records(&d.records)?;
        let sellers = self.tx.object_store(k::SELLERS)?;
        for s in &d.sellers {
            sellers.put(s.clone()).serde()?;
        }
        let teams = self.tx.object_store(k::TEAMS)?;
        for t in &d.teams {
            teams.put(t.clone()).serde()?;
        }
        let orgs = self.tx.object_store(k::ORG_NUMBERS)?;
        for o in &d.org_numbers {
            let mut o = o.clone();
            o.number = self.store.key(&o.number);
            orgs.put(o).serde()?;
        }
        let templates = self.tx.object_store(k::TEMPLATES)?;
        for t in d.templates.iter().filter(|t| t.lookup(["id"]).is_some()) {
            templates.put(t.clone()).serde()?;
        }
        Ok(())
    }

    /// The conversation of these numbers on `record_id`, created if absent.
    pub(super) async fn conversation(
        &self,
        org: &str,
        customer: &str,
        record_id: &str,
        rule: Option<RouteRule>,
    ) -> StoreResult<StoredConversation> {
        let all = self.by_pair(org, customer).await?;
        Ok(pick(all, org, customer, record_id, rule))
    }
}
