//! Traces over OTLP: with `[telemetry] otlp_endpoint` set, the project's spans (ingest
//! requests, jobs, database statements, provider requests, SMTP sends) become OpenTelemetry
//! spans, batched and sent as OTLP/HTTP protobuf to `<endpoint>/v1/traces`.
//!
//! How a trace crosses ingest, the queue and follow-up jobs is `switchboard_jobs::trace`.
//! Only the project's own spans are exported (targets `switchboard*`); database spans are
//! at debug level, so logs at `info` never show them while traces always have them.

use std::time::Duration;

use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing::{Level, Metadata};

use crate::config::TelemetrySettings;

/// How long one export may take before it is given up (the spans of that batch are lost;
/// traces never hold up work).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The trace pipeline, when one runs: flush it before the process ends.
#[derive(Debug, Default)]
pub struct Traces {
    provider: Option<SdkTracerProvider>,
}

impl Traces {
    pub(super) fn new(provider: Option<SdkTracerProvider>) -> Self {
        Self { provider }
    }

    /// Send every finished span now (blocks until the collector answered or gave up).
    pub fn flush(&self) {
        if let Some(p) = &self.provider
            && let Err(e) = p.force_flush()
        {
            tracing::warn!(error = %e, "flushing traces failed");
        }
    }

    /// Flush and stop the pipeline.
    pub fn shutdown(&self) {
        if let Some(p) = &self.provider
            && let Err(e) = p.shutdown()
        {
            tracing::warn!(error = %e, "stopping the trace export failed");
        }
    }

    /// Whether spans are exported.
    pub fn is_on(&self) -> bool {
        self.provider.is_some()
    }
}

/// A request's `traceparent` header when it is well formed (a malformed one is ignored, as
/// W3C Trace Context asks).
pub fn incoming(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(switchboard_jobs::trace::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| switchboard_jobs::trace::parse(v).is_some())
}

/// The tracer provider for `settings`, exporting through the current tokio runtime; `None`
/// when no endpoint is set.
pub(super) fn provider(settings: &TelemetrySettings) -> Result<Option<SdkTracerProvider>, String> {
    let Some(url) = settings.otlp_traces_url()? else {
        return Ok(None);
    };
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "traces need a tokio runtime to export from".to_owned())?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Exporter {
            client: reqwest::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| format!("the OTLP client: {e}"))?,
            runtime,
        })
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("the OTLP exporter: {e}"))?;
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    ))
}

/// The OpenTelemetry layer over `provider`, seeing only the project's spans and events.
pub(super) fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("switchboard"))
        .with_filter(tracing_subscriber::filter::filter_fn(exported))
}

/// The project's spans down to debug (database statements), its events down to info (they
/// become span events).
fn exported(meta: &Metadata<'_>) -> bool {
    let ours = meta.target().starts_with("switchboard");
    let floor = if meta.is_span() {
        Level::DEBUG
    } else {
        Level::INFO
    };
    ours && *meta.level() <= floor
}

/// The exporter's HTTP client: requests run on the service's tokio runtime, whichever
/// thread the span processor exports from.
#[derive(Debug)]
struct Exporter {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for Exporter {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let client = self.client.clone();
        // Built and sent on the runtime: the request's timeout needs its timer.
        let (status, headers, body) = self
            .runtime
            .spawn(async move {
                let response = client
                    .request(parts.method, parts.uri.to_string())
                    .headers(parts.headers)
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body))
            })
            .await??;
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_projects_spans_and_info_events_are_exported() {
        use tracing::{callsite::Identifier, field::FieldSet, metadata::Kind};
        struct Site;
        impl tracing::callsite::Callsite for Site {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static SITE: Site = Site;
        let meta = |target: &'static str, level: Level, kind: Kind| {
            Metadata::new(
                "m",
                target,
                level,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&SITE)),
                kind,
            )
        };
        assert!(exported(&meta(
            "switchboard_jobs::store::calls",
            Level::DEBUG,
            Kind::SPAN
        )));
        assert!(exported(&meta(
            "switchboard::fleet",
            Level::INFO,
            Kind::EVENT
        )));
        assert!(!exported(&meta(
            "switchboard::fleet",
            Level::DEBUG,
            Kind::EVENT
        )));
        assert!(!exported(&meta("sqlx::query", Level::INFO, Kind::EVENT)));
        assert!(!exported(&meta("hyper::proto", Level::INFO, Kind::SPAN)));
        assert!(!exported(&meta("switchboard::x", Level::TRACE, Kind::SPAN)));
    }
}
