//! scimflow configuration: YAML loading with line-precise diagnostics, pure validation that reports
//! every error at once, and secret references.
//!
//! Stages (as in Vector): [`load`] reads the file, substitutes `${VAR}` / `${VAR:-default}` from the
//! environment, parses it into the raw model ([`model`]), then [`validate`] checks it and yields a
//! [`Config`]. Nothing here performs network I/O; resolving secrets reads env vars and files only
//! when asked ([`SecretRef::resolve`]).
//!
//! Invariants: secret values never appear in a [`Diagnostic`], in `Debug` output, or in errors.

mod diag;
mod interpolate;
pub mod model;
pub mod profile;
mod secret;
mod validate;

pub use diag::{Diagnostic, Diagnostics};
pub use model::*;
pub use profile::ConnectorProfile;
pub use secret::{Secret, SecretError, SecretRef};
pub use validate::{
    closest, connector_file_path, validate, validate_all, validate_all_with, ConnectorFiles, Source,
};

use std::path::Path;

/// Exit code for configuration errors (EX_CONFIG from sysexits.h).
pub const EXIT_CONFIG: i32 = 78;

/// Reads, interpolates, parses and validates the config at `path`.
pub fn load(path: &Path) -> Result<Config, Diagnostics> {
    match load_all(path) {
        (Some(c), d) if d.is_empty() => Ok(c),
        (_, d) => Err(Diagnostics(d)),
    }
}

/// Like [`load`], from text; `env` looks up variables for `${VAR}` substitution. Included files are
/// read relative to the directory of `file`.
pub fn load_str(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Diagnostics> {
    match load_all_str(text, file, env) {
        (Some(c), d) if d.is_empty() => Ok(c),
        (_, d) => Err(Diagnostics(d)),
    }
}

/// Reads and validates the config at `path` as far as possible: the best-effort configuration (when
/// the YAML could be parsed at all) and every problem found, so that `scimflow check` can compile
/// the mappings too and report everything in one run.
pub fn load_all(path: &Path) -> (Option<Config>, Vec<Diagnostic>) {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_all_str(&text, &file, &|k| std::env::var(k).ok()),
        Err(e) => (
            None,
            vec![Diagnostic::file_level(
                &file,
                format!("cannot read config file: {e}"),
            )],
        ),
    }
}

/// [`load_all`] from text.
pub fn load_all_str(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Option<Config>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let interpolated = interpolate::interpolate(text, file, env, &mut diags);
    if !diags.is_empty() {
        // Unset variables are the root cause; what they would break downstream is noise.
        return (None, diags);
    }
    let raw: RawConfig = match serde_saphyr::from_str(&interpolated) {
        Ok(raw) => raw,
        Err(e) => return (None, vec![Diagnostic::from_yaml(file, &e)]),
    };
    let main = Source {
        file: file.to_owned(),
        text: interpolated,
    };
    let mut hashed = text.to_owned();
    let mut fragments = Vec::new();
    let mut files = vec![std::path::PathBuf::from(file)];
    let base = std::path::Path::new(file)
        .parent()
        .unwrap_or(std::path::Path::new("."));
    for inc in &raw.include {
        let path = base.join(&inc.value);
        let name = path.display().to_string();
        files.push(path.clone());
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                diags.push(Diagnostic::at(
                    file,
                    inc.referenced,
                    format!("cannot read included file `{}`: {e}", inc.value),
                ));
                continue;
            }
        };
        hashed.push('\0');
        hashed.push_str(&text);
        let interpolated = interpolate::interpolate(&text, &name, env, &mut diags);
        match serde_saphyr::from_str::<RawFragment>(&interpolated) {
            Ok(f) => fragments.push((
                f,
                Source {
                    file: name,
                    text: interpolated,
                },
            )),
            Err(e) => diags.push(Diagnostic::from_yaml(&name, &e)),
        }
    }
    // Custom connector profiles (`connector_file:`) are read here, like includes, so validation
    // reads nothing; their text is part of the mapping version and they are watched for reload.
    let mut connector_files = ConnectorFiles::new();
    let named = raw.targets.values().map(|t| (t, main.file.as_str())).chain(
        fragments
            .iter()
            .flat_map(|(f, s)| f.targets.values().map(move |t| (t, s.file.as_str()))),
    );
    for (t, in_file) in named {
        let Some(f) = &t.connector_file else { continue };
        let path = validate::connector_file_path(in_file, &f.value);
        if connector_files.contains_key(&path) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string());
        if let Ok(text) = &text {
            hashed.push('\0');
            hashed.push_str(text);
            files.push(path.clone());
        }
        connector_files.insert(path, text);
    }
    let (mut config, more) = validate::validate_all_with(
        raw,
        &main,
        fragments,
        content_hash(&hashed),
        &connector_files,
    );
    config.files = files;
    diags.extend(more);
    (Some(config), diags)
}

/// Content hash of the config text: the mapping version recorded on every operation and audit record.
pub fn content_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(text.as_bytes());
    hex::encode(&h[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"version: 1
listen: 127.0.0.1:8080
ingest:
  token: { env: INGEST_TOKEN }
targets:
  demo:
    base_url: ${BASE}
    allow_http: true
    auth: { type: bearer, token: { env: SCIM_TOKEN } }
    lifecycle:
      hr.worker.hired: upsert
      hr.worker.terminated: deactivate
      hr.worker.leave_started: ignore
    user:
      externalId: event.data.employeeId
      userName: lower(event.data.email)
      active: true
"#;

    fn env(k: &str) -> Option<String> {
        (k == "BASE").then(|| "http://127.0.0.1:9/scim/v2/".to_owned())
    }

    #[test]
    fn loads_a_good_config() {
        let c = load_str(GOOD, "c.yaml", &env).unwrap();
        assert_eq!(c.targets.len(), 1);
        let t = &c.targets[0];
        assert_eq!(t.base_url, "http://127.0.0.1:9/scim/v2");
        assert_eq!(t.matching, vec!["externalId", "userName"]);
        assert_eq!(t.user.len(), 3);
        let active = t.user.iter().find(|u| u.path == "active").unwrap();
        assert_eq!(
            active.value,
            AttributeValue::Literal(serde_json::Value::Bool(true))
        );
        let user_name = t.user.iter().find(|u| u.path == "userName").unwrap();
        let AttributeValue::Expr(e) = &user_name.value else {
            panic!()
        };
        assert_eq!((e.line, e.column), (16, 17));
        assert!(c.known_event_types().contains("hr.worker.hired"));
        assert_eq!(c.version, content_hash(GOOD));
    }

    #[test]
    fn reports_every_error_with_position_and_never_the_secret() {
        let bad = GOOD
            .replace("{ env: SCIM_TOKEN }", "\"s3cr3t-value\"")
            .replace("deactivate", "obliterate")
            .replace("allow_http: true", "allow_http: false");
        let e = load_str(&bad, "c.yaml", &env).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("s3cr3t-value"), "{text}");
        assert_eq!(e.0.len(), 3, "{text}");
        assert!(
            text.contains("c.yaml:7:15: error: target `demo`: base_url must use https"),
            "{text}"
        );
        assert!(
            text.contains("c.yaml:9:34: error: `auth.token` holds a literal secret"),
            "{text}"
        );
        assert!(
            text.contains("c.yaml:12:29: error: unknown lifecycle action `obliterate`"),
            "{text}"
        );
    }

    #[test]
    fn unknown_keys_and_missing_env_are_located() {
        let bad = GOOD.replace("listen:", "lisen:");
        let e = load_str(&bad, "c.yaml", &env).unwrap_err();
        assert_eq!(e.0[0].line, 2, "{e}");
        assert!(e.0[0].message.contains("lisen"), "{e}");
        let e = load_str(GOOD, "c.yaml", &|_| None).unwrap_err();
        assert!(
            e.to_string()
                .contains("c.yaml:7:15: error: environment variable `BASE` is not set"),
            "{e}"
        );
    }
}
