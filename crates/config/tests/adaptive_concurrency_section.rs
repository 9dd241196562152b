//! A target's `adaptive_concurrency:` section: on by default, defaults relative to `concurrency`,
//! bounds located at their line, `enabled: false`.

use scimflow_config::{load_str, AdaptiveConcurrency};

fn cfg(extra: &str) -> Result<scimflow_config::Config, scimflow_config::Diagnostics> {
    let yaml = format!(
        "version: 1\ntargets:\n  app:\n    base_url: https://app.example/scim/v2\n    lifecycle:\n      hr.worker.hired: upsert\n    user:\n      externalId: event.subject\n      userName: event.data.email\n{extra}"
    );
    load_str(&yaml, "c.yaml", &|_| None)
}

fn messages(e: &scimflow_config::Diagnostics) -> Vec<String> {
    e.0.iter()
        .map(|d| format!("{}: {}", d.line, d.message))
        .collect()
}

#[test]
fn on_by_default_starting_at_four_or_the_concurrency() {
    let c = cfg("").unwrap();
    assert_eq!(
        c.targets[0].adaptive_concurrency,
        Some(AdaptiveConcurrency {
            initial: 4,
            min: 1,
            decrease_factor: 0.5,
            latency_factor: 2.0,
        })
    );
    let c = cfg("    concurrency: 2\n").unwrap();
    assert_eq!(c.targets[0].adaptive_concurrency.unwrap().initial, 2);
    let c = cfg("    concurrency: 64\n").unwrap();
    assert_eq!(c.targets[0].adaptive_concurrency.unwrap().initial, 4);
}

#[test]
fn every_key_is_read_and_enabled_false_turns_it_off() {
    let c = cfg(
        "    concurrency: 32\n    adaptive_concurrency: { initial: 8, min: 2, decrease_factor: 0.7, latency_factor: 1.5 }\n",
    )
    .unwrap();
    assert_eq!(
        c.targets[0].adaptive_concurrency,
        Some(AdaptiveConcurrency {
            initial: 8,
            min: 2,
            decrease_factor: 0.7,
            latency_factor: 1.5,
        })
    );
    let c = cfg("    adaptive_concurrency: { enabled: false }\n").unwrap();
    assert_eq!(c.targets[0].adaptive_concurrency, None);
}

#[test]
fn a_minimum_above_the_default_start_raises_the_start() {
    let c = cfg("    concurrency: 16\n    adaptive_concurrency: { min: 6 }\n").unwrap();
    let a = c.targets[0].adaptive_concurrency.unwrap();
    assert_eq!((a.min, a.initial), (6, 6));
}

#[test]
fn out_of_bounds_values_and_unknown_keys_are_located() {
    let e = cfg(
        "    concurrency: 8\n    adaptive_concurrency:\n      initial: 9\n      min: 0\n      decrease_factor: 1.0\n      latency_factor: 0.9\n      maximum: 3\n",
    )
    .unwrap_err();
    let m = messages(&e);
    for (line, want) in [
        (
            12,
            "adaptive_concurrency.initial must be between min (1) and the target's concurrency (8)",
        ),
        (
            13,
            "adaptive_concurrency.min must be between 1 and the target's concurrency (8)",
        ),
        (
            14,
            "adaptive_concurrency.decrease_factor must be above 0 and below 1",
        ),
        (15, "adaptive_concurrency.latency_factor must be above 1"),
        (16, "unknown key `maximum` in `adaptive_concurrency`"),
    ] {
        assert!(
            m.iter()
                .any(|x| x.starts_with(&format!("{line}: ")) && x.contains(want)),
            "missing line {line} `{want}` in {m:?}"
        );
    }
}
