//! Traces through a running `serve` (every role in one process) to a real OTLP/HTTP receiver
//! that decodes what arrives with the protocol's own message types: one signed Retell
//! `call_analyzed` asking for an appointment is one trace, from the ingest request (which
//! continues the caller's `traceparent`) through `webhook.retell`, `calendar.book` and its
//! Cal.com requests (the development stand-in, which checks them against Cal.com's
//! document), to the confirmation's `notify.email` with its SMTP send (a real SMTP sink) and
//! `notify.sms` with its gateway request, each span under the one that caused it.
//!
//! This binary holds one test: the trace export is process-wide.

mod common;
#[path = "common/world.rs"]
mod world;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use common::running::{self, Running};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::any_value::Value,
    trace::v1::Span,
};
use prost::Message;
use serde_json::json;
use switchboard::{
    app::{Hooks, Roles},
    ingest::{SecretList, WebhookSecrets},
};
use switchboard_jobs::store::appointments;
use time::{Duration as Days, OffsetDateTime};
use wiremock::{Mock, ResponseTemplate, matchers};
use world::{Options, World};

const RETELL_KEY: &str = "key_trace_secret";
const CALL: &str = "call_5b2e9d0c7a4f41e38a1d2c6f90b1e7aa";
/// The caller's trace: ingest continues it.
const TRACE: &str = "5c0b1e7a3d2f4e6a8b9c0d1e2f3a4b5c";
const CALLER_SPAN: &str = "a1b2c3d4e5f60718";
const REQUEST_ID: &str = "req-trace-0001";

/// Spans as the receiver decoded them, with the `service.name` they came under.
type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// An OTLP/HTTP receiver on a free port: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, answered as the protocol says.
async fn receiver() -> (SocketAddr, Received) {
    async fn export(
        State(received): State<Received>,
        body: Bytes,
    ) -> (axum::http::StatusCode, Vec<u8>) {
        let Ok(request) = ExportTraceServiceRequest::decode(body) else {
            return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
        };
        let mut out = received.lock().unwrap();
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource.scope_spans {
                out.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        (
            axum::http::StatusCode::OK,
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
    }
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(export))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

/// A span's string attribute.
fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// The received spans of the caller's trace, by span id.
struct Tree(HashMap<Vec<u8>, Span>);

impl Tree {
    /// The one span called `name`.
    fn one(&self, name: &str) -> &Span {
        let found: Vec<_> = self.0.values().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one span {name:?}: {:#?}", self.names());
        found[0]
    }

    /// Whether `ancestor` is `span`'s parent, or its parent's, and so on.
    fn descends(&self, span: &Span, ancestor: &Span) -> bool {
        let mut at = span;
        while let Some(parent) = self.0.get(&at.parent_span_id) {
            if parent.span_id == ancestor.span_id {
                return true;
            }
            at = parent;
        }
        false
    }

    /// The spans named `name` below `ancestor`.
    fn below(&self, ancestor: &Span, name: &str) -> usize {
        self.0
            .values()
            .filter(|s| s.name == name && self.descends(s, ancestor))
            .count()
    }

    fn names(&self) -> Vec<(String, String)> {
        let name_of = |id: &Vec<u8>| self.0.get(id).map_or("-".into(), |s| s.name.clone());
        let mut names: Vec<_> = self
            .0
            .values()
            .map(|s| (s.name.clone(), name_of(&s.parent_span_id)))
            .collect();
        names.sort();
        names
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one walk down the whole path
async fn one_call_analyzed_is_one_trace_from_ingest_to_the_notifications() {
    let (otlp, received) = receiver().await;
    let w = World::with(
        "sqlite",
        Options {
            fleet: false,
            calcom_stand_in: true,
            sms_stand_in: true,
            ..Options::default()
        },
    )
    .await;
    let mut telemetry = w.h.settings.telemetry.clone();
    telemetry.otlp_endpoint = format!("http://{otlp}");
    telemetry.service_name = "switchboard-traces-test".into();
    let traces = switchboard::telemetry::init_logging(&telemetry).unwrap();
    assert!(traces.is_on(), "this binary installs the only subscriber");

    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/billing/meter_events"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"object": "billing.meter_event", "identifier": CALL})),
        )
        .mount(&w.stripe)
        .await;
    // A full hour the stand-in lists (09:00 to 16:00 UTC, every day).
    let day = (OffsetDateTime::now_utc() + Days::days(2)).date();
    let slot = format!("{day}T10:00:00Z");

    let hooks = Hooks {
        services: Some(w.services.clone()),
        secrets: Some(WebhookSecrets {
            retell: Some(SecretList::parse(RETELL_KEY)),
            ..WebhookSecrets::default()
        }),
        ..Hooks::default()
    };
    let roles = Roles {
        embedded_redis: false,
        ..Roles::serve(&w.h.settings)
    };
    let serve = Running::start(w.h.settings.clone(), roles, hooks).await;

    let (body, signature) = running::signed_call_analyzed(RETELL_KEY, &slot);
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let headers = [
        ("traceparent", traceparent.as_str()),
        ("x-request-id", REQUEST_ID),
    ];
    assert_eq!(serve.post_retell(body, &signature, &headers).await, 202);

    let store = w.store.clone();
    let gateway = w.gateway.clone().unwrap();
    w.h.wait_for("booking, email and SMS", Duration::from_secs(30), || {
        let store = store.clone();
        let mails = w.sink.messages().len();
        let texts = gateway.messages().len();
        async move {
            let booked = appointments::find_by_call(&store, CALL).await.unwrap();
            booked.is_some() && mails == 1 && texts == 1
        }
    })
    .await;

    // The jobs' spans end just after their effects: flush until the notifications' are in.
    let traces = Arc::new(traces);
    let trace_id = hex::decode(TRACE).unwrap();
    w.h.wait_for("the trace's spans", Duration::from_secs(30), || {
        let traces = Arc::clone(&traces);
        let received = Arc::clone(&received);
        let trace_id = trace_id.clone();
        async move {
            tokio::task::spawn_blocking(move || traces.flush())
                .await
                .unwrap();
            let spans = received.lock().unwrap();
            let names: Vec<_> = spans
                .iter()
                .filter(|(_, s)| s.trace_id == trace_id)
                .map(|(_, s)| s.name.as_str())
                .collect();
            ["notify.email", "notify.sms", "SMTP send", "SMS send"]
                .iter()
                .all(|n| names.contains(n))
        }
    })
    .await;

    let spans = received.lock().unwrap().clone();
    assert!(
        spans
            .iter()
            .all(|(service, _)| service == "switchboard-traces-test"),
        "every span under the configured service.name"
    );
    // One trace: every span of this test's work is in the caller's.
    let others: Vec<_> = spans
        .iter()
        .filter(|(_, s)| s.trace_id != trace_id)
        .map(|(_, s)| s.name.clone())
        .collect();
    let tree = Tree(
        spans
            .into_iter()
            .filter(|(_, s)| s.trace_id == trace_id)
            .map(|(_, s)| (s.span_id.clone(), s))
            .collect(),
    );
    for kind in [
        "webhook.retell",
        "calendar.book",
        "notify.email",
        "notify.sms",
    ] {
        assert!(
            !others.iter().any(|n| n == kind),
            "{kind} ran outside the caller's trace: {others:?}"
        );
    }

    println!("the trace, (span, parent): {:#?}", tree.names());
    let ingest = tree.one("ingest retell");
    assert_eq!(
        hex::encode(&ingest.parent_span_id),
        CALLER_SPAN,
        "ingest continues the caller's span"
    );
    assert_eq!(attr(ingest, "request_id"), Some(REQUEST_ID));
    let retell = tree.one("webhook.retell");
    assert_eq!(retell.parent_span_id, ingest.span_id, "{:#?}", tree.names());
    let book = tree.one("calendar.book");
    assert!(tree.descends(book, retell), "{:#?}", tree.names());
    assert!(
        tree.below(book, "Cal.com create booking") == 1,
        "the Cal.com booking request under calendar.book: {:#?}",
        tree.names()
    );
    let email = tree.one("notify.email");
    let sms = tree.one("notify.sms");
    for (job, send) in [(email, "SMTP send"), (sms, "SMS send")] {
        assert!(tree.descends(job, book), "{:#?}", tree.names());
        assert_eq!(tree.below(job, send), 1, "{:#?}", tree.names());
    }
    // The jobs keep the ingest request id, for their log lines.
    for job in [retell, book, email, sms] {
        assert_eq!(attr(job, "request_id"), Some(REQUEST_ID), "{}", job.name);
        assert_eq!(attr(job, "trace_id"), Some(TRACE), "{}", job.name);
    }
    // Database statements are spans of the job that made them.
    assert!(
        tree.0
            .values()
            .any(|s| s.name.starts_with("db ") && tree.descends(s, retell)),
        "{:#?}",
        tree.names()
    );

    serve.stop().await;
    w.stop().await;
}
