//! Partition ownership and the work still open per source partition (scale-out over Kafka).
//!
//! Several instances in one consumer group share a topic's partitions, each with its own store.
//! An instance may only deliver work derived from partitions it owns, and the group's committed
//! offset of a partition must not pass an operation that is queued but not yet finished, so that
//! when the partition moves (a rebalance, or a member that died), the next owner replays
//! everything whose effects are not known to have happened. The [`PartitionLedger`] is the one
//! place that knows both:
//!
//! * **Open operations**: queued operations by (topic, partition, offset) of the message they were
//!   planned from. [`PartitionLedger::commit_bound`] caps a partition's commit at the oldest one.
//! * **Ownership**: which partitions this instance holds, and from which committed offset it
//!   resumed each. [`PartitionLedger::disposition`] tells a delivery pool what to do with a queued
//!   operation: deliver it (owned, at or after the resume point), hand it over (someone else
//!   committed past it, so its event was processed there), or hold it (not owned, fate unknown).
//!
//! Operations without a position (the embedded source, released effective-dated operations) are
//! always delivered by the instance that holds them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// Where a message sits in a Kafka topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// What a delivery pool does with a queued operation from a partitioned source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// This instance owns the partition and resumed it at or before the operation: deliver.
    Deliver,
    /// The group committed past the operation while another instance owned the partition: its
    /// event was processed there. Remove it from the queue without delivering.
    HandOver,
    /// The partition is not (yet) owned here and nothing is known about it: keep it queued.
    Hold,
}

type Partition = (String, i32);

#[derive(Debug, Default)]
struct State {
    /// Owned partitions → the offset consumption resumed from.
    owned: HashMap<Partition, i64>,
    /// Open operations per partition: offset → count.
    open: HashMap<Partition, BTreeMap<i64, usize>>,
    /// For partitions not owned here: the group's committed offset, when last looked up.
    committed_elsewhere: HashMap<Partition, i64>,
    /// Operations being delivered right now, per partition (between [`PartitionLedger::start`]
    /// and [`PartitionLedger::finish`]).
    in_flight: HashMap<Partition, usize>,
}

/// Partition ownership and open operations; shared by the source, the pipeline and the pools.
#[derive(Debug, Default)]
pub struct PartitionLedger {
    state: Mutex<State>,
    /// Signalled when an in-flight delivery finishes.
    idle: std::sync::Condvar,
}

impl PartitionLedger {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An operation planned from the message at `pos` was queued (call before its batch is
    /// submitted, so no commit can pass it).
    pub fn opened(&self, pos: &SourcePosition) {
        *self
            .state()
            .open
            .entry((pos.topic.clone(), pos.partition))
            .or_default()
            .entry(pos.offset)
            .or_default() += 1;
    }

    /// An operation from `pos` left the queue (delivered, dead-lettered, or handed over).
    pub fn closed(&self, pos: &SourcePosition) {
        let mut st = self.state();
        let key = (pos.topic.clone(), pos.partition);
        if let Some(offsets) = st.open.get_mut(&key) {
            if let Some(n) = offsets.get_mut(&pos.offset) {
                *n -= 1;
                if *n == 0 {
                    offsets.remove(&pos.offset);
                }
            }
            if offsets.is_empty() {
                st.open.remove(&key);
            }
        }
    }

    /// The highest offset that may be committed for a partition whose messages are durably
    /// recorded up to (not including) `durable_next`: never past an open operation.
    pub fn commit_bound(&self, topic: &str, partition: i32, durable_next: i64) -> i64 {
        let st = self.state();
        let oldest_open = st
            .open
            .get(&(topic.to_owned(), partition))
            .and_then(|o| o.keys().next().copied());
        match oldest_open {
            Some(o) => durable_next.min(o),
            None => durable_next,
        }
    }

    /// This instance now owns a partition, resuming from `committed` (the group's committed offset;
    /// 0 when there is none).
    pub fn assigned(&self, topic: &str, partition: i32, committed: i64) {
        let mut st = self.state();
        let key = (topic.to_owned(), partition);
        st.committed_elsewhere.remove(&key);
        st.owned.insert(key, committed.max(0));
    }

    /// This instance no longer owns a partition; its open operations are held until it is known
    /// whether another instance processed them.
    pub fn revoked(&self, topic: &str, partition: i32) {
        self.state().owned.remove(&(topic.to_owned(), partition));
    }

    /// The group's committed offset of a partition owned elsewhere, as last looked up.
    pub fn committed_elsewhere(&self, topic: &str, partition: i32, committed: i64) {
        let mut st = self.state();
        let key = (topic.to_owned(), partition);
        if !st.owned.contains_key(&key) {
            st.committed_elsewhere.insert(key, committed);
        }
    }

    /// Partitions with open operations that this instance does not own (to look up their
    /// committed offsets).
    pub fn held_partitions(&self) -> Vec<(String, i32)> {
        let st = self.state();
        st.open
            .keys()
            .filter(|k| !st.owned.contains_key(*k))
            .cloned()
            .collect()
    }

    /// What to do with a queued operation from `pos` now.
    pub fn disposition(&self, pos: &SourcePosition) -> Disposition {
        let st = self.state();
        let key = (pos.topic.clone(), pos.partition);
        match st.owned.get(&key) {
            Some(&resumed) if pos.offset >= resumed => Disposition::Deliver,
            Some(_) => Disposition::HandOver,
            None => match st.committed_elsewhere.get(&key) {
                Some(&c) if pos.offset < c => Disposition::HandOver,
                _ => Disposition::Hold,
            },
        }
    }

    /// Whether state recorded from the message at `prior` is known to be the latest applied for
    /// its subject: this instance consumed the partition continuously since then (it resumed the
    /// partition at or before that message). When it is not, another instance may have applied
    /// newer events for the subject in between, so a minimal PATCH against it is not safe.
    pub fn continuous_since(&self, prior: &SourcePosition) -> bool {
        let st = self.state();
        st.owned
            .get(&(prior.topic.clone(), prior.partition))
            .is_some_and(|&resumed| prior.offset >= resumed)
    }

    /// Decides about a queued operation from `pos` like [`disposition`](Self::disposition), and
    /// when it is to be delivered counts it as in flight until [`finish`](Self::finish) — in the
    /// same step, so a revocation either happens first (and it is held) or waits for it.
    pub fn start(&self, pos: &SourcePosition) -> Disposition {
        let d = self.disposition(pos);
        if d == Disposition::Deliver {
            let mut st = self.state();
            // Ownership may have been revoked between the two locks: look again under this one.
            let key = (pos.topic.clone(), pos.partition);
            if st.owned.get(&key).is_none_or(|&r| pos.offset < r) {
                return Disposition::Hold;
            }
            *st.in_flight.entry(key).or_default() += 1;
        }
        d
    }

    /// A delivery counted by [`start`](Self::start) ended (whatever its outcome).
    pub fn finish(&self, pos: &SourcePosition) {
        let mut st = self.state();
        let key = (pos.topic.clone(), pos.partition);
        if let Some(n) = st.in_flight.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                st.in_flight.remove(&key);
            }
        }
        drop(st);
        self.idle.notify_all();
    }

    /// Waits until no delivery from `partitions` is in flight, at most `timeout`; returns whether
    /// they are idle. A revoked partition's next owner must not race a delivery still running here
    /// (it could apply an older change after the owner applied a newer one).
    pub fn wait_idle(&self, partitions: &[(String, i32)], timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut st = self.state();
        loop {
            if partitions.iter().all(|p| !st.in_flight.contains_key(p)) {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .idle
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Open operations in total (for metrics and tests).
    pub fn open_count(&self) -> usize {
        self.state().open.values().flat_map(|o| o.values()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(p: i32, o: i64) -> SourcePosition {
        SourcePosition {
            topic: "t".into(),
            partition: p,
            offset: o,
        }
    }

    #[test]
    fn a_revocation_waits_for_deliveries_in_flight_and_stops_new_ones() {
        let l = std::sync::Arc::new(PartitionLedger::new());
        l.assigned("t", 0, 0);
        l.opened(&pos(0, 5));
        l.opened(&pos(0, 6));
        assert_eq!(l.start(&pos(0, 5)), Disposition::Deliver);
        l.revoked("t", 0);
        // Not started before the revocation: held.
        assert_eq!(l.start(&pos(0, 6)), Disposition::Hold);
        let part = vec![("t".to_owned(), 0)];
        assert!(!l.wait_idle(&part, std::time::Duration::from_millis(20)));
        let l2 = l.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            l2.finish(&pos(0, 5));
        });
        assert!(l.wait_idle(&part, std::time::Duration::from_secs(5)));
        t.join().unwrap();
    }

    #[test]
    fn the_commit_never_passes_an_open_operation() {
        let l = PartitionLedger::new();
        assert_eq!(l.commit_bound("t", 0, 10), 10);
        l.opened(&pos(0, 4));
        l.opened(&pos(0, 4));
        l.opened(&pos(0, 7));
        assert_eq!(l.commit_bound("t", 0, 10), 4);
        assert_eq!(l.commit_bound("t", 0, 3), 3, "durability bounds it too");
        assert_eq!(l.commit_bound("t", 1, 10), 10, "partitions are independent");
        l.closed(&pos(0, 4));
        assert_eq!(l.commit_bound("t", 0, 10), 4, "one of two still open");
        l.closed(&pos(0, 4));
        assert_eq!(l.commit_bound("t", 0, 10), 7);
        l.closed(&pos(0, 7));
        assert_eq!(l.commit_bound("t", 0, 10), 10);
        assert_eq!(l.open_count(), 0);
    }

    #[test]
    fn unowned_work_is_held_until_someone_commits_past_it() {
        let l = PartitionLedger::new();
        l.opened(&pos(0, 5));
        assert_eq!(
            l.disposition(&pos(0, 5)),
            Disposition::Hold,
            "not assigned yet"
        );
        assert_eq!(l.held_partitions(), vec![("t".to_owned(), 0)]);
        l.committed_elsewhere("t", 0, 5);
        assert_eq!(
            l.disposition(&pos(0, 5)),
            Disposition::Hold,
            "commit at, not past"
        );
        l.committed_elsewhere("t", 0, 9);
        assert_eq!(l.disposition(&pos(0, 5)), Disposition::HandOver);
    }

    #[test]
    fn owned_work_is_delivered_from_the_resume_point_on() {
        let l = PartitionLedger::new();
        l.assigned("t", 0, 6);
        assert_eq!(l.disposition(&pos(0, 5)), Disposition::HandOver);
        assert_eq!(l.disposition(&pos(0, 6)), Disposition::Deliver);
        l.revoked("t", 0);
        assert_eq!(l.disposition(&pos(0, 6)), Disposition::Hold);
        l.assigned("t", 0, 6);
        assert_eq!(
            l.disposition(&pos(0, 6)),
            Disposition::Deliver,
            "back again"
        );
    }

    #[test]
    fn state_is_trusted_only_from_the_resume_point_of_the_current_assignment() {
        let l = PartitionLedger::new();
        assert!(!l.continuous_since(&pos(0, 3)), "not owned");
        l.assigned("t", 0, 10);
        assert!(
            !l.continuous_since(&pos(0, 3)),
            "older than the resume point"
        );
        assert!(l.continuous_since(&pos(0, 10)));
        assert!(!l.continuous_since(&pos(1, 12)), "another partition");
    }
}
