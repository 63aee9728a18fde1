//! Long-wait notices from a running Switchboard (real Redis, the real leader-elected loop):
//! a queue over its `[waits]` threshold sends one notice to a webhook receiver of the test's
//! own, none more while it stays over (checked over further rounds of the watch, counted in
//! Redis, not by sleeping), none again from a new leader, and one when it recovers; a failing
//! webhook is retried and counted without repeating what got through; the email path delivers
//! to a real SMTP server; and bad `[waits]`/`[alerts]` settings are refused with one line each.

mod common;

use std::{
    net::SocketAddr,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use common::{Harness, expo, jobs, running::Running, smtp_sink::SmtpSink};
use serde_json::Value;
use switchboard::{
    app::{Hooks, Roles},
    config::Settings,
    maintenance::waits::{WaitEvent, WaitLog},
};
use switchboard_jobs::{EnqueueOptions, clients::mail::MailTransport, noop::Noop};

const LIMIT: Duration = Duration::from_secs(20);

/// A webhook receiver on loopback that records every request body and answers 500 to the
/// first `fail_first` of them.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
    failing: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Self {
            addr: listener.local_addr().unwrap(),
            bodies: Arc::default(),
            failing: Arc::new(AtomicUsize::new(fail_first)),
        };
        let app = Router::new()
            .route("/hooks/T0/B0/key", post(Self::hit))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    #[allow(clippy::unused_async)] // an axum handler is an async fn
    async fn hit(State(r): State<Self>, Json(body): Json<Value>) -> StatusCode {
        r.bodies.lock().unwrap().push(body);
        let failing = r
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/T0/B0/key", self.addr)
    }

    /// The `text` of every request so far.
    fn texts(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| b["text"].as_str().expect("a Slack-style text").to_owned())
            .collect()
    }
}

/// A queue name no other test uses.
fn unique_queue() -> String {
    format!("waits-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// A harness watching `queue` with a 1 s threshold, checked every 100 ms.
async fn harness(queue: &str, tune: impl FnOnce(&mut Settings)) -> Harness {
    Harness::with(|s| {
        s.waits.insert(queue.to_owned(), 1);
        s.alerts.check_interval_ms = 100;
        s.maintenance.leader_lease_secs = 3;
        tune(s);
    })
    .await
}

/// `app::run` with maintenance and HTTP, and a fleet over `queue` when `fleet`.
async fn start(h: &Harness, queue: &str, fleet: bool) -> Running {
    let mut settings = h.settings.clone();
    settings.fleet = h.fleet_settings(queue, 1, 1, 3);
    let roles = Roles {
        fleet,
        maintenance: true,
        http: true,
        ..Roles::default()
    };
    let hooks = Hooks {
        registry: Some(jobs::registry(&jobs::Switches::new())),
        ..Hooks::default()
    };
    Running::start(settings, roles, hooks).await
}

/// Wait until the watch has run `n` more rounds than now: the proof that further checks
/// happened, instead of a guessed sleep.
async fn rounds_pass(h: &Harness, n: u64) {
    let log = WaitLog::new(h.queues.clone());
    let from = log.checks().await.unwrap().rounds;
    h.wait_for(&format!("{n} more rounds of the wait watch"), LIMIT, || {
        let log = log.clone();
        async move { log.checks().await.unwrap().rounds >= from + n }
    })
    .await;
}

async fn events(h: &Harness) -> Vec<WaitEvent> {
    WaitLog::new(h.queues.clone()).recent(100).await.unwrap()
}

async fn wait_for_texts(h: &Harness, receiver: &Receiver, n: usize) {
    h.wait_for(&format!("{n} webhook request(s)"), LIMIT, || {
        let got = receiver.texts().len();
        async move { got >= n }
    })
    .await;
}

/// A raw message as people read it: folded headers unfolded, quoted-printable soft line
/// breaks joined.
fn readable(raw: &str) -> String {
    raw.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("\r\n ", " ")
        .replace("\n ", " ")
}

async fn get(app: &Running, path: &str) -> String {
    let r = app
        .client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.unwrap()
}

#[tokio::test]
async fn one_notice_per_long_wait_and_one_when_it_ends_across_a_leader_change() {
    let receiver = Receiver::start(0).await;
    let queue = unique_queue();
    let h = harness(&queue, |s| s.alerts.webhook_url = receiver.url()).await;
    // A paused queue: its job waits while a fleet is running.
    h.queues.pause(&queue).await.unwrap();
    let options = EnqueueOptions {
        queue: Some(queue.clone()),
        ..EnqueueOptions::default()
    };
    h.queues.enqueue(&Noop::default(), options).await.unwrap();
    let app = start(&h, &queue, true).await;

    wait_for_texts(&h, &receiver, 1).await;
    let long = &receiver.texts()[0];
    assert!(
        long.contains(&format!("long wait on queue `{queue}`"))
            && long.contains("threshold 1 s")
            && long.contains("has waited")
            && long.contains("The queue is paused."),
        "{long}"
    );
    rounds_pass(&h, 5).await;
    assert_eq!(receiver.texts().len(), 1, "no notice while it stays over");

    // The event is on the dashboard: the waits page, its JSON, and the overview.
    let page = get(&app, "/dashboard/waits").await;
    assert!(
        page.contains(&format!("data-queue=\"{queue}\"")) && page.contains("long wait"),
        "{page}"
    );
    let api: Value = serde_json::from_str(&get(&app, "/api/waits").await).unwrap();
    assert_eq!(api["events"][0]["kind"], "long_wait");
    assert_eq!(api["events"][0]["notified"][0], "webhook");
    assert_eq!(api["queues"][0]["told"][0], "webhook");
    let overview = get(&app, "/dashboard").await;
    assert!(overview.contains("id=\"long-waits\""), "{overview}");

    // Another process takes over the lease: it carries on from Redis and tells nobody again.
    app.stop().await;
    let app = start(&h, &queue, true).await;
    rounds_pass(&h, 5).await;
    assert_eq!(
        receiver.texts().len(),
        1,
        "a new leader does not tell again"
    );

    // The job runs: one "recovered" notice, and nothing more after it.
    h.queues.resume(&queue).await.unwrap();
    wait_for_texts(&h, &receiver, 2).await;
    let back = &receiver.texts()[1];
    assert!(
        back.contains(&format!("queue `{queue}` recovered")) && back.contains("threshold 1 s"),
        "{back}"
    );
    rounds_pass(&h, 5).await;
    assert_eq!(receiver.texts().len(), 2, "one notice when it ends");
    let kinds: Vec<String> = events(&h).await.into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["recovered", "long_wait"]);
    app.stop().await;
}

#[tokio::test]
async fn a_failing_webhook_is_tried_again_until_it_gets_through_and_a_relapse_in_the_cooldown_is_quiet()
 {
    let receiver = Receiver::start(2).await;
    let queue = unique_queue();
    let h = harness(&queue, |s| s.alerts.webhook_url = receiver.url()).await;
    let options = EnqueueOptions {
        queue: Some(queue.clone()),
        ..EnqueueOptions::default()
    };
    let job = h
        .queues
        .enqueue(&Noop::default(), options.clone())
        .await
        .unwrap();
    // No fleet: nothing takes the job.
    let app = start(&h, &queue, false).await;

    wait_for_texts(&h, &receiver, 3).await;
    rounds_pass(&h, 5).await;
    assert_eq!(
        receiver.texts().len(),
        3,
        "two refused, one taken, then quiet"
    );
    let metrics = app.metrics().await;
    let notices = |outcome: &str| {
        expo::count(
            &metrics,
            "switchboard_wait_notices_total",
            &[
                ("queue", queue.as_str()),
                ("channel", "webhook"),
                ("kind", "long_wait"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!((notices("failed"), notices("sent")), (2, 1));
    let seen = events(&h).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].failed, ["webhook"], "the crossing says it failed");
    assert_eq!(seen[0].notified, ["webhook"]);
    assert_eq!(seen[0].note.as_deref(), Some("delivered on a retry"));

    // The job is cancelled: its queue is back under, one "recovered" notice.
    assert!(h.queues.cancel(&queue, &job.id).await.unwrap());
    wait_for_texts(&h, &receiver, 4).await;
    assert!(receiver.texts()[3].contains("recovered"));
    rounds_pass(&h, 5).await;
    assert_eq!(receiver.texts().len(), 4);

    // Over again within the cooldown (900 s) of the first notice: an event, no notice.
    h.queues.enqueue(&Noop::default(), options).await.unwrap();
    h.wait_for("the relapse's event", LIMIT, || {
        let h = &h;
        async move { events(h).await.len() >= 4 }
    })
    .await;
    rounds_pass(&h, 5).await;
    assert_eq!(
        receiver.texts().len(),
        4,
        "a relapse inside the cooldown is not told"
    );
    let relapse = &events(&h).await[0];
    assert_eq!(relapse.kind, "long_wait");
    assert!(relapse.notified.is_empty());
    assert!(
        relapse
            .note
            .as_deref()
            .is_some_and(|n| n.starts_with("not notified: within the cooldown")),
        "{relapse:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn notices_go_by_email_through_the_smtp_settings() {
    let sink = SmtpSink::start(0);
    let queue = unique_queue();
    let h = harness(&queue, |s| {
        s.alerts.email_to = vec!["oncall@askproai.example".into()];
        s.mail.transport = MailTransport::Smtp;
        s.mail.host = "127.0.0.1".into();
        s.mail.port = sink.port;
        s.mail.tls = switchboard_jobs::clients::mail::MailTls::None;
    })
    .await;
    let options = EnqueueOptions {
        queue: Some(queue.clone()),
        ..EnqueueOptions::default()
    };
    let job = h.queues.enqueue(&Noop::default(), options).await.unwrap();
    let app = start(&h, &queue, false).await;

    h.wait_for("the long-wait email", LIMIT, || {
        let n = sink.messages().len();
        async move { n >= 1 }
    })
    .await;
    rounds_pass(&h, 5).await;
    let messages: Vec<String> = sink.messages().iter().map(|m| readable(m)).collect();
    assert_eq!(messages.len(), 1, "one email while it stays over");
    assert!(
        messages[0].contains("oncall@askproai.example")
            && messages[0].contains(&format!("long wait on {queue}"))
            && messages[0].contains("threshold 1 s"),
        "{}",
        messages[0]
    );

    assert!(h.queues.cancel(&queue, &job.id).await.unwrap());
    h.wait_for("the recovered email", LIMIT, || {
        let n = sink.messages().len();
        async move { n >= 2 }
    })
    .await;
    rounds_pass(&h, 5).await;
    let messages: Vec<String> = sink.messages().iter().map(|m| readable(m)).collect();
    assert_eq!(messages.len(), 2, "one email when it ends");
    assert!(
        messages
            .iter()
            .any(|m| m.contains(&format!("{queue} recovered"))),
        "{messages:?}"
    );
    let events = events(&h).await;
    assert_eq!(events[0].notified, ["email oncall@askproai.example"]);
    app.stop().await;
}

#[test]
fn bad_wait_settings_are_refused_one_line_each_without_the_webhook_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("waits.toml");
    std::fs::write(
        &file,
        "[waits]\n\"redis:default\" = 60\nwebhooks = 0\n\n[alerts]\ncheck_interval_ms = 5\nemail_to = [\"oncall\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--config", file.to_str().unwrap(), "status"])
        .env(
            "SWITCHBOARD_ALERTS__WEBHOOK_URL",
            "ftp://hooks.example/T0/B0/sekrit-key",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for line in [
        r#"waits."redis:default" is not a queue name: letters, digits, '-', '_' or '.' (name the queue alone, without Horizon's connection: "default" = 60)"#,
        "waits.webhooks = 0 must be between 1 and 604800 seconds",
        "alerts.check_interval_ms = 5 must be between 100 and 3600000",
        "alerts.webhook_url (ftp://hooks.example/…) must be an http:// or https:// URL",
        r#"alerts.email_to: "oncall" is not an email address"#,
    ] {
        assert!(err.contains(line), "{line}\n{err}");
    }
    assert!(!err.contains("sekrit"), "the key never prints: {err}");

    std::fs::write(&file, "[waits]\nwebhooks = 60\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--config", file.to_str().unwrap(), "status"])
        .env_remove("SWITCHBOARD_ALERTS__WEBHOOK_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("waits names queues but no notice could go anywhere: set alerts.webhook_url (SWITCHBOARD_ALERTS__WEBHOOK_URL) or alerts.email_to"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "one problem, one line: {err}");
}
