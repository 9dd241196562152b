//! Pure validation of the raw model: every problem is reported, each at its location.

use std::path::PathBuf;
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::model::*;
use crate::{Diagnostic, Diagnostics, SecretRef};

/// Validates `raw` (read from `file`); `version` is the content hash to record.
pub fn validate(raw: RawConfig, file: &str, version: String) -> Result<Config, Diagnostics> {
    let mut d = Vec::new();
    if raw.version.value != 1 {
        d.push(
            Diagnostic::at(
                file,
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
                Diagnostic::at(
                    file,
                    l.referenced,
                    format!("`{}` is not a socket address", l.value),
                )
                .with_hint("write host:port, e.g. 127.0.0.1:8080"),
            );
            None
        }
    });
    let ingest = match raw.ingest {
        Some(i) => IngestConfig {
            token: i
                .token
                .and_then(|t| secret(file, "ingest.token", &t, &mut d)),
            max_event_bytes: i
                .max_event_bytes
                .unwrap_or(scimflow_core::decode::DEFAULT_MAX_EVENT_BYTES),
        },
        None => IngestConfig {
            token: None,
            max_event_bytes: scimflow_core::decode::DEFAULT_MAX_EVENT_BYTES,
        },
    };
    let kafka = raw.kafka.map(|k| {
        if k.brokers.value.trim().is_empty() {
            d.push(Diagnostic::at(
                file,
                k.brokers.referenced,
                "kafka.brokers is empty",
            ));
        }
        if k.topics.is_empty() {
            d.push(Diagnostic::at(
                file,
                k.brokers.referenced,
                "kafka.topics names no topic",
            ));
        }
        for t in &k.topics {
            if t.value.trim().is_empty() {
                d.push(Diagnostic::at(file, t.referenced, "empty topic name"));
            }
        }
        KafkaConfig {
            brokers: k.brokers.value,
            topics: k.topics.into_iter().map(|t| t.value).collect(),
            group_id: k.group_id.unwrap_or_else(|| "scimflow".into()),
            client_id: k.client_id.unwrap_or_else(|| "scimflow".into()),
            options: k.options,
            max_in_flight: k.max_in_flight.unwrap_or(10_000).max(1),
        }
    });
    if raw.targets.is_empty() {
        d.push(
            Diagnostic::file_level(file, "no targets are configured")
                .with_hint("add a `targets:` map with at least one target"),
        );
    }
    let mut targets = Vec::new();
    for (name, t) in raw.targets {
        if let Some(t) = target(file, name, t, &mut d) {
            targets.push(t);
        }
    }
    if d.is_empty() {
        Ok(Config {
            file: file.to_owned(),
            version,
            listen,
            data_dir: raw.data_dir.map(PathBuf::from),
            ingest,
            kafka,
            targets,
        })
    } else {
        d.sort_by_key(|x| (x.line, x.column));
        Err(Diagnostics(d))
    }
}

fn target(file: &str, name: String, t: RawTarget, d: &mut Vec<Diagnostic>) -> Option<TargetConfig> {
    let before = d.len();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        d.push(
            Diagnostic::at(
                file,
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
            Diagnostic::at(
                file,
                t.base_url.referenced,
                format!("target `{name}`: base_url must use https"),
            )
            .with_hint("plain http is allowed only with `allow_http: true` (e.g. loopback tests)"),
        ),
        Ok(u) => d.push(Diagnostic::at(
            file,
            t.base_url.referenced,
            format!("target `{name}`: unsupported URL scheme `{}`", u.scheme()),
        )),
        Err(e) => d.push(Diagnostic::at(
            file,
            t.base_url.referenced,
            format!("target `{name}`: base_url is not a URL ({e})"),
        )),
    }
    let auth = match t.auth {
        None => TargetAuth::None,
        Some(a) => match a.kind.value.as_str() {
            "bearer" => match a.token {
                Some(tok) => secret(file, "auth.token", &tok, d)
                    .map(TargetAuth::Bearer)
                    .unwrap_or(TargetAuth::None),
                None => {
                    d.push(
                        Diagnostic::at(file, a.kind.referenced, "bearer auth needs a `token`")
                            .with_hint(
                                "token: { env: NAME } or token: { file: /run/secrets/NAME }",
                            ),
                    );
                    TargetAuth::None
                }
            },
            "none" => TargetAuth::None,
            other => {
                d.push(
                    Diagnostic::at(
                        file,
                        a.kind.referenced,
                        format!("unknown auth type `{other}`"),
                    )
                    .with_hint("supported: bearer, none"),
                );
                TargetAuth::None
            }
        },
    };
    let mut lifecycle = std::collections::BTreeMap::new();
    for (kind, action) in t.lifecycle {
        let parsed = if action.value == "ignore" {
            Ok(Lifecycle::Ignore)
        } else {
            action.value.parse().map(Lifecycle::Action)
        };
        match parsed {
            Ok(l) => {
                lifecycle.insert(kind, l);
            }
            Err(e) => d.push(Diagnostic::at(file, action.referenced, e)),
        }
    }
    let matching: Vec<String> = match t.matching {
        Some(m) => m
            .into_iter()
            .filter_map(|a| {
                if matches!(a.value.as_str(), "externalId" | "userName") {
                    Some(a.value)
                } else {
                    d.push(
                        Diagnostic::at(
                            file,
                            a.referenced,
                            format!("cannot match accounts by `{}`", a.value),
                        )
                        .with_hint("supported matching attributes: externalId, userName"),
                    );
                    None
                }
            })
            .collect(),
        None => vec!["externalId".into(), "userName".into()],
    };
    let mut user = Vec::new();
    for (path, expr) in t.user {
        let Spanned {
            value, referenced, ..
        } = expr;
        let (text, literal) = match value {
            serde_json::Value::String(s) => (s, None),
            other => (other.to_string(), Some(other)),
        };
        user.push(AttributeMapping {
            path,
            expr: text,
            literal,
            line: referenced.line(),
            column: referenced.column(),
        });
    }
    for m in &matching {
        if !user.iter().any(|u| &u.path == m) {
            d.push(
                Diagnostic::file_level(
                    file,
                    format!(
                        "target `{name}` matches by `{m}` but its `user:` mapping does not set it"
                    ),
                )
                .with_hint(format!("add `{m}: <expression>` under targets.{name}.user")),
            );
        }
    }
    let concurrency = t.concurrency.unwrap_or(4);
    if concurrency == 0 || concurrency > 256 {
        d.push(Diagnostic::at(
            file,
            t.base_url.referenced,
            format!("target `{name}`: concurrency must be between 1 and 256"),
        ));
    }
    let rate_limit = t.rate_limit.and_then(|r| {
        if r.per_second > 0.0 && r.per_second.is_finite() {
            Some(RateLimit {
                per_second: r.per_second,
                burst: r.burst.unwrap_or(1).max(1),
            })
        } else {
            d.push(Diagnostic::at(
                file,
                t.base_url.referenced,
                format!("target `{name}`: rate_limit.per_second must be positive"),
            ));
            None
        }
    });
    if d.len() > before {
        return None;
    }
    Some(TargetConfig {
        name,
        base_url,
        auth,
        concurrency,
        timeout: Duration::from_millis(t.timeout_ms.unwrap_or(10_000)),
        max_attempts: t.max_attempts.unwrap_or(8).max(1),
        rate_limit,
        lifecycle,
        matching,
        user,
    })
}

/// Reads a secret reference; a literal is a config error that does not echo the value.
fn secret(
    file: &str,
    field: &str,
    v: &Spanned<serde_json::Value>,
    d: &mut Vec<Diagnostic>,
) -> Option<SecretRef> {
    let obj = v.value.as_object();
    let env = obj.and_then(|o| o.get("env")).and_then(|x| x.as_str());
    let path = obj.and_then(|o| o.get("file")).and_then(|x| x.as_str());
    let only_one_key = obj.is_some_and(|o| o.len() == 1);
    match (env, path) {
        (Some(n), None) if only_one_key && !n.is_empty() => Some(SecretRef::Env(n.to_owned())),
        (None, Some(p)) if only_one_key && !p.is_empty() => Some(SecretRef::File(PathBuf::from(p))),
        _ => {
            let what = if v.value.is_string() || v.value.is_number() {
                format!("`{field}` holds a literal secret; secrets must be references")
            } else {
                format!("`{field}` must be a secret reference")
            };
            d.push(
                Diagnostic::at(file, v.referenced, what)
                    .with_hint("write { env: NAME } or { file: /path/to/secret }"),
            );
            None
        }
    }
}
