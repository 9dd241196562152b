//! Everything engine-independent: the two small traits an engine implements ([`Reader`] for reads,
//! [`Durable`] for the writer's atomic durable write), and [`Core`], which builds the whole
//! [`Store`] on top of them: key encoding (`crate::keys`), `prepare`, layout check, counter and
//! queue-length recovery, the writer thread's lifecycle, receipts and audit chaining (in
//! `crate::writer`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use scimflow_core::audit::GENESIS_HASH;
use scimflow_core::store::{BoxFuture, CommitReceipt, DeadLetter, Mutation, Store, StoreError};
use scimflow_core::{
    AuditCheckpoint, AuditRecord, QueuedOp, RejectedEvent, ScheduledOp, SubjectState,
};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::keys;
use crate::writer::{Counters, Job, Prepared, Shared, Writer};
use crate::{Engine, StoreOptions, StoreStats};

/// A key and its value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// Synchronous reads of committed data. Keys and values are the layout's bytes (`crate::keys`).
pub(crate) trait Reader: Send + Sync + 'static {
    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Up to `limit` entries with `start <= key < end`, in ascending key order.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError>;
    /// The entry with the highest key in `start <= key < end`.
    fn last(&self, start: &[u8], end: &[u8]) -> Result<Option<Entry>, StoreError>;
    /// Calls `f` with every key in `start <= key < end`, ascending, without collecting them.
    fn for_each_key(
        &self,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Whether the layout's key space holds nothing at all.
    fn is_empty(&self) -> Result<bool, StoreError>;
}

/// One group commit being built by the writer. Nothing is visible or durable until the engine
/// commits it, and it is discarded whole if building fails.
pub(crate) trait Txn {
    /// Whether `key` exists (at least in the last committed state; keys written earlier in this
    /// group are tracked by the writer itself).
    fn contains(&mut self, key: &[u8]) -> Result<bool, String>;
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String>;
    fn remove(&mut self, key: Vec<u8>) -> Result<(), String>;
    /// Removes every committed key in `start <= key < end` (keys put earlier in this group are
    /// removed explicitly by the writer).
    fn remove_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), String>;
}

/// The writer's side of an engine: one atomic, durable write per group commit.
pub(crate) trait Durable: Send + 'static {
    /// Opens a write set, lets `build` fill it, and — only if `build` succeeded — applies it
    /// atomically and makes it durable before returning `Ok`.
    fn write(
        &mut self,
        build: &mut dyn FnMut(&mut dyn Txn) -> Result<(), String>,
    ) -> Result<(), String>;
    /// Called once when the writer stops on purpose.
    fn shutdown(&mut self) -> Result<(), String>;
}

pub(crate) fn corrupt(key: &[u8], reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        key: keys::display(key),
        reason: reason.into(),
    }
}

pub(crate) fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| corrupt(key, format!("undecodable JSON value: {e}")))
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Io(format!("encoding {what} failed: {e}")))
}

/// A store built from an engine's [`Reader`] plus a writer thread over its [`Durable`].
pub(crate) struct Core<R: Reader> {
    pub(crate) reader: R,
    pub(crate) shared: Arc<Shared>,
    engine: Engine,
    /// `None` once closed.
    tx: RwLock<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Engine resources to release only after the writer has stopped (declared last: dropped last).
    _guard: Box<dyn std::any::Any + Send + Sync>,
}

impl<R: Reader> Core<R> {
    /// Checks (or writes) the layout version, recovers counters and queue lengths, and starts the
    /// writer thread.
    pub(crate) fn start<D: Durable>(
        engine: Engine,
        path: &Path,
        reader: R,
        mut durable: D,
        opts: &StoreOptions,
        guard: Box<dyn std::any::Any + Send + Sync>,
    ) -> Result<Core<R>, StoreError> {
        match reader.get(keys::LAYOUT)? {
            Some(v) if v == keys::LAYOUT_VERSION => {}
            Some(v) => {
                return Err(corrupt(
                    keys::LAYOUT,
                    format!(
                        "unknown key layout version `{}` (this build reads layout 1); refusing to open the {engine} store at {}",
                        keys::display(&v),
                        path.display()
                    ),
                ))
            }
            None if reader.is_empty()? => durable
                .write(&mut |txn| txn.put(keys::LAYOUT.to_vec(), keys::LAYOUT_VERSION.to_vec()))
                .map_err(|e| StoreError::Io(format!("initialising the new {engine} store failed: {e}")))?,
            None => {
                return Err(corrupt(
                    keys::LAYOUT,
                    "the layout version is missing from a non-empty store; refusing to guess",
                ))
            }
        }

        let (queue_lens, highest_queue_seq) = count_queues(&reader)?;
        let counters = recover_counters(&reader, highest_queue_seq)?;
        tracing::info!(
            %engine,
            path = %path.display(),
            queue_seq = counters.queue,
            log_seq = counters.log,
            audit_seq = counters.audit,
            queued = queue_lens.values().sum::<u64>(),
            "opened store"
        );

        let shared = Arc::new(Shared {
            queue_lens: RwLock::new(queue_lens),
            ..Shared::default()
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            durable,
            shared: Arc::clone(&shared),
            counters,
            max_batch_mutations: opts.max_batch_mutations.max(1),
        };
        let handle = std::thread::Builder::new()
            .name(format!("scimflow-store-writer-{engine}"))
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Io(format!("starting the store writer thread failed: {e}")))?;
        Ok(Core {
            reader,
            shared,
            engine,
            tx: RwLock::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            _guard: guard,
        })
    }

    pub(crate) fn engine(&self) -> Engine {
        self.engine
    }

    pub(crate) fn healthy(&self) -> bool {
        !self.shared.failed.load(Ordering::SeqCst)
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.shared.last_error()
    }

    pub(crate) fn stats(&self) -> StoreStats {
        let s = &self.shared;
        StoreStats {
            commits: s.commits.load(Ordering::Relaxed),
            batches_flushed: s.batches_flushed.load(Ordering::Relaxed),
            mutations: s.mutations.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn close(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        drop(
            self.tx
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("the store writer thread panicked");
            }
        }
    }

    /// Up to `limit` entries of `{prefix}{seq BE}` keys with a sequence number after `after`.
    fn scan_seq(
        &self,
        prefix: &[u8],
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let start = match after {
            None => prefix.to_vec(),
            Some(a) => match a.checked_add(1) {
                Some(next) => keys::seq(prefix, next),
                None => return Ok(Vec::new()),
            },
        };
        self.reader
            .scan(&start, &keys::prefix_end(prefix), limit)?
            .into_iter()
            .map(|(key, value)| {
                let seq = keys::seq_of(prefix, &key).ok_or_else(|| {
                    corrupt(&key, "key does not end in an 8-byte sequence number")
                })?;
                Ok((seq, value))
            })
            .collect()
    }

    fn scan_decoded<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, T)>, StoreError> {
        self.scan_seq(prefix, after, limit)?
            .into_iter()
            .map(|(seq, v)| Ok((seq, decode(&keys::seq(prefix, seq), &v)?)))
            .collect()
    }

    /// Every scheduled operation under `prefix`, earliest due first (ties in key order). Scheduled
    /// operations are few (future-dated changes), so a scan is cheaper than maintaining a second,
    /// time-ordered index.
    fn scheduled_under(&self, prefix: &[u8]) -> Result<Vec<ScheduledOp>, StoreError> {
        let mut out = self
            .reader
            .scan(prefix, &keys::prefix_end(prefix), usize::MAX)?
            .into_iter()
            .map(|(k, v)| decode::<ScheduledOp>(&k, &v))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|s| s.due);
        Ok(out)
    }
}

impl<R: Reader> Drop for Core<R> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Reads a BE counter stored under `key`.
fn stored_counter(reader: &impl Reader, key: &[u8]) -> Result<u64, StoreError> {
    match reader.get(key)? {
        None => Ok(0),
        Some(v) => keys::decode_u64(&v).ok_or_else(|| corrupt(key, "counter is not 8 bytes")),
    }
}

/// The highest sequence number among `{prefix}{seq BE}` keys.
fn highest_seq(reader: &impl Reader, prefix: &[u8]) -> Result<u64, StoreError> {
    match reader.last(prefix, &keys::prefix_end(prefix))? {
        None => Ok(0),
        Some((key, _)) => keys::seq_of(prefix, &key)
            .ok_or_else(|| corrupt(&key, "key does not end in an 8-byte sequence number")),
    }
}

fn recover_counters(reader: &impl Reader, highest_queue_seq: u64) -> Result<Counters, StoreError> {
    let queue = stored_counter(reader, keys::SEQ_QUEUE)?.max(highest_queue_seq);
    let log = stored_counter(reader, keys::SEQ_LOG)?.max(highest_seq(reader, keys::LOG)?);
    let rejected =
        stored_counter(reader, keys::SEQ_REJECTED)?.max(highest_seq(reader, keys::REJECTED)?);
    let dead_letter =
        stored_counter(reader, keys::SEQ_DEAD_LETTER)?.max(highest_seq(reader, keys::DEAD_LETTER)?);
    let (last_audit, audit_hash) = match reader.last(keys::AUDIT, &keys::prefix_end(keys::AUDIT))? {
        None => (0, GENESIS_HASH.to_owned()),
        Some((key, value)) => {
            let record: AuditRecord = decode(&key, &value)?;
            if keys::seq_of(keys::AUDIT, &key) != Some(record.seq) {
                return Err(corrupt(&key, format!("holds audit record #{}", record.seq)));
            }
            (record.seq, record.hash)
        }
    };
    // A counter ahead of the last record means records at the end were deleted. Numbering goes on
    // after the counter, so the gap stays visible to `scimflow audit verify` instead of being
    // overwritten by new records.
    let audit = stored_counter(reader, keys::SEQ_AUDIT)?.max(last_audit);
    if audit > last_audit {
        tracing::error!(
            last_record = last_audit,
            assigned = audit,
            "the audit log ends before the highest sequence number it assigned: records were removed; \
             run `scimflow audit verify`"
        );
    }
    let log_consumed = match reader.get(keys::LOG_CONSUMED)? {
        None => None,
        Some(v) => Some(
            keys::decode_u64(&v)
                .ok_or_else(|| corrupt(keys::LOG_CONSUMED, "cursor is not 8 bytes"))?,
        ),
    };
    Ok(Counters {
        queue,
        log,
        rejected,
        dead_letter,
        audit,
        audit_hash,
        log_consumed,
    })
}

/// Queued operations per target, and the highest queue position present (one key-only scan).
fn count_queues(reader: &impl Reader) -> Result<(HashMap<String, u64>, u64), StoreError> {
    let mut lens: HashMap<String, u64> = HashMap::new();
    let mut highest = 0;
    reader.for_each_key(keys::QUEUE, &keys::prefix_end(keys::QUEUE), &mut |key| {
        let target = keys::queue_target(key).ok_or_else(|| corrupt(key, "malformed queue key"))?;
        match lens.get_mut(target) {
            Some(n) => *n += 1,
            None => {
                lens.insert(target.to_owned(), 1);
            }
        }
        let seq = keys::decode_u64(&key[key.len() - 8..]).unwrap_or(0);
        highest = highest.max(seq);
        Ok(())
    })?;
    Ok((lens, highest))
}

/// Checks a name used inside a key and rejects one that would make keys ambiguous.
fn check_name(what: &str, name: &str) -> Result<(), StoreError> {
    if name.as_bytes().contains(&0) {
        return Err(StoreError::Io(format!(
            "refusing to store {what} {name:?}: it contains a NUL byte, which the key layout reserves"
        )));
    }
    Ok(())
}

fn check_target(target: &str) -> Result<(), StoreError> {
    check_name("target name", target)
}

/// Subject and slot of a scheduled operation are separated by NUL in its key too.
fn check_schedule_key(target: &str, subject: &str, slot: &str) -> Result<(), StoreError> {
    check_target(target)?;
    check_name("scheduled subject", subject)?;
    check_name("schedule slot", slot)
}

/// Encodes everything that does not depend on writer state, on the caller's thread.
pub(crate) fn prepare(batch: Vec<Mutation>) -> Result<Vec<Prepared>, StoreError> {
    batch
        .into_iter()
        .map(|m| {
            Ok(match m {
                Mutation::PutSubject(state) => Prepared::Put {
                    key: keys::subject(&state.subject),
                    value: encode("subject state", &state)?,
                },
                Mutation::Enqueue(op) => {
                    check_target(&op.target)?;
                    Prepared::Enqueue {
                        value: encode("queued operation", &op)?,
                        target: op.target,
                    }
                }
                Mutation::Dequeue { target, seq } => {
                    check_target(&target)?;
                    Prepared::Dequeue { target, seq }
                }
                Mutation::Requeue { seq, op } => {
                    check_target(&op.target)?;
                    Prepared::Requeue {
                        value: encode("queued operation", &op)?,
                        target: op.target,
                        seq,
                    }
                }
                Mutation::Bind {
                    target,
                    subject,
                    id,
                } => {
                    check_target(&target)?;
                    Prepared::Put {
                        key: keys::bind(&target, &subject),
                        value: id.into_bytes(),
                    }
                }
                Mutation::Unbind { target, subject } => {
                    check_target(&target)?;
                    Prepared::Remove {
                        key: keys::bind(&target, &subject),
                    }
                }
                Mutation::Audit(entry) => Prepared::Audit(Box::new(entry)),
                Mutation::Reject(rejected) => {
                    Prepared::Reject(encode("rejected input", &rejected)?)
                }
                Mutation::DeadLetter(dl) => Prepared::DeadLetter(encode("dead letter", &dl)?),
                Mutation::LogAppend(bytes) => Prepared::LogAppend(bytes),
                Mutation::LogConsumed { upto } => Prepared::LogConsumed(upto),
                Mutation::Schedule(sched) => {
                    check_schedule_key(&sched.op.target, &sched.op.subject, &sched.slot)?;
                    Prepared::Put {
                        key: keys::scheduled(&sched.op.target, &sched.op.subject, &sched.slot),
                        value: encode("scheduled operation", &sched)?,
                    }
                }
                Mutation::Unschedule {
                    target,
                    subject,
                    slot,
                } => {
                    check_schedule_key(&target, &subject, &slot)?;
                    Prepared::Remove {
                        key: keys::scheduled(&target, &subject, &slot),
                    }
                }
                Mutation::RemoveDeadLetter { seq } => Prepared::Remove {
                    key: keys::seq(keys::DEAD_LETTER, seq),
                },
                Mutation::AuditCheckpoint(cp) => Prepared::Put {
                    key: keys::seq(keys::CHECKPOINT, cp.seq),
                    value: encode("audit checkpoint", &cp)?,
                },
            })
        })
        .collect()
}

#[cfg(feature = "tamper")]
impl<R: Reader> Core<R> {
    /// Test support (`tamper`): applies raw key edits through the writer's atomic durable write,
    /// bypassing `prepare`, numbering and chaining (no counter moves).
    pub(crate) fn raw_apply(
        &self,
        edits: Vec<Prepared>,
    ) -> BoxFuture<'static, Result<CommitReceipt, StoreError>> {
        let shared = Arc::clone(&self.shared);
        let (reply, rx) = oneshot::channel();
        let sent = match &*self.tx.read().unwrap_or_else(PoisonError::into_inner) {
            Some(tx) => tx
                .send(Job {
                    mutations: edits,
                    reply,
                })
                .is_ok(),
            None => false,
        };
        Box::pin(async move {
            if !sent {
                return Err(shared.stopped_error());
            }
            rx.await.unwrap_or_else(|_| Err(shared.stopped_error()))
        })
    }

    /// Test support (`tamper`): the raw value under `key`.
    pub(crate) fn raw_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.reader.get(key)
    }
}

impl<R: Reader> Store for Core<R> {
    fn commit(
        &self,
        batch: Vec<Mutation>,
    ) -> BoxFuture<'static, Result<CommitReceipt, StoreError>> {
        let shared = Arc::clone(&self.shared);
        if shared.failed.load(Ordering::SeqCst) {
            let err = shared.stopped_error();
            return Box::pin(async move { Err(err) });
        }
        let mutations = match prepare(batch) {
            Ok(m) => m,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let (reply, rx) = oneshot::channel();
        let sent = match &*self.tx.read().unwrap_or_else(PoisonError::into_inner) {
            Some(tx) => tx.send(Job { mutations, reply }).is_ok(),
            None => false,
        };
        if !sent {
            let err = shared.stopped_error();
            return Box::pin(async move { Err(err) });
        }
        Box::pin(async move {
            match rx.await {
                Ok(result) => result,
                Err(_) => Err(shared.stopped_error()),
            }
        })
    }

    fn subject(&self, subject: &str) -> Result<Option<SubjectState>, StoreError> {
        let key = keys::subject(subject);
        self.reader.get(&key)?.map(|v| decode(&key, &v)).transpose()
    }

    fn subject_scan(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SubjectState>, StoreError> {
        // The smallest key after `subj:{after}` is `subj:{after}\0`.
        let start = match after {
            None => keys::SUBJECT.to_vec(),
            Some(a) => {
                let mut k = keys::subject(a);
                k.push(0);
                k
            }
        };
        self.reader
            .scan(&start, &keys::prefix_end(keys::SUBJECT), limit)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    fn binding(&self, target: &str, subject: &str) -> Result<Option<String>, StoreError> {
        let key = keys::bind(target, subject);
        self.reader
            .get(&key)?
            .map(|v| String::from_utf8(v).map_err(|_| corrupt(&key, "resource id is not UTF-8")))
            .transpose()
    }

    fn binding_count(&self, target: &str) -> Result<u64, StoreError> {
        let prefix = keys::bind_prefix(target);
        let mut n = 0u64;
        self.reader
            .for_each_key(&prefix, &keys::prefix_end(&prefix), &mut |_| {
                n += 1;
                Ok(())
            })?;
        Ok(n)
    }

    fn queue_scan(
        &self,
        target: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<QueuedOp>, StoreError> {
        self.scan_decoded(&keys::queue_prefix(target), after, limit)
            .map(|ops| {
                ops.into_iter()
                    .map(|(seq, op)| QueuedOp { seq, op })
                    .collect()
            })
    }

    fn queue_origins(
        &self,
        target: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Option<scimflow_core::partition::SourcePosition>)>, StoreError> {
        /// Only the source position of a queued operation; serde skips the other fields
        /// without building them.
        #[derive(serde::Deserialize)]
        struct Origin {
            #[serde(default)]
            origin: Option<scimflow_core::partition::SourcePosition>,
        }
        self.scan_decoded::<Origin>(&keys::queue_prefix(target), after, limit)
            .map(|v| v.into_iter().map(|(seq, o)| (seq, o.origin)).collect())
    }

    fn queue_len(&self, target: &str) -> Result<u64, StoreError> {
        let lens = self
            .shared
            .queue_lens
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(lens.get(target).copied().unwrap_or(0))
    }

    fn log_scan(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.scan_seq(keys::LOG, after, limit)
    }

    fn log_consumed(&self) -> Result<Option<u64>, StoreError> {
        self.reader
            .get(keys::LOG_CONSUMED)?
            .map(|v| {
                keys::decode_u64(&v)
                    .ok_or_else(|| corrupt(keys::LOG_CONSUMED, "cursor is not 8 bytes"))
            })
            .transpose()
    }

    fn audit_scan(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self
            .scan_decoded::<AuditRecord>(keys::AUDIT, after, limit)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    fn rejected_scan(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, RejectedEvent)>, StoreError> {
        self.scan_decoded(keys::REJECTED, after, limit)
    }

    fn audit_last(&self) -> Result<Option<AuditRecord>, StoreError> {
        self.reader
            .last(keys::AUDIT, &keys::prefix_end(keys::AUDIT))?
            .map(|(k, v)| decode(&k, &v))
            .transpose()
    }

    fn audit_assigned(&self) -> Result<u64, StoreError> {
        Ok(stored_counter(&self.reader, keys::SEQ_AUDIT)?
            .max(highest_seq(&self.reader, keys::AUDIT)?))
    }

    fn audit_scan_raw(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.scan_seq(keys::AUDIT, after, limit)
    }

    fn audit_checkpoints(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditCheckpoint>, StoreError> {
        Ok(self
            .scan_decoded::<AuditCheckpoint>(keys::CHECKPOINT, after, limit)?
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }

    fn dead_letter_scan(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, StoreError> {
        self.scan_decoded(keys::DEAD_LETTER, after, limit)
    }

    fn scheduled_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ScheduledOp>, StoreError> {
        let mut all = self.scheduled_under(keys::SCHEDULED)?;
        all.retain(|s| s.due <= now);
        all.truncate(limit);
        Ok(all)
    }

    fn scheduled_list(
        &self,
        target: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ScheduledOp>, StoreError> {
        let prefix = match target {
            Some(t) => keys::scheduled_prefix(t),
            None => keys::SCHEDULED.to_vec(),
        };
        let mut all = self.scheduled_under(&prefix)?;
        all.truncate(limit);
        Ok(all)
    }

    fn scheduled_get(
        &self,
        target: &str,
        subject: &str,
        slot: &str,
    ) -> Result<Option<ScheduledOp>, StoreError> {
        let key = keys::scheduled(target, subject, slot);
        self.reader.get(&key)?.map(|v| decode(&key, &v)).transpose()
    }
}

/// Implements [`Store`] and [`crate::ManagedStore`] for an engine handle `$ty { inner: Arc<Core<_>> }`.
macro_rules! delegate_store {
    ($ty:ty) => {
        impl scimflow_core::store::Store for $ty {
            fn commit(
                &self,
                batch: Vec<scimflow_core::store::Mutation>,
            ) -> scimflow_core::store::BoxFuture<
                'static,
                Result<scimflow_core::store::CommitReceipt, scimflow_core::store::StoreError>,
            > {
                self.inner.commit(batch)
            }
            fn subject(
                &self,
                subject: &str,
            ) -> Result<Option<scimflow_core::SubjectState>, scimflow_core::store::StoreError> {
                self.inner.subject(subject)
            }
            fn subject_scan(
                &self,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<scimflow_core::SubjectState>, scimflow_core::store::StoreError> {
                self.inner.subject_scan(after, limit)
            }
            fn binding(
                &self,
                target: &str,
                subject: &str,
            ) -> Result<Option<String>, scimflow_core::store::StoreError> {
                self.inner.binding(target, subject)
            }
            fn binding_count(&self, target: &str) -> Result<u64, scimflow_core::store::StoreError> {
                self.inner.binding_count(target)
            }
            fn queue_scan(
                &self,
                target: &str,
                after: Option<u64>,
                limit: usize,
            ) -> Result<Vec<scimflow_core::QueuedOp>, scimflow_core::store::StoreError> {
                self.inner.queue_scan(target, after, limit)
            }
            fn queue_origins(
                &self,
                target: &str,
                after: Option<u64>,
                limit: usize,
            ) -> Result<
                Vec<(u64, Option<scimflow_core::partition::SourcePosition>)>,
                scimflow_core::store::StoreError,
            > {
                self.inner.queue_origins(target, after, limit)
            }
            fn queue_len(&self, target: &str) -> Result<u64, scimflow_core::store::StoreError> {
                self.inner.queue_len(target)
            }
            fn log_scan(
                &self,
                after: Option<u64>,
                limit: usize,
            ) -> Result<Vec<(u64, Vec<u8>)>, scimflow_core::store::StoreError> {
                self.inner.log_scan(after, limit)
            }
            fn log_consumed(&self) -> Result<Option<u64>, scimflow_core::store::StoreError> {
                self.inner.log_consumed()
            }
            fn audit_scan(
                &self,
                after: Option<u64>,
                limit: usize,
            ) -> Result<Vec<scimflow_core::AuditRecord>, scimflow_core::store::StoreError> {
                self.inner.audit_scan(after, limit)
            }
            fn audit_last(
                &self,
            ) -> Result<Option<scimflow_core::AuditRecord>, scimflow_core::store::StoreError> {
                self.inner.audit_last()
            }
            fn audit_assigned(&self) -> Result<u64, scimflow_core::store::StoreError> {
                self.inner.audit_assigned()
            }
            fn audit_scan_raw(
                &self,
                after: Option<u64>,
                limit: usize,
            ) -> Result<Vec<(u64, Vec<u8>)>, scimflow_core::store::StoreError> {
                self.inner.audit_scan_raw(after, limit)
            }
            fn audit_checkpoints(
                &self,
                after: Option<u64>,
                limit: usize,
            ) -> Result<Vec<scimflow_core::AuditCheckpoint>, scimflow_core::store::StoreError> {
                self.inner.audit_checkpoints(after, limit)
            }
            fn rejected_scan(
                &self,
                after: Option<u64>,
                limit: usize,
            ) -> Result<Vec<(u64, scimflow_core::RejectedEvent)>, scimflow_core::store::StoreError>
            {
                self.inner.rejected_scan(after, limit)
            }
            fn dead_letter_scan(
                &self,
                after: Option<u64>,
                limit: usize,
            ) -> Result<
                Vec<(u64, scimflow_core::store::DeadLetter)>,
                scimflow_core::store::StoreError,
            > {
                self.inner.dead_letter_scan(after, limit)
            }
            fn scheduled_due(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: usize,
            ) -> Result<Vec<scimflow_core::ScheduledOp>, scimflow_core::store::StoreError> {
                self.inner.scheduled_due(now, limit)
            }
            fn scheduled_list(
                &self,
                target: Option<&str>,
                limit: usize,
            ) -> Result<Vec<scimflow_core::ScheduledOp>, scimflow_core::store::StoreError> {
                self.inner.scheduled_list(target, limit)
            }
            fn scheduled_get(
                &self,
                target: &str,
                subject: &str,
                slot: &str,
            ) -> Result<Option<scimflow_core::ScheduledOp>, scimflow_core::store::StoreError> {
                self.inner.scheduled_get(target, subject, slot)
            }
        }

        impl $crate::ManagedStore for $ty {
            fn healthy(&self) -> bool {
                self.inner.healthy()
            }
            fn last_error(&self) -> Option<String> {
                self.inner.last_error()
            }
            fn close(&self) {
                self.inner.close()
            }
            fn stats(&self) -> $crate::StoreStats {
                self.inner.stats()
            }
            fn engine(&self) -> $crate::Engine {
                self.inner.engine()
            }
        }
    };
}
pub(crate) use delegate_store;
