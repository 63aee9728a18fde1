//! One call's trace across processes and jobs.
//!
//! A trace starts at the ingest request (or continues the caller's W3C `traceparent`) and is
//! carried inside each job's envelope, so the job's span, its database statements, its
//! outgoing provider requests and the follow-up jobs it enqueues all belong to it. The
//! runtime turns spans into OpenTelemetry spans only when an OTLP endpoint is configured;
//! without one, the incoming `traceparent` and the ingest request id are still carried, so
//! log lines and provider requests keep them.
//!
//! What is carried, [`Carried`], lives in a task-local scope set by ingest around an enqueue
//! and by the worker around a handler ([`scope`]); [`traceparent`] reads the current span's
//! context first (OpenTelemetry on) and falls back to the carried one.

use std::{
    future::Future,
    sync::atomic::{AtomicBool, Ordering},
};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header that carries a trace across HTTP.
pub const TRACEPARENT: &str = "traceparent";

/// What a job or an ingest request carries on to the work it causes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// W3C `traceparent` of the span that caused the work (`00-<trace>-<span>-<flags>`).
    pub traceparent: Option<String>,
    /// The id of the ingest request the work descends from.
    pub request_id: Option<String>,
}

tokio::task_local! {
    static CARRIED: Carried;
}

/// Whether spans are exported (set once by the runtime when it installs the export).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Record that the runtime exports spans from now on.
pub fn set_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// Whether spans are exported: hot paths leave the OpenTelemetry-only span fields out
/// otherwise, so logs-only processes pay nothing for them.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Run `work` with `carried` as what enqueues and provider requests inside it carry on.
pub async fn scope<F: Future>(carried: Carried, work: F) -> F::Output {
    CARRIED.scope(carried, work).await
}

/// What the running task carries (empty outside a [`scope`]).
pub fn carried() -> Carried {
    CARRIED.try_with(Clone::clone).unwrap_or_default()
}

/// The `traceparent` to hand on from here: the current span's when OpenTelemetry records it,
/// else the one carried in from outside, else none.
pub fn traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// As [`traceparent`], for `span` rather than the current one.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if exporting() {
        let cx = span.context();
        let own = cx.span().span_context().clone();
        if own.is_valid() {
            return Some(format(&own));
        }
    }
    CARRIED.try_with(|c| c.traceparent.clone()).ok().flatten()
}

/// `ctx` as a W3C `traceparent` value.
pub fn format(ctx: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        ctx.trace_id(),
        ctx.span_id(),
        ctx.trace_flags().to_u8()
    )
}

/// A W3C `traceparent` value (version 00, or a later version read as 00 as the
/// specification asks) as a remote span context; `None` when it is malformed or names the
/// all-zero trace or span.
pub fn parse(value: &str) -> Option<SpanContext> {
    let value = value.trim();
    let mut parts = value.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    // Version 00 has exactly four parts; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let ctx = SpanContext::new(
        trace,
        span,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    );
    ctx.is_valid().then_some(ctx)
}

/// The trace id in a `traceparent` value, if it is well formed.
pub fn trace_id(traceparent: &str) -> Option<String> {
    parse(traceparent).map(|c| c.trace_id().to_string())
}

/// Make `span` a child of the span `traceparent` names (when OpenTelemetry records spans)
/// and record the trace id in its `trace_id` field, so every log line inside carries it.
pub fn adopt(span: &tracing::Span, traceparent: Option<&str>) {
    if !exporting() {
        if let Some(id) = traceparent.and_then(trace_id) {
            span.record("trace_id", tracing::field::display(&id));
        }
        return;
    }
    if let Some(parent) = traceparent.and_then(parse) {
        let cx = opentelemetry::Context::new().with_remote_span_context(parent);
        // Refused only when the span is disabled or already started a trace of its own.
        let _ = span.set_parent(cx);
    }
    let own = span.context().span().span_context().trace_id();
    let id = if own == TraceId::INVALID {
        traceparent.and_then(trace_id)
    } else {
        Some(own.to_string())
    };
    if let Some(id) = id {
        span.record("trace_id", tracing::field::display(&id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_w3c_traceparent_reads_and_writes_back_the_same() {
        let ctx = parse(TP).unwrap();
        assert!(ctx.is_remote() && ctx.is_sampled());
        assert_eq!(format(&ctx), TP);
        assert_eq!(
            trace_id(TP).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    #[test]
    fn a_malformed_traceparent_is_none() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
        // A later version may carry more parts; the first four are read as version 00.
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some());
    }

    #[tokio::test]
    async fn without_opentelemetry_the_carried_traceparent_is_handed_on() {
        assert_eq!(traceparent(), None);
        let carried = Carried {
            traceparent: Some(TP.into()),
            request_id: Some("req-1".into()),
        };
        let inside = scope(carried.clone(), async { (traceparent(), super::carried()) }).await;
        assert_eq!(inside, (Some(TP.to_owned()), carried));
        assert_eq!(super::carried(), Carried::default());
    }
}
