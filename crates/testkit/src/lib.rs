//! scimflow-testkit: dev-only helpers for scimflow's tests.
//!
//! - [`server`]: an in-process SCIM 2.0 server (axum/hyper on loopback, in memory) with behaviour
//!   knobs that mimic real targets and scripted faults (429 + `Retry-After`, 5xx, delays,
//!   connection resets, truncated/invalid JSON, committed-then-500). It is the target of the
//!   in-process test tier and of throughput benchmarks.
//! - [`oauth`]: an OAuth2 client-credentials token endpoint (RFC 6749 §4.4) issuing short-lived
//!   tokens, with scripted failures; its [`oauth::TokenEndpoint::check`] makes the SCIM server
//!   accept only the tokens it issued that have not expired.
//! - [`pki`]: a throwaway CA with server and client certificates, for HTTPS and mTLS tests.
//! - [`procs`]: real external components started as child processes on loopback — a Tansu
//!   Kafka-protocol broker and the scim2-server SCIM server — installed by
//!   `scripts/install-test-deps.sh`.
//!
//! Nothing here is for production: `anyhow` and panics on misuse are fine in this crate.

pub mod oauth;
pub mod pki;
pub mod procs;
pub mod server;

pub use server::{
    Fault, FaultRule, PatchAnswer, RecordedRequest, RetryAfter, RetryAfterStyle, ServerOptions,
    TestServer, TlsOptions, TokenCheck,
};
