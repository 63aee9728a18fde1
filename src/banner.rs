//! What a starting process says about itself, once: the roles it runs, where its pages and
//! endpoints are, which Redis and database it uses (credentials masked), where mail goes and
//! which development stand-ins stand in for which provider. After that block a healthy
//! process stays quiet.
//!
//! A leaf: it reads the settings and formats; `app` decides when to print it.

use std::{fmt::Write as _, net::SocketAddr};

use switchboard_jobs::clients::mail::MailTransport;

use crate::config::Settings;

/// What `app` knows once everything is up.
pub struct Startup<'a> {
    /// The roles running, e.g. `["fleet", "maintenance", "http", "ingest"]`.
    pub roles: &'a [&'a str],
    /// The HTTP listener's address, when this process serves HTTP.
    pub http: Option<SocketAddr>,
    /// Whether the webhook endpoints are served.
    pub ingest: bool,
    /// Whether this process runs handlers (so mail and provider calls start here).
    pub fleet: bool,
    /// Whether the development stand-ins are served under `/dev/`.
    pub stand_ins: bool,
    /// The async runtime's threads and the machine's cores (`[runtime]`).
    pub threads: (usize, usize),
}

/// The block, one fact per line, without trailing newline.
pub fn render(settings: &Settings, s: &Startup<'_>) -> String {
    let (threads, cores) = s.threads;
    let mut out = format!(
        "switchboard {} running: {} ({threads} runtime thread{} on {cores} core{})",
        env!("CARGO_PKG_VERSION"),
        s.roles.join(", "),
        if threads == 1 { "" } else { "s" },
        if cores == 1 { "" } else { "s" },
    );
    let mut line = |label: &str, value: &str| {
        let _ = write!(out, "\n  {label:<10} {value}");
    };
    if let Some(addr) = s.http {
        let base = format!("http://{addr}");
        if settings.dashboard.enabled {
            let secrets = &settings.secrets;
            let open = secrets.dashboard_token.is_none()
                && secrets.dashboard_password.is_none()
                && secrets.dashboard_operators.is_none();
            let note = if open {
                " (no credentials: open to loopback requests only)"
            } else {
                ""
            };
            line("dashboard", &format!("{base}/dashboard{note}"));
        }
        line("metrics", &format!("{base}/metrics"));
        if s.ingest {
            line(
                "webhooks",
                &format!("{base}/webhooks/retell, /webhooks/calcom, /webhooks/stripe"),
            );
        }
    }
    line(
        "redis",
        &format!(
            "{} (key prefix {})",
            crate::config::redact_url(&settings.redis.url),
            settings.queue.prefix
        ),
    );
    if s.fleet {
        line(
            "database",
            &crate::config::redact_url(&settings.database.url),
        );
        let mail = match settings.mail.transport {
            MailTransport::File => {
                format!("files under {} (nothing is sent)", settings.mail.file_dir)
            }
            MailTransport::Smtp => format!("SMTP {}:{}", settings.mail.host, settings.mail.port),
        };
        line("mail", &mail);
    }
    if s.roles.contains(&"maintenance") && !settings.waits.is_empty() {
        line(
            "waits",
            &format!(
                "{} queue(s) watched, notices to {} (by the maintenance leader)",
                settings.waits.len(),
                settings.alerts.destinations()
            ),
        );
    }
    let standing_in = stand_ins(settings, s);
    if !standing_in.is_empty() {
        line(
            "stand-ins",
            &format!(
                "{} (development, under /dev/; set the providers' credentials to use them for real)",
                standing_in.join(", ")
            ),
        );
    }
    if s.ingest && s.stand_ins {
        let dev: Vec<&str> = [
            ("Retell", settings.secrets.retell_webhook_keys.is_empty()),
            (
                "Cal.com",
                settings.secrets.calcom_webhook_secrets.is_empty(),
            ),
            ("Stripe", settings.secrets.stripe_webhook_secrets.is_empty()),
        ]
        .into_iter()
        .filter_map(|(name, unset)| unset.then_some(name))
        .collect();
        if !dev.is_empty() {
            line(
                "secrets",
                &format!(
                    "{} webhooks verified with the published development secrets",
                    dev.join(", ")
                ),
            );
        }
    }
    out
}

/// The providers the stand-ins answer for in this process.
fn stand_ins(settings: &Settings, s: &Startup<'_>) -> Vec<&'static str> {
    if !(s.stand_ins && s.fleet) {
        return Vec::new();
    }
    let secrets = &settings.secrets;
    [
        ("Cal.com", secrets.calcom_api_key.is_none()),
        ("Stripe", secrets.stripe_secret_key.is_none()),
        (
            "SMS",
            secrets.sms_account_sid.is_none() || secrets.sms_auth_token.is_none(),
        ),
    ]
    .into_iter()
    .filter_map(|(name, standing)| standing.then_some(name))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_names_every_door_and_masks_credentials() {
        let mut settings = Settings::defaults();
        settings.redis.url = "redis://:hunter2@10.0.0.5:6379".into();
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let text = render(
            &settings,
            &Startup {
                roles: &["fleet", "maintenance", "scheduler", "http", "ingest"],
                http: Some(addr),
                ingest: true,
                fleet: true,
                stand_ins: true,
                threads: (1, 2),
            },
        );
        for want in [
            "running: fleet, maintenance, scheduler, http, ingest (1 runtime thread on 2 cores)",
            "dashboard  http://127.0.0.1:8080/dashboard",
            "metrics    http://127.0.0.1:8080/metrics",
            "webhooks   http://127.0.0.1:8080/webhooks/retell",
            "(key prefix sb)",
            "database   sqlite://var/switchboard.db",
            "mail       files under var/mail",
            "stand-ins  Cal.com, Stripe, SMS",
            "secrets    Retell, Cal.com, Stripe webhooks",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.lines().count() <= 9, "{text}");
    }

    #[test]
    fn watched_waits_are_named_without_the_webhook_key() {
        let mut settings = Settings::defaults();
        settings.waits.insert("webhooks".into(), 60);
        settings.alerts.webhook_url = "https://hooks.slack.com/services/T0/B0/hunter2".into();
        let text = render(
            &settings,
            &Startup {
                roles: &["fleet", "maintenance"],
                http: None,
                ingest: false,
                fleet: true,
                stand_ins: false,
                threads: (4, 4),
            },
        );
        assert!(
            text.contains(
                "waits      1 queue(s) watched, notices to webhook https://hooks.slack.com/…"
            ),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }
}
