//! The providers' contracts: requests checked against the official `OpenAPI` documents of
//! Cal.com, Stripe and Twilio (excerpts in `jobs/contracts/openapi/`, compiled in), answered
//! with OK or with the provider's own refusal ([`Refusal`]).
//!
//! Behind the cargo feature `contract`: the development stand-ins (`switchboard serve`'s
//! `/dev/`) and the client tests' mock servers check every request they receive, so a request
//! the provider would refuse fails there too, even when a mock was written to accept it. No
//! production request passes through here.
//!
//! A check ([`Contract::check`]) finds the operation by method and path, then checks in the
//! provider's order: credentials (401), declared headers (`cal-api-version` must equal the
//! version the operation declares), path parameters, query parameters (required, unknown,
//! schema), the body (JSON, or a form read with Stripe's bracket notation) against the
//! operation's schema with `$ref`s resolved, and the rules the providers state outside the
//! schemas (`rules.rs`). Schemas are validated with `jsonschema`; Cal.com's overlapping `oneOf`
//! bodies are read as `anyOf`, as its document must be.

mod form;
#[cfg(feature = "mocks")]
pub mod mocks;
mod operation;
mod refusal;
mod rules;

use std::sync::OnceLock;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::Value;

use self::operation::{In, Operation};
use self::refusal::Problem;
pub use self::refusal::{Provider, Refusal};

/// A request as it reached a provider (or its stand-in), path without any mount prefix.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// E.g. `/v2/bookings/abc/cancel`.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// One provider's document, compiled.
pub struct Contract {
    provider: Provider,
    doc: Value,
    operations: Vec<Operation>,
}

impl Contract {
    /// The compiled contract of `provider` (compiled once per process).
    pub fn of(provider: Provider) -> &'static Contract {
        static CALCOM: OnceLock<Contract> = OnceLock::new();
        static STRIPE: OnceLock<Contract> = OnceLock::new();
        static TWILIO: OnceLock<Contract> = OnceLock::new();
        let (cell, text) = match provider {
            Provider::Calcom => (
                &CALCOM,
                include_str!("../../contracts/openapi/calcom-v2.excerpt.json"),
            ),
            Provider::Stripe => (
                &STRIPE,
                include_str!("../../contracts/openapi/stripe.excerpt.json"),
            ),
            Provider::Twilio => (
                &TWILIO,
                include_str!("../../contracts/openapi/twilio-api-v2010.excerpt.json"),
            ),
        };
        cell.get_or_init(|| Contract::new(provider, text))
    }

    fn new(provider: Provider, text: &str) -> Contract {
        let mut doc: Value = serde_json::from_str(text).expect("provider document is JSON");
        if provider == Provider::Calcom {
            one_of_as_any_of(&mut doc);
        }
        let operations = Operation::all(&doc);
        Contract {
            provider,
            doc,
            operations,
        }
    }

    /// Whether the document has an operation for `method` and `path`.
    pub fn knows(&self, method: &str, path: &str) -> bool {
        self.operation(method, path).is_some()
    }

    /// OK, or the provider's refusal of `request`. `now` (unix seconds) is the clock of the
    /// rules that depend on it (Stripe's timestamp window).
    pub fn check(&self, request: &Request<'_>, now: i64) -> Result<(), Refusal> {
        self.problem(request, now)
            .map_err(|p| p.refusal(self.provider, request.path, now))
    }

    fn operation(&self, method: &str, path: &str) -> Option<(&Operation, Vec<(String, String)>)> {
        self.operations
            .iter()
            .filter(|op| op.method.eq_ignore_ascii_case(method))
            .find_map(|op| op.matches(path).map(|found| (op, found)))
    }

    fn problem(&self, request: &Request<'_>, now: i64) -> Result<(), Problem> {
        let (op, path_params) = self
            .operation(request.method, request.path)
            .ok_or_else(|| {
                Problem::not_found(format!(
                    "no operation {} {} in the document",
                    request.method, request.path
                ))
            })?;
        rules::credentials(self.provider, request.headers, &path_params)?;
        Self::headers(op, request.headers)?;
        for (name, value) in &path_params {
            let param = op
                .params
                .iter()
                .find(|p| p.location == In::Path && &p.name == name);
            if let Some(param) = param {
                let errors = messages(&param.validator, &Value::String(value.clone()));
                if !errors.is_empty() {
                    return Err(Problem::bad(
                        format!("path parameter {name} {value:?}: {errors}"),
                        Some(name),
                    ));
                }
            }
        }
        self.query(op, request.query)?;
        let body = self.body(op, request)?;
        rules::beyond_schemas(self.provider, request, &body, now)
    }

    /// Declared headers: required ones present, `cal-api-version` equal to its declared value.
    fn headers(op: &Operation, headers: &HeaderMap) -> Result<(), Problem> {
        for param in op.params.iter().filter(|p| p.location == In::Header) {
            if param.name.eq_ignore_ascii_case("authorization") {
                continue; // checked with the credentials
            }
            let value = headers.get(&param.name).and_then(|v| v.to_str().ok());
            let declared = param.schema["default"].as_str();
            match (value, declared) {
                (None, _) if param.required => {
                    return Err(Problem::bad(
                        format!("header {} is required", param.name),
                        Some(&param.name),
                    ));
                }
                (Some(v), Some(d)) if param.name == "cal-api-version" && v != d => {
                    return Err(Problem::bad(
                        format!("header {} must be {d}, not {v:?}", param.name),
                        Some(&param.name),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Query parameters: none undeclared, the required ones present, each valid.
    fn query(&self, op: &Operation, query: &str) -> Result<(), Problem> {
        let given = form::pairs(query.as_bytes());
        let declared = || op.params.iter().filter(|p| p.location == In::Query);
        for (name, value) in &given {
            let Some(param) = declared().find(|p| &p.name == name) else {
                return Err(Problem::bad(
                    format!("query parameter {name} is not declared by the operation"),
                    Some(name),
                ));
            };
            let instance = form::query_value(&self.doc, &param.schema, value);
            let errors = messages(&param.validator, &instance);
            if !errors.is_empty() {
                return Err(Problem::bad(
                    format!("query parameter {name}={value:?}: {errors}"),
                    Some(name),
                ));
            }
        }
        if let Some(missing) =
            declared().find(|p| p.required && !given.iter().any(|(n, _)| n == &p.name))
        {
            return Err(Problem::bad(
                format!("query parameter {} is required", missing.name),
                Some(&missing.name),
            ));
        }
        Ok(())
    }

    /// The body read as JSON (a form as its object) and checked against the schema.
    fn body(&self, op: &Operation, request: &Request<'_>) -> Result<Value, Problem> {
        let Some(body) = &op.body else {
            return Ok(Value::Null);
        };
        if request.body.is_empty() && !body.required {
            return Ok(Value::Null);
        }
        let content_type = request
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !content_type.starts_with(&body.media) {
            return Err(Problem::bad(
                format!("Content-Type must be {}, not {content_type:?}", body.media),
                None,
            ));
        }
        let instance = if body.media == "application/json" {
            serde_json::from_slice(request.body)
                .map_err(|e| Problem::bad(format!("the body is not JSON: {e}"), None))?
        } else {
            form::form_object(&self.doc, &body.schema, &form::pairs(request.body))
        };
        rules::before_schemas(self.provider, &instance)?;
        let errors = messages(&body.validator, &instance);
        if errors.is_empty() {
            Ok(instance)
        } else {
            Err(Problem::bad(
                format!("body: {errors}"),
                first_param(&body.validator, &instance).as_deref(),
            ))
        }
    }
}

/// The validation errors of `instance`, joined; empty when it is valid.
fn messages(validator: &jsonschema::Validator, instance: &Value) -> String {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {:?}", e, e.instance_path().to_string()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The first field at fault (`payload[value]` in Stripe's notation), if any.
fn first_param(validator: &jsonschema::Validator, instance: &Value) -> Option<String> {
    let error = validator.iter_errors(instance).next()?;
    let mut parts = error
        .instance_path()
        .to_string()
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into_iter();
    let first = parts.next()?;
    Some(parts.fold(first, |acc, p| format!("{acc}[{p}]")))
}

/// Cal.com's request bodies are `oneOf` lists whose alternatives overlap; the provider means
/// "any of" them.
fn one_of_as_any_of(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(alternatives) = map.remove("oneOf") {
                map.insert("anyOf".into(), alternatives);
            }
            map.values_mut().for_each(one_of_as_any_of);
        }
        Value::Array(items) => items.iter_mut().for_each(one_of_as_any_of),
        _ => {}
    }
}
