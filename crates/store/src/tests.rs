//! Engine-specific tests; the behaviour shared by every engine is in [`crate::conformance`]. Tests
//! that hold for both engines are written once and instantiated per engine by `both_engines!`.

use std::path::Path;

use scimflow_core::store::{Mutation, StoreError};

use crate::{conformance, Engine, ManagedStore, RedbStore, SledStore, StoreOptions};

fn open_sled(path: &Path) -> SledStore {
    SledStore::open(path, StoreOptions::default()).expect("opening the test sled store")
}

fn open_redb(path: &Path) -> RedbStore {
    RedbStore::open(path, StoreOptions::default()).expect("opening the test redb store")
}

/// What the engine-generic tests below need besides [`Store`].
trait TestEngine: ManagedStore + Clone {
    fn open_with(path: &Path, opts: StoreOptions) -> Result<Self, StoreError>;
    fn fail_next_flush(&self);
    fn open(path: &Path) -> Self {
        Self::open_with(path, StoreOptions::default()).expect("opening the test store")
    }
}

impl TestEngine for SledStore {
    fn open_with(path: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        SledStore::open(path, opts)
    }
    fn fail_next_flush(&self) {
        SledStore::fail_next_flush(self)
    }
}

impl TestEngine for RedbStore {
    fn open_with(path: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        RedbStore::open(path, opts)
    }
    fn fail_next_flush(&self) {
        RedbStore::fail_next_flush(self)
    }
}

macro_rules! conformance_tests {
    ($open:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            conformance::$name(&$open).await;
        }
    )*};
}

macro_rules! all_conformance_tests {
    ($open:expr) => {
        conformance_tests!(
            $open;
            atomic_batch,
            receipts_in_batch_order,
            queue_order_and_isolation,
            dequeue_is_idempotent,
            requeue_in_place,
            bindings,
            subjects,
            subject_scan_pages,
            audit_numbering_and_chain,
            log_append_and_consume,
            counters_survive_reopen,
            rejected_and_dead_letter_scans,
            concurrent_committers,
            schedule_replace_and_cancel,
            scheduled_reads,
            remove_dead_letter,
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn run_all_passes() {
            conformance::run_all($open).await;
        }
    };
}

mod conformance_sled {
    use super::*;
    all_conformance_tests!(open_sled);
}

mod conformance_redb {
    use super::*;
    all_conformance_tests!(open_redb);
}

/// Instantiates each generic test `fn name<E: TestEngine>()` once per engine.
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name::<crate::SledStore>().await;
                }
            )*
        }
        mod redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name::<crate::RedbStore>().await;
                }
            )*
        }
    };
}

both_engines!(
    a_failed_write_fails_every_waiting_and_later_commit,
    close_finishes_queued_batches_then_refuses_commits,
    group_commit_groups_queued_batches_up_to_the_limit,
    names_with_nul_are_refused_without_stopping_the_writer,
    a_store_reopens_in_the_same_process_once_dropped,
    a_store_open_in_this_process_is_refused,
);

fn log(bytes: &[u8]) -> Mutation {
    Mutation::LogAppend(bytes.to_vec())
}

async fn a_failed_write_fails_every_waiting_and_later_commit<E: TestEngine>() {
    let dir = tempfile::tempdir().unwrap();
    let store = E::open(dir.path());
    store.commit(vec![log(b"kept")]).await.unwrap();
    assert!(store.healthy());
    assert_eq!(store.last_error(), None);

    store.fail_next_flush();
    let waiting: Vec<_> = (0..20).map(|_| store.commit(vec![log(b"lost")])).collect();
    for fut in waiting {
        match fut.await {
            Err(StoreError::Io(msg)) => assert!(msg.contains("injected failure"), "{msg}"),
            other => panic!("expected an i/o error, got {other:?}"),
        }
    }
    assert!(!store.healthy());
    assert!(store
        .last_error()
        .unwrap()
        .contains("applying a write batch failed"));
    assert!(matches!(
        store.commit(vec![log(b"later")]).await,
        Err(StoreError::Io(_))
    ));
    // Reads still work and show only what was acknowledged.
    assert_eq!(
        store.log_scan(None, 10).unwrap(),
        vec![(1, b"kept".to_vec())]
    );
    drop(store);

    // A restart recovers: nothing of the failed batches, and the writer works again.
    let store = E::open(dir.path());
    assert!(store.healthy());
    assert_eq!(
        store.log_scan(None, 10).unwrap(),
        vec![(1, b"kept".to_vec())]
    );
    let r = store.commit(vec![log(b"after restart")]).await.unwrap();
    assert_eq!(r.log_seqs, vec![2]);
}

async fn close_finishes_queued_batches_then_refuses_commits<E: TestEngine>() {
    let dir = tempfile::tempdir().unwrap();
    let store = E::open(dir.path());
    let other = store.clone();
    let queued: Vec<_> = (0..100).map(|i| store.commit(vec![log(&[i])])).collect();
    store.close();
    for fut in queued {
        fut.await
            .expect("a batch submitted before close is committed");
    }
    assert!(matches!(
        other.commit(vec![log(b"late")]).await,
        Err(StoreError::Closed)
    ));
    assert!(store.healthy(), "closing is not a failure");
    assert_eq!(
        other.log_scan(None, 1000).unwrap().len(),
        100,
        "reads work after close"
    );
    store.close();
    drop((store, other));
    assert_eq!(E::open(dir.path()).log_scan(None, 1000).unwrap().len(), 100);
}

async fn group_commit_groups_queued_batches_up_to_the_limit<E: TestEngine>() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_batch_mutations: 10,
        ..StoreOptions::default()
    };
    let store = E::open_with(dir.path(), opts).unwrap();
    // Submitted before the writer can take any: at most 10 mutations per sync, so at least 10
    // syncs for 100 single-mutation commits, and a 25-mutation batch is still applied whole.
    let mut futs: Vec<_> = (0..100).map(|i| store.commit(vec![log(&[i])])).collect();
    futs.push(store.commit((0..25).map(|_| log(b"big")).collect()));
    for f in futs {
        f.await.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.commits, 101);
    assert_eq!(stats.mutations, 125);
    assert!(stats.batches_flushed >= 11, "{stats:?}");
    let seqs: Vec<u64> = store
        .log_scan(None, 1000)
        .unwrap()
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(
        seqs,
        (1..=125).collect::<Vec<_>>(),
        "applied in submission order"
    );
}

async fn names_with_nul_are_refused_without_stopping_the_writer<E: TestEngine>() {
    let dir = tempfile::tempdir().unwrap();
    let store = E::open(dir.path());
    let err = store
        .commit(vec![Mutation::Unbind {
            target: "a\0b".into(),
            subject: "s".into(),
        }])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NUL byte"), "{err}");
    let err = store
        .commit(vec![Mutation::Unschedule {
            target: "t".into(),
            subject: "a\0b".into(),
            slot: "s".into(),
        }])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NUL byte"), "{err}");
    assert!(store.healthy());
    store.commit(vec![log(b"ok")]).await.unwrap();
}

async fn a_store_reopens_in_the_same_process_once_dropped<E: TestEngine>() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        drop(E::open(dir.path()));
        drop(E::open(dir.path()));
    }
}

async fn a_store_open_in_this_process_is_refused<E: TestEngine>() {
    let dir = tempfile::tempdir().unwrap();
    let _store = E::open(dir.path());
    let err = E::open_with(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Io(m) if m.contains("already open")),
        "{err}"
    );
}

#[test]
fn sled_refuses_unknown_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sled(dir.path());
    let db = store.raw_db();
    db.open_tree("v1")
        .unwrap()
        .insert("meta:layout", "7")
        .unwrap();
    db.flush().unwrap();
    drop(store);
    let err = SledStore::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { key, reason } if key == "meta:layout" && reason.contains("unknown key layout version `7`")),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let store = open_sled(dir.path());
    let db = store.raw_db();
    db.open_tree("v2")
        .unwrap()
        .insert("meta:layout", "2")
        .unwrap();
    db.flush().unwrap();
    drop(store);
    let err = SledStore::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("holds tree `v2`"), "{err}");
}

#[test]
fn redb_refuses_unknown_layouts() {
    const V1: ::redb::TableDefinition<&[u8], &[u8]> = ::redb::TableDefinition::new("v1");
    const V2: ::redb::TableDefinition<&[u8], &[u8]> = ::redb::TableDefinition::new("v2");
    let plant = |dir: &Path, table: ::redb::TableDefinition<&[u8], &[u8]>, layout: &[u8]| {
        drop(open_redb(dir));
        let db = ::redb::Database::create(dir.join(crate::REDB_FILE)).unwrap();
        let wtx = db.begin_write().unwrap();
        wtx.open_table(table)
            .unwrap()
            .insert(b"meta:layout".as_slice(), layout)
            .unwrap();
        wtx.commit().unwrap();
    };

    let dir = tempfile::tempdir().unwrap();
    plant(dir.path(), V1, b"7");
    let err = RedbStore::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { key, reason } if key == "meta:layout" && reason.contains("unknown key layout version `7`")),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    plant(dir.path(), V2, b"2");
    let err = RedbStore::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("holds table `v2`"), "{err}");
}

#[test]
fn a_directory_of_the_other_engine_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    drop(open_sled(dir.path()));
    let err = crate::open(Engine::Redb, dir.path(), StoreOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("holds sled data") && msg.contains("redb engine was selected"),
        "{msg}"
    );
    assert!(
        !dir.path().join(crate::REDB_FILE).exists(),
        "nothing created"
    );

    let dir = tempfile::tempdir().unwrap();
    drop(open_redb(dir.path()));
    let err = crate::open(Engine::Sled, dir.path(), StoreOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("holds redb data") && msg.contains("sled engine was selected"),
        "{msg}"
    );
    assert!(!dir.path().join("conf").exists(), "nothing created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_selects_the_engine_and_the_file_layout() {
    for engine in [Engine::Sled, Engine::Redb] {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::open(engine, dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(store.engine(), engine);
        let r = store.commit(vec![log(b"x")]).await.unwrap();
        assert_eq!(r.log_seqs, vec![1]);
        assert!(store.healthy() && store.last_error().is_none());
        assert_eq!(store.stats().commits, 1);
        store.close();
        assert_eq!(
            dir.path().join(crate::REDB_FILE).exists(),
            engine == Engine::Redb,
            "{engine}: where the data lives"
        );
    }
}

#[test]
fn engine_names_round_trip() {
    for engine in [Engine::Sled, Engine::Redb] {
        assert_eq!(engine.to_string().parse::<Engine>(), Ok(engine));
    }
    assert_eq!(Engine::default(), Engine::Sled);
    let err = "rocksdb".parse::<Engine>().unwrap_err();
    assert!(err.contains("`sled` or `redb`"), "{err}");
}
