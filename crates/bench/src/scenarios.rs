//! The three scenarios; each returns its one-line summary.

pub mod adaptive;
pub mod backlog;
pub mod consume;
pub mod latency;
pub mod rate;
pub mod throughput;
