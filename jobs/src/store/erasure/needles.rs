//! What identifies one person in stored text, and how text and job payloads are rid of it.
//!
//! Two kinds of needle:
//! * **strong**: a phone number (as stored, E.164, URL-encoded `%2B...`, digits only) or an
//!   email address. A text holding one of them is the person's, wherever it is.
//! * **names**: the names the database knew for them. A name alone is not unique, so names
//!   are only replaced inside texts and jobs already found by a strong needle.
//!
//! Matching is ASCII case-insensitive (emails, `%2b`); every needle found becomes
//! [`ERASED`].

use serde_json::Value;

/// What an erased identifier becomes inside a text.
pub const ERASED: &str = "[erased]";

/// Keys of job payloads (and of the provider bodies they carry) whose values are the
/// person's transcript, recording or name: a payload of the person loses them entirely.
/// Each is optional in the argument types that have it, so the job still decodes.
pub const PERSONAL_FIELDS: &[&str] = &[
    "transcript",
    "transcript_object",
    "transcript_with_tool_calls",
    "recording_url",
    "public_log_url",
    "call_summary",
    "collected_dynamic_variables",
    "customer_name",
    "customer_email",
    "customer_phone",
    "patient_name",
    "to_name",
    "responses",
];

/// Shortest name that is replaced (shorter ones would hit unrelated words).
const MIN_NAME_LEN: usize = 3;
/// Fewest digits a phone number's digits-only form must have to be a needle.
const MIN_PHONE_DIGITS: usize = 7;

/// The needles of one person.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needles {
    /// Lowercase, longest first (so `%2b4915...` goes before `4915...`).
    strong: Vec<String>,
    /// Lowercase, longest first.
    names: Vec<String>,
}

impl Needles {
    /// Add a phone number in every form it may be stored in.
    pub fn add_phone(&mut self, phone: &str) {
        let phone = phone.trim();
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < MIN_PHONE_DIGITS {
            return;
        }
        let forms = [
            phone.to_ascii_lowercase(),
            format!("+{digits}"),
            format!("%2b{digits}"),
            digits,
        ];
        for form in forms {
            push_sorted(&mut self.strong, form);
        }
    }

    /// Add an email address.
    pub fn add_email(&mut self, email: &str) {
        let email = email.trim();
        if email.contains('@') {
            push_sorted(&mut self.strong, email.to_ascii_lowercase());
        }
    }

    /// Add a name (ignored when too short to be told from ordinary words).
    pub fn add_name(&mut self, name: &str) {
        let name = name.trim();
        if name.chars().count() >= MIN_NAME_LEN && name != ERASED {
            push_sorted(&mut self.names, name.to_ascii_lowercase());
        }
    }

    /// Whether there is nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.strong.is_empty()
    }

    /// The strong needles a database `LIKE` pre-filter needs: digits-only phone forms cover
    /// the other phone forms.
    pub fn like_terms(&self) -> Vec<&str> {
        let mut terms: Vec<&str> = Vec::new();
        for n in &self.strong {
            let covered = terms.iter().any(|t| n.contains(t));
            if !covered && !n.starts_with('+') && !n.starts_with("%2b") {
                terms.push(n);
            }
        }
        terms.retain(|t| !t.is_empty());
        terms
    }

    /// Whether `text` holds a strong needle.
    pub fn matches(&self, text: &str) -> bool {
        let lower = text.to_ascii_lowercase();
        self.strong.iter().any(|n| lower.contains(n.as_str()))
    }

    /// `text` with every strong needle and name replaced; `None` when nothing was found.
    pub fn scrub(&self, text: &str) -> Option<String> {
        let mut out = text.to_owned();
        let mut changed = false;
        for needle in self.strong.iter().chain(&self.names) {
            if let Some(next) = replace_ci(&out, needle) {
                out = next;
                changed = true;
            }
        }
        changed.then_some(out)
    }

    /// A job payload (JSON) of the person rid of them: [`PERSONAL_FIELDS`] dropped at any
    /// depth, needles replaced in every string, and a string that holds JSON itself (the raw
    /// body of a webhook job) treated the same way. `None` when the payload does not hold a
    /// strong needle (then it is not the person's, and left alone).
    pub fn scrub_json(&self, json: &str) -> Option<String> {
        if !self.matches(json) {
            return None;
        }
        let Ok(mut value) = serde_json::from_str::<Value>(json) else {
            return self.scrub(json);
        };
        self.scrub_value(&mut value);
        Some(value.to_string())
    }

    fn scrub_value(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Some(inner) = self.scrub_embedded(s).or_else(|| self.scrub(s)) {
                    *s = inner;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_value(v)),
            Value::Object(map) => {
                map.retain(|k, _| !PERSONAL_FIELDS.contains(&k.as_str()));
                map.values_mut().for_each(|v| self.scrub_value(v));
            }
            _ => {}
        }
    }

    /// A string holding a JSON object or array, scrubbed as JSON (so the fields inside it
    /// are dropped too) and written back compactly.
    fn scrub_embedded(&self, s: &str) -> Option<String> {
        let t = s.trim_start();
        if !(t.starts_with('{') || t.starts_with('[')) {
            return None;
        }
        let mut inner: Value = serde_json::from_str(s).ok()?;
        if !inner.is_object() && !inner.is_array() {
            return None;
        }
        self.scrub_value(&mut inner);
        Some(inner.to_string())
    }
}

fn push_sorted(list: &mut Vec<String>, item: String) {
    if !item.is_empty() && !list.contains(&item) {
        list.push(item);
        list.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }
}

/// `haystack` with every ASCII case-insensitive occurrence of `needle` (lowercase) replaced
/// by [`ERASED`]; `None` when there is none. ASCII lowercasing keeps byte offsets, so the
/// positions found in the lowercase copy are valid in the original.
fn replace_ci(haystack: &str, needle: &str) -> Option<String> {
    let lower = haystack.to_ascii_lowercase();
    let mut out = String::with_capacity(haystack.len());
    let mut last = 0;
    for (at, _) in lower.match_indices(needle) {
        out.push_str(&haystack[last..at]);
        out.push_str(ERASED);
        last = at + needle.len();
    }
    if last == 0 {
        return None;
    }
    out.push_str(&haystack[last..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dana() -> Needles {
        let mut n = Needles::default();
        n.add_phone("+14155550123");
        n.add_email("Dana.Ruiz@example.com");
        n.add_name("Dana Ruiz");
        n
    }

    #[test]
    fn every_form_of_the_number_and_any_case_of_the_email_is_replaced() {
        let n = dana();
        let text = "To=%2B14155550123&x=14155550123 +14155550123 DANA.RUIZ@EXAMPLE.COM, Dana Ruiz";
        assert!(n.matches(text));
        assert_eq!(
            n.scrub(text).unwrap(),
            "To=[erased]&x=[erased] [erased] [erased], [erased]"
        );
        assert_eq!(n.scrub("+14155550987 Harbor Dental"), None);
        assert!(!n.matches("only Dana Ruiz, a name alone"));
        assert_eq!(n.like_terms(), vec!["dana.ruiz@example.com", "14155550123"]);
    }

    #[test]
    fn payloads_lose_personal_fields_and_embedded_bodies_are_scrubbed_as_json() {
        let n = dana();
        let body = r#"{"call":{"from_number":"+14155550123","to_number":"+14155550987","transcript":"hi","call_analysis":{"call_summary":"s","custom_analysis_data":{"customer_name":"Dana Ruiz","service":"cleaning"}}}}"#;
        let args = serde_json::json!({"provider": "retell", "body": body}).to_string();
        let out: Value = serde_json::from_str(&n.scrub_json(&args).unwrap()).unwrap();
        let inner: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
        assert_eq!(inner["call"]["from_number"], ERASED);
        assert_eq!(inner["call"]["to_number"], "+14155550987");
        assert!(inner["call"].get("transcript").is_none());
        let custom = &inner["call"]["call_analysis"]["custom_analysis_data"];
        assert!(custom.get("customer_name").is_none());
        assert_eq!(custom["service"], "cleaning");
        assert_eq!(n.scrub_json(r#"{"a":"Dana Ruiz"}"#), None, "a name alone");
    }
}
