//! Moving a conversation to another record (M1–M2): the relay's conversation index
//! and the browser's stored conversations apply a move with the same function.
//!
//! A move re-attaches the conversation when the target record holds none with the
//! same two numbers, and merges it into the target's otherwise: the source's
//! messages, notifications, unread count, move history and latest activity join the
//! target, and an unsent draft follows unless the target has one.

use crate::pane::MoveEntry;
use crate::time::Timestamp;

/// What a move changes of a conversation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Latest activity (message, or a move onto this record).
    pub last: Timestamp,
    /// Unread inbound messages.
    pub unread: u32,
    /// Earlier moves, oldest first (B1).
    pub moves: Vec<MoveEntry>,
    /// Whether it has an unsent draft.
    pub draft: bool,
}

/// The result of a move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Moved {
    /// No conversation of the pair on the target: the source now sits on it.
    Reattached(Held),
    /// The target held one: this is it now, and the source is gone. The source's
    /// messages and notifications go to the target; `carry_draft` says whether the
    /// source's draft becomes the target's.
    Merged {
        /// The target after the merge.
        target: Held,
        /// Whether the source's draft moves to the target (the target had none).
        carry_draft: bool,
    },
}

/// Applies `entry` to the `source` conversation, merging into `target` when the
/// target record already holds a conversation of the same two numbers (M2).
pub fn apply(mut source: Held, target: Option<Held>, entry: MoveEntry) -> Moved {
    let at = entry.at;
    match target {
        None => {
            source.moves.push(entry);
            source.last = source.last.max(at);
            Moved::Reattached(source)
        }
        Some(mut target) => {
            let carry_draft = source.draft && !target.draft;
            target.moves.append(&mut source.moves);
            target.moves.push(entry);
            target.last = target.last.max(source.last).max(at);
            target.unread += source.unread;
            target.draft |= source.draft;
            Moved::Merged {
                target,
                carry_draft,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: i64) -> MoveEntry {
        MoveEntry {
            by: "asha".into(),
            at: Timestamp::from_millis(at),
            from_record: "a".into(),
            to_record: "b".into(),
        }
    }

    #[test]
    fn reattach_keeps_everything_and_notes_the_move() {
        let source = Held {
            last: Timestamp::from_millis(5),
            unread: 2,
            moves: vec![],
            draft: true,
        };
        let Moved::Reattached(h) = apply(source, None, entry(9)) else {
            panic!("expected a re-attach")
        };
        assert_eq!(
            (h.last.as_millis(), h.unread, h.moves.len(), h.draft),
            (9, 2, 1, true)
        );
    }

    #[test]
    fn merge_adds_unread_keeps_the_latest_and_one_draft() {
        let source = Held {
            last: Timestamp::from_millis(20),
            unread: 2,
            moves: vec![entry(1)],
            draft: true,
        };
        let target = Held {
            last: Timestamp::from_millis(10),
            unread: 1,
            moves: vec![entry(3)],
            draft: false,
        };
        let Moved::Merged {
            target: t,
            carry_draft,
        } = apply(source.clone(), Some(target.clone()), entry(15))
        else {
            panic!("expected a merge")
        };
        assert_eq!((t.last.as_millis(), t.unread, carry_draft), (20, 3, true));
        let times: Vec<i64> = t.moves.iter().map(|m| m.at.as_millis()).collect();
        assert_eq!(
            times,
            [3, 1, 15],
            "the target's moves, the source's, then this one"
        );
        let with_draft = Held {
            draft: true,
            ..target
        };
        let Moved::Merged { carry_draft, .. } = apply(source, Some(with_draft), entry(15)) else {
            panic!("expected a merge")
        };
        assert!(!carry_draft, "the target's own draft stays");
    }
}
