//! The deletion guard: mass deprovisioning is staged for an operator instead of sent.
//!
//! A bad HR export, a mapping mistake or a scope expression gone wrong can turn into thousands of
//! deactivations in minutes. Each target with `deletion_guard:` counts the deactivations and
//! deletions it *sent* within a sliding window; the next one is **staged** when the count would
//! exceed `max_count`, or when it is at least `min_count` and would exceed `max_percent` of the
//! accounts known on the target (its bindings). A staged operation leaves the queue and is held
//! durably (in the schedule, slot [`STAGED_SLOT`], never due) until an operator approves it (the
//! subject is planned again from its latest state and sent past the guard) or rejects it (dropped);
//! both are audited.
//!
//! Approvals are remembered in memory by operation id: an approved operation still queued when the
//! daemon restarts is checked again (and staged again if the guard still trips) — the guard fails
//! closed.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use scimflow_config::DeletionGuardConfig;
use scimflow_core::store::{Store, StoreError};

/// The schedule slot that holds a staged deprovisioning.
pub const STAGED_SLOT: &str = "deletion-guard";

/// The `due` of a staged operation: never (the scheduler does not release it).
pub fn never() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
        .single()
        .expect("a valid date")
}

/// How long the known-accounts count is reused before it is read again.
const KNOWN_TTL: Duration = Duration::from_secs(10);

/// What to do with a deprovisioning.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Send,
    /// Staged; the reason says which limit.
    Stage(String),
}

/// One target's guard.
#[derive(Debug)]
pub struct DeletionGuard {
    config: DeletionGuardConfig,
    /// When each admitted deprovisioning was admitted, oldest first.
    sent: Mutex<VecDeque<Instant>>,
    /// Operation ids an operator approved (they pass without counting).
    approved: Mutex<HashSet<String>>,
    /// Accounts known on the target, and when that was read.
    known: Mutex<Option<(u64, Instant)>>,
}

impl DeletionGuard {
    pub fn new(config: DeletionGuardConfig) -> Self {
        DeletionGuard {
            config,
            sent: Mutex::default(),
            approved: Mutex::default(),
            known: Mutex::default(),
        }
    }

    pub fn config(&self) -> &DeletionGuardConfig {
        &self.config
    }

    /// Lets the operation `op_id` pass once, without counting (an operator approved it).
    pub fn approve(&self, op_id: &str) {
        self.approved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(op_id.to_owned());
    }

    fn known(&self, store: &dyn Store, target: &str) -> Result<u64, StoreError> {
        let mut k = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *k {
            Some((n, at)) if at.elapsed() < KNOWN_TTL => Ok(n),
            _ => {
                let n = store.binding_count(target)?;
                *k = Some((n, Instant::now()));
                Ok(n)
            }
        }
    }

    /// Decides about one deprovisioning of `target` now; a `Send` is counted at once (so that
    /// concurrent workers cannot all slip under the limit).
    pub fn admit(
        &self,
        store: &dyn Store,
        target: &str,
        op_id: &str,
    ) -> Result<Admission, StoreError> {
        if self
            .approved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(op_id)
        {
            return Ok(Admission::Send);
        }
        let known = self.known(store, target)?;
        let now = Instant::now();
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.config.window)
        {
            sent.pop_front();
        }
        let next = sent.len() as u64 + 1;
        let window = humantime(self.config.window);
        if next > self.config.max_count {
            return Ok(Admission::Stage(format!(
                "deletion guard: this would be deprovisioning #{next} on `{target}` within {window} \
                 (max_count {})",
                self.config.max_count
            )));
        }
        let percent = if known == 0 {
            100.0
        } else {
            next as f64 * 100.0 / known as f64
        };
        if next >= self.config.min_count && percent > self.config.max_percent {
            return Ok(Admission::Stage(format!(
                "deletion guard: this would be deprovisioning #{next} on `{target}` within {window}, \
                 {percent:.1}% of its {known} known accounts (max_percent {})",
                self.config.max_percent
            )));
        }
        sent.push_back(now);
        Ok(Admission::Send)
    }
}

fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scimflow_core::store::Mutation;

    fn config(max_count: u64, max_percent: f64, min_count: u64) -> DeletionGuardConfig {
        DeletionGuardConfig {
            max_count,
            max_percent,
            min_count,
            window: Duration::from_secs(3600),
        }
    }

    fn store_with_bindings(n: usize) -> (tempfile::TempDir, scimflow_store::SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = scimflow_store::SledStore::open(dir.path(), Default::default()).unwrap();
        let batch = (0..n)
            .map(|i| Mutation::Bind {
                target: "t".into(),
                subject: format!("E{i}"),
                id: format!("id{i}"),
            })
            .collect();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(scimflow_core::store::Store::commit(&s, batch))
            .unwrap();
        (dir, s)
    }

    #[test]
    fn stages_above_the_count_limit_and_approved_ops_pass() {
        let (_d, s) = store_with_bindings(1000);
        let g = DeletionGuard::new(config(3, 100.0, 1));
        for i in 0..3 {
            assert_eq!(
                g.admit(&s, "t", &format!("op{i}")).unwrap(),
                Admission::Send
            );
        }
        let Admission::Stage(why) = g.admit(&s, "t", "op3").unwrap() else {
            panic!("the fourth must be staged");
        };
        assert!(why.contains("#4") && why.contains("max_count 3"), "{why}");
        g.approve("op3");
        assert_eq!(g.admit(&s, "t", "op3").unwrap(), Admission::Send);
        // An approval is used once.
        assert!(matches!(
            g.admit(&s, "t", "op3").unwrap(),
            Admission::Stage(_)
        ));
    }

    #[test]
    fn stages_above_the_percentage_of_known_accounts_once_past_min_count() {
        let (_d, s) = store_with_bindings(20);
        // 10% of 20 known accounts = 2; but below min_count 3 the percentage does not apply.
        let g = DeletionGuard::new(config(100, 10.0, 3));
        assert_eq!(g.admit(&s, "t", "a").unwrap(), Admission::Send);
        assert_eq!(g.admit(&s, "t", "b").unwrap(), Admission::Send);
        let Admission::Stage(why) = g.admit(&s, "t", "c").unwrap() else {
            panic!("3 of 20 = 15% > 10%");
        };
        assert!(why.contains("15.0% of its 20 known accounts"), "{why}");
    }

    #[test]
    fn the_window_slides() {
        let (_d, s) = store_with_bindings(100);
        let g = DeletionGuard::new(DeletionGuardConfig {
            window: Duration::from_millis(50),
            ..config(1, 100.0, 1)
        });
        assert_eq!(g.admit(&s, "t", "a").unwrap(), Admission::Send);
        assert!(matches!(
            g.admit(&s, "t", "b").unwrap(),
            Admission::Stage(_)
        ));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(g.admit(&s, "t", "b").unwrap(), Admission::Send);
    }
}
