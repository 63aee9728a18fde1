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
//!
//! Personal data is masked for operators whose role may not see it ([`mask_personal`],
//! [`mask_text`]): values under keys that name a person's data (a word of the key is one of
//! [`PERSONAL_WORDS`]: phone, number, email, name, transcript, ...) and, in any string,
//! anything that looks like a phone number (`+` and 7 to 15 digits) or an email address.
//! Numbers keep their first three and last two characters (`+14•••••••87`), addresses their
//! first letter and domain ending (`d•••@•••.com`), so an operator can still tell two
//! callers apart; transcripts and names are hidden whole.

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

/// What hidden personal text is replaced with.
pub const HIDDEN: &str = "[personal data hidden]";

/// Key words that mark a person's data (compared lowercase, a trailing plural `s` ignored).
pub const PERSONAL_WORDS: &[&str] = &[
    "phone",
    "number",
    "email",
    "mail",
    "name",
    "transcript",
    "recipient",
    "attendee",
    "address",
    "summary",
    "caller",
    "to",
    "from",
];

/// Mask personal data in `value` in place (after [`redact`], which parses embedded JSON).
pub fn mask_personal(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_personal_key(key) {
                    mask_whole(v);
                } else {
                    mask_personal(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_personal),
        Value::String(s) => {
            if let Some(mut inner) = embedded_json(s) {
                mask_personal(&mut inner);
                *value = inner;
            } else {
                *s = mask_text(s);
            }
        }
        _ => {}
    }
}

/// A value under a personal key: strings masked (numbers and addresses partly, other text
/// whole), containers all the way down.
fn mask_whole(value: &mut Value) {
    match value {
        Value::String(s) => {
            let masked = mask_text(s);
            *s = if masked == *s && !s.is_empty() {
                HIDDEN.to_owned()
            } else {
                masked
            };
        }
        Value::Object(map) => map.values_mut().for_each(mask_whole),
        Value::Array(items) => items.iter_mut().for_each(mask_whole),
        _ => {}
    }
}

/// Whether `key` names a person's data.
pub fn is_personal_key(key: &str) -> bool {
    words(key).iter().any(|w| {
        let singular = w.strip_suffix('s').unwrap_or(w);
        PERSONAL_WORDS.contains(&w.as_str()) || PERSONAL_WORDS.contains(&singular)
    })
}

/// `text` with every phone number and email address in it masked.
pub fn mask_text(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if let Some(end) = phone_at(&chars, i) {
            out.push_str(&mask_middle(&chars[i..end], 3, 2));
            i = end;
        } else if let Some((start, end)) = email_at(&chars, i) {
            // `start` is where the local part began: take back what was copied of it.
            for _ in start..i {
                out.pop();
            }
            out.push_str(&mask_email(&chars[start..end]));
            i = end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// The end of a phone number starting at `i`: `+` then 7 to 15 digits (spaces, dashes and
/// dots between them allowed), not preceded by a word character.
fn phone_at(chars: &[char], i: usize) -> Option<usize> {
    if chars[i] != '+' || (i > 0 && chars[i - 1].is_alphanumeric()) {
        return None;
    }
    let (mut j, mut digits, mut end) = (i + 1, 0, i + 1);
    while j < chars.len() {
        let c = chars[j];
        if c.is_ascii_digit() {
            digits += 1;
            end = j + 1;
        } else if !(matches!(c, ' ' | '-' | '.')
            && j + 1 < chars.len()
            && chars[j + 1].is_ascii_digit())
        {
            break;
        }
        j += 1;
    }
    (7..=15).contains(&digits).then_some(end)
}

/// An email address whose `@` is at `i`: (start of the local part, end of the domain).
fn email_at(chars: &[char], i: usize) -> Option<(usize, usize)> {
    if chars[i] != '@' {
        return None;
    }
    let local = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-');
    let mut start = i;
    while start > 0 && local(chars[start - 1]) {
        start -= 1;
    }
    let mut end = i + 1;
    while end < chars.len() && (chars[end].is_alphanumeric() || matches!(chars[end], '.' | '-')) {
        end += 1;
    }
    while end > i + 1 && chars[end - 1] == '.' {
        end -= 1;
    }
    let domain: String = chars[i + 1..end].iter().collect();
    (start < i && domain.contains('.') && !domain.starts_with('.')).then_some((start, end))
}

fn mask_middle(chars: &[char], keep_start: usize, keep_end: usize) -> String {
    if chars.len() <= keep_start + keep_end {
        return "•".repeat(chars.len());
    }
    let mut out: String = chars[..keep_start].iter().collect();
    out.push_str(&"•".repeat(chars.len() - keep_start - keep_end));
    out.extend(&chars[chars.len() - keep_end..]);
    out
}

fn mask_email(chars: &[char]) -> String {
    let text: String = chars.iter().collect();
    let (local, domain) = text.split_once('@').unwrap_or((&text, ""));
    let first = local.chars().next().map(String::from).unwrap_or_default();
    let tld = domain.rsplit_once('.').map_or("", |(_, t)| t);
    format!("{first}•••@•••.{tld}")
}

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
    fn personal_data_is_masked_in_keys_text_and_embedded_bodies() {
        let body = json!({
            "event": "call_ended",
            "call": {
                "call_id": "call_1",
                "from_number": "+14155550987",
                "transcript": "Agent: Hello. User: This is Dana Ruiz.",
                "retell_llm_dynamic_variables": {"customer_name": "Dana Ruiz"},
                "duration_ms": 65000
            }
        })
        .to_string();
        let mut v = json!({"provider": "retell", "body": body});
        redact(&mut v);
        mask_personal(&mut v);
        let call = &v["body"]["call"];
        assert_eq!(call["from_number"], "+14•••••••87");
        assert_eq!(call["transcript"], HIDDEN);
        assert_eq!(
            call["retell_llm_dynamic_variables"]["customer_name"],
            HIDDEN
        );
        assert_eq!(call["call_id"], "call_1");
        assert_eq!(call["duration_ms"], 65000);
        let text = v.to_string();
        for personal in ["4155550987", "Dana", "Ruiz"] {
            assert!(!text.contains(personal), "{personal} leaked: {text}");
        }
        assert_eq!(
            mask_text("SMS to +49 30 1234567 refused; mail dana.ruiz@example.com bounced"),
            "SMS to +49•••••••••67 refused; mail d•••@•••.com bounced"
        );
        assert_eq!(mask_text("v1.2 at 10:00, 5 + 3"), "v1.2 at 10:00, 5 + 3");
        assert_eq!(mask_text("ops@"), "ops@");
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
