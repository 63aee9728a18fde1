//! The app's enqueue API, `/api/v1/jobs`, against a running Switchboard on a real Redis:
//! accepted jobs run; wrong, revoked and out-of-scope keys are refused; bad requests get
//! 422 naming the field and queue nothing; an Idempotency-Key makes one job however often
//! (and however concurrently) it is sent; a batch is all or nothing; a cancelled job never
//! runs, a running one cannot be cancelled; a key over its rate gets 429; a job's tenant and
//! priority are taken and read back.

mod common;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{Harness, running::Running};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::{
    api::keys::{ApiKeys, NewKey},
    app::{Hooks, Roles},
    fleet::Observer,
    queue::job::Job,
};

const SECS: Duration = Duration::from_secs(20);

/// Switchboard with HTTP, the fleet over `maintenance` (where `noop` goes) and `calendar`,
/// and the jobs it started.
async fn serve(h: &Harness) -> (Running, Arc<Mutex<Vec<String>>>) {
    let mut settings = h.settings.clone();
    settings.fleet = h.fleet_settings("maintenance", 4, 4, 3);
    settings.fleet.supervisors[0]
        .queues
        .extend(["calendar".to_owned(), "notifications".to_owned()]);
    settings.fleet.supervisors[0].timeout_secs = 5;
    settings.queue.lease_secs = 10;
    let started = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&started);
    let observer: Observer =
        Arc::new(move |job: &Job| sink.lock().unwrap().push(job.id.to_string()));
    let roles = Roles {
        http: true,
        fleet: true,
        maintenance: true,
        ..Roles::default()
    };
    let hooks = Hooks {
        registry: Some(switchboard_jobs::registry()),
        observer: Some(observer),
        ..Hooks::default()
    };
    (Running::start(settings, roles, hooks).await, started)
}

async fn key(h: &Harness, name: &str, scopes: &[&str], rate: u32) -> String {
    ApiKeys::new(h.queues.clone())
        .create(NewKey {
            name: name.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            rate_per_minute: rate,
            expires_ms: None,
        })
        .await
        .unwrap()
        .key
}

async fn post(app: &Running, key: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    send(
        app,
        app.client.post(format!("{}{path}", app.base)).json(body),
        key,
    )
    .await
}

async fn send(app: &Running, req: reqwest::RequestBuilder, key: &str) -> (StatusCode, Value) {
    let _ = app;
    let r = req.bearer_auth(key).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(app: &Running, key: &str, id: &str) -> (StatusCode, Value) {
    send(
        app,
        app.client.get(format!("{}/api/v1/jobs/{id}", app.base)),
        key,
    )
    .await
}

#[tokio::test]
async fn an_accepted_job_runs_and_its_state_is_read_back() {
    let h = Harness::new().await;
    let (app, started) = serve(&h).await;
    let k = key(&h, "laravel", &["*"], 600).await;
    let (status, body) = post(
        &app,
        &k,
        "/api/v1/jobs",
        &json!({"kind": "noop", "args": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["queue"], "maintenance");
    assert_eq!(body["state"], "pending");
    assert_eq!(body["duplicate"], false);
    let id = body["id"].as_str().unwrap().to_owned();
    h.wait_processed("maintenance", 1, SECS).await;
    assert_eq!(*started.lock().unwrap(), vec![id.clone()]);
    let (status, job) = get(&app, &k, &id).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["queue"], "maintenance");
    let (status, _) = get(&app, &k, "maintenance~01NOSUCHJOB").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let audit = switchboard::audit::AuditLog::new(h.queues.clone(), 100)
        .recent(10, None)
        .await
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|(_, e)| e.who == "laravel" && e.via == "api" && e.jobs == [id.clone()]),
        "{audit:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn wrong_revoked_and_out_of_scope_keys_are_refused() {
    let h = Harness::new().await;
    let (app, _) = serve(&h).await;
    let job = json!({"kind": "noop", "args": {}});
    let (status, _) = post(&app, "sbk_nope_00", "/api/v1/jobs", &job).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = app
        .client
        .post(format!("{}/api/v1/jobs", app.base))
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no key at all");
    assert_eq!(r.headers()["www-authenticate"], "Bearer");

    let notify = key(&h, "mailer", &["notify.*"], 600).await;
    let booking = json!({"kind": "calendar.cancel", "args": {"booking_uid": "b1"}});
    let (status, body) = post(&app, &notify, "/api/v1/jobs", &booking).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["field"], "kind");

    let revoked = key(&h, "old", &["*"], 600).await;
    ApiKeys::new(h.queues.clone()).revoke("old").await.unwrap();
    // The revocation reaches this process within api.key_cache_ms (1 s by default); the key
    // was never used here, so at once.
    let (status, body) = post(&app, &revoked, "/api/v1/jobs", &job).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    assert_eq!(h.stats("maintenance").await.processed, 0);
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_name_the_field_and_queue_nothing() {
    let h = Harness::new().await;
    h.queues.pause("maintenance").await.unwrap();
    let (app, _) = serve(&h).await;
    let k = key(&h, "laravel", &["*"], 6000).await;
    let cases = [
        (json!({"kind": "no.such.kind", "args": {}}), "kind"),
        (
            json!({"kind": "noop", "args": {"sleep_ms": "soon"}}),
            "args.sleep_ms",
        ),
        (
            json!({"kind": "noop", "args": {}, "tenant": "acme corp"}),
            "tenant",
        ),
        (json!({"kind": "noop", "args": {}, "tenant": "_"}), "tenant"),
        (json!({"kind": "noop", "args": {}, "tenant": 42}), "tenant"),
        (
            json!({"kind": "noop", "args": {}, "priority": "urgent"}),
            "priority",
        ),
        (
            json!({"kind": "noop", "args": {}, "run_at": "tomorrow"}),
            "run_at",
        ),
        (
            json!({"kind": "noop", "args": {}, "queue": "nowhere"}),
            "queue",
        ),
        (
            json!({"kind": "noop", "args": {}, "sequence_key": "a b"}),
            "sequence_key",
        ),
        (
            json!({"kind": "noop", "args": {}, "colour": "red"}),
            "colour",
        ),
        (json!({"kind": "prune", "args": {}}), "kind"),
        (json!({"kind": "noop", "args": []}), "args"),
    ];
    for (body, field) in cases {
        let (status, answer) = post(&app, &k, "/api/v1/jobs", &body).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(
            answer["field"].as_str().unwrap_or(""),
            field,
            "{body} -> {answer}"
        );
        assert!(!answer["error"].as_str().unwrap().is_empty());
    }
    let raw = |body: &'static str| {
        app.client
            .post(format!("{}/api/v1/jobs", app.base))
            .bearer_auth(&k)
            .header("content-type", "application/json")
            .body(body)
    };
    assert_eq!(
        raw("{not json").send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let deep = Box::leak(format!("{}{}", "[".repeat(100), "]".repeat(100)).into_boxed_str());
    assert_eq!(
        raw(deep).send().await.unwrap().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let big = Box::leak(
        format!(
            r#"{{"kind":"noop","args":{{"x":"{}"}}}}"#,
            "a".repeat(2_000_000)
        )
        .into_boxed_str(),
    );
    assert_eq!(
        raw(big).send().await.unwrap().status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );

    let s = h.stats("maintenance").await;
    assert_eq!((s.pending, s.delayed), (0, 0), "nothing was queued");
    app.stop().await;
}

/// A job's tenant and priority are taken as sent and read back; without a priority the
/// kind's own applies (`calendar.cancel` is high); a wrong one in a batch names its place.
#[tokio::test]
async fn tenant_and_priority_are_taken_and_read_back() {
    let h = Harness::new().await;
    h.queues.pause("maintenance").await.unwrap();
    h.queues.pause("calendar").await.unwrap();
    let (app, _) = serve(&h).await;
    let k = key(&h, "laravel", &["*"], 6000).await;
    let cases = [
        (
            json!({"kind": "noop", "args": {}, "tenant": "42", "priority": "low"}),
            json!("42"),
            "low",
        ),
        (
            json!({"kind": "calendar.cancel", "args": {"uid": "bk_1", "reason": null}}),
            Value::Null,
            "high",
        ),
        (json!({"kind": "noop", "args": {}}), Value::Null, "normal"),
    ];
    for (body, tenant, priority) in cases {
        let (status, answer) = post(&app, &k, "/api/v1/jobs", &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body} -> {answer}");
        let (status, job) = get(&app, &k, answer["id"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        assert_eq!(job["state"], "pending", "{job}");
        assert_eq!(job["tenant"], tenant, "{body} -> {job}");
        assert_eq!(job["priority"], priority, "{body} -> {job}");
    }

    let bad = json!({"jobs": [
        {"kind": "noop", "args": {}, "tenant": "7"},
        {"kind": "noop", "args": {}, "priority": "urgent"},
    ]});
    let (status, body) = post(&app, &k, "/api/v1/jobs/batch", &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "jobs[1].priority");
    let bad = json!({"jobs": [{"kind": "noop", "args": {}, "tenant": "x".repeat(65)}]});
    let (status, body) = post(&app, &k, "/api/v1/jobs/batch", &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "jobs[0].tenant");
    assert_eq!(
        h.stats("maintenance").await.pending,
        2,
        "the refused batches queued nothing"
    );
    app.stop().await;
}

#[tokio::test]
async fn one_idempotency_key_makes_one_job_even_sent_fifty_times_at_once() {
    let h = Harness::new().await;
    h.queues.pause("maintenance").await.unwrap();
    let (app, _) = serve(&h).await;
    let k = key(&h, "laravel", &["*"], 6000).await;
    let job = json!({"kind": "noop", "args": {}});
    let send_with = |idem: &'static str| {
        app.client
            .post(format!("{}/api/v1/jobs", app.base))
            .bearer_auth(&k)
            .header("idempotency-key", idem)
            .json(&job)
            .send()
    };
    let first: Value = send_with("order-1").await.unwrap().json().await.unwrap();
    let second = send_with("order-1").await.unwrap();
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["state"], first["state"]);
    assert_eq!(second["duplicate"], true);
    assert_eq!(h.stats("maintenance").await.pending, 1);

    let answers = futures::future::join_all((0..50).map(|_| async {
        let r = send_with("order-2").await.unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    }))
    .await;
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::ACCEPTED));
    let ids: HashSet<String> = answers
        .iter()
        .map(|(_, body)| body["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(h.stats("maintenance").await.pending, 2, "one job per key");
    app.stop().await;
}

#[tokio::test]
async fn a_batch_is_all_or_nothing() {
    let h = Harness::new().await;
    h.queues.pause("maintenance").await.unwrap();
    let (app, _) = serve(&h).await;
    let k = key(&h, "laravel", &["*"], 6000).await;
    let bad = json!({"jobs": [
        {"kind": "noop", "args": {}},
        {"kind": "noop", "args": {"sleep_ms": -1}},
        {"kind": "noop", "args": {}},
    ]});
    let (status, body) = post(&app, &k, "/api/v1/jobs/batch", &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "jobs[1].args.sleep_ms");
    assert_eq!(h.stats("maintenance").await.pending, 0, "nothing queued");

    let jobs: Vec<Value> = (0..100)
        .map(|_| json!({"kind": "noop", "args": {}}))
        .collect();
    let (status, body) = post(&app, &k, "/api/v1/jobs/batch", &json!({ "jobs": jobs })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["jobs"].as_array().unwrap().len(), 100);
    assert_eq!(h.stats("maintenance").await.pending, 100);
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"kind": "noop", "args": {}}))
        .collect();
    let (status, body) = post(&app, &k, "/api/v1/jobs/batch", &json!({ "jobs": too_many })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "jobs");
    app.stop().await;
}

#[tokio::test]
async fn a_cancelled_job_never_runs_and_a_running_one_cannot_be_cancelled() {
    let h = Harness::new().await;
    let (app, started) = serve(&h).await;
    let k = key(&h, "laravel", &["*"], 6000).await;
    let later = json!({"kind": "noop", "args": {}, "delay_secs": 1});
    let (_, cancelled) = post(&app, &k, "/api/v1/jobs", &later).await;
    assert_eq!(cancelled["state"], "delayed");
    let (_, witness) = post(&app, &k, "/api/v1/jobs", &later).await;
    let id = cancelled["id"].as_str().unwrap();
    let r = app
        .client
        .delete(format!("{}/api/v1/jobs/{id}", app.base))
        .bearer_auth(&k)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The witness was due at the same time: once it ran, the cancelled one would have too.
    h.wait_processed("maintenance", 1, SECS).await;
    let ran = started.lock().unwrap().clone();
    assert_eq!(ran, vec![witness["id"].as_str().unwrap().to_owned()]);
    let (_, job) = get(&app, &k, id).await;
    assert_eq!(job["state"], "cancelled", "{job}");
    let again = app
        .client
        .delete(format!("{}/api/v1/jobs/{id}", app.base))
        .bearer_auth(&k)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);

    let slow = json!({"kind": "noop", "args": {"sleep_ms": 3000}});
    let (_, running) = post(&app, &k, "/api/v1/jobs", &slow).await;
    let running = running["id"].as_str().unwrap().to_owned();
    let queues = h.queues.clone();
    h.wait_for("the slow job running", SECS, || {
        let (queues, running) = (queues.clone(), running.clone());
        async move {
            queues
                .find_job("maintenance", &running)
                .await
                .unwrap()
                .is_some_and(|v| v.state.as_str() == "running")
        }
    })
    .await;
    let r = app
        .client
        .delete(format!("{}/api/v1/jobs/{running}", app.base))
        .bearer_auth(&k)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    app.stop().await;
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after() {
    let h = Harness::new().await;
    h.queues.pause("maintenance").await.unwrap();
    let (app, _) = serve(&h).await;
    let k = key(&h, "tight", &["*"], 3).await;
    // Eight requests: however a minute boundary splits them, one minute sees four or more.
    let mut limited = Vec::new();
    for _ in 0..8 {
        let r = app
            .client
            .post(format!("{}/api/v1/jobs", app.base))
            .bearer_auth(&k)
            .json(&json!({"kind": "noop", "args": {}}))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&wait), "{wait}");
            limited.push(wait);
        } else {
            assert_eq!(r.status(), StatusCode::ACCEPTED);
        }
    }
    assert!(!limited.is_empty(), "no request was limited");
    assert_eq!(
        h.stats("maintenance").await.pending,
        8 - limited.len() as u64
    );
    app.stop().await;
}
