//! The per-partition commit watermark.
//!
//! Each consumed offset is registered when it is handed to the sink and marked complete when
//! everything derived from it is durable. Completion may come in any order; the watermark (the
//! offset to store) only advances over a contiguous run of completed offsets from the oldest
//! registered one, so it never passes a gap. Offsets need not be consecutive (compaction,
//! transaction markers): only registered offsets count.
//!
//! Entries carry an epoch: a revoked partition's entry is dropped, and completions of messages
//! consumed before the revoke (same partition, older epoch) are ignored.

use std::collections::{BTreeMap, HashMap};

/// What the consumer should do to a partition after a tracker update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Nothing changes.
    Keep,
    /// Too many messages are waiting for durability: pause fetching.
    Pause,
    /// Drained below half the limit: resume fetching.
    Resume,
}

/// What a completion means for the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    /// The offset of the newest *message* up to which everything is durable, when it moved
    /// (librdkafka's `store_offset(topic, partition, offset)` then commits `offset + 1`).
    pub store: Option<i64>,
    pub flow: Flow,
}

#[derive(Debug)]
struct Partition {
    epoch: u64,
    /// Offset → durable.
    offsets: BTreeMap<i64, bool>,
    paused: bool,
}

/// Offsets in flight per (topic, partition).
#[derive(Debug)]
pub struct OffsetTracker {
    max_in_flight: usize,
    next_epoch: u64,
    partitions: HashMap<(String, i32), Partition>,
}

impl OffsetTracker {
    /// `max_in_flight`: offsets waiting per partition before it is paused (resumed below half).
    pub fn new(max_in_flight: usize) -> Self {
        OffsetTracker {
            max_in_flight: max_in_flight.max(1),
            next_epoch: 1,
            partitions: HashMap::new(),
        }
    }

    /// Registers a consumed offset; returns the partition's epoch (to pass to
    /// [`complete`](Self::complete)) and whether to pause it.
    pub fn begin(&mut self, topic: &str, partition: i32, offset: i64) -> (u64, Flow) {
        let max = self.max_in_flight;
        let next_epoch = &mut self.next_epoch;
        let p = self
            .partitions
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| {
                let epoch = *next_epoch;
                *next_epoch += 1;
                Partition {
                    epoch,
                    offsets: BTreeMap::new(),
                    paused: false,
                }
            });
        p.offsets.insert(offset, false);
        let flow = if !p.paused && p.offsets.len() > max {
            p.paused = true;
            Flow::Pause
        } else {
            Flow::Keep
        };
        (p.epoch, flow)
    }

    /// Marks an offset durable. `None` when the partition was revoked since (or re-assigned with a
    /// new epoch): the completion must not be stored.
    pub fn complete(
        &mut self,
        topic: &str,
        partition: i32,
        epoch: u64,
        offset: i64,
    ) -> Option<Advance> {
        let max = self.max_in_flight;
        let p = self.partitions.get_mut(&(topic.to_owned(), partition))?;
        if p.epoch != epoch {
            return None;
        }
        if let Some(done) = p.offsets.get_mut(&offset) {
            *done = true;
        }
        let mut store = None;
        while let Some(entry) = p.offsets.first_entry() {
            if !*entry.get() {
                break;
            }
            store = Some(*entry.key());
            entry.remove();
        }
        let flow = if p.paused && p.offsets.len() < max.div_ceil(2) {
            p.paused = false;
            Flow::Resume
        } else {
            Flow::Keep
        };
        Some(Advance { store, flow })
    }

    /// Drops a partition's tracking (on revoke). Returns whether it was paused.
    pub fn revoke(&mut self, topic: &str, partition: i32) -> bool {
        self.partitions
            .remove(&(topic.to_owned(), partition))
            .is_some_and(|p| p.paused)
    }

    /// Offsets of a partition not yet durable (or behind one that is not).
    pub fn in_flight(&self, topic: &str, partition: i32) -> usize {
        self.partitions
            .get(&(topic.to_owned(), partition))
            .map_or(0, |p| p.offsets.len())
    }

    /// Whether a partition is paused by backpressure.
    pub fn is_paused(&self, topic: &str, partition: i32) -> bool {
        self.partitions
            .get(&(topic.to_owned(), partition))
            .is_some_and(|p| p.paused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_never_passes_a_gap() {
        let mut t = OffsetTracker::new(100);
        let (e, _) = t.begin("t", 0, 10);
        t.begin("t", 0, 11);
        t.begin("t", 0, 13); // 12 was compacted away: not a gap
        t.begin("t", 0, 14);
        assert_eq!(t.complete("t", 0, e, 11).unwrap().store, None);
        assert_eq!(t.complete("t", 0, e, 14).unwrap().store, None);
        assert_eq!(t.complete("t", 0, e, 10).unwrap().store, Some(11));
        assert_eq!(t.in_flight("t", 0), 2);
        assert_eq!(t.complete("t", 0, e, 13).unwrap().store, Some(14));
        assert_eq!(t.in_flight("t", 0), 0);
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::new(100);
        let (a, _) = t.begin("t", 0, 0);
        let (b, _) = t.begin("t", 1, 0);
        t.begin("t", 0, 1);
        let (c, _) = t.begin("u", 0, 5);
        assert_eq!(t.complete("t", 1, b, 0).unwrap().store, Some(0));
        assert_eq!(t.complete("t", 0, a, 1).unwrap().store, None);
        assert_eq!(t.complete("u", 0, c, 5).unwrap().store, Some(5));
        assert_eq!(t.complete("t", 0, a, 0).unwrap().store, Some(1));
    }

    #[test]
    fn revoked_partitions_ignore_late_completions() {
        let mut t = OffsetTracker::new(100);
        let (old, _) = t.begin("t", 0, 7);
        t.revoke("t", 0);
        assert_eq!(t.complete("t", 0, old, 7), None);
        let (new, _) = t.begin("t", 0, 7);
        assert_ne!(old, new);
        assert_eq!(t.complete("t", 0, old, 7), None);
        assert_eq!(t.complete("t", 0, new, 7).unwrap().store, Some(7));
    }

    #[test]
    fn pauses_above_the_limit_and_resumes_below_half() {
        let mut t = OffsetTracker::new(4);
        let mut epoch = 0;
        for o in 0..4 {
            let (e, f) = t.begin("t", 0, o);
            epoch = e;
            assert_eq!(f, Flow::Keep);
        }
        assert_eq!(t.begin("t", 0, 4).1, Flow::Pause);
        assert!(t.is_paused("t", 0));
        assert_eq!(t.begin("t", 0, 5).1, Flow::Keep, "pause once");
        // Completing out of order behind a gap does not drain.
        for o in 1..6 {
            assert_eq!(t.complete("t", 0, epoch, o).unwrap().flow, Flow::Keep);
        }
        let a = t.complete("t", 0, epoch, 0).unwrap();
        assert_eq!(a.store, Some(5));
        assert_eq!(a.flow, Flow::Resume);
        assert!(!t.is_paused("t", 0));
    }
}
