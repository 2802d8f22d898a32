//! What one seller may do, from the directory (V1, C4): see a conversation, send
//! from an org number, and which number they send from by default.
//!
//! The relay builds an [`Access`] per request from its directory; the browser keeps
//! one for the signed-in seller. Both ask it the same questions, so the answers agree.

use crate::directory::{teams_of, OrgNumber, Owner, Team};
use crate::visibility::{visibility, Viewer};

/// A seller with the teams they belong to and their privilege to receive texts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    seller: String,
    teams: Vec<String>,
    receives: bool,
}

impl Access {
    /// `seller` as the directory's `teams` place them; `receives` is the P3 privilege.
    pub fn new(seller: &str, teams: &[Team], receives: bool) -> Self {
        Self {
            seller: seller.to_owned(),
            teams: teams_of(seller, teams)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            receives,
        }
    }

    /// `seller` in the teams `teams` (ids), with the privilege to receive texts.
    pub fn from_teams(seller: &str, teams: Vec<String>) -> Self {
        Self {
            seller: seller.to_owned(),
            teams,
            receives: true,
        }
    }

    /// The seller's id.
    pub fn seller(&self) -> &str {
        &self.seller
    }

    /// Ids of the seller's teams.
    pub fn teams(&self) -> &[String] {
        &self.teams
    }

    /// Whether the seller may receive inbound messages (P3).
    pub fn receives(&self) -> bool {
        self.receives
    }

    /// Whether `owner` is the seller or one of their teams.
    pub fn holds(&self, owner: &Owner) -> bool {
        match owner {
            Owner::Seller(s) => *s == self.seller,
            Owner::Team(t) => self.teams.contains(t),
        }
    }

    /// Whether the seller sees a conversation on an org number owned by `org_owner`,
    /// attached to a record owned by `record_owner` (V1; either may be unknown).
    pub fn can_see(&self, org_owner: Option<&Owner>, record_owner: Option<&Owner>) -> bool {
        let teams: Vec<&str> = self.teams.iter().map(String::as_str).collect();
        let viewer = Viewer {
            seller: &self.seller,
            teams: &teams,
        };
        visibility(viewer, org_owner, record_owner).is_ok()
    }

    /// Whether the seller may send from an org number owned by `org_owner` (C4).
    pub fn may_send_from(&self, org_owner: Option<&Owner>) -> bool {
        org_owner.is_some_and(|o| self.holds(o))
    }

    /// The numbers the seller may send from, their own before their teams', each
    /// group in the order given; the first is the default (C4).
    pub fn sends_from<'a>(&self, org_numbers: &'a [OrgNumber]) -> Vec<&'a OrgNumber> {
        let own = |o: &&OrgNumber| matches!(&o.owner, Owner::Seller(s) if *s == self.seller);
        let team = |o: &&OrgNumber| matches!(&o.owner, Owner::Team(t) if self.teams.contains(t));
        let mut out: Vec<&OrgNumber> = org_numbers.iter().filter(own).collect();
        out.extend(org_numbers.iter().filter(team));
        out
    }

    /// The number the seller sends from when a conversation has none yet (C4).
    pub fn default_from<'a>(&self, org_numbers: &'a [OrgNumber]) -> Option<&'a str> {
        self.sends_from(org_numbers)
            .first()
            .map(|o| o.number.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(number: &str, owner: Owner) -> OrgNumber {
        OrgNumber {
            number: number.into(),
            owner,
        }
    }

    #[test]
    fn own_numbers_come_before_the_teams() {
        let teams = [Team {
            id: "north".into(),
            members: vec!["asha".into()],
        }];
        let a = Access::new("asha", &teams, true);
        let orgs = [
            org("+3", Owner::Team("north".into())),
            org("+2", Owner::Seller("ravi".into())),
            org("+9", Owner::Seller("asha".into())),
            org("+1", Owner::Team("north".into())),
        ];
        let from: Vec<&str> = a.sends_from(&orgs).iter().map(|o| &*o.number).collect();
        assert_eq!(from, ["+9", "+3", "+1"]);
        assert_eq!(a.default_from(&orgs), Some("+9"));
        assert!(a.may_send_from(Some(&Owner::Team("north".into()))));
        assert!(!a.may_send_from(Some(&Owner::Seller("ravi".into()))));
        assert!(!a.may_send_from(None));
        assert!(a.can_see(Some(&Owner::Seller("ravi".into())), Some(&orgs[3].owner)));
        assert!(!a.can_see(Some(&Owner::Seller("ravi".into())), None));
        assert_eq!(
            Access::new("ravi", &teams, true).default_from(&orgs),
            Some("+2")
        );
    }
}
