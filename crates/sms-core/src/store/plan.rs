//! The one shape every store operation has (style.md §6): the stores its transaction
//! covers, a first round of reads, then — from what was read — one more round or the
//! writes. The operation keeps its own outcome; an executor only carries rounds out.
//! The browser's executor runs any [`Plan`] against IndexedDB through one
//! non-generic function; [`super::MemoryStore::execute`] runs it in memory.

use super::ops::{Got, Read, Table, Write};

/// What a plan asks for next.
#[derive(Debug)]
pub enum Next {
    /// Read these in the same transaction and call [`Plan::step`] again.
    Read(Vec<Read>),
    /// Write these (in order) and commit; nothing to write means drop the transaction.
    Write(Vec<Write>),
}

/// A store operation as the core decides it. No IO, no clock: `now` and every other
/// input come in when the plan is built.
pub trait Plan {
    /// The stores its transaction covers.
    fn tables(&self) -> &'static [Table];
    /// Whether it may write (a readwrite transaction).
    fn writes(&self) -> bool {
        false
    }
    /// The first round of reads.
    fn start(&mut self) -> Vec<Read>;
    /// The answers to the last round, in the order asked.
    fn step(&mut self, got: Vec<Got>) -> Next;
}
