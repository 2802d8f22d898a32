//! The CRM directory as the core sees it: records, owners, teams, org numbers.
//!
//! Plain data with serde shapes that match the JS API and the relay protocol.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Who owns a record or an org number: one seller or one team.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    /// A seller, by id.
    Seller(String),
    /// A team, by id.
    Team(String),
}

/// The kinds of CRM record that carry phone numbers, in routing order (R2 rule 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A person.
    Contact,
    /// A company.
    Account,
    /// A deal, reaching phones through its contact/account.
    Opportunity,
    /// A prospect not yet qualified.
    Lead,
}

impl RecordKind {
    /// The kind's name as used in ids and templates (`contact`, `account`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contact => "contact",
            Self::Account => "account",
            Self::Opportunity => "opportunity",
            Self::Lead => "lead",
        }
    }
}

fn yes() -> bool {
    true
}

/// A CRM record that can hold phone numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unique id across all kinds (e.g. `contact:42`).
    pub id: String,
    /// What kind of record it is.
    pub kind: RecordKind,
    /// The seller or team it is assigned to; absent only in a name-only row, which
    /// a seller receives for a record that is not theirs (for lookup and moves, X5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Active or inactive (R2 rule 5).
    #[serde(default = "yes")]
    pub active: bool,
    /// Last change in the CRM (R2 rule 6); unknown sorts as oldest.
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    /// Phone numbers as stored (business phone, mobile phone, ...).
    #[serde(default)]
    pub phones: Vec<String>,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Ids of records the CRM links this one to (a contact's opportunities, an
    /// opportunity's contact and account), for the related-record picker (C2).
    /// A link may be listed on either side; readers look both ways.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
}

/// An organisation number messages are sent from, and who owns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgNumber {
    /// The number (normalised before comparison).
    pub number: String,
    /// The seller or team it is allotted to.
    pub owner: Owner,
}

/// A team of sellers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    /// Team id.
    pub id: String,
    /// Seller ids of its members.
    #[serde(default)]
    pub members: Vec<String>,
}

/// The ids of the teams `seller` belongs to.
pub fn teams_of<'a>(seller: &str, teams: &'a [Team]) -> Vec<&'a str> {
    teams
        .iter()
        .filter(|t| t.members.iter().any(|m| m == seller))
        .map(|t| t.id.as_str())
        .collect()
}
