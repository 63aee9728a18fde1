//! The enqueue API's published contract: an `OpenAPI 3.1` document built from the types the
//! routes deserialize and answer with, and from each kind's argument type, so the document
//! cannot drift from the server. Served at `GET /api/v1/openapi.json` (no key needed) and
//! kept in the repository as `docs/openapi.json` (its test fails when the two differ).
//!
//! The schemas come out as JSON Schema 2020-12 (the dialect of `OpenAPI 3.1`); each type's
//! `$defs` move to `components/schemas` and every `$ref` is rewritten to point there.
//! `JobRequest` ties `args` to `kind`: a `oneOf` with one branch per kind enabled for the
//! API, its `kind` a `const` and its `args` that kind's schema (`<kind>.args`).

use serde_json::{Map, Value, json};
use switchboard_jobs::KindInfo;

use super::jobs::{BatchAccepted, BatchRequest, JobAccepted, JobRequest, JobStatus, kind_enabled};

const DEFS: &str = "#/$defs/";
const COMPONENTS: &str = "#/components/schemas/";

/// The whole `OpenAPI 3.1` document for `kinds`, of which those matching `enabled` (the
/// patterns of `api.kinds`) are listed as accepted.
///
/// # Panics
/// When two different types share a name among the schemas (a programming error: the
/// contract test builds the document from the full catalogue).
pub fn document(kinds: &[KindInfo], enabled: &[String]) -> Value {
    let mut schemas = Schemas::default();
    schemas.add("JobAccepted", schemars::schema_for!(JobAccepted).into());
    schemas.add("BatchAccepted", schemars::schema_for!(BatchAccepted).into());
    schemas.add("JobStatus", schemars::schema_for!(JobStatus).into());
    schemas.add("BatchRequest", schemars::schema_for!(BatchRequest).into());
    let mut variants = Vec::new();
    for info in kinds.iter().filter(|k| kind_enabled(enabled, k.kind)) {
        let name = format!("{}.args", info.kind);
        schemas.add(&name, info.schema());
        variants.push(json!({
            "title": info.kind,
            "properties": {
                "kind": {"const": info.kind},
                "args": {"$ref": format!("{COMPONENTS}{name}")},
            },
        }));
    }
    // The request as serde reads it, narrowed to one branch per enabled kind.
    let mut request: Value = schemars::schema_for!(JobRequest).into();
    request["description"] = json!(
        "One job to enqueue, as the app sends it. `args` must match the schema of the \
         `kind` named: one branch per kind enabled for the API."
    );
    if variants.is_empty() {
        // No kind enabled: no request can be accepted.
        request["not"] = json!({});
    } else {
        request["oneOf"] = Value::Array(variants);
    }
    schemas.add_root("JobRequest", request);
    schemas.add_root("Error", error_schema());
    schemas.add_root("Cancelled", cancelled_schema());

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard enqueue API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Enqueue background jobs, read their state, cancel those not yet \
                started. Every request but this document's needs an API key \
                (`switchboard keys create`), sent as `Authorization: Bearer sbk_...`. \
                Errors are JSON `{\"error\": \"...\", \"field\": \"...\"}`; `field` names \
                the part of the request at fault.",
        },
        "security": [{"bearerAuth": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key, `sbk_...`, limited to its scopes (kinds \
                        and queues) and its rate per minute.",
                },
            },
            "parameters": {
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": false,
                    "description": "The same key again (for the same API key, while it is \
                        remembered: `api.idempotency_ttl_secs`) enqueues nothing and answers \
                        with the first job, `duplicate: true`.",
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 200,
                        "pattern": "^[!-~]+$",
                    },
                },
                "JobId": {
                    "name": "id",
                    "in": "path",
                    "required": true,
                    "description": "The id an enqueue answered, `<queue>~<ulid>`.",
                    "schema": {"type": "string"},
                },
            },
            "headers": {
                "RetryAfter": {
                    "description": "Seconds to wait before trying again.",
                    "schema": {"type": "integer", "minimum": 1},
                },
            },
            "responses": responses(),
            "schemas": Value::Object(schemas.0),
        },
    })
}

/// `components/schemas`, filled from schemars' output.
#[derive(Default)]
struct Schemas(Map<String, Value>);

impl Schemas {
    /// `schema` under `name`, its `$defs` beside it; a def already there must be the same.
    fn add(&mut self, name: &str, mut schema: Value) {
        let defs = schema
            .as_object_mut()
            .and_then(|o| o.remove("$defs"))
            .and_then(|d| match d {
                Value::Object(map) => Some(map),
                _ => None,
            })
            .unwrap_or_default();
        for (def, mut body) in defs {
            to_components(&mut body);
            match self.0.get(&def) {
                Some(known) if !same(known, &body) => {
                    panic!("two different schemas are named {def:?}: rename one type");
                }
                Some(_) => {}
                None => {
                    self.0.insert(def, body);
                }
            }
        }
        self.add_root(name, schema);
    }

    /// `schema` under `name`, replacing what a def of that name put there.
    fn add_root(&mut self, name: &str, mut schema: Value) {
        if let Some(o) = schema.as_object_mut() {
            o.remove("$schema");
            o.remove("$defs");
        }
        to_components(&mut schema);
        self.0.insert(name.to_owned(), schema);
    }
}

/// Whether two schemas of one name describe the same type (a type's schema as a root carries
/// a `title` its schema as a def may not).
fn same(a: &Value, b: &Value) -> bool {
    let bare = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("title");
        }
        v
    };
    bare(a) == bare(b)
}

/// Point every `#/$defs/X` in `value` at `#/components/schemas/X`.
fn to_components(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "$ref"
                    && let Value::String(target) = v
                    && let Some(name) = target.strip_prefix(DEFS)
                {
                    *target = format!("{COMPONENTS}{name}");
                } else {
                    to_components(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(to_components),
        _ => {}
    }
}

fn error_schema() -> Value {
    json!({
        "title": "Error",
        "description": "Why a request was not done.",
        "type": "object",
        "properties": {
            "error": {"type": "string", "description": "What is wrong."},
            "field": {
                "type": "string",
                "description": "The part of the request at fault, e.g. `args.to`, \
                    `jobs[2].kind` or `Idempotency-Key` (empty: the body as a whole).",
            },
        },
        "required": ["error"],
        "additionalProperties": false,
    })
}

fn cancelled_schema() -> Value {
    json!({
        "title": "Cancelled",
        "description": "A job cancelled before it started.",
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "queue": {"type": "string"},
            "state": {"const": "cancelled"},
        },
        "required": ["id", "queue", "state"],
    })
}

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("{COMPONENTS}Error")}}},
    })
}

fn with_retry_after(mut response: Value) -> Value {
    response["headers"] = json!({"Retry-After": {"$ref": "#/components/headers/RetryAfter"}});
    response
}

fn responses() -> Value {
    let mut unauthorized = error("No key, or a wrong, revoked or expired one.");
    unauthorized["headers"] = json!({
        "WWW-Authenticate": {"description": "`Bearer`.", "schema": {"type": "string"}},
    });
    json!({
        "BadRequest": error("The body is not JSON."),
        "Unauthorized": unauthorized,
        "Forbidden": error("The key's scopes do not cover this kind or queue."),
        "NotFound": error("No such job."),
        "Conflict": error("The job started (or ended) and can no longer be cancelled."),
        "PayloadTooLarge": error("The body is over `api.max_body_bytes`."),
        "Unprocessable": error(
            "The request is JSON but not a valid one: `field` names what is wrong (an unknown \
             or disabled kind, arguments that do not fit the kind, a queue no worker serves, \
             options given together that exclude each other, too deep a nesting)."
        ),
        "TooManyRequests": with_retry_after(error("The key is over its rate per minute.")),
        "Unavailable": with_retry_after(error("Redis did not take the request: try again.")),
    })
}

fn refs(statuses: &[(&str, &str)]) -> Value {
    Value::Object(
        statuses
            .iter()
            .map(|(status, name)| {
                (
                    (*status).to_owned(),
                    json!({"$ref": format!("#/components/responses/{name}")}),
                )
            })
            .collect(),
    )
}

fn body(schema: &str) -> Value {
    json!({
        "required": true,
        "content": {"application/json": {"schema": {"$ref": format!("{COMPONENTS}{schema}")}}},
    })
}

fn answer(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("{COMPONENTS}{schema}")}}},
    })
}

fn paths() -> Value {
    let enqueue_errors = [
        ("400", "BadRequest"),
        ("401", "Unauthorized"),
        ("403", "Forbidden"),
        ("413", "PayloadTooLarge"),
        ("422", "Unprocessable"),
        ("429", "TooManyRequests"),
        ("503", "Unavailable"),
    ];
    let mut create = refs(&enqueue_errors);
    create["202"] = answer(
        "Queued (or, for a duplicate, the first job).",
        "JobAccepted",
    );
    let mut batch = refs(&enqueue_errors);
    batch["202"] = answer("Every job queued, in order.", "BatchAccepted");
    let mut show = refs(&[
        ("401", "Unauthorized"),
        ("404", "NotFound"),
        ("429", "TooManyRequests"),
        ("503", "Unavailable"),
    ]);
    show["200"] = answer("The job.", "JobStatus");
    let mut cancel = refs(&[
        ("401", "Unauthorized"),
        ("403", "Forbidden"),
        ("404", "NotFound"),
        ("409", "Conflict"),
        ("429", "TooManyRequests"),
        ("503", "Unavailable"),
    ]);
    cancel["200"] = answer("Cancelled: it will not run.", "Cancelled");
    json!({
        "/api/v1/jobs": {
            "post": {
                "operationId": "enqueueJob",
                "summary": "Enqueue one job",
                "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
                "requestBody": body("JobRequest"),
                "responses": create,
            },
        },
        "/api/v1/jobs/batch": {
            "post": {
                "operationId": "enqueueBatch",
                "summary": "Enqueue a batch of jobs, all or none",
                "description": "Every job is checked first: one bad job and nothing is \
                    queued (its field is named as `jobs[i]....`). A batch takes no \
                    `Idempotency-Key` (422): give each job a `unique_key`.",
                "requestBody": body("BatchRequest"),
                "responses": batch,
            },
        },
        "/api/v1/jobs/{id}": {
            "parameters": [{"$ref": "#/components/parameters/JobId"}],
            "get": {
                "operationId": "getJob",
                "summary": "Read a job's state",
                "responses": show,
            },
            "delete": {
                "operationId": "cancelJob",
                "summary": "Cancel a job that has not started",
                "responses": cancel,
            },
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "getContract",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                },
            },
        },
    })
}
