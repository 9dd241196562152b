//! The audit mirror (`audit.kafka_topic`): every audit record, as the store chained it, produced
//! to a Kafka topic for a SIEM or a data lake.
//!
//! The mirror tails the audit log in sequence order and produces each record as its JSON (key =
//! the record's subject, so one person's records stay in order on one partition; headers `seq` and
//! `hash`). It moves its position — a file `audit-mirror.pos` in the data directory, replaced
//! atomically — only after the broker acknowledged every record up to it. Delivery is
//! at-least-once: after a crash the records since the last saved position are produced again;
//! consumers deduplicate by `seq` (and can check the chain with `prev_hash`/`hash`). While the
//! broker is unreachable the mirror retries and the daemon goes on; the audit log in the store
//! stays the record of truth.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use scimflow_config::KafkaConfig;
use scimflow_core::store::Store;
use tokio_util::sync::CancellationToken;

use crate::KafkaError;

/// How often the audit log is looked at for new records.
const POLL: Duration = Duration::from_millis(250);
/// Records produced per round.
const BATCH: usize = 500;

pub struct AuditMirror {
    store: Arc<dyn Store>,
    producer: FutureProducer,
    topic: String,
    position_file: PathBuf,
}

impl AuditMirror {
    /// A mirror of `store`'s audit log to `topic`, its position kept in `data_dir`.
    pub fn new(
        cfg: &KafkaConfig,
        topic: &str,
        store: Arc<dyn Store>,
        data_dir: &std::path::Path,
    ) -> Result<Self, KafkaError> {
        Ok(AuditMirror {
            store,
            producer: crate::producer_config(cfg)?.create()?,
            topic: topic.to_owned(),
            position_file: data_dir.join("audit-mirror.pos"),
        })
    }

    /// The last mirrored sequence number (0: none yet).
    pub fn position(&self) -> u64 {
        std::fs::read_to_string(&self.position_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn save(&self, seq: u64) -> std::io::Result<()> {
        let tmp = self.position_file.with_extension("pos.tmp");
        std::fs::write(&tmp, format!("{seq}\n"))?;
        std::fs::rename(&tmp, &self.position_file)
    }

    /// Produces every record after the saved position, in batches, until the log is exhausted.
    /// Returns how many were produced.
    pub async fn drain(&self) -> Result<u64, String> {
        let mut total = 0;
        loop {
            let after = match self.position() {
                0 => None,
                n => Some(n),
            };
            let page = self
                .store
                .audit_scan(after, BATCH)
                .map_err(|e| format!("reading the audit log failed: {e}"))?;
            let Some(last) = page.last().map(|r| r.seq) else {
                return Ok(total);
            };
            let sends = page.iter().map(|r| {
                let payload = serde_json::to_vec(r).expect("audit records serialize");
                let seq = r.seq.to_string();
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "seq",
                        value: Some(seq.as_str()),
                    })
                    .insert(Header {
                        key: "hash",
                        value: Some(r.hash.as_str()),
                    });
                let key = r.entry.subject.clone();
                async move {
                    self.producer
                        .send(
                            FutureRecord::to(&self.topic)
                                .key(&key)
                                .payload(&payload)
                                .headers(headers),
                            Duration::from_secs(30),
                        )
                        .await
                        .map(drop)
                        .map_err(|(e, _)| e.to_string())
                }
            });
            for r in futures::future::join_all(sends).await {
                r.map_err(|e| format!("producing to `{}` failed: {e}", self.topic))?;
            }
            self.save(last)
                .map_err(|e| format!("saving the mirror position failed: {e}"))?;
            total += page.len() as u64;
        }
    }

    /// Mirrors until `shutdown`, then once more (the caller stops it after delivery drained).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failing = false;
        loop {
            match self.drain().await {
                Ok(_) if failing => {
                    tracing::info!(topic = %self.topic, "audit mirror caught up again");
                    failing = false;
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    tracing::error!(topic = %self.topic, error = %e, "audit mirror is behind; retrying");
                    failing = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        if let Err(e) = self.drain().await {
            tracing::error!(topic = %self.topic, error = %e, "the audit mirror could not catch up before shutdown; it resumes at the next start");
        }
    }
}
