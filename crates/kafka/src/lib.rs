//! The Kafka source — the only crate that touches rdkafka.
//!
//! At-least-once in, exactly-once in effect: each message is decoded and handed to the
//! [`EventSink`], whose future resolves once everything derived from it is durably recorded; only then
//! is the message's offset *stored* (`enable.auto.offset.store=false`), and librdkafka's periodic
//! auto-commit commits stored offsets in batches. Acknowledgements happen in consumption order (the
//! store's single writer completes commits in submission order), so the committed offset never passes
//! a message whose effects are not durable. After a crash, the uncommitted tail is consumed again and
//! recognised as duplicates downstream.
//!
//! Poison messages (undecodable, no subject, unknown type, too large) are handed to the sink as
//! rejections, which records them durably *before* their offset is stored.

mod producer;

pub use producer::Producer;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{ClientConfig, Message};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use scimflow_config::KafkaConfig;
use scimflow_core::decode::{decode_binary, decode_structured, DecodeOptions};
use scimflow_core::source::{EventSink, Rejection};
use scimflow_core::store::{BoxFuture, StoreError};
use scimflow_core::{Event, EventOrigin};

/// A Kafka source failure.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka client error: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("intake stopped because the store failed: {0}")]
    Store(#[from] StoreError),
}

/// The consumer-group source.
pub struct KafkaSource {
    consumer: Arc<StreamConsumer>,
    max_in_flight: usize,
}

/// The librdkafka settings scimflow uses, before the config's `options` (which win).
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("client.id", &cfg.client_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    for (k, v) in &cfg.options {
        c.set(k, v);
    }
    c
}

impl KafkaSource {
    /// Creates the consumer and subscribes to the configured topics.
    pub fn build(cfg: &KafkaConfig) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer = client_config(cfg).create()?;
        consumer.subscribe(&cfg.topic_names())?;
        Ok(KafkaSource {
            consumer: Arc::new(consumer),
            max_in_flight: cfg.max_in_flight,
        })
    }

    /// Consumes until `shutdown` (or a store failure), then acknowledges everything that became durable
    /// and commits synchronously.
    pub async fn run(
        self,
        sink: Arc<dyn EventSink>,
        shutdown: CancellationToken,
    ) -> Result<(), KafkaError> {
        type Pending = (String, i32, i64, BoxFuture<'static, Result<(), StoreError>>);
        let (tx, mut rx) = mpsc::channel::<Pending>(self.max_in_flight);
        let failed = CancellationToken::new();
        let acker = {
            let consumer = self.consumer.clone();
            let failed = failed.clone();
            tokio::spawn(async move {
                while let Some((topic, partition, offset, durable)) = rx.recv().await {
                    if let Err(e) = durable.await {
                        tracing::error!(error = %e, "store failed; stopping intake without acknowledging");
                        failed.cancel();
                        return Err(e);
                    }
                    // Storing the offset of a partition we no longer own fails harmlessly: the new owner
                    // resumes from the last commit and replays are idempotent.
                    if let Err(e) = consumer.store_offset(&topic, partition, offset) {
                        tracing::debug!(%topic, partition, offset, error = %e, "offset not stored");
                    }
                }
                Ok(())
            })
        };
        let result = loop {
            tokio::select! {
                msg = self.consumer.recv() => {
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(error = %e, "kafka consumer error");
                            continue;
                        }
                    };
                    let origin = EventOrigin::Kafka {
                        topic: msg.topic().to_owned(),
                        partition: msg.partition(),
                        offset: msg.offset(),
                    };
                    let input = decode_message(&msg, sink.as_ref());
                    let durable = sink.accept(origin, input, Vec::new());
                    let pending = (msg.topic().to_owned(), msg.partition(), msg.offset(), durable);
                    if tx.send(pending).await.is_err() {
                        break Ok(());
                    }
                }
                _ = failed.cancelled() => break Ok(()),
                _ = shutdown.cancelled() => break Ok(()),
            }
        };
        drop(tx);
        let acked = acker.await.unwrap_or(Ok(()));
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            // Nothing stored since the last commit.
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => {}
            Err(e) => tracing::warn!(error = %e, "final offset commit failed"),
        }
        self.consumer.unsubscribe();
        // Give librdkafka a moment to leave the group cleanly so partitions move without a session timeout.
        tokio::time::sleep(Duration::from_millis(50)).await;
        acked?;
        result
    }
}

/// Decodes a message: binary mode when it carries `ce_specversion`, structured (or plain JSON)
/// otherwise. The message key is the subject when the event names none.
pub fn decode_message(msg: &BorrowedMessage<'_>, sink: &dyn EventSink) -> Result<Event, Rejection> {
    let payload = msg.payload().unwrap_or_default();
    let key = msg.key().and_then(|k| std::str::from_utf8(k).ok());
    let accepts = |t: &str| sink.accepts_type(t);
    let opts = DecodeOptions {
        max_bytes: sink.max_event_bytes(),
        accepts_type: &accepts,
    };
    let headers: Vec<(&str, &[u8])> = msg
        .headers()
        .map(|h| {
            h.iter()
                .filter_map(|h| h.value.map(|v| (h.key, v)))
                .collect()
        })
        .unwrap_or_default();
    let binary = headers.iter().any(|(k, _)| *k == "ce_specversion");
    let decoded = if binary {
        decode_binary(headers.iter().copied(), payload, &opts, key)
    } else {
        let traceparent = headers
            .iter()
            .find(|(k, _)| *k == "traceparent")
            .and_then(|(_, v)| std::str::from_utf8(v).ok());
        decode_structured(payload, &opts, key).map(|mut e| {
            if e.traceparent.is_none() {
                e.traceparent = traceparent.map(str::to_owned);
            }
            e
        })
    };
    decoded.map_err(|e| {
        let id = serde_json_id(payload);
        Rejection::new(id, e.to_string(), payload)
    })
}

/// The `"id"` of a payload that is JSON enough to have one (to name a rejected event).
fn serde_json_id(payload: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(payload).ok()?;
    let i = text.find("\"id\"")?;
    let rest = text[i + 4..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].chars().take(128).collect())
}
