//! Engine-specific tests; the behaviour shared by every engine is in [`crate::conformance`].

use std::path::Path;

use scimflow_core::store::{Mutation, Store, StoreError};

use crate::{conformance, SledStore, StoreOptions};

fn open(path: &Path) -> SledStore {
    SledStore::open(path, StoreOptions::default()).expect("opening the test store")
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            conformance::$name(&open).await;
        }
    )*};
}

mod conformance_sled {
    use super::*;

    conformance_tests!(
        atomic_batch,
        receipts_in_batch_order,
        queue_order_and_isolation,
        dequeue_is_idempotent,
        bindings,
        subjects,
        audit_numbering_and_chain,
        log_append_and_consume,
        counters_survive_reopen,
        rejected_and_dead_letter_scans,
        concurrent_committers,
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_all_passes() {
        conformance::run_all(open).await;
    }
}

fn log(bytes: &[u8]) -> Mutation {
    Mutation::LogAppend(bytes.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_fails_every_waiting_and_later_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
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
    let store = open(dir.path());
    assert!(store.healthy());
    assert_eq!(
        store.log_scan(None, 10).unwrap(),
        vec![(1, b"kept".to_vec())]
    );
    let r = store.commit(vec![log(b"after restart")]).await.unwrap();
    assert_eq!(r.log_seqs, vec![2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_finishes_queued_batches_then_refuses_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
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
    assert_eq!(open(dir.path()).log_scan(None, 1000).unwrap().len(), 100);
}

#[tokio::test]
async fn group_commit_groups_queued_batches_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_batch_mutations: 10,
        ..StoreOptions::default()
    };
    let store = SledStore::open(dir.path(), opts).unwrap();
    // Submitted before the writer can take any: at most 10 mutations per flush, so at least 10 flushes
    // for 100 single-mutation commits, and a 25-mutation batch is still applied whole.
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

#[tokio::test]
async fn target_names_with_nul_are_refused_without_stopping_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let err = store
        .commit(vec![Mutation::Unbind {
            target: "a\0b".into(),
            subject: "s".into(),
        }])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NUL byte"), "{err}");
    assert!(store.healthy());
    store.commit(vec![log(b"ok")]).await.unwrap();
}

#[test]
fn refuses_unknown_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
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
    let store = open(dir.path());
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
fn a_store_reopens_in_the_same_process_once_dropped() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        drop(open(dir.path()));
    }
}

#[test]
fn a_store_open_in_this_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let err = SledStore::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Io(m) if m.contains("already open in this process")),
        "{err}"
    );
}
