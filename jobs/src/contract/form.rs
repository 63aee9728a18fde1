//! Query strings and `application/x-www-form-urlencoded` bodies read as the JSON the
//! operation's schema describes: a value is a number, integer or boolean when its schema says
//! so (and stays a string, to be refused, when it does not parse), repeated keys and
//! comma-separated query values fill arrays, and Stripe's bracket notation (`payload[value]`,
//! a `deepObject`) fills objects.

use serde_json::{Map, Value};

use super::operation::resolve;

/// The pairs of a query string or form body, decoded.
pub(super) fn pairs(raw: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(raw).into_owned().collect()
}

/// A form body as a JSON object, typed by `schema` (an object schema of `doc`).
pub(super) fn form_object(doc: &Value, schema: &Value, pairs: &[(String, String)]) -> Value {
    let mut object = Map::new();
    for (key, value) in pairs {
        let (base, sub) = match key.split_once('[') {
            Some((base, rest)) => (base, Some(rest.trim_end_matches(']'))),
            None => (key.as_str(), None),
        };
        let property = property(doc, schema, base);
        match sub {
            // `payload[value]=3`: a member of an object.
            Some(sub) if !sub.is_empty() => {
                let entry = object
                    .entry(base.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(members) = entry {
                    members.insert(sub.to_owned(), Value::String(value.clone()));
                }
            }
            // `MediaUrl=a&MediaUrl=b` or `expand[]=x`: an array.
            _ if property["type"] == "array" || sub.is_some() => {
                let entry = object
                    .entry(base.to_owned())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(items) = entry {
                    items.push(typed(doc, &property["items"], value));
                }
            }
            _ => {
                object.insert(base.to_owned(), typed(doc, property, value));
            }
        }
    }
    Value::Object(object)
}

/// A query parameter's value as its schema reads it; arrays are comma-separated.
pub(super) fn query_value(doc: &Value, schema: &Value, value: &str) -> Value {
    let schema = resolve(doc, schema);
    if schema["type"] == "array" {
        Value::Array(
            value
                .split(',')
                .map(|v| typed(doc, &schema["items"], v.trim()))
                .collect(),
        )
    } else {
        typed(doc, schema, value)
    }
}

/// `value` as the scalar `schema` asks for, or the string when it does not parse.
fn typed(doc: &Value, schema: &Value, value: &str) -> Value {
    let string = || Value::String(value.to_owned());
    match resolve(doc, schema)["type"].as_str() {
        Some("integer") => value.parse::<i64>().map_or_else(|_| string(), Value::from),
        Some("number") => value
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(string, Value::Number),
        Some("boolean") => match value {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => string(),
        },
        _ => string(),
    }
}

/// The schema of `name` in an object schema, `{}` when it declares none.
fn property<'a>(doc: &'a Value, schema: &'a Value, name: &str) -> &'a Value {
    const ANY: &Value = &Value::Null;
    resolve(doc, schema)["properties"]
        .get(name)
        .map_or(ANY, |p| resolve(doc, p))
}
