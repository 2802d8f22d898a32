//! The shapes the relay logs and serves: the shared protocol in `sms_core::protocol`,
//! and who receives an event (`sms_core::relay::Audience`).

pub use sms_core::protocol::{
    Directory, DirectoryDeletes, DirectoryPatch, EventBody, EventsPage, LoggedEvent, Seller,
    SendOutcome, StreamNotice,
};

pub use sms_core::relay::Audience;
