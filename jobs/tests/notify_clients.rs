//! The notification transports against real counterparts: email into a real SMTP server
//! (`tests/smtp/sink.py`, Python aiosmtpd) and into files, SMS against a mock Twilio API.
//!
//! Every test has its own sink process (port 0), directory and mock server, so they run in
//! parallel. The sink stores a message before it answers "250", so a successful send means
//! the file is there; reading still polls with a deadline rather than trusting that.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use switchboard_jobs::clients::{
    SendError,
    mail::{MailSettings, MailTls, MailTransport, Mailer, OutgoingEmail},
    sms::{SmsClient, SmsSettings},
};
use switchboard_jobs::contract::{Provider, mocks};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

const SINK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/smtp/sink.py");
const DEADLINE: Duration = Duration::from_secs(10);
/// A well-formed account SID: Twilio's document wants `AC` and 32 hex digits.
const ACCOUNT: &str = "AC5e1f0c0a7b9d4e3f8a6b2c1d0e9f8a7b";
const MESSAGES: &str = "/2010-04-01/Accounts/AC5e1f0c0a7b9d4e3f8a6b2c1d0e9f8a7b/Messages.json";

/// A running `sink.py`, killed when dropped.
struct Sink {
    _process: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sink {
    async fn start(extra: &[&str]) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let mut process = Command::new("python3")
            .arg(SINK)
            .arg("--dir")
            .arg(dir.path())
            .args(["--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs (and aiosmtpd is installed: pip install aiosmtpd)");
        let stdout = process.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(DEADLINE, BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("the sink says READY in time")
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the sink said {line:?} (is aiosmtpd installed?)"));
        Sink {
            _process: process,
            port,
            dir,
        }
    }

    /// The stored messages once there are `n` of them, oldest first.
    async fn messages(&self, n: usize) -> Vec<String> {
        wait_for_eml(self.dir.path(), n).await
    }

    fn stored(&self) -> usize {
        eml_files(self.dir.path()).len()
    }
}

fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    files.sort();
    files
}

async fn wait_for_eml(dir: &Path, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let files = eml_files(dir);
        if files.len() >= n {
            return files
                .iter()
                .map(|f| std::fs::read_to_string(f).unwrap())
                .collect();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{n} messages in {}, found {}",
            dir.display(),
            files.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A local port nothing listens on (it was free a moment ago).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn smtp_settings(port: u16) -> MailSettings {
    MailSettings {
        transport: MailTransport::Smtp,
        host: "127.0.0.1".into(),
        port,
        tls: MailTls::None,
        from: "AskProAI <noreply@askproai.example>".into(),
        file_dir: "unused".into(),
        timeout_secs: 5,
    }
}

fn email(to: &str) -> OutgoingEmail {
    OutgoingEmail {
        to: to.into(),
        to_name: Some("Dana Ruiz".into()),
        subject: "Your appointment is confirmed".into(),
        text: "Hello Dana, see you on Tuesday at 09:30.\n".into(),
        html: "<p>Hello Dana, see you on <b>Tuesday</b> at 09:30.</p>\n".into(),
        message_id: "<notif-123@askproai.example>".into(),
    }
}

/// The value of header `name` (case-insensitive) in the header section.
fn header<'a>(eml: &'a str, name: &str) -> Option<&'a str> {
    eml.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The MIME part with content type `mime`: its headers and body up to the next boundary.
fn part<'a>(eml: &'a str, mime: &str) -> &'a str {
    let start = eml
        .find(&format!("Content-Type: {mime}"))
        .unwrap_or_else(|| panic!("no {mime} part in {eml}"));
    let rest = &eml[start..];
    &rest[..rest.find("\r\n--").unwrap_or(rest.len())]
}

fn assert_is_our_email(eml: &str) {
    assert_eq!(
        header(eml, "From"),
        Some("AskProAI <noreply@askproai.example>"),
        "{eml}"
    );
    let to = header(eml, "To").unwrap_or_default();
    assert!(
        to.contains("Dana Ruiz") && to.contains("<dana@example.com>"),
        "{eml}"
    );
    assert_eq!(
        header(eml, "Subject"),
        Some("Your appointment is confirmed"),
        "{eml}"
    );
    assert_eq!(
        header(eml, "Message-ID"),
        Some("<notif-123@askproai.example>"),
        "{eml}"
    );
    assert!(
        header(eml, "Content-Type")
            .unwrap_or_default()
            .starts_with("multipart/alternative")
    );
    let text = part(eml, "text/plain; charset=utf-8");
    assert!(
        text.contains("Hello Dana, see you on Tuesday at 09:30."),
        "{text}"
    );
    let html = part(eml, "text/html; charset=utf-8");
    assert!(
        html.contains("<p>Hello Dana, see you on <b>Tuesday</b> at 09:30.</p>"),
        "{html}"
    );
}

#[tokio::test]
async fn smtp_delivers_both_parts_with_our_message_id() {
    let sink = Sink::start(&[]).await;
    let mailer = Mailer::new(&smtp_settings(sink.port), None).unwrap();
    mailer.send(&email("dana@example.com")).await.unwrap();

    let messages = sink.messages(1).await;
    assert_eq!(messages.len(), 1);
    let eml = &messages[0];
    assert_eq!(
        header(eml, "Delivered-To"),
        Some("dana@example.com"),
        "envelope: {eml}"
    );
    assert_eq!(
        header(eml, "Return-Path"),
        Some("<noreply@askproai.example>")
    );
    assert_is_our_email(eml);
}

#[tokio::test]
async fn smtp_try_later_is_transient_and_the_retry_delivers_once() {
    let sink = Sink::start(&["--fail-first", "1"]).await;
    let mailer = Mailer::new(&smtp_settings(sink.port), None).unwrap();
    let email = email("dana@example.com");

    match mailer.send(&email).await {
        Err(SendError::Transient {
            reason,
            retry_after: None,
        }) => {
            assert!(
                reason.contains("451") && reason.contains("try again later"),
                "{reason}"
            );
        }
        other => panic!("expected a transient failure, got {other:?}"),
    }
    assert_eq!(sink.stored(), 0, "a refused message is not stored");
    mailer.send(&email).await.unwrap();

    let messages = sink.messages(1).await;
    assert_eq!(messages.len(), 1, "exactly one message arrived");
    assert_eq!(sink.stored(), 1);
    assert_is_our_email(&messages[0]);
}

#[tokio::test]
async fn smtp_rejected_recipient_is_permanent() {
    let sink = Sink::start(&["--reject-rcpt", "gone@example.com"]).await;
    let mailer = Mailer::new(&smtp_settings(sink.port), None).unwrap();
    match mailer.send(&email("gone@example.com")).await {
        Err(SendError::Permanent(reason)) => assert!(reason.contains("550"), "{reason}"),
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    // The same mailer still delivers to others.
    mailer.send(&email("dana@example.com")).await.unwrap();
    assert_eq!(sink.messages(1).await.len(), 1);
}

#[tokio::test]
async fn smtp_server_down_is_transient() {
    let mailer = Mailer::new(&smtp_settings(closed_port()), None).unwrap();
    let result = mailer.send(&email("dana@example.com")).await;
    assert!(
        matches!(result, Err(SendError::Transient { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn file_transport_writes_one_eml_and_rejects_bad_addresses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("var/mail");
    let settings = MailSettings {
        transport: MailTransport::File,
        file_dir: dir.to_str().unwrap().into(),
        ..smtp_settings(25)
    };
    let mailer = Mailer::new(&settings, None).unwrap();
    assert!(dir.is_dir(), "the directory is created up front");

    let bad = mailer.send(&email("not an address")).await;
    assert!(
        matches!(&bad, Err(SendError::Permanent(r)) if r.contains("not an address")),
        "{bad:?}"
    );
    let id = OutgoingEmail {
        message_id: "two words@x".into(),
        ..email("dana@example.com")
    };
    assert!(matches!(
        mailer.send(&id).await,
        Err(SendError::Permanent(_))
    ));
    assert!(eml_files(&dir).is_empty());

    mailer.send(&email("dana@example.com")).await.unwrap();
    let messages = wait_for_eml(&dir, 1).await;
    assert_eq!(messages.len(), 1);
    assert_is_our_email(&messages[0]);
}

/// A mock SMS gateway (Twilio API); every request its `OpenAPI` document refuses gets the
/// provider's refusal and fails the test when the server drops (`contract::mocks::guard`).
async fn guarded() -> MockServer {
    let server = MockServer::start().await;
    mocks::guard(&server, Provider::Twilio).await;
    server
}

async fn twilio() -> (MockServer, SmsClient) {
    let server = guarded().await;
    let settings = SmsSettings {
        base_url: server.uri(),
        from: "+4930555000".into(),
        timeout_secs: 5,
    };
    let client = SmsClient::new(&settings, ACCOUNT.into(), "s3cret-token".into());
    (server, client)
}

fn answer(status: u16, body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

#[tokio::test]
async fn sms_is_posted_as_a_form_with_basic_auth() {
    let (server, client) = twilio().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path(MESSAGES))
        .and(matchers::basic_auth(ACCOUNT, "s3cret-token"))
        .and(matchers::header(
            "user-agent",
            concat!("switchboard/", env!("CARGO_PKG_VERSION")),
        ))
        .and(matchers::header(
            "content-type",
            "application/x-www-form-urlencoded",
        ))
        .respond_with(answer(
            201,
            serde_json::json!({"sid": "SM0123", "status": "queued"}),
        ))
        .expect(1)
        .mount(&server)
        .await;

    let body = "Harbor Dental: Ihr Termin am Di., 29.09. um 09:30 ist bestätigt. A&B=1+1?";
    let sid = client.send("+4915112345678", body).await.unwrap();
    assert_eq!(sid, "SM0123");

    let requests = server.received_requests().await.unwrap();
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&requests[0].body).unwrap();
    let expected = [
        ("From", "+4930555000"),
        ("To", "+4915112345678"),
        ("Body", body),
    ];
    assert_eq!(
        form,
        expected.map(|(k, v)| (k.to_owned(), v.to_owned())).into()
    );
    assert!(
        !format!("{client:?}").contains("s3cret"),
        "the token never prints"
    );
}

#[tokio::test]
async fn sms_rate_limit_honours_retry_after() {
    let (server, client) = twilio().await;
    let limited = answer(
        429,
        serde_json::json!({"code": 20429, "message": "Too Many Requests"}),
    )
    .insert_header("Retry-After", "7");
    Mock::given(matchers::any())
        .respond_with(limited)
        .mount(&server)
        .await;
    match client.send("+4915112345678", "hi").await {
        Err(SendError::Transient {
            reason,
            retry_after,
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(
                reason.contains("429") && reason.contains("Too Many Requests"),
                "{reason}"
            );
        }
        other => panic!("expected a transient failure, got {other:?}"),
    }
}

#[tokio::test]
async fn sms_server_error_is_transient() {
    let (server, client) = twilio().await;
    let broken = ResponseTemplate::new(500).set_body_string("upstream exploded");
    Mock::given(matchers::any())
        .respond_with(broken)
        .mount(&server)
        .await;
    match client.send("+4915112345678", "hi").await {
        Err(SendError::Transient {
            reason,
            retry_after: None,
        }) => {
            assert!(
                reason.contains("500") && reason.contains("upstream exploded"),
                "{reason}"
            );
        }
        other => panic!("expected a transient failure, got {other:?}"),
    }
}

#[tokio::test]
async fn sms_refusal_is_permanent_with_the_api_message() {
    let (server, client) = twilio().await;
    let refusal = answer(
        400,
        serde_json::json!({
            "code": 21211,
            "message": "The 'To' number +49123 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211",
            "status": 400
        }),
    );
    Mock::given(matchers::any())
        .respond_with(refusal)
        .mount(&server)
        .await;
    match client.send("+49123", "hi").await {
        Err(SendError::Permanent(reason)) => {
            assert!(reason.contains("The 'To' number +49123 is not a valid phone number."));
            assert!(
                reason.contains("21211") && reason.contains("400"),
                "{reason}"
            );
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

#[tokio::test]
async fn sms_api_down_is_transient() {
    let port = closed_port();
    let settings = SmsSettings {
        base_url: format!("http://127.0.0.1:{port}"),
        from: "+4930555000".into(),
        timeout_secs: 5,
    };
    let client = SmsClient::new(&settings, ACCOUNT.into(), "s3cret-token".into());
    let result = client.send("+4915112345678", "hi").await;
    assert!(
        matches!(&result, Err(SendError::Transient { .. })),
        "{result:?}"
    );
    let reason = result.unwrap_err().to_string();
    assert!(
        !reason.contains(ACCOUNT),
        "no URL (it holds the account SID): {reason}"
    );
}
