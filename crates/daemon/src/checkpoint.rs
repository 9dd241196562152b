//! Signed checkpoints of the audit chain (`audit.signing_key`).
//!
//! The checkpointer signs the chain head `{seq, hash, time, key_id}` with the operator's Ed25519
//! key once `checkpoint_records` records were appended since the last checkpoint, or once
//! `checkpoint_interval` passed with at least one new record, and a last time at shutdown after
//! delivery has drained. Checkpoints go through the store's single writer like everything else
//! (keyspace `ckpt:`); the key itself never reaches the store, the logs or an error message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use scimflow_config::{AuditConfig, SecretRef};
use scimflow_core::audit::{key_id, SigningKey, VerifyingKey};
use scimflow_core::store::{Mutation, Store};
use scimflow_core::AuditCheckpoint;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Reads the signing key a secret reference points at: PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`,
/// as written by `scimflow audit keygen` or `openssl genpkey -algorithm ed25519`).
pub fn load_signing_key(r: &SecretRef) -> anyhow::Result<SigningKey> {
    let secret = r.resolve()?;
    SigningKey::from_pkcs8_pem(secret.expose().trim()).map_err(|_| {
        // The parser's message is not echoed: it could quote part of the key material.
        anyhow::anyhow!(
            "the audit signing key {r} is not an Ed25519 private key in PKCS#8 PEM \
             (`-----BEGIN PRIVATE KEY-----`); create one with `scimflow audit keygen`"
        )
    })
}

/// Reads a public key file: SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
pub fn load_verifying_key(path: &std::path::Path) -> anyhow::Result<VerifyingKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the public key {}", path.display()))?;
    VerifyingKey::from_public_key_pem(text.trim()).map_err(|e| {
        anyhow::anyhow!(
            "{} is not an Ed25519 public key in SPKI PEM (`-----BEGIN PUBLIC KEY-----`): {e}",
            path.display()
        )
    })
}

/// A new key pair as PEM texts: (private PKCS#8, public SPKI).
pub fn generate() -> anyhow::Result<(String, String, String)> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the private key failed: {e}"))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the public key failed: {e}"))?;
    Ok((private.to_string(), public, key_id(&key.verifying_key())))
}

/// Signs checkpoints of one store's audit chain.
pub struct Checkpointer {
    store: Arc<dyn Store>,
    key: SigningKey,
    every_records: u64,
    every: Duration,
    /// The last record covered by a checkpoint, and when it was signed.
    last: Mutex<(u64, Instant)>,
    /// The same sequence number, for metrics.
    signed: AtomicU64,
}

impl Checkpointer {
    /// Starts after the newest stored checkpoint.
    pub fn new(
        store: Arc<dyn Store>,
        key: SigningKey,
        config: &AuditConfig,
    ) -> anyhow::Result<Checkpointer> {
        let mut newest = 0;
        let mut after = None;
        loop {
            let page = store.audit_checkpoints(after, 1024)?;
            let Some(last) = page.last() else { break };
            newest = newest.max(last.seq);
            after = Some(last.seq);
        }
        Ok(Checkpointer {
            store,
            key,
            every_records: config.checkpoint_records,
            every: config.checkpoint_interval,
            last: Mutex::new((newest, Instant::now())),
            signed: AtomicU64::new(newest),
        })
    }

    /// The record the newest checkpoint covers (0: none yet).
    pub fn signed_seq(&self) -> u64 {
        self.signed.load(Ordering::Relaxed)
    }

    /// The key id checkpoints carry.
    pub fn key_id(&self) -> String {
        key_id(&self.key.verifying_key())
    }

    /// Signs the chain head if it is due (or `force` and anything is unsigned). Returns the
    /// sequence number it covered.
    pub async fn tick(&self, force: bool) -> anyhow::Result<Option<u64>> {
        let mut last = self.last.lock().await;
        let Some(head) = self.store.audit_last()? else {
            return Ok(None);
        };
        let fresh = head.seq.saturating_sub(last.0);
        if fresh == 0 {
            return Ok(None);
        }
        if !force && fresh < self.every_records && last.1.elapsed() < self.every {
            return Ok(None);
        }
        let cp = AuditCheckpoint::sign(head.seq, &head.hash, chrono::Utc::now(), &self.key);
        self.store
            .commit(vec![Mutation::AuditCheckpoint(cp)])
            .await
            .context("storing an audit checkpoint failed")?;
        *last = (head.seq, Instant::now());
        self.signed.store(head.seq, Ordering::Relaxed);
        tracing::debug!(seq = head.seq, "audit checkpoint signed");
        Ok(Some(head.seq))
    }

    /// Signs while running; returns at `shutdown` (the caller signs the last head with
    /// `tick(true)` once delivery has drained).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        // Often enough to notice `checkpoint_records` new records soon after they were written.
        let period = self.every.min(Duration::from_secs(1));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if let Err(e) = self.tick(false).await {
                tracing::error!(
                    error = format!("{e:#}"),
                    "audit checkpoint failed; will retry"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_pem_and_sign_verifiable_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public, id) = generate().unwrap();
        assert!(
            private.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{private}"
        );
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
        let (kp, pp) = (dir.path().join("k.pem"), dir.path().join("k.pub.pem"));
        std::fs::write(&kp, &private).unwrap();
        std::fs::write(&pp, &public).unwrap();
        let sk = load_signing_key(&SecretRef::File(kp)).unwrap();
        let vk = load_verifying_key(&pp).unwrap();
        assert_eq!(key_id(&vk), id);
        let cp = AuditCheckpoint::sign(7, "abc", chrono::Utc::now(), &sk);
        assert_eq!(cp.verify(&vk), Ok(()));
        // Two generated keys differ.
        assert_ne!(generate().unwrap().2, id);
    }

    #[test]
    fn a_bad_key_file_is_an_error_that_does_not_echo_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        std::fs::write(
            &p,
            "-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = format!("{:#}", load_signing_key(&SecretRef::File(p)).unwrap_err());
        assert!(e.contains("PKCS#8"), "{e}");
        assert!(!e.contains("TOPSECRET"), "{e}");
        let e = format!(
            "{:#}",
            load_signing_key(&SecretRef::File(dir.path().join("none"))).unwrap_err()
        );
        assert!(e.contains("cannot be read"), "{e}");
    }
}
