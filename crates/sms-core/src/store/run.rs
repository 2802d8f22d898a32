//! A run of consecutive relay events applied in one transaction with as few round
//! trips as the events allow (D1 amended): the first reads of every event go out
//! together, answered from the store as it was before the run; each event is then
//! decided in order over an [`Overlay`] of the run's own earlier writes (so a pair
//! seen twice, or a move and then a message for it, decide as if applied one by one);
//! an event that needs more (a merge) asks for one more round, also overlaid. The
//! writes go out at the end, in order, and commit together.

use super::ingest::{Facts, Ingest, IngestOutcome, Step};
use super::key::{Key, KeyRange};
use super::ops::{Got, Index, Read, Row, Table, Write};
use super::plan::{Next, Plan};
use crate::protocol::LoggedEvent;

/// Events that commit together at most.
pub const MAX_RUN: usize = 200;

/// Where the run that starts at `start` ends (exclusive): a directory event goes alone
/// (it changes the facts the others are decided with); otherwise the run goes up to the
/// next directory event, at most [`MAX_RUN`] events.
pub fn run_end(events: &[LoggedEvent], start: usize) -> usize {
    if events[start].body.changes_directory() {
        return start + 1;
    }
    events[start..]
        .iter()
        .take(MAX_RUN)
        .position(|e| e.body.changes_directory())
        .map_or((start + MAX_RUN).min(events.len()), |p| start + p)
}

/// The writes of a run so far, answering reads as the store would after them.
///
/// Kept as one vector sorted by table and key, searched by bisection: it answers as a
/// map would, without bringing another map's code into the module.
#[derive(Debug, Default)]
pub struct Overlay {
    /// In order: what goes to the store at the end.
    writes: Vec<Write>,
    /// The latest state of each key the run wrote (`None`: deleted), by table and key.
    rows: Vec<(Table, Key, Option<Row>)>,
    /// Tables the run cleared (no row from before the run shows).
    cleared: Vec<Table>,
    /// The index entries of the rows the run holds now, sorted by index, index key and
    /// primary key: an index read finds the run's rows by bisection, not by a scan that
    /// recomputes every row's keys (which made a run's cost grow with its square).
    entries: Vec<(Index, Key, Key)>,
}

impl Overlay {
    fn find(&self, table: Table, key: &Key) -> Result<usize, usize> {
        self.rows
            .binary_search_by(|(t, k, _)| t.cmp(&table).then_with(|| k.cmp(key)))
    }

    fn set(&mut self, table: Table, key: Key, row: Option<Row>) {
        if let Ok(i) = self.find(table, &key) {
            if let Some(old) = self.rows[i].2.take() {
                self.index(&old, &key, false);
            }
        }
        if let Some(new) = &row {
            self.index(new, &key, true);
        }
        match self.find(table, &key) {
            Ok(i) => self.rows[i].2 = row,
            Err(i) => self.rows.insert(i, (table, key, row)),
        }
    }

    /// Adds (or removes) `row`'s index entries.
    fn index(&mut self, row: &Row, pk: &Key, add: bool) {
        let table = row.table();
        for index in Index::ALL.into_iter().filter(|i| i.table() == table) {
            for k in row.index_keys(index) {
                let entry = (index, k, pk.clone());
                match (self.entries.binary_search(&entry), add) {
                    (Err(at), true) => self.entries.insert(at, entry),
                    (Ok(at), false) => drop(self.entries.remove(at)),
                    _ => {}
                }
            }
        }
    }

    /// The run's rows whose key in `index` lies in `range`, in index order.
    fn in_index<'a>(
        &'a self,
        index: Index,
        range: &'a KeyRange,
    ) -> impl Iterator<Item = (&'a Key, &'a Row)> + 'a {
        let start = self
            .entries
            .partition_point(|(i, k, _)| match &range.lower {
                Some((lower, _)) => (*i, k) < (index, lower),
                None => *i < index,
            });
        self.entries[start..]
            .iter()
            .take_while(move |(i, _, _)| *i == index)
            .filter(move |(_, k, _)| range.contains(k))
            .filter_map(move |(_, k, pk)| Some((k, self.state(index.table(), pk)??)))
    }

    /// Adds writes, in order.
    pub fn extend(&mut self, writes: Vec<Write>) {
        for w in &writes {
            match w {
                Write::Put(r) => self.set(r.table(), r.key(), Some(r.clone())),
                Write::Delete(t, k) => self.set(*t, k.clone(), None),
                Write::Clear(t) => {
                    self.rows.retain(|(table, _, _)| table != t);
                    self.entries.retain(|(index, _, _)| index.table() != *t);
                    self.cleared.push(*t);
                }
            }
        }
        self.writes.extend(writes);
    }

    /// What the run wrote at a key: `Some(None)` deleted, `None` untouched.
    fn state(&self, table: Table, key: &Key) -> Option<Option<&Row>> {
        self.find(table, key).ok().map(|i| self.rows[i].2.as_ref())
    }

    fn cleared(&self, table: Table) -> bool {
        self.cleared.contains(&table)
    }

    /// The rows of `table` the run holds now (put and not deleted since).
    fn current(&self, table: Table) -> impl Iterator<Item = &Row> {
        let start = self.rows.partition_point(|(t, _, _)| *t < table);
        self.rows[start..]
            .iter()
            .take_while(move |(t, _, _)| *t == table)
            .filter_map(|(_, _, r)| r.as_ref())
    }

    /// `got`, the answer of the store before the run, as it reads after the overlay.
    pub fn apply(&self, read: &Read, got: Got) -> Got {
        if self.writes.is_empty() {
            return got;
        }
        match (read, got) {
            // No event reads a page: runs never ask for one.
            (Read::Page(..), got) => got,
            (Read::Get(t, k), got) => match self.state(*t, k) {
                Some(row) => Got::One(row.cloned()),
                None if self.cleared(*t) => Got::One(None),
                None => got,
            },
            (Read::Exists(t, k), got) => match self.state(*t, k) {
                Some(row) => Got::Exists(row.is_some()),
                None if self.cleared(*t) => Got::Exists(false),
                None => got,
            },
            (Read::All(index, range), got) => {
                let table = index.table();
                // In index order (index key, then primary key), as IndexedDB answers;
                // kept sorted by insertion (small: one pair's or one conversation's rows).
                let mut rows: Vec<(Key, Key, Row)> = Vec::new();
                let mut add = |k: Key, row: &Row| {
                    let pk = row.key();
                    let at = rows.partition_point(|(ik, p, _)| (ik, p) < (&k, &pk));
                    rows.insert(at, (k, pk, row.clone()));
                };
                if !self.cleared(table) {
                    let mut seen: Vec<Key> = Vec::new();
                    for row in got.many() {
                        let key = row.key();
                        // A row the run rewrote or deleted is answered from the overlay;
                        // a multi-entry row comes once per matching key: take it once.
                        if self.state(table, &key).is_some() || seen.contains(&key) {
                            continue;
                        }
                        seen.push(key);
                        for k in row.index_keys(*index) {
                            if range.contains(&k) {
                                add(k, &row);
                            }
                        }
                    }
                }
                for (k, row) in self.in_index(*index, range) {
                    add(k.clone(), row);
                }
                Got::Many(rows.into_iter().map(|(_, _, r)| r).collect())
            }
            (Read::Scan(t), got) => {
                let mut rows: Vec<Row> = Vec::new();
                let mut add = |row: &Row| {
                    let k = row.key();
                    let at = rows.partition_point(|r| r.key() < k);
                    rows.insert(at, row.clone());
                };
                if !self.cleared(*t) {
                    for row in got.many() {
                        if self.state(*t, &row.key()).is_none() {
                            add(&row);
                        }
                    }
                }
                for row in self.current(*t) {
                    add(row);
                }
                Got::Many(rows)
            }
            (Read::First(index, key), got) => {
                let all = Read::All(*index, super::key::KeyRange::only(key.clone()));
                let base = Got::Many(got.one().into_iter().collect());
                Got::One(self.apply(&all, base).many().into_iter().next())
            }
        }
    }
}

/// What to do next with a run.
#[derive(Debug)]
pub enum RunStep {
    /// Read these (answered as the store was before the run) and call [`Run::step`].
    Read(Vec<Read>),
    /// Write these in order and commit; an outcome per event attempted (the run stops
    /// after an event that asks for a resync or finds a gap).
    Done(Vec<Write>, Vec<IngestOutcome>),
}

/// A run being applied.
#[derive(Debug)]
pub struct Run<'a> {
    ingests: Vec<Ingest<'a>>,
    /// Each event's first reads and their answers.
    first: Vec<(Vec<Read>, Option<Vec<Got>>)>,
    /// The event being decided and the reads it last asked for.
    at: usize,
    more: Vec<Read>,
    overlay: Overlay,
    outcomes: Vec<IngestOutcome>,
}

impl<'a> Run<'a> {
    /// Starts a run; the first event must follow `prev` (the stored position), each
    /// later one the event before it; `reading` is the conversation open in the pane.
    /// Returns every event's first reads.
    pub fn start(
        events: &'a [LoggedEvent],
        prev: Option<i64>,
        facts: &'a Facts,
        reading: Option<&'a crate::pane::ConversationKey>,
    ) -> (Self, Vec<Read>) {
        let mut ingests = Vec::with_capacity(events.len());
        let mut first = Vec::with_capacity(events.len());
        let mut all = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let before = if i == 0 { prev } else { Some(events[i - 1].id) };
            let (ingest, reads) = Ingest::start(e, before, facts, reading);
            all.extend(reads.iter().cloned());
            ingests.push(ingest);
            first.push((reads, None));
        }
        let run = Self {
            ingests,
            first,
            at: 0,
            more: Vec::new(),
            overlay: Overlay::default(),
            outcomes: Vec::new(),
        };
        (run, all)
    }

    /// Takes the answers to the last reads (all first reads, then one event's more).
    pub fn step(&mut self, got: Vec<Got>) -> RunStep {
        let mut got = got.into_iter();
        let mut answers: Option<Vec<Got>> = None;
        if self.more.is_empty() {
            // The first round: hand each event its slice.
            for (reads, slot) in &mut self.first {
                if slot.is_none() {
                    *slot = Some(got.by_ref().take(reads.len()).collect());
                }
            }
        } else {
            let more = std::mem::take(&mut self.more);
            answers = Some(
                more.iter()
                    .zip(got)
                    .map(|(r, g)| self.overlay.apply(r, g))
                    .collect(),
            );
        }
        while self.at < self.ingests.len() {
            let got = match answers.take() {
                Some(a) => a,
                None => {
                    let (reads, slot) = &mut self.first[self.at];
                    let base = slot.take().unwrap_or_default();
                    reads
                        .iter()
                        .zip(base)
                        .map(|(r, g)| self.overlay.apply(r, g))
                        .collect()
                }
            };
            match self.ingests[self.at].step(got) {
                Step::Read(reads) => {
                    self.more = reads.clone();
                    return RunStep::Read(reads);
                }
                Step::Done(writes, outcome) => {
                    let stop = outcome.gap || outcome.resync;
                    self.overlay.extend(writes);
                    self.outcomes.push(outcome);
                    self.at += 1;
                    if stop {
                        break;
                    }
                }
            }
        }
        RunStep::Done(
            last_position_only(std::mem::take(&mut self.overlay.writes)),
            std::mem::take(&mut self.outcomes),
        )
    }
}

/// Each event of a run moves the stored position; only the last move needs writing (the
/// position has no index, so nothing in between can depend on it): one put per run,
/// not one per event.
fn last_position_only(mut writes: Vec<Write>) -> Vec<Write> {
    let is_position = |w: &Write| matches!(w, Write::Put(Row::Position(_)));
    if let Some(last) = writes.iter().rposition(is_position) {
        let mut at = 0;
        writes.retain(|w| {
            at += 1;
            at - 1 == last || !is_position(w)
        });
    }
    writes
}

/// A run of events as a [`Plan`]: one transaction over every store an event may touch.
#[derive(Debug)]
pub struct RunPlan<'a> {
    run: Run<'a>,
    first: Vec<Read>,
    /// An outcome per event attempted, once run (it stops after a gap or a resync).
    pub outcomes: Vec<IngestOutcome>,
}

impl<'a> RunPlan<'a> {
    /// Applies `events` (see [`Run::start`]).
    pub fn new(
        events: &'a [LoggedEvent],
        prev: Option<i64>,
        facts: &'a Facts,
        reading: Option<&'a crate::pane::ConversationKey>,
    ) -> Self {
        let (run, first) = Run::start(events, prev, facts, reading);
        Self {
            run,
            first,
            outcomes: Vec::new(),
        }
    }
}

impl Plan for RunPlan<'_> {
    fn tables(&self) -> &'static [Table] {
        super::ingest::tables_all()
    }
    fn writes(&self) -> bool {
        true
    }
    fn start(&mut self) -> Vec<Read> {
        std::mem::take(&mut self.first)
    }
    fn step(&mut self, got: Vec<Got>) -> Next {
        match self.run.step(got) {
            RunStep::Read(reads) => Next::Read(reads),
            RunStep::Done(writes, outcomes) => {
                self.outcomes = outcomes;
                Next::Write(writes)
            }
        }
    }
}
