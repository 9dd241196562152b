//! The configuration model: the raw form as written (with source locations) and the validated form.
//!
//! Raw structs do not use `deny_unknown_fields`: unknown keys are collected (`unknown`) and reported
//! together with every other problem, instead of stopping at the first one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use scimflow_core::OpKind;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::{ConnectorProfile, SecretRef};

/// Keys present in the YAML that the model does not know.
pub type Unknown = BTreeMap<String, IgnoredAny>;

// ----- raw, as written --------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub struct RawConfig {
    pub version: Spanned<u32>,
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
    #[serde(default)]
    pub data_dir: Option<String>,
    #[serde(default)]
    pub store: Option<RawStore>,
    #[serde(default)]
    pub ingest: Option<RawIngest>,
    #[serde(default)]
    pub kafka: Option<RawKafka>,
    #[serde(default)]
    pub audit: Option<RawAudit>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub tables: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub targets: BTreeMap<String, RawTarget>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `audit:` — signed checkpoints of the audit chain.
#[derive(Debug, Deserialize)]
pub struct RawAudit {
    /// `{ file: PATH }` (or `{ env: NAME }`): an Ed25519 private key, PKCS#8 PEM.
    #[serde(default)]
    pub signing_key: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub checkpoint_records: Option<Spanned<u64>>,
    #[serde(default)]
    pub checkpoint_seconds: Option<Spanned<u64>>,
    /// A Kafka topic every audit record is also produced to.
    #[serde(default)]
    pub kafka_topic: Option<Spanned<String>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `admin:` — the operators' API on its own listener.
#[derive(Debug, Deserialize)]
pub struct RawAdmin {
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
    #[serde(default)]
    pub tokens: Vec<Spanned<RawAdminToken>>,
    #[serde(default)]
    pub max_body_bytes: Option<Spanned<usize>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// One admin API credential.
#[derive(Debug, Deserialize)]
pub struct RawAdminToken {
    pub name: Spanned<String>,
    pub role: Spanned<String>,
    pub token: Spanned<serde_json::Value>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// An included file: more targets and tables.
#[derive(Debug, Deserialize)]
pub struct RawFragment {
    #[serde(default)]
    pub tables: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub targets: BTreeMap<String, RawTarget>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Deserialize)]
pub struct RawStore {
    #[serde(default)]
    pub engine: Option<Spanned<String>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Deserialize)]
pub struct RawIngest {
    #[serde(default)]
    pub token: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub max_event_bytes: Option<usize>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Deserialize)]
pub struct RawKafka {
    pub brokers: Spanned<String>,
    /// Each entry: a topic name (CloudEvents), or `{ name, format: cloudevents|json, envelope: {…} }`.
    pub topics: Vec<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// Passed through to librdkafka (e.g. `session.timeout.ms`, `security.protocol`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Largest accepted message, in bytes (default: `ingest.max_event_bytes`).
    #[serde(default)]
    pub max_event_bytes: Option<usize>,
    /// Where undecodable messages are also produced (with a `scimflow-reject-reason` header).
    #[serde(default)]
    pub dead_letter_topic: Option<Spanned<String>>,
    /// `{ env: NAME }` or `{ file: PATH }`, set as librdkafka's `sasl.password`.
    #[serde(default)]
    pub sasl_password: Option<Spanned<serde_json::Value>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Deserialize)]
pub struct RawTarget {
    pub base_url: Spanned<String>,
    /// The connector profile, by name (`connectors/<name>/profile.yaml`, embedded); default `generic`.
    #[serde(default)]
    pub connector: Option<Spanned<String>>,
    /// A custom connector profile file instead, relative to the file that names it.
    #[serde(default)]
    pub connector_file: Option<Spanned<String>>,
    #[serde(default)]
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub allow_http: bool,
    /// Client certificate and private CA for the target's TLS connections.
    #[serde(default)]
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub concurrency: Option<usize>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    pub deletion_guard: Option<RawDeletionGuard>,
    #[serde(default)]
    pub circuit_breaker: Option<RawBreaker>,
    #[serde(default)]
    pub adaptive_concurrency: Option<RawAdaptiveConcurrency>,
    /// How transient failures are retried, parked and given up on.
    #[serde(default)]
    pub retry: Option<RawRetry>,
    /// Writes go out in SCIM bulk requests (`true`, or a map of limits).
    #[serde(default)]
    pub bulk: Option<Spanned<serde_json::Value>>,
    /// Who is provisioned here (an expression; default: everyone).
    #[serde(default)]
    pub scope: Option<Spanned<String>>,
    /// What happens to a person who leaves the scope (default: deactivate).
    #[serde(default)]
    pub out_of_scope: Option<Spanned<String>>,
    #[serde(default)]
    pub lifecycle: BTreeMap<String, Spanned<RawLifecycle>>,
    #[serde(default)]
    pub matching: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub user: BTreeMap<String, Spanned<RawAttribute>>,
    /// Expression giving the manager's subject id (resolved to the target's id at delivery).
    #[serde(default)]
    pub manager: Option<Spanned<String>>,
    #[serde(default)]
    pub groups: Vec<RawGroupRule>,
    /// How reconciliation scans this target.
    #[serde(default)]
    pub reconcile: Option<RawReconcile>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Deserialize)]
pub struct RawReconcile {
    #[serde(default)]
    pub page_size: Option<usize>,
    #[serde(default)]
    pub report_unmanaged: bool,
    #[serde(default)]
    pub interval_seconds: Option<u64>,
    /// `auto` (default), `index` or `cursor`.
    #[serde(default)]
    pub pagination: Option<String>,
    #[serde(default)]
    pub repair: bool,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Deserialize)]
pub struct RawAuth {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// `bearer`: the token, a secret reference.
    #[serde(default)]
    pub token: Option<Spanned<serde_json::Value>>,
    /// `oauth2`: the token endpoint.
    #[serde(default)]
    pub token_url: Option<Spanned<String>>,
    #[serde(default)]
    pub client_id: Option<Spanned<String>>,
    /// `oauth2`: a secret reference.
    #[serde(default)]
    pub client_secret: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub scope: Option<Spanned<String>>,
    #[serde(default)]
    pub audience: Option<Spanned<String>>,
    /// `oauth2`: `basic` (default) or `body`.
    #[serde(default)]
    pub auth_style: Option<Spanned<String>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `tls:` of a target: each value a `{ file: PATH }` (or `{ env: NAME }`) reference to PEM text.
#[derive(Debug, Deserialize)]
pub struct RawTls {
    #[serde(default)]
    pub client_cert: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub client_key: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub ca: Option<Spanned<serde_json::Value>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Deserialize)]
pub struct RawAdaptiveConcurrency {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub initial: Option<usize>,
    #[serde(default)]
    pub min: Option<usize>,
    #[serde(default)]
    pub decrease_factor: Option<f64>,
    #[serde(default)]
    pub latency_factor: Option<f64>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Deserialize)]
pub struct RawBreaker {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub failures: Option<u32>,
    #[serde(default)]
    pub auth_failures: Option<u32>,
    #[serde(default)]
    pub open_seconds: Option<u64>,
    #[serde(default)]
    pub max_open_seconds: Option<u64>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Deserialize)]
pub struct RawRetry {
    #[serde(default)]
    pub park_after_seconds: Option<u64>,
    #[serde(default)]
    pub park_delay_seconds: Option<u64>,
    #[serde(default)]
    pub max_park_delay_seconds: Option<u64>,
    #[serde(default)]
    pub give_up_after_seconds: Option<u64>,
    #[serde(default)]
    pub budget_percent: Option<f64>,
    #[serde(default)]
    pub budget_min_per_second: Option<f64>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Deserialize)]
pub struct RawDeletionGuard {
    #[serde(default)]
    pub max_count: Option<u64>,
    #[serde(default)]
    pub max_percent: Option<f64>,
    #[serde(default)]
    pub min_count: Option<u64>,
    #[serde(default)]
    pub window_seconds: Option<u64>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Deserialize)]
pub struct RawRateLimit {
    pub per_second: f64,
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Deserialize)]
pub struct RawGroupRule {
    pub name: Spanned<String>,
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// A lifecycle entry: `upsert`, or `{ action: deactivate, at: <expression> }`.
#[derive(Debug)]
pub struct RawLifecycle {
    pub action: String,
    pub at: Option<String>,
    pub unknown: Vec<String>,
}

impl<'de> Deserialize<'de> for RawLifecycle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawLifecycle;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an action name or a map with `action` and `at`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawLifecycle, E> {
                Ok(RawLifecycle {
                    action: v.to_owned(),
                    at: None,
                    unknown: Vec::new(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawLifecycle, A::Error> {
                let mut out = RawLifecycle {
                    action: String::new(),
                    at: None,
                    unknown: Vec::new(),
                };
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "action" => out.action = m.next_value()?,
                        "at" => out.at = Some(m.next_value()?),
                        _ => {
                            m.next_value::<IgnoredAny>()?;
                            out.unknown.push(k);
                        }
                    }
                }
                if out.action.is_empty() {
                    return Err(de::Error::missing_field("action"));
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// An attribute mapping: an expression (or a literal), or
/// `{ value | candidates, on: create|always, default }`.
#[derive(Debug, Default)]
pub struct RawAttribute {
    pub value: Option<serde_json::Value>,
    pub candidates: Vec<String>,
    pub on: Option<String>,
    pub default: Option<serde_json::Value>,
    pub unknown: Vec<String>,
}

impl<'de> Deserialize<'de> for RawAttribute {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAttribute;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an expression, a literal, or a map with `value` or `candidates`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAttribute, E> {
                Ok(RawAttribute {
                    value: Some(serde_json::Value::String(v.to_owned())),
                    ..Default::default()
                })
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawAttribute, E> {
                Ok(RawAttribute {
                    value: Some(serde_json::Value::Bool(v)),
                    ..Default::default()
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawAttribute, E> {
                Ok(RawAttribute {
                    value: Some(v.into()),
                    ..Default::default()
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawAttribute, E> {
                Ok(RawAttribute {
                    value: Some(v.into()),
                    ..Default::default()
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawAttribute, E> {
                Ok(RawAttribute {
                    value: serde_json::Number::from_f64(v).map(serde_json::Value::Number),
                    ..Default::default()
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawAttribute, E> {
                Ok(RawAttribute {
                    value: Some(serde_json::Value::Null),
                    ..Default::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawAttribute, A::Error> {
                let mut out = RawAttribute::default();
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "value" => out.value = Some(m.next_value()?),
                        "candidates" => out.candidates = m.next_value()?,
                        "on" => out.on = Some(m.next_value()?),
                        "default" => out.default = Some(m.next_value()?),
                        _ => {
                            m.next_value::<IgnoredAny>()?;
                            out.unknown.push(k);
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

// ----- validated --------------------------------------------------------------------------------

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub file: String,
    /// Every file read: the config and its includes (watched for reload).
    pub files: Vec<PathBuf>,
    /// Content hash of the config and its includes: the mapping version.
    pub version: String,
    /// Address of the HTTP listener (ingest API, health).
    pub listen: Option<SocketAddr>,
    /// Where the store lives.
    pub data_dir: Option<PathBuf>,
    /// Storage engine name (`sled` or `redb`).
    pub store_engine: String,
    pub ingest: IngestConfig,
    /// The Kafka source; `None` means the embedded source.
    pub kafka: Option<KafkaConfig>,
    pub audit: AuditConfig,
    /// The admin API; `None` = not served.
    pub admin: Option<AdminConfig>,
    /// Static lookup tables for expressions.
    pub tables: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    pub targets: Vec<TargetConfig>,
}

impl Config {
    /// Every event type some target's lifecycle names.
    pub fn known_event_types(&self) -> std::collections::BTreeSet<String> {
        self.targets
            .iter()
            .flat_map(|t| t.lifecycle.keys().cloned())
            .collect()
    }
}

/// The admin API (`admin:`): its own listen address, bearer tokens with roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: std::net::SocketAddr,
    pub tokens: Vec<AdminToken>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

impl AdminConfig {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:8081";
    pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
}

/// A credential of the admin API. The token value is a secret reference, re-read on every request
/// (a rotated file takes effect at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// Recorded in the audit log for every mutating call made with it (never the value).
    pub name: String,
    pub role: AdminRole,
    pub token: SecretRef,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AdminRole {
    /// Reads: targets, dead letters, audit, health.
    Read,
    /// Reads and changes: pause/resume, redrive/discard, provision now.
    Operator,
}

impl AdminRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Read => "read",
            AdminRole::Operator => "operator",
        }
    }
}

/// Signed checkpoints of the audit chain (`audit:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The Ed25519 private key (PKCS#8 PEM, `-----BEGIN PRIVATE KEY-----`) that signs checkpoints;
    /// `None` = no checkpoints are written (the chain alone is kept).
    pub signing_key: Option<SecretRef>,
    /// A checkpoint is signed once this many records were appended since the last one…
    pub checkpoint_records: u64,
    /// …or once this much time has passed with at least one new record; and at clean shutdown.
    pub checkpoint_interval: Duration,
    /// Every audit record is also produced to this Kafka topic (needs `kafka:`).
    pub kafka_topic: Option<String>,
}

impl AuditConfig {
    pub const DEFAULT_CHECKPOINT_RECORDS: u64 = 1000;
    pub const DEFAULT_CHECKPOINT_SECONDS: u64 = 60;
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            signing_key: None,
            checkpoint_records: Self::DEFAULT_CHECKPOINT_RECORDS,
            checkpoint_interval: Duration::from_secs(Self::DEFAULT_CHECKPOINT_SECONDS),
            kafka_topic: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Bearer token required by `POST /api/v1/events`.
    pub token: Option<SecretRef>,
    pub max_event_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topics: Vec<KafkaTopic>,
    pub group_id: String,
    pub client_id: String,
    /// Passed through to librdkafka (they win over scimflow's settings). TLS/SASL:
    /// `security.protocol` (`ssl`, `sasl_ssl`, `sasl_plaintext`), `ssl.ca.location`,
    /// `ssl.certificate.location`, `ssl.key.location`, `sasl.mechanisms` (`PLAIN`, `SCRAM-SHA-256`,
    /// `SCRAM-SHA-512`), `sasl.username`. Never `sasl.password`: use [`KafkaConfig::sasl_password`].
    pub options: BTreeMap<String, String>,
    /// Messages per partition whose effects are not yet durable before the partition is paused
    /// (it resumes below half of this).
    pub max_in_flight: usize,
    /// Largest accepted message, in bytes; `None` = the sink's limit (`ingest.max_event_bytes`).
    pub max_event_bytes: Option<usize>,
    /// Where undecodable messages are also produced, before their offset is stored.
    pub dead_letter_topic: Option<String>,
    /// The SASL password, resolved when the consumer is built and set as `sasl.password`.
    pub sasl_password: Option<SecretRef>,
}

impl KafkaConfig {
    /// The topic names, for subscribing and logging.
    pub fn topic_names(&self) -> Vec<&str> {
        self.topics.iter().map(|t| t.name.as_str()).collect()
    }
}

/// One consumed topic and how its messages are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTopic {
    pub name: String,
    pub format: TopicFormat,
}

/// How a topic's messages are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicFormat {
    /// CloudEvents 1.0, structured mode, or binary mode when a message has `ce_specversion`.
    CloudEvents,
    /// Plain JSON; the envelope says where the event attributes are.
    Json(Box<scimflow_core::decode::Envelope>),
}

/// An expression as written, with where it is written (for diagnostics).
#[derive(Debug, Clone, PartialEq)]
pub struct ExprSource {
    pub text: String,
    pub file: String,
    pub line: u64,
    pub column: u64,
}

#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub name: String,
    /// Base URL without a trailing slash, e.g. `https://api.example.com/scim/v2`.
    pub base_url: String,
    /// What the target's service supports and how it answers (`connector:` / `connector_file:`;
    /// default the embedded `generic` profile). Already applied by validation: lifecycle actions
    /// it does not support are config errors, and `rate_limit` / `matching` default to its values.
    pub profile: Arc<ConnectorProfile>,
    pub auth: TargetAuth,
    /// Client certificate and private CA (`tls:`); server verification is always on.
    pub tls: TargetTls,
    pub concurrency: usize,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub rate_limit: Option<RateLimit>,
    /// Stages mass deprovisioning instead of sending it (`deletion_guard:`); `None` = off.
    pub deletion_guard: Option<DeletionGuardConfig>,
    /// Stops sending to a failing target for a while (`circuit_breaker:`); `None` = off.
    pub circuit_breaker: Option<BreakerConfig>,
    /// Learns how many requests in flight the target takes, up to `concurrency`
    /// (`adaptive_concurrency:`); `None` = off (always `concurrency`).
    pub adaptive_concurrency: Option<AdaptiveConcurrency>,
    /// Retrying transient failures (`retry:`).
    pub retry: RetryPolicy,
    /// Sending writes in SCIM bulk requests (`bulk:`); `None` = one request per write.
    pub bulk: Option<BulkConfig>,
    pub scope: Option<ExprSource>,
    /// Action for a person who leaves the scope; `None` = leave the account alone.
    pub out_of_scope: Option<OpKind>,
    /// What each event type does on this target.
    pub lifecycle: BTreeMap<String, LifecycleRule>,
    /// Attributes to find an existing account by, in precedence order.
    pub matching: Vec<String>,
    /// SCIM attribute path → expression, in path order.
    pub user: Vec<AttributeMapping>,
    pub manager: Option<ExprSource>,
    pub groups: Vec<GroupRule>,
    /// How reconciliation scans this target (`reconcile:`).
    pub reconcile: ReconcileConfig,
}

/// A target's `reconcile:` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// Resources per page of the `GET /Users` and `GET /Groups` scans (`count`), 1..=1000.
    pub page_size: usize,
    /// Whether accounts this system does not manage are listed in the report (never repaired).
    pub report_unmanaged: bool,
    /// The daemon reconciles the target this often (`None`: only on demand).
    pub interval: Option<Duration>,
    /// Whether scheduled runs also queue the corrective operations (on-demand runs say so
    /// themselves).
    pub repair: bool,
    /// How the scan pages through the target.
    pub pagination: Pagination,
}

/// How reconciliation pages through a target's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pagination {
    /// Cursors when the target's `/ServiceProviderConfig` says it supports them (RFC 9865), else
    /// indexes.
    #[default]
    Auto,
    /// `startIndex` / `count` (RFC 7644 §3.4.2.4).
    Index,
    /// `cursor` / `count`, following `nextCursor` (RFC 9865).
    Cursor,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            page_size: 100,
            report_unmanaged: false,
            interval: None,
            repair: false,
            pagination: Pagination::Auto,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetAuth {
    None,
    /// A static bearer token, re-read from its reference on every request.
    Bearer(SecretRef),
    /// Tokens obtained with the OAuth2 client credentials grant (RFC 6749 §4.4).
    OAuth2(OAuth2Config),
}

impl TargetAuth {
    /// The `type:` as written, for logs and listings.
    pub fn kind(&self) -> &'static str {
        match self {
            TargetAuth::None => "none",
            TargetAuth::Bearer(_) => "bearer",
            TargetAuth::OAuth2(_) => "oauth2",
        }
    }
}

/// `auth: { type: oauth2, … }`: the client credentials grant. Access tokens are cached, refreshed
/// before they expire (one request at a time), and refreshed once more when the target answers 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Config {
    /// The token endpoint; `https` unless the target has `allow_http`.
    pub token_url: String,
    pub client_id: String,
    /// Re-read on every token request (a rotated secret takes effect at the next refresh).
    pub client_secret: SecretRef,
    /// Space-separated scopes (RFC 6749 §3.3), sent as `scope`.
    pub scope: Option<String>,
    /// Sent as `audience` (Auth0, Okta and others use it to name the API).
    pub audience: Option<String>,
    pub auth_style: ClientAuthStyle,
}

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthStyle {
    /// HTTP Basic with the form-encoded client id and secret (the RFC's "MUST support").
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the request body.
    Body,
}

/// A target's `tls:` section. The server's certificate is always verified: against `ca` when set
/// (then only against it), else against the built-in web PKI roots.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetTls {
    /// Presented when the server asks for a client certificate (mTLS).
    pub client: Option<ClientCertificate>,
    /// PEM: the CA certificate(s) that sign the target's server certificate.
    pub ca: Option<SecretRef>,
}

/// A client certificate (PEM, leaf first, optionally followed by intermediates) and its private
/// key (PEM: PKCS#8, PKCS#1 or SEC1). Read when the target's client is built (at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    pub cert: SecretRef,
    pub key: SecretRef,
}

/// A target's `bulk:` section: writes (POST, PATCH, PUT, DELETE) of concurrent operations are
/// collected for up to `linger` and sent as one `POST /Bulk` (RFC 7644 §3.7) of at most
/// `max_operations` operations and `max_payload_bytes` bytes; each operation gets its own result
/// (and its own retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkConfig {
    pub max_operations: usize,
    pub max_payload_bytes: usize,
    pub linger: Duration,
}

impl BulkConfig {
    pub const DEFAULT_MAX_OPERATIONS: usize = 100;
    pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1_048_576;
    pub const DEFAULT_LINGER_MS: u64 = 20;
}

/// How a target's transient failures (no response, 5xx, 408, 429) are retried (`retry:`).
///
/// An operation is retried in memory — backoff with jitter, `Retry-After` honoured, no concurrency
/// permit held while waiting — for up to `max_attempts` attempts per dispatch, while the wait is at
/// most `park_after` and the target's retry budget allows. Otherwise it is **parked**: its
/// [`RetryState`](scimflow_core::RetryState) (attempts, next try) is written into the durable queue
/// in place, its subject's later operations wait behind it, other subjects go on, and it is tried
/// again at `next_try` (also after a restart): the parking delay starts at `park_delay` and doubles
/// per park up to `max_park_delay`. An operation still failing `give_up_after` after its first
/// failure becomes a dead letter.
///
/// The budget (after Finagle's retry budget) allows in-memory retries of at most `budget_percent`
/// of the target's first attempts plus `budget_min_per_second`, so an outage cannot turn every
/// operation into a retry storm; a retry the budget refuses parks instead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub park_after: Duration,
    pub park_delay: Duration,
    pub max_park_delay: Duration,
    pub give_up_after: Duration,
    pub budget_percent: f64,
    pub budget_min_per_second: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            park_after: Duration::from_secs(10),
            park_delay: Duration::from_secs(30),
            max_park_delay: Duration::from_secs(600),
            give_up_after: Duration::from_secs(24 * 3600),
            budget_percent: 20.0,
            budget_min_per_second: 10.0,
        }
    }
}

/// A target's circuit breaker: after `failures` consecutive failed requests (no response, timeout,
/// 5xx) or `auth_failures` consecutive 401s it opens — no request is sent for `open` — then lets one
/// probe through (half-open): a success closes it, a failure opens it again for twice as long (at
/// most `max_open`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failures: u32,
    pub auth_failures: u32,
    pub open: Duration,
    pub max_open: Duration,
}

/// A target's adaptive concurrency: the limit on requests in flight starts at `initial` and moves
/// between `min` and the target's `concurrency` — +1 after a window of answers in which the limit
/// was used, ×`decrease_factor` on a 429 (or a profile's throttling status), no answer (timeout,
/// connection failure) or 503/504, ×0.9 on a window whose mean latency exceeds `latency_factor` ×
/// the baseline. The algorithm is described in `crates/delivery/src/adaptive.rs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveConcurrency {
    pub initial: usize,
    pub min: usize,
    pub decrease_factor: f64,
    pub latency_factor: f64,
}

impl AdaptiveConcurrency {
    /// `initial` when not given: this, or `concurrency` when that is lower.
    pub const DEFAULT_INITIAL: usize = 4;
    pub const DEFAULT_MIN: usize = 1;
    pub const DEFAULT_DECREASE_FACTOR: f64 = 0.5;
    pub const DEFAULT_LATENCY_FACTOR: f64 = 2.0;

    /// The defaults for a target whose `concurrency` is `max`.
    pub fn defaults(max: usize) -> Self {
        AdaptiveConcurrency {
            initial: Self::DEFAULT_INITIAL.min(max).max(1),
            min: Self::DEFAULT_MIN,
            decrease_factor: Self::DEFAULT_DECREASE_FACTOR,
            latency_factor: Self::DEFAULT_LATENCY_FACTOR,
        }
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 10,
            auth_failures: 3,
            open: Duration::from_secs(30),
            max_open: Duration::from_secs(300),
        }
    }
}

/// A target's deletion guard: deactivations and deletions sent within `window` are counted; the
/// next one is staged (held for an operator's approval) when the count would exceed `max_count`,
/// or when it is at least `min_count` and would exceed `max_percent` of the accounts known on the
/// target (its bindings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeletionGuardConfig {
    pub max_count: u64,
    pub max_percent: f64,
    pub min_count: u64,
    pub window: Duration,
}

impl DeletionGuardConfig {
    pub const DEFAULT_MAX_COUNT: u64 = 100;
    pub const DEFAULT_MAX_PERCENT: f64 = 10.0;
    pub const DEFAULT_MIN_COUNT: u64 = 10;
    pub const DEFAULT_WINDOW_SECONDS: u64 = 3600;
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Action(OpKind),
    Ignore,
}

/// What one event type does on a target, and optionally when.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleRule {
    pub action: Lifecycle,
    /// When the action takes effect (an expression yielding a date or timestamp); `None` = now.
    pub at: Option<ExprSource>,
}

/// When an attribute is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeWhen {
    Always,
    /// Only in the create request, never in updates (e.g. an initial password policy, userName).
    Create,
}

/// One `path: expression` entry of a target's `user:` mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeMapping {
    /// SCIM attribute path, e.g. `name.givenName` or `emails[type eq "work"].value`.
    pub path: String,
    /// The expression, or a literal for non-string YAML scalars.
    pub value: AttributeValue,
    /// Tried in order after `value` when a create is refused as a uniqueness conflict.
    pub candidates: Vec<ExprSource>,
    pub default: Option<AttributeValue>,
    pub when: AttributeWhen,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    Expr(ExprSource),
    Literal(serde_json::Value),
}

/// A group membership rule: the person belongs to group `name` while `when` holds.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRule {
    pub name: ExprSource,
    pub when: Option<ExprSource>,
}
