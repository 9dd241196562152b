//! The tamper-evident audit log on a real on-disk store of each engine. The real binary provisions
//! into the real scim2-server and signs checkpoints with a key made by `scimflow audit keygen`; then
//! the stored bytes are edited the way someone with disk access could (bypassing the writer), and
//! `scimflow audit verify` must fail and name the first bad record: one flipped byte, a removed
//! record, two swapped records, a truncated tail (with the counter rewound too), a forged
//! checkpoint, and a record rewritten with the whole chain after it recomputed. The untouched log
//! verifies; `audit query` filters.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use scimflow_core::audit::SigningKey;
use scimflow_core::{AuditCheckpoint, AuditRecord};
use scimflow_e2e::*;
use scimflow_store::tamper::{self, Keyspace, RawEdit};
use scimflow_store::Engine;

const INGEST_TOKEN: &str = "ingest-test-token";

/// `scimflow ARGS --data-dir DATA`: (success, stdout, stderr).
fn scimflow(args: &[&str], data: &Path) -> (bool, String, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--data-dir", data.to_str().unwrap()]);
    run(&all, &[])
}

/// `scimflow ARGS` with `env`: (success, stdout, stderr).
fn run(args: &[&str], env: &[(&str, String)]) -> (bool, String, String) {
    let out = Command::new(scimflow_bin())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("SCIMFLOW_CONFIG")
        .output()
        .expect("scimflow runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `audit verify --json` on `data`: (intact, the JSON result).
fn verify(data: &Path, public: &Path) -> (bool, Value) {
    let (ok, out, err) = scimflow(
        &[
            "audit",
            "verify",
            "--json",
            "--public-key",
            public.to_str().unwrap(),
        ],
        data,
    );
    let v: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {out}\n{err}"));
    assert_eq!(v["intact"], ok, "{v}");
    (ok, v)
}

/// The value of an unlabelled gauge in a scrape (0 when absent).
fn gauge(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A fresh copy of the pristine data directory, edited with `edits`.
fn tampered(engine: Engine, pristine: &Path, name: &str, edits: Vec<RawEdit>) -> PathBuf {
    let dir = pristine.with_file_name(format!("data-{name}"));
    copy_dir(pristine, &dir);
    tamper::apply(engine, &dir, edits).expect("raw edit");
    dir
}

fn record_bytes(engine: Engine, data: &Path, seq: u64) -> Vec<u8> {
    tamper::get(engine, data, Keyspace::Audit, seq)
        .unwrap()
        .unwrap_or_else(|| panic!("record #{seq} is stored"))
}

fn put(space: Keyspace, seq: u64, value: Vec<u8>) -> RawEdit {
    RawEdit::Put { space, seq, value }
}

fn assert_break(engine: Engine, v: &Value, seq: u64, kind: &str, case: &str) {
    assert_eq!(
        (v["seq"].as_u64(), v["kind"].as_str()),
        (Some(seq), Some(kind)),
        "{engine:?} {case}: {v}"
    );
}

async fn tamper_suite(engine: Engine) {
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit-key.pem");
    let public = dir.path().join("audit-key.pem.pub");

    // keygen: a private key only its owner can read, and its public half.
    let (ok, out, err) = run(&["audit", "keygen", "--out", key.to_str().unwrap()], &[]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("key id ed25519:"), "{out}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "private key mode {mode:o}");
    assert!(std::fs::read_to_string(&public)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let (ok, _, err) = run(&["audit", "keygen", "--out", key.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("not overwriting"), "{err}");

    // The quickstart config, on this engine, with checkpoints every 25 records.
    let quickstart = std::fs::read_to_string(repo_root().join("examples/quickstart.yaml")).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "{quickstart}\nstore: {{ engine: {} }}\naudit:\n  signing_key: {{ file: {} }}\n  checkpoint_records: 25\n",
            engine.as_str(),
            key.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let daemon = Daemon::start(&config, &data, &example_env(&scim, INGEST_TOKEN)).unwrap();
    let scenario = Scenario::hr(40, 120, 11);
    let http = reqwest::Client::new();
    // Three batches of 40 events (one audit record each); after each, the checkpointer signs
    // the new head (40 ≥ checkpoint_records), which /metrics shows.
    for (i, chunk) in scenario.events.chunks(40).enumerate() {
        let resp = http
            .post(format!("{}/api/v1/events", daemon.url))
            .bearer_auth(INGEST_TOKEN)
            .json(&chunk)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let want = 40 * (i as i64 + 1);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let text = http
                .get(format!("{}/metrics", daemon.url))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let (records, signed) = (
                gauge(&text, "scimflow_audit_records"),
                gauge(&text, "scimflow_audit_checkpoint_seq"),
            );
            if records == want && signed == want {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "batch {i}: audit records {records}, checkpoint at {signed}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(120))
        .await
        .unwrap();
    daemon.stop().unwrap();

    // Intact: every record chained, checkpoints signed along the way and one at shutdown.
    let (ok, v) = verify(&data, &public);
    assert!(ok, "{engine:?}: the untouched log must verify: {v}");
    let n = v["records"].as_u64().unwrap();
    assert!(n >= 120, "{v}");
    assert!(v["checkpoints"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(
        v["unsigned_tail"], 0,
        "the shutdown checkpoint covers the head: {v}"
    );
    // The text form says the same.
    let (ok, out, _) = scimflow(
        &["audit", "verify", "--public-key", public.to_str().unwrap()],
        &data,
    );
    assert!(
        ok && out.contains(&format!("audit chain intact: {n} records")),
        "{out}"
    );

    // The public key can also come from the config's signing key.
    let (ok, out, err) = run(
        &[
            "audit",
            "verify",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &example_env(&scim, INGEST_TOKEN),
    );
    assert!(ok, "{out}{err}");
    // Without any key, checkpoints cannot be trusted: verify refuses.
    let (ok, _, err) = scimflow(&["audit", "verify"], &data);
    assert!(!ok && err.contains("no public key"), "{err}");

    // query: by subject, as JSON lines and as a table.
    let subject = scenario.expected.keys().next().unwrap().clone();
    let (ok, out, err) = scimflow(&["audit", "query", "--subject", &subject, "--json"], &data);
    assert!(ok, "{err}");
    let rows = json_lines(&out);
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r["subject"] == subject.as_str()),
        "{out}"
    );
    let (ok, out, _) = scimflow(
        &[
            "audit",
            "query",
            "--subject",
            &subject,
            "--outcome",
            "applied",
        ],
        &data,
    );
    assert!(
        ok && out.starts_with("SEQ") && out.contains(&subject),
        "{out}"
    );
    let (_, out, _) = scimflow(&["audit", "export", "--target", "no-such-target"], &data);
    assert!(out.is_empty(), "{out}");

    let k = 10;
    // One flipped byte inside record k's subject.
    let mut bytes = record_bytes(engine, &data, k);
    let at = String::from_utf8_lossy(&bytes)
        .find("\"subject\":\"")
        .unwrap()
        + 11;
    bytes[at] ^= 0x01;
    let d = tampered(engine, &data, "flip", vec![put(Keyspace::Audit, k, bytes)]);
    let (ok, v) = verify(&d, &public);
    assert!(!ok);
    assert_break(engine, &v, k, "changed", "flipped byte");

    // Record k removed.
    let d = tampered(
        engine,
        &data,
        "remove",
        vec![RawEdit::Remove {
            space: Keyspace::Audit,
            seq: k,
        }],
    );
    let (_, v) = verify(&d, &public);
    assert_break(engine, &v, k, "removed", "removed record");

    // Records k and k+1 swapped.
    let (a, b) = (
        record_bytes(engine, &data, k),
        record_bytes(engine, &data, k + 1),
    );
    let d = tampered(
        engine,
        &data,
        "swap",
        vec![put(Keyspace::Audit, k, b), put(Keyspace::Audit, k + 1, a)],
    );
    let (_, v) = verify(&d, &public);
    assert_break(engine, &v, k, "reordered", "swapped records");

    // The last 30 records dropped and the counter rewound to match: the shutdown checkpoint
    // still says how far the log went.
    let cut = n - 29;
    let mut edits: Vec<RawEdit> = (cut..=n)
        .map(|seq| RawEdit::Remove {
            space: Keyspace::Audit,
            seq,
        })
        .collect();
    edits.push(put(
        Keyspace::AuditCounter,
        0,
        (cut - 1).to_be_bytes().to_vec(),
    ));
    let d = tampered(engine, &data, "truncate", edits);
    let (_, v) = verify(&d, &public);
    assert_break(engine, &v, cut, "truncated", "truncated tail");

    // The checkpoints, as auditors see them.
    let (ok, out, err) = scimflow(&["audit", "checkpoints"], &data);
    assert!(ok, "{err}");
    let cps: Vec<AuditCheckpoint> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(cps.len() >= 2 && cps.last().unwrap().seq == n, "{out}");
    let (c1, c2) = (cps[0].clone(), cps[1].clone());

    // A checkpoint re-signed by another key that claims to be the real one.
    let mut forged = AuditCheckpoint::sign(
        c1.seq,
        &"0".repeat(64),
        c1.time,
        &SigningKey::from_bytes(&[7; 32]),
    );
    forged.key_id = c1.key_id.clone();
    let d = tampered(
        engine,
        &data,
        "forge",
        vec![put(
            Keyspace::Checkpoint,
            c1.seq,
            serde_json::to_vec(&forged).unwrap(),
        )],
    );
    let (_, v) = verify(&d, &public);
    assert_break(engine, &v, c1.seq, "bad checkpoint", "forged checkpoint");

    // The record after the first checkpoint rewritten and every later hash recomputed: the chain
    // is consistent again, but the next signed checkpoint no longer matches.
    let first = c1.seq + 1;
    let mut edits = Vec::new();
    let mut prev = c1.hash.clone();
    for seq in first..=n {
        let r: AuditRecord = serde_json::from_slice(&record_bytes(engine, &data, seq)).unwrap();
        let mut e = r.entry;
        if seq == first {
            e.outcome = "noop".into();
        }
        let r = AuditRecord::chain(seq, e, &prev);
        prev = r.hash.clone();
        edits.push(put(Keyspace::Audit, seq, serde_json::to_vec(&r).unwrap()));
    }
    let d = tampered(engine, &data, "rechain", edits);
    let (_, v) = verify(&d, &public);
    assert_break(engine, &v, c2.seq, "changed", "rewritten and re-chained");
    assert!(
        v["reason"].as_str().unwrap().contains("rewritten"),
        "{engine:?}: {v}"
    );

    // The pristine copy is untouched by all of this.
    assert!(verify(&data, &public).0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_audit_log_detects_every_kind_of_tampering() {
    tamper_suite(Engine::Sled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_audit_log_detects_every_kind_of_tampering() {
    tamper_suite(Engine::Redb).await;
}
