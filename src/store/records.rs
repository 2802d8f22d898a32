//! What is stored in IndexedDB: the core's row types (`sms_core::store::rows`), the
//! storage shapes kept apart from the domain types.

pub use sms_core::store::rows::*;
