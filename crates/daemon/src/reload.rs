//! Live reload of the mapping on SIGHUP and when the config (or an included file) changes.
//!
//! The new config is loaded and compiled first; a bad one is rejected with its diagnostics in the log
//! and `scimflow_config_reloads_total{result="failure"}` incremented, and the old mapping keeps
//! running. A good one replaces the mapping for every event accepted afterwards (operations already
//! queued keep the mapping version they were planned with). Target connection settings (URL, auth,
//! limits) and the set of targets are read at start; a change to them is logged as needing a restart.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use scimflow_config::Config;
use scimflow_core::plan::Planner;

use crate::pipeline::Pipeline;

/// Reload counters (exported on `/metrics`).
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub success: AtomicU64,
    pub failure: AtomicU64,
}

/// How often the config files' modification times are checked.
const POLL: Duration = Duration::from_secs(2);

fn mtimes(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// A description of the connection settings that only take effect at start.
fn connection_key(c: &Config) -> Vec<String> {
    c.targets
        .iter()
        .map(|t| {
            format!(
                "{}|{}|{:?}|{:?}|{}|{:?}|{}",
                t.name, t.base_url, t.auth, t.tls, t.concurrency, t.rate_limit, t.max_attempts
            )
        })
        .collect()
}

/// Watches `path` until `shutdown`.
pub async fn run(
    path: PathBuf,
    initial: Config,
    pipeline: Arc<Pipeline>,
    stats: Arc<ReloadStats>,
    shutdown: CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the SIGHUP handler; reload on file change only");
            return;
        }
    };
    let mut files = initial.files.clone();
    let mut seen = mtimes(&files);
    let mut connections = connection_key(&initial);
    loop {
        let why = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            _ = tokio::time::sleep(POLL) => {
                let now = mtimes(&files);
                if now == seen { continue; }
                seen = now;
                "file change"
            }
            _ = shutdown.cancelled() => return,
        };
        let loaded = crate::tooling::load_and_compile(&path);
        match loaded {
            Ok((config, mapping)) => {
                let version = mapping.version().to_owned();
                pipeline.set_mapping(Arc::new(mapping));
                stats.success.fetch_add(1, Ordering::Relaxed);
                tracing::info!(trigger = why, mapping_version = %version, "configuration reloaded");
                let key = connection_key(&config);
                if key != connections {
                    tracing::warn!("target connection settings or the set of targets changed; they take effect after a restart");
                    connections = key;
                }
                files = config.files.clone();
                seen = mtimes(&files);
            }
            Err(d) => {
                stats.failure.fetch_add(1, Ordering::Relaxed);
                tracing::error!(trigger = why, errors = d.0.len(), diagnostics = %d, "configuration rejected; the previous one keeps running");
            }
        }
    }
}
