//! Where long-wait notices go: a Slack-compatible webhook (`POST {"text": ...}`) and email
//! through the app's [`Mailer`]. Each destination is sent to on its own and reports its own
//! failure, so one that is down neither holds up nor repeats the others.
//!
//! Nothing here prints the webhook URL beyond its scheme and host: reqwest's errors are
//! stripped of their URL before they are written anywhere.

use std::{fmt::Write as _, time::Duration};

use switchboard_jobs::clients::mail::{Mailer, OutgoingEmail};

use crate::config::{AlertSettings, waits::redact_webhook};

/// The id of the webhook destination (the others are `email <address>`).
pub const WEBHOOK: &str = "webhook";

/// Which notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The queue went over its threshold.
    LongWait,
    /// The queue is back under it.
    Recovered,
}

impl Kind {
    /// The name in events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::LongWait => "long_wait",
            Kind::Recovered => "recovered",
        }
    }
}

/// One notice about one queue.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    pub kind: Kind,
    /// The deployment (the key prefix), so notices of several deployments tell apart.
    pub deployment: &'a str,
    pub queue: &'a str,
    pub wait_secs: f64,
    pub threshold_secs: u64,
    /// Whether the queue is paused (then the wait is no surprise, but still worth saying).
    pub paused: bool,
    /// When the episode began (ms): part of the email's Message-ID, so a notice sent twice
    /// (a leader that died between sending and recording) is recognisable as one.
    pub since_ms: u64,
    /// How long the episode lasted and its longest wait (for `Recovered`).
    pub lasted_secs: f64,
    pub peak_secs: f64,
}

impl Notice<'_> {
    /// The message for a chat webhook: one line of Slack `mrkdwn` (an emoji, the queue as
    /// code); [`plain`](Self::plain) is the same for email.
    pub fn text(&self) -> String {
        let emoji = match self.kind {
            Kind::LongWait => ":warning:",
            Kind::Recovered => ":white_check_mark:",
        };
        format!("{emoji} {}", self.sentence(&format!("`{}`", self.queue)))
    }

    /// The message in plain words.
    pub fn plain(&self) -> String {
        self.sentence(self.queue)
    }

    fn sentence(&self, queue: &str) -> String {
        let head = format!("Switchboard ({})", self.deployment);
        let wait = format!(
            "the oldest pending job has waited {} (threshold {} s)",
            human(self.wait_secs),
            self.threshold_secs
        );
        match self.kind {
            Kind::LongWait => format!(
                "{head}: long wait on queue {queue}: {wait}.{}",
                if self.paused {
                    " The queue is paused."
                } else {
                    ""
                }
            ),
            Kind::Recovered => format!(
                "{head}: queue {queue} recovered: {wait}. The long wait lasted {}; the longest wait seen was {}.",
                human(self.lasted_secs),
                human(self.peak_secs)
            ),
        }
    }

    fn subject(&self) -> String {
        match self.kind {
            Kind::LongWait => format!(
                "[Switchboard {}] long wait on {}: {} (threshold {} s)",
                self.deployment,
                self.queue,
                human(self.wait_secs),
                self.threshold_secs
            ),
            Kind::Recovered => {
                format!("[Switchboard {}] {} recovered", self.deployment, self.queue)
            }
        }
    }
}

/// Seconds for people: `2.3 s`, `75 s`, `12 min 5 s`, `3 h 20 min`.
pub fn human(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 10.0 && secs.fract() != 0.0 {
        return format!("{secs:.1} s");
    }
    let s = secs.round() as u64;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// Sends notices to the configured destinations.
pub struct Notifier {
    webhook: Option<(reqwest::Client, String)>,
    email_to: Vec<String>,
    mailer: Option<Mailer>,
}

impl Notifier {
    /// The destinations of `alerts`; `mailer` must be given when it names addresses.
    pub fn new(alerts: &AlertSettings, mailer: Option<Mailer>) -> Result<Self, String> {
        if !alerts.email_to.is_empty() && mailer.is_none() {
            return Err("alerts.email_to needs a mailer ([mail])".to_owned());
        }
        let webhook = alerts.webhook().map(|url| {
            let timeout = Duration::from_secs(alerts.timeout_secs.max(1));
            let client = reqwest::Client::builder()
                .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .timeout(timeout)
                .build()
                .expect("the HTTP client's TLS backend initialises");
            (client, url.to_owned())
        });
        Ok(Self {
            webhook,
            email_to: alerts.email_to.clone(),
            mailer,
        })
    }

    /// Every destination's id, in a stable order.
    pub fn destinations(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.webhook.is_some() {
            out.push(WEBHOOK.to_owned());
        }
        out.extend(self.email_to.iter().map(|a| format!("email {a}")));
        out
    }

    /// Send `notice` to destination `id` (one of [`destinations`](Self::destinations)). The
    /// error is one line without the webhook's key.
    pub async fn send(&self, id: &str, notice: &Notice<'_>) -> Result<(), String> {
        if id == WEBHOOK {
            let (client, url) = self.webhook.as_ref().ok_or("no webhook configured")?;
            return post(client, url, notice).await;
        }
        let to = id.strip_prefix("email ").ok_or("unknown destination")?;
        let mailer = self.mailer.as_ref().ok_or("no mailer configured")?;
        let text = notice.plain();
        let email = OutgoingEmail {
            to: to.to_owned(),
            to_name: None,
            subject: notice.subject(),
            html: format!("<p>{}</p>", escape(&text)),
            text,
            message_id: format!(
                "waits.{}.{}.{}.{}@{}.switchboard",
                notice.kind.as_str(),
                notice.queue,
                notice.since_ms,
                self.email_to.iter().position(|a| a == to).unwrap_or(0),
                notice.deployment
            ),
        };
        mailer
            .send(&email)
            .await
            .map_err(|e| format!("email to {to}: {e}"))
    }
}

async fn post(client: &reqwest::Client, url: &str, notice: &Notice<'_>) -> Result<(), String> {
    let at = redact_webhook(url);
    let body = serde_json::json!({ "text": notice.text() });
    let answer = client
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("webhook {at}: {}", chain(&e.without_url())))?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("webhook {at}: answered HTTP {}", status.as_u16()))
    }
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            let _ = write!(out, ": {text}");
        }
        source = s.source();
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(kind: Kind) -> Notice<'static> {
        Notice {
            kind,
            deployment: "sb",
            queue: "webhooks",
            wait_secs: 75.4,
            threshold_secs: 60,
            paused: false,
            since_ms: 1,
            lasted_secs: 250.0,
            peak_secs: 130.0,
        }
    }

    #[test]
    fn texts_name_the_queue_the_wait_and_the_threshold() {
        let long = notice(Kind::LongWait).text();
        assert_eq!(
            long,
            ":warning: Switchboard (sb): long wait on queue `webhooks`: the oldest pending job has waited 75 s (threshold 60 s)."
        );
        let back = notice(Kind::Recovered).text();
        assert!(
            back.contains("`webhooks` recovered")
                && back.contains("lasted 4 min 10 s")
                && back.contains("longest wait seen was 2 min 10 s"),
            "{back}"
        );
        assert_eq!(human(9000.0), "2 h 30 min");
        assert_eq!(
            human(2.34),
            "2.3 s",
            "a wait near a small threshold keeps its tenth"
        );
        let plain = notice(Kind::LongWait).plain();
        assert_eq!(
            plain,
            "Switchboard (sb): long wait on queue webhooks: the oldest pending job has waited 75 s (threshold 60 s)."
        );
    }

    #[test]
    fn destinations_are_the_webhook_then_each_address() {
        let alerts = AlertSettings {
            webhook_url: "https://hooks.example/T/B/key".into(),
            ..AlertSettings::default()
        };
        let n = Notifier::new(&alerts, None).unwrap();
        assert_eq!(n.destinations(), ["webhook"]);
        let alerts = AlertSettings {
            email_to: vec!["ops@example.com".into()],
            ..AlertSettings::default()
        };
        assert!(
            Notifier::new(&alerts, None).is_err(),
            "email needs a mailer"
        );
    }
}
