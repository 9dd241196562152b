//! The configuration model: the raw form as written (with source locations) and the validated form.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use scimflow_core::OpKind;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::SecretRef;

// ----- raw, as written --------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub version: Spanned<u32>,
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
    #[serde(default)]
    pub data_dir: Option<String>,
    #[serde(default)]
    pub ingest: Option<RawIngest>,
    #[serde(default)]
    pub kafka: Option<RawKafka>,
    #[serde(default)]
    pub targets: BTreeMap<String, RawTarget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    #[serde(default)]
    pub token: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub max_event_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    pub brokers: Spanned<String>,
    pub topics: Vec<Spanned<String>>,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// Passed through to librdkafka (e.g. `session.timeout.ms`, `security.protocol`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub max_in_flight: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub base_url: Spanned<String>,
    #[serde(default)]
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default)]
    pub concurrency: Option<usize>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    pub lifecycle: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub matching: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub user: BTreeMap<String, Spanned<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    #[serde(default)]
    pub token: Option<Spanned<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub per_second: f64,
    #[serde(default)]
    pub burst: Option<u32>,
}

// ----- validated --------------------------------------------------------------------------------

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub file: String,
    /// Content hash: the mapping version.
    pub version: String,
    /// Address of the HTTP listener (ingest API, health).
    pub listen: Option<SocketAddr>,
    /// Where the store lives.
    pub data_dir: Option<PathBuf>,
    pub ingest: IngestConfig,
    /// The Kafka source; `None` means the embedded source.
    pub kafka: Option<KafkaConfig>,
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

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Bearer token required by `POST /api/v1/events`.
    pub token: Option<SecretRef>,
    pub max_event_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topics: Vec<String>,
    pub group_id: String,
    pub client_id: String,
    pub options: BTreeMap<String, String>,
    /// Decoded messages whose effects are not yet durable, at most.
    pub max_in_flight: usize,
}

#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub name: String,
    /// Base URL without a trailing slash, e.g. `https://api.example.com/scim/v2`.
    pub base_url: String,
    pub auth: TargetAuth,
    pub concurrency: usize,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub rate_limit: Option<RateLimit>,
    /// What each event type does on this target.
    pub lifecycle: BTreeMap<String, Lifecycle>,
    /// Attributes to find an existing account by, in precedence order.
    pub matching: Vec<String>,
    /// SCIM attribute path → expression, in path order.
    pub user: Vec<AttributeMapping>,
}

#[derive(Debug, Clone)]
pub enum TargetAuth {
    None,
    Bearer(SecretRef),
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

/// One `path: expression` line of a target's `user:` mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeMapping {
    /// SCIM attribute path, e.g. `name.givenName` or `emails[type eq "work"].value`.
    pub path: String,
    /// The expression text (a JSON literal for non-string YAML scalars).
    pub expr: String,
    /// Whether the YAML value was a non-string literal (bool/number/null).
    pub literal: Option<serde_json::Value>,
    /// Where the expression is written.
    pub line: u64,
    pub column: u64,
}
