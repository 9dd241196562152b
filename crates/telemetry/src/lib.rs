//! Telemetry setup: structured logs (human or JSON) through `tracing-subscriber`, Prometheus
//! metrics ([`metrics`]), and OpenTelemetry traces over OTLP ([`otlp`]).
//!
//! Log lines never carry secrets (the types that hold them redact `Debug`/`Display`) nor attribute
//! values; control characters in logged strings are escaped by the formatters. JSON lines carry
//! the fields of the span they were logged in (target, operation, event id, trace id).

pub mod metrics;
pub mod otlp;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

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

/// Installs the global subscriber (call once, from `main`; inside the tokio runtime when spans
/// should be exported, see [`otlp`]). The level comes from `SCIMFLOW_LOG` (`RUST_LOG` syntax),
/// default `info`.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("SCIMFLOW_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        // Colours only on a terminal: log files and collectors get plain text.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let (otel, otel_error) = if otlp::configured() {
        match otlp::layer() {
            Ok(l) => (Some(l), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    let exporting = otel.is_some();
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init();
    if let Some(e) = otel_error {
        tracing::error!(error = %e, "OpenTelemetry export is configured but cannot start");
    } else if exporting {
        tracing::info!("OpenTelemetry spans are exported over OTLP/HTTP");
    }
}
