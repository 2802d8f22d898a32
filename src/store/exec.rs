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
use sms_core::store::{Got, Key, KeyRange, Next, Plan, Read, Row, Table, Write};
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
        Table::Outbox => Row::Outbox(de(v).map_err(bad)?),
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
        Row::Outbox(x) => x.serialize(&s),
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
        Read::Page(index, range, limit) => {
            let (index, range, limit) = (index.name(), range_js(range), *limit);
            let store = tx.object_store(table.name())?;
            Box::pin(async move { page(&store, table, index, range, limit).await })
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

/// Carries `plan` out inside `tx`: each round's reads issued at once and awaited,
/// the core's next step, then its writes. Returns whether anything was written (the
/// caller commits then; otherwise the transaction may be dropped).
pub(super) async fn run_in(tx: &Transaction<'_>, plan: &mut dyn Plan) -> StoreResult<bool> {
    let mut reads = plan.start();
    loop {
        let got = read_all(tx, &reads).await?;
        match plan.step(got) {
            Next::Read(more) => reads = more,
            Next::Write(writes) => {
                let wrote = !writes.is_empty();
                write_all(tx, writes)?;
                return Ok(wrote);
            }
        }
    }
}

/// The last `limit` rows of `range` in `index`, oldest first, and whether earlier ones
/// remain: a reverse key cursor jumps `limit` back from the newest (no count, which
/// walks the whole range), then one `getAll` from there — three requests whatever
/// the page size or the range's length.
async fn page(
    store: &indexed_db_futures::object_store::ObjectStore<'_>,
    table: Table,
    index: &str,
    range: IdbRange<JsValue>,
    limit: u32,
) -> StoreResult<Got> {
    use indexed_db_futures::cursor::CursorDirection;
    use indexed_db_futures::internals::SystemRepr;
    let index = store.index(index)?;
    let cursor = index
        .open_key_cursor()
        .with_query::<JsValue, _>(range.clone())
        .with_direction(CursorDirection::Prev)
        .primitive()?
        .await?;
    let mut from = range;
    let mut more = false;
    if let Some(mut cursor) = cursor {
        let newest: Option<JsValue> = cursor.primary_key()?;
        cursor.advance_by(limit).await?;
        // A cursor run past the end keeps its last position: it moved only if its
        // primary key (unique, unlike the index key) changed.
        if cursor.primary_key::<JsValue>()? != newest {
            let edge = cursor.as_sys().key().ok().filter(|k| !k.is_undefined());
            if let Some(edge) = edge {
                // From the edge, inclusive, then trimmed below: rows sharing the
                // edge's key are not lost.
                more = true;
                from = match from {
                    IdbRange::Bound(_, _, upper, open) | IdbRange::UpperBound(upper, open) => {
                        IdbRange::Bound(edge, false, upper, open)
                    }
                    // One key: the page is already that key's rows.
                    IdbRange::Only(k) => IdbRange::Only(k),
                    IdbRange::LowerBound(..) => IdbRange::LowerBound(edge, false),
                };
            }
        }
    }
    let mut rows = Vec::new();
    for v in index
        .get_all()
        .with_query::<JsValue, _>(from)
        .primitive()?
        .await?
    {
        rows.push(decode(table, v?)?);
    }
    if rows.len() > limit as usize {
        rows.drain(..rows.len() - limit as usize);
    }
    Ok(Got::Page(rows, more))
}
