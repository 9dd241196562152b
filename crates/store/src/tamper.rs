//! Test support, behind the `tamper` feature: edits of the stored bytes that bypass the writer's
//! numbering and chaining, to prove that `scimflow audit verify` detects tampering on a real
//! on-disk store of either engine. Never enabled by the daemon.
//!
//! Every call opens the store in `dir` (it must not be open elsewhere), applies or reads, and closes
//! it again, releasing its file lock (another process may open it next). Edits of one call are
//! applied as one atomic, durable engine write.

use std::path::Path;

use scimflow_core::store::{BoxFuture, CommitReceipt, StoreError};

use crate::writer::Prepared;
use crate::{keys, Engine, RedbStore, SledStore, StoreOptions};

/// The engines' raw access (implemented by [`SledStore`] and [`RedbStore`] with this feature).
pub(crate) trait Raw {
    fn raw_apply(
        &self,
        edits: Vec<Prepared>,
    ) -> BoxFuture<'static, Result<CommitReceipt, StoreError>>;
    fn raw_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
}

/// Which stored entries an edit addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyspace {
    /// `audit:{seq BE}`: an [`AuditRecord`](scimflow_core::AuditRecord) as JSON.
    Audit,
    /// `ckpt:{seq BE}`: an [`AuditCheckpoint`](scimflow_core::AuditCheckpoint) as JSON.
    Checkpoint,
    /// `meta:seq:audit`: the highest assigned audit sequence number, 8 bytes BE (`seq` ignored).
    AuditCounter,
}

fn key(space: Keyspace, seq: u64) -> Vec<u8> {
    match space {
        Keyspace::Audit => keys::seq(keys::AUDIT, seq),
        Keyspace::Checkpoint => keys::seq(keys::CHECKPOINT, seq),
        Keyspace::AuditCounter => keys::SEQ_AUDIT.to_vec(),
    }
}

/// One raw edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawEdit {
    Put {
        space: Keyspace,
        seq: u64,
        value: Vec<u8>,
    },
    Remove {
        space: Keyspace,
        seq: u64,
    },
}

fn with_store<T: Send + 'static>(
    engine: Engine,
    dir: &Path,
    f: impl FnOnce(&dyn Raw) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let dir = dir.to_owned();
    // Own thread: callers may be inside a tokio runtime, and the edit's future needs one.
    std::thread::spawn(move || match engine {
        Engine::Sled => {
            let s = SledStore::open(&dir, StoreOptions::default())?;
            let r = f(&s);
            s.close();
            drop(s);
            // This process keeps sled databases open for reuse; let go, so that a `scimflow`
            // process can open this one next.
            crate::sled_engine::release(&dir);
            r
        }
        Engine::Redb => {
            let s = RedbStore::open(&dir, StoreOptions::default())?;
            let r = f(&s);
            s.close();
            r
        }
    })
    .join()
    .map_err(|_| StoreError::Io("the tamper thread panicked".into()))?
}

/// The stored bytes of one entry.
pub fn get(
    engine: Engine,
    dir: &Path,
    space: Keyspace,
    seq: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    with_store(engine, dir, move |s| s.raw_get(&key(space, seq)))
}

/// Applies `edits` as one atomic, durable write.
pub fn apply(engine: Engine, dir: &Path, edits: Vec<RawEdit>) -> Result<(), StoreError> {
    let prepared = edits
        .into_iter()
        .map(|e| match e {
            RawEdit::Put { space, seq, value } => Prepared::Put {
                key: key(space, seq),
                value,
            },
            RawEdit::Remove { space, seq } => Prepared::Remove {
                key: key(space, seq),
            },
        })
        .collect();
    with_store(engine, dir, move |s| {
        let fut = s.raw_apply(prepared);
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| StoreError::Io(format!("starting a runtime failed: {e}")))?
            .block_on(fut)
            .map(drop)
    })
}
