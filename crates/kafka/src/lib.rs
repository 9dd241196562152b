//! The Kafka source — the only crate that touches rdkafka.
//!
//! At-least-once in, exactly-once in effect: each message is decoded and handed to the
//! [`EventSink`], whose future resolves once everything derived from it is durably recorded. Those
//! futures may complete in any order; a per-partition [`OffsetTracker`] stores an offset
//! (`enable.auto.offset.store=false`) only when it and every earlier consumed offset of its partition
//! are durable, so the committed offset never passes a gap. librdkafka's auto-commit
//! (`auto.commit.interval.ms`, default 1000 here) commits stored offsets in batches. After a crash,
//! the uncommitted tail is consumed again and recognised as duplicates downstream.
//!
//! - Rebalance: on revoke, the partitions' safe offsets are committed synchronously and their
//!   tracking dropped (late completions are ignored); on assign, partitions are resumed.
//! - Backpressure: a partition with more than `max_in_flight` messages waiting for durability is
//!   paused, and resumed below half; the poll loop never awaits durability.
//! - Poison messages (undecodable, no subject, unknown type, too large) are handed to the sink as
//!   rejections, which records them durably, and produced to the dead-letter topic when one is
//!   configured — both before their offset is stored.
//! - Lag: librdkafka statistics (`statistics.interval.ms`, default 5000 here) feed a [`LagHandle`].
//! - TLS/SASL: `kafka.options` passes through (`security.protocol`, `sasl.mechanisms`,
//!   `sasl.username`, `ssl.ca.location`, …); `kafka.sasl_password` is resolved at build time and
//!   set as `sasl.password` (never logged). OpenSSL is built in (`ssl-vendored`).

mod mirror;
mod producer;
mod tracker;

pub use mirror::AuditMirror;
pub use producer::Producer;
pub use tracker::{Advance, Flow, OffsetTracker};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::{ClientConfig, ClientContext, Message, Offset};
use tokio_util::sync::CancellationToken;

use scimflow_config::{KafkaConfig, TopicFormat};
use scimflow_core::decode::{decode_binary, decode_enveloped, decode_structured, DecodeOptions};
use scimflow_core::partition::PartitionLedger;
use scimflow_core::source::{EventSink, Rejection};
use scimflow_core::store::StoreError;
use scimflow_core::{Event, EventOrigin};

/// The header naming why a message went to the dead-letter topic.
pub const REJECT_REASON_HEADER: &str = "scimflow-reject-reason";

/// A Kafka source failure.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka client error: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("intake stopped because the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("intake stopped because a message could not be dead-lettered to `{topic}`: {error}")]
    DeadLetter {
        topic: String,
        error: rdkafka::error::KafkaError,
    },
    #[error("cannot read kafka.sasl_password: {0}")]
    Secret(#[from] scimflow_config::SecretError),
}

/// Per-partition consumer lag and broker reachability, refreshed from librdkafka statistics.
#[derive(Debug, Clone, Default)]
pub struct LagHandle {
    lag: Arc<RwLock<Vec<(String, i32, i64)>>>,
    /// Why no broker is reachable, when none is (`None`: reachable, or not known yet).
    unreachable: Arc<RwLock<Option<String>>>,
}

impl LagHandle {
    /// `(topic, partition, lag)` for each assigned partition: high watermark − position (the next
    /// offset the source will read), as of the last statistics report.
    pub fn snapshot(&self) -> Vec<(String, i32, i64)> {
        self.lag.read().map(|v| v.clone()).unwrap_or_default()
    }

    fn set(&self, v: Vec<(String, i32, i64)>) {
        if let Ok(mut g) = self.lag.write() {
            *g = v;
        }
    }

    /// Why the broker is unreachable, if it is: no broker connection was up at the last
    /// statistics report, or librdkafka reported all brokers down since. Readiness fails then.
    pub fn brokers_unreachable(&self) -> Option<String> {
        self.unreachable.read().ok().and_then(|g| g.clone())
    }

    fn set_unreachable(&self, why: Option<String>) {
        if let Ok(mut g) = self.unreachable.write() {
            *g = why;
        }
    }
}

/// Per partition: how far messages are durably recorded, and what was committed.
#[derive(Debug, Default)]
struct Commits {
    /// The offset after the newest message up to which everything is durable.
    durable_next: HashMap<(String, i32), i64>,
    /// The last offset committed (or found committed at assignment).
    committed: HashMap<(String, i32), i64>,
}

/// The consumer context: rebalance handling, commits and statistics.
pub struct SourceContext {
    tracker: Arc<Mutex<OffsetTracker>>,
    lag: LagHandle,
    ledger: Arc<PartitionLedger>,
    commits: Mutex<Commits>,
}

impl SourceContext {
    /// The offsets that may be committed now (each partition's durable watermark, capped by its
    /// oldest queued operation), restricted to `only` when given, and only where they moved.
    fn to_commit(&self, only: Option<&TopicPartitionList>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        let Ok(mut c) = self.commits.lock() else {
            return tpl;
        };
        let Commits {
            durable_next,
            committed,
        } = &mut *c;
        for ((topic, partition), next) in durable_next.iter() {
            if only.is_some_and(|o| o.find_partition(topic, *partition).is_none()) {
                continue;
            }
            let bound = self.ledger.commit_bound(topic, *partition, *next);
            let key = (topic.clone(), *partition);
            if committed.get(&key).is_some_and(|&done| done >= bound) {
                continue;
            }
            if tpl
                .add_partition_offset(topic, *partition, Offset::Offset(bound))
                .is_ok()
            {
                committed.insert(key, bound);
            }
        }
        tpl
    }

    fn commit<C: Consumer<SourceContext>>(
        &self,
        consumer: &C,
        only: Option<&TopicPartitionList>,
        mode: CommitMode,
    ) {
        let tpl = self.to_commit(only);
        if tpl.count() == 0 {
            return;
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => tracing::debug!(partitions = tpl.count(), "offsets committed"),
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; retried with the next one");
                if let Ok(mut c) = self.commits.lock() {
                    for e in tpl.elements() {
                        c.committed.remove(&(e.topic().to_owned(), e.partition()));
                    }
                }
            }
        }
    }
}

impl ClientContext for SourceContext {
    fn stats(&self, stats: Statistics) {
        let mut out = Vec::new();
        for (name, topic) in &stats.topics {
            for (id, p) in &topic.partitions {
                if *id < 0 || !p.desired {
                    continue;
                }
                let high = if p.ls_offset >= 0 {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                let lag = if p.app_offset >= 0 && high >= 0 {
                    (high - p.app_offset).max(0)
                } else {
                    p.consumer_lag
                };
                out.push((name.clone(), *id, lag));
            }
        }
        out.sort();
        self.lag.set(out);
        let up = stats.brokers.values().any(|b| b.state == "UP");
        self.lag.set_unreachable(if up || stats.brokers.is_empty() {
            None
        } else {
            let mut states: Vec<String> = stats
                .brokers
                .values()
                .map(|b| format!("{} {}", b.name, b.state))
                .collect();
            states.sort();
            Some(format!(
                "no Kafka broker connection is up ({})",
                states.join(", ")
            ))
        });
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
            self.lag
                .set_unreachable(Some(format!("all Kafka brokers are down: {reason}")));
        }
        tracing::error!(error = %error, reason, "librdkafka");
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Stop delivering their work first, and let what is in flight finish (bounded), so the
            // next owner never races a delivery still running here.
            let parts: Vec<(String, i32)> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            for (t, p) in &parts {
                self.ledger.revoked(t, *p);
            }
            if !self.ledger.wait_idle(&parts, REVOKE_DRAIN) {
                tracing::warn!(
                    partitions = parts.len(),
                    "deliveries of revoked partitions still running after {REVOKE_DRAIN:?}; the next owner may repeat them"
                );
            }
            // Commit what is safe (durable, and no queued operation left behind) while the
            // partitions are still ours; the next owner resumes there.
            self.commit(consumer, Some(tpl), CommitMode::Sync);
            if let Ok(mut t) = self.tracker.lock() {
                for e in tpl.elements() {
                    t.revoke(e.topic(), e.partition());
                }
            }
            if let Ok(mut c) = self.commits.lock() {
                for e in tpl.elements() {
                    let key = (e.topic().to_owned(), e.partition());
                    c.durable_next.remove(&key);
                    c.committed.remove(&key);
                }
            }
            tracing::info!(partitions = tpl.count(), "kafka partitions revoked");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // Where each partition resumes: queued work from before it is someone else's now.
            let committed = consumer
                .committed_offsets((*tpl).clone(), Duration::from_secs(10))
                .map_err(|e| tracing::warn!(error = %e, "cannot read committed offsets on assign"))
                .ok();
            for e in tpl.elements() {
                let at = committed
                    .as_ref()
                    .and_then(|c| c.find_partition(e.topic(), e.partition()))
                    .and_then(|p| match p.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                match (&committed, at) {
                    (_, Some(o)) => self.ledger.assigned(e.topic(), e.partition(), o),
                    (Some(_), None) => self.ledger.assigned(e.topic(), e.partition(), 0),
                    // Unknown: its queued work stays held until the periodic lookup resolves it,
                    // rather than risk delivering work another instance already did.
                    (None, None) => {}
                }
                if let (Some(o), Ok(mut c)) = (at, self.commits.lock()) {
                    c.committed.insert((e.topic().to_owned(), e.partition()), o);
                }
            }
            if let Err(e) = consumer.resume(tpl) {
                tracing::debug!(error = %e, "resume on assign failed");
            }
            tracing::info!(partitions = tpl.count(), "kafka partitions assigned");
        }
    }
}

/// A message's durability outcome: topic, partition, tracker epoch, offset, result.
type Done = (String, i32, u64, i64, Result<(), KafkaError>);

/// The consumer-group source.
pub struct KafkaSource {
    consumer: StreamConsumer<SourceContext>,
    tracker: Arc<Mutex<OffsetTracker>>,
    formats: HashMap<String, TopicFormat>,
    max_event_bytes: Option<usize>,
    dead_letter: Option<(String, FutureProducer)>,
    lag: LagHandle,
    ledger: Arc<PartitionLedger>,
}

/// How often safe offsets are committed, and how often the committed offsets of partitions
/// whose queued work is held here are looked up.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a revocation waits for deliveries of its partitions still in flight (well inside
/// `max.poll.interval.ms`; a request times out after the target's `timeout_ms`, 10 s by default).
const REVOKE_DRAIN: Duration = Duration::from_secs(15);
const HELD_LOOKUP_EVERY: u32 = 5;

/// The librdkafka settings scimflow uses, before the config's `options` (which win). Does not
/// include `sasl.password` (see [`KafkaSource::build`]).
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("client.id", &cfg.client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "5000");
    for (k, v) in &cfg.options {
        c.set(k, v);
    }
    c
}

/// Options that only a consumer understands (not passed to the dead-letter producer).
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.partition.eof",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "fetch.wait.max.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "isolation.level",
    "partition.assignment.strategy",
    "queued.min.messages",
    "queued.max.messages.kbytes",
];

/// The settings of a producer next to the source: the source's connection and security options
/// (with `sasl.password` resolved), without the consumer-only ones, idempotent.
pub fn producer_config(cfg: &KafkaConfig) -> Result<ClientConfig, KafkaError> {
    let mut config = client_config(cfg);
    if let Some(secret) = &cfg.sasl_password {
        config.set("sasl.password", secret.resolve()?.expose());
    }
    let mut p = ClientConfig::new();
    // `config_map` masks secrets: take the real values with `get`.
    for k in config.config_map().keys() {
        if CONSUMER_ONLY.contains(k) || *k == "statistics.interval.ms" {
            continue;
        }
        if let Some(v) = config.get(k) {
            p.set(*k, v);
        }
    }
    p.set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    Ok(p)
}

impl KafkaSource {
    /// Resolves `kafka.sasl_password`, creates the consumer (and the dead-letter producer) and
    /// subscribes to the configured topics.
    pub fn build(cfg: &KafkaConfig, ledger: Arc<PartitionLedger>) -> Result<Self, KafkaError> {
        let mut config = client_config(cfg);
        if let Some(secret) = &cfg.sasl_password {
            config.set("sasl.password", secret.resolve()?.expose());
        }
        let tracker = Arc::new(Mutex::new(OffsetTracker::new(cfg.max_in_flight)));
        let lag = LagHandle::default();
        let consumer: StreamConsumer<SourceContext> =
            config.create_with_context(SourceContext {
                tracker: tracker.clone(),
                lag: lag.clone(),
                ledger: ledger.clone(),
                commits: Mutex::default(),
            })?;
        consumer.subscribe(&cfg.topic_names())?;
        let dead_letter = match &cfg.dead_letter_topic {
            Some(topic) => Some((topic.clone(), producer_config(cfg)?.create()?)),
            None => None,
        };
        Ok(KafkaSource {
            consumer,
            tracker,
            formats: cfg
                .topics
                .iter()
                .map(|t| (t.name.clone(), t.format.clone()))
                .collect(),
            max_event_bytes: cfg.max_event_bytes,
            dead_letter,
            lag,
            ledger,
        })
    }

    /// A cheap, shared view of per-partition consumer lag.
    pub fn lag(&self) -> LagHandle {
        self.lag.clone()
    }

    /// Consumes until `shutdown` (or a store or dead-letter failure), then stores everything that
    /// became durable and commits synchronously.
    pub async fn run(
        self,
        sink: Arc<dyn EventSink>,
        shutdown: CancellationToken,
    ) -> Result<(), KafkaError> {
        let mut pending: FuturesUnordered<futures::future::BoxFuture<'static, Done>> =
            FuturesUnordered::new();
        let mut failure: Option<KafkaError> = None;
        let mut draining = false;
        let mut tick = tokio::time::interval(COMMIT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u32;
        loop {
            if draining && pending.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                _ = tick.tick() => {
                    self.consumer.context().commit(&self.consumer, None, CommitMode::Async);
                    ticks = ticks.wrapping_add(1);
                    if ticks.is_multiple_of(HELD_LOOKUP_EVERY) {
                        tokio::task::block_in_place(|| self.resolve_held());
                    }
                }
                Some((topic, partition, epoch, offset, result)) = pending.next(), if !pending.is_empty() => {
                    if let Err(e) = result {
                        tracing::error!(error = %e, %topic, partition, offset, "stopping intake without acknowledging");
                        failure.get_or_insert(e);
                        // Nothing more may be stored: stop here.
                        break;
                    }
                    self.completed(&topic, partition, epoch, offset);
                }
                _ = shutdown.cancelled(), if !draining => draining = true,
                msg = self.consumer.recv(), if !draining => {
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(error = %e, "kafka consumer error");
                            continue;
                        }
                    };
                    pending.push(self.accept(&msg, sink.as_ref()));
                }
            }
        }
        if failure.is_none() {
            self.consumer
                .context()
                .commit(&self.consumer, None, CommitMode::Sync);
        }
        self.consumer.unsubscribe();
        // Give librdkafka a moment to leave the group cleanly so partitions move without a session timeout.
        tokio::time::sleep(Duration::from_millis(50)).await;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Registers and hands one message to the sink; the returned future resolves when its effects
    /// (and its dead-letter copy) are durable. Never awaits anything itself.
    fn accept(
        &self,
        msg: &BorrowedMessage<'_>,
        sink: &dyn EventSink,
    ) -> futures::future::BoxFuture<'static, Done> {
        let (topic, partition, offset) = (msg.topic().to_owned(), msg.partition(), msg.offset());
        let (epoch, flow) = match self.tracker.lock() {
            Ok(mut t) => t.begin(&topic, partition, offset),
            Err(_) => (0, Flow::Keep),
        };
        if flow == Flow::Pause {
            self.set_paused(&topic, partition, true);
        }
        let origin = EventOrigin::Kafka {
            topic: topic.clone(),
            partition,
            offset,
        };
        let format = self
            .formats
            .get(&topic)
            .unwrap_or(&TopicFormat::CloudEvents);
        let max = self
            .max_event_bytes
            .unwrap_or_else(|| sink.max_event_bytes());
        let input = decode_message_as(msg, format, max, sink);
        let dlq = match (&input, &self.dead_letter) {
            (Err(r), Some((dlt, producer))) => Some(dead_letter(producer, dlt, msg, &r.reason)),
            _ => None,
        };
        let durable = sink.accept(origin, input, Vec::new());
        Box::pin(async move {
            let (stored, dead) = futures::join!(durable, async {
                match dlq {
                    Some(f) => f.await,
                    None => Ok(()),
                }
            });
            let result = stored.map_err(KafkaError::from).and(dead);
            (topic, partition, epoch, offset, result)
        })
    }

    fn completed(&self, topic: &str, partition: i32, epoch: u64, offset: i64) {
        let advance = match self.tracker.lock() {
            Ok(mut t) => t.complete(topic, partition, epoch, offset),
            Err(_) => None,
        };
        let Some(advance) = advance else {
            return; // revoked since: the new owner replays it
        };
        if let Some(last) = advance.store {
            if let Ok(mut c) = self.consumer.context().commits.lock() {
                c.durable_next
                    .insert((topic.to_owned(), partition), last + 1);
            }
        }
        if advance.flow == Flow::Resume {
            self.set_paused(topic, partition, false);
        }
    }

    /// Looks up the group's committed offsets of partitions whose queued work is held here: for
    /// partitions assigned here whose resume point is unknown, that resolves it; for partitions
    /// owned elsewhere, it lets work the new owner committed past be handed over.
    fn resolve_held(&self) {
        let held = self.ledger.held_partitions();
        if held.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in &held {
            tpl.add_partition(topic, *partition);
        }
        let committed = match self.consumer.committed_offsets(tpl, Duration::from_secs(5)) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "cannot look up committed offsets of held partitions");
                return;
            }
        };
        let assignment = self.consumer.assignment().unwrap_or_default();
        for e in committed.elements() {
            let at = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            if assignment
                .find_partition(e.topic(), e.partition())
                .is_some()
            {
                self.ledger.assigned(e.topic(), e.partition(), at);
            } else {
                self.ledger
                    .committed_elsewhere(e.topic(), e.partition(), at);
            }
        }
    }

    fn set_paused(&self, topic: &str, partition: i32, pause: bool) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let r = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        match r {
            Ok(()) => tracing::debug!(%topic, partition, pause, "partition flow changed"),
            Err(e) => tracing::warn!(%topic, partition, pause, error = %e, "pause/resume failed"),
        }
    }
}

/// Produces a poison message to the dead-letter topic: original key, payload and headers, plus
/// [`REJECT_REASON_HEADER`]. The future resolves when the broker acknowledged it.
fn dead_letter(
    producer: &FutureProducer,
    topic: &str,
    msg: &BorrowedMessage<'_>,
    reason: &str,
) -> futures::future::BoxFuture<'static, Result<(), KafkaError>> {
    let mut headers = OwnedHeaders::new();
    if let Some(h) = msg.headers() {
        for h in h.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    headers = headers.insert(Header {
        key: REJECT_REASON_HEADER,
        value: Some(reason),
    });
    let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
    if let Some(k) = msg.key() {
        record = record.key(k);
    }
    if let Some(p) = msg.payload() {
        record = record.payload(p);
    }
    let topic = topic.to_owned();
    // `send_result` enqueues now (without awaiting), so ordering is kept; the delivery is awaited
    // with the durability future.
    match producer.send_result(record) {
        Ok(delivery) => Box::pin(async move {
            match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((error, _))) => Err(KafkaError::DeadLetter { topic, error }),
                Err(_) => Err(KafkaError::DeadLetter {
                    topic,
                    error: rdkafka::error::KafkaError::Canceled,
                }),
            }
        }),
        Err((error, _)) => Box::pin(async move { Err(KafkaError::DeadLetter { topic, error }) }),
    }
}

/// Decodes a message as CloudEvents (see [`decode_message_as`]) with the sink's size limit.
pub fn decode_message(msg: &BorrowedMessage<'_>, sink: &dyn EventSink) -> Result<Event, Rejection> {
    decode_message_as(msg, &TopicFormat::CloudEvents, sink.max_event_bytes(), sink)
}

/// Decodes a message in its topic's format. CloudEvents: binary mode when it carries
/// `ce_specversion`, structured otherwise. JSON: by the topic's envelope. The message key is the
/// subject when the event names none; a `traceparent` header is honoured.
pub fn decode_message_as(
    msg: &BorrowedMessage<'_>,
    format: &TopicFormat,
    max_bytes: usize,
    sink: &dyn EventSink,
) -> Result<Event, Rejection> {
    let payload = msg.payload().unwrap_or_default();
    let key = msg.key().and_then(|k| std::str::from_utf8(k).ok());
    let accepts = |t: &str| sink.accepts_type(t);
    let opts = DecodeOptions {
        max_bytes,
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
    let traceparent = headers
        .iter()
        .find(|(k, _)| *k == "traceparent")
        .and_then(|(_, v)| std::str::from_utf8(v).ok());
    let with_trace = |mut e: Event| {
        if e.traceparent.is_none() {
            e.traceparent = traceparent.map(str::to_owned);
        }
        e
    };
    let decoded = match format {
        TopicFormat::Json(envelope) => {
            decode_enveloped(payload, envelope, &opts, key).map(with_trace)
        }
        TopicFormat::CloudEvents if headers.iter().any(|(k, _)| *k == "ce_specversion") => {
            decode_binary(headers.iter().copied(), payload, &opts, key)
        }
        TopicFormat::CloudEvents => decode_structured(payload, &opts, key).map(with_trace),
    };
    decoded.map_err(|e| {
        let id = match format {
            TopicFormat::Json(envelope) => serde_json_path_id(payload, envelope),
            TopicFormat::CloudEvents => serde_json_id(payload),
        };
        Rejection::new(id, e.to_string(), payload)
    })
}

fn serde_json_path_id(
    payload: &[u8],
    envelope: &scimflow_core::decode::Envelope,
) -> Option<String> {
    if payload.len() > 1024 * 1024 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    match envelope.id.get(&v)? {
        serde_json::Value::String(s) => Some(s.chars().take(128).collect()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
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
