//! `scimflow run` and `scimflow check`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use scimflow_config::{Config, Diagnostics, EXIT_CONFIG};
use scimflow_core::partition::PartitionLedger;
use scimflow_core::plan::Planner;
use scimflow_core::source::EventSink;
use scimflow_core::store::Store;
use scimflow_delivery::{Executor, PoolHandle, TargetPool};
use scimflow_mapping::Mapping;
use scimflow_store::{Engine, ManagedStore, StoreOptions};
use scimflow_telemetry::metrics::Metrics;

use crate::http::{router, AppState};
use crate::pipeline::Pipeline;

/// How long in-flight operations may take to finish at shutdown before they are left queued.
const DRAIN: Duration = Duration::from_secs(10);

/// The default listen address of the HTTP API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

fn load(path: &Path) -> Result<(Config, Mapping), Diagnostics> {
    crate::tooling::load_and_compile(path)
}

/// `scimflow run`.
pub async fn run(path: PathBuf, listen: Option<SocketAddr>, data_dir: Option<PathBuf>) -> ExitCode {
    // Validated.
    let (config, mapping) = match load(&path) {
        Ok(x) => x,
        Err(d) => {
            eprintln!("{d}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    // Built.
    match build_and_run(path, config, mapping, listen, data_dir).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "scimflow stopped with an error");
            ExitCode::FAILURE
        }
    }
}

async fn build_and_run(
    path: PathBuf,
    config: Config,
    mapping: Mapping,
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let data_dir = data_dir
        .or(config.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("data"));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let engine: Engine = config
        .store_engine
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let managed: Arc<dyn ManagedStore> =
        scimflow_store::open(engine, &data_dir, StoreOptions::default())
            .with_context(|| format!("cannot open the {engine} store in {}", data_dir.display()))?;
    let store: Arc<dyn Store> = managed.clone();

    // Signed checkpoints of the audit chain, when a key is configured.
    let checkpointer = match &config.audit.signing_key {
        Some(r) => {
            let key = crate::checkpoint::load_signing_key(r)?;
            let c = Arc::new(crate::checkpoint::Checkpointer::new(
                store.clone(),
                key,
                &config.audit,
            )?);
            tracing::info!(key_id = c.key_id(), "audit checkpoints are signed");
            Some(c)
        }
        None => None,
    };
    // Spawned: the audit mirror to Kafka, when configured.
    let mirror_shutdown = CancellationToken::new();
    let mirror_task = match (&config.audit.kafka_topic, &config.kafka) {
        (Some(topic), Some(k)) => {
            let m = scimflow_kafka::AuditMirror::new(k, topic, store.clone(), &data_dir)
                .with_context(|| format!("cannot create the audit mirror to `{topic}`"))?;
            tracing::info!(topic = %topic, from_seq = m.position() + 1, "audit records are mirrored to Kafka");
            Some(tokio::spawn(m.run(mirror_shutdown.clone())))
        }
        _ => None,
    };
    let checkpoint_shutdown = CancellationToken::new();
    let checkpoint_task = checkpointer
        .clone()
        .map(|c| tokio::spawn(c.run(checkpoint_shutdown.clone())));

    // With Kafka, queued work is tracked by source partition (commits, scale-out handover); the
    // ledger starts with what is already queued.
    let ledger = match &config.kafka {
        Some(_) => Some(open_ledger(store.as_ref(), &config)?),
        None => None,
    };

    let metrics = Arc::new(Metrics::new());
    for t in &config.targets {
        metrics.init_target(&t.name);
    }
    if config.kafka.is_some() {
        metrics.init_source("kafka");
    } else {
        metrics.init_source("embedded");
        metrics.init_source("http");
    }
    let shutdown = CancellationToken::new();
    let mut pools = HashMap::new();
    let mut pool_tasks = Vec::new();
    let pool_shutdown = CancellationToken::new();
    let mut execs = Vec::new();
    for t in &config.targets {
        let exec = Executor::new(t)
            .with_context(|| format!("cannot build the HTTP client of target `{}`", t.name))?
            .with_metrics(metrics.clone());
        execs.push(exec);
    }
    {
        let mut named: Vec<(&str, &mut Executor)> = config
            .targets
            .iter()
            .map(|t| t.name.as_str())
            .zip(execs.iter_mut())
            .collect();
        for group in scimflow_delivery::exec::share_rate_limits(&mut named) {
            tracing::info!(targets = ?group, "these targets share one rate limit (their connector's quota is per tenant)");
        }
    }
    for (t, exec) in config.targets.iter().zip(execs) {
        let mut pool = TargetPool::new(&t.name, store.clone(), exec, t.concurrency);
        if let Some(g) = t.deletion_guard {
            pool = pool.with_guard(Arc::new(scimflow_delivery::DeletionGuard::new(g)));
        }
        if let Some(l) = &ledger {
            pool = pool.with_ledger(l.clone());
        }
        pools.insert(t.name.clone(), pool.handle());
        pool_tasks.push(tokio::spawn(pool.run(pool_shutdown.clone(), DRAIN)));
    }
    let version = mapping.version().to_owned();
    let mapping = Arc::new(mapping);
    let planner: Arc<dyn Planner> = mapping.clone();
    let mut pipeline = Pipeline::new(
        store.clone(),
        planner,
        pools.clone(),
        config.ingest.max_event_bytes,
    )
    .with_metrics(metrics.clone());
    if let Some(l) = &ledger {
        pipeline = pipeline.with_ledger(l.clone());
    }
    let pipeline = Arc::new(pipeline);
    pipeline.set_mapping(mapping);
    let sink: Arc<dyn EventSink> = pipeline.clone();

    // Spawned: the source. If the store fails (e.g. disk full), intake stops — nothing unpersisted
    // is acknowledged — while the process stays up, failing readiness, until an operator restarts it
    // after fixing the cause; the restart resumes from what was durably recorded.
    let intake_stopped = Arc::new(AtomicBool::new(false));
    let log_wake = Arc::new(Notify::new());
    let source_shutdown = CancellationToken::new();
    let mut kafka_lag = None;
    let source = match &config.kafka {
        Some(k) => {
            let ledger = ledger.clone().expect("a ledger with the Kafka source");
            let src = scimflow_kafka::KafkaSource::build(k, ledger)
                .context("cannot create the Kafka consumer")?;
            kafka_lag = Some(src.lag());
            tracing::info!(brokers = %k.brokers, topics = ?k.topics, group = %k.group_id, "consuming from kafka");
            let (sink, stop, halted) = (
                sink.clone(),
                source_shutdown.clone(),
                intake_stopped.clone(),
            );
            tokio::spawn(async move {
                let r = src.run(sink, stop).await.map_err(anyhow::Error::from);
                if let Err(e) = &r {
                    halt(&halted, e);
                }
                r
            })
        }
        None => {
            tracing::info!("using the embedded source (no kafka configured)");
            let (store, sink, wake, stop, halted) = (
                store.clone(),
                sink.clone(),
                log_wake.clone(),
                source_shutdown.clone(),
                intake_stopped.clone(),
            );
            tokio::spawn(async move {
                let r = crate::embedded::tail(store, sink, wake, stop)
                    .await
                    .map_err(anyhow::Error::from);
                if let Err(e) = &r {
                    halt(&halted, e);
                }
                r
            })
        }
    };

    // Spawned: the scheduler releasing effective-dated operations.
    let scheduler = {
        let (store, pools, stop, halted) = (
            store.clone(),
            pools.clone(),
            source_shutdown.clone(),
            intake_stopped.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = crate::schedule::run(store, pools, stop).await {
                halt(&halted, &anyhow::Error::from(e));
            }
        })
    };

    // Spawned: reload on SIGHUP and on file change.
    let reload_stats = Arc::new(crate::reload::ReloadStats::default());
    tokio::spawn(crate::reload::run(
        path.clone(),
        config.clone(),
        pipeline.clone(),
        reload_stats.clone(),
        shutdown.clone(),
    ));

    // Spawned: the HTTP listener.
    let addr = listen
        .or(config.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let mut state = AppState {
        store: managed.clone(),
        sink: sink.clone(),
        ingest_token: config.ingest.token.clone(),
        log_wake: config.kafka.is_none().then(|| log_wake.clone()),
        pools: pools
            .iter()
            .map(|(k, v): (&String, &PoolHandle)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        mapping_version: version.clone(),
        reload: reload_stats.clone(),
        intake_stopped: intake_stopped.clone(),
        kafka_lag,
        metrics,
        checkpointer: checkpointer.clone(),
        reconciler: None,
    };
    // Reconciliation: scheduled per target, and on demand through the admin API.
    let reconciler = Arc::new(crate::reconciler::Reconciler::new(
        store.clone(),
        pipeline.clone(),
        state.pools.clone(),
        &config.targets,
    )?);
    let reconcile_task = tokio::spawn(reconciler.clone().schedule(shutdown.clone()));
    state.reconciler = Some(reconciler.clone());

    // Spawned: the admin API, on its own listener, when configured.
    let admin = match &config.admin {
        Some(a) => {
            let admin_state = crate::admin::AdminState {
                store: managed.clone(),
                pipeline: pipeline.clone(),
                pools: state.pools.clone(),
                tokens: Arc::new(a.tokens.clone()),
                intake_stopped: intake_stopped.clone(),
                kafka: state.kafka_lag.clone(),
                reconciler: reconciler.clone(),
            };
            let admin_listener = tokio::net::TcpListener::bind(a.listen)
                .await
                .with_context(|| format!("cannot listen on {} (admin.listen)", a.listen))?;
            let admin_local = admin_listener.local_addr()?;
            let admin_shutdown = shutdown.clone();
            let app = crate::admin::router(admin_state, a);
            println!("scimflow admin listening on http://{admin_local}");
            tracing::info!(listen = %format!("http://{admin_local}"), tokens = a.tokens.len(), "admin API started");
            Some(tokio::spawn(async move {
                axum::serve(admin_listener, app)
                    .with_graceful_shutdown(async move { admin_shutdown.cancelled().await })
                    .await
            }))
        }
        None => None,
    };
    let http_shutdown = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await
    });
    tracing::info!(
        listen = %format!("http://{local}"),
        ingest = %format!("http://{local}/api/v1/events"),
        data_dir = %data_dir.display(),
        targets = config.targets.len(),
        mapping_version = %version,
        "scimflow started"
    );
    // Machine-readable line for scripts and tests that start the daemon on port 0.
    println!("scimflow listening on http://{local}");

    // Wait for a signal (or a fatal error).
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        _ = shutdown.cancelled() => tracing::error!("shutting down after a fatal error"),
    }

    // Drained, in dependency order: stop intake, let delivery finish or keep work queued, flush.
    source_shutdown.cancel();
    shutdown.cancel();
    let source_result = source
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("source task failed: {e}")));
    let _ = scheduler.await;
    pool_shutdown.cancel();
    for t in pool_tasks {
        let _ = t.await;
    }
    let _ = http.await;
    let _ = reconcile_task.await;
    if let Some(a) = admin {
        let _ = a.await;
    }
    // The last records (delivery has drained) are pinned by one more checkpoint.
    checkpoint_shutdown.cancel();
    if let Some(t) = checkpoint_task {
        let _ = t.await;
    }
    if let Some(c) = &checkpointer {
        if let Err(e) = c.tick(true).await {
            tracing::error!(
                error = format!("{e:#}"),
                "the final audit checkpoint failed"
            );
        }
    }
    // The mirror catches up with the last records before the store closes.
    mirror_shutdown.cancel();
    if let Some(t) = mirror_task {
        let _ = t.await;
    }
    managed.close();
    tracing::info!("stopped");
    source_result
}

/// Records that intake stopped because of `e`, loudly.
/// A ledger holding every queued operation that came from Kafka, so no commit passes work that
/// was queued before a restart.
fn open_ledger(store: &dyn Store, config: &Config) -> anyhow::Result<Arc<PartitionLedger>> {
    let ledger = Arc::new(PartitionLedger::new());
    for t in &config.targets {
        let mut after = None;
        loop {
            let page = store.queue_origins(&t.name, after, 4096)?;
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            for (_, origin) in &page {
                if let Some(pos) = origin {
                    ledger.opened(pos);
                }
            }
        }
    }
    if ledger.open_count() > 0 {
        tracing::info!(
            operations = ledger.open_count(),
            "queued operations from Kafka found; their partitions' commits wait for them"
        );
    }
    Ok(ledger)
}

fn halt(flag: &AtomicBool, e: &anyhow::Error) {
    // Logged before readiness and metrics show it, so whoever sees those finds the reason logged.
    tracing::error!(
        error = format!("{e:#}"),
        "INTAKE STOPPED: the store cannot persist; nothing more is consumed or acknowledged. \
         Readiness now fails. Fix the cause (e.g. free disk space) and restart scimflow: it resumes \
         from what was durably recorded"
    );
    flag.store(true, Ordering::SeqCst);
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
