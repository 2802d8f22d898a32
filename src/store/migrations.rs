//! One small upgrade function per schema step.

use indexed_db_futures::database::Database;
use indexed_db_futures::prelude::*;
use indexed_db_futures::KeyPath;

use super::keys::{v1 as k, v2};

/// Version 1: every store and index.
pub(super) fn v1(db: &Database) -> indexed_db_futures::Result<()> {
    db.create_object_store(k::META)
        .with_key_path("key".into())
        .build()?;
    let records = db
        .create_object_store(k::RECORDS)
        .with_key_path("record.id".into())
        .build()?;
    records
        .create_index(k::RECORDS_BY_PHONE, "phone_keys".into())
        .with_multi_entry(true)
        .build()?;
    db.create_object_store(k::ORG_NUMBERS)
        .with_key_path("number".into())
        .build()?;
    db.create_object_store(k::SELLERS)
        .with_key_path("id".into())
        .build()?;
    db.create_object_store(k::TEAMS)
        .with_key_path("id".into())
        .build()?;
    let convs = db
        .create_object_store(k::CONVERSATIONS)
        .with_key_path("id".into())
        .build()?;
    convs
        .create_index(
            k::CONVERSATIONS_BY_PAIR,
            KeyPath::from(["org_number", "customer_number"]),
        )
        .build()?;
    convs
        .create_index(k::CONVERSATIONS_BY_RECORD, "record_id".into())
        .build()?;
    convs
        .create_index(k::CONVERSATIONS_BY_LAST, "last_ms".into())
        .build()?;
    let messages = db
        .create_object_store(k::MESSAGES)
        .with_key_path("id".into())
        .build()?;
    messages
        .create_index(
            k::MESSAGES_BY_CONVERSATION,
            KeyPath::from(["conversation_id", "at_ms"]),
        )
        .build()?;
    messages
        .create_index(k::MESSAGES_BY_PROVIDER, "provider_id".into())
        .with_unique(true)
        .build()?;
    db.create_object_store(k::PENDING_REPORTS)
        .with_key_path("message_sid".into())
        .build()?;
    let notes = db
        .create_object_store(k::NOTIFICATIONS)
        .with_key_path("id".into())
        .build()?;
    notes
        .create_index(k::NOTIFICATIONS_UNREAD, "unread".into())
        .build()?;
    db.create_object_store(k::TEMPLATES)
        .with_key_path("id".into())
        .build()?;
    db.create_object_store(k::OUTBOX)
        .with_key_path("client_ref".into())
        .build()?;
    db.create_object_store(k::DRAFTS)
        .with_key_path("conversation_id".into())
        .build()?;
    Ok(())
}

/// Version 2: the records' relation index (C2), notifications by conversation,
/// and the settings store. Existing
/// rows stay; the index fills from the records already stored.
pub(super) fn v2(db: &Database) -> indexed_db_futures::Result<()> {
    let settings = db
        .create_object_store(v2::SETTINGS)
        .with_key_path("key".into())
        .build()?;
    // The upgrade transaction, reached through the store just created.
    let upgrade = settings.transaction();
    upgrade
        .object_store(v2::RECORDS)?
        .create_index(v2::RECORDS_BY_RELATED, "record.related".into())
        .with_multi_entry(true)
        .build()?;
    upgrade
        .object_store(v2::NOTIFICATIONS)?
        .create_index(
            v2::NOTIFICATIONS_BY_CONVERSATION,
            KeyPath::from(["conversation_id", "unread"]),
        )
        .build()?;
    Ok(())
}
