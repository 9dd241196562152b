//! The closed set of delivery results.

use serde::{Deserialize, Serialize};

/// Why an attempt failed. This closed set drives retry decisions and is the bounded `error_type`
/// metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Timeouts, connection errors, 408, 5xx: try again later.
    Retryable,
    /// 429 (or a throttling status a profile declares): try again after the delay.
    RateLimited,
    /// 401 (after one refresh) or a credential problem: the target needs attention.
    Auth,
    /// 409 uniqueness and similar: resolve by lookup and convergence.
    Conflict,
    /// 400 schema errors, 403, and anything retrying cannot fix: dead letter.
    Permanent,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Auth => "auth",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Permanent => "permanent",
        }
    }

    /// Whether another attempt may succeed without anyone changing anything.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorClass::Retryable | ErrorClass::RateLimited)
    }
}

/// The terminal result of one operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The target confirmed the change.
    Applied,
    /// Nothing needed doing (already in the desired state, or nothing to deactivate/delete).
    NoOp,
    /// Given up on; kept as a dead letter.
    Failed(ErrorClass),
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::NoOp => "noop",
            Outcome::Failed(_) => "failed",
        }
    }
}
