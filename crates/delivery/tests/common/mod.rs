//! Shared set-up of the delivery integration tests: a target on the testkit SCIM server, a real
//! sled store, and a pool run until its queue is empty.

#![allow(dead_code)] // each test file uses its own part

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use scimflow_config::TargetConfig;
use scimflow_core::store::Store;
use scimflow_delivery::TargetPool;
use scimflow_testkit::TestServer;

/// Target `app` on `server`: upsert on hire, matched by `externalId`, `externalId` and `userName`
/// from the subject; `extra` is more target YAML (indented four spaces, each line ending in `\n`).
pub fn target(server: &TestServer, extra: &str) -> TargetConfig {
    let yaml = format!(
        "version: 1\ntargets:\n  app:\n    base_url: {}\n    allow_http: true\n    \
         lifecycle:\n      hr.worker.hired: upsert\n    matching: [externalId]\n    user:\n      \
         externalId: event.subject\n      userName: event.subject\n{extra}",
        server.base_url()
    );
    let cfg = scimflow_config::load_str(&yaml, "c.yaml", &|_| None).expect("valid config");
    cfg.targets[0].clone()
}

/// A sled store in `dir`.
pub fn sled_store(dir: &std::path::Path) -> Arc<dyn Store> {
    scimflow_store::open(
        scimflow_store::Engine::Sled,
        dir,
        scimflow_store::StoreOptions::default(),
    )
    .expect("sled store opens")
}

/// Runs `pool` until `store` holds no queued operation for `app` (at most `limit`), then stops it.
pub async fn run_until_drained(pool: TargetPool, store: &Arc<dyn Store>, limit: Duration) {
    let stop = CancellationToken::new();
    let run = tokio::spawn(pool.run(stop.clone(), Duration::from_secs(5)));
    let deadline = Instant::now() + limit;
    while store.queue_len("app").unwrap() > 0 {
        assert!(Instant::now() < deadline, "queue drained within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    run.await.unwrap();
}
