//! The storage engines behind scimflow's storage port ([`scimflow_core::store::Store`]); the only
//! crate that touches sled or redb.
//!
//! Two engines implement the port with the same semantics and the same key layout:
//!
//! * [`SledStore`] (sled 0.34, the default) — data in the store directory itself;
//! * [`RedbStore`] (redb 5: stable file format, fsync on commit) — data in `{dir}/scimflow.redb`.
//!
//! Both keep the durable queue per target, the subject → resource-id bindings, the latest state per
//! subject, rejected inputs, dead letters, the hash-chained audit log, the embedded event log and the
//! scheduled (effective-dated) operations. [`open`] picks an engine at run time ([`Engine`]) and
//! returns it as a [`ManagedStore`]. Everything engine-independent — key encoding (`keys`), the
//! encoding of mutations (`engine::prepare`), counter and queue-length recovery, the writer thread,
//! receipts and audit chaining (`writer`) — is shared; an engine only supplies reads
//! (`engine::Reader`) and one atomic durable write per group (`engine::Durable`).
//!
//! # Invariants (both engines)
//!
//! * **One writer.** Every [`Store::commit`] is sent to one dedicated OS thread (both engines'
//!   syncs block, so it is not a tokio task). The thread takes the first waiting batch, drains
//!   whatever else is queued (up to [`StoreOptions::max_batch_mutations`] mutations), applies all of
//!   them as **one** atomic write — sled: one `sled::Batch` then one `flush()`; redb: one write
//!   transaction committed with `Durability::Immediate` — and only then resolves each waiting commit
//!   with its own [`CommitReceipt`](scimflow_core::store::CommitReceipt). Batches are applied in
//!   submission order. A process crash therefore leaves every commit either fully present or fully
//!   absent, and every acknowledged commit present.
//! * **Durability.** sled 0.34's `flush()` uses `sync_file_range`: an acknowledged commit survives a
//!   process crash (kill -9) but is not guaranteed to survive power loss (upstream sled#1452).
//!   `flush_async` is never used (concurrent calls can deadlock, upstream sled#1308). redb's
//!   `Durability::Immediate` commit fsyncs the file before it returns, so an acknowledged commit also
//!   survives power loss (given a disk that honours flushes).
//! * **Failure stops intake.** If building, applying or syncing a group fails (disk full, I/O error),
//!   every waiting and every later commit resolves to [`StoreError::Io`]; [`ManagedStore::healthy`]
//!   turns false and [`ManagedStore::last_error`] says why. Nothing is reported durable that was not
//!   synced. Restarting the process recovers from what is on disk. (sled only: a batch that was
//!   applied but whose flush failed may be visible to reads of this process although it was never
//!   acknowledged. A failed redb transaction is aborted and never visible.)
//! * **Sequence numbers never go backwards**, across restarts too: each counter is stored in the same
//!   atomic write as the entries that used it, and on open it is recovered as the larger of the
//!   stored counter and the highest stored key. The audit sequence and the last audit hash are
//!   recovered from the last audit record.
//! * **One store per database.** sled: opening a directory that another [`SledStore`] of this
//!   process still holds fails. Because sled 0.34 may keep its directory lock after the last handle
//!   is dropped (epoch-deferred frees), a process keeps every sled database it opened open until it
//!   exits, and reopening the same directory in the same process reuses it (with a new writer and
//!   counters recovered from the data). Other processes are kept out by sled's file lock. redb: the
//!   file is locked while a [`RedbStore`] has it open (a second open, from any process, fails) and
//!   released when the last clone is dropped.
//! * **One engine per directory.** Opening a directory that holds the other engine's data (sled's
//!   `conf`/`db` files, or `scimflow.redb`) fails with an error naming both engines.
//! * **Reads** see every committed group (sled: direct tree reads; redb: one short read transaction
//!   per call). [`Store::queue_len`] is an O(1) in-memory count, computed by one key scan on open and
//!   updated by the writer after each durable group.
//!
//! # Key layout, version 1
//!
//! The same keys and values in both engines: one sled tree named `v1`, or one redb table named `v1`
//! (`TableDefinition<&[u8], &[u8]>`) in the file `{dir}/scimflow.redb`. `BE` = 8-byte big-endian
//! `u64`, so byte order is numeric order. Target names (and the subject and slot of a scheduled
//! operation) must not contain a NUL byte (it separates the parts of a key); such mutations are
//! refused. Every entry is written by the writer thread; the column "written by" names the
//! [`Mutation`](scimflow_core::store::Mutation) that causes it.
//!
//! | prefix | key encoding | value encoding | written by |
//! |---|---|---|---|
//! | `meta:layout` | literal | ASCII `1` (layout version) | opening an empty store |
//! | `meta:seq:queue` | literal | BE: last queue position (shared by all targets) | any batch with `Enqueue` |
//! | `meta:seq:log` | literal | BE: last embedded-log sequence number | any batch with `LogAppend` |
//! | `meta:seq:rejected` | literal | BE: last rejected-input position | any batch with `Reject` |
//! | `meta:seq:dead_letter` | literal | BE: last dead-letter position | any batch with `DeadLetter` |
//! | `meta:seq:audit` | literal | BE: last audit sequence number (kept when records are deleted, so truncation shows) | any batch with `Audit` |
//! | `meta:log_consumed` | literal | BE: highest `upto` ever consumed | `LogConsumed` |
//! | `subj:` | `subj:{subject}` | [`SubjectState`](scimflow_core::SubjectState) JSON | `PutSubject` |
//! | `q:` | `q:{target}\0{seq BE}` | [`Operation`](scimflow_core::Operation) JSON | `Enqueue` (insert), `Requeue` (overwrite if present: a parked retry's state), `Dequeue` (remove) |
//! | `bind:` | `bind:{target}\0{subject}` | resource id, UTF-8 | `Bind` (insert), `Unbind` (remove) |
//! | `audit:` | `audit:{seq BE}`, from 1 | [`AuditRecord`](scimflow_core::AuditRecord) JSON, chained with `AuditRecord::chain` | `Audit` |
//! | `rej:` | `rej:{seq BE}`, from 1 | [`RejectedEvent`](scimflow_core::RejectedEvent) JSON | `Reject` |
//! | `dl:` | `dl:{seq BE}`, from 1 | [`DeadLetter`](scimflow_core::store::DeadLetter) JSON | `DeadLetter` (insert), `RemoveDeadLetter` (remove) |
//! | `log:` | `log:{seq BE}`, from 1 | raw event bytes | `LogAppend` (insert), `LogConsumed` (remove `<= upto`) |
//! | `sched:` | `sched:{target}\0{subject}\0{slot}` | [`ScheduledOp`](scimflow_core::ScheduledOp) JSON | `Schedule` (insert/replace), `Unschedule` (remove) |
//! | `ckpt:` | `ckpt:{seq BE}`: the audit record it covers | [`AuditCheckpoint`](scimflow_core::AuditCheckpoint) JSON (Ed25519-signed by the daemon) | `AuditCheckpoint` (insert/replace) |
//!
//! Opening refuses a `meta:layout` other than `1`, a non-empty `v1` tree/table without
//! `meta:layout`, and a database holding trees (sled) or tables (redb) other than `v1` (a newer
//! layout), so a newer store is never silently treated as empty. A new layout gets a new tree/table
//! (`v2`) and a migration. Keeping one ordered key space in redb too (rather than one table per
//! prefix) keeps the layout, its encoding and its recovery code identical across engines; redb's
//! stable file format is what the redb engine adds.
//!
//! # Conformance
//!
//! With the `conformance` feature, `scimflow_store::conformance` holds the engine-independent
//! behaviour suite that every [`Store`] implementation must pass; this crate runs it against both
//! engines.

use std::path::Path;
use std::sync::Arc;

use scimflow_core::store::{Store, StoreError};

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod engine;
mod keys;
mod redb_engine;
mod sled_engine;
#[cfg(feature = "tamper")]
pub mod tamper;
mod writer;

pub use redb_engine::{RedbStore, REDB_FILE};
pub use sled_engine::SledStore;

/// Tuning of a store (both engines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Most mutations the writer groups into one atomic write and one sync. A single commit larger
    /// than this is still applied whole, on its own.
    pub max_batch_mutations: usize,
    /// Page-cache size in bytes (sled's cache capacity, redb's cache size).
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
    /// Groups of commits applied and synced (one sync each).
    pub batches_flushed: u64,
    /// Mutations in acknowledged commits.
    pub mutations: u64,
}

/// A storage engine that [`open`] can start.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// sled 0.34: survives a process crash; not guaranteed across power loss.
    #[default]
    Sled,
    /// redb 5: stable file format; fsync on every group commit.
    Redb,
}

impl Engine {
    /// The name used in configuration and messages: `sled` or `redb`.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sled => "sled",
            Engine::Redb => "redb",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sled" => Ok(Engine::Sled),
            "redb" => Ok(Engine::Redb),
            other => Err(format!(
                "unknown storage engine `{other}` (expected `sled` or `redb`)"
            )),
        }
    }
}

/// A [`Store`] plus what the daemon needs to run it: health, shutdown, counters (and `Debug`).
pub trait ManagedStore: Store + std::fmt::Debug {
    /// Whether the writer is still accepting work (false after a write or sync failed).
    fn healthy(&self) -> bool;
    /// The failure that stopped the writer, if any.
    fn last_error(&self) -> Option<String>;
    /// Stops the writer after every batch already submitted is durable, and waits for it. Later
    /// commits fail with [`StoreError::Closed`]; reads keep working; calling it again does nothing.
    fn close(&self);
    /// Writer counters since open.
    fn stats(&self) -> StoreStats;
    /// Which engine this is.
    fn engine(&self) -> Engine;
}

/// Opens (or creates) a store of `engine` in directory `dir` and starts its writer.
///
/// sled keeps its files in `dir` itself; redb keeps one file, `dir/scimflow.redb`. A directory that
/// holds the other engine's data is refused.
pub fn open(
    engine: Engine,
    dir: &Path,
    opts: StoreOptions,
) -> Result<Arc<dyn ManagedStore>, StoreError> {
    Ok(match engine {
        Engine::Sled => Arc::new(SledStore::open(dir, opts)?),
        Engine::Redb => Arc::new(RedbStore::open(dir, opts)?),
    })
}

/// Files sled 0.34 creates in its directory.
const SLED_MARKERS: [&str; 2] = ["conf", "db"];

/// Fails if `dir` holds data of the engine other than `engine`.
fn refuse_other_engine(engine: Engine, dir: &Path) -> Result<(), StoreError> {
    let (other, found) = match engine {
        Engine::Sled => (Engine::Redb, dir.join(REDB_FILE).exists()),
        Engine::Redb => (
            Engine::Sled,
            SLED_MARKERS.iter().any(|f| dir.join(f).exists()),
        ),
    };
    if found {
        return Err(StoreError::Io(format!(
            "the store directory {} holds {other} data, but the {engine} engine was selected; \
             select `engine: {other}` to use that data, or give the {engine} engine an empty directory \
             (there is no automatic migration between engines)",
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
