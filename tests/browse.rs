//! Browsing a queue's jobs and purging what waits, against real Redis: pages and filters of
//! delayed, completed and pending jobs (`Queues::browse`), the jobs page and
//! `GET /api/queues/{queue}/jobs`, and the purge from the API, the dashboard's form and the
//! CLI — refused without the queue's name typed (or `--yes`), audited when done.
//!
//! The lane tests (`pending_lanes_*`, and every purge count) need the lane layout's producer
//! and `purge` script: with today's single `pending` list they fail on their first lane or
//! count assertion.

mod common;
#[allow(dead_code)]
#[path = "dashboard/support.rs"]
mod support;

use std::{process::Command, time::Duration};

use serde_json::value::RawValue;
use serde_json::{Value, json};
use switchboard::{
    dashboard::{Credentials, operators},
    queue::{
        Envelope, Queues,
        browse::{BrowsePage, BrowseQuery, BrowseState},
        job,
    },
};
use switchboard_jobs::{EnqueueOptions, Priority};

use common::Harness;
use support::{BACKLOG, Browser, TestApp, credentials, csrf_in, plain_client};

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

const VIEWER_PW: &str = "vera-pw-3c9e1a";
const OPERATOR_PW: &str = "otto-pw-7d20f4";

/// The shared test credentials plus a viewer (vera) and an operator (otto).
fn with_operators() -> Credentials {
    let vera = operators::hash_password(VIEWER_PW).unwrap();
    let otto = operators::hash_password(OPERATOR_PW).unwrap();
    Credentials {
        operators: operators::Operators::parse(&format!(
            "vera:viewer:{vera}\notto:operator:{otto}"
        ))
        .unwrap(),
        ..credentials()
    }
}

async fn browse(q: &Queues, queue: &str, query: BrowseQuery) -> BrowsePage {
    q.browse(queue, &query).await.unwrap()
}

fn ids(page: &BrowsePage) -> Vec<String> {
    page.jobs.iter().map(|j| j.job.id.clone()).collect()
}

fn query(state: BrowseState, kind: Option<&str>, tenant: Option<&str>) -> BrowseQuery {
    BrowseQuery {
        state,
        kind: kind.map(str::to_owned),
        tenant: tenant.map(str::to_owned),
        offset: 0,
        limit: 50,
    }
}

/// Put a delayed job of `kind` and `tenant` due at `due` straight into `delayed` (the layout
/// both the old and the lane producer write for delayed jobs); its id.
async fn seed_delayed(
    h: &Harness,
    queue: &str,
    n: usize,
    kind: &str,
    tenant: Option<&str>,
    due: u64,
) -> String {
    let id = format!("D{n:03}");
    let mut env = Envelope::new(
        kind,
        1,
        RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap(),
    );
    env.tn = tenant.map(str::to_owned);
    env.run_at = Some(due);
    let k = h.queues.keys(queue).unwrap();
    let () = redis::cmd("ZADD")
        .arg(&k.delayed)
        .arg(due)
        .arg(job::encode(&id, &env))
        .query_async(&mut h.conn())
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn delayed_jobs_are_paged_soonest_first_and_filtered_by_kind_and_tenant() {
    let h = Harness::new().await;
    let q = "later";
    let base = job::now_ms() + 3_600_000;
    // Seeded out of order: D006 is due first, D000 last.
    let plan = [
        ("test.a", Some("t1")),
        ("test.b", Some("t1")),
        ("test.a", Some("t2")),
        ("test.b", None),
        ("test.a", None),
        ("test.a", Some("t1")),
        ("test.b", Some("t2")),
    ];
    for (n, (kind, tenant)) in plan.iter().enumerate() {
        seed_delayed(&h, q, n, kind, *tenant, base + 1000 * (7 - n as u64)).await;
    }
    let soonest: Vec<String> = (0..7).rev().map(|n| format!("D{n:03}")).collect();

    let all = browse(&h.queues, q, query(BrowseState::Delayed, None, None)).await;
    assert_eq!(ids(&all), soonest);
    assert!(!all.has_more && !all.partial);
    assert_eq!(all.jobs[0].job.run_at_ms, Some(base + 1000));
    assert_eq!(all.jobs[0].job.kind.as_deref(), Some("test.b"));
    assert_eq!(all.jobs[0].job.tenant.as_deref(), Some("t2"));
    assert_eq!(all.jobs[0].job.args, Some(json!({"n": 6})));

    // Pages of three: 3 + 3 + 1, each saying whether more follow.
    let mut seen = Vec::new();
    for (offset, more) in [(0, true), (3, true), (6, false)] {
        let page = browse(
            &h.queues,
            q,
            BrowseQuery {
                offset,
                limit: 3,
                ..query(BrowseState::Delayed, None, None)
            },
        )
        .await;
        assert_eq!(page.has_more, more, "offset {offset}");
        seen.extend(ids(&page));
    }
    assert_eq!(seen, soonest);

    let a = browse(
        &h.queues,
        q,
        query(BrowseState::Delayed, Some("test.a"), None),
    )
    .await;
    assert_eq!(ids(&a), ["D005", "D004", "D002", "D000"]);
    let t1 = browse(&h.queues, q, query(BrowseState::Delayed, None, Some("t1"))).await;
    assert_eq!(ids(&t1), ["D005", "D001", "D000"]);
    let both = browse(
        &h.queues,
        q,
        query(BrowseState::Delayed, Some("test.a"), Some("t1")),
    )
    .await;
    assert_eq!(ids(&both), ["D005", "D000"]);
    // A filtered page in the middle: the second and third of test.a.
    let page = browse(
        &h.queues,
        q,
        BrowseQuery {
            offset: 1,
            limit: 2,
            ..query(BrowseState::Delayed, Some("test.a"), None)
        },
    )
    .await;
    assert_eq!(ids(&page), ["D004", "D002"]);
    assert!(page.has_more);
    let none = browse(
        &h.queues,
        q,
        query(BrowseState::Delayed, Some("test.zzz"), None),
    )
    .await;
    assert!(none.jobs.is_empty() && !none.has_more);

    // A job the producer delayed is listed like the seeded ones.
    let out = h
        .queues
        .enqueue_json(
            "test.c",
            1,
            "{}".into(),
            q,
            EnqueueOptions::default().run_in(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    let c = browse(
        &h.queues,
        q,
        query(BrowseState::Delayed, Some("test.c"), None),
    )
    .await;
    assert_eq!(ids(&c), [out.id]);
}

#[tokio::test]
async fn completed_jobs_are_newest_first_with_kind_and_tenant_from_done() {
    let h = Harness::new().await;
    let q = "finished";
    let k = h.queues.keys(q).unwrap();
    let mut conn = h.conn();
    let done = [
        ("C1", "test.a t1"),
        ("C2", "test.b "),
        ("C3", "test.a t2"),
        ("C4", "test.a "),
        ("C5", "test.b t1"),
    ];
    // What the ack script keeps: "<id> <finish ms> <kind> <tenant>", newest first.
    for (n, (id, what)) in done.iter().enumerate() {
        let () = redis::pipe()
            .zadd(&k.completed, *id, 1_700_000_000_000u64 + n as u64 * 1000)
            .lpush(
                &k.done,
                format!("{id} {} {what}", 1_700_000_000_000u64 + n as u64 * 1000),
            )
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    let all = browse(&h.queues, q, query(BrowseState::Completed, None, None)).await;
    assert_eq!(ids(&all), ["C5", "C4", "C3", "C2", "C1"]);
    assert_eq!(all.jobs[0].job.kind.as_deref(), Some("test.b"));
    assert_eq!(all.jobs[0].job.tenant.as_deref(), Some("t1"));
    assert_eq!(all.jobs[0].job.finished_at_ms, Some(1_700_000_004_000));
    assert_eq!(all.jobs[1].job.tenant, None, "an empty tenant is none");

    let a = browse(
        &h.queues,
        q,
        query(BrowseState::Completed, Some("test.a"), None),
    )
    .await;
    assert_eq!(ids(&a), ["C4", "C3", "C1"]);
    let t1 = browse(
        &h.queues,
        q,
        query(BrowseState::Completed, None, Some("t1")),
    )
    .await;
    assert_eq!(ids(&t1), ["C5", "C1"]);
    let page = browse(
        &h.queues,
        q,
        BrowseQuery {
            offset: 2,
            limit: 2,
            ..query(BrowseState::Completed, None, None)
        },
    )
    .await;
    assert_eq!(ids(&page), ["C3", "C2"]);
    assert!(page.has_more);
}

#[tokio::test]
async fn plain_pending_jobs_are_listed_next_to_run_first() {
    let h = Harness::new().await;
    let q = "plain";
    let mut enqueued = Vec::new();
    for n in 0..5 {
        let kind = if n % 2 == 0 { "test.even" } else { "test.odd" };
        let out = h
            .queues
            .enqueue_json(
                kind,
                1,
                format!(r#"{{"n":{n}}}"#),
                q,
                EnqueueOptions::default(),
            )
            .await
            .unwrap();
        enqueued.push(out.id);
    }
    let all = browse(&h.queues, q, query(BrowseState::Pending, None, None)).await;
    assert_eq!(ids(&all), enqueued, "FIFO: the oldest runs next");
    let odd = browse(
        &h.queues,
        q,
        query(BrowseState::Pending, Some("test.odd"), None),
    )
    .await;
    assert_eq!(ids(&odd), [enqueued[1].clone(), enqueued[3].clone()]);
    let page = browse(
        &h.queues,
        q,
        BrowseQuery {
            offset: 2,
            limit: 2,
            ..query(BrowseState::Pending, None, None)
        },
    )
    .await;
    assert_eq!(ids(&page), enqueued[2..4]);
    assert!(page.has_more);
}

/// Needs the lane producer: tenants' and prioritized jobs in lanes, tokens in `pending`.
#[tokio::test]
async fn pending_lanes_are_listed_by_priority_then_tenant() {
    let h = Harness::new().await;
    let q = "lanes";
    let push = |kind: &'static str, tenant: Option<&'static str>, prio: Option<Priority>| {
        let queues = h.queues.clone();
        async move {
            let mut o = EnqueueOptions::default();
            if let Some(t) = tenant {
                o = o.tenant(t);
            }
            if let Some(p) = prio {
                o = o.priority(p);
            }
            queues
                .enqueue_json(kind, 1, "{}".into(), q, o)
                .await
                .unwrap()
                .id
        }
    };
    let plain1 = push("test.a", None, None).await;
    let b1 = push("test.a", Some("beta"), None).await;
    let a1 = push("test.b", Some("alpha"), None).await;
    let low = push("test.a", Some("alpha"), Some(Priority::Low)).await;
    let b2 = push("test.b", Some("beta"), None).await;
    let high = push("test.b", None, Some(Priority::High)).await;
    let plain2 = push("test.b", None, None).await;

    let all = browse(&h.queues, q, query(BrowseState::Pending, None, None)).await;
    assert_eq!(
        ids(&all),
        [&high, &plain1, &plain2, &a1, &b1, &b2, &low].map(String::clone),
        "high lanes, plain pending, normal lanes by tenant, low lanes; tokens skipped"
    );
    assert_eq!(all.jobs[0].job.priority.as_deref(), Some("high"));
    assert_eq!(all.jobs[3].job.tenant.as_deref(), Some("alpha"));
    let beta = browse(
        &h.queues,
        q,
        query(BrowseState::Pending, None, Some("beta")),
    )
    .await;
    assert_eq!(ids(&beta), [b1.clone(), b2.clone()]);
    let alpha_a = browse(
        &h.queues,
        q,
        query(BrowseState::Pending, Some("test.a"), Some("alpha")),
    )
    .await;
    assert_eq!(ids(&alpha_a), [low]);
    let page = browse(
        &h.queues,
        q,
        BrowseQuery {
            offset: 3,
            limit: 2,
            ..query(BrowseState::Pending, None, None)
        },
    )
    .await;
    assert_eq!(ids(&page), [a1, b1]);
    assert!(page.has_more);
}

async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Three pending jobs of tenant t1 (two of kind test.x), two of t2, two delayed of t1, on
/// the queue nobody works.
async fn backlog(app: &TestApp) {
    for (kind, tenant, delay) in [
        ("test.x", "t1", 0),
        ("test.x", "t1", 0),
        ("test.y", "t1", 0),
        ("test.x", "t2", 0),
        ("test.y", "t2", 0),
        ("test.x", "t1", 600),
        ("test.y", "t1", 600),
    ] {
        let mut o = EnqueueOptions::default().tenant(tenant);
        if delay > 0 {
            o = o.run_in(Duration::from_secs(delay));
        }
        app.h
            .queues
            .enqueue_json(kind, 1, "{}".into(), BACKLOG, o)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn api_lists_jobs_and_purges_only_when_confirmed_audited() {
    let app = TestApp::start(Some(with_operators())).await;
    backlog(&app).await;
    let c = plain_client();
    let (vera, otto) = (basic("vera", VIEWER_PW), basic("otto", OPERATOR_PW));
    let jobs = |query: &str| app.url(&format!("/api/queues/{BACKLOG}/jobs?{query}"));

    let (status, page) = call(
        c.get(jobs("state=delayed&limit=1"))
            .header("authorization", &vera),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["jobs"][0]["state"], "delayed");
    assert_eq!(page["jobs"][0]["queue"], BACKLOG);
    let (status, err) = call(c.get(jobs("state=dead")).header("authorization", &vera)).await;
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("state"), "{err}");
    let (status, _) = call(c.get(jobs("tenant=a*b")).header("authorization", &vera)).await;
    assert_eq!(status, 400, "a tenant no job can carry");

    let purge = app.url(&format!("/api/queues/{BACKLOG}/purge"));
    // A viewer may not; a wrong confirmation purges nothing and records nothing.
    let (status, _) = call(
        c.post(&purge)
            .header("authorization", &vera)
            .json(&json!({"confirm": BACKLOG})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, err) = call(
        c.post(&purge)
            .header("authorization", &otto)
            .json(&json!({"confirm": "backlog-typo", "tenant": "t1"})),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("nothing was purged"),
        "{err}"
    );
    let (_, audit) = call(c.get(app.url("/api/audit")).header("authorization", &vera)).await;
    assert_eq!(audit, json!([]), "a refused purge leaves no record");
    let before = app.h.stats(BACKLOG).await;
    assert_eq!((before.pending, before.delayed), (5, 2));

    // Tenant t1's kind test.x: two pending, one delayed.
    let (status, body) = call(
        c.post(&purge)
            .header("authorization", &otto)
            .json(&json!({"confirm": BACKLOG, "kind": "test.x", "tenant": "t1"})),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"queue": BACKLOG, "purged": 3}))
    );
    let (_, audit) = call(c.get(app.url("/api/audit")).header("authorization", &vera)).await;
    let e = &audit[0];
    assert_eq!(e["who"], "otto", "{audit}");
    assert_eq!(e["action"], "purge");
    assert_eq!(e["via"], "api");
    assert_eq!(e["queues"], json!([BACKLOG]));
    assert_eq!(e["count"], 3);
    assert_eq!(e["detail"], "kind test.x, tenant t1");
    let (_, left) = call(
        c.get(jobs("state=pending&tenant=t1"))
            .header("authorization", &vera),
    )
    .await;
    let kinds: Vec<&str> = left["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["test.y"], "{left}");
    let (_, t2) = call(c.get(jobs("tenant=t2")).header("authorization", &vera)).await;
    assert_eq!(
        t2["jobs"].as_array().unwrap().len(),
        2,
        "another tenant's jobs stay"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_jobs_page_lists_links_and_its_purge_form_needs_the_queue_name() {
    let app = TestApp::start(Some(with_operators())).await;
    backlog(&app).await;
    let c = plain_client();
    let page_url = app.url(&format!("/dashboard/queues/{BACKLOG}/jobs?state=delayed"));

    // A viewer sees the delayed jobs, each linking to its job page, and no purge form.
    let html = c
        .get(&page_url)
        .header("authorization", basic("vera", VIEWER_PW))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let delayed = app
        .h
        .queues
        .browse(BACKLOG, &query(BrowseState::Delayed, None, None))
        .await
        .unwrap();
    assert_eq!(delayed.jobs.len(), 2);
    for j in &delayed.jobs {
        let link = format!(r#"href="/dashboard/jobs/{BACKLOG}/{}""#, j.job.id);
        assert!(html.contains(&link), "{link} in {html}");
    }
    assert!(html.contains("Jobs on"), "{html}");
    assert!(
        !html.contains(r#"id="purge""#),
        "a viewer is offered no purge"
    );
    let overview = c
        .get(app.url("/dashboard"))
        .header("authorization", basic("vera", VIEWER_PW))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        overview.contains(&format!("/dashboard/queues/{BACKLOG}/jobs")),
        "the overview links the page"
    );

    // The admin's browser session: the form is there; a wrong name is refused.
    let b = Browser::login(&app).await;
    let html = b.get(&page_url).await.text().await.unwrap();
    assert!(html.contains(r#"id="purge""#), "{html}");
    let csrf = csrf_in(&html);
    let form = app.url(&format!("/dashboard/queues/{BACKLOG}/purge"));
    let post = |confirm: &'static str| {
        b.client
            .post(&form)
            .header("cookie", &b.cookie)
            .header("origin", app.origin())
            .form(&[
                ("csrf", csrf.as_str()),
                ("confirm", confirm),
                ("tenant", "t2"),
                ("kind", ""),
            ])
            .send()
    };
    let r = post("nope").await.unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        to.contains("done=refused") && to.contains("tenant=t2"),
        "{to}"
    );
    let refused = b.get(&app.url(&to)).await.text().await.unwrap();
    assert!(refused.contains("Nothing purged"), "{refused}");
    assert_eq!(app.h.stats(BACKLOG).await.pending, 5, "nothing purged");

    let r = post(BACKLOG).await.unwrap();
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.contains("done=purged&n=2"), "{to}");
    let done = b.get(&app.url(&to)).await.text().await.unwrap();
    assert!(done.contains("Purged 2 waiting job(s)"), "{done}");
    assert_eq!(app.h.stats(BACKLOG).await.pending, 3);
    let (_, audit) = call(
        c.get(app.url("/api/audit"))
            .header("authorization", basic("vera", VIEWER_PW)),
    )
    .await;
    assert_eq!(audit[0]["action"], "purge", "{audit}");
    assert_eq!(audit[0]["via"], "dashboard");
    assert_eq!(audit[0]["detail"], "tenant t2");
    assert_eq!(audit[0]["count"], 2);
    app.stop().await;
}

#[tokio::test]
async fn cli_purge_needs_yes_and_is_audited() {
    let app = TestApp::start(Some(credentials())).await;
    backlog(&app).await;
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["--redis-url", &app.h.settings.redis.url, "purge", BACKLOG])
            .args(args)
            .env("SWITCHBOARD_QUEUE__PREFIX", app.h.prefix())
            .env("SWITCHBOARD_LOG", "warn")
            .env("USER", "carla")
            .output()
            .unwrap()
    };
    let out = run(&["--kind", "test.y"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(app.h.stats(BACKLOG).await.pending, 5, "nothing purged");

    let out = run(&["--kind", "test.y", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("purged 3 job(s)"), "{said}");
    let stats = app.h.stats(BACKLOG).await;
    assert_eq!((stats.pending, stats.delayed), (3, 1));
    let (_, audit) = call(
        plain_client()
            .get(app.url("/api/audit"))
            .bearer_auth(support::TOKEN),
    )
    .await;
    assert_eq!(audit[0]["who"], "cli:carla", "{audit}");
    assert_eq!(audit[0]["action"], "purge");
    assert_eq!(audit[0]["count"], 3);
    assert_eq!(audit[0]["detail"], "kind test.y");

    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "--redis-url",
            &app.h.settings.redis.url,
            "purge",
            "no-such-queue",
            "--yes",
        ])
        .env("SWITCHBOARD_QUEUE__PREFIX", app.h.prefix())
        .env("SWITCHBOARD_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown queue is refused");
    app.stop().await;
}
