//! The relay's own view of events: who receives them. The shapes themselves are
//! the shared protocol in `sms_core::protocol`.

pub use sms_core::protocol::{
    Directory, DirectoryDeletes, DirectoryPatch, EventBody, LoggedEvent, Seller, SendOutcome,
};

/// Who receives an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Every signed-in seller (directory changes).
    All,
    /// These sellers (V1).
    Sellers(Vec<String>),
}

impl Audience {
    /// Whether `seller` is in the audience.
    pub fn includes(&self, seller: &str) -> bool {
        match self {
            Self::All => true,
            Self::Sellers(list) => list.iter().any(|s| s == seller),
        }
    }
}
