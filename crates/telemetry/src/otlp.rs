//! OpenTelemetry traces over OTLP/HTTP (protobuf), when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set — the standard OpenTelemetry environment, which
//! also configures headers, timeout and batching (`OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_BSP_SCHEDULE_DELAY`, …).
//!
//! Spans come from `tracing`: every span the daemon opens (consume, deliver, attempt, SCIM request)
//! becomes an OpenTelemetry span through `tracing-opentelemetry`. [`set_parent`] puts a span into
//! an existing W3C trace (the event's `traceparent`, or the context the pipeline stored with an
//! operation); [`current_traceparent`] is the context to carry on (into a queued operation, into
//! the `traceparent` header of a SCIM request). Without an endpoint nothing is exported and
//! [`current_traceparent`] returns `None`.

use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Whether OTLP export is configured in the environment.
pub fn configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The HTTP client the exporter uses: the workspace's reqwest, run on the daemon's tokio runtime
/// (the batch processor exports from its own thread).
#[derive(Debug, Clone)]
struct Client {
    http: reqwest::Client,
    rt: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Client {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let http = self.http.clone();
        let (parts, body) = request.into_parts();
        let task = async move {
            let mut req = http.request(parts.method, parts.uri.to_string()).body(body);
            for (k, v) in &parts.headers {
                req = req.header(k, v);
            }
            let resp = req.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?;
            let mut out = http::Response::new(body);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok::<_, reqwest::Error>(out)
        };
        Ok(self.rt.spawn(task).await??)
    }
}

/// Builds the exporter and provider; call inside the tokio runtime. The layer it returns turns
/// `tracing` spans into OpenTelemetry spans.
pub(crate) fn layer<S>() -> Result<impl tracing_subscriber::Layer<S>, String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let rt = tokio::runtime::Handle::try_current()
        .map_err(|_| "OTLP export needs the tokio runtime".to_owned())?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Client { http, rt })
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("scimflow")
                .build(),
        )
        .build();
    let tracer = provider.tracer("scimflow");
    let _ = PROVIDER.set(provider);
    Ok(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// Exports what is still buffered (call at shutdown).
pub fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        if let Err(e) = p.shutdown() {
            tracing::warn!(error = %e, "flushing OpenTelemetry spans failed");
        }
    }
}

struct One<'a>(Option<&'a str>);

impl opentelemetry::propagation::Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0).flatten()
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// Makes `span` a child of the W3C `traceparent` (ignored when invalid or when nothing exports).
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    if PROVIDER.get().is_none() {
        return;
    }
    let Some(tp) = traceparent else { return };
    let cx = TraceContextPropagator::new().extract(&One(Some(tp)));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The W3C `traceparent` of the current span, when spans are exported.
pub fn current_traceparent() -> Option<String> {
    PROVIDER.get()?;
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}
