//! The single writer thread, engine-independent: group commit of every waiting batch into one
//! atomic, durable engine write ([`Durable::write`]): one `sled::Batch` + `flush()`, or one redb write
//! transaction committed with `Durability::Immediate`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use scimflow_core::store::{CommitReceipt, StoreError};
use scimflow_core::{AuditEntry, AuditRecord};
use tokio::sync::oneshot;

use crate::engine::{Durable, Txn};
use crate::keys;

/// A mutation with everything that does not depend on writer state already encoded by the caller.
pub(crate) enum Prepared {
    /// Insert `key` → `value` (subjects, bindings).
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Remove `key` (bindings).
    Remove { key: Vec<u8> },
    /// Append an encoded operation to `target`'s queue.
    Enqueue { target: String, value: Vec<u8> },
    /// Remove a queue entry (missing is fine).
    Dequeue { target: String, seq: u64 },
    /// Overwrite a queue entry that is still there (missing: nothing happens).
    Requeue {
        target: String,
        seq: u64,
        value: Vec<u8>,
    },
    /// Number, chain and store an audit entry.
    Audit(Box<AuditEntry>),
    /// Store an encoded rejected input.
    Reject(Vec<u8>),
    /// Store an encoded dead letter.
    DeadLetter(Vec<u8>),
    /// Append raw bytes to the embedded log.
    LogAppend(Vec<u8>),
    /// Drop embedded-log entries `<= upto` and move the cursor.
    LogConsumed(u64),
}

/// One `commit` call waiting for the writer.
pub(crate) struct Job {
    pub(crate) mutations: Vec<Prepared>,
    pub(crate) reply: oneshot::Sender<Result<CommitReceipt, StoreError>>,
}

/// State shared between the writer, the readers and every handle.
#[derive(Default)]
pub(crate) struct Shared {
    /// Queued operations per target (only non-zero counts are kept).
    pub(crate) queue_lens: RwLock<HashMap<String, u64>>,
    /// Set once the writer has failed; never cleared.
    pub(crate) failed: AtomicBool,
    /// Set by `close`: the writer stops on purpose.
    pub(crate) closing: AtomicBool,
    /// Message of the first failure.
    pub(crate) last_error: Mutex<Option<String>>,
    pub(crate) commits: AtomicU64,
    pub(crate) batches_flushed: AtomicU64,
    pub(crate) mutations: AtomicU64,
    /// Test hook: makes the next group commit fail before anything is applied, as if the disk were full.
    #[cfg(test)]
    pub(crate) fail_next_flush: AtomicBool,
}

impl Shared {
    /// Records the first failure and stops intake.
    pub(crate) fn fail(&self, message: String) {
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none() {
            tracing::error!(error = %message, "store writer failed; no further commits are accepted");
            *last = Some(message);
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    /// The error a commit gets when the writer is no longer taking work.
    pub(crate) fn stopped_error(&self) -> StoreError {
        if self.failed.load(Ordering::SeqCst) {
            StoreError::Io(
                self.last_error()
                    .unwrap_or_else(|| "the store writer failed".into()),
            )
        } else if self.closing.load(Ordering::SeqCst) {
            StoreError::Closed
        } else {
            // Only reachable if the writer thread died without recording why (a panic mid-unwind).
            StoreError::Io("the store writer stopped unexpectedly".into())
        }
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Counters the writer owns; recovered from disk on open.
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    pub(crate) queue: u64,
    pub(crate) log: u64,
    pub(crate) rejected: u64,
    pub(crate) dead_letter: u64,
    pub(crate) audit: u64,
    pub(crate) audit_hash: String,
    pub(crate) log_consumed: Option<u64>,
}

pub(crate) struct Writer<D: Durable> {
    pub(crate) durable: D,
    pub(crate) shared: Arc<Shared>,
    pub(crate) counters: Counters,
    pub(crate) max_batch_mutations: usize,
}

/// Marks the store failed if the writer thread unwinds, so waiting commits do not read as `Closed`.
struct PanicGuard<'a>(&'a Shared);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail("the store writer thread panicked".into());
        }
    }
}

impl<D: Durable> Writer<D> {
    /// Runs until every sender is gone (close) or a write fails.
    pub(crate) fn run(mut self, rx: Receiver<Job>) {
        let shared = Arc::clone(&self.shared);
        let _guard = PanicGuard(&shared);
        let mut carry: Option<Job> = None;
        loop {
            let first = match carry.take() {
                Some(job) => job,
                None => match rx.recv() {
                    Ok(job) => job,
                    Err(_) => break,
                },
            };
            let mut total = first.mutations.len();
            let mut group = vec![first];
            while total < self.max_batch_mutations {
                match rx.try_recv() {
                    Ok(job) if total + job.mutations.len() > self.max_batch_mutations => {
                        carry = Some(job);
                        break;
                    }
                    Ok(job) => {
                        total += job.mutations.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            let (batches, replies): (Vec<_>, Vec<_>) =
                group.into_iter().map(|j| (j.mutations, j.reply)).unzip();
            match self.commit_group(batches) {
                Ok(receipts) => {
                    for (reply, receipt) in replies.into_iter().zip(receipts) {
                        // A caller that stopped waiting is fine: its batch is durable either way.
                        let _ = reply.send(Ok(receipt));
                    }
                }
                Err(message) => {
                    self.shared.fail(message);
                    let err = self.shared.stopped_error();
                    let later = carry
                        .take()
                        .into_iter()
                        .chain(rx.try_iter())
                        .map(|j| j.reply);
                    for reply in replies.into_iter().chain(later) {
                        let _ = reply.send(Err(err.clone()));
                    }
                    // Dropping `rx` makes every later send fail; `commit` reports that as this failure.
                    return;
                }
            }
        }
        if let Err(e) = self.durable.shutdown() {
            self.shared
                .fail(format!("final flush at shutdown failed: {e}"));
        }
        tracing::debug!("store writer stopped");
    }

    /// Applies `batches` as one atomic, durable engine write; returns one receipt per batch.
    fn commit_group(&mut self, batches: Vec<Vec<Prepared>>) -> Result<Vec<CommitReceipt>, String> {
        let before = self.counters.clone();
        let mut st = before.clone();
        // Queue keys touched by this group: whether they exist once the group is applied.
        let mut queue_present: HashMap<Vec<u8>, bool> = HashMap::new();
        let mut deltas: HashMap<String, i64> = HashMap::new();
        let mut receipts = Vec::with_capacity(batches.len());
        let mut n_mutations = 0u64;
        #[cfg(test)]
        let inject = self.shared.fail_next_flush.swap(false, Ordering::SeqCst);
        let mut batches = Some(batches);

        self.durable.write(&mut |txn: &mut dyn Txn| {
            let batches = batches.take().expect("the engine builds a group once");
            let mut appended_logs: Vec<u64> = Vec::new();
            for mutations in batches {
                let mut receipt = CommitReceipt::default();
                n_mutations += mutations.len() as u64;
                for m in mutations {
                    match m {
                        Prepared::Put { key, value } => txn.put(key, value)?,
                        Prepared::Remove { key } => txn.remove(key)?,
                        Prepared::Enqueue { target, value } => {
                            st.queue += 1;
                            let key = keys::queue(&target, st.queue);
                            txn.put(key.clone(), value)?;
                            queue_present.insert(key, true);
                            *deltas.entry(target.clone()).or_default() += 1;
                            receipt.queue_seqs.push((target, st.queue));
                        }
                        Prepared::Dequeue { target, seq } => {
                            let key = keys::queue(&target, seq);
                            let present = match queue_present.get(&key) {
                                Some(p) => *p,
                                None => txn
                                    .contains(&key)
                                    .map_err(|e| format!("reading a queue entry failed: {e}"))?,
                            };
                            if present {
                                *deltas.entry(target).or_default() -= 1;
                                txn.remove(key.clone())?;
                            }
                            queue_present.insert(key, false);
                        }
                        Prepared::Requeue { target, seq, value } => {
                            let key = keys::queue(&target, seq);
                            let present = match queue_present.get(&key) {
                                Some(p) => *p,
                                None => txn
                                    .contains(&key)
                                    .map_err(|e| format!("reading a queue entry failed: {e}"))?,
                            };
                            if present {
                                txn.put(key.clone(), value)?;
                                queue_present.insert(key, true);
                            }
                        }
                        Prepared::Audit(entry) => {
                            st.audit += 1;
                            let record = AuditRecord::chain(st.audit, *entry, &st.audit_hash);
                            let value = serde_json::to_vec(&record).map_err(|e| {
                                format!("encoding audit record #{} failed: {e}", st.audit)
                            })?;
                            st.audit_hash = record.hash;
                            txn.put(keys::seq(keys::AUDIT, st.audit), value)?;
                            receipt.audit_seqs.push(st.audit);
                        }
                        Prepared::Reject(value) => {
                            st.rejected += 1;
                            txn.put(keys::seq(keys::REJECTED, st.rejected), value)?;
                        }
                        Prepared::DeadLetter(value) => {
                            st.dead_letter += 1;
                            txn.put(keys::seq(keys::DEAD_LETTER, st.dead_letter), value)?;
                        }
                        Prepared::LogAppend(bytes) => {
                            st.log += 1;
                            txn.put(keys::seq(keys::LOG, st.log), bytes)?;
                            appended_logs.push(st.log);
                            receipt.log_seqs.push(st.log);
                        }
                        Prepared::LogConsumed(upto) => {
                            let end = match upto.checked_add(1) {
                                Some(next) => keys::seq(keys::LOG, next),
                                None => keys::prefix_end(keys::LOG),
                            };
                            txn.remove_range(keys::LOG, &end).map_err(|e| {
                                format!("dropping consumed log entries failed: {e}")
                            })?;
                            for seq in appended_logs.iter().filter(|s| **s <= upto) {
                                txn.remove(keys::seq(keys::LOG, *seq))?;
                            }
                            let cursor = st.log_consumed.map_or(upto, |c| c.max(upto));
                            st.log_consumed = Some(cursor);
                            txn.put(keys::LOG_CONSUMED.to_vec(), cursor.to_be_bytes().to_vec())?;
                        }
                    }
                }
                receipts.push(receipt);
            }

            // Counters travel in the same atomic write as the entries that used them.
            for (key, old, new) in [
                (keys::SEQ_QUEUE, before.queue, st.queue),
                (keys::SEQ_LOG, before.log, st.log),
                (keys::SEQ_REJECTED, before.rejected, st.rejected),
                (keys::SEQ_DEAD_LETTER, before.dead_letter, st.dead_letter),
                (keys::SEQ_AUDIT, before.audit, st.audit),
            ] {
                if old != new {
                    txn.put(key.to_vec(), new.to_be_bytes().to_vec())?;
                }
            }

            #[cfg(test)]
            if inject {
                return Err("applying a write batch failed: injected failure (test)".into());
            }
            Ok(())
        })?;

        // Durable: publish the new state before anyone is answered.
        self.counters = st;
        if !deltas.is_empty() {
            let mut lens = self
                .shared
                .queue_lens
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for (target, delta) in deltas {
                let len = lens.get(&target).copied().unwrap_or(0);
                let new = len.saturating_add_signed(delta);
                if new == 0 {
                    lens.remove(&target);
                } else {
                    lens.insert(target, new);
                }
            }
        }
        self.shared
            .commits
            .fetch_add(receipts.len() as u64, Ordering::Relaxed);
        self.shared.batches_flushed.fetch_add(1, Ordering::Relaxed);
        self.shared
            .mutations
            .fetch_add(n_mutations, Ordering::Relaxed);
        Ok(receipts)
    }
}
