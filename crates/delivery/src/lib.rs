//! Delivery: how operations reach targets.
//!
//! * [`pool::TargetPool`] — one per target: per-subject lanes over the durable queue.
//! * [`exec::Executor`] — the per-target stack (retry → rate limit → concurrency → timeout → client)
//!   and the idempotent create/lookup/bind/converge logic.
//! * [`client::ScimClient`] — HTTP with auth, no redirects, capped bodies.
//! * [`auth`] — bearer and OAuth2 client credentials (cached, single-flight refresh, 401 replay).
//! * [`tls`] — client certificates (mTLS) and private CAs.
//! * [`classify`] — status and `Retry-After` handling into the closed error classes.
//! * [`adaptive::ConcurrencyLimit`] — the per-target limit on requests in flight, learned by AIMD
//!   from 429s, timeouts and latency.
//! * [`bulk`] — writes of concurrent operations sent together as SCIM bulk requests.
//! * [`breaker::Breaker`] — stops sending to a target that fails every request, probes, recovers.
//! * [`guard::DeletionGuard`] — stages mass deprovisioning for an operator's approval.
//! * [`retry`] — the retry budget and the parking of operations that wait long for a next try.

pub mod adaptive;
pub mod auth;
pub mod breaker;
pub mod bulk;
pub mod classify;
pub mod client;
pub mod exec;
pub mod guard;
pub mod pool;
pub mod retry;
pub mod tls;

pub use exec::{ExecReport, Executor};
pub use guard::DeletionGuard;
pub use pool::{PoolHandle, TargetPool};
