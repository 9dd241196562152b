//! Secret references. Secrets are never literals in the config: a secret field holds
//! `{ env: NAME }` or `{ file: PATH }`, resolved when needed (files are re-read on every resolve, so a
//! rotated file takes effect without a restart).

use std::fmt;
use std::path::PathBuf;

/// Where a secret lives.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a secret could not be read. Names the reference, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret {0} is not set (environment variable missing or empty)")]
    EnvMissing(SecretRef),
    #[error("secret {reference} cannot be read: {reason}")]
    File {
        reference: SecretRef,
        reason: String,
    },
    #[error("secret {0} is empty")]
    Empty(SecretRef),
}

impl SecretRef {
    /// Reads the secret now. Trailing newlines of files are trimmed.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        let value = match self {
            SecretRef::Env(name) => std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| SecretError::EnvMissing(self.clone()))?,
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| SecretError::File {
                    reference: self.clone(),
                    reason: e.kind().to_string(),
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        };
        if value.trim().is_empty() {
            return Err(SecretError::Empty(self.clone()));
        }
        Ok(Secret(value))
    }
}

/// A resolved secret. `Debug` and `Display` are redacted; use [`Secret::expose`] at the point of use.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value. Call only where it is sent (an Authorization header), never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
