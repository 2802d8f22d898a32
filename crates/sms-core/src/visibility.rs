//! Who may see a conversation (V1–V2).
//!
//! A seller sees a conversation when its org number or its record is assigned to
//! them or to one of their teams. Everything that lists conversations filters with
//! [`visibility`]; a direct open that is refused shows [`Hidden`]'s reason.

use serde::Serialize;

use crate::directory::Owner;

/// The signed-in seller and the teams they belong to.
#[derive(Clone, Copy, Debug)]
pub struct Viewer<'a> {
    /// Seller id.
    pub seller: &'a str,
    /// Ids of the seller's teams.
    pub teams: &'a [&'a str],
}

impl Viewer<'_> {
    fn holds(&self, owner: &Owner) -> Option<Holder> {
        match owner {
            Owner::Seller(s) if s == self.seller => Some(Holder::Seller),
            Owner::Team(t) if self.teams.contains(&t.as_str()) => Some(Holder::Team),
            _ => None,
        }
    }
}

#[derive(Clone, Copy)]
enum Holder {
    Seller,
    Team,
}

/// Why a conversation is visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Visible {
    /// The org number is assigned to the seller.
    OrgNumberOwned,
    /// The org number is assigned to one of the seller's teams.
    OrgNumberTeam,
    /// The record is assigned to the seller.
    RecordOwned,
    /// The record is assigned to one of the seller's teams.
    RecordTeam,
}

/// Why a conversation is not visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("this conversation's number and record are assigned to other sellers or teams")]
pub struct Hidden;

/// Whether `viewer` may see a conversation on org number owned by `org_owner`,
/// attached to a record owned by `record_owner` (either may be unknown).
pub fn visibility(
    viewer: Viewer<'_>,
    org_owner: Option<&Owner>,
    record_owner: Option<&Owner>,
) -> Result<Visible, Hidden> {
    if let Some(h) = org_owner.and_then(|o| viewer.holds(o)) {
        return Ok(match h {
            Holder::Seller => Visible::OrgNumberOwned,
            Holder::Team => Visible::OrgNumberTeam,
        });
    }
    match record_owner.and_then(|o| viewer.holds(o)) {
        Some(Holder::Seller) => Ok(Visible::RecordOwned),
        Some(Holder::Team) => Ok(Visible::RecordTeam),
        None => Err(Hidden),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_number_or_record_grants_access() {
        let teams = ["north"];
        let v = Viewer {
            seller: "asha",
            teams: &teams,
        };
        let me = Owner::Seller("asha".into());
        let other = Owner::Seller("ravi".into());
        let north = Owner::Team("north".into());
        let south = Owner::Team("south".into());
        assert_eq!(
            visibility(v, Some(&me), Some(&other)),
            Ok(Visible::OrgNumberOwned)
        );
        assert_eq!(
            visibility(v, Some(&north), None),
            Ok(Visible::OrgNumberTeam)
        );
        assert_eq!(
            visibility(v, Some(&other), Some(&me)),
            Ok(Visible::RecordOwned)
        );
        assert_eq!(
            visibility(v, Some(&south), Some(&north)),
            Ok(Visible::RecordTeam)
        );
        assert_eq!(visibility(v, Some(&south), Some(&other)), Err(Hidden));
        assert_eq!(visibility(v, None, None), Err(Hidden));
    }
}
