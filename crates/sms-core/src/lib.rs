//! The pure core of the SMS conversation module.
//!
//! Everything here is deterministic: no IO, no clock, no randomness, no web
//! dependencies. Time and ids come in as arguments; decisions and effects go out as
//! values. The same code runs in the browser (compiled to WebAssembly by the root
//! crate) and natively in the relay, so both reach the same routing decisions.

#![deny(missing_docs)]
#![warn(unreachable_pub, clippy::use_self)]

pub mod phone;
pub mod time;

pub use phone::{normalize, Party, PhoneError, E164};
pub use time::Timestamp;
pub mod access;
pub mod autoreply;
pub mod consent;
pub mod delivery;
pub mod directory;
pub mod failure;
pub mod lead;
pub mod moves;
pub mod pane;
pub mod protocol;
pub mod relay;
pub mod routing;
pub mod segments;
pub mod send;
pub mod store;
pub mod sync;
pub mod template;
pub mod value;
pub mod visibility;
