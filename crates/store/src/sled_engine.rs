//! The sled engine: [`SledStore`]. Layout and guarantees are in the crate docs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use scimflow_core::store::StoreError;

use crate::engine::{corrupt, delegate_store, Core, Durable, Entry, Reader, Txn};
use crate::{keys, Engine, StoreOptions, StoreStats};

/// The sled storage engine. Cheap to clone: all clones share one database and one writer thread.
///
/// Dropping the last clone closes the store like [`SledStore::close`].
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Core<SledReader>>,
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

/// Reads straight from the `v1` tree.
pub(crate) struct SledReader {
    tree: sled::Tree,
    /// The whole database, for tests that plant foreign data.
    #[cfg(test)]
    db: sled::Db,
}

/// What the sled writer owns: the tree it batches into.
struct SledDurable {
    tree: sled::Tree,
}

/// One group commit: a `sled::Batch` plus the tree to look keys up in.
struct SledTxn<'a> {
    tree: &'a sled::Tree,
    batch: sled::Batch,
}

impl SledStore {
    /// Opens (or creates) the store in directory `path` and starts its writer thread.
    ///
    /// Fails with [`StoreError::Io`] if sled cannot open the directory (for example because another
    /// process holds it, or another [`SledStore`] of this process still has it open), or if the
    /// directory holds a redb store; and with [`StoreError::Corrupt`] if the data has an unknown
    /// layout or unreadable counters.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<SledStore, StoreError> {
        crate::refuse_other_engine(Engine::Sled, path)?;
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
        tracing::debug!(recovered = db.was_recovered(), "sled database open");
        let reader = SledReader {
            tree: tree.clone(),
            #[cfg(test)]
            db: db.clone(),
        };
        let core = Core::start(
            Engine::Sled,
            path,
            reader,
            SledDurable { tree },
            &opts,
            Box::new(claim),
        )?;
        Ok(SledStore {
            inner: Arc::new(core),
        })
    }

    /// Whether the writer is still accepting work (false after a write or flush failed).
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
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Test hook: the underlying sled database.
    #[cfg(test)]
    pub(crate) fn raw_db(&self) -> &sled::Db {
        &self.inner.reader.db
    }
}

#[cfg(feature = "tamper")]
impl crate::tamper::Raw for SledStore {
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

delegate_store!(SledStore);

impl Reader for SledReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.tree
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| io_err(format_args!("reading key {}", keys::display(key)), e))
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in self.tree.range(start..end).take(limit) {
            let (k, v) = item
                .map_err(|e| io_err(format_args!("scanning from {}", keys::display(start)), e))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn last(&self, start: &[u8], end: &[u8]) -> Result<Option<Entry>, StoreError> {
        match self.tree.range(start..end).next_back() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.map_err(|e| {
                    io_err(
                        format_args!("reading the last `{}` entry", keys::display(start)),
                        e,
                    )
                })?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
        }
    }

    fn for_each_key(
        &self,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for item in self.tree.range(start..end) {
            let (k, _) = item
                .map_err(|e| io_err(format_args!("scanning from {}", keys::display(start)), e))?;
            f(&k)?;
        }
        Ok(())
    }

    fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.tree.is_empty())
    }
}

impl Durable for SledDurable {
    fn write(
        &mut self,
        build: &mut dyn FnMut(&mut dyn Txn) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut txn = SledTxn {
            tree: &self.tree,
            batch: sled::Batch::default(),
        };
        build(&mut txn)?;
        self.tree
            .apply_batch(txn.batch)
            .map_err(|e| format!("applying a write batch failed: {e}"))?;
        self.tree
            .flush()
            .map_err(|e| format!("flushing the store to disk failed: {e}"))?;
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), String> {
        self.tree.flush().map(drop).map_err(|e| e.to_string())
    }
}

impl Txn for SledTxn<'_> {
    fn contains(&mut self, key: &[u8]) -> Result<bool, String> {
        self.tree.contains_key(key).map_err(|e| e.to_string())
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        self.batch.insert(key, value);
        Ok(())
    }

    fn remove(&mut self, key: Vec<u8>) -> Result<(), String> {
        self.batch.remove(key);
        Ok(())
    }

    fn remove_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), String> {
        for item in self.tree.range(start..end) {
            let (key, _) = item.map_err(|e| e.to_string())?;
            self.batch.remove(key);
        }
        Ok(())
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
/// Test support (`tamper`): drops this process's handle of the closed sled database at `path`, so
/// that its file lock is released and another process can open it.
#[cfg(feature = "tamper")]
pub(crate) fn release(path: &Path) {
    if let Ok(canonical) = std::fs::canonicalize(path) {
        let mut dbs = OPEN_DBS.lock().unwrap_or_else(PoisonError::into_inner);
        if dbs.get(&canonical).is_some_and(|e| !e.in_use) {
            // The last handle: sled flushes, stops its flusher thread and closes the file.
            drop(dbs.remove(&canonical));
        }
    }
}

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
    // sled lets go of its file lock from its own threads once the last handle is dropped, a
    // moment after a store of this process was closed: a lock still held is retried briefly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let db = loop {
        let r = sled::Config::new()
            .path(&canonical)
            .cache_capacity(opts.cache_bytes)
            .open();
        match r {
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r,
        }
    }
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
