//! The reference store: a sorted map per table, indexes computed from the rows, keys
//! ordered exactly as IndexedDB orders them. Native tests and the conformance suite
//! run the core's plans against it; the browser runs the same plans against IndexedDB.

use std::collections::{BTreeMap, HashMap};

use crate::pane::ConversationKey;
use crate::protocol::LoggedEvent;

use super::ingest::{EventPlan, Facts, IngestOutcome};
use super::key::Key;
use super::ops::{Got, Index, Read, Row, Table, Write};
use super::plan::{Next, Plan};
use super::run::RunPlan;

/// A write IndexedDB would refuse: the transaction aborts and nothing of it stays.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("constraint: {0}")]
pub struct Refused(pub String);

/// An in-memory store of schema v2.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    tables: HashMap<Table, BTreeMap<Key, Row>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every row of a table, in key order.
    pub fn rows(&self, table: Table) -> impl Iterator<Item = &Row> {
        self.tables.get(&table).into_iter().flat_map(|t| t.values())
    }

    fn index_entries(&self, index: Index) -> Vec<(Key, Key, &Row)> {
        let mut out: Vec<(Key, Key, &Row)> = self
            .rows(index.table())
            .flat_map(|row| {
                row.index_keys(index)
                    .into_iter()
                    .map(move |k| (k, row.key(), row))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        out
    }

    /// The directory facts for `seller`, read from the stored directory.
    pub fn facts(&self, seller: &str, region: Option<&str>) -> Facts {
        let teams: Vec<_> = self
            .rows(Table::Teams)
            .filter_map(|r| match r {
                Row::Team(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        let me = self.rows(Table::Sellers).find_map(|r| match r {
            Row::Seller(s) if s.id == seller => Some(s.clone()),
            _ => None,
        });
        let orgs = self
            .rows(Table::OrgNumbers)
            .filter_map(|r| match r {
                Row::OrgNumber(o) => Some(o.clone()),
                _ => None,
            })
            .collect();
        Facts::new(seller, &teams, me.as_ref(), orgs, region.map(str::to_owned))
    }

    /// Answers a read.
    pub fn read(&self, read: &Read) -> Got {
        match read {
            Read::Get(t, k) => Got::One(self.tables.get(t).and_then(|m| m.get(k)).cloned()),
            Read::Exists(t, k) => {
                Got::Exists(self.tables.get(t).is_some_and(|m| m.contains_key(k)))
            }
            Read::All(index, range) => Got::Many(
                self.index_entries(*index)
                    .into_iter()
                    .filter(|(k, _, _)| range.contains(k))
                    .map(|(_, _, r)| r.clone())
                    .collect(),
            ),
            Read::Scan(t) => Got::Many(self.rows(*t).cloned().collect()),
            Read::Page(index, range, limit) => {
                let mut rows: Vec<Row> = self
                    .index_entries(*index)
                    .into_iter()
                    .filter(|(k, _, _)| range.contains(k))
                    .map(|(_, _, r)| r.clone())
                    .collect();
                let more = rows.len() > *limit as usize;
                if more {
                    rows.drain(..rows.len() - *limit as usize);
                }
                Got::Page(rows, more)
            }
            Read::First(index, key) => Got::One(
                self.index_entries(*index)
                    .into_iter()
                    .find(|(k, _, _)| k == key)
                    .map(|(_, _, r)| r.clone()),
            ),
        }
    }

    /// Runs any plan as one transaction: its rounds of reads, then its writes (all or,
    /// on a refusal, none). Returns whether anything was written.
    pub fn execute(&mut self, plan: &mut dyn Plan) -> Result<bool, Refused> {
        let mut reads = plan.start();
        loop {
            let got = reads.iter().map(|r| self.read(r)).collect();
            match plan.step(got) {
                Next::Read(more) => reads = more,
                Next::Write(writes) => {
                    let wrote = !writes.is_empty();
                    self.write(writes)?;
                    return Ok(wrote);
                }
            }
        }
    }

    /// Carries out writes as one transaction: all or, on a refusal, none.
    pub fn write(&mut self, writes: Vec<Write>) -> Result<(), Refused> {
        let mut next = self.clone();
        for w in writes {
            match w {
                Write::Put(row) => {
                    next.unique_provider_id(&row)?;
                    next.tables
                        .entry(row.table())
                        .or_default()
                        .insert(row.key(), row);
                }
                Write::Delete(t, k) => {
                    next.tables.entry(t).or_default().remove(&k);
                }
                Write::Clear(t) => {
                    next.tables.remove(&t);
                }
            }
        }
        *self = next;
        Ok(())
    }

    /// `by_provider` is a unique index: another message with the same provider id
    /// makes IndexedDB refuse the put.
    fn unique_provider_id(&self, row: &Row) -> Result<(), Refused> {
        let keys = row.index_keys(Index::MessagesByProvider);
        let clash = self.rows(Table::Messages).any(|other| {
            other.key() != row.key()
                && other
                    .index_keys(Index::MessagesByProvider)
                    .iter()
                    .any(|k| keys.contains(k))
        });
        match clash {
            true => Err(Refused(format!("provider id of {:?} is taken", row.key()))),
            false => Ok(()),
        }
    }

    /// Applies one relay event (its own transaction), as the browser does; `reading`
    /// is the conversation open in the pane.
    pub fn ingest(
        &mut self,
        event: &LoggedEvent,
        facts: &Facts,
        reading: Option<&ConversationKey>,
    ) -> Result<IngestOutcome, Refused> {
        self.ingest_after(event, None, facts, reading)
    }

    fn ingest_after(
        &mut self,
        event: &LoggedEvent,
        prev: Option<i64>,
        facts: &Facts,
        reading: Option<&ConversationKey>,
    ) -> Result<IngestOutcome, Refused> {
        let mut plan = EventPlan::new(event, prev, facts, reading);
        self.execute(&mut plan)?;
        Ok(plan.outcome)
    }

    /// Applies a run of consecutive events in one transaction (D1 amended) as the
    /// browser does: every first read answered from the store before the run, each
    /// event decided over the run's earlier writes ([`super::run::Run`]). If the
    /// transaction is refused, nothing of it stays and the events are applied one
    /// transaction each, so the failing one is found and nothing after it is applied
    /// (the rest come back as gaps).
    pub fn ingest_run(
        &mut self,
        events: &[LoggedEvent],
        facts: &Facts,
        reading: Option<&ConversationKey>,
    ) -> Vec<Result<IngestOutcome, Refused>> {
        let mut plan = RunPlan::new(events, None, facts, reading);
        if self.execute(&mut plan).is_err() {
            return self.one_by_one(events, facts, reading);
        }
        let mut out: Vec<_> = plan.outcomes.into_iter().map(Ok).collect();
        for e in &events[out.len()..] {
            out.push(Ok(IngestOutcome::gap(e)));
        }
        out
    }

    fn one_by_one(
        &mut self,
        events: &[LoggedEvent],
        facts: &Facts,
        reading: Option<&ConversationKey>,
    ) -> Vec<Result<IngestOutcome, Refused>> {
        let mut out = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let prev = i.checked_sub(1).map(|p| events[p].id);
            let r = self.ingest_after(event, prev, facts, reading);
            let failed = r.is_err();
            out.push(r);
            if failed {
                break;
            }
        }
        for e in &events[out.len()..] {
            out.push(Ok(IngestOutcome::gap(e)));
        }
        out
    }
}
