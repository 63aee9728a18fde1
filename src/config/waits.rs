//! Long-wait notifications: `[waits]` (queue -> seconds, Horizon's `waits`) says when a
//! queue's oldest pending job has waited too long, `[alerts]` where the engine says so (a
//! Slack-compatible webhook, email) and how often. `crate::maintenance::waits` acts on them.
//!
//! The webhook URL is a credential (a Slack incoming webhook's path is its key): it is meant
//! to come from the environment (`SWITCHBOARD_ALERTS__WEBHOOK_URL`), and only
//! [`redact_webhook`] of it is ever printed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::validate_name;

/// Longest threshold accepted: a week.
const MAX_THRESHOLD_SECS: u64 = 7 * 86_400;

/// See `[alerts]` in `config/default.toml`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Slack-compatible incoming webhook (`POST {"text": ...}`); empty: none.
    pub webhook_url: String,
    /// Addresses that get each notice by email (through `[mail]`); empty: none.
    pub email_to: Vec<String>,
    /// After a long-wait notice for a queue, no new one for it within this long: a queue
    /// that recovers and goes over again within it is not notified again until it has passed.
    pub cooldown_secs: u64,
    /// How often the leader compares each queue's oldest wait with its threshold.
    pub check_interval_ms: u64,
    /// Limit on each webhook request.
    pub timeout_secs: u64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            webhook_url: String::new(),
            email_to: Vec::new(),
            cooldown_secs: 900,
            check_interval_ms: 10_000,
            timeout_secs: 10,
        }
    }
}

impl std::fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSettings")
            .field("webhook_url", &redact_webhook(&self.webhook_url))
            .field("email_to", &self.email_to)
            .field("cooldown_secs", &self.cooldown_secs)
            .field("check_interval_ms", &self.check_interval_ms)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl AlertSettings {
    /// The webhook URL when one is configured.
    pub fn webhook(&self) -> Option<&str> {
        Some(self.webhook_url.trim()).filter(|u| !u.is_empty())
    }

    /// Where notices go, as it may be printed: `webhook https://host/…, email a@b`, or
    /// `nowhere`.
    pub fn destinations(&self) -> String {
        let mut out: Vec<String> = self
            .webhook()
            .map(|u| format!("webhook {}", redact_webhook(u)))
            .into_iter()
            .collect();
        out.extend(self.email_to.iter().map(|a| format!("email {a}")));
        if out.is_empty() {
            "nowhere".to_owned()
        } else {
            out.join(", ")
        }
    }
}

/// A webhook URL as it may be printed: scheme and host, the rest (which holds the key) cut.
pub fn redact_webhook(url: &str) -> String {
    match reqwest::Url::parse(url.trim()) {
        Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("<no host>")),
        Err(_) if url.trim().is_empty() => String::new(),
        Err(_) => "<not a URL>".to_owned(),
    }
}

/// One line per problem with `waits` and `alerts`.
pub(super) fn problems(waits: &BTreeMap<String, u64>, alerts: &AlertSettings) -> Vec<String> {
    let mut out = Vec::new();
    for (queue, &secs) in waits {
        if validate_name(queue).is_err() {
            let hint = queue.split_once(':').map_or(String::new(), |(_, q)| {
                format!(" (name the queue alone, without Horizon's connection: {q:?} = {secs})")
            });
            out.push(format!(
                "waits.{queue:?} is not a queue name: letters, digits, '-', '_' or '.'{hint}"
            ));
        }
        if !(1..=MAX_THRESHOLD_SECS).contains(&secs) {
            out.push(format!(
                "waits.{queue} = {secs} must be between 1 and {MAX_THRESHOLD_SECS} seconds (leave the queue out to watch nothing)"
            ));
        }
    }
    if !(100..=3_600_000).contains(&alerts.check_interval_ms) {
        out.push(format!(
            "alerts.check_interval_ms = {} must be between 100 and 3600000",
            alerts.check_interval_ms
        ));
    }
    if alerts.cooldown_secs > MAX_THRESHOLD_SECS {
        out.push(format!(
            "alerts.cooldown_secs = {} must be at most {MAX_THRESHOLD_SECS}",
            alerts.cooldown_secs
        ));
    }
    if !(1..=60).contains(&alerts.timeout_secs) {
        out.push(format!(
            "alerts.timeout_secs = {} must be between 1 and 60",
            alerts.timeout_secs
        ));
    }
    if let Some(url) = alerts.webhook() {
        let ok = reqwest::Url::parse(url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        if !ok {
            out.push(format!(
                "alerts.webhook_url ({}) must be an http:// or https:// URL",
                redact_webhook(url)
            ));
        }
    }
    for address in &alerts.email_to {
        if !plausible_address(address) {
            out.push(format!(
                "alerts.email_to: {address:?} is not an email address"
            ));
        }
    }
    if !waits.is_empty() && alerts.webhook().is_none() && alerts.email_to.is_empty() {
        out.push(
            "waits names queues but no notice could go anywhere: set alerts.webhook_url (SWITCHBOARD_ALERTS__WEBHOOK_URL) or alerts.email_to"
                .to_owned(),
        );
    }
    out
}

/// `local@domain` without blanks: the mailer checks the rest when it sends.
fn plausible_address(address: &str) -> bool {
    address.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && !address.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_url_prints_without_its_key() {
        let url = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX";
        assert_eq!(redact_webhook(url), "https://hooks.slack.com/…");
        let alerts = AlertSettings {
            webhook_url: url.into(),
            ..AlertSettings::default()
        };
        assert!(!format!("{alerts:?}").contains("secret"));
        assert_eq!(alerts.destinations(), "webhook https://hooks.slack.com/…");
        let bad = AlertSettings {
            webhook_url: "ftp://example.com/secret".into(),
            ..AlertSettings::default()
        };
        let text = problems(&BTreeMap::new(), &bad).join("\n");
        assert!(
            text.contains("alerts.webhook_url (ftp://example.com/…)"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn addresses_are_plausible_or_named() {
        assert!(plausible_address("ops@askproai.example"));
        for bad in ["ops", "@example.com", "ops@", "o ps@example.com", "a@b@c"] {
            assert!(!plausible_address(bad), "{bad}");
        }
    }
}
