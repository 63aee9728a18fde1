//! `switchboard erase` (GDPR erasure), on `MariaDB` and on `SQLite`, through the real binary:
//! after a demo-like run (the sample call from +14155550123, "Dana Ruiz",
//! dana.ruiz@example.com, its booking, email and SMS) with jobs of hers left pending, waiting
//! in a sequence, delayed, dead and with a recorded result, every text cell of every table
//! and every value of every Redis key under the test's prefix is searched for her; billing
//! totals, queue counters and the audit trail are checked, and the jobs left still run.

mod common;
#[macro_use]
#[path = "common/world.rs"]
mod world;

use std::{process::Command, time::Duration};

use serde_json::{Value, json};
use switchboard::{
    audit::{self, AuditLog},
    cli::erase::{self, State},
};
use switchboard_jobs::{
    EnqueueOptions,
    notify::{Message, MessageVars, NotifySms, Template},
    store::{calls, erasure::Subject, usage_events},
    webhook::{RetellWebhook, WebhookEvent},
};
use world::{Db, World};

/// The demo caller (the sample call's `from_number`; +14155550987 is the business's number).
const CALLER: &str = "+14155550123";
const CALL: &str = "call_5b2e9d0c7a4f41e38a1d2c6f90b1e7aa";
/// What must not be found anywhere afterwards (lowercase; the digits cover `+` and `%2B`).
const TRACES: [&str; 3] = ["14155550123", "dana.ruiz@example.com", "dana ruiz"];

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A Retell event of `call_id` (the sample call's body under another id when asked).
fn retell(event_type: &str, call_id: &str, to: Option<&str>) -> RetellWebhook {
    let mut body = fixture(&format!("retell_{event_type}.json")).replace(CALL, call_id);
    if event_type == "call_analyzed" {
        body = body.replace(
            r#""appointment_booked": true"#,
            r#""appointment_booked": false, "appointment_requested": true, "preferred_start": "2026-09-29T16:30:00Z", "customer_name": "Dana Ruiz", "customer_email": "dana.ruiz@example.com""#,
        );
    }
    if let Some(to) = to {
        body = body.replace(world::NUMBER, to);
    }
    RetellWebhook(WebhookEvent {
        provider: "retell".into(),
        event_type: event_type.into(),
        dedupe_key: format!("{event_type}:{call_id}"),
        received_at_ms: 1_790_150_400_000,
        request_id: "req-1".into(),
        body,
    })
}

/// The demo's path: the call (started, ended, analysed asking for a booking), the Cal.com
/// booking, its email and SMS. Leaves `calendar.book` pending on `calendar` and
/// `billing.report_usage` pending on `billing`.
async fn demo(w: &World) {
    for event in ["call_started", "call_ended", "call_analyzed"] {
        let job = retell(event, CALL, None);
        w.h.queues
            .enqueue(&job, EnqueueOptions::default())
            .await
            .unwrap();
    }
    let booking = WebhookEvent {
        provider: "calcom".into(),
        event_type: "BOOKING_CREATED".into(),
        dedupe_key: "BOOKING_CREATED:bK3v9Qp2LmX7tRz1Yc8WnA".into(),
        received_at_ms: 1_790_150_400_000,
        request_id: "req-2".into(),
        body: fixture("calcom_booking_created.json"),
    };
    let booking = switchboard_jobs::webhook::CalcomWebhook(booking);
    w.h.queues
        .enqueue(&booking, EnqueueOptions::default())
        .await
        .unwrap();
    w.settled("webhooks", 4).await;
    w.settled("notifications", 2).await;
    assert_eq!(
        w.sink.messages().len(),
        1,
        "the confirmation email went out"
    );
}

/// Jobs of hers left in every state but running: one dead (a call to an unknown number),
/// one pending with a successor waiting in its sequence, one delayed, one recorded result.
async fn leftovers(w: &World) {
    let dead = retell("call_started", "call_dead", Some("+14155550000"));
    w.h.queues
        .enqueue(&dead, EnqueueOptions::default())
        .await
        .unwrap();
    w.settled("webhooks", 5).await;
    assert_eq!(w.h.stats("webhooks").await.dead, 1);
    for event in ["call_started", "call_ended"] {
        let job = retell(event, "call_second", None);
        let options = EnqueueOptions::default().sequence("retell:call_second");
        w.h.queues.enqueue(&job, options).await.unwrap();
    }
    let later = retell("call_analyzed", "call_later", None);
    let options = EnqueueOptions::default().run_in(Duration::from_secs(3600));
    w.h.queues.enqueue(&later, options).await.unwrap();
    let result = json!({"called_back": CALLER, "by": "front desk"});
    w.h.queues
        .store_result("webhooks", "01JRESULT", &result)
        .await
        .unwrap();
}

fn db_url(db: &Db) -> String {
    match db {
        Db::Sqlite(dir) => format!("sqlite://{}/switchboard.db?mode=rwc", dir.path().display()),
        Db::MariaDb { admin_url, name } => format!("{admin_url}/{name}"),
    }
}

fn switchboard(w: &World, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--redis-url", &w.h.settings.redis.url])
        .args(args)
        .env("SWITCHBOARD_QUEUE__PREFIX", w.h.prefix())
        .env("DATABASE_URL", db_url(&w.db))
        .env("SWITCHBOARD_LOG", "warn")
        .output()
        .unwrap()
}

fn ok_stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// `query` run by the database's command-line client (the test crate has no SQL driver of its
/// own): one line per row, values separated by tabs.
fn sql(db: &Db, query: &str) -> String {
    const PY: &str = "import sqlite3, sys\nfor row in sqlite3.connect(sys.argv[1]).execute(sys.argv[2]):\n    print('\\t'.join(str(v) for v in row))";
    let out = match db {
        Db::Sqlite(dir) => Command::new("python3")
            .args(["-c", PY, &sqlite_path(dir), query])
            .output(),
        Db::MariaDb { name, .. } => Command::new("mariadb")
            .args(["-uroot", "-h127.0.0.1", "-N", "-B", name, "-e", query])
            .output(),
    }
    .unwrap();
    assert!(
        out.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sqlite_path(dir: &tempfile::TempDir) -> String {
    format!("{}/switchboard.db", dir.path().display())
}

/// Every row of every table, as the database's own dump writes it (one line per row).
fn db_texts(db: &Db) -> Vec<String> {
    const PY: &str =
        "import sqlite3, sys\nprint('\\n'.join(sqlite3.connect(sys.argv[1]).iterdump()))";
    let out = match db {
        Db::Sqlite(dir) => Command::new("python3")
            .args(["-c", PY, &sqlite_path(dir)])
            .output(),
        Db::MariaDb { name, .. } => Command::new("mariadb-dump")
            .args([
                "-uroot",
                "-h127.0.0.1",
                "--skip-extended-insert",
                "--hex-blob",
                name,
            ])
            .output(),
    }
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8_lossy(&out.stdout).into_owned();
    // The dump holds the data: the business's number is in it.
    assert!(dump.contains(world::NUMBER), "{dump}");
    dump.lines().map(str::to_owned).collect()
}

/// Every key under the test's prefix and every value in it, read by its type.
async fn redis_texts(w: &World) -> Vec<String> {
    let mut conn = w.h.conn();
    let mut out = Vec::new();
    for key in w.h.keys().await {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let values: Vec<String> = match kind.as_str() {
            "string" => vec![
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
            ],
            "list" => redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "hash" => redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "set" => redis::cmd("SMEMBERS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "stream" => {
                let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                entries
                    .into_iter()
                    .flat_map(|(_, f)| f)
                    .flat_map(|(k, v)| [k, v])
                    .collect()
            }
            other => panic!("{key} has a type the scan does not read: {other}"),
        };
        out.push(format!("key {key}"));
        out.extend(values.into_iter().map(|v| format!("{key}: {v}")));
    }
    out
}

fn with_traces(texts: &[String]) -> Vec<&String> {
    texts
        .iter()
        .filter(|t| {
            let lower = t.to_ascii_lowercase();
            TRACES.iter().any(|trace| lower.contains(trace))
        })
        .collect()
}

/// Billed seconds per company.
fn usage_totals(db: &Db) -> String {
    sql(
        db,
        "SELECT company_id, SUM(seconds) FROM usage_events GROUP BY company_id ORDER BY company_id",
    )
}

fn counts<'a>(report: &'a Value, queue: &str, state: &str) -> &'a Value {
    report["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["queue"] == queue && r["state"] == state)
        .unwrap_or_else(|| panic!("no {queue} {state} in {report}"))
}

on_both_databases!(
    erase_by_phone_leaves_no_trace,
    erase_by_email_leaves_no_trace
);

#[allow(clippy::too_many_lines)] // one walk: seed, look, erase, look again, run, erase again
async fn erase_by_phone_leaves_no_trace(dialect: &str) {
    let w = World::new(dialect, "en", 0).await;
    demo(&w).await;
    leftovers(&w).await;
    // The searches can fail: she is there before.
    assert!(!with_traces(&db_texts(&w.db)).is_empty());
    assert!(!with_traces(&redis_texts(&w).await).is_empty());
    let usage = usage_totals(&w.db);
    let delayed_before: Vec<(String, String)> = delayed(&w).await;
    let (webhooks, calendar, billing) = (
        w.h.stats("webhooks").await,
        w.h.stats("calendar").await,
        w.h.stats("billing").await,
    );
    assert_eq!(
        (
            webhooks.pending,
            webhooks.waiting,
            webhooks.delayed,
            calendar.pending,
            billing.pending
        ),
        (1, 1, 1, 1, 1)
    );

    let report: Value = serde_json::from_str(&ok_stdout(&switchboard(
        &w,
        &["erase", "--phone", CALLER, "--json"],
    )))
    .unwrap();
    assert_eq!(report["dry_run"], false);
    let db = &report["database"];
    assert_eq!(
        (db["customers"].as_u64(), db["calls"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(db["appointments"], 1, "{report}");
    assert_eq!(db["notifications"], 2, "the email and the SMS: {report}");
    assert_eq!(report["usage_events_kept"], 1, "{report}");
    assert_eq!(
        counts(&report, "calendar", "pending")["deleted"],
        1,
        "calendar.book"
    );
    for state in ["pending", "waiting", "delayed", "dead", "completed"] {
        assert_eq!(
            counts(&report, "webhooks", state)["anonymised"],
            1,
            "{state}: {report}"
        );
    }
    assert_eq!(
        (report["running"].as_u64(), report["skipped"].as_u64()),
        (Some(0), Some(0))
    );

    let left = with_traces(&db_texts(&w.db))
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert!(left.is_empty(), "database still holds her: {left:#?}");
    let left = with_traces(&redis_texts(&w).await)
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert!(left.is_empty(), "Redis still holds her: {left:#?}");
    assert_eq!(usage_totals(&w.db), usage, "billing totals unchanged");
    let after = w.h.stats("webhooks").await;
    assert_eq!(
        (
            after.pending,
            after.waiting,
            after.delayed,
            after.dead,
            after.running
        ),
        (1, 1, 1, 1, 0),
        "anonymised jobs keep their place"
    );
    assert_eq!(
        w.h.stats("calendar").await.pending,
        0,
        "the booking request went"
    );
    assert_eq!(
        w.h.stats("billing").await.pending,
        1,
        "the usage report (a call id) stays"
    );
    let delayed_after = delayed(&w).await;
    assert_eq!(delayed_after.len(), 1);
    assert_eq!(delayed_after[0].1, delayed_before[0].1, "same due time");
    let (_, env) = switchboard::queue::job::decode(&delayed_after[0].0).unwrap();
    let args: RetellWebhook = serde_json::from_str(env.args.get()).unwrap();
    let body: Value = serde_json::from_str(&args.0.body).unwrap();
    assert_eq!(body["call"]["from_number"], "[erased]");
    assert!(body["call"].get("transcript").is_none());
    assert_eq!(
        body["call"]["to_number"],
        world::NUMBER,
        "the business's number stays"
    );

    let entries = AuditLog::new(w.h.queues.clone(), audit::DEFAULT_MAX_ENTRIES)
        .recent(10, None)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0].1;
    assert_eq!(
        (entry.action.as_str(), entry.via.as_str()),
        ("erase", "cli")
    );
    assert_eq!(Some(entry.count), report["changed"].as_u64());
    let detail = entry.detail.clone().unwrap();
    assert!(
        detail.contains(report["subject"].as_str().unwrap()),
        "{detail}"
    );
    assert!(with_traces(&[detail]).is_empty());

    // The jobs left run (the inline drain promotes the delayed one too): the sequence's two
    // events store the second call and bill it, the delayed analysis stores the third.
    w.settled("webhooks", 8).await;
    let s = w.h.stats("webhooks").await;
    assert_eq!(
        (
            s.processed,
            s.pending,
            s.waiting,
            s.running,
            s.delayed,
            s.dead
        ),
        (7, 0, 0, 0, 0, 1),
        "{s:?}"
    );
    let later = calls::get(&w.store, "call_later").await.unwrap().unwrap();
    assert_eq!(later.from_number, "[erased]");
    let second = calls::get(&w.store, "call_second").await.unwrap().unwrap();
    assert_eq!(second.from_number, "[erased]");
    let billed = usage_events::get(&w.store, "call_second").await.unwrap();
    assert_eq!(
        billed.map(|(seconds, _)| seconds),
        Some(142),
        "the second call is billed"
    );
    let left = with_traces(&db_texts(&w.db))
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert!(left.is_empty(), "{left:#?}");

    let again = ok_stdout(&switchboard(&w, &["erase", "--phone", CALLER]));
    assert!(again.contains("nothing to erase"), "{again}");
    w.stop().await;
}

/// The delayed items of `webhooks` with their due times (as Redis prints them).
async fn delayed(w: &World) -> Vec<(String, String)> {
    let k = w.h.queues.keys("webhooks").unwrap();
    redis::cmd("ZRANGE")
        .arg(&k.delayed)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut w.h.conn())
        .await
        .unwrap()
}

async fn erase_by_email_leaves_no_trace(dialect: &str) {
    let w = World::new(dialect, "en", 0).await;
    demo(&w).await;
    let dry = ok_stdout(&switchboard(
        &w,
        &["erase", "--email", "Dana.Ruiz@EXAMPLE.com", "--dry-run"],
    ));
    assert!(
        dry.contains("database customers: 1 rows would be anonymised"),
        "{dry}"
    );
    assert!(
        !with_traces(&db_texts(&w.db)).is_empty(),
        "a dry run changes nothing"
    );

    let out = ok_stdout(&switchboard(
        &w,
        &["erase", "--email", "Dana.Ruiz@EXAMPLE.com"],
    ));
    assert!(
        out.contains("database customers: 1 rows anonymised"),
        "{out}"
    );
    assert!(out.contains("queue calendar pending: 1 deleted"), "{out}");
    assert!(!out.to_ascii_lowercase().contains("dana.ruiz"), "{out}");
    // Found by her address, her customer row gave her number: both are gone.
    let left = with_traces(&db_texts(&w.db))
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert!(left.is_empty(), "{left:#?}");
    let left = with_traces(&redis_texts(&w).await)
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert!(left.is_empty(), "{left:#?}");
    w.stop().await;
}

#[tokio::test]
async fn bad_arguments_and_business_numbers_are_refused_in_one_line() {
    let w = World::new("sqlite", "en", 0).await;
    for args in [
        &["erase"][..],
        &["erase", "--phone", "4155550123"],
        &["erase", "--phone", "+1415"],
        &["erase", "--email", "dana.ruiz"],
        &[
            "erase",
            "--phone",
            CALLER,
            "--email",
            "dana.ruiz@example.com",
        ],
        &["erase", "--phone", world::NUMBER],
    ] {
        let out = switchboard(&w, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
    let refused = switchboard(&w, &["erase", "--phone", world::NUMBER]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("business"));
    w.stop().await;
}

#[tokio::test]
async fn running_jobs_are_reported_and_a_dry_run_changes_nothing() {
    let h = common::Harness::new().await;
    let (store, _db) = world::database("sqlite").await;
    let sms = NotifySms(Message {
        key: "appointment:bk_1:confirmation:sms".into(),
        to: CALLER.into(),
        to_name: Some("Dana Ruiz".into()),
        template: Template::Confirmation,
        locale: "en".into(),
        vars: MessageVars::default(),
    });
    for _ in 0..2 {
        h.queues
            .enqueue(&sms, EnqueueOptions::default())
            .await
            .unwrap();
    }
    let held = h.lease_to_a_dead_worker("notifications", "w1").await;
    let subject = Subject::phone(CALLER).unwrap();
    let names = ["notifications".to_owned()];

    let dry = erase::erase(&h.queues, &store, &subject, &names, true)
        .await
        .unwrap();
    let pending = ("notifications".to_owned(), State::Pending);
    assert_eq!(dry.jobs[&pending].deleted, 1, "{dry:?}");
    assert_eq!(
        h.stats("notifications").await.pending,
        1,
        "a dry run deletes nothing"
    );

    let done = erase::erase(&h.queues, &store, &subject, &names, false)
        .await
        .unwrap();
    assert_eq!(done.jobs[&pending].deleted, 1);
    assert_eq!(done.running(), 1, "{done:?}");
    assert_eq!(h.stats("notifications").await.pending, 0);
    let k = h.queues.keys("notifications").unwrap();
    let still: Option<String> = redis::cmd("HGET")
        .arg(k.leased("w1"))
        .arg(held.split(' ').next().unwrap())
        .query_async(&mut h.conn())
        .await
        .unwrap();
    assert_eq!(
        still.as_deref(),
        Some(held.as_str()),
        "a running job is not touched"
    );
    let audit = AuditLog::new(h.queues.clone(), 10)
        .recent(10, None)
        .await
        .unwrap();
    assert_eq!(audit.len(), 1, "the dry run wrote no audit record");
    assert!(audit[0].1.detail.as_deref().unwrap().contains("running 1"));
}

/// With payload keys configured, jobs are sealed in Redis: erase opens them with the same
/// keys, takes the person out and seals them again; the rewritten job still opens.
#[tokio::test]
async fn sealed_jobs_are_opened_erased_and_sealed_again() {
    use base64::Engine as _;
    use switchboard::config::secrets::PayloadKey;
    let key = [9u8; 32];
    let h = common::Harness::with(|s| {
        s.queue.payload_keys = vec![PayloadKey::new("k1", key).unwrap()];
    })
    .await;
    let later = retell("call_analyzed", "call_sealed", None);
    let options = EnqueueOptions::default().run_in(Duration::from_secs(3600));
    let id = h.queues.enqueue(&later, options).await.unwrap().id;
    let stored = h.queues.find_job("webhooks", &id).await.unwrap().unwrap();
    let before = stored.args.unwrap().to_string();
    assert!(
        before.contains("4155550123"),
        "the job carries the caller: {before}"
    );
    let raw: Vec<String> = redis::cmd("ZRANGE")
        .arg(h.queues.keys("webhooks").unwrap().delayed.clone())
        .arg(0)
        .arg(-1)
        .query_async(&mut h.conn())
        .await
        .unwrap();
    assert!(raw[0].contains("$sealed:v1:k1:") && !raw[0].contains("4155550123"));

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/switchboard.db?mode=rwc", dir.path().display());
    let b64 = base64::engine::general_purpose::STANDARD.encode(key);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["--redis-url", &h.settings.redis.url])
            .args(args)
            .env("SWITCHBOARD_QUEUE__PREFIX", h.prefix())
            .env("DATABASE_URL", &url)
            .env("SWITCHBOARD_PAYLOAD_KEYS", format!("k1:{b64}"))
            .env("SWITCHBOARD_LOG", "warn")
            .output()
            .unwrap()
    };
    ok_stdout(&run(&["migrate"]));
    let report = ok_stdout(&run(&["erase", "--phone", CALLER]));
    assert!(report.contains("webhooks"), "{report}");

    let after = h.queues.find_job("webhooks", &id).await.unwrap().unwrap();
    let args = after.args.unwrap().to_string();
    assert!(!args.contains("4155550123"), "still there: {args}");
    assert!(args.contains("[erased]"), "{args}");
    let raw: Vec<String> = redis::cmd("ZRANGE")
        .arg(h.queues.keys("webhooks").unwrap().delayed.clone())
        .arg(0)
        .arg(-1)
        .query_async(&mut h.conn())
        .await
        .unwrap();
    assert_eq!(raw.len(), 1);
    assert!(
        raw[0].contains("$sealed:v1:k1:"),
        "sealed again: {}",
        raw[0]
    );
}

/// Ready jobs with a tenant or priority wait in lane lists, every waiting job has a copy in
/// the queue's `index`, and `pending` lists hold fetch tokens (`~<ms>`) beside items: erase
/// deletes and anonymises in lanes and index alike and leaves the tokens as they are.
#[tokio::test]
async fn lanes_and_the_index_are_erased_and_tokens_left_alone() {
    use switchboard::queue::{Envelope, job};
    let h = common::Harness::new().await;
    let (store, _db) = world::database("sqlite").await;
    let k = h.queues.keys("notifications").unwrap();
    let lane = k.lane("high", "42");
    let mut conn = h.conn();
    let item = |kind: &str, args: String, tenant: &str| {
        let mut env = Envelope::new(
            kind,
            1,
            serde_json::value::RawValue::from_string(args).unwrap(),
        );
        env.tn = Some(tenant.to_owned());
        env.pr = Some(switchboard_jobs::Priority::High);
        job::encode(&job::new_id(), &env)
    };
    let sms = item(
        "notify.sms",
        json!({"key": "appointment:bk_9:confirmation:sms", "to": CALLER, "to_name": "Dana Ruiz",
               "template": "confirmation", "locale": "en", "vars": {}})
        .to_string(),
        "42",
    );
    let call = item(
        "noop",
        json!({"note": format!("call back {CALLER}")}).to_string(),
        "42",
    );
    let other = item("noop", json!({"note": "someone else"}).to_string(), "7");
    let token = "~1733500000000";
    for (key, element) in [(&lane, &sms), (&lane, &call), (&k.pending, &other)] {
        let id = element.split(' ').next().unwrap();
        command(&h, &["LPUSH", key, element]).await;
        command(&h, &["HSET", &k.index, id, element]).await;
    }
    // The lane's two jobs and the other tenant's plain one each left a token in pending.
    command(&h, &["RPUSH", &k.pending, token]).await;
    let subject = Subject::phone(CALLER).unwrap();
    let names = ["notifications".to_owned()];

    let dry = erase::erase(&h.queues, &store, &subject, &names, true)
        .await
        .unwrap();
    let pending = ("notifications".to_owned(), State::Pending);
    assert_eq!(dry.jobs[&pending].deleted, 1, "{dry:?}");
    assert_eq!(dry.jobs[&pending].anonymised, 1, "{dry:?}");
    assert!(
        !dry.jobs
            .contains_key(&("notifications".to_owned(), State::Index)),
        "a dry run counts a job once, not again for its index copy: {dry:?}"
    );

    erase::erase(&h.queues, &store, &subject, &names, false)
        .await
        .unwrap();
    let list = |key: String| {
        let mut conn = h.conn();
        async move {
            let all: Vec<String> = redis::cmd("LRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap();
            all
        }
    };
    let in_lane = list(lane.clone()).await;
    assert_eq!(
        in_lane.len(),
        2,
        "the anonymised job and the emptied one: {in_lane:?}"
    );
    // The deleted job is emptied where it sits and marked withdrawn (its token stays in
    // pending; fetch drops both).
    let sms_id = sms.split(' ').next().unwrap();
    assert_eq!(in_lane[1], format!("{sms_id} {{}}"));
    let withdrawn: bool = redis::cmd("SISMEMBER")
        .arg(&k.tomb)
        .arg(sms_id)
        .query_async(&mut h.conn())
        .await
        .unwrap();
    assert!(withdrawn);
    assert!(in_lane[0].contains("[erased]"), "{in_lane:?}");
    assert_eq!(
        list(k.pending.clone()).await,
        vec![other.clone(), token.to_owned()]
    );
    let index: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(&k.index)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(index.len(), 2, "the deleted job's copy went too: {index:?}");
    assert_eq!(index[other.split(' ').next().unwrap()], other);
    assert_eq!(index[in_lane[0].split(' ').next().unwrap()], in_lane[0]);
    let texts: Vec<String> = in_lane.into_iter().chain(index.into_values()).collect();
    assert!(with_traces(&texts).is_empty(), "{:?}", with_traces(&texts));
}

/// One Redis command, its answer dropped.
async fn command(h: &common::Harness, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    let _: () = cmd.query_async(&mut h.conn()).await.unwrap();
}
