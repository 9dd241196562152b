//! The redb engine: [`RedbStore`]. Layout and guarantees are in the crate docs.

use std::path::Path;
use std::sync::Arc;

use redb::{
    DatabaseError, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle,
};
use scimflow_core::store::StoreError;

use crate::engine::{corrupt, delegate_store, Core, Durable, Entry, Reader, Txn};
use crate::{keys, Engine, StoreOptions, StoreStats};

/// Name of the database file inside the store directory.
pub const REDB_FILE: &str = "scimflow.redb";

/// The one table of layout version 1: the same keys and values as sled's `v1` tree.
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new(keys::TREE);

/// The redb storage engine. Cheap to clone: all clones share one database and one writer thread.
///
/// Dropping the last clone closes the store like [`RedbStore::close`] and releases the file.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Core<RedbReader>>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("healthy", &self.healthy())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn io(what: impl std::fmt::Display, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("{what} failed: {e}"))
}

/// Each read runs in its own short read transaction (a consistent snapshot of the last commit).
pub(crate) struct RedbReader {
    db: Arc<redb::Database>,
}

/// What the redb writer owns: the database it opens write transactions on.
struct RedbDurable {
    db: Arc<redb::Database>,
}

/// One group commit: the `v1` table of an open write transaction.
struct RedbTxn<'t> {
    table: redb::Table<'t, &'static [u8], &'static [u8]>,
}

impl RedbStore {
    /// Opens (or creates) the store in directory `dir` (database file `dir/scimflow.redb`) and starts
    /// its writer thread.
    ///
    /// Fails with [`StoreError::Io`] if the file cannot be opened (for example because this or
    /// another process has it open) or if the directory holds a sled store; and with
    /// [`StoreError::Corrupt`] if the data has an unknown layout or unreadable counters.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<RedbStore, StoreError> {
        crate::refuse_other_engine(Engine::Redb, dir)?;
        std::fs::create_dir_all(dir).map_err(|e| {
            io(
                format_args!("creating the store directory {}", dir.display()),
                e,
            )
        })?;
        let file = dir.join(REDB_FILE);
        let db = redb::Builder::new()
            .set_cache_size(usize::try_from(opts.cache_bytes).unwrap_or(usize::MAX))
            .create(&file)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen => StoreError::Io(format!(
                    "the redb store at {} is already open (by this or another process); close it first",
                    file.display()
                )),
                other => io(format_args!("opening the redb store at {}", file.display()), other),
            })?;

        let mut has_table = false;
        {
            let rtx = db
                .begin_read()
                .map_err(|e| io("starting a read transaction", e))?;
            for table in rtx
                .list_tables()
                .map_err(|e| io("listing redb tables", e))?
            {
                if table.name() == keys::TREE {
                    has_table = true;
                } else {
                    return Err(corrupt(
                        table.name().as_bytes(),
                        format!(
                            "the store at {} holds table `{}`, which this build does not know (a newer key layout?); \
                             refusing to open it; use a matching scimflow version",
                            file.display(),
                            table.name()
                        ),
                    ));
                }
            }
        }
        let db = Arc::new(db);
        let mut durable = RedbDurable {
            db: Arc::clone(&db),
        };
        if !has_table {
            // Creates the empty `v1` table, so that readers never meet a missing table.
            durable
                .write(&mut |_| Ok(()))
                .map_err(|e| io("creating the redb table `v1`", e))?;
        }
        let core = Core::start(
            Engine::Redb,
            dir,
            RedbReader { db },
            durable,
            &opts,
            Box::new(()),
        )?;
        Ok(RedbStore {
            inner: Arc::new(core),
        })
    }

    /// Whether the writer is still accepting work (false after a write or commit failed).
    pub fn healthy(&self) -> bool {
        self.inner.healthy()
    }

    /// The failure that stopped the writer, if any.
    pub fn last_error(&self) -> Option<String> {
        self.inner.last_error()
    }

    /// Writer counters since open.
    pub fn stats(&self) -> StoreStats {
        self.inner.stats()
    }

    /// Stops the writer after it has committed every batch already submitted, and waits for it.
    /// Later commits, from any clone, fail with [`StoreError::Closed`]. Reads keep working. Calling
    /// it again does nothing. The file is released when the last clone is dropped.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Test hook: the next group commit fails (before committing anything) as if the disk were full.
    #[cfg(test)]
    pub(crate) fn fail_next_flush(&self) {
        self.inner
            .shared
            .fail_next_flush
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(feature = "tamper")]
impl crate::tamper::Raw for RedbStore {
    fn raw_apply(
        &self,
        edits: Vec<crate::writer::Prepared>,
    ) -> scimflow_core::store::BoxFuture<
        'static,
        Result<scimflow_core::store::CommitReceipt, StoreError>,
    > {
        self.inner.raw_apply(edits)
    }
    fn raw_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.raw_get(key)
    }
}

delegate_store!(RedbStore);

impl RedbReader {
    fn with_table<T>(
        &self,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let rtx = self
            .db
            .begin_read()
            .map_err(|e| io("starting a read transaction", e))?;
        let table = rtx
            .open_table(TABLE)
            .map_err(|e| io("opening the redb table `v1`", e))?;
        f(&table)
    }
}

impl Reader for RedbReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_table(|t| {
            t.get(key)
                .map(|v| v.map(|v| v.value().to_vec()))
                .map_err(|e| io(format_args!("reading key {}", keys::display(key)), e))
        })
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        let failed =
            |e: redb::StorageError| io(format_args!("scanning from {}", keys::display(start)), e);
        self.with_table(|t| {
            let mut out = Vec::with_capacity(limit.min(1024));
            for item in t.range(start..end).map_err(failed)?.take(limit) {
                let (k, v) = item.map_err(failed)?;
                out.push((k.value().to_vec(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    fn last(&self, start: &[u8], end: &[u8]) -> Result<Option<Entry>, StoreError> {
        let failed = |e: redb::StorageError| {
            io(
                format_args!("reading the last `{}` entry", keys::display(start)),
                e,
            )
        };
        self.with_table(|t| match t.range(start..end).map_err(failed)?.next_back() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.map_err(failed)?;
                Ok(Some((k.value().to_vec(), v.value().to_vec())))
            }
        })
    }

    fn for_each_key(
        &self,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let failed =
            |e: redb::StorageError| io(format_args!("scanning from {}", keys::display(start)), e);
        self.with_table(|t| {
            for item in t.range(start..end).map_err(failed)? {
                let (k, _) = item.map_err(failed)?;
                f(k.value())?;
            }
            Ok(())
        })
    }

    fn is_empty(&self) -> Result<bool, StoreError> {
        self.with_table(|t| t.is_empty().map_err(|e| io("reading the table size", e)))
    }
}

impl Durable for RedbDurable {
    fn write(
        &mut self,
        build: &mut dyn FnMut(&mut dyn Txn) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut wtx = self
            .db
            .begin_write()
            .map_err(|e| format!("starting a write transaction failed: {e}"))?;
        wtx.set_durability(Durability::Immediate)
            .map_err(|e| format!("requesting immediate durability failed: {e}"))?;
        {
            let table = wtx
                .open_table(TABLE)
                .map_err(|e| format!("opening the redb table `v1` failed: {e}"))?;
            let mut txn = RedbTxn { table };
            // On failure the transaction is dropped uncommitted, which aborts it: nothing applied.
            build(&mut txn)?;
        }
        wtx.commit()
            .map_err(|e| format!("committing a write transaction failed: {e}"))
    }

    fn shutdown(&mut self) -> Result<(), String> {
        // Every commit was already durable when it returned.
        Ok(())
    }
}

impl Txn for RedbTxn<'_> {
    fn contains(&mut self, key: &[u8]) -> Result<bool, String> {
        self.table
            .get(key)
            .map(|v| v.is_some())
            .map_err(|e| e.to_string())
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        self.table
            .insert(key.as_slice(), value.as_slice())
            .map(drop)
            .map_err(|e| format!("writing key {} failed: {e}", keys::display(&key)))
    }

    fn remove(&mut self, key: Vec<u8>) -> Result<(), String> {
        self.table
            .remove(key.as_slice())
            .map(drop)
            .map_err(|e| format!("removing key {} failed: {e}", keys::display(&key)))
    }

    fn remove_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), String> {
        self.table
            .retain_in(start..end, |_, _| false)
            .map_err(|e| e.to_string())
    }
}
