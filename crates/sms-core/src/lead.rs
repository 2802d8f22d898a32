//! The lead created for a number no record carries (R3): the same row on the relay
//! and in every browser, so a lead is never created twice or differently.

use crate::directory::{Owner, Record, RecordKind};
use crate::time::Timestamp;

/// Who owns a lead whose org number has no owner.
pub const UNASSIGNED_TEAM: &str = "unassigned";

/// The lead `id` for `phone` (a match key), owned like the org number it wrote to
/// (`org_owner`; the unassigned team when the number has none), created at `at`.
pub fn for_unknown_number(
    id: &str,
    phone: &str,
    org_owner: Option<Owner>,
    at: Timestamp,
) -> Record {
    Record {
        id: id.to_owned(),
        kind: RecordKind::Lead,
        owner: Some(org_owner.unwrap_or_else(|| Owner::Team(UNASSIGNED_TEAM.into()))),
        active: true,
        updated_at: Some(at),
        phones: vec![phone.to_owned()],
        name: phone.to_owned(),
        related: Vec::new(),
    }
}
