//! The identity team's tools: `scimflow check` (with an environment phase that reaches the targets)
//! and `scimflow map` (the SCIM requests an event would cause, with no network calls).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use scimflow_config::{Config, Diagnostics, TargetAuth, EXIT_CONFIG};
use scimflow_core::decode::{decode_value, DecodeOptions};
use scimflow_core::plan::{Plan, Planner};
use scimflow_core::{OpKind, Operation, SubjectState};
use scimflow_mapping::Mapping;

/// Exit code when the config is valid but a target cannot be reached (EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;

/// Loads and compiles a config, reporting every problem of both phases together.
pub fn load_and_compile(path: &Path) -> Result<(Config, Mapping), Diagnostics> {
    let (config, mut diags) = scimflow_config::load_all(path);
    let Some(config) = config else {
        return Err(Diagnostics(diags));
    };
    match scimflow_mapping::compile(&config) {
        Ok(mapping) if diags.is_empty() => return Ok((config, mapping)),
        Ok(_) => {}
        Err(more) => diags.extend(more.0),
    }
    diags.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    Err(Diagnostics(diags))
}

/// Loads and compiles a config, printing diagnostics.
pub fn load(path: &Path) -> Result<(Config, Mapping), ExitCode> {
    load_and_compile(path).map_err(|d| {
        eprintln!("{d}");
        ExitCode::from(EXIT_CONFIG as u8)
    })
}

/// `scimflow check`: phase 1 validates the config and compiles every expression (exit 78 on errors);
/// phase 2 (unless `no_environment`) resolves every secret reference and asks each target for its
/// `/ServiceProviderConfig` (exit 69 when one fails). Secret values are never printed.
pub fn check(path: &Path, no_environment: bool) -> ExitCode {
    let (config, mapping) = match load(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    println!(
        "{}: configuration ok — {} target(s), source: {}, mapping version {}",
        path.display(),
        config.targets.len(),
        if config.kafka.is_some() {
            "kafka"
        } else {
            "embedded"
        },
        mapping.version()
    );
    if no_environment {
        return ExitCode::SUCCESS;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let failures = rt.block_on(environment(&config));
    if failures == 0 {
        println!("environment ok — every secret resolves and every target answers");
        ExitCode::SUCCESS
    } else {
        eprintln!("{failures} environment problem(s); run with --no-environment to check the configuration alone");
        ExitCode::from(EXIT_UNAVAILABLE)
    }
}

async fn environment(config: &Config) -> usize {
    let mut failures = 0;
    if let Some(t) = &config.ingest.token {
        if let Err(e) = t.resolve() {
            eprintln!("environment: ingest token: {e}");
            failures += 1;
        }
    }
    if let Some(r) = &config.audit.signing_key {
        match crate::checkpoint::load_signing_key(r) {
            Ok(k) => println!(
                "environment: audit signing key {r} ok (key id {})",
                scimflow_core::audit::key_id(&k.verifying_key())
            ),
            Err(e) => {
                eprintln!("environment: audit signing key: {e:#}");
                failures += 1;
            }
        }
    }
    // Each target through its real client: TLS files (client certificate, CA), the bearer token or
    // an OAuth2 token request, then `GET /ServiceProviderConfig`.
    for t in &config.targets {
        let mut t = t.clone();
        t.timeout = t.timeout.min(Duration::from_secs(5));
        let client = match scimflow_delivery::client::ScimClient::new(&t) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("environment: target `{}`: {e}", t.name);
                failures += 1;
                continue;
            }
        };
        match client
            .send(
                reqwest::Method::GET,
                "/ServiceProviderConfig",
                &[],
                None,
                None,
            )
            .await
        {
            Ok(r) => {
                let auth = match &t.auth {
                    TargetAuth::OAuth2(_) => ", oauth2 token obtained",
                    _ => "",
                };
                println!(
                    "environment: target `{}` answers ({}{auth})",
                    t.name, r.status
                )
            }
            Err(e) => {
                eprintln!(
                    "environment: target `{}` ({}): /ServiceProviderConfig failed: {e}",
                    t.name, t.base_url
                );
                failures += 1;
            }
        }
    }
    failures
}

/// `scimflow map`: plans `event` (with an optional prior state) and prints the requests it causes.
pub fn map(
    config_path: &Path,
    event_path: &Path,
    target: Option<&str>,
    prior_path: Option<&Path>,
    now: Option<DateTime<Utc>>,
    as_json: bool,
) -> ExitCode {
    let (config, mapping) = match load(config_path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if let Some(t) = target {
        if !config.targets.iter().any(|c| c.name == t) {
            eprintln!("error: no target named `{t}` in {}", config_path.display());
            return ExitCode::FAILURE;
        }
    }
    let read = |p: &Path| -> Result<Value, String> {
        let text =
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", p.display()))
    };
    let event = match read(event_path).and_then(|v| {
        let accepts = |t: &str| mapping.accepts_type(t);
        let opts = DecodeOptions {
            max_bytes: config.ingest.max_event_bytes,
            accepts_type: &accepts,
        };
        decode_value(v, &opts, None).map_err(|e| format!("{}: {e}", event_path.display()))
    }) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let prior = match prior_path.map(read) {
        None => None,
        Some(Ok(v)) => match decode_value(
            v,
            &DecodeOptions {
                max_bytes: usize::MAX,
                accepts_type: &|_| true,
            },
            None,
        ) {
            Ok(p) => Some(SubjectState::from_event(&p)),
            Err(e) => {
                eprintln!("error: prior state: {e}");
                return ExitCode::FAILURE;
            }
        },
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = now.or(event.time).unwrap_or_else(Utc::now);
    let mut plan = mapping.plan_at(&event, prior.as_ref(), now);
    if let Some(t) = target {
        plan.ops.retain(|o| o.target == t);
        plan.scheduled.retain(|s| s.op.target == t);
        plan.cancel.retain(|c| c.target == t);
        plan.errors.retain(|e| e.target == t);
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan_json(&plan)).expect("json")
        );
    } else {
        print_plan(&plan);
    }
    if plan.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The requests an operation causes, as `(when, method, path, body)`.
pub fn requests(op: &Operation) -> Vec<(&'static str, &'static str, String, Option<Value>)> {
    let key = op
        .matching
        .first()
        .map(|k| format!("{} eq {}", k.attribute, json!(k.value)))
        .unwrap_or_default();
    let lookup = ("unless bound", "GET", format!("/Users?filter={key}"), None);
    // Exactly what delivery sends to an existing account (minus the manager reference, resolved
    // only at delivery time).
    let owned_patch = || {
        op.patch.clone().unwrap_or_else(|| {
            let mut owned = op.resource.clone();
            if let Some(o) = owned.as_object_mut() {
                for k in &op.create_only {
                    o.remove(k);
                }
            }
            scimflow_delivery::exec::replace_patch(&owned)
        })
    };
    match op.kind {
        OpKind::Upsert | OpKind::Reactivate => vec![
            lookup,
            (
                "if absent",
                "POST",
                "/Users".into(),
                Some(op.resource.clone()),
            ),
            (
                "if present",
                "PATCH",
                "/Users/{id}".into(),
                Some(owned_patch()),
            ),
        ],
        OpKind::Update => vec![
            lookup,
            (
                "if present",
                "PATCH",
                "/Users/{id}".into(),
                Some(owned_patch()),
            ),
        ],
        OpKind::Deactivate => vec![
            lookup,
            (
                "if present",
                "PATCH",
                "/Users/{id}".into(),
                Some(
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "active", "value": false}]}),
                ),
            ),
        ],
        OpKind::Delete => vec![lookup, ("if present", "DELETE", "/Users/{id}".into(), None)],
        OpKind::GroupAdd | OpKind::GroupRemove => {
            let g = op.group.clone().unwrap_or_default();
            let add = op.kind == OpKind::GroupAdd;
            let mut v = vec![(
                "unless known",
                "GET",
                format!("/Groups?filter=displayName eq {}", json!(g)),
                None,
            )];
            if add {
                v.push(("if absent", "POST", "/Groups".into(), Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": g, "members": [{"value": "{user id}"}]}))));
                v.push(("if present", "PATCH", "/Groups/{group id}".into(), Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "add", "path": "members", "value": [{"value": "{user id}"}]}]}))));
            } else {
                v.push(("if present", "PATCH", "/Groups/{group id}".into(), Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "remove", "path": "members[value eq \"{user id}\"]"}]}))));
            }
            v
        }
    }
}

fn plan_json(plan: &Plan) -> Value {
    let op_json = |op: &Operation| {
        json!({
            "target": op.target, "op": op.kind.as_str(), "id": op.id, "group": op.group,
            "requests": requests(op).into_iter().map(|(when, m, p, b)| json!({"when": when, "method": m, "path": p, "body": b})).collect::<Vec<_>>(),
            "alternatives": op.alternatives, "manager_subject": op.manager_subject,
        })
    };
    json!({
        "operations": plan.ops.iter().map(op_json).collect::<Vec<_>>(),
        "scheduled": plan.scheduled.iter().map(|s| json!({"due": s.due, "slot": s.slot, "operation": op_json(&s.op)})).collect::<Vec<_>>(),
        "cancelled": plan.cancel.iter().map(|c| json!({"target": c.target, "slot": c.slot})).collect::<Vec<_>>(),
        "errors": plan.errors.iter().map(|e| json!({"target": e.target, "expression": e.expression, "reason": e.reason})).collect::<Vec<_>>(),
    })
}

fn print_op(op: &Operation, indent: &str) {
    let group = op
        .group
        .as_ref()
        .map(|g| format!(" `{g}`"))
        .unwrap_or_default();
    println!(
        "{indent}target `{}`: {}{group}  (operation {})",
        op.target,
        op.kind.as_str(),
        op.id
    );
    for (when, method, path, body) in requests(op) {
        println!("{indent}  [{when}] {method} {path}");
        if let Some(b) = body {
            for line in serde_json::to_string_pretty(&b).expect("json").lines() {
                println!("{indent}      {line}");
            }
        }
    }
    for (attr, alts) in &op.alternatives {
        println!(
            "{indent}  on a uniqueness conflict, `{attr}` is retried as: {}",
            alts.iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(m) = &op.manager_subject {
        println!("{indent}  manager: subject `{m}`, sent as the target's id when bound");
    }
}

fn print_plan(plan: &Plan) {
    if plan.ops.is_empty() && plan.scheduled.is_empty() && plan.errors.is_empty() {
        println!("no operations: no target's lifecycle acts on this event (or it is out of scope)");
    }
    for op in &plan.ops {
        print_op(op, "");
    }
    for s in &plan.scheduled {
        println!("scheduled for {} (slot {}):", s.due, s.slot);
        print_op(&s.op, "  ");
    }
    for c in &plan.cancel {
        println!(
            "cancels the pending `{}` operation on target `{}`",
            c.slot, c.target
        );
    }
    for e in &plan.errors {
        println!("error: {e}");
    }
}

/// `scimflow test`: runs the mapping test cases next to each config (`<config dir>/tests/*.yaml`) and
/// those of every connector (`<connectors>/*/tests/*.yaml` against `<connectors>/*/example.yaml`).
/// Failing cases show a diff; exits 1 if any case fails, 78 if a config is invalid.
pub fn test(configs: &[std::path::PathBuf], connectors: Option<&Path>) -> ExitCode {
    let mut suites: Vec<(std::path::PathBuf, Vec<std::path::PathBuf>)> = configs
        .iter()
        .map(|c| (c.clone(), scimflow_mapping::testcase::discover(c)))
        .collect();
    let mut unrunnable = 0usize;
    if let Some(dir) = connectors {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for c in entries {
            let (example, tests) = (c.join("example.yaml"), c.join("tests"));
            if example.exists() && tests.is_dir() {
                suites.push((example, vec![tests]));
            } else if c.join("profile.yaml").exists() {
                // A connector without its example or test cases would pass unnoticed.
                eprintln!(
                    "error: connector {} has no example.yaml and tests/ to run",
                    c.display()
                );
                unrunnable += 1;
            }
        }
    }
    if suites.is_empty() {
        eprintln!("error: nothing to test: give --config FILE and/or --connectors DIR");
        return ExitCode::FAILURE;
    }
    let (mut passed, mut failed) = (0usize, unrunnable);
    for (config, paths) in suites {
        let (_, mapping) = match load(&config) {
            Ok(x) => x,
            Err(code) => return code,
        };
        let accepts = |t: &str| mapping.accepts_type(t);
        for path in paths {
            let cases = match scimflow_mapping::testcase::load_cases(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    failed += 1;
                    continue;
                }
            };
            for (file, case) in cases {
                let o = scimflow_mapping::testcase::run_case(&mapping, &accepts, &case);
                if o.passed {
                    passed += 1;
                    println!("ok    {} ({})", o.name, file.display());
                } else {
                    failed += 1;
                    println!("FAIL  {} ({})", o.name, file.display());
                    for line in o.diff.lines() {
                        println!("        {line}");
                    }
                }
            }
        }
    }
    println!("mapping tests: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
