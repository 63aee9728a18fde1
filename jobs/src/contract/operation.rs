//! One operation of a provider document, compiled once: its path template, its parameters
//! (each with a schema validator) and its request body (media type, validator, and the
//! property types a form or query string is read with). `$ref`s are resolved by validating
//! against a root that carries the document's `components`, so a schema is checked exactly as
//! the document writes it.

use jsonschema::{Draft, Validator};
use serde_json::{Value, json};

/// Where a parameter travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum In {
    Path,
    Query,
    Header,
}

/// A declared parameter.
pub(super) struct Param {
    pub name: String,
    pub location: In,
    pub required: bool,
    /// The schema as written, for how a query value is read (`array`, `number`).
    pub schema: Value,
    pub validator: Validator,
}

/// A declared request body.
pub(super) struct Body {
    pub required: bool,
    /// `application/json` or `application/x-www-form-urlencoded`.
    pub media: String,
    /// The top-level schema with its `$ref` resolved, for how form fields are read.
    pub schema: Value,
    pub validator: Validator,
}

/// One operation (method and path) of a document.
pub(super) struct Operation {
    pub method: String,
    /// The path as the document writes it, e.g. `/v2/bookings/{bookingUid}/cancel`.
    pub path: String,
    pub params: Vec<Param>,
    pub body: Option<Body>,
}

impl Operation {
    /// Every operation of `doc`. Panics on a document that does not compile: the documents
    /// are part of this crate, and a broken one must fail every test at once.
    pub fn all(doc: &Value) -> Vec<Operation> {
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for method in ["get", "post"] {
                let Some(op) = item.get(method) else { continue };
                let params = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| param(doc, p))
                    .collect();
                let body = op.get("requestBody").map(|b| body(doc, b));
                ops.push(Operation {
                    method: method.to_uppercase(),
                    path: path.clone(),
                    params,
                    body,
                });
            }
        }
        ops
    }

    /// The path parameters when `path` fits this operation's template.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let template: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        let given: Vec<&str> = path.trim_matches('/').split('/').collect();
        if template.len() != given.len() {
            return None;
        }
        let mut found = Vec::new();
        for (t, g) in template.iter().zip(&given) {
            match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                Some(name) if !g.is_empty() => found.push((name.to_owned(), decode(g))),
                None if t == g => {}
                _ => return None,
            }
        }
        Some(found)
    }
}

fn param(doc: &Value, p: &Value) -> Param {
    let p = resolve(doc, p);
    let location = match p["in"].as_str() {
        Some("path") => In::Path,
        Some("header") => In::Header,
        _ => In::Query,
    };
    let schema = p.get("schema").cloned().unwrap_or_else(|| json!({}));
    Param {
        name: p["name"].as_str().unwrap_or_default().to_owned(),
        location,
        required: p["required"].as_bool().unwrap_or(location == In::Path),
        validator: compile(doc, &schema),
        schema,
    }
}

fn body(doc: &Value, b: &Value) -> Body {
    let (media, content) = b["content"]
        .as_object()
        .and_then(|c| c.iter().next())
        .expect("a request body declares a media type");
    let schema = &content["schema"];
    Body {
        required: b["required"].as_bool().unwrap_or(false),
        media: media.clone(),
        schema: resolve(doc, schema).clone(),
        validator: compile(doc, schema),
    }
}

/// A validator for `schema`, whose `$ref`s point into `doc`. `OpenAPI` 3.0 schemas are close to
/// draft 4; formats (`phone-number`, `unix-time`, ...) are not checked.
pub(super) fn compile(doc: &Value, schema: &Value) -> Validator {
    let root = json!({ "components": doc["components"], "allOf": [schema] });
    jsonschema::options()
        .with_draft(Draft::Draft4)
        .should_validate_formats(false)
        .build(&root)
        .unwrap_or_else(|e| panic!("provider schema does not compile: {e}"))
}

/// `value`, or what its `$ref` (`#/components/...`) points to.
pub(super) fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => doc.pointer(pointer).unwrap_or(value),
        None => value,
    }
}

/// A percent-decoded path segment.
fn decode(segment: &str) -> String {
    form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(|| segment.to_owned(), |(_, v)| v.into_owned())
}
