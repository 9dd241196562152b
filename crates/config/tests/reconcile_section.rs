//! A target's `reconcile:` section: defaults, bounds, unknown keys.

use scimflow_config::{load_str, ReconcileConfig};

fn cfg(section: &str) -> Result<scimflow_config::Config, scimflow_config::Diagnostics> {
    let yaml = format!(
        "version: 1\ntargets:\n  app:\n    base_url: https://app.example/scim/v2\n    lifecycle:\n      hr.worker.hired: upsert\n    user:\n      externalId: event.subject\n      userName: event.data.email\n{section}"
    );
    load_str(&yaml, "c.yaml", &|_| None)
}

#[test]
fn defaults_without_a_section() {
    let c = cfg("").unwrap();
    assert_eq!(c.targets[0].reconcile.page_size, 100);
    assert!(!c.targets[0].reconcile.report_unmanaged);
    assert_eq!(
        c.targets[0].reconcile.page_size,
        ReconcileConfig::default().page_size
    );
}

#[test]
fn page_size_and_report_unmanaged_are_read() {
    let c = cfg("    reconcile: { page_size: 250, report_unmanaged: true }\n").unwrap();
    assert_eq!(c.targets[0].reconcile.page_size, 250);
    assert!(c.targets[0].reconcile.report_unmanaged);
}

#[test]
fn page_size_out_of_bounds_and_unknown_keys_are_located() {
    let e = cfg("    reconcile:\n      page_size: 0\n      pagesize: 5\n").unwrap_err();
    let messages: Vec<String> =
        e.0.iter()
            .map(|d| format!("{}: {}", d.line, d.message))
            .collect();
    assert!(
        messages.iter().any(|m| m.starts_with("11: ")
            && m.contains("reconcile.page_size must be between 1 and 1000")),
        "{messages:?}"
    );
    assert!(
        e.0.iter()
            .any(|d| d.line == 12 && d.hint.as_deref().is_some_and(|h| h.contains("page_size"))),
        "{messages:?}"
    );
    assert!(cfg("    reconcile: { page_size: 1001 }\n").is_err());
}
