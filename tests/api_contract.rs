//! The enqueue API's published contract (`docs/openapi.json`): it is the document the server
//! builds and serves, it lists every kind the API accepts by default with its arguments'
//! schema, it is a valid `OpenAPI 3.1` document, and arguments each kind accepts fit the
//! schema the document publishes for it.

#[path = "common/tools.rs"]
#[allow(dead_code)]
mod tools;

use std::{path::PathBuf, process::Command};

use axum::{body::Body, http::Request};
use serde_json::{Value, json};
use switchboard::{
    api::openapi,
    config::{ApiSettings, Settings},
    queue::Queues,
};
use switchboard_jobs::KindInfo;
use tools::{fail, target_dir};
use tower::ServiceExt as _;

fn contract_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")
}

fn default_document() -> Value {
    openapi::document(
        &switchboard_jobs::catalogue(),
        &ApiSettings::default().kinds,
    )
}

/// `api.kinds` matching, written out again here so the test does not trust the server's.
fn enabled_by_default(kind: &str) -> bool {
    ApiSettings::default().kinds.iter().any(|p| {
        p.strip_suffix('*')
            .map_or(p == kind, |family| kind.starts_with(family))
    })
}

#[test]
fn the_published_document_is_the_one_the_server_builds() {
    let built = serde_json::to_string_pretty(&default_document()).unwrap() + "\n";
    let path = contract_path();
    if std::env::var_os("SWITCHBOARD_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &built).unwrap();
        return;
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    if kept != built {
        fail(
            "docs/openapi.json differs from the document the server builds: run \
             `SWITCHBOARD_BLESS=1 cargo test --test api_contract` to rewrite it",
        );
    }
}

#[tokio::test]
async fn the_server_serves_it_without_a_key() {
    let mut settings = Settings::defaults();
    settings.api.enabled = true;
    settings.api.kinds = vec!["calendar.*".to_owned()];
    if let Ok(url) = std::env::var("REDIS_URL") {
        settings.redis.url = url;
    }
    let queues = Queues::open(&settings.redis, settings.queue.clone())
        .await
        .expect("tests need Redis at REDIS_URL (default redis://127.0.0.1:6379)");
    let app = switchboard::api::router(queues, &settings);
    let request = Request::get("/api/v1/openapi.json")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let served: Value = serde_json::from_slice(&body).unwrap();
    // The configuration's kinds, not the defaults.
    let expected = openapi::document(&switchboard_jobs::catalogue(), &settings.api.kinds);
    assert_eq!(served, expected);
    assert!(served["components"]["schemas"]["calendar.reconcile.args"].is_object());
    assert!(
        served["components"]["schemas"]
            .get("notify.email.args")
            .is_none()
    );
}

#[test]
fn every_kind_enabled_by_default_is_listed_with_its_arguments() {
    let doc = default_document();
    let schemas = &doc["components"]["schemas"];
    let branches = schemas["JobRequest"]["oneOf"]
        .as_array()
        .expect("JobRequest.oneOf");
    let listed: Vec<&str> = branches
        .iter()
        .map(|b| {
            b["properties"]["kind"]["const"]
                .as_str()
                .expect("a kind const")
        })
        .collect();
    let enabled: Vec<&str> = switchboard_jobs::catalogue()
        .iter()
        .map(|k| k.kind)
        .filter(|k| enabled_by_default(k))
        .collect();
    assert!(
        enabled.contains(&"notify.email") && enabled.contains(&"noop"),
        "{enabled:?}"
    );
    assert_eq!(
        listed, enabled,
        "JobRequest lists exactly the kinds enabled by default"
    );
    for (kind, branch) in enabled.iter().zip(branches) {
        let name = format!("{kind}.args");
        assert_eq!(
            branch["properties"]["args"]["$ref"],
            format!("#/components/schemas/{name}"),
            "{kind}"
        );
        let args = &schemas[&name];
        assert!(args.is_object(), "{name} is in components/schemas");
        assert!(
            args.get("$defs").is_none() && args.get("$schema").is_none(),
            "{name}"
        );
    }
    assert!(
        schemas.get("webhook.stripe.args").is_none(),
        "a kind not enabled is left out"
    );
    // Every reference resolves inside the document.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "{r} resolves");
    }
}

fn collect_refs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => into.push(r.clone()),
                    _ => collect_refs(v, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, into)),
        _ => {}
    }
}

#[test]
fn the_document_is_valid_openapi() {
    let target = target_dir();
    let python = target.join("test-venv/bin/python");
    let has = Command::new(&python)
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        fail(&format!(
            "missing test tool: Python openapi-spec-validator; install it with `python3 -m venv {0}/test-venv && {0}/test-venv/bin/pip install openapi-spec-validator==0.7.1` (scripts/test installs every test tool and runs the suite)",
            target.display()
        ));
    }
    let out = Command::new(&python)
        .args(["-m", "openapi_spec_validator"])
        .arg(contract_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docs/openapi.json is not valid OpenAPI:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Arguments each kind accepts: one sample per kind of the catalogue.
fn sample(kind: &str) -> Value {
    let webhook = |provider: &str| {
        json!({
            "provider": provider,
            "event_type": "event",
            "dedupe_key": "k1",
            "received_at_ms": 1_790_000_000_000_u64,
            "request_id": "r1",
            "body": "{}",
        })
    };
    let message = |to: &str| {
        json!({
            "key": "appointment:u1:confirmation:email",
            "to": to,
            "to_name": "Ada Lovelace",
            "template": "confirmation",
            "locale": "de",
            "vars": {
                "recipient_name": "Ada Lovelace",
                "company_name": "Praxis Nord",
                "start": "Dienstag, 29. September 2026, 09:30 Uhr (MESZ)",
            },
        })
    };
    match kind {
        "noop" => json!({"sleep_ms": 5}),
        "webhook.retell" => webhook("retell"),
        "webhook.calcom" => webhook("calcom"),
        "webhook.stripe" => webhook("stripe"),
        "calendar.book" => json!({
            "call_id": "call_1",
            "company_id": 1,
            "branch_id": 2,
            "customer_id": null,
            "service": "Zahnreinigung",
            "preferred_start": "2026-09-29T09:30:00+02:00",
            "customer_name": "Ada Lovelace",
            "customer_email": "ada@example.com",
        }),
        "calendar.reschedule" => json!({"uid": "u1", "start": "2026-09-30T10:00:00+02:00"}),
        "calendar.cancel" => json!({"uid": "u1", "reason": "ill"}),
        "calendar.reconcile" => json!({"days": 7}),
        "billing.report_usage" => json!({"call_id": "call_1", "company_id": 1}),
        "billing.reconcile" => json!({"limit": 50}),
        "notify.reminders" => json!({}),
        "notify.email" => message("ada@example.com"),
        "notify.sms" => message("+4915112345678"),
        other => panic!("no sample arguments for kind {other}: add one here"),
    }
}

fn errors(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).expect("a valid JSON schema");
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[test]
fn sample_arguments_fit_each_kinds_schema() {
    let doc = default_document();
    // JobRequest with the document's schemas around it, so its references resolve.
    let request = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": "#/components/schemas/JobRequest",
        "components": {"schemas": doc["components"]["schemas"].clone()},
    });
    let catalogue: Vec<KindInfo> = switchboard_jobs::catalogue();
    for info in &catalogue {
        let args = sample(info.kind);
        info.check(&args.to_string())
            .unwrap_or_else(|e| panic!("{}: the sample is not accepted: {e}", info.kind));
        let found = errors(&info.schema(), &args);
        assert!(found.is_empty(), "{}: {found:?}", info.kind);
        let wrong = errors(&info.schema(), &json!([]));
        assert!(
            !wrong.is_empty(),
            "{}: the schema takes anything",
            info.kind
        );
        if enabled_by_default(info.kind) {
            let job = json!({"kind": info.kind, "args": args, "queue": info.queue});
            let found = errors(&request, &job);
            assert!(found.is_empty(), "{}: JobRequest: {found:?}", info.kind);
        }
    }
    // The document ties the arguments to their kind.
    let mismatched = json!({"kind": "calendar.book", "args": sample("calendar.cancel")});
    assert!(
        !errors(&request, &mismatched).is_empty(),
        "calendar.book with cancel's args"
    );
    let unknown = json!({"kind": "webhook.stripe", "args": sample("webhook.stripe")});
    assert!(!errors(&request, &unknown).is_empty(), "a kind not enabled");
}
