//! What the relay keeps of its log (X10): checkpoints of the shared state, pruning,
//! and who must start from a snapshot. Positions are event ids; no clock, no IO.

use crate::time::Timestamp;

/// What `POST /admin/prune {"keep_after": n}` does, given the log's head and the
/// newest checkpoint's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrunePlan {
    /// Events at or before this id go (never past the head: ids after it are not
    /// allocated yet, and a client there must not be told its position is gone).
    pub through: i64,
    /// Whether a checkpoint at the head is stored first (none at or after `through`).
    pub checkpoint_first: bool,
}

/// Plans a prune of the events at or before `keep_after`.
pub fn prune_plan(keep_after: i64, head: i64, newest_checkpoint: Option<i64>) -> PrunePlan {
    let through = keep_after.min(head).max(0);
    PrunePlan {
        through,
        checkpoint_first: newest_checkpoint.is_none_or(|c| c < through),
    }
}

/// Whether a client whose last applied event is `after` can resume from the log:
/// every event after it is still kept (`pruned_through`: the last event deleted, 0
/// when none). If not, it must start from a snapshot (`410 snapshot_required`).
pub fn can_resume(after: i64, pruned_through: i64) -> bool {
    after >= pruned_through
}

/// Whether a periodic checkpoint is due: events were logged after the newest one.
pub fn checkpoint_due(head: i64, newest_checkpoint: Option<i64>) -> bool {
    head > 0 && newest_checkpoint.is_none_or(|c| c < head)
}

/// How far `retention_days` prunes: to the newest checkpoint stored at or before
/// `now - days` (every event up to it is at least that old). `checkpoints`:
/// `(position, stored at)`. `None`: nothing is old enough.
pub fn retention_target(
    checkpoints: &[(i64, Timestamp)],
    now: Timestamp,
    days: u32,
) -> Option<i64> {
    let cutoff = cutoff(now, days);
    checkpoints
        .iter()
        .filter(|(_, at)| *at <= cutoff)
        .map(|(position, _)| *position)
        .max()
}

/// The instant `days` before `now` (what is older goes).
pub fn cutoff(now: Timestamp, days: u32) -> Timestamp {
    Timestamp::from_millis(now.as_millis() - i64::from(days) * 86_400_000)
}

/// The checkpoints periodic upkeep drops (positions): all but the newest, and with
/// a retention of `days`, the newest of each day of age too (retention prunes to one
/// of those), so the table stays at about `days + 1` rows. `checkpoints`:
/// `(position, stored at)`, any order.
pub fn checkpoints_to_drop(
    checkpoints: &[(i64, Timestamp)],
    now: Timestamp,
    days: Option<u32>,
) -> Vec<i64> {
    const DAY_MS: i64 = 86_400_000;
    let newest = checkpoints.iter().map(|(p, _)| *p).max();
    let mut kept_days = std::collections::HashMap::new();
    if days.is_some() {
        for (p, at) in checkpoints {
            let age = (now.as_millis() - at.as_millis()).max(0) / DAY_MS;
            let slot = kept_days.entry(age).or_insert(*p);
            *slot = (*slot).max(*p);
        }
    }
    let mut drop: Vec<i64> = checkpoints
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| Some(*p) != newest && !kept_days.values().any(|k| k == p))
        .collect();
    drop.sort_unstable();
    drop
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prune_never_passes_the_head_and_checkpoints_when_none_covers_it() {
        assert_eq!(
            prune_plan(10, 20, None),
            PrunePlan {
                through: 10,
                checkpoint_first: true
            }
        );
        assert_eq!(
            prune_plan(10, 20, Some(12)),
            PrunePlan {
                through: 10,
                checkpoint_first: false
            }
        );
        assert_eq!(
            prune_plan(10, 20, Some(9)),
            PrunePlan {
                through: 10,
                checkpoint_first: true
            }
        );
        assert_eq!(
            prune_plan(50, 20, Some(20)),
            PrunePlan {
                through: 20,
                checkpoint_first: false
            }
        );
        assert_eq!(prune_plan(-3, 20, None).through, 0);
    }

    #[test]
    fn upkeep_keeps_the_newest_checkpoint_and_one_a_day_for_retention() {
        let day = 86_400_000;
        let now = Timestamp::from_millis(10 * day);
        let at = |d: f64| Timestamp::from_millis((d * day as f64) as i64);
        let cps = [
            (1, at(7.2)),
            (2, at(7.9)),
            (3, at(9.1)),
            (4, at(9.5)),
            (5, at(9.9)),
        ];
        assert_eq!(checkpoints_to_drop(&cps, now, None), vec![1, 2, 3, 4]);
        assert_eq!(checkpoints_to_drop(&cps, now, Some(3)), vec![1, 3, 4]);
        assert!(checkpoints_to_drop(&[], now, None).is_empty());
    }

    #[test]
    fn resuming_needs_every_event_after_the_position() {
        assert!(can_resume(0, 0));
        assert!(can_resume(10, 10));
        assert!(!can_resume(9, 10));
        assert!(!can_resume(0, 1));
    }

    #[test]
    fn retention_prunes_to_the_newest_checkpoint_old_enough() {
        let day = 86_400_000;
        let now = Timestamp::from_millis(100 * day);
        let cps = [
            (5, Timestamp::from_millis(80 * day)),
            (9, Timestamp::from_millis(92 * day)),
            (14, Timestamp::from_millis(99 * day)),
        ];
        assert_eq!(retention_target(&cps, now, 7), Some(9));
        assert_eq!(retention_target(&cps, now, 30), None);
        assert_eq!(retention_target(&cps, now, 0), Some(14));
        assert!(checkpoint_due(3, None));
        assert!(!checkpoint_due(0, None));
        assert!(!checkpoint_due(14, Some(14)));
    }
}
