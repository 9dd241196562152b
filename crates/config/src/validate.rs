//! Pure validation of the raw model: every problem is reported, each at its location.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::Spanned;

use scimflow_core::OpKind;

use crate::model::*;
use crate::profile::{ConnectorProfile, DeactivateMethod};
use crate::{Diagnostic, Diagnostics, SecretRef};

/// One file of the configuration: its name and text (for locating keys and expressions).
#[derive(Debug, Clone)]
pub struct Source {
    pub file: String,
    pub text: String,
}

impl Source {
    /// The (line, column) of the first line at or after `from_line` whose key is `key`, and the column
    /// of its value; (0, 0) when not found.
    fn key(&self, from_line: u64, key: &str) -> (u64, u64) {
        for (i, line) in self
            .text
            .lines()
            .enumerate()
            .skip(from_line.saturating_sub(1) as usize)
        {
            let trimmed = line.trim_start().trim_start_matches("- ");
            for k in [
                format!("{key}:"),
                format!("\"{key}\":"),
                format!("'{key}':"),
            ] {
                if let Some(rest) = trimmed.strip_prefix(&k) {
                    let indent = line.len() - trimmed.len();
                    let value_col = indent + k.len() + (rest.len() - rest.trim_start().len());
                    return (i as u64 + 1, value_col as u64 + 1);
                }
                // `{ key: value }` flow style
                if let Some(pos) = line
                    .find(&format!("{{ {k}"))
                    .map(|p| p + 2)
                    .or_else(|| line.find(&format!(", {k}")).map(|p| p + 2))
                {
                    let after = &line[pos + k.len()..];
                    let value_col = pos + k.len() + (after.len() - after.trim_start().len());
                    return (i as u64 + 1, value_col as u64 + 1);
                }
            }
        }
        (0, 0)
    }

    /// The (line, column) of the first occurrence of `text` at or after `from_line`.
    fn text_at(&self, from_line: u64, text: &str) -> (u64, u64) {
        for (i, line) in self
            .text
            .lines()
            .enumerate()
            .skip(from_line.saturating_sub(1) as usize)
        {
            if let Some(c) = line.find(text) {
                return (i as u64 + 1, line[..c].chars().count() as u64 + 1);
            }
        }
        (from_line, 1)
    }

    fn diag(&self, (line, column): (u64, u64), message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line,
            column,
            message: message.into(),
            hint: None,
        }
    }

    fn at(&self, loc: serde_saphyr::Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(&self.file, loc, message)
    }

    fn expr(&self, s: &Spanned<String>) -> ExprSource {
        ExprSource {
            text: s.value.clone(),
            file: self.file.clone(),
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }

    fn expr_at(&self, text: &str, (line, column): (u64, u64)) -> ExprSource {
        ExprSource {
            text: text.to_owned(),
            file: self.file.clone(),
            line,
            column,
        }
    }

    fn unknown<'a>(
        &self,
        from_line: u64,
        keys: impl IntoIterator<Item = &'a String>,
        context: &str,
        known: &[&str],
        d: &mut Vec<Diagnostic>,
    ) {
        for k in keys {
            let (line, _) = self.key(from_line, k);
            let column = self
                .text
                .lines()
                .nth(line.saturating_sub(1) as usize)
                .and_then(|l| l.find(k.as_str()))
                .map_or(1, |c| c as u64 + 1);
            let loc = (line, column);
            let hint = match closest(k, known) {
                Some(c) => format!("did you mean `{c}`? {context} takes: {}", known.join(", ")),
                None => format!("{context} takes: {}", known.join(", ")),
            };
            d.push(
                self.diag(loc, format!("unknown key `{k}` in {context}"))
                    .with_hint(hint),
            );
        }
    }
}

/// The known word closest to `word` (edit distance ≤ 2), for "did you mean" hints.
pub fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    known
        .iter()
        .map(|k| (dist(word, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

const TOP_KEYS: &[&str] = &[
    "version", "include", "listen", "data_dir", "store", "ingest", "kafka", "audit", "admin",
    "tables", "targets",
];
const FRAGMENT_KEYS: &[&str] = &["tables", "targets"];
const TARGET_KEYS: &[&str] = &[
    "base_url",
    "connector",
    "connector_file",
    "auth",
    "allow_http",
    "tls",
    "concurrency",
    "timeout_ms",
    "max_attempts",
    "rate_limit",
    "deletion_guard",
    "circuit_breaker",
    "adaptive_concurrency",
    "retry",
    "bulk",
    "scope",
    "out_of_scope",
    "lifecycle",
    "matching",
    "user",
    "manager",
    "groups",
    "reconcile",
];

/// Validates `raw` (from `main`) plus the included fragments; `version` is the content hash to record.
pub fn validate(
    raw: RawConfig,
    main: &Source,
    fragments: Vec<(RawFragment, Source)>,
    version: String,
) -> Result<Config, Diagnostics> {
    let (config, d) = validate_all(raw, main, fragments, version);
    if d.is_empty() {
        Ok(config)
    } else {
        Err(Diagnostics(d))
    }
}

/// Like [`validate`], but always returns the best-effort configuration together with every problem,
/// so later phases (compiling the mappings) can report their problems in the same run.
pub fn validate_all(
    raw: RawConfig,
    main: &Source,
    fragments: Vec<(RawFragment, Source)>,
    version: String,
) -> (Config, Vec<Diagnostic>) {
    validate_all_with(raw, main, fragments, version, &ConnectorFiles::new())
}

/// The texts of the custom connector profiles targets name with `connector_file:`, read by the
/// loader before validation (validation itself reads nothing): path (as given by
/// [`connector_file_path`]) → the text, or why it could not be read.
pub type ConnectorFiles = BTreeMap<PathBuf, Result<String, String>>;

/// Where a `connector_file:` value written in `source_file` points: relative paths are relative
/// to the directory of that file.
pub fn connector_file_path(source_file: &str, value: &str) -> PathBuf {
    let base = std::path::Path::new(source_file)
        .parent()
        .unwrap_or(std::path::Path::new("."));
    base.join(value)
}

/// Like [`validate_all`], with the custom connector profiles already read.
pub fn validate_all_with(
    raw: RawConfig,
    main: &Source,
    fragments: Vec<(RawFragment, Source)>,
    version: String,
    connector_files: &ConnectorFiles,
) -> (Config, Vec<Diagnostic>) {
    let mut d = Vec::new();
    let src = main;
    src.unknown(1, raw.unknown.keys(), "the top level", TOP_KEYS, &mut d);
    if raw.version.value != 1 {
        d.push(
            src.at(
                raw.version.referenced,
                format!("unsupported config version {}", raw.version.value),
            )
            .with_hint("this scimflow reads `version: 1`"),
        );
    }
    let listen = raw.listen.as_ref().and_then(|l| match l.value.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            d.push(
                src.at(
                    l.referenced,
                    format!("`{}` is not a socket address", l.value),
                )
                .with_hint("write host:port, e.g. 127.0.0.1:8080"),
            );
            None
        }
    });
    let store_engine = match raw.store {
        Some(s) => {
            src.unknown(1, s.unknown.keys(), "`store`", &["engine"], &mut d);
            match s.engine {
                Some(e) if e.value == "sled" || e.value == "redb" => e.value,
                Some(e) => {
                    d.push(
                        src.at(e.referenced, format!("unknown store engine `{}`", e.value))
                            .with_hint("choose sled or redb"),
                    );
                    "sled".into()
                }
                None => "sled".into(),
            }
        }
        None => "sled".into(),
    };
    let ingest = match raw.ingest {
        Some(i) => {
            src.unknown(
                1,
                i.unknown.keys(),
                "`ingest`",
                &["token", "max_event_bytes"],
                &mut d,
            );
            IngestConfig {
                token: i
                    .token
                    .and_then(|t| secret(src, "ingest.token", &t, &mut d)),
                max_event_bytes: i
                    .max_event_bytes
                    .unwrap_or(scimflow_core::decode::DEFAULT_MAX_EVENT_BYTES),
            }
        }
        None => IngestConfig {
            token: None,
            max_event_bytes: scimflow_core::decode::DEFAULT_MAX_EVENT_BYTES,
        },
    };
    let kafka = raw.kafka.map(|k| {
        src.unknown(
            k.brokers.referenced.line().saturating_sub(1),
            k.unknown.keys(),
            "`kafka`",
            &[
                "brokers",
                "topics",
                "group_id",
                "client_id",
                "options",
                "max_in_flight",
                "max_event_bytes",
                "dead_letter_topic",
                "sasl_password",
            ],
            &mut d,
        );
        if k.brokers.value.trim().is_empty() {
            d.push(src.at(k.brokers.referenced, "kafka.brokers is empty"));
        }
        if k.topics.is_empty() {
            d.push(src.at(k.brokers.referenced, "kafka.topics names no topic"));
        }
        let topics: Vec<KafkaTopic> = k
            .topics
            .iter()
            .filter_map(|t| kafka_topic(src, t, &mut d))
            .collect();
        if let Some(t) = &k.dead_letter_topic {
            if t.value.trim().is_empty() {
                d.push(src.at(t.referenced, "kafka.dead_letter_topic is empty"));
            } else if topics.iter().any(|c| c.name == t.value) {
                d.push(
                    src.at(
                        t.referenced,
                        format!("kafka.dead_letter_topic `{}` is also consumed", t.value),
                    )
                    .with_hint("use a topic scimflow does not read"),
                );
            }
        }
        if k.options.contains_key("sasl.password") {
            d.push(
                src.at(
                    k.brokers.referenced,
                    "kafka.options must not contain `sasl.password` (a literal secret)",
                )
                .with_hint("write kafka.sasl_password: { env: NAME } or { file: PATH }"),
            );
        }
        if k.max_event_bytes == Some(0) {
            d.push(src.at(
                k.brokers.referenced,
                "kafka.max_event_bytes must be positive",
            ));
        }
        KafkaConfig {
            brokers: k.brokers.value,
            topics,
            group_id: k.group_id.unwrap_or_else(|| "scimflow".into()),
            client_id: k.client_id.unwrap_or_else(|| "scimflow".into()),
            options: k.options,
            max_in_flight: k.max_in_flight.unwrap_or(10_000).max(1),
            max_event_bytes: k.max_event_bytes,
            dead_letter_topic: k.dead_letter_topic.map(|t| t.value),
            sasl_password: k
                .sasl_password
                .and_then(|p| secret(src, "kafka.sasl_password", &p, &mut d)),
        }
    });
    let audit = match raw.audit {
        Some(a) => audit(src, a, kafka.is_some(), &mut d),
        None => AuditConfig::default(),
    };
    let admin = raw.admin.map(|a| admin(src, a, &mut d));
    let mut tables = raw.tables;
    let mut targets = Vec::new();
    let mut seen = BTreeMap::new();
    let mut all: Vec<(String, RawTarget, Source)> = raw
        .targets
        .into_iter()
        .map(|(n, t)| (n, t, main.clone()))
        .collect();
    for (frag, fsrc) in fragments {
        fsrc.unknown(
            1,
            frag.unknown.keys(),
            "an included file",
            FRAGMENT_KEYS,
            &mut d,
        );
        for (name, table) in frag.tables {
            if tables.insert(name.clone(), table).is_some() {
                d.push(fsrc.diag(
                    fsrc.key(1, &name),
                    format!("table `{name}` is defined more than once"),
                ));
            }
        }
        all.extend(frag.targets.into_iter().map(|(n, t)| (n, t, fsrc.clone())));
    }
    if all.is_empty() {
        d.push(
            Diagnostic::file_level(&main.file, "no targets are configured")
                .with_hint("add a `targets:` map with at least one target"),
        );
    }
    for (name, t, tsrc) in all {
        let loc = t.base_url.referenced;
        if let Some(prev) = seen.insert(name.clone(), tsrc.file.clone()) {
            d.push(tsrc.at(
                loc,
                format!("target `{name}` is defined again (first in {prev})"),
            ));
            continue;
        }
        if let Some(t) = target(&tsrc, name, t, connector_files, &mut d) {
            targets.push(t);
        }
    }
    d.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    let config = Config {
        file: main.file.clone(),
        files: Vec::new(),
        version,
        listen,
        data_dir: raw.data_dir.map(PathBuf::from),
        store_engine,
        ingest,
        kafka,
        audit,
        admin,
        tables,
        targets,
    };
    (config, d)
}

fn lifecycle_action(s: &str) -> Result<Lifecycle, String> {
    if s == "ignore" {
        Ok(Lifecycle::Ignore)
    } else {
        s.parse().map(Lifecycle::Action)
    }
}

fn target(
    src: &Source,
    name: String,
    t: RawTarget,
    connector_files: &ConnectorFiles,
    d: &mut Vec<Diagnostic>,
) -> Option<TargetConfig> {
    let before = d.len();
    let first_line = t.base_url.referenced.line();
    src.unknown(
        first_line.saturating_sub(1),
        t.unknown.keys(),
        &format!("target `{name}`"),
        TARGET_KEYS,
        d,
    );
    let profile = connector_profile(src, &name, &t, connector_files, d);
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        d.push(
            src.at(
                t.base_url.referenced,
                format!("target name `{name}` is not allowed"),
            )
            .with_hint("use lowercase letters, digits, `-` and `_`"),
        );
    }
    let base_url = t.base_url.value.trim_end_matches('/').to_owned();
    match url::Url::parse(&base_url) {
        Ok(u) if u.scheme() == "https" => {}
        Ok(u) if u.scheme() == "http" && t.allow_http => {}
        Ok(u) if u.scheme() == "http" => d.push(
            src.at(
                t.base_url.referenced,
                format!("target `{name}`: base_url must use https"),
            )
            .with_hint("plain http is allowed only with `allow_http: true` (e.g. loopback tests)"),
        ),
        Ok(u) => d.push(src.at(
            t.base_url.referenced,
            format!("target `{name}`: unsupported URL scheme `{}`", u.scheme()),
        )),
        Err(e) => d.push(src.at(
            t.base_url.referenced,
            format!("target `{name}`: base_url is not a URL ({e})"),
        )),
    }
    let auth = match t.auth {
        None => TargetAuth::None,
        Some(a) => auth(src, &name, a, t.allow_http, d),
    };
    let tls = match t.tls {
        None => TargetTls::default(),
        Some(raw) => tls(src, &name, raw, first_line, d),
    };
    let mut lifecycle = BTreeMap::new();
    for (kind, rule) in t.lifecycle {
        let Spanned {
            value, referenced, ..
        } = rule;
        if !value.unknown.is_empty() {
            src.unknown(
                referenced.line(),
                value.unknown.iter(),
                &format!("lifecycle `{kind}`"),
                &["action", "at"],
                d,
            );
        }
        let action_loc = if value.at.is_some() {
            src.key(referenced.line(), "action")
        } else {
            (referenced.line(), referenced.column())
        };
        let action = match lifecycle_action(&value.action) {
            Ok(a) => a,
            Err(e) => {
                d.push(src.diag(action_loc, e));
                continue;
            }
        };
        if let Lifecycle::Action(k) = action {
            if let Some(why) = profile.unsupported(k) {
                d.push(
                    src.diag(
                        action_loc,
                        format!(
                            "target `{name}`: lifecycle `{kind}: {}` is not possible: {why}",
                            k.as_str()
                        ),
                    )
                    .with_hint(unsupported_hint(&profile, k)),
                );
            }
        }
        let at = value
            .at
            .map(|a| src.expr_at(&a, src.key(referenced.line(), "at")));
        lifecycle.insert(kind, LifecycleRule { action, at });
    }
    let out_of_scope = match &t.out_of_scope {
        None => {
            if let Some(why) = profile.unsupported(OpKind::Deactivate) {
                d.push(
                    src.diag(
                        (first_line, 1),
                        format!(
                            "target `{name}`: people who leave the scope are deactivated by default, but {why}"
                        ),
                    )
                    .with_hint("set `out_of_scope: delete` or `out_of_scope: ignore`"),
                );
            }
            Some(OpKind::Deactivate)
        }
        Some(s) if s.value == "ignore" => None,
        Some(s) => match s.value.parse::<OpKind>() {
            Ok(k @ (OpKind::Deactivate | OpKind::Delete)) => {
                if let Some(why) = profile.unsupported(k) {
                    d.push(
                        src.at(
                            s.referenced,
                            format!(
                                "target `{name}`: `out_of_scope: {}` is not possible: {why}",
                                s.value
                            ),
                        )
                        .with_hint(unsupported_hint(&profile, k)),
                    );
                }
                Some(k)
            }
            Ok(_) => {
                d.push(
                    src.at(
                        s.referenced,
                        format!("`out_of_scope: {}` is not allowed", s.value),
                    )
                    .with_hint("use deactivate, delete or ignore"),
                );
                None
            }
            Err(e) => {
                d.push(src.at(s.referenced, e));
                None
            }
        },
    };
    let matching: Vec<String> = match t.matching {
        Some(m) => m
            .into_iter()
            .filter_map(|a| {
                if matches!(a.value.as_str(), "externalId" | "userName") {
                    Some(a.value)
                } else {
                    d.push(
                        src.at(
                            a.referenced,
                            format!("cannot match accounts by `{}`", a.value),
                        )
                        .with_hint("supported matching attributes: externalId, userName"),
                    );
                    None
                }
            })
            .collect(),
        // The connector's default precedence (generic: externalId, then userName).
        None => profile.matching.clone(),
    };
    let mut user = Vec::new();
    for (path, spanned) in t.user {
        let Spanned {
            value: raw,
            referenced,
            ..
        } = spanned;
        let line = referenced.line();
        let here = (line, referenced.column());
        if !raw.unknown.is_empty() {
            src.unknown(
                line,
                raw.unknown.iter(),
                &format!("attribute `{path}`"),
                &["value", "candidates", "on", "default"],
                d,
            );
        }
        let is_map = raw.on.is_some()
            || raw.default.is_some()
            || !raw.candidates.is_empty()
            || !raw.unknown.is_empty();
        let value_of = |v: serde_json::Value, loc: (u64, u64)| match v {
            serde_json::Value::String(s) => AttributeValue::Expr(src.expr_at(&s, loc)),
            other => AttributeValue::Literal(other),
        };
        let mut candidates: Vec<ExprSource> = raw
            .candidates
            .iter()
            .map(|c| src.expr_at(c, src.text_at(line, c)))
            .collect();
        let value = match raw.value {
            Some(v) => value_of(v, if is_map { src.key(line, "value") } else { here }),
            None if !candidates.is_empty() => AttributeValue::Expr(candidates.remove(0)),
            None => {
                d.push(src.diag(
                    here,
                    format!("attribute `{path}` has neither `value` nor `candidates`"),
                ));
                continue;
            }
        };
        let when = match raw.on.as_deref() {
            None | Some("always") => AttributeWhen::Always,
            Some("create") => AttributeWhen::Create,
            Some(other) => {
                d.push(
                    src.diag(src.key(line, "on"), format!("`on: {other}` is not known"))
                        .with_hint("use `on: create` or `on: always`"),
                );
                AttributeWhen::Always
            }
        };
        let default = raw.default.map(|v| value_of(v, src.key(line, "default")));
        user.push(AttributeMapping {
            path,
            value,
            candidates,
            default,
            when,
        });
    }
    for m in &matching {
        if !user.iter().any(|u| &u.path == m) {
            d.push(
                src.diag(
                    (first_line, 1),
                    format!(
                        "target `{name}` matches by `{m}` but its `user:` mapping does not set it"
                    ),
                )
                .with_hint(format!("add `{m}: <expression>` under targets.{name}.user")),
            );
        }
    }
    user_rules(src, &name, first_line, &profile, &user, d);
    if let (Some(g), Some(why)) = (t.groups.first(), profile.unsupported(OpKind::GroupAdd)) {
        d.push(
            src.at(
                g.name.referenced,
                format!("target `{name}` has group rules, but {why}"),
            )
            .with_hint("remove the `groups:` rules of this target"),
        );
    }
    let groups = t
        .groups
        .into_iter()
        .map(|g| {
            if !g.unknown.is_empty() {
                src.unknown(
                    g.name.referenced.line(),
                    g.unknown.keys(),
                    "a group rule",
                    &["name", "when"],
                    d,
                );
            }
            GroupRule {
                name: src.expr(&g.name),
                when: g.when.as_ref().map(|w| src.expr(w)),
            }
        })
        .collect();
    let concurrency = t.concurrency.unwrap_or(4);
    if concurrency == 0 || concurrency > 256 {
        d.push(src.diag(
            src.key(first_line.saturating_sub(1), "concurrency"),
            format!("target `{name}`: concurrency must be between 1 and 256"),
        ));
    }
    let rate_limit = t.rate_limit.and_then(|r| {
        if r.per_second > 0.0 && r.per_second.is_finite() {
            Some(RateLimit {
                per_second: r.per_second,
                // Default: a twentieth of a second's worth (at least 1). With a burst of 1 the
                // limiter loses every token a late wake-up misses (measured: -3.5% at 200/s); a
                // few saved-up tokens make the long-run rate exact (scimflow-loadgen rate).
                burst: r
                    .burst
                    .unwrap_or_else(|| default_burst(r.per_second))
                    .max(1),
            })
        } else {
            d.push(src.diag(
                src.key(first_line.saturating_sub(1), "per_second"),
                format!("target `{name}`: rate_limit.per_second must be positive"),
            ));
            None
        }
    });
    // Without its own `rate_limit:`, a target gets the quota its connector documents.
    let rate_limit = rate_limit.or_else(|| {
        profile.rate_limit.as_ref().map(|r| RateLimit {
            per_second: r.per_second,
            burst: r.burst.unwrap_or_else(|| default_burst(r.per_second)),
        })
    });
    let deletion_guard = t.deletion_guard.map(|g| {
        let (line, _) = src.key(first_line.saturating_sub(1), "deletion_guard");
        src.unknown(
            line,
            g.unknown.keys(),
            "`deletion_guard`",
            &["max_count", "max_percent", "min_count", "window_seconds"],
            d,
        );
        let mut bad = |field: &str, why: &str| {
            d.push(src.diag(
                src.key(line, field),
                format!("target `{name}`: deletion_guard.{field} {why}"),
            ));
        };
        let max_count = g
            .max_count
            .unwrap_or(DeletionGuardConfig::DEFAULT_MAX_COUNT);
        if max_count == 0 {
            bad("max_count", "must be positive");
        }
        let max_percent = g
            .max_percent
            .unwrap_or(DeletionGuardConfig::DEFAULT_MAX_PERCENT);
        if !(max_percent > 0.0 && max_percent <= 100.0) {
            bad("max_percent", "must be above 0 and at most 100");
        }
        let window = g
            .window_seconds
            .unwrap_or(DeletionGuardConfig::DEFAULT_WINDOW_SECONDS);
        if window == 0 {
            bad("window_seconds", "must be positive");
        }
        DeletionGuardConfig {
            max_count: max_count.max(1),
            max_percent,
            min_count: g
                .min_count
                .unwrap_or(DeletionGuardConfig::DEFAULT_MIN_COUNT),
            window: Duration::from_secs(window.max(1)),
        }
    });
    let retry = match t.retry {
        None => RetryPolicy::default(),
        Some(r) => retry_policy(src, &name, first_line, r, d),
    };
    let bulk = t
        .bulk
        .as_ref()
        .and_then(|b| bulk_config(src, &name, b, &profile, d));
    // On by default: a target that fails every request is left alone for a while.
    let circuit_breaker = match t.circuit_breaker {
        None => Some(BreakerConfig::default()),
        Some(b) => {
            let (line, _) = src.key(first_line.saturating_sub(1), "circuit_breaker");
            src.unknown(
                line,
                b.unknown.keys(),
                "`circuit_breaker`",
                &[
                    "enabled",
                    "failures",
                    "auth_failures",
                    "open_seconds",
                    "max_open_seconds",
                ],
                d,
            );
            let def = BreakerConfig::default();
            let mut positive = |v: Option<u64>, field: &str, default: u64| match v {
                Some(0) => {
                    d.push(src.diag(
                        src.key(line, field),
                        format!("target `{name}`: circuit_breaker.{field} must be positive"),
                    ));
                    default
                }
                Some(n) => n,
                None => default,
            };
            let failures = positive(
                b.failures.map(u64::from),
                "failures",
                u64::from(def.failures),
            );
            let auth = positive(
                b.auth_failures.map(u64::from),
                "auth_failures",
                u64::from(def.auth_failures),
            );
            let open = positive(b.open_seconds, "open_seconds", def.open.as_secs());
            let max_open = positive(
                b.max_open_seconds,
                "max_open_seconds",
                def.max_open.as_secs(),
            );
            b.enabled.unwrap_or(true).then_some(BreakerConfig {
                failures: u32::try_from(failures).unwrap_or(u32::MAX),
                auth_failures: u32::try_from(auth).unwrap_or(u32::MAX),
                open: Duration::from_secs(open),
                max_open: Duration::from_secs(max_open.max(open)),
            })
        }
    };
    let adaptive_concurrency = match t.adaptive_concurrency {
        None => Some(AdaptiveConcurrency::defaults(concurrency.clamp(1, 256))),
        Some(a) => adaptive_concurrency(src, &name, first_line, concurrency.clamp(1, 256), a, d),
    };
    let reconcile = match t.reconcile {
        None => ReconcileConfig::default(),
        Some(r) => {
            let (line, _) = src.key(first_line.saturating_sub(1), "reconcile");
            src.unknown(
                line,
                r.unknown.keys(),
                "`reconcile`",
                &[
                    "page_size",
                    "report_unmanaged",
                    "interval_seconds",
                    "repair",
                    "pagination",
                ],
                d,
            );
            let page_size = r.page_size.unwrap_or(100);
            if page_size == 0 || page_size > 1000 {
                d.push(src.diag(
                    src.key(line, "page_size"),
                    format!("target `{name}`: reconcile.page_size must be between 1 and 1000"),
                ));
            }
            if r.interval_seconds.is_some_and(|s| s < 60) {
                d.push(
                    src.diag(
                        src.key(line, "interval_seconds"),
                        format!("target `{name}`: reconcile.interval_seconds must be at least 60"),
                    )
                    .with_hint("a scan reads every account of the target; leave it out to reconcile only on demand"),
                );
            }
            ReconcileConfig {
                page_size: page_size.clamp(1, 1000),
                report_unmanaged: r.report_unmanaged,
                interval: r.interval_seconds.map(|s| Duration::from_secs(s.max(60))),
                repair: r.repair,
                pagination: match r.pagination.as_deref() {
                    None | Some("auto") => Pagination::Auto,
                    Some("index") => Pagination::Index,
                    Some("cursor") => Pagination::Cursor,
                    Some(other) => {
                        d.push(
                            src.diag(
                                src.key(line, "pagination"),
                                format!("target `{name}`: unknown reconcile.pagination `{other}`"),
                            )
                            .with_hint("choose auto, index or cursor"),
                        );
                        Pagination::Auto
                    }
                },
            }
        }
    };
    // Best effort: a target with problems is still returned, so its expressions get checked too.
    let _ = before;
    Some(TargetConfig {
        name,
        base_url,
        profile,
        auth,
        tls,
        concurrency,
        timeout: Duration::from_millis(t.timeout_ms.unwrap_or(10_000)),
        max_attempts: t.max_attempts.unwrap_or(8).max(1),
        rate_limit,
        deletion_guard,
        circuit_breaker,
        adaptive_concurrency,
        retry,
        bulk,
        scope: t.scope.as_ref().map(|s| src.expr(s)),
        out_of_scope,
        lifecycle,
        matching,
        user,
        manager: t.manager.as_ref().map(|m| src.expr(m)),
        groups,
        reconcile,
    })
}

/// A target's `bulk:` section: `true`/`false`, or `{ max_operations, max_payload_bytes,
/// linger_ms }`; the connector profile's documented limits cap it, and a profile that documents
/// that the vendor has no bulk endpoint refuses it.
fn bulk_config(
    src: &Source,
    name: &str,
    b: &Spanned<serde_json::Value>,
    profile: &ConnectorProfile,
    d: &mut Vec<Diagnostic>,
) -> Option<BulkConfig> {
    let at = b.referenced;
    let mut max_operations = BulkConfig::DEFAULT_MAX_OPERATIONS;
    let mut max_payload_bytes = BulkConfig::DEFAULT_MAX_PAYLOAD_BYTES;
    let mut linger_ms = BulkConfig::DEFAULT_LINGER_MS;
    match &b.value {
        serde_json::Value::Bool(false) | serde_json::Value::Null => return None,
        serde_json::Value::Bool(true) => {}
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let n = v.as_u64().filter(|n| *n > 0);
                match (k.as_str(), n) {
                    ("max_operations", Some(n)) => max_operations = n as usize,
                    ("max_payload_bytes", Some(n)) => max_payload_bytes = n as usize,
                    ("linger_ms", _) if v.as_u64().is_some() => linger_ms = v.as_u64().unwrap_or(0),
                    ("max_operations" | "max_payload_bytes" | "linger_ms", _) => d.push(src.at(
                        at,
                        format!("target `{name}`: bulk.{k} must be a positive whole number"),
                    )),
                    (other, _) => d.push(
                        src.at(at, format!("target `{name}`: unknown key `bulk.{other}`"))
                            .with_hint("known: max_operations, max_payload_bytes, linger_ms"),
                    ),
                }
            }
        }
        _ => {
            d.push(
                src.at(
                    at,
                    format!("target `{name}`: bulk must be true, false or a map"),
                )
                .with_hint(
                    "bulk: { max_operations: 100, max_payload_bytes: 1048576, linger_ms: 20 }",
                ),
            );
            return None;
        }
    }
    if !profile.bulk.supported && profile.bulk.source.is_some() {
        d.push(
            src.at(
                at,
                format!(
                    "target `{name}`: the `{}` connector has no SCIM bulk endpoint",
                    profile.name
                ),
            )
            .with_hint(format!(
                "see {}; remove `bulk:`",
                profile.bulk.source.as_deref().unwrap_or_default()
            )),
        );
        return None;
    }
    if let Some(cap) = profile.bulk.max_operations {
        max_operations = max_operations.min(cap.max(1));
    }
    if let Some(cap) = profile.bulk.max_payload_bytes {
        max_payload_bytes = max_payload_bytes.min(cap.max(1024));
    }
    Some(BulkConfig {
        max_operations,
        max_payload_bytes,
        linger: Duration::from_millis(linger_ms),
    })
}

/// A target's `retry:` section (defaults for what it leaves out).
fn retry_policy(
    src: &Source,
    name: &str,
    first_line: u64,
    r: RawRetry,
    d: &mut Vec<Diagnostic>,
) -> RetryPolicy {
    let (line, _) = src.key(first_line.saturating_sub(1), "retry");
    src.unknown(
        line,
        r.unknown.keys(),
        "`retry`",
        &[
            "park_after_seconds",
            "park_delay_seconds",
            "max_park_delay_seconds",
            "give_up_after_seconds",
            "budget_percent",
            "budget_min_per_second",
        ],
        d,
    );
    let def = RetryPolicy::default();
    let mut bad = |field: &str, why: &str| {
        d.push(src.diag(
            src.key(line, field),
            format!("target `{name}`: retry.{field} {why}"),
        ));
    };
    let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
    let park_delay = secs(r.park_delay_seconds, def.park_delay);
    if park_delay.is_zero() {
        bad("park_delay_seconds", "must be positive");
    }
    let max_park_delay = secs(r.max_park_delay_seconds, def.max_park_delay);
    if max_park_delay < park_delay {
        bad(
            "max_park_delay_seconds",
            "must be at least park_delay_seconds",
        );
    }
    let give_up_after = secs(r.give_up_after_seconds, def.give_up_after);
    if give_up_after.is_zero() {
        bad("give_up_after_seconds", "must be positive");
    }
    let budget_percent = r.budget_percent.unwrap_or(def.budget_percent);
    if !(0.0..=1000.0).contains(&budget_percent) {
        bad("budget_percent", "must be between 0 and 1000");
    }
    let budget_min_per_second = r.budget_min_per_second.unwrap_or(def.budget_min_per_second);
    if !(budget_min_per_second >= 0.0 && budget_min_per_second.is_finite()) {
        bad("budget_min_per_second", "must be 0 or more");
    }
    RetryPolicy {
        park_after: secs(r.park_after_seconds, def.park_after),
        park_delay: park_delay.max(Duration::from_secs(1)),
        max_park_delay: max_park_delay.max(park_delay),
        give_up_after: give_up_after.max(Duration::from_secs(1)),
        budget_percent: budget_percent.clamp(0.0, 1000.0),
        budget_min_per_second: if budget_min_per_second.is_finite() {
            budget_min_per_second.max(0.0)
        } else {
            def.budget_min_per_second
        },
    }
}

/// Keys of `auth:` for each `type`.
const BEARER_KEYS: &[&str] = &["type", "token"];
const OAUTH2_KEYS: &[&str] = &[
    "type",
    "token_url",
    "client_id",
    "client_secret",
    "scope",
    "audience",
    "auth_style",
];
const AUTH_KEYS: &[&str] = &[
    "type",
    "token",
    "token_url",
    "client_id",
    "client_secret",
    "scope",
    "audience",
    "auth_style",
];

/// A target's `auth:` section.
fn auth(
    src: &Source,
    name: &str,
    a: RawAuth,
    allow_http: bool,
    d: &mut Vec<Diagnostic>,
) -> TargetAuth {
    src.unknown(
        a.kind.referenced.line(),
        a.unknown.keys(),
        "`auth`",
        AUTH_KEYS,
        d,
    );
    let kind = a.kind.value.as_str();
    let applies: &[&str] = match kind {
        "bearer" => BEARER_KEYS,
        "oauth2" => OAUTH2_KEYS,
        _ => &["type"],
    };
    // Keys that belong to another type: a sign of a half-edited section.
    let present = [
        ("token", a.token.as_ref().map(|v| v.referenced)),
        ("token_url", a.token_url.as_ref().map(|v| v.referenced)),
        ("client_id", a.client_id.as_ref().map(|v| v.referenced)),
        (
            "client_secret",
            a.client_secret.as_ref().map(|v| v.referenced),
        ),
        ("scope", a.scope.as_ref().map(|v| v.referenced)),
        ("audience", a.audience.as_ref().map(|v| v.referenced)),
        ("auth_style", a.auth_style.as_ref().map(|v| v.referenced)),
    ];
    if matches!(kind, "bearer" | "oauth2" | "none") {
        for (key, at) in present {
            if let Some(at) = at.filter(|_| !applies.contains(&key)) {
                d.push(
                    src.at(at, format!("`auth.{key}` does not apply to `type: {kind}`"))
                        .with_hint(format!("`type: {kind}` takes: {}", applies.join(", "))),
                );
            }
        }
    }
    match kind {
        "none" => TargetAuth::None,
        "bearer" => match a.token {
            Some(tok) => secret(src, "auth.token", &tok, d)
                .map(TargetAuth::Bearer)
                .unwrap_or(TargetAuth::None),
            None => {
                d.push(
                    src.at(a.kind.referenced, "bearer auth needs a `token`")
                        .with_hint("token: { env: NAME } or token: { file: /run/secrets/NAME }"),
                );
                TargetAuth::None
            }
        },
        "oauth2" => oauth2(src, name, a, allow_http, d)
            .map(TargetAuth::OAuth2)
            .unwrap_or(TargetAuth::None),
        other => {
            d.push(
                src.at(a.kind.referenced, format!("unknown auth type `{other}`"))
                    .with_hint("supported: bearer, oauth2, none"),
            );
            TargetAuth::None
        }
    }
}

/// `auth: { type: oauth2, … }` (RFC 6749 §4.4, client credentials).
fn oauth2(
    src: &Source,
    name: &str,
    a: RawAuth,
    allow_http: bool,
    d: &mut Vec<Diagnostic>,
) -> Option<OAuth2Config> {
    let before = d.len();
    let mut missing = |key: &str, hint: &str| {
        d.push(
            src.at(a.kind.referenced, format!("oauth2 auth needs `{key}`"))
                .with_hint(hint.to_owned()),
        );
    };
    if a.token_url.is_none() {
        missing(
            "token_url",
            "token_url: https://login.example.com/oauth2/token (the token endpoint)",
        );
    }
    if a.client_id.is_none() {
        missing("client_id", "client_id: the client (application) id");
    }
    if a.client_secret.is_none() {
        missing(
            "client_secret",
            "client_secret: { env: NAME } or client_secret: { file: /run/secrets/NAME }",
        );
    }
    let token_url = a.token_url.and_then(|u| {
        let at = u.referenced;
        match url::Url::parse(u.value.trim()) {
            Ok(p) if !p.username().is_empty() || p.password().is_some() => {
                d.push(
                    src.at(at, format!("target `{name}`: auth.token_url must not contain credentials"))
                        .with_hint("put the client id in client_id and the secret in client_secret"),
                );
                None
            }
            Ok(p) if p.fragment().is_some() => {
                d.push(src.at(
                    at,
                    format!("target `{name}`: auth.token_url must not have a fragment (RFC 6749 §3.2)"),
                ));
                None
            }
            Ok(p) if p.scheme() == "https" || (p.scheme() == "http" && allow_http) => {
                Some(u.value.trim().to_owned())
            }
            Ok(p) if p.scheme() == "http" => {
                d.push(
                    src.at(at, format!("target `{name}`: auth.token_url must use https"))
                        .with_hint("plain http is allowed only with the target's `allow_http: true` (e.g. loopback tests)"),
                );
                None
            }
            Ok(p) => {
                d.push(src.at(
                    at,
                    format!("target `{name}`: auth.token_url has unsupported URL scheme `{}`", p.scheme()),
                ));
                None
            }
            Err(e) => {
                d.push(src.at(
                    at,
                    format!("target `{name}`: auth.token_url is not a URL ({e})"),
                ));
                None
            }
        }
    });
    let client_id = a.client_id.and_then(|c| {
        if c.value.trim().is_empty() || c.value.chars().any(char::is_control) {
            d.push(src.at(
                c.referenced,
                format!("target `{name}`: auth.client_id is empty or has control characters"),
            ));
            None
        } else {
            Some(c.value)
        }
    });
    let client_secret = a
        .client_secret
        .and_then(|s| secret(src, "auth.client_secret", &s, d));
    // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), separated by spaces.
    let scope = a.scope.and_then(|s| {
        let tokens: Vec<&str> = s.value.split_whitespace().collect();
        let ok = |t: &&str| {
            t.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        };
        if tokens.is_empty() || !tokens.iter().all(ok) {
            d.push(
                src.at(
                    s.referenced,
                    format!("target `{name}`: auth.scope is not a space-separated list of scopes"),
                )
                .with_hint("e.g. scope: \"scim.read scim.write\" (no quotes, backslashes or non-ASCII inside a scope)"),
            );
            None
        } else {
            Some(tokens.join(" "))
        }
    });
    let audience = a.audience.and_then(|s| {
        if s.value.trim().is_empty() {
            d.push(src.at(
                s.referenced,
                format!("target `{name}`: auth.audience is empty"),
            ));
            None
        } else {
            Some(s.value.trim().to_owned())
        }
    });
    let auth_style = match a.auth_style {
        None => ClientAuthStyle::Basic,
        Some(s) => match s.value.as_str() {
            "basic" => ClientAuthStyle::Basic,
            "body" => ClientAuthStyle::Body,
            other => {
                d.push(
                    src.at(s.referenced, format!("target `{name}`: unknown auth.auth_style `{other}`"))
                        .with_hint("choose basic (HTTP Basic, the default) or body (client_id and client_secret in the form)"),
                );
                ClientAuthStyle::Basic
            }
        },
    };
    if d.len() > before {
        return None;
    }
    Some(OAuth2Config {
        token_url: token_url?,
        client_id: client_id?,
        client_secret: client_secret?,
        scope,
        audience,
        auth_style,
    })
}

/// A target's `tls:` section.
fn tls(
    src: &Source,
    name: &str,
    raw: RawTls,
    first_line: u64,
    d: &mut Vec<Diagnostic>,
) -> TargetTls {
    let line = [&raw.client_cert, &raw.client_key, &raw.ca]
        .into_iter()
        .flatten()
        .map(|v| v.referenced.line())
        .min()
        .unwrap_or_else(|| src.key(first_line.saturating_sub(1), "tls").0);
    src.unknown(
        line,
        raw.unknown.keys(),
        "`tls`",
        &["client_cert", "client_key", "ca"],
        d,
    );
    let cert = raw
        .client_cert
        .as_ref()
        .and_then(|v| pem_ref(src, "tls.client_cert", v, d));
    let key = raw
        .client_key
        .as_ref()
        .and_then(|v| secret(src, "tls.client_key", v, d));
    let ca = raw.ca.as_ref().and_then(|v| pem_ref(src, "tls.ca", v, d));
    let client = match (&raw.client_cert, &raw.client_key) {
        (Some(c), None) => {
            d.push(
                src.at(
                    c.referenced,
                    format!("target `{name}`: tls.client_cert needs tls.client_key"),
                )
                .with_hint(
                    "add client_key: { file: /path/to/key.pem } (the certificate's private key)",
                ),
            );
            None
        }
        (None, Some(k)) => {
            d.push(
                src.at(
                    k.referenced,
                    format!("target `{name}`: tls.client_key needs tls.client_cert"),
                )
                .with_hint(
                    "add client_cert: { file: /path/to/cert.pem } (the certificate of that key)",
                ),
            );
            None
        }
        _ => cert
            .zip(key)
            .map(|(cert, key)| ClientCertificate { cert, key }),
    };
    TargetTls { client, ca }
}

/// A reference to PEM text that is not secret (a certificate): `{ file: PATH }` or `{ env: NAME }`.
fn pem_ref(
    src: &Source,
    field: &str,
    v: &Spanned<serde_json::Value>,
    d: &mut Vec<Diagnostic>,
) -> Option<SecretRef> {
    let r = parse_ref(&v.value);
    if r.is_none() {
        d.push(
            src.at(
                v.referenced,
                format!("`{field}` must be a reference to a PEM file"),
            )
            .with_hint("write { file: /path/to/cert.pem } (or { env: NAME } holding the PEM text)"),
        );
    }
    r
}

/// `{ env: NAME }` or `{ file: PATH }`, exactly one key, non-empty.
fn parse_ref(v: &serde_json::Value) -> Option<SecretRef> {
    let obj = v.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    match (
        obj.get("env").and_then(|x| x.as_str()),
        obj.get("file").and_then(|x| x.as_str()),
    ) {
        (Some(n), None) if !n.is_empty() => Some(SecretRef::Env(n.to_owned())),
        (None, Some(p)) if !p.is_empty() => Some(SecretRef::File(PathBuf::from(p))),
        _ => None,
    }
}

/// A target's `adaptive_concurrency:` section (on by default; `enabled: false` turns it off).
/// `max` is the target's `concurrency`, the limit's ceiling.
fn adaptive_concurrency(
    src: &Source,
    name: &str,
    first_line: u64,
    max: usize,
    a: RawAdaptiveConcurrency,
    d: &mut Vec<Diagnostic>,
) -> Option<AdaptiveConcurrency> {
    let (line, _) = src.key(first_line.saturating_sub(1), "adaptive_concurrency");
    src.unknown(
        line,
        a.unknown.keys(),
        "`adaptive_concurrency`",
        &[
            "enabled",
            "initial",
            "min",
            "decrease_factor",
            "latency_factor",
        ],
        d,
    );
    let def = AdaptiveConcurrency::defaults(max);
    let mut bad = |field: &str, why: String| {
        d.push(src.diag(
            src.key(line, field),
            format!("target `{name}`: adaptive_concurrency.{field} {why}"),
        ));
    };
    let min = a.min.unwrap_or(def.min);
    if min == 0 || min > max {
        bad(
            "min",
            format!("must be between 1 and the target's concurrency ({max})"),
        );
    }
    let min = min.clamp(1, max);
    let initial = a.initial.unwrap_or(def.initial.max(min));
    if initial < min || initial > max {
        bad(
            "initial",
            format!("must be between min ({min}) and the target's concurrency ({max})"),
        );
    }
    let decrease_factor = a.decrease_factor.unwrap_or(def.decrease_factor);
    if !(decrease_factor > 0.0 && decrease_factor < 1.0) {
        bad(
            "decrease_factor",
            "must be above 0 and below 1 (0.5 halves the limit)".into(),
        );
    }
    let latency_factor = a.latency_factor.unwrap_or(def.latency_factor);
    if !(latency_factor > 1.0 && latency_factor.is_finite()) {
        bad(
            "latency_factor",
            "must be above 1 (2.0: a window twice as slow as the baseline)".into(),
        );
    }
    a.enabled.unwrap_or(true).then_some(AdaptiveConcurrency {
        initial: initial.clamp(min, max),
        min,
        decrease_factor: if decrease_factor > 0.0 && decrease_factor < 1.0 {
            decrease_factor
        } else {
            def.decrease_factor
        },
        latency_factor: if latency_factor > 1.0 && latency_factor.is_finite() {
            latency_factor
        } else {
            def.latency_factor
        },
    })
}

/// The default burst for `per_second`: a twentieth of a second's worth (at least 1). With a burst
/// of 1 the limiter loses every token a late wake-up misses (measured: -3.5% at 200/s); a few
/// saved-up tokens make the long-run rate exact (scimflow-loadgen rate).
fn default_burst(per_second: f64) -> u32 {
    (per_second / 20.0).ceil().clamp(1.0, 1000.0) as u32
}

/// The target's connector profile: `connector: <name>` (embedded), `connector_file: path` (read by
/// the loader into `files`), or `generic`. On any problem the error is reported and `generic` used,
/// so the rest of the target is still checked.
fn connector_profile(
    src: &Source,
    name: &str,
    t: &RawTarget,
    files: &ConnectorFiles,
    d: &mut Vec<Diagnostic>,
) -> Arc<ConnectorProfile> {
    let generic = crate::profile::generic();
    match (&t.connector, &t.connector_file) {
        (None, None) => generic,
        (Some(_), Some(f)) => {
            d.push(
                src.at(
                    f.referenced,
                    format!("target `{name}` sets both `connector` and `connector_file`"),
                )
                .with_hint("name a shipped connector or a profile file, not both"),
            );
            generic
        }
        (Some(c), None) => match crate::profile::embedded(c.value.trim()) {
            Some(Ok(p)) => p,
            Some(Err(errors)) => {
                d.extend(errors);
                generic
            }
            None => {
                let known = crate::profile::embedded_names();
                let did_you_mean = closest(c.value.trim(), &known)
                    .map(|k| format!("did you mean `{k}`? "))
                    .unwrap_or_default();
                d.push(
                    src.at(
                        c.referenced,
                        format!("target `{name}`: unknown connector `{}`", c.value),
                    )
                    .with_hint(format!(
                        "{did_you_mean}known connectors: {}; or give your own profile with `connector_file: path`",
                        known.join(", ")
                    )),
                );
                generic
            }
        },
        (None, Some(f)) => {
            let path = connector_file_path(&src.file, &f.value);
            match files.get(&path) {
                Some(Ok(text)) => match crate::profile::parse(text, &path.display().to_string()) {
                    Ok(p) => Arc::new(p),
                    Err(errors) => {
                        d.extend(errors);
                        generic
                    }
                },
                Some(Err(why)) => {
                    d.push(src.at(
                        f.referenced,
                        format!("cannot read connector file `{}`: {why}", f.value),
                    ));
                    generic
                }
                None => {
                    d.push(
                        src.at(
                            f.referenced,
                            format!("connector file `{}` was not read", f.value),
                        )
                        .with_hint(
                            "load the configuration with scimflow_config::load, which reads it",
                        ),
                    );
                    generic
                }
            }
        }
    }
}

/// What to write instead of a lifecycle action the connector cannot do.
fn unsupported_hint(profile: &ConnectorProfile, kind: OpKind) -> String {
    let can = |k: OpKind| profile.unsupported(k).is_none();
    match kind {
        OpKind::Delete if can(OpKind::Deactivate) => format!(
            "use `deactivate` (the `{}` connector deactivates with {} {}={})",
            profile.name,
            match profile.deactivate.method {
                DeactivateMethod::Patch => "PATCH",
                DeactivateMethod::Put => "PUT",
            },
            profile.deactivate.path,
            profile.deactivate.value
        ),
        OpKind::Deactivate | OpKind::Reactivate if can(OpKind::Delete) => {
            "use `delete` or `ignore`".to_owned()
        }
        _ => format!(
            "use `ignore`, or another connector (profile: {})",
            profile.origin
        ),
    }
}

/// The connector's rules for user resources: attributes a create needs, attributes taking one
/// value only, attributes it does not accept.
fn user_rules(
    src: &Source,
    name: &str,
    first_line: u64,
    profile: &ConnectorProfile,
    user: &[AttributeMapping],
    d: &mut Vec<Diagnostic>,
) {
    let lower: Vec<String> = user.iter().map(|u| u.path.to_ascii_lowercase()).collect();
    let head = |p: &str| -> String { p.split(['.', '[']).next().unwrap_or_default().to_owned() };
    for req in &profile.user.required {
        let r = req.to_ascii_lowercase();
        let covered = lower.iter().any(|p| {
            p == &r
                || p.starts_with(&format!("{r}."))
                || p.starts_with(&format!("{r}["))
                || r.starts_with(&format!("{p}."))
        });
        if !covered {
            d.push(
                src.diag(
                    (first_line, 1),
                    format!(
                        "target `{name}`: the `{}` connector requires `{req}` on every user, but the `user:` mapping does not set it",
                        profile.name
                    ),
                )
                .with_hint(format!("add `{req}: <expression>` under targets.{name}.user (see {})", profile.origin)),
            );
        }
    }
    for attr in &profile.user.single_value {
        let a = format!("{}[", attr.to_ascii_lowercase());
        let mut selectors: Vec<&str> = lower
            .iter()
            .zip(user)
            .filter(|(p, _)| p.starts_with(&a))
            .filter_map(|(_, u)| u.path.split_once(']').map(|(sel, _)| sel))
            .collect();
        selectors.sort_unstable();
        selectors.dedup();
        if selectors.len() > 1 {
            d.push(
                src.diag(
                    (first_line, 1),
                    format!(
                        "target `{name}`: the `{}` connector accepts one value of `{attr}`, but the mapping writes {}",
                        profile.name,
                        selectors.iter().map(|s| format!("`{s}]`")).collect::<Vec<_>>().join(", ")
                    ),
                )
                .with_hint(format!("map a single `{attr}[type eq \"...\"]` element")),
            );
        }
    }
    for (u, p) in user.iter().zip(&lower) {
        let h = head(p);
        if let Some(bad) = profile
            .user
            .unsupported
            .iter()
            .find(|x| x.eq_ignore_ascii_case(&h))
        {
            d.push(
                src.diag(
                    (first_line, 1),
                    format!(
                        "target `{name}`: the `{}` connector does not accept `{bad}` (mapped as `{}`)",
                        profile.name, u.path
                    ),
                )
                .with_hint(format!("remove it from targets.{name}.user (see {})", profile.origin)),
            );
        }
    }
}

/// The `admin:` section.
fn admin(src: &Source, a: RawAdmin, d: &mut Vec<Diagnostic>) -> AdminConfig {
    let (line, _) = src.key(1, "admin");
    src.unknown(
        line,
        a.unknown.keys(),
        "`admin`",
        &["listen", "tokens", "max_body_bytes"],
        d,
    );
    let listen = match &a.listen {
        Some(l) => l.value.parse().unwrap_or_else(|_| {
            d.push(
                src.at(
                    l.referenced,
                    format!("`{}` is not a socket address", l.value),
                )
                .with_hint("write host:port, e.g. 127.0.0.1:8081"),
            );
            AdminConfig::DEFAULT_LISTEN.parse().expect("valid default")
        }),
        None => AdminConfig::DEFAULT_LISTEN.parse().expect("valid default"),
    };
    if a.tokens.is_empty() {
        d.push(
            src.diag(
                (line, 1),
                "`admin` has no `tokens`: nobody could use the admin API",
            )
            .with_hint("add `tokens: [{ name: sre, role: operator, token: { file: /path } }]`"),
        );
    }
    let mut names = std::collections::BTreeSet::new();
    let mut tokens = Vec::new();
    for t in a.tokens {
        let at = t.referenced;
        let t = t.value;
        src.unknown(
            at.line(),
            t.unknown.keys(),
            "an `admin.tokens` entry",
            &["name", "role", "token"],
            d,
        );
        if !names.insert(t.name.value.clone()) {
            d.push(src.at(
                t.name.referenced,
                format!("admin token name `{}` is used twice", t.name.value),
            ));
        }
        let role = match t.role.value.as_str() {
            "read" => AdminRole::Read,
            "operator" => AdminRole::Operator,
            other => {
                d.push(
                    src.at(t.role.referenced, format!("unknown admin role `{other}`"))
                        .with_hint("choose read or operator"),
                );
                AdminRole::Read
            }
        };
        if let Some(secret) = secret(src, "admin.tokens[].token", &t.token, d) {
            tokens.push(AdminToken {
                name: t.name.value,
                role,
                token: secret,
            });
        }
    }
    let max_body_bytes = match a.max_body_bytes {
        Some(n) if n.value == 0 => {
            d.push(src.at(n.referenced, "admin.max_body_bytes must be positive"));
            AdminConfig::DEFAULT_MAX_BODY_BYTES
        }
        Some(n) => n.value,
        None => AdminConfig::DEFAULT_MAX_BODY_BYTES,
    };
    AdminConfig {
        listen,
        tokens,
        max_body_bytes,
    }
}

/// The `audit:` section.
fn audit(src: &Source, a: RawAudit, has_kafka: bool, d: &mut Vec<Diagnostic>) -> AuditConfig {
    let (line, _) = src.key(1, "audit");
    src.unknown(
        line,
        a.unknown.keys(),
        "`audit`",
        &[
            "signing_key",
            "checkpoint_records",
            "checkpoint_seconds",
            "kafka_topic",
        ],
        d,
    );
    let mut positive = |v: Option<Spanned<u64>>, field: &str, default: u64| match v {
        Some(n) if n.value == 0 => {
            d.push(
                src.at(n.referenced, format!("audit.{field} must be positive"))
                    .with_hint(format!("leave it out for the default ({default})")),
            );
            default
        }
        Some(n) => n.value,
        None => default,
    };
    let checkpoint_records = positive(
        a.checkpoint_records,
        "checkpoint_records",
        AuditConfig::DEFAULT_CHECKPOINT_RECORDS,
    );
    let checkpoint_seconds = positive(
        a.checkpoint_seconds,
        "checkpoint_seconds",
        AuditConfig::DEFAULT_CHECKPOINT_SECONDS,
    );
    let kafka_topic = match a.kafka_topic {
        Some(t) if t.value.trim().is_empty() => {
            d.push(src.at(t.referenced, "audit.kafka_topic is empty"));
            None
        }
        Some(t) if !has_kafka => {
            d.push(
                src.at(
                    t.referenced,
                    "audit.kafka_topic needs the `kafka:` section (the brokers to produce to)",
                )
                .with_hint("add `kafka: { brokers: … }` or remove audit.kafka_topic"),
            );
            None
        }
        Some(t) => Some(t.value),
        None => None,
    };
    AuditConfig {
        signing_key: a
            .signing_key
            .and_then(|k| secret(src, "audit.signing_key", &k, d)),
        checkpoint_records,
        checkpoint_interval: Duration::from_secs(checkpoint_seconds),
        kafka_topic,
    }
}

/// Reads a secret reference; a literal is a config error that does not echo the value.
fn secret(
    src: &Source,
    field: &str,
    v: &Spanned<serde_json::Value>,
    d: &mut Vec<Diagnostic>,
) -> Option<SecretRef> {
    match parse_ref(&v.value) {
        Some(r) => Some(r),
        None => {
            let what = if v.value.is_string() || v.value.is_number() {
                format!("`{field}` holds a literal secret; secrets must be references")
            } else {
                format!("`{field}` must be a secret reference")
            };
            d.push(
                src.at(v.referenced, what)
                    .with_hint("write { env: NAME } or { file: /path/to/secret }"),
            );
            None
        }
    }
}

/// One `kafka.topics` entry: a name, or `{ name, format, envelope }`.
fn kafka_topic(
    src: &Source,
    t: &Spanned<serde_json::Value>,
    d: &mut Vec<Diagnostic>,
) -> Option<KafkaTopic> {
    use scimflow_core::decode::{Envelope, JsonPath};
    use serde_json::Value;
    let at = t.referenced;
    let name_ok = |n: &str, d: &mut Vec<Diagnostic>| {
        if n.trim().is_empty() {
            d.push(src.at(at, "empty topic name"));
            false
        } else {
            true
        }
    };
    let obj = match &t.value {
        Value::String(n) => {
            return name_ok(n, d).then(|| KafkaTopic {
                name: n.clone(),
                format: TopicFormat::CloudEvents,
            })
        }
        Value::Object(o) => o,
        _ => {
            d.push(
                src.at(at, "a kafka.topics entry must be a name or a mapping")
                    .with_hint(
                        "write `- NAME` or `- { name: NAME, format: json, envelope: {...} }`",
                    ),
            );
            return None;
        }
    };
    let mut ok = true;
    for k in obj.keys() {
        if !["name", "format", "envelope"].contains(&k.as_str()) {
            d.push(src.at(
                at,
                format!(
                    "unknown key `{k}` in a kafka.topics entry (known: name, format, envelope)"
                ),
            ));
            ok = false;
        }
    }
    let name = match obj.get("name").and_then(Value::as_str) {
        Some(n) if name_ok(n, d) => n.to_owned(),
        Some(_) => return None,
        None => {
            d.push(src.at(at, "a kafka.topics entry has no `name`"));
            return None;
        }
    };
    let format = obj
        .get("format")
        .map(|f| f.as_str().unwrap_or("?"))
        .unwrap_or(if obj.contains_key("envelope") {
            "json"
        } else {
            "cloudevents"
        });
    let envelope = obj.get("envelope");
    let format = match format {
        "cloudevents" => {
            if envelope.is_some() {
                d.push(src.at(
                    at,
                    format!("topic `{name}`: an envelope needs `format: json`"),
                ));
                ok = false;
            }
            TopicFormat::CloudEvents
        }
        "json" => {
            let mut env = Envelope::with_source(format!("kafka:{name}"));
            match envelope {
                None | Some(Value::Null) => {}
                Some(Value::Object(e)) => {
                    for (key, v) in e {
                        if key == "source" {
                            match v.as_str() {
                                Some(lit) if !lit.trim().is_empty() => env.source = lit.to_owned(),
                                _ => {
                                    d.push(src.at(at, format!("topic `{name}`: envelope.source must be a non-empty string")));
                                    ok = false;
                                }
                            }
                            continue;
                        }
                        let path = match v.as_str().map(JsonPath::parse) {
                            Some(Ok(p)) => p,
                            Some(Err(why)) => {
                                d.push(
                                    src.at(at, format!("topic `{name}`: envelope.{key}: {why}")),
                                );
                                ok = false;
                                continue;
                            }
                            None => {
                                d.push(src.at(
                                    at,
                                    format!("topic `{name}`: envelope.{key} must be a string"),
                                ));
                                ok = false;
                                continue;
                            }
                        };
                        match key.as_str() {
                            "id" => env.id = path,
                            "type" => env.kind = path,
                            "subject" => env.subject = Some(path),
                            "time" => env.time = Some(path),
                            "data" => env.data = path,
                            other => {
                                d.push(src.at(at, format!("topic `{name}`: unknown envelope key `{other}` (known: id, type, subject, time, data, source)")));
                                ok = false;
                            }
                        }
                    }
                }
                Some(_) => {
                    d.push(src.at(at, format!("topic `{name}`: envelope must be a mapping")));
                    ok = false;
                }
            }
            TopicFormat::Json(Box::new(env))
        }
        other => {
            d.push(
                src.at(at, format!("topic `{name}`: unknown format `{other}`"))
                    .with_hint("choose cloudevents or json"),
            );
            return None;
        }
    };
    ok.then_some(KafkaTopic { name, format })
}

#[cfg(test)]
mod kafka_tests {
    use crate::{load_str, KafkaTopic, TopicFormat};

    const BASE: &str = r#"version: 1
kafka:
  brokers: 127.0.0.1:9092
  topics:
    - hr.events
    - name: workers
      format: json
      envelope: { id: "$.eventId", type: "$.eventType", subject: "$.worker.id", time: "$.occurredAt", data: "$.worker" }
  dead_letter_topic: scimflow.dlq
  max_event_bytes: 4096
  sasl_password: { env: KAFKA_PASSWORD }
  options:
    security.protocol: sasl_ssl
    sasl.mechanisms: SCRAM-SHA-512
    sasl.username: scimflow
targets:
  demo:
    base_url: https://scim.example.com/v2
    auth: { type: bearer, token: { env: TOKEN } }
    lifecycle:
      hr.worker.hired: upsert
    user:
      externalId: event.data.id
      userName: event.data.email
"#;

    fn env(k: &str) -> Option<String> {
        (k == "KAFKA_PASSWORD" || k == "TOKEN").then(|| "pw".to_owned())
    }

    #[test]
    fn parses_topic_formats_and_kafka_settings() {
        let c = load_str(BASE, "c.yaml", &env).unwrap();
        let k = c.kafka.unwrap();
        assert_eq!(k.topic_names(), vec!["hr.events", "workers"]);
        assert_eq!(
            k.topics[0],
            KafkaTopic {
                name: "hr.events".into(),
                format: TopicFormat::CloudEvents
            }
        );
        let TopicFormat::Json(e) = &k.topics[1].format else {
            panic!("{:?}", k.topics[1])
        };
        assert_eq!(e.id.as_str(), "$.eventId");
        assert_eq!(e.kind.as_str(), "$.eventType");
        assert_eq!(e.subject.as_ref().unwrap().as_str(), "$.worker.id");
        assert_eq!(e.data.as_str(), "$.worker");
        assert_eq!(e.source, "kafka:workers");
        assert_eq!(k.dead_letter_topic.as_deref(), Some("scimflow.dlq"));
        assert_eq!(k.max_event_bytes, Some(4096));
        assert_eq!(format!("{:?}", k.sasl_password), "Some(env:KAFKA_PASSWORD)");
    }

    #[test]
    fn reports_bad_topics_and_literal_passwords() {
        let bad = BASE
            .replace("format: json", "format: avro")
            .replace("    - hr.events\n", "    - hr.events\n    - { name: x, envelope: { id: \"$..a\", colour: \"$.c\" } }\n    - 3\n")
            .replace("sasl.username: scimflow", "sasl.username: scimflow\n    sasl.password: hunter2")
            .replace("dead_letter_topic: scimflow.dlq", "dead_letter_topic: hr.events");
        let e = load_str(&bad, "c.yaml", &env).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        for want in [
            "unknown format `avro`",
            "envelope.id: `$..a` has an empty segment",
            "unknown envelope key `colour`",
            "must be a name or a mapping",
            "must not contain `sasl.password`",
            "`hr.events` is also consumed",
        ] {
            assert!(text.contains(want), "missing {want:?} in {text}");
        }
    }
}

#[cfg(test)]
mod audit_tests {
    use std::time::Duration;

    use crate::{load_str, AuditConfig, SecretRef};

    const BASE: &str = r#"version: 1
audit:
  signing_key: { file: /etc/scimflow/audit-key.pem }
  checkpoint_records: 50
  checkpoint_seconds: 5
targets:
  demo:
    base_url: https://scim.example.com/v2
    lifecycle:
      hr.worker.hired: upsert
    user:
      externalId: event.data.employeeId
      userName: event.data.email
"#;

    fn env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_the_audit_section_and_defaults_without_it() {
        let c = load_str(BASE, "c.yaml", &env).unwrap();
        assert_eq!(
            c.audit,
            AuditConfig {
                signing_key: Some(SecretRef::File("/etc/scimflow/audit-key.pem".into())),
                checkpoint_records: 50,
                checkpoint_interval: Duration::from_secs(5),
                kafka_topic: None,
            }
        );
        let without = BASE
            .lines()
            .filter(|l| {
                !l.starts_with("audit:")
                    && !l.starts_with("  signing_key")
                    && !l.starts_with("  checkpoint_")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = load_str(&without, "c.yaml", &env).unwrap();
        assert_eq!(c.audit, AuditConfig::default());
        assert_eq!(c.audit.checkpoint_records, 1000);
    }

    #[test]
    fn a_literal_key_zero_intervals_and_unknown_keys_are_errors_that_never_echo_the_key() {
        let pem = "-----BEGIN PRIVATE KEY-----MC4CAQAwBQYDK2VwBCIEIKeyMaterialSecret";
        let bad = BASE
            .replace(
                "signing_key: { file: /etc/scimflow/audit-key.pem }",
                &format!("signing_key: \"{pem}\"\n  checkpoint_every: 3"),
            )
            .replace("checkpoint_records: 50", "checkpoint_records: 0")
            .replace("checkpoint_seconds: 5", "checkpoint_seconds: 0");
        let text = load_str(&bad, "c.yaml", &env).unwrap_err().to_string();
        assert!(!text.contains("KeyMaterialSecret"), "{text}");
        for want in [
            "`audit.signing_key` holds a literal secret",
            "unknown key `checkpoint_every` in `audit`",
            "audit.checkpoint_records must be positive",
            "audit.checkpoint_seconds must be positive",
        ] {
            assert!(text.contains(want), "missing {want:?} in {text}");
        }
    }
}

#[cfg(test)]
mod admin_tests {
    use crate::{load_str, AdminRole, SecretRef};

    const BASE: &str = r#"version: 1
admin:
  listen: 127.0.0.1:9091
  max_body_bytes: 2048
  tokens:
    - { name: ops, role: operator, token: { file: /run/secrets/ops } }
    - { name: viewer, role: read, token: { env: VIEW_TOKEN } }
targets:
  demo:
    base_url: https://scim.example.com/v2
    lifecycle:
      hr.worker.hired: upsert
    user:
      externalId: event.data.employeeId
      userName: event.data.email
"#;

    fn env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_listen_tokens_roles_and_limits() {
        let c = load_str(BASE, "c.yaml", &env).unwrap();
        let a = c.admin.expect("admin section");
        assert_eq!(a.listen.to_string(), "127.0.0.1:9091");
        assert_eq!(a.max_body_bytes, 2048);
        assert_eq!(a.tokens.len(), 2);
        assert_eq!(
            (a.tokens[0].name.as_str(), a.tokens[0].role),
            ("ops", AdminRole::Operator)
        );
        assert_eq!(
            a.tokens[0].token,
            SecretRef::File("/run/secrets/ops".into())
        );
        assert_eq!(a.tokens[1].role, AdminRole::Read);
        assert!(AdminRole::Operator > AdminRole::Read);
        let without = load_str(&BASE.replace("admin:", "unused_admin:"), "c.yaml", &env);
        assert!(without.is_err(), "an unknown top-level key is an error");
    }

    #[test]
    fn literal_tokens_bad_roles_duplicates_and_bad_addresses_are_errors() {
        let bad = BASE
            .replace("127.0.0.1:9091", "localhost")
            .replace("role: read", "role: admin")
            .replace("name: viewer", "name: ops")
            .replace("token: { env: VIEW_TOKEN }", "token: \"s3cr3t-literal\"");
        let text = load_str(&bad, "c.yaml", &env).unwrap_err().to_string();
        assert!(!text.contains("s3cr3t-literal"), "{text}");
        for want in [
            "`localhost` is not a socket address",
            "unknown admin role `admin`",
            "admin token name `ops` is used twice",
            "holds a literal secret",
        ] {
            assert!(text.contains(want), "missing `{want}` in:\n{text}");
        }
        let none = BASE
            .lines()
            .filter(|l| !l.contains("{ name:") && !l.trim_start().starts_with("tokens:"))
            .collect::<Vec<_>>()
            .join("\n");
        let text = load_str(&none, "c.yaml", &env).unwrap_err().to_string();
        assert!(text.contains("`admin` has no `tokens`"), "{text}");
    }
}

#[cfg(test)]
mod rate_limit_tests {
    use crate::load_str;

    fn with(rate_limit: &str) -> crate::RateLimit {
        let yaml = format!(
            "version: 1\ntargets:\n  demo:\n    base_url: https://scim.example.com/v2\n    rate_limit: {rate_limit}\n    lifecycle:\n      hr.worker.hired: upsert\n    user:\n      externalId: event.data.employeeId\n      userName: event.data.email\n"
        );
        load_str(&yaml, "c.yaml", &|_| None).unwrap().targets[0]
            .rate_limit
            .unwrap()
    }

    #[test]
    fn the_default_burst_is_a_twentieth_of_a_second_and_at_least_one() {
        assert_eq!(with("{ per_second: 200 }").burst, 10);
        assert_eq!(with("{ per_second: 5 }").burst, 1);
        assert_eq!(with("{ per_second: 0.5 }").burst, 1);
        assert_eq!(with("{ per_second: 200, burst: 1 }").burst, 1);
    }
}

#[cfg(test)]
mod target_auth_tests {
    use crate::{
        load_str, ClientAuthStyle, ClientCertificate, Diagnostics, OAuth2Config, SecretRef,
        TargetAuth, TargetTls,
    };

    /// One target with `extra` lines (indented as target keys) after `base_url`.
    fn config(base_url: &str, extra: &str) -> String {
        format!(
            "version: 1\ntargets:\n  demo:\n    base_url: {base_url}\n{extra}    lifecycle:\n      hr.worker.hired: upsert\n    user:\n      externalId: event.data.employeeId\n      userName: event.data.email\n"
        )
    }

    fn errors(yaml: &str) -> Diagnostics {
        load_str(yaml, "c.yaml", &|_| None).unwrap_err()
    }

    /// The diagnostic whose message contains `want`, as `(line, column, text with hint)`.
    fn find(d: &Diagnostics, want: &str) -> (u64, u64, String) {
        let hit =
            d.0.iter()
                .find(|x| x.message.contains(want))
                .unwrap_or_else(|| panic!("no diagnostic {want:?} in:\n{d}"));
        (hit.line, hit.column, hit.to_string())
    }

    const OAUTH2: &str = "    auth:
      type: oauth2
      token_url: https://login.example.com/oauth2/token
      client_id: scimflow-prod
      client_secret: { file: /run/secrets/scim-client }
      scope: \"scim.read   scim.write\"
      audience: https://api.example.com
      auth_style: body
";

    #[test]
    fn parses_oauth2_client_credentials() {
        let c = load_str(
            &config("https://scim.example.com/v2", OAUTH2),
            "c.yaml",
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            c.targets[0].auth,
            TargetAuth::OAuth2(OAuth2Config {
                token_url: "https://login.example.com/oauth2/token".into(),
                client_id: "scimflow-prod".into(),
                client_secret: SecretRef::File("/run/secrets/scim-client".into()),
                scope: Some("scim.read scim.write".into()),
                audience: Some("https://api.example.com".into()),
                auth_style: ClientAuthStyle::Body,
            })
        );
        // Defaults: HTTP Basic, no scope, no audience.
        let minimal = "    auth: { type: oauth2, token_url: \"https://idp.example.com/token\", client_id: c1, client_secret: { env: SECRET } }\n";
        let c = load_str(
            &config("https://scim.example.com/v2", minimal),
            "c.yaml",
            &|_| None,
        )
        .unwrap();
        let TargetAuth::OAuth2(o) = &c.targets[0].auth else {
            panic!("{:?}", c.targets[0].auth)
        };
        assert_eq!(o.auth_style, ClientAuthStyle::Basic);
        assert_eq!((o.scope.as_deref(), o.audience.as_deref()), (None, None));
        assert_eq!(o.client_secret, SecretRef::Env("SECRET".into()));
        assert_eq!(c.targets[0].auth.kind(), "oauth2");
    }

    #[test]
    fn an_http_token_url_needs_allow_http() {
        let http = OAUTH2.replace("https://login", "http://login");
        let d = errors(&config("https://scim.example.com/v2", &http));
        let (line, column, text) = find(&d, "auth.token_url must use https");
        assert_eq!((line, column), (7, 18), "{text}");
        assert!(text.contains("allow_http"), "{text}");
        let allowed = format!("    allow_http: true\n{http}");
        load_str(
            &config("http://127.0.0.1:1/scim/v2", &allowed),
            "c.yaml",
            &|_| None,
        )
        .unwrap();
    }

    #[test]
    fn oauth2_errors_are_all_reported_at_their_keys_and_never_echo_the_secret() {
        let bad = OAUTH2
            .replace(
                "client_secret: { file: /run/secrets/scim-client }",
                "client_secret: \"hunter2-client-secret\"\n      token: { env: TOKEN }\n      client_sceret: 1",
            )
            .replace("auth_style: body", "auth_style: header")
            .replace("\"scim.read   scim.write\"", "'scim\\read'")
            .replace(
                "https://login.example.com",
                "https://id:pw@login.example.com",
            );
        let d = errors(&config("https://scim.example.com/v2", &bad));
        let text = d.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains(":pw@"), "{text}");
        for (want, line) in [
            ("auth.token_url must not contain credentials", 7),
            ("`auth.client_secret` holds a literal secret", 9),
            ("`auth.token` does not apply to `type: oauth2`", 10),
            ("unknown key `client_sceret` in `auth`", 11),
            ("auth.scope is not a space-separated list", 12),
            ("unknown auth.auth_style `header`", 14),
        ] {
            let (l, _, t) = find(&d, want);
            assert_eq!(l, line, "{t}");
        }
        assert!(
            find(&d, "unknown key `client_sceret`")
                .2
                .contains("did you mean `client_secret`?"),
            "{text}"
        );
        // Missing required keys are named at `type:`.
        let d = errors(&config(
            "https://scim.example.com/v2",
            "    auth: { type: oauth2, scope: a }\n",
        ));
        for want in [
            "oauth2 auth needs `token_url`",
            "oauth2 auth needs `client_id`",
            "oauth2 auth needs `client_secret`",
        ] {
            assert_eq!(find(&d, want).0, 5, "{d}");
        }
    }

    #[test]
    fn keys_of_another_auth_type_are_errors() {
        let d = errors(&config(
            "https://scim.example.com/v2",
            "    auth: { type: bearer, token: { env: T }, token_url: \"https://x.example/t\" }\n",
        ));
        let (_, _, text) = find(&d, "`auth.token_url` does not apply to `type: bearer`");
        assert!(text.contains("takes: type, token"), "{text}");
        let d = errors(&config(
            "https://scim.example.com/v2",
            "    auth: { type: kerberos }\n",
        ));
        assert!(find(&d, "unknown auth type `kerberos`")
            .2
            .contains("bearer, oauth2, none"));
    }

    #[test]
    fn parses_tls_client_certificate_and_ca() {
        let tls = "    tls:\n      client_cert: { file: /etc/scimflow/client.pem }\n      client_key: { env: CLIENT_KEY_PEM }\n      ca: { file: /etc/scimflow/ca.pem }\n";
        let c = load_str(
            &config("https://scim.example.com/v2", tls),
            "c.yaml",
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            c.targets[0].tls,
            TargetTls {
                client: Some(ClientCertificate {
                    cert: SecretRef::File("/etc/scimflow/client.pem".into()),
                    key: SecretRef::Env("CLIENT_KEY_PEM".into()),
                }),
                ca: Some(SecretRef::File("/etc/scimflow/ca.pem".into())),
            }
        );
        let only_ca = "    tls: { ca: { file: ca.pem } }\n";
        let c = load_str(
            &config("https://scim.example.com/v2", only_ca),
            "c.yaml",
            &|_| None,
        )
        .unwrap();
        assert_eq!(c.targets[0].tls.client, None);
        assert!(c.targets[0].tls.ca.is_some());
        let c = load_str(
            &config("https://scim.example.com/v2", ""),
            "c.yaml",
            &|_| None,
        )
        .unwrap();
        assert_eq!(c.targets[0].tls, TargetTls::default());
    }

    #[test]
    fn tls_errors_name_the_key_and_line() {
        let pem = "-----BEGIN PRIVATE KEY----- MIIEvQIBADANBgkqhkiG9w0BAQEFAASC";
        let bad = format!(
            "    tls:\n      client_cert: {{ file: c.pem }}\n      ca: \"{pem}\"\n      insecure: true\n"
        );
        let d = errors(&config("https://scim.example.com/v2", &bad));
        let text = d.to_string();
        assert!(!text.contains("MIIEvQ"), "{text}");
        assert_eq!(
            find(&d, "tls.client_cert needs tls.client_key").0,
            6,
            "{text}"
        );
        assert_eq!(
            find(&d, "`tls.ca` must be a reference to a PEM file").0,
            7,
            "{text}"
        );
        let (line, _, hint) = find(&d, "unknown key `insecure` in `tls`");
        assert_eq!(line, 8, "{text}");
        assert!(hint.contains("client_cert, client_key, ca"), "{hint}");
        let key_only = "    tls: { client_key: { file: k.pem } }\n";
        let d = errors(&config("https://scim.example.com/v2", key_only));
        assert_eq!(find(&d, "tls.client_key needs tls.client_cert").0, 5);
        let literal_key =
            format!("    tls: {{ client_cert: {{ file: c.pem }}, client_key: \"{pem}\" }}\n");
        let d = errors(&config("https://scim.example.com/v2", &literal_key));
        assert!(!d.to_string().contains("MIIEvQ"), "{d}");
        find(&d, "`tls.client_key` holds a literal secret");
        // `tls` is a known target key; a misspelling is reported with the suggestion.
        let d = errors(&config(
            "https://scim.example.com/v2",
            "    tsl: { ca: { file: ca.pem } }\n",
        ));
        assert!(find(&d, "unknown key `tsl`")
            .2
            .contains("did you mean `tls`?"));
    }
}

#[cfg(test)]
mod connector_tests {
    use crate::{load, load_str, Config};

    fn target(extra: &str, lifecycle: &str, user: &str) -> String {
        format!(
            "version: 1\ntargets:\n  app:\n    base_url: https://scim.example.com/v2\n{extra}    lifecycle:\n{lifecycle}    user:\n      externalId: event.data.employeeId\n      userName: event.data.email\n      emails[type eq \"work\"].value: event.data.email\n{user}"
        )
    }

    fn ok(yaml: &str) -> Config {
        load_str(yaml, "c.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(yaml: &str) -> String {
        load_str(yaml, "c.yaml", &|_| None).unwrap_err().to_string()
    }

    const HIRED: &str = "      hr.worker.hired: upsert\n";

    #[test]
    fn targets_default_to_the_generic_connector() {
        let c = ok(&target("", HIRED, ""));
        assert_eq!(c.targets[0].profile.name, "generic");
        assert_eq!(c.targets[0].rate_limit, None, "generic documents no quota");
    }

    #[test]
    fn an_unknown_connector_is_an_error_listing_the_known_ones() {
        let e = err(&target("    connector: slak\n", HIRED, ""));
        assert!(
            e.contains("c.yaml:5:16: error: target `app`: unknown connector `slak`"),
            "{e}"
        );
        assert!(e.contains("did you mean `slack`?"), "{e}");
        for known in crate::profile::embedded_names() {
            assert!(e.contains(known), "{known} not listed in {e}");
        }
    }

    #[test]
    fn a_lifecycle_action_the_connector_cannot_do_is_an_error_at_its_line() {
        let e = err(&target(
            "    connector: salesforce\n",
            "      hr.worker.hired: upsert\n      hr.worker.terminated: delete\n",
            "",
        ));
        assert!(
            e.contains("c.yaml:8:29: error: target `app`: lifecycle `hr.worker.terminated: delete` is not possible: `salesforce` does not support DELETE of users (per https://help.salesforce.com/"),
            "{e}"
        );
        assert!(
            e.contains("hint: use `deactivate` (the `salesforce` connector deactivates with PATCH active=false)"),
            "{e}"
        );
        // The same action where the connector supports it is fine, and so is `out_of_scope`.
        ok(&target(
            "    connector: slack\n    out_of_scope: delete\n",
            "      hr.worker.terminated: delete\n",
            "",
        ));
        let e = err(&target(
            "    connector: canva\n    out_of_scope: delete\n",
            HIRED,
            "",
        ));
        assert!(e.contains("c.yaml:6:19: error: target `app`: `out_of_scope: delete` is not possible: `canva` does not support DELETE"), "{e}");
    }

    #[test]
    fn the_connectors_documented_rate_limit_is_the_default() {
        let c = ok(&target("    connector: slack\n", HIRED, ""));
        let t = &c.targets[0];
        let r = t.rate_limit.unwrap();
        assert_eq!((r.per_second, r.burst), (3.0, 20));
        assert!(t.profile.rate_limit.as_ref().unwrap().shared);
        // Without a documented burst, the config's default burst.
        let c = ok(&target("    connector: miro\n", HIRED, ""));
        let r = c.targets[0].rate_limit.unwrap();
        assert_eq!((r.per_second, r.burst), (3.33, 1));
        assert!(!c.targets[0].profile.rate_limit.as_ref().unwrap().shared);
        // The target's own rate_limit wins.
        let c = ok(&target(
            "    connector: slack\n    rate_limit: { per_second: 1 }\n",
            HIRED,
            "",
        ));
        let r = c.targets[0].rate_limit.unwrap();
        assert_eq!((r.per_second, r.burst), (1.0, 1));
    }

    #[test]
    fn attributes_the_connector_requires_must_be_mapped() {
        let e = err(&target(
            "    connector: aws-iam-identity-center\n",
            HIRED,
            "      emails[type eq \"home\"].value: event.data.home\n      password: event.data.pw\n",
        ));
        for want in [
            "requires `displayName` on every user",
            "requires `name.givenName` on every user",
            "requires `name.familyName` on every user",
            "accepts one value of `emails`, but the mapping writes `emails[type eq \"home\"]`, `emails[type eq \"work\"]`",
            "does not accept `password` (mapped as `password`)",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
        ok(&target(
            "    connector: aws-iam-identity-center\n",
            HIRED,
            "      displayName: event.data.email\n      name.givenName: event.data.first\n      name.familyName: event.data.last\n",
        ));
    }

    #[test]
    fn connector_and_connector_file_exclude_each_other_and_files_are_read_by_load() {
        let e = err(&target(
            "    connector: slack\n    connector_file: acme.yaml\n",
            HIRED,
            "",
        ));
        assert!(
            e.contains("sets both `connector` and `connector_file`"),
            "{e}"
        );

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("acme.yaml"),
            "name: acme\nversion: 1\ndescription: Acme\nsources: [https://acme.example/scim]\nmatching: [userName]\ndelete: { supported: false }\n",
        )
        .unwrap();
        let cfg = dir.path().join("c.yaml");
        std::fs::write(&cfg, target("    connector_file: acme.yaml\n", HIRED, "")).unwrap();
        let c = load(&cfg).unwrap();
        let t = &c.targets[0];
        assert_eq!(t.profile.name, "acme");
        assert_eq!(
            t.matching,
            vec!["userName"],
            "matching defaults to the profile's"
        );
        assert!(c.files.contains(&dir.path().join("acme.yaml")), "watched");
        let before = c.version.clone();
        std::fs::write(
            dir.path().join("acme.yaml"),
            "name: acme\nversion: 1\ndescription: Acme\nsources: [https://acme.example/scim]\nthrottle_statuses: [429, 503]\n",
        )
        .unwrap();
        assert_ne!(
            load(&cfg).unwrap().version,
            before,
            "the profile is part of the version"
        );

        std::fs::write(
            dir.path().join("acme.yaml"),
            "name: acme\nversion: 1\nupdate: post\n",
        )
        .unwrap();
        let e = load(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("acme.yaml:3:9: error: unknown update method `post`"),
            "{e}"
        );
        std::fs::remove_file(dir.path().join("acme.yaml")).unwrap();
        let e = load(&cfg).unwrap_err().to_string();
        assert!(e.contains("cannot read connector file `acme.yaml`"), "{e}");
    }

    #[test]
    fn every_shipped_example_loads_with_its_own_connector() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../connectors");
        let mut seen = 0;
        for entry in std::fs::read_dir(root).unwrap().filter_map(Result::ok) {
            let dir = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let example = dir.join("example.yaml");
            assert!(example.is_file(), "{name} has no example.yaml");
            assert!(dir.join("tests").is_dir(), "{name} has no tests/");
            assert!(dir.join("README.md").is_file(), "{name} has no README.md");
            let c = load(&example).unwrap_or_else(|e| panic!("{name}: {e}"));
            for t in &c.targets {
                assert_eq!(t.profile.name, name, "{name}: target {}", t.name);
            }
            seen += 1;
        }
        assert!(seen >= 11, "generic plus at least ten vendors");
    }
}
