//! Secrets out of job payloads before an operator sees them.
//!
//! A value is replaced by [`REDACTED`] when its key names a secret: a word of the key (split at
//! `_`, `-`, `.`, spaces and camelCase humps) is one of [`SECRET_WORDS`], or the key contains
//! `apikey`, `privatekey`, `accesskey` or `signingkey` once separators are dropped. So
//! `password`, `client_secret`, `auth_token`, `x-api-key`, `Stripe-Signature`,
//! `X-Cal-Signature-256` and `cardNumber` are all hidden. A string that holds JSON (the raw
//! body of a webhook job) is parsed and redacted the same way, and shown parsed; a string
//! that looks like an `Authorization` value (`Bearer ...`, `Basic ...`) is hidden wherever it
//! sits. Redaction errs on the side of hiding: an innocent `token_count` is hidden too.

use serde_json::Value;

/// What a hidden value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Key words that mark a secret (compared lowercase, a trailing plural `s` ignored).
pub const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "auth",
    "authorization",
    "signature",
    "card",
    "cvc",
    "cvv",
    "iban",
    "cookie",
    "credential",
];

const SECRET_COMPOUNDS: &[&str] = &["apikey", "privatekey", "accesskey", "signingkey"];

/// Redact `value` in place.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret_key(key) {
                    *v = Value::String(REDACTED.to_owned());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) => {
            if looks_like_credentials(s) {
                REDACTED.clone_into(s);
            } else if let Some(mut inner) = embedded_json(s) {
                redact(&mut inner);
                *value = inner;
            }
        }
        _ => {}
    }
}

/// A redacted copy of `value`.
pub fn redacted(value: &Value) -> Value {
    let mut copy = value.clone();
    redact(&mut copy);
    copy
}

/// Whether `key` names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let joined: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    if SECRET_COMPOUNDS.iter().any(|c| joined.contains(c)) {
        return true;
    }
    words(key).iter().any(|w| {
        let singular = w.strip_suffix('s').unwrap_or(w);
        SECRET_WORDS.contains(&w.as_str()) || SECRET_WORDS.contains(&singular)
    })
}

/// Lowercase words of a key: split at non-alphanumerics and before an upper-case letter that
/// follows a lower-case one or a digit.
fn words(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if !c.is_ascii_alphanumeric() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn looks_like_credentials(s: &str) -> bool {
    let t = s.trim_start();
    ["Bearer ", "Basic "]
        .iter()
        .any(|p| t.len() > p.len() && t[..p.len()].eq_ignore_ascii_case(p))
}

fn embedded_json(s: &str) -> Option<Value> {
    let t = s.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) {
        return None;
    }
    serde_json::from_str::<Value>(s)
        .ok()
        .filter(|v| v.is_object() || v.is_array())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_keys_are_recognised_in_every_spelling() {
        for key in [
            "password",
            "Password",
            "smtp_password",
            "client_secret",
            "auth_token",
            "accessToken",
            "api_key",
            "apiKey",
            "x-api-key",
            "Authorization",
            "Stripe-Signature",
            "x-retell-signature",
            "X-Cal-Signature-256",
            "cardNumber",
            "card_cvc",
            "secrets",
            "private_key",
        ] {
            assert!(is_secret_key(key), "{key} should be hidden");
        }
        for key in [
            "call_id",
            "customer_email",
            "amount",
            "discard",
            "keyword",
            "author",
            "signed",
        ] {
            assert!(!is_secret_key(key), "{key} should be shown");
        }
    }

    #[test]
    fn nested_values_and_embedded_webhook_bodies_are_redacted() {
        let body = json!({
            "id": "evt_1",
            "data": {"object": {"client_secret": "pi_secret_abc", "amount": 5}},
            "headers": {"stripe-signature": "t=1,v1=abc"}
        })
        .to_string();
        let mut v = json!({
            "provider": "stripe",
            "body": body,
            "list": [{"password": "hunter2"}, "Bearer abc.def"],
            "note": "{not json",
        });
        redact(&mut v);
        assert_eq!(v["body"]["data"]["object"]["client_secret"], REDACTED);
        assert_eq!(v["body"]["data"]["object"]["amount"], 5);
        assert_eq!(v["body"]["headers"]["stripe-signature"], REDACTED);
        assert_eq!(v["list"][0]["password"], REDACTED);
        assert_eq!(v["list"][1], REDACTED);
        assert_eq!(v["note"], "{not json");
        assert_eq!(v["provider"], "stripe");
        let text = v.to_string();
        for secret in ["pi_secret_abc", "t=1,v1=abc", "hunter2", "abc.def"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}
