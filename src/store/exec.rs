//! The one executor: carries the core's plans out against IndexedDB. It issues every
//! read of a round before awaiting any (one round trip), hands the answers to the
//! core, and issues the writes the core decided — all inside the caller's transaction,
//! awaiting nothing but that transaction's own requests (IndexedDB commits a
//! transaction as soon as it has no pending request when control returns to the
//! event loop). Rows cross the boundary through one codec per row type.

use std::future::Future;
use std::pin::Pin;

use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::Transaction;
use indexed_db_futures::KeyRange as IdbRange;
use sms_core::pane::ConversationKey;
use sms_core::protocol::LoggedEvent;
use sms_core::store::{
    Facts, Got, Ingest, IngestOutcome, Key, KeyRange, Read, Row, Run, RunStep, Step, Table, Write,
};
use wasm_bindgen::JsValue;

use super::StoreResult;

/// A key as IndexedDB takes it.
pub(super) fn key_js(k: &Key) -> JsValue {
    match k {
        Key::Num(n) => JsValue::from_f64(*n),
        Key::Str(s) => JsValue::from_str(s),
        Key::Array(items) => items.iter().map(key_js).collect::<js_sys::Array>().into(),
    }
}

fn range_js(r: &KeyRange) -> IdbRange<JsValue> {
    match (&r.lower, &r.upper) {
        (Some((l, lo)), Some((u, uo))) if !lo && !uo && l == u => IdbRange::Only(key_js(l)),
        (Some((l, lo)), Some((u, uo))) => IdbRange::Bound(key_js(l), *lo, key_js(u), *uo),
        (Some((l, lo)), None) => IdbRange::LowerBound(key_js(l), *lo),
        (None, Some((u, uo))) => IdbRange::UpperBound(key_js(u), *uo),
        // Every key: the widest bounds this schema's keys fall in.
        (None, None) => IdbRange::LowerBound(JsValue::from_f64(f64::NEG_INFINITY), false),
    }
}

/// Reads a stored value of `table` into its row type.
pub(super) fn decode(table: Table, v: JsValue) -> StoreResult<Row> {
    use serde_wasm_bindgen::from_value as de;
    let bad = |_| super::StoreError {
        code: "serialisation",
        message: format!("a stored {} row has an unexpected shape", table.name()),
    };
    Ok(match table {
        Table::Meta => Row::Position(de(v).map_err(bad)?),
        Table::Records => Row::Record(de(v).map_err(bad)?),
        Table::OrgNumbers => Row::OrgNumber(de(v).map_err(bad)?),
        Table::Sellers => Row::Seller(de(v).map_err(bad)?),
        Table::Teams => Row::Team(de(v).map_err(bad)?),
        Table::Templates => Row::Template(de(v).map_err(bad)?),
        Table::Conversations => Row::Conversation(de(v).map_err(bad)?),
        Table::Messages => Row::Message(de(v).map_err(bad)?),
        Table::PendingReports => Row::PendingReport(de(v).map_err(bad)?),
        Table::Notifications => Row::Notification(de(v).map_err(bad)?),
        Table::Drafts => Row::Draft(de(v).map_err(bad)?),
    })
}

/// Writes a row as the stored value (the shapes `.serde()` puts wrote before).
fn encode(row: &Row) -> StoreResult<JsValue> {
    use serde::Serialize;
    let s = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    let v = match row {
        Row::Position(x) => x.serialize(&s),
        Row::Record(x) => x.serialize(&s),
        Row::OrgNumber(x) => x.serialize(&s),
        Row::Seller(x) => x.serialize(&s),
        Row::Team(x) => x.serialize(&s),
        Row::Template(x) => x.serialize(&s),
        Row::Conversation(x) => x.serialize(&s),
        Row::Message(x) => x.serialize(&s),
        Row::PendingReport(x) => x.serialize(&s),
        Row::Notification(x) => x.serialize(&s),
        Row::Draft(x) => x.serialize(&s),
    };
    v.map_err(|_| super::StoreError {
        code: "serialisation",
        message: "a row could not be written".into(),
    })
}

type Pending<'a> = Pin<Box<dyn Future<Output = StoreResult<Got>> + 'a>>;

/// Issues one read now; the returned future collects its answer.
fn issue<'a>(tx: &'a Transaction<'a>, read: &Read) -> StoreResult<Pending<'a>> {
    let table = read.table();
    let store = tx.object_store(table.name())?;
    Ok(match read {
        Read::Get(_, k) => {
            let req = store.get(key_js(k)).primitive()?;
            Box::pin(async move {
                let v: Option<JsValue> = req.await?;
                Ok(Got::One(v.map(|v| decode(table, v)).transpose()?))
            })
        }
        Read::Exists(_, k) => {
            let req = store
                .get_key(key_js(k))
                .with_key_type::<JsValue>()
                .primitive()?;
            Box::pin(async move {
                let k: Option<JsValue> = req.await?;
                Ok(Got::Exists(k.is_some_and(|k| !k.is_undefined())))
            })
        }
        Read::All(index, range) => {
            let req = store
                .index(index.name())?
                .get_all()
                .with_query::<JsValue, _>(range_js(range))
                .primitive()?;
            Box::pin(async move {
                let mut rows = Vec::new();
                for v in req.await? {
                    rows.push(decode(table, v?)?);
                }
                Ok(Got::Many(rows))
            })
        }
        Read::Scan(_) => {
            let req = store.get_all().primitive()?;
            Box::pin(async move {
                let mut rows = Vec::new();
                for v in req.await? {
                    rows.push(decode(table, v?)?);
                }
                Ok(Got::Many(rows))
            })
        }
        Read::First(index, k) => {
            let req = store.index(index.name())?.get(key_js(k)).primitive()?;
            Box::pin(async move {
                let v: Option<JsValue> = req.await?;
                Ok(Got::One(v.map(|v| decode(table, v)).transpose()?))
            })
        }
    })
}

/// Issues every read, then awaits them in order.
pub(super) async fn read_all(tx: &Transaction<'_>, reads: &[Read]) -> StoreResult<Vec<Got>> {
    let pending: Vec<Pending<'_>> = reads
        .iter()
        .map(|r| issue(tx, r))
        .collect::<StoreResult<_>>()?;
    let mut got = Vec::with_capacity(pending.len());
    for p in pending {
        got.push(p.await?);
    }
    Ok(got)
}

/// Issues the writes (their errors surface as the transaction's).
pub(super) fn write_all(tx: &Transaction<'_>, writes: Vec<Write>) -> StoreResult<()> {
    for w in writes {
        match w {
            Write::Put(row) => {
                let v = encode(&row)?;
                tx.object_store(row.table().name())?.put(v).primitive()?;
            }

            Write::Delete(t, k) => {
                tx.object_store(t.name())?.delete(key_js(&k)).build()?;
            }
            Write::Clear(t) => {
                tx.object_store(t.name())?.clear()?;
            }
        }
    }
    Ok(())
}

/// Applies one relay event inside `tx`: the core's plan, read, decide, write.
/// Returns whether anything was written, and the outcome.
pub(super) async fn ingest(
    tx: &Transaction<'_>,
    event: &LoggedEvent,
    prev: Option<i64>,
    facts: &Facts,
    reading: Option<&ConversationKey>,
) -> StoreResult<(bool, IngestOutcome)> {
    let (mut ingest, mut reads) = Ingest::start(event, prev, facts, reading);
    loop {
        let got = read_all(tx, &reads).await?;
        match ingest.step(got) {
            Step::Read(more) => reads = more,
            Step::Done(writes, outcome) => {
                let wrote = !writes.is_empty();
                write_all(tx, writes)?;
                return Ok((wrote, outcome));
            }
        }
    }
}

/// Applies a run of consecutive events inside `tx`: every event's first reads in one
/// round, decisions over the run's own earlier writes, a round more only for an event
/// that needs it (a merge), then every write in order.
pub(super) async fn run(
    tx: &Transaction<'_>,
    events: &[LoggedEvent],
    prev: Option<i64>,
    facts: &Facts,
    reading: Option<&ConversationKey>,
) -> StoreResult<Vec<IngestOutcome>> {
    let (mut run, mut reads) = Run::start(events, prev, facts, reading);
    loop {
        let got = read_all(tx, &reads).await?;
        match run.step(got) {
            RunStep::Read(more) => reads = more,
            RunStep::Done(writes, outcomes) => {
                write_all(tx, writes)?;
                return Ok(outcomes);
            }
        }
    }
}
