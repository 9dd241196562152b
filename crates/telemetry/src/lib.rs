//! Telemetry setup: structured logs (human or JSON) through `tracing-subscriber`.
//!
//! Log lines never carry secrets (the types that hold them redact `Debug`/`Display`) nor attribute
//! values; control characters in logged strings are escaped by the formatters.

pub mod metrics;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, for terminals.
    Text,
    /// One JSON object per line, for collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format `{other}` (expected text or json)"
            )),
        }
    }
}

/// Installs the global subscriber (call once, from `main`). The level comes from `SCIMFLOW_LOG`
/// (`RUST_LOG` syntax), default `info`.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("SCIMFLOW_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        // Colours only on a terminal: log files and collectors get plain text.
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
