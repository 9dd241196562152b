//! Group commit: many concurrent commits share few flushes; and a printed throughput measurement.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scimflow_core::store::Mutation;
use scimflow_store::{Engine, StoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_concurrent_commits_share_flushes() {
    concurrent_commits_share_flushes(Engine::Sled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_concurrent_commits_share_flushes() {
    concurrent_commits_share_flushes(Engine::Redb).await;
}

async fn concurrent_commits_share_flushes(engine: Engine) {
    const N: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let store = scimflow_store::open(engine, dir.path(), StoreOptions::default()).unwrap();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .commit(vec![Mutation::LogAppend(i.to_be_bytes().to_vec())])
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await
            .unwrap()
            .expect("every concurrent commit is acknowledged");
    }
    let stats = store.stats();
    eprintln!("{engine}: {N} concurrent commits: {stats:?}");
    assert_eq!(stats.commits, N);
    assert_eq!(stats.mutations, N);
    assert!(
        stats.batches_flushed * 5 <= N,
        "expected far fewer flushes than commits: {stats:?}"
    );
    assert_eq!(store.log_scan(None, usize::MAX).unwrap().len() as u64, N);
}

/// Measures single-mutation commits per second with 64 concurrent committers. Printed, not asserted
/// (run with `--nocapture`, ideally `--release`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_throughput_64_committers() {
    throughput_64_committers(Engine::Sled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_throughput_64_committers() {
    throughput_64_committers(Engine::Redb).await;
}

async fn throughput_64_committers(engine: Engine) {
    const COMMITTERS: usize = 64;
    let run_for = Duration::from_millis(
        std::env::var("SCIMFLOW_STORE_BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500),
    );
    let dir = tempfile::tempdir().unwrap();
    let store = scimflow_store::open(engine, dir.path(), StoreOptions::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..COMMITTERS)
        .map(|c| {
            let (store, stop, done) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let payload = format!("{c}:{i}:{}", "x".repeat(200)).into_bytes();
                    store
                        .commit(vec![Mutation::LogAppend(payload)])
                        .await
                        .unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(run_for).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = store.stats();
    let commits = done.load(Ordering::Relaxed);
    eprintln!(
        "throughput ({engine}): {COMMITTERS} committers, {commits} single-op commits in {elapsed:.2}s = {:.0} commits/s; \
         {} flushes ({:.0}/s, {:.1} commits per flush)",
        commits as f64 / elapsed,
        stats.batches_flushed,
        stats.batches_flushed as f64 / elapsed,
        stats.commits as f64 / stats.batches_flushed.max(1) as f64,
    );
}
