//! The sled engine behind scimflow's storage port ([`scimflow_core::store::Store`]); the only crate
//! that touches sled.
//!
//! [`SledStore`] keeps the durable queue per target, the subject → resource-id bindings, the latest
//! state per subject, rejected inputs, dead letters, the hash-chained audit log and the embedded event
//! log. sled is pre-1.0 and promises no on-disk format, so everything lives in one tree whose name is
//! the layout version, and a version marker is checked on open.
//!
//! # Invariants
//!
//! * **One writer.** Every [`Store::commit`] is sent to one dedicated OS thread (sled's flush blocks,
//!   so it is not a tokio task). The thread takes the first waiting batch, drains whatever else is
//!   queued (up to [`StoreOptions::max_batch_mutations`] mutations), applies all of them as **one**
//!   atomic `sled::Batch`, calls `flush()` **once**, and only then resolves each waiting commit with its
//!   own [`CommitReceipt`]. Batches are applied in submission order. A process crash therefore leaves
//!   every commit either fully present or fully absent, and every acknowledged commit present.
//! * **Durability.** sled 0.34's `flush()` uses `sync_file_range`: an acknowledged commit survives a
//!   process crash (kill -9) but is not guaranteed to survive power loss (upstream sled#1452).
//!   `flush_async` is never used (concurrent calls can deadlock, upstream sled#1308).
//! * **Failure stops intake.** If applying or flushing fails (disk full, I/O error), every waiting and
//!   every later commit resolves to [`StoreError::Io`]; [`SledStore::healthy`] turns false and
//!   [`SledStore::last_error`] says why. Nothing is reported durable that was not flushed. Restarting
//!   the process recovers from what is on disk. (A batch that was applied but whose flush failed may be
//!   visible to reads of this process although it was never acknowledged.)
//! * **Sequence numbers never go backwards**, across restarts too: each counter is stored in the same
//!   atomic batch as the entries that used it, and on open it is recovered as the larger of the stored
//!   counter and the highest stored key. The audit sequence and the last audit hash are recovered from
//!   the last audit record.
//! * **One store per database.** Opening a directory that another [`SledStore`] of this process
//!   still holds fails. Because sled 0.34 may keep its directory lock after the last handle is
//!   dropped (epoch-deferred frees), a process keeps every sled database it opened open until it
//!   exits, and reopening the same directory in the same process reuses it (with a new writer and
//!   counters recovered from the data). Other processes are kept out by sled's file lock.
//! * **Reads** are direct sled reads and see every applied batch; [`Store::queue_len`] is an O(1)
//!   in-memory count, computed by one scan on open and updated by the writer after each flush.
//!
//! # Key layout, version 1
//!
//! One sled tree named `v1`. `BE` = 8-byte big-endian `u64`, so byte order is numeric order. Target
//! names must not contain a NUL byte (it separates the target from the rest of the key). Every entry is
//! written by the writer thread; the column "written by" names the [`Mutation`] that causes it.
//!
//! | prefix | key encoding | value encoding | written by |
//! |---|---|---|---|
//! | `meta:layout` | literal | ASCII `1` (layout version) | [`SledStore::open`] of an empty store |
//! | `meta:seq:queue` | literal | BE: last queue position (shared by all targets) | any batch with `Enqueue` |
//! | `meta:seq:log` | literal | BE: last embedded-log sequence number | any batch with `LogAppend` |
//! | `meta:seq:rejected` | literal | BE: last rejected-input position | any batch with `Reject` |
//! | `meta:seq:dead_letter` | literal | BE: last dead-letter position | any batch with `DeadLetter` |
//! | `meta:log_consumed` | literal | BE: highest `upto` ever consumed | `LogConsumed` |
//! | `subj:` | `subj:{subject}` | [`SubjectState`] JSON | `PutSubject` |
//! | `q:` | `q:{target}\0{seq BE}` | [`Operation`](scimflow_core::Operation) JSON | `Enqueue` (insert), `Dequeue` (remove) |
//! | `bind:` | `bind:{target}\0{subject}` | resource id, UTF-8 | `Bind` (insert), `Unbind` (remove) |
//! | `audit:` | `audit:{seq BE}`, from 1 | [`AuditRecord`] JSON, chained with `AuditRecord::chain` | `Audit` |
//! | `rej:` | `rej:{seq BE}`, from 1 | [`RejectedEvent`] JSON | `Reject` |
//! | `dl:` | `dl:{seq BE}`, from 1 | [`DeadLetter`] JSON | `DeadLetter` |
//! | `log:` | `log:{seq BE}`, from 1 | raw event bytes | `LogAppend` (insert), `LogConsumed` (remove `<= upto`) |
//!
//! Opening refuses a `meta:layout` other than `1`, a non-empty `v1` tree without `meta:layout`, and a
//! database holding trees other than `v1` (a newer layout), so a newer store is never silently
//! treated as empty. A new layout gets a new tree (`v2`) and a migration.
//!
//! # Conformance
//!
//! With the `conformance` feature, `scimflow_store::conformance` holds the engine-independent behaviour suite that
//! every [`Store`] implementation must pass.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use scimflow_core::audit::GENESIS_HASH;
use scimflow_core::store::{BoxFuture, CommitReceipt, DeadLetter, Mutation, Store, StoreError};
use scimflow_core::{AuditRecord, QueuedOp, RejectedEvent, ScheduledOp, SubjectState};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod keys;
mod writer;

use writer::{Counters, Job, Prepared, Shared, Writer};

/// Tuning of a [`SledStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Most mutations the writer groups into one atomic batch and one flush. A single commit larger
    /// than this is still applied whole, on its own.
    pub max_batch_mutations: usize,
    /// sled page-cache size in bytes.
    pub cache_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_batch_mutations: 4096,
            cache_bytes: 128 * 1024 * 1024,
        }
    }
}

/// Cumulative writer counters since open (for metrics and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Commits acknowledged as durable.
    pub commits: u64,
    /// Groups of commits applied and flushed (one flush each).
    pub batches_flushed: u64,
    /// Mutations in acknowledged commits.
    pub mutations: u64,
}

/// The sled storage engine. Cheap to clone: all clones share one database and one writer thread.
///
/// Dropping the last clone closes the store like [`SledStore::close`].
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

struct Inner {
    tree: sled::Tree,
    shared: Arc<Shared>,
    /// `None` once closed.
    tx: RwLock<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Released (after the writer has stopped) when this is dropped.
    _claim: DbClaim,
    /// The whole database, for tests that plant foreign data.
    #[cfg(test)]
    db: sled::Db,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("healthy", &self.healthy())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn io_err(what: impl std::fmt::Display, e: sled::Error) -> StoreError {
    StoreError::Io(format!("{what} failed: {e}"))
}

fn corrupt(key: &[u8], reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        key: keys::display(key),
        reason: reason.into(),
    }
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| corrupt(key, format!("undecodable JSON value: {e}")))
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Io(format!("encoding {what} failed: {e}")))
}

impl SledStore {
    /// Opens (or creates) the store in directory `path` and starts its writer thread.
    ///
    /// Fails with [`StoreError::Io`] if sled cannot open the directory (for example because another
    /// process holds it, or another [`SledStore`] of this process still has it open) and with [`StoreError::Corrupt`] if the data has an unknown layout or
    /// unreadable counters.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<SledStore, StoreError> {
        let (db, claim) = claim_db(path, &opts)?;
        for name in db.tree_names() {
            if &*name != b"__sled__default" && &*name != keys::TREE.as_bytes() {
                return Err(corrupt(
                    &name,
                    format!(
                        "the store at {} holds tree `{}`, which this build does not know (a newer key layout?); \
                         refusing to open it; use a matching scimflow version",
                        path.display(),
                        keys::display(&name)
                    ),
                ));
            }
        }
        let tree = db
            .open_tree(keys::TREE)
            .map_err(|e| io_err("opening the sled tree `v1`", e))?;
        match tree.get(keys::LAYOUT).map_err(|e| io_err("reading the layout version", e))? {
            Some(v) if &*v == keys::LAYOUT_VERSION => {}
            Some(v) => {
                return Err(corrupt(
                    keys::LAYOUT,
                    format!(
                        "unknown key layout version `{}` (this build reads layout 1); refusing to open the store at {}",
                        keys::display(&v),
                        path.display()
                    ),
                ))
            }
            None if tree.is_empty() => {
                tree.insert(keys::LAYOUT, keys::LAYOUT_VERSION)
                    .map_err(|e| io_err("writing the layout version", e))?;
                tree.flush()
                    .map_err(|e| io_err("flushing the new store", e))?;
            }
            None => {
                return Err(corrupt(
                    keys::LAYOUT,
                    "the layout version is missing from a non-empty store; refusing to guess",
                ))
            }
        }

        let (queue_lens, highest_queue_seq) = count_queues(&tree)?;
        let counters = recover_counters(&tree, highest_queue_seq)?;
        tracing::info!(
            path = %path.display(),
            recovered = db.was_recovered(),
            queue_seq = counters.queue,
            log_seq = counters.log,
            audit_seq = counters.audit,
            queued = queue_lens.values().sum::<u64>(),
            "opened sled store"
        );

        let shared = Arc::new(Shared {
            queue_lens: RwLock::new(queue_lens),
            ..Shared::default()
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            tree: tree.clone(),
            shared: Arc::clone(&shared),
            counters,
            max_batch_mutations: opts.max_batch_mutations.max(1),
        };
        let handle = std::thread::Builder::new()
            .name("scimflow-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Io(format!("starting the store writer thread failed: {e}")))?;
        Ok(SledStore {
            inner: Arc::new(Inner {
                tree,
                shared,
                tx: RwLock::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
                _claim: claim,
                #[cfg(test)]
                db,
            }),
        })
    }

    /// Whether the writer is still accepting work (false after a write or flush failed).
    pub fn healthy(&self) -> bool {
        !self.inner.shared.failed.load(Ordering::SeqCst)
    }

    /// The failure that stopped the writer, if any.
    pub fn last_error(&self) -> Option<String> {
        self.inner.shared.last_error()
    }

    /// Writer counters since open.
    pub fn stats(&self) -> StoreStats {
        let s = &self.inner.shared;
        StoreStats {
            commits: s.commits.load(Ordering::Relaxed),
            batches_flushed: s.batches_flushed.load(Ordering::Relaxed),
            mutations: s.mutations.load(Ordering::Relaxed),
        }
    }

    /// Stops the writer after it has applied and flushed every batch already submitted, and waits
    /// for it (blocking the calling thread for at most one group commit). Later commits, from any
    /// clone, fail with [`StoreError::Closed`]. Reads keep working. Calling it again does nothing.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Test hook: the next group commit fails (before applying anything) as if the disk were full.
    #[cfg(test)]
    pub(crate) fn fail_next_flush(&self) {
        self.inner
            .shared
            .fail_next_flush
            .store(true, Ordering::SeqCst);
    }

    /// Test hook: the underlying sled database.
    #[cfg(test)]
    pub(crate) fn raw_db(&self) -> &sled::Db {
        &self.inner.db
    }

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.inner
            .tree
            .get(key)
            .map_err(|e| io_err(format_args!("reading key {}", keys::display(key)), e))
    }

    /// Up to `limit` entries of `{prefix}{seq BE}` keys with a sequence number after `after`.
    fn scan_seq(
        &self,
        prefix: &[u8],
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, sled::IVec)>, StoreError> {
        let start = match after {
            None => prefix.to_vec(),
            Some(a) => match a.checked_add(1) {
                Some(next) => keys::seq(prefix, next),
                None => return Ok(Vec::new()),
            },
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in self
            .inner
            .tree
            .range(start..keys::prefix_end(prefix))
            .take(limit)
        {
            let (key, value) = item.map_err(|e| {
                io_err(
                    format_args!("scanning `{}` entries", keys::display(prefix)),
                    e,
                )
            })?;
            let seq = keys::seq_of(prefix, &key)
                .ok_or_else(|| corrupt(&key, "key does not end in an 8-byte sequence number"))?;
            out.push((seq, value));
        }
        Ok(out)
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
}

impl Inner {
    fn close(&self) {
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
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

/// sled databases opened by this process, by canonical path.
///
/// sled 0.34 does not reliably release a database's directory lock when its last handle is dropped:
/// part of its state is freed through epoch-deferred destruction that may never run on idle threads,
/// leaving the lock file open. So a database, once opened, stays open until the process exits, and a
/// later [`SledStore::open`] of the same path in this process reuses it (after the previous store is
/// dropped). `in_use` enforces one store, and so one writer, per database.
static OPEN_DBS: Mutex<BTreeMap<PathBuf, OpenDb>> = Mutex::new(BTreeMap::new());

struct OpenDb {
    db: sled::Db,
    in_use: bool,
}

/// Marks `path` free again in [`OPEN_DBS`] when dropped.
struct DbClaim(PathBuf);

impl Drop for DbClaim {
    fn drop(&mut self) {
        let mut dbs = OPEN_DBS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = dbs.get_mut(&self.0) {
            entry.in_use = false;
        }
    }
}

/// Opens (or reuses) the sled database at `path` and claims it for one store.
fn claim_db(path: &Path, opts: &StoreOptions) -> Result<(sled::Db, DbClaim), StoreError> {
    let failed = |what: &str, e: std::io::Error| {
        StoreError::Io(format!("{what} {} failed: {e}", path.display()))
    };
    std::fs::create_dir_all(path).map_err(|e| failed("creating the store directory", e))?;
    let canonical =
        std::fs::canonicalize(path).map_err(|e| failed("resolving the store directory", e))?;
    let mut dbs = OPEN_DBS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(entry) = dbs.get_mut(&canonical) {
        if entry.in_use {
            return Err(StoreError::Io(format!(
                "the store at {} is already open in this process; close it first",
                path.display()
            )));
        }
        entry.in_use = true;
        return Ok((entry.db.clone(), DbClaim(canonical)));
    }
    let db = sled::Config::new()
        .path(&canonical)
        .cache_capacity(opts.cache_bytes)
        .open()
        .map_err(|e| {
            io_err(
                format_args!(
                    "opening the sled store at {} (is another scimflow process using it?)",
                    path.display()
                ),
                e,
            )
        })?;
    dbs.insert(
        canonical.clone(),
        OpenDb {
            db: db.clone(),
            in_use: true,
        },
    );
    Ok((db, DbClaim(canonical)))
}

/// Reads a BE counter stored under `key`.
fn stored_counter(tree: &sled::Tree, key: &[u8]) -> Result<u64, StoreError> {
    match tree
        .get(key)
        .map_err(|e| io_err(format_args!("reading counter {}", keys::display(key)), e))?
    {
        None => Ok(0),
        Some(v) => keys::decode_u64(&v).ok_or_else(|| corrupt(key, "counter is not 8 bytes")),
    }
}

/// The highest sequence number among `{prefix}{seq BE}` keys.
fn highest_seq(tree: &sled::Tree, prefix: &[u8]) -> Result<u64, StoreError> {
    match tree
        .range(prefix.to_vec()..keys::prefix_end(prefix))
        .next_back()
    {
        None => Ok(0),
        Some(item) => {
            let (key, _) = item.map_err(|e| {
                io_err(
                    format_args!("reading the last `{}` entry", keys::display(prefix)),
                    e,
                )
            })?;
            keys::seq_of(prefix, &key)
                .ok_or_else(|| corrupt(&key, "key does not end in an 8-byte sequence number"))
        }
    }
}

fn recover_counters(tree: &sled::Tree, highest_queue_seq: u64) -> Result<Counters, StoreError> {
    let queue = stored_counter(tree, keys::SEQ_QUEUE)?.max(highest_queue_seq);
    let log = stored_counter(tree, keys::SEQ_LOG)?.max(highest_seq(tree, keys::LOG)?);
    let rejected =
        stored_counter(tree, keys::SEQ_REJECTED)?.max(highest_seq(tree, keys::REJECTED)?);
    let dead_letter =
        stored_counter(tree, keys::SEQ_DEAD_LETTER)?.max(highest_seq(tree, keys::DEAD_LETTER)?);
    let (audit, audit_hash) = match tree
        .range(keys::AUDIT.to_vec()..keys::prefix_end(keys::AUDIT))
        .next_back()
    {
        None => (0, GENESIS_HASH.to_owned()),
        Some(item) => {
            let (key, value) = item.map_err(|e| io_err("reading the last audit record", e))?;
            let record: AuditRecord = decode(&key, &value)?;
            if keys::seq_of(keys::AUDIT, &key) != Some(record.seq) {
                return Err(corrupt(&key, format!("holds audit record #{}", record.seq)));
            }
            (record.seq, record.hash)
        }
    };
    let log_consumed = match tree
        .get(keys::LOG_CONSUMED)
        .map_err(|e| io_err("reading the embedded-log cursor", e))?
    {
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

/// Queued operations per target, and the highest queue position present.
fn count_queues(tree: &sled::Tree) -> Result<(HashMap<String, u64>, u64), StoreError> {
    let mut lens: HashMap<String, u64> = HashMap::new();
    let mut highest = 0;
    for item in tree.scan_prefix(keys::QUEUE) {
        let (key, _) = item.map_err(|e| io_err("scanning the queues", e))?;
        let target =
            keys::queue_target(&key).ok_or_else(|| corrupt(&key, "malformed queue key"))?;
        *lens.entry(target.to_owned()).or_default() += 1;
        let seq = keys::decode_u64(&key[key.len() - 8..]).unwrap_or(0);
        highest = highest.max(seq);
    }
    Ok((lens, highest))
}

/// Checks a name used inside a key and rejects one that would make keys ambiguous.
fn check_target(target: &str) -> Result<(), StoreError> {
    if target.as_bytes().contains(&0) {
        return Err(StoreError::Io(format!(
            "refusing to store target name {target:?}: it contains a NUL byte, which the key layout reserves"
        )));
    }
    Ok(())
}

/// Encodes everything that does not depend on writer state, on the caller's thread.
fn prepare(batch: Vec<Mutation>) -> Result<Vec<Prepared>, StoreError> {
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
                    check_target(&sched.op.target)?;
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
                    check_target(&target)?;
                    Prepared::Remove {
                        key: keys::scheduled(&target, &subject, &slot),
                    }
                }
                Mutation::RemoveDeadLetter { seq } => Prepared::Remove {
                    key: keys::seq(keys::DEAD_LETTER, seq),
                },
            })
        })
        .collect()
}

impl Store for SledStore {
    fn commit(
        &self,
        batch: Vec<Mutation>,
    ) -> BoxFuture<'static, Result<CommitReceipt, StoreError>> {
        let shared = Arc::clone(&self.inner.shared);
        if shared.failed.load(Ordering::SeqCst) {
            let err = shared.stopped_error();
            return Box::pin(async move { Err(err) });
        }
        let mutations = match prepare(batch) {
            Ok(m) => m,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let (reply, rx) = oneshot::channel();
        let sent = match &*self.inner.tx.read().unwrap_or_else(PoisonError::into_inner) {
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
        self.get(&key)?.map(|v| decode(&key, &v)).transpose()
    }

    fn binding(&self, target: &str, subject: &str) -> Result<Option<String>, StoreError> {
        let key = keys::bind(target, subject);
        self.get(&key)?
            .map(|v| {
                String::from_utf8(v.to_vec()).map_err(|_| corrupt(&key, "resource id is not UTF-8"))
            })
            .transpose()
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

    fn queue_len(&self, target: &str) -> Result<u64, StoreError> {
        let lens = self
            .inner
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
        Ok(self
            .scan_seq(keys::LOG, after, limit)?
            .into_iter()
            .map(|(seq, v)| (seq, v.to_vec()))
            .collect())
    }

    fn log_consumed(&self) -> Result<Option<u64>, StoreError> {
        self.get(keys::LOG_CONSUMED)?
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
        self.get(&key)?.map(|v| decode(&key, &v)).transpose()
    }
}

impl SledStore {
    /// Every scheduled operation under `prefix`, earliest due first. Scheduled operations are few
    /// (future-dated changes), so a scan is cheaper than maintaining a second, time-ordered index.
    fn scheduled_under(&self, prefix: &[u8]) -> Result<Vec<ScheduledOp>, StoreError> {
        let mut out = Vec::new();
        for item in self.inner.tree.scan_prefix(prefix) {
            let (k, v) = item.map_err(|e| StoreError::Io(e.to_string()))?;
            out.push(decode::<ScheduledOp>(&k, &v)?);
        }
        out.sort_by(|a, b| a.due.cmp(&b.due));
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
