//! The store conformance suite on the memory store: each file under
//! `tests/fixtures/store/` is an event log (applied one transaction per event, or as
//! runs) and what must be stored after it, table by table, plus each event's outcome.
//! The same files run against IndexedDB in the browser (tests/browser_store.rs).

#[path = "../../../tests/fixtures/store/check.rs"]
mod check;

use check::{expected, matches, row_json, table, FIXTURES};
use serde_json::Value;
use sms_core::protocol::LoggedEvent;
use sms_core::store::{MemoryStore, Write};

/// Runs one fixture; `runs` applies its events as runs in one transaction each.
fn run(f: &Value, runs: bool) -> Result<(), String> {
    let seller = f["seller"].as_str().unwrap();
    let region = f["region"].as_str();
    let mut store = MemoryStore::new();
    let given = check::given(f).into_iter().map(Write::Put).collect();
    store.write(given).unwrap();
    let events: Vec<LoggedEvent> = serde_json::from_value(f["events"].clone()).expect("events");
    let reading = check::reading(f);
    let mut outcomes = Vec::new();
    if runs {
        for range in check::runs(&events) {
            let facts = store.facts(seller, region);
            for o in store.ingest_run(&events[range], &facts, reading.as_ref()) {
                outcomes.push(o.map_err(|e| e.to_string()));
            }
        }
    } else {
        for e in &events {
            let facts = store.facts(seller, region);
            outcomes.push(
                store
                    .ingest(e, &facts, reading.as_ref())
                    .map_err(|e| e.to_string()),
            );
        }
    }
    let outcomes: Vec<Value> = outcomes
        .into_iter()
        .map(|o| match o {
            Ok(o) => serde_json::to_value(o).unwrap(),
            Err(e) => serde_json::json!({ "error": e }),
        })
        .collect();
    let (want_outcomes, want_tables) = expected(f, runs);
    matches(want_outcomes, &Value::Array(outcomes), "outcomes")?;
    for (t, rows) in want_tables.as_object().expect("expect") {
        let stored: Vec<Value> = store.rows(table(t)).map(row_json).collect();
        matches(rows, &Value::Array(stored), t)?;
    }
    Ok(())
}

fn all(runs: bool) {
    let failures: Vec<String> = FIXTURES
        .iter()
        .filter_map(|(name, text)| {
            let f: Value = serde_json::from_str(text).expect("fixture JSON");
            run(&f, runs).err().map(|e| format!("{name}: {e}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fixture_one_transaction_per_event() {
    all(false);
}

#[test]
fn every_fixture_as_runs_in_one_transaction() {
    all(true);
}

#[test]
fn the_fixture_list_is_the_folder() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/store");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("fixture folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    let listed: Vec<&str> = FIXTURES.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        files, listed,
        "add new fixture files to check.rs's FIXTURES"
    );
}
