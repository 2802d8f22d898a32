//! The browser store's logic, without IO (style.md §6): the schema as data, the stored
//! rows, and for each store operation a plan (what to read) and a decision (what to
//! write, from what was read). The browser's one executor carries plans out against
//! IndexedDB; [`MemoryStore`] carries them out in memory for native tests and the
//! conformance suite, ordering keys exactly as IndexedDB does.

pub mod command;
pub mod inbox;
pub mod ingest;
pub mod key;
pub mod memory;
pub mod ops;
pub mod plan;
pub mod query;
pub mod rows;
pub mod run;
pub mod snapshot;

pub use ingest::{Facts, Ingest, IngestOutcome, Step};
pub use key::{Key, KeyRange};
pub use memory::MemoryStore;
pub use ops::{Got, Index, Read, Row, Table, Write};
pub use plan::{Next, Plan};
pub use run::{Overlay, Run, RunStep};
