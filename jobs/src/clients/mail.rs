//! Email out: SMTP (lettre) in production, `.eml` files on disk in development.
//!
//! Every message is `multipart/alternative` (plain text and HTML) and carries the caller's
//! Message-ID, so a message sent twice is recognisable in the mail server's log. A send
//! opens its own SMTP connection (no pool: pooled connections need a Tokio runtime to be
//! dropped in, and notification volume does not need them). The SMTP login is handed
//! over by the runtime as [`SmtpCredentials`], which never print the password.

use std::{fmt, path::PathBuf, time::Duration};

use lettre::{
    Address, AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
    transport::smtp::authentication::Credentials,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::{InvalidSettings, SendError, http::error_chain};
use crate::secret::Secret;

/// How email leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    /// Through the SMTP server at `host:port`.
    Smtp,
    /// Into `file_dir`, one `.eml` file per message; nothing is sent.
    File,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTls {
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same host or in tests.
    None,
}

/// The `[mail]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSettings {
    /// `smtp` or `file`.
    pub transport: MailTransport,
    /// SMTP server name (also checked against its TLS certificate).
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// `starttls`, `tls` or `none`.
    pub tls: MailTls,
    /// Sender, e.g. `AskProAI <noreply@askproai.example>`.
    pub from: String,
    /// Directory of the `file` transport, created when missing.
    pub file_dir: String,
    /// Limit on each SMTP step (connect, each command); keep it below the job timeout.
    pub timeout_secs: u64,
}

impl MailSettings {
    /// The first problem that would stop mail from working.
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        let bad = |what: String| Err(InvalidSettings(format!("mail.{what}")));
        if let Err(e) = self.from.parse::<Mailbox>() {
            return bad(format!("from {:?} is not a mailbox: {e}", self.from));
        }
        if self.timeout_secs == 0 {
            return bad("timeout_secs must be at least 1".into());
        }
        match self.transport {
            MailTransport::Smtp if self.host.trim().is_empty() => bad("host is empty".into()),
            MailTransport::Smtp if self.port == 0 => bad("port must not be 0".into()),
            MailTransport::File if self.file_dir.trim().is_empty() => {
                bad("file_dir is empty".into())
            }
            MailTransport::Smtp | MailTransport::File => Ok(()),
        }
    }
}

/// The SMTP login. The user name is an account name, not a credential: `Debug` shows it, so
/// operators can see which login a mailer uses; the password never prints.
#[derive(Clone)]
pub struct SmtpCredentials {
    pub username: String,
    pub password: Secret,
}

impl SmtpCredentials {
    /// The login from the configured user name and password (`SMTP_USERNAME`,
    /// `SMTP_PASSWORD`); `None` when neither is set (no login). One without the other is a
    /// mistake, refused at start-up rather than found at the first send.
    pub fn from_secrets(
        username: Option<&Secret>,
        password: Option<&Secret>,
    ) -> Result<Option<Self>, InvalidSettings> {
        match (username, password) {
            (Some(username), Some(password)) => Ok(Some(Self {
                username: username.expose().to_owned(),
                password: password.clone(),
            })),
            (None, None) => Ok(None),
            _ => Err(InvalidSettings(
                "set both SMTP_USERNAME and SMTP_PASSWORD, or neither".into(),
            )),
        }
    }
}

impl fmt::Debug for SmtpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpCredentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// One email to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// Recipient address.
    pub to: String,
    /// Recipient display name.
    pub to_name: Option<String>,
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
    /// `<unique@domain>`, the same on every attempt of one notification (angle brackets are
    /// added when missing).
    pub message_id: String,
}

/// Sends [`OutgoingEmail`]s.
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

enum Transport {
    Smtp {
        smtp: AsyncSmtpTransport<Tokio1Executor>,
        server: String,
    },
    File {
        files: AsyncFileTransport<Tokio1Executor>,
        dir: PathBuf,
    },
}

impl Mailer {
    /// A mailer for `settings`, logging in with `credentials` (SMTP only; `None`: no login).
    pub fn new(
        settings: &MailSettings,
        credentials: Option<SmtpCredentials>,
    ) -> Result<Mailer, InvalidSettings> {
        settings.validate()?;
        let from = settings
            .from
            .parse()
            .map_err(|e| InvalidSettings(format!("mail.from: {e}")))?;
        let transport = match settings.transport {
            MailTransport::Smtp => smtp(settings, credentials)?,
            MailTransport::File => {
                let dir = PathBuf::from(&settings.file_dir);
                std::fs::create_dir_all(&dir).map_err(|e| {
                    InvalidSettings(format!("mail.file_dir: creating {}: {e}", dir.display()))
                })?;
                Transport::File {
                    files: AsyncFileTransport::new(&dir),
                    dir,
                }
            }
        };
        Ok(Mailer { from, transport })
    }

    /// Send `email`. `Ok` means the server (or the file system) took it.
    pub async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        let message = self.message(email)?;
        match &self.transport {
            Transport::Smtp { smtp, server } => {
                // A client span of its own, as for HTTP providers (SMTP carries no trace
                // header: the span is the mail's part of the trace).
                let span = tracing::info_span!(
                    "smtp send",
                    otel.name = "SMTP send",
                    otel.kind = "client",
                    server.address = server.as_str(),
                    otel.status_code = tracing::field::Empty,
                );
                let sent = smtp.send(message).instrument(span.clone()).await;
                if sent.is_err() {
                    span.record("otel.status_code", "ERROR");
                }
                sent.map(drop).map_err(|e| classify(&e, server))
            }
            Transport::File { files, dir } => files.send(message).await.map(drop).map_err(|e| {
                SendError::transient(format!(
                    "writing into {}: {}",
                    dir.display(),
                    error_chain(&e)
                ))
            }),
        }
    }

    fn message(&self, email: &OutgoingEmail) -> Result<Message, SendError> {
        let address: Address = email.to.trim().parse().map_err(|e| {
            SendError::Permanent(format!("invalid recipient address {:?}: {e}", email.to))
        })?;
        let id = email.message_id.trim();
        if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(SendError::Permanent(format!("invalid Message-ID {id:?}")));
        }
        let id = if id.starts_with('<') {
            id.to_owned()
        } else {
            format!("<{id}>")
        };
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(email.to_name.clone(), address))
            .subject(email.subject.as_str())
            .message_id(Some(id))
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map_err(|e| SendError::Permanent(format!("building the message: {e}")))
    }
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let to = match &self.transport {
            Transport::Smtp { server, .. } => format!("smtp {server}"),
            Transport::File { dir, .. } => format!("files in {}", dir.display()),
        };
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .field("to", &to)
            .finish()
    }
}

fn smtp(
    settings: &MailSettings,
    credentials: Option<SmtpCredentials>,
) -> Result<Transport, InvalidSettings> {
    type Smtp = AsyncSmtpTransport<Tokio1Executor>;
    let host = settings.host.trim();
    let builder = match settings.tls {
        MailTls::Starttls => Smtp::starttls_relay(host),
        MailTls::Tls => Smtp::relay(host),
        MailTls::None => Ok(Smtp::builder_dangerous(host)),
    }
    .map_err(|e| InvalidSettings(format!("mail.host {host:?}: {}", error_chain(&e))))?;
    let mut builder = builder
        .port(settings.port)
        .timeout(Some(Duration::from_secs(settings.timeout_secs)));
    if let Some(c) = credentials {
        builder = builder.credentials(Credentials::new(c.username, c.password.expose().to_owned()));
    }
    let server = format!("{host}:{}", settings.port);
    Ok(Transport::Smtp {
        smtp: builder.build(),
        server,
    })
}

/// 5xx replies and client-side problems (no usable auth mechanism, a message the client
/// refuses) cannot be fixed by retrying; everything else (refused or dropped connections,
/// timeouts, TLS hiccups, 4xx "try later" replies) might be.
fn classify(e: &lettre::transport::smtp::Error, server: &str) -> SendError {
    let reason = format!("SMTP {server}: {}", error_chain(e));
    if e.is_permanent() || e.is_client() {
        SendError::Permanent(reason)
    } else {
        SendError::transient(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> MailSettings {
        MailSettings {
            transport: MailTransport::Smtp,
            host: "smtp.example.com".into(),
            port: 587,
            tls: MailTls::Starttls,
            from: "AskProAI <noreply@askproai.example>".into(),
            file_dir: "var/mail".into(),
            timeout_secs: 10,
        }
    }

    #[test]
    fn settings_read_as_configured() {
        let toml_like = serde_json::json!({
            "transport": "smtp", "host": "smtp.example.com", "port": 587, "tls": "starttls",
            "from": "AskProAI <noreply@askproai.example>", "file_dir": "var/mail",
            "timeout_secs": 10
        });
        assert_eq!(
            serde_json::from_value::<MailSettings>(toml_like).unwrap(),
            settings()
        );
        assert_eq!(
            serde_json::from_value::<MailTls>("none".into()).unwrap(),
            MailTls::None
        );
        assert_eq!(
            serde_json::from_value::<MailTls>("tls".into()).unwrap(),
            MailTls::Tls
        );
        assert_eq!(
            serde_json::from_value::<MailTransport>("file".into()).unwrap(),
            MailTransport::File
        );
    }

    #[test]
    fn bad_settings_are_named() {
        assert_eq!(settings().validate(), Ok(()));
        let cases = [
            (
                MailSettings {
                    from: "nobody".into(),
                    ..settings()
                },
                "mail.from",
            ),
            (
                MailSettings {
                    host: " ".into(),
                    ..settings()
                },
                "mail.host",
            ),
            (
                MailSettings {
                    port: 0,
                    ..settings()
                },
                "mail.port",
            ),
            (
                MailSettings {
                    timeout_secs: 0,
                    ..settings()
                },
                "mail.timeout_secs",
            ),
            (
                MailSettings {
                    transport: MailTransport::File,
                    file_dir: String::new(),
                    ..settings()
                },
                "mail.file_dir",
            ),
        ];
        for (s, key) in cases {
            let e = s.validate().unwrap_err();
            assert!(e.0.starts_with(key), "{key}: {e}");
            assert!(Mailer::new(&s, None).is_err(), "{key}");
        }
    }

    #[test]
    fn every_tls_mode_builds_and_the_password_never_prints() {
        let login = SmtpCredentials {
            username: "mailer".into(),
            password: "hunter2".into(),
        };
        for tls in [MailTls::Starttls, MailTls::Tls, MailTls::None] {
            let mailer = Mailer::new(&MailSettings { tls, ..settings() }, Some(login.clone()));
            let printed = format!("{:?} {login:?}", mailer.unwrap());
            assert!(
                printed.contains("smtp.example.com:587") && printed.contains("mailer"),
                "{printed}"
            );
            assert!(!printed.contains("hunter2"), "{printed}");
        }
    }
}
