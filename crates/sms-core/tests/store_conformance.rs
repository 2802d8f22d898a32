//! The store conformance suite on the memory store: each file under
//! `tests/fixtures/store/` is an event log (applied one transaction per event, or as
//! runs) and what must be stored after it, table by table, plus each event's outcome.
//! The same files run against IndexedDB in the browser (tests/browser_store.rs).
//!
//! Expected rows and outcomes are partial: every field they name must match, in the
//! tables' key order (IndexedDB's), and a table lists every row it holds.

use serde_json::Value;
use sms_core::protocol::LoggedEvent;
use sms_core::store::{MemoryStore, Row, Table};

fn fixtures() -> Vec<(String, Value)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/store");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("fixture folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("fixture");
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, serde_json::from_str(&text).expect("fixture JSON"))
        })
        .collect()
}

/// Whether `actual` has every field of `expected` (arrays: same length, item by item).
fn matches(expected: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                let got = a.get(k).unwrap_or(&Value::Null);
                matches(v, got, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "{at}: {} items expected, {} stored: {actual}",
                    e.len(),
                    a.len()
                ));
            }
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                matches(e, a, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => Ok(()),
        _ if expected == actual => Ok(()),
        _ => Err(format!("{at}: expected {expected}, stored {actual}")),
    }
}

fn row_json(row: &Row) -> Value {
    match row {
        Row::Position(p) => serde_json::to_value(p),
        Row::Record(r) => serde_json::to_value(r),
        Row::OrgNumber(o) => serde_json::to_value(o),
        Row::Seller(s) => serde_json::to_value(s),
        Row::Team(t) => serde_json::to_value(t),
        Row::Template(v) => serde_json::to_value(v),
        Row::Conversation(c) => serde_json::to_value(c),
        Row::Message(m) => serde_json::to_value(m),
        Row::PendingReport(r) => serde_json::to_value(r),
        Row::Notification(n) => serde_json::to_value(n),
        Row::Draft(d) => serde_json::to_value(d),
    }
    .expect("row serialises")
}

fn table(name: &str) -> Table {
    match name {
        "meta" => Table::Meta,
        "records" => Table::Records,
        "org_numbers" => Table::OrgNumbers,
        "conversations" => Table::Conversations,
        "messages" => Table::Messages,
        "pending_reports" => Table::PendingReports,
        "notifications" => Table::Notifications,
        "drafts" => Table::Drafts,
        other => panic!("unknown table {other}"),
    }
}

/// Runs one fixture; `runs` applies its events as runs in one transaction each.
fn run(name: &str, f: &Value, runs: bool) -> Result<(), String> {
    let seller = f["seller"].as_str().unwrap();
    let region = f["region"].as_str();
    let mut store = MemoryStore::new();
    // Rows a fixture starts from (drafts, say), written before any event.
    for (t, rows) in f["given"].as_object().into_iter().flatten() {
        for r in rows.as_array().unwrap() {
            let row = match t.as_str() {
                "drafts" => Row::Draft(serde_json::from_value(r.clone()).unwrap()),
                other => panic!("{name}: cannot seed {other}"),
            };
            store.write(vec![sms_core::store::Write::Put(row)]).unwrap();
        }
    }
    let events: Vec<LoggedEvent> = serde_json::from_value(f["events"].clone()).expect("events");
    let mut outcomes = Vec::new();
    if runs {
        // Runs end at directory events (they change the facts the others use).
        let mut start = 0;
        while start < events.len() {
            let end = events[start..]
                .iter()
                .position(|e| e.body.changes_directory())
                .map_or(events.len(), |p| (start + p).max(start + 1));
            let facts = store.facts(seller, region);
            for o in store.ingest_run(&events[start..end], &facts) {
                outcomes.push(o.map_err(|e| e.to_string()));
            }
            start = end;
        }
    } else {
        for e in &events {
            let facts = store.facts(seller, region);
            outcomes.push(store.ingest(e, &facts).map_err(|e| e.to_string()));
        }
    }
    let outcomes: Vec<Value> = outcomes
        .into_iter()
        .map(|o| match o {
            Ok(o) => serde_json::to_value(o).unwrap(),
            Err(e) => serde_json::json!({ "error": e }),
        })
        .collect();
    let expected_outcomes = match (runs, f.get("run_outcomes")) {
        (true, Some(o)) => o,
        _ => &f["outcomes"],
    };
    matches(expected_outcomes, &Value::Array(outcomes), "outcomes")?;
    let expect = match (runs, f.get("run_expect")) {
        (true, Some(e)) => e,
        _ => &f["expect"],
    };
    for (t, rows) in expect.as_object().expect("expect") {
        let stored: Vec<Value> = store.rows(table(t)).map(row_json).collect();
        matches(rows, &Value::Array(stored), t)?;
    }
    Ok(())
}

#[test]
fn every_fixture_one_transaction_per_event() {
    let all = fixtures();
    assert!(all.len() >= 6, "fixtures missing");
    let failures: Vec<String> = all
        .iter()
        .filter_map(|(name, f)| run(name, f, false).err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fixture_as_runs_in_one_transaction() {
    let failures: Vec<String> = fixtures()
        .iter()
        .filter_map(|(name, f)| run(name, f, true).err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
