//! The `switchboard` binary as operators use it: status, enqueue, pause/continue, failed
//! list/retry/forget, configuration errors, and `serve` with its embedded Redis.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{Harness, free_port};
use serde_json::Value;

fn switchboard(h: &Harness, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--redis-url", &h.settings.redis.url])
        .args(args)
        .env("SWITCHBOARD_QUEUE__PREFIX", h.prefix())
        .env("SWITCHBOARD_LOG", "warn")
        .output()
        .unwrap()
}

fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test]
async fn enqueue_pause_and_status_json() {
    let h = Harness::new().await;
    for _ in 0..3 {
        let out: Value = serde_json::from_str(&ok_stdout(&switchboard(
            &h,
            &["enqueue", "maintenance", "noop", "{}"],
        )))
        .unwrap();
        assert_eq!(out["duplicate"], false);
        assert!(out["id"].as_str().is_some_and(|id| id.len() == 26));
    }
    ok_stdout(&switchboard(
        &h,
        &[
            "enqueue",
            "maintenance",
            "noop",
            "{}",
            "--delay-secs",
            "3600",
        ],
    ));
    ok_stdout(&switchboard(
        &h,
        &[
            "enqueue",
            "maintenance",
            "noop",
            "{}",
            "--tenant",
            "42",
            "--priority",
            "low",
        ],
    ));
    ok_stdout(&switchboard(&h, &["pause", "maintenance"]));

    let status: Value =
        serde_json::from_str(&ok_stdout(&switchboard(&h, &["status", "--json"]))).unwrap();
    let queues = status["queues"].as_array().unwrap();
    let cli = queues
        .iter()
        .find(|q| q["name"] == "maintenance")
        .expect("the queue is listed");
    for key in [
        "name",
        "pending",
        "delayed",
        "running",
        "dead",
        "processed",
        "failed",
        "oldest_pending_secs",
        "paused",
    ] {
        assert!(cli.get(key).is_some(), "status lacks {key}: {cli}");
    }
    assert_eq!(
        (
            cli["pending"].as_u64(),
            cli["delayed"].as_u64(),
            cli["paused"].as_bool()
        ),
        (Some(4), Some(1), Some(true)),
        "three plain jobs and one of tenant 42 at low priority"
    );
    assert!(
        queues.iter().any(|q| q["name"] == "webhooks"),
        "configured queues are listed too"
    );
    assert!(status["workers"].is_array());

    ok_stdout(&switchboard(&h, &["continue", "maintenance"]));
    assert!(!h.stats("maintenance").await.paused);

    let bad = switchboard(&h, &["enqueue", "maintenance", "noop", "{not json"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not valid JSON"));
}

#[tokio::test]
async fn failed_list_retry_and_forget() {
    let h = Harness::new().await;
    // A kind nobody handles fails permanently: two dead jobs.
    let fleet = h
        .fleet(
            &h.fleet_settings("ops", 2, 2, 3),
            switchboard_jobs::registry(),
            None,
        )
        .await;
    // (The CLI refuses a kind it does not know: these come in through the library.)
    for _ in 0..2 {
        h.queues
            .enqueue_json(
                "no.such.kind",
                1,
                r#"{"a":1}"#.to_owned(),
                "ops",
                switchboard_jobs::EnqueueOptions::default(),
            )
            .await
            .unwrap();
    }
    let queues = h.queues.clone();
    h.wait_for("two dead jobs", Duration::from_secs(10), || {
        let queues = queues.clone();
        async move { queues.stats("ops").await.unwrap().dead == 2 }
    })
    .await;
    fleet.stop().await;

    let listed: Value = serde_json::from_str(&ok_stdout(&switchboard(
        &h,
        &["failed", "list", "--queue", "ops", "--json"],
    )))
    .unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["job"]["kind"], "no.such.kind");
    assert!(
        listed[0]["job"]["error"]
            .as_str()
            .unwrap()
            .contains("no handler")
    );
    assert_eq!(listed[0]["job"]["args"]["a"], 1);
    let id = listed[0]["job"]["id"].as_str().unwrap().to_owned();

    let text = ok_stdout(&switchboard(&h, &["failed", "list"]));
    assert!(text.contains(&id) && text.contains("queue=ops"), "{text}");

    assert_eq!(
        ok_stdout(&switchboard(
            &h,
            &["failed", "retry", &id, "--queue", "ops"]
        ))
        .trim(),
        "retried 1 job(s)"
    );
    let s = h.stats("ops").await;
    assert_eq!((s.dead, s.pending), (1, 1));
    assert_eq!(
        ok_stdout(&switchboard(&h, &["failed", "forget", "--all"])).trim(),
        "forgot 1 job(s)"
    );
    assert_eq!(h.stats("ops").await.dead, 0);
    assert!(
        !switchboard(&h, &["failed", "retry"]).status.success(),
        "an id or --all is required"
    );
}

#[tokio::test]
async fn the_cli_refuses_mistakes_in_one_line() {
    let h = Harness::new().await;
    // (arguments, exit code, what the one line says)
    let cases: [(&[&str], i32, &str); 9] = [
        (
            &["enqueue", "nosuchqueue", "noop", "{}"],
            2,
            "queue \"nosuchqueue\" is not in the configuration",
        ),
        (
            &["enqueue", "webhooks", "no.such.kind", "{}"],
            2,
            "unknown job kind \"no.such.kind\": known kinds are noop, webhook.retell",
        ),
        (
            &["enqueue", "billing", "billing.report_usage", "{}"],
            2,
            "(args.call_id)",
        ),
        (
            &[
                "enqueue",
                "billing",
                "billing.report_usage",
                r#"{"call_id": 7}"#,
            ],
            2,
            "(args.call_id)",
        ),
        (
            &[
                "enqueue",
                "maintenance",
                "noop",
                "{}",
                "--tenant",
                "acme corp",
            ],
            2,
            "invalid tenant \"acme corp\"",
        ),
        (
            &[
                "enqueue",
                "maintenance",
                "noop",
                "{}",
                "--priority",
                "urgent",
            ],
            2,
            "use high, normal or low",
        ),
        (
            &["pause", "nosuchqueue"],
            2,
            "unknown queue \"nosuchqueue\"",
        ),
        (
            &["continue", "nosuchqueue"],
            2,
            "unknown queue \"nosuchqueue\"",
        ),
        (
            &["failed", "retry", "01NOSUCHID"],
            1,
            "no dead job 01NOSUCHID on any queue",
        ),
    ];
    for (args, code, says) in cases {
        let out = switchboard(&h, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
    }
    let forget = switchboard(&h, &["failed", "forget", "01NOSUCHID"]);
    assert_eq!(forget.status.code(), Some(1));
    // Nothing was enqueued, paused or registered by any of them.
    assert!(h.keys().await.iter().all(|k| !k.contains("nosuchqueue")));
    assert_eq!(h.stats("billing").await.pending, 0);
    assert_eq!(h.stats("maintenance").await.pending, 0);
    // A typo in a flag is clap's one line and exit 2.
    for typo in [
        &["enqueue", "webhooks", "noop", "{}", "--delay", "5"][..],
        &["pasue", "webhooks"],
        &["failed", "list", "--limit", "many"],
    ] {
        let out = switchboard(&h, typo);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{typo:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{typo:?}: {err}");
    }
}

#[tokio::test]
async fn serve_refuses_an_unmigrated_mariadb_with_the_migrate_hint() {
    let h = Harness::new().await;
    let name = format!("sbt_{}", ulid::Ulid::new().to_string().to_lowercase());
    let mariadb = |sql: &str| {
        let status = Command::new("mariadb")
            .args(["-uroot", "-h127.0.0.1", "-e", sql])
            .status()
            .unwrap();
        assert!(status.success(), "{sql}");
    };
    mariadb(&format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .current_dir(dir.path())
        .args(["--redis-url", &h.settings.redis.url])
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .env("SWITCHBOARD_QUEUE__PREFIX", h.prefix())
        .env("SWITCHBOARD_REDIS__EMBEDDED", "false")
        .env(
            "DATABASE_URL",
            format!("mysql://root@127.0.0.1:3306/{name}"),
        )
        .env("SWITCHBOARD_LOG", "error")
        .output()
        .unwrap();
    mariadb(&format!("DROP DATABASE `{name}`"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "serve started on an empty schema: {err}"
    );
    assert!(
        err.contains("lacks") && err.contains("run `switchboard migrate` first"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test]
async fn config_and_redis_errors_read_once_and_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    std::fs::write(&file, "[fleet]\nshutdown_timeout_sec = 5\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--config", file.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`shutdown_timeout_sec`, expected `shutdown_timeout_secs` or `supervisors`"),
        "{err}"
    );
    assert!(!err.contains("``") && !err.contains("default."), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "--redis-url",
            &format!("redis://127.0.0.1:{}", free_port()),
            "status",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(
        err.matches("Connection refused").count(),
        1,
        "the cause once: {err}"
    );
}

#[tokio::test]
async fn invalid_configuration_names_every_problem() {
    let h = Harness::new().await;
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["status"])
        .env("SWITCHBOARD_QUEUE__LEASE_SECS", "5")
        .env("SWITCHBOARD_QUEUE__FETCH_BATCH", "5000")
        .env("SWITCHBOARD_QUEUE__PREFIX", h.prefix())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("queue.fetch_batch = 5000 must be between 1 and 1000"),
        "{err}"
    );
    assert!(err.contains("fleet.supervisors[0] (webhooks): timeout_secs = 20 must be shorter than queue.lease_secs = 5"), "{err}");
    assert!(err.lines().count() >= 6, "one line per problem: {err}");
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text))
}

/// Lines of `serve`'s start-up block with a private Redis on `redis_port` and HTTP on
/// `http_port`. Its Redis is on this machine, so the runtime leaves it a core.
fn startup_block(http_port: u16, redis_port: u16) -> Vec<String> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = cores.saturating_sub(1).max(1);
    vec![
        "running: fleet, maintenance, scheduler, http, ingest".to_owned(),
        format!(
            "({threads} runtime thread{} on {cores} core",
            if threads == 1 { "" } else { "s" }
        ),
        format!("  dashboard  http://127.0.0.1:{http_port}/dashboard"),
        format!("  metrics    http://127.0.0.1:{http_port}/metrics"),
        format!("  webhooks   http://127.0.0.1:{http_port}/webhooks/retell"),
        format!("  redis      redis://127.0.0.1:{redis_port}"),
        "  mail       files under var/mail".to_owned(),
        "  stand-ins  Cal.com, Stripe, SMS".to_owned(),
    ]
}

#[test]
fn serve_starts_a_private_redis_when_none_answers_and_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (redis_port, http_port) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .current_dir(dir.path())
        .args([
            "--redis-url",
            &format!("redis://127.0.0.1:{redis_port}"),
            "serve",
            "--listen",
            &format!("127.0.0.1:{http_port}"),
        ])
        .env("SWITCHBOARD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = loop {
        if let Some((code, _)) = http_get(http_port, "/readyz") {
            break code;
        }
        assert!(Instant::now() < deadline, "serve did not come up");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(ready, 200);
    assert!(
        dir.path().join("var/redis").is_dir(),
        "the private Redis lives under var/"
    );
    let (code, body) = http_get(http_port, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains(r#"switchboard_workers{supervisor="webhooks",state="idle"}"#),
        "{body}"
    );
    assert!(
        body.contains(r#"switchboard_queue_jobs{queue="webhooks",state="pending"} 0"#),
        "queue gauges are read at the scrape: {body}"
    );
    assert_eq!(http_get(http_port, "/healthz").unwrap().0, 200);
    assert_eq!(
        http_get(http_port, "/").unwrap().0,
        303,
        "the root sends a browser to the dashboard"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(
        log.contains("started a private redis-server"),
        "says so: {log}"
    );
    // One block says what runs where; nothing shouts, and a redirected log has no colours.
    for line in startup_block(http_port, redis_port) {
        assert!(log.contains(&line), "{line:?} missing:\n{log}");
    }
    assert!(
        !log.contains(" WARN "),
        "a fresh start warns about nothing:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a redirected log:\n{log}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", redis_port)).is_err(),
        "the private Redis stopped with serve"
    );
}

#[test]
fn migrate_applies_the_schema_once_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/m.db?mode=rwc", dir.path().display());
    for _ in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("migrated"));
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("migrate")
        .env("DATABASE_URL", "postgres://x/y")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must start with mysql:// or sqlite:"));
}

#[tokio::test]
async fn a_sender_number_from_the_environment_is_read_as_text() {
    let h = Harness::new().await;
    // `+4930...` looks like a number to the environment layer; sms.from is text whatever it
    // looks like, with or without quotes around it.
    for from in ["+4930123456", "\"+4930123456\""] {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["status", "--json"])
            .env("SWITCHBOARD_SMS__FROM", from)
            .env("SWITCHBOARD_DEV__STAND_INS", "false")
            .env("SWITCHBOARD_QUEUE__PREFIX", h.prefix())
            .env("SWITCHBOARD_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{from}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
