//! Checkpoints and pruning (X10): a pruned log restarts from its checkpoint into the
//! same state a full replay gives; a send retried after its events were pruned gets
//! its original answer without a second provider call; a client at a pruned
//! position gets `410 snapshot_required` on `/events` and `/events/page`.

mod common;

use common::{query_strings, Relay, ADMIN};
use serde_json::{json, Value};

const ASHA_ORG: &str = "+14155550100";
const NORTH_ORG: &str = "+14155550101";
const PRIYA: &str = "+919812345678";
const STRANGER: &str = "+919876500001";

fn send_request(client_ref: &str, body: &str) -> Value {
    json!({"from": ASHA_ORG, "to": PRIYA, "body": body, "client_ref": client_ref,
           "record_id": "contact:priya"})
}

async fn send(relay: &Relay, client_ref: &str, body: &str) -> Value {
    let r = relay
        .post_json("/messages", "asha", send_request(client_ref, body))
        .await;
    assert!(r.status().is_success(), "send: {}", r.status());
    r.json().await.unwrap()
}

/// Some of everything the shared state holds: routing history, a lead for an
/// unknown number, a consent change, a move, a send, a directory patch.
async fn activity(relay: &Relay) -> Value {
    for (sid, from, to, body) in [
        ("SMr1", PRIYA, ASHA_ORG, "Hello"),
        ("SMr2", STRANGER, NORTH_ORG, "Who is this?"),
        ("SMr3", PRIYA, NORTH_ORG, "STOP"),
    ] {
        assert_eq!(relay.inbound(sid, from, to, body).await.status(), 200);
    }
    let r = relay
        .post_json(
            "/conversations/move",
            "asha",
            json!({"org_number": ASHA_ORG, "customer_number": PRIYA,
                   "from_record": "contact:priya", "to_record": "opportunity:sharma-q3"}),
        )
        .await;
    assert!(r.status().is_success(), "move: {}", r.status());
    let r = relay
        .patch_directory(
            ADMIN,
            &json!({"upsert": {"records": [{"id": "contact:new", "kind": "contact",
                "owner": {"seller": "asha"}, "name": "New", "phones": ["+919811112222"]}]}}),
        )
        .await;
    assert!(r.status().is_success(), "patch: {}", r.status());
    send(relay, "keep-1", "Sent before the prune").await
}

/// What a seller's device can learn of the shared state.
async fn observe(relay: &Relay, since: &str) -> Value {
    let mut seen = serde_json::Map::new();
    for seller in ["asha", "ravi", "zoe"] {
        let (_, mut d) = relay.get_as("/directory", seller).await;
        d.as_object_mut().unwrap().remove("head");
        seen.insert(format!("directory/{seller}"), d);
        for (from, to) in [
            (PRIYA, ASHA_ORG),
            (PRIYA, NORTH_ORG),
            (STRANGER, NORTH_ORG),
            ("+919811112222", ASHA_ORG),
        ] {
            let path = format!(
                "/route/preview?from={}&to={}",
                from.replace('+', "%2B"),
                to.replace('+', "%2B")
            );
            seen.insert(
                format!("{path}/{seller}"),
                relay.get_as(&path, seller).await.1,
            );
        }
        seen.insert(format!("page/{seller}"), relay.page(seller, since).await);
    }
    Value::Object(seen)
}

#[tokio::test]
async fn a_pruned_log_restarts_from_its_checkpoint_into_the_state_a_full_replay_gives() {
    let relay = Relay::start().await;
    let sent = activity(&relay).await;
    assert_eq!(sent["outcome"], "accepted", "{sent}");
    // The reference: a restart that replays the whole log.
    let relay = relay.restart().await;
    let (epoch, head_id) = relay.head().await;
    let since = format!("{epoch}:{head_id}");
    let full = observe(&relay, &since).await;
    let retry = send(&relay, "keep-1", "Sent before the prune").await;
    assert_eq!(retry["message_sid"], sent["message_sid"]);
    assert_eq!(retry["duplicate"], true);

    let (status, pruned) = relay.prune(head_id).await;
    assert_eq!(status, 200, "{pruned}");
    assert_eq!(pruned["pruned_through"], head_id);
    assert_eq!(
        pruned["checkpoint"], head_id,
        "a checkpoint at the head first"
    );
    assert!(
        query_strings(&relay.db, "SELECT CAST(id AS TEXT) FROM events")
            .await
            .is_empty(),
        "every event went"
    );
    assert_eq!(observe(&relay, &since).await, full, "the running relay");

    // From the checkpoint alone: the same answers.
    let relay = relay.restart().await;
    assert_eq!(relay.head().await, (epoch.clone(), head_id));
    assert_eq!(
        observe(&relay, &since).await,
        full,
        "restarted from the checkpoint"
    );
    let retry = send(&relay, "keep-1", "Sent before the prune").await;
    assert_eq!(
        (
            &retry["message_sid"],
            &retry["outcome"],
            &retry["duplicate"]
        ),
        (&sent["message_sid"], &sent["outcome"], &json!(true))
    );
    assert_eq!(
        relay.phone_messages(PRIYA).await.len(),
        0,
        "no second provider call"
    );

    // Events after the checkpoint replay on top of it.
    assert_eq!(
        relay
            .inbound("SMr4", STRANGER, NORTH_ORG, "Still there?")
            .await
            .status(),
        200
    );
    let before = observe(&relay, &since).await;
    let relay = relay.restart().await;
    assert_eq!(
        observe(&relay, &since).await,
        before,
        "checkpoint + later events"
    );
    let page = relay.page("ravi", &since).await;
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message_sid"] == "SMr4"),
        "{page}"
    );
}

#[tokio::test]
async fn an_outbox_retry_after_pruning_gets_its_original_answer_without_a_second_call() {
    let relay = Relay::start().await;
    let first = send(&relay, "outbox-1", "Queued while offline").await;
    assert_eq!(first["outcome"], "accepted", "{first}");
    assert_eq!(relay.phone_messages(PRIYA).await.len(), 1);
    let (_, head_id) = relay.head().await;
    let (status, _) = relay.prune(head_id).await;
    assert_eq!(status, 200);
    assert!(
        query_strings(&relay.db, "SELECT kind FROM events WHERE kind = 'outbound'")
            .await
            .is_empty(),
        "the outbound event is pruned"
    );
    assert_eq!(
        query_strings(&relay.db, "SELECT client_ref FROM sent").await,
        vec!["outbox-1".to_owned()],
        "the sent table keeps it"
    );
    // The browser's outbox retries: on this node, and after a restart.
    let again = send(&relay, "outbox-1", "Queued while offline").await;
    assert_eq!(again["message_sid"], first["message_sid"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(relay.phone_messages(PRIYA).await.len(), 1, "not sent again");
    let relay = relay.restart().await;
    let again = send(&relay, "outbox-1", "Queued while offline").await;
    assert_eq!(again["message_sid"], first["message_sid"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(
        relay.phone_messages(PRIYA).await.len(),
        0,
        "no provider call after the restart"
    );
    // A repeated webhook of a pruned inbound message is still a duplicate.
    assert_eq!(
        relay.inbound("SMdup", PRIYA, ASHA_ORG, "Hi").await.status(),
        200
    );
    let (_, head_id) = relay.head().await;
    relay.prune(head_id).await;
    let relay = relay.restart().await;
    assert_eq!(
        relay.inbound("SMdup", PRIYA, ASHA_ORG, "Hi").await.status(),
        200
    );
    assert_eq!(
        relay.head().await.1,
        head_id,
        "nothing logged for the repeat"
    );
}

#[tokio::test]
async fn a_position_older_than_the_kept_log_gets_410_snapshot_required() {
    let relay = Relay::start().await;
    for sid in ["SMa", "SMb", "SMc"] {
        relay.inbound(sid, PRIYA, ASHA_ORG, "Hello").await;
    }
    let (epoch, head_id) = relay.head().await;
    let keep_after = head_id - 1;
    // Only the admin prunes.
    let r = relay
        .http
        .post(format!("{}/admin/prune", relay.url))
        .bearer_auth("asha-token")
        .json(&json!({ "keep_after": keep_after }))
        .send()
        .await
        .unwrap();
    assert!(matches!(r.status().as_u16(), 401 | 403), "{}", r.status());
    let (status, pruned) = relay.prune(keep_after).await;
    assert_eq!(status, 200, "{pruned}");
    assert_eq!(pruned["pruned_through"], keep_after);

    for since in [
        format!("{epoch}:0"),
        format!("{epoch}:{}", keep_after - 1),
        "0".into(),
    ] {
        let (status, body) = relay
            .get_as(&format!("/events/page?since={since}"), "asha")
            .await;
        assert_eq!(status, 410, "{since}: {body}");
        assert_eq!(body["code"], "snapshot_required");
        assert!(body["message"].is_string());
        let r = relay
            .http
            .get(format!("{}/events", relay.url))
            .bearer_auth("asha-token")
            .header("Last-Event-ID", since.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 410, "/events from {since}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "snapshot_required");
    }
    // No position at all (a new device) or another epoch's: a snapshot too.
    let (status, _) = relay.get_as("/events/page", "asha").await;
    assert_eq!(status, 410);
    let (status, _) = relay.get_as("/events/page?since=0000:99", "asha").await;
    assert_eq!(status, 410);
    // At the pruned edge or later: the events that follow, none skipped.
    let page = relay.page("asha", &format!("{epoch}:{keep_after}")).await;
    let ids: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![head_id]);
    let r = relay
        .http
        .get(format!("{}/events", relay.url))
        .bearer_auth("asha-token")
        .header("Last-Event-ID", format!("{epoch}:{keep_after}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A prune past the head stops at the head; a bad body is a 400.
    let (status, p) = relay.prune(head_id + 100).await;
    assert_eq!((status, p["pruned_through"].as_i64()), (200, Some(head_id)));
    let r = relay
        .http
        .post(format!("{}/admin/prune", relay.url))
        .bearer_auth(ADMIN)
        .json(&json!({ "keep": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// The checkpoints table's positions, oldest first.
async fn checkpoints(relay: &Relay) -> Vec<i64> {
    let mut p: Vec<i64> =
        query_strings(&relay.db, "SELECT CAST(position AS TEXT) FROM checkpoints")
            .await
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
    p.sort_unstable();
    p
}

#[tokio::test]
async fn upkeep_stores_a_checkpoint_when_events_were_logged_and_keeps_only_the_newest() {
    let relay = Relay::start_demo(|c| c.checkpoint_every_secs = 1).await;
    for (i, sid) in ["SMu1", "SMu2"].into_iter().enumerate() {
        relay.inbound(sid, PRIYA, ASHA_ORG, "Hello").await;
        let (_, head_id) = relay.head().await;
        let mut seen = Vec::new();
        for _ in 0..50 {
            seen = checkpoints(&relay).await;
            if seen == vec![head_id] {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(
            seen,
            vec![head_id],
            "round {i}: one checkpoint, at the head"
        );
    }
}

#[tokio::test]
async fn a_log_written_before_the_sent_table_fills_it_on_upgrade() {
    let relay = Relay::start().await;
    let first = send(&relay, "old-1", "Sent by an older version").await;
    assert_eq!(
        relay.inbound("SMold", PRIYA, ASHA_ORG, "Hi").await.status(),
        200
    );
    // The database as an older version left it: no sent, idempotency or checkpoint tables.
    let port = relay.running.as_ref().unwrap().addr.port();
    let mut relay = relay;
    relay.running.take().unwrap().stop().await;
    common::execute_sql(
        &relay.db,
        "DROP TABLE sent; DROP TABLE dedupe_keys; DROP TABLE checkpoints;
         DELETE FROM meta WHERE key = 'kept_tables';",
        "DROP TABLE sent; DROP TABLE dedupe_keys; DROP TABLE checkpoints;
         DELETE FROM relay_migrations WHERE version = 2;",
    )
    .await;
    let relay = Relay::start_with(relay.dir, relay.db, port).await;
    let (_, head_id) = relay.head().await;
    assert_eq!(relay.prune(head_id).await.0, 200);
    let relay = relay.restart().await;
    let again = send(&relay, "old-1", "Sent by an older version").await;
    assert_eq!(
        (&again["message_sid"], &again["duplicate"]),
        (&first["message_sid"], &json!(true))
    );
    assert_eq!(relay.phone_messages(PRIYA).await.len(), 0, "not sent again");
    assert_eq!(
        relay.inbound("SMold", PRIYA, ASHA_ORG, "Hi").await.status(),
        200
    );
    assert_eq!(
        relay.head().await.1,
        head_id,
        "the old webhook is still a duplicate"
    );
}

#[tokio::test]
async fn retention_days_prunes_to_a_checkpoint_old_enough() {
    // Zero days: every checkpoint is old enough, so upkeep prunes up to the newest.
    let relay = Relay::start_demo(|c| {
        c.checkpoint_every_secs = 1;
        c.retention_days = Some(0);
    })
    .await;
    relay.inbound("SMk1", PRIYA, ASHA_ORG, "Hello").await;
    let (epoch, head_id) = relay.head().await;
    let mut status = 0;
    for _ in 0..50 {
        status = relay.get_as("/events/page?since=0", "asha").await.0;
        if status == 410 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 410, "pruned by retention");
    assert!(query_strings(&relay.db, "SELECT kind FROM events")
        .await
        .is_empty());
    assert_eq!(checkpoints(&relay).await, vec![head_id]);
    let page = relay.page("asha", &format!("{epoch}:{head_id}")).await;
    assert_eq!(page["events"], json!([]), "{page}");
    // A restart starts from the checkpoint.
    let relay = relay.restart().await;
    assert_eq!(relay.head().await, (epoch, head_id));
}

#[tokio::test]
async fn a_reset_after_a_prune_starts_a_log_that_resumes_from_zero() {
    let relay = Relay::start().await;
    relay.inbound("SMz1", PRIYA, ASHA_ORG, "Hello").await;
    let (old_epoch, head_id) = relay.head().await;
    assert_eq!(relay.prune(head_id).await.0, 200);
    let r = relay.reset_log().await;
    assert_eq!(r.status(), 200);
    let (epoch, _) = relay.head().await;
    assert_ne!(epoch, old_epoch);
    let (status, page) = relay
        .get_as(&format!("/events/page?since={epoch}:0"), "asha")
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(checkpoints(&relay).await.is_empty());
    // And a restart of the new epoch replays it from the start.
    let relay = relay.restart().await;
    assert_eq!(relay.head().await.0, epoch);
    assert_eq!(relay.get_as("/events/page?since=0", "asha").await.0, 200);
}
