//! The JSON API: the workload and the fleet as numbers, a job found by id in every state it
//! can be in, and the actions on queues and dead jobs.

use std::{sync::atomic::Ordering, time::Duration};

use serde_json::{Value, json};
use switchboard_jobs::EnqueueOptions;

use crate::{
    common,
    support::{BACKLOG, TOKEN, TestApp, WORKED, credentials, plain_client},
};

#[tokio::test]
async fn the_api_reports_the_workload_and_the_fleet() {
    let app = TestApp::start(Some(credentials())).await;
    let api = Api::new(&app);
    app.dead_job(&json!({"n": "dead"})).await;
    app.failing.store(false, Ordering::SeqCst);
    app.enqueue(WORKED, &json!({"n": "done"})).await;
    app.h
        .wait_processed(WORKED, 1, Duration::from_secs(10))
        .await;
    for n in 0..3 {
        app.enqueue(BACKLOG, &json!({ "n": n })).await;
    }

    let (status, overview) = api.get("/api/overview").await;
    assert_eq!(status, 200);
    assert_eq!(overview["status"], "active");
    assert_eq!(overview["jobs_per_minute"], 1);
    assert_eq!(overview["jobs_past_hour"], 1);
    assert_eq!(overview["failed_past_7_days"], 1);
    assert_eq!(overview["workers"], 1);
    assert_eq!(overview["processes"], 1);
    assert_eq!(overview["longest_wait"]["queue"], BACKLOG);
    let (_, queues) = api.get("/api/queues").await;
    let row = |name: &str| {
        queues
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        (
            row(BACKLOG)["pending"].as_u64(),
            row(BACKLOG)["workers"].as_u64()
        ),
        (Some(3), Some(0))
    );
    assert_eq!(
        (
            row(WORKED)["dead"].as_u64(),
            row(WORKED)["processed"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let (_, fleet) = api.get("/api/workers").await;
    assert_eq!(fleet["supervisors"][0]["name"], "dash");
    assert_eq!(fleet["supervisors"][0]["queues"], json!([WORKED]));
    assert_eq!(fleet["workers"].as_array().unwrap().len(), 1);

    assert_eq!(
        api.post(&format!("/api/queues/{BACKLOG}/pause")).await.0,
        200
    );
    assert!(app.h.stats(BACKLOG).await.paused);
    let (_, overview) = api.get("/api/overview").await;
    assert_eq!(overview["status"], "active", "the worked queue still runs");
    assert_eq!(
        api.post(&format!("/api/queues/{WORKED}/pause")).await.0,
        200
    );
    let (_, overview) = api.get("/api/overview").await;
    assert_eq!(overview["status"], "paused");
    assert_eq!(
        api.post(&format!("/api/queues/{BACKLOG}/continue")).await.0,
        200
    );
    assert!(!app.h.stats(BACKLOG).await.paused);
    app.stop().await;
}

#[tokio::test]
async fn the_api_finds_jobs_in_every_state_and_acts_on_dead_ones() {
    let app = TestApp::start(Some(credentials())).await;
    let api = Api::new(&app);
    let dead = app.dead_job(&json!({"n": "dead"})).await;
    app.failing.store(false, Ordering::SeqCst);
    let done = app.enqueue(WORKED, &json!({"n": "done"})).await;
    app.h
        .wait_processed(WORKED, 1, Duration::from_secs(10))
        .await;
    let mut backlog = Vec::new();
    for n in 0..3 {
        backlog.push(app.enqueue(BACKLOG, &json!({ "n": n })).await);
    }
    let later = EnqueueOptions::default().run_in(Duration::from_secs(3600));
    let delayed = app
        .h
        .queues
        .enqueue_json("test.fickle", 1, "{}".into(), BACKLOG, later)
        .await
        .unwrap()
        .id;

    let (_, job) = api
        .get(&format!("/api/jobs/{BACKLOG}/{}", backlog[0]))
        .await;
    assert_eq!(
        (job["state"].as_str(), job["position"].as_u64()),
        (Some("pending"), Some(1))
    );
    let (_, job) = api.get(&format!("/api/jobs/{}", backlog[2])).await;
    assert_eq!(
        (job["queue"].as_str(), job["position"].as_u64()),
        (Some(BACKLOG), Some(3))
    );
    let (_, job) = api.get(&format!("/api/jobs/{WORKED}/{done}")).await;
    assert_eq!(job["state"], "completed");
    assert!(job["finished_at_ms"].as_u64().is_some());
    let (_, job) = api.get(&format!("/api/jobs/{WORKED}/{dead}")).await;
    assert_eq!(
        (job["state"].as_str(), job["attempts"].as_u64()),
        (Some("dead"), Some(2))
    );
    assert_eq!(job["error"], "boom");
    assert_eq!(job["args"]["n"], "dead");
    let (_, job) = api.get(&format!("/api/jobs/{BACKLOG}/{delayed}")).await;
    assert_eq!(job["state"], "delayed");
    let (run_at, enqueued) = (
        job["run_at_ms"].as_u64().unwrap(),
        job["enqueued_at_ms"].as_u64().unwrap(),
    );
    assert!(run_at > enqueued + 3_500_000, "{job}");
    assert_eq!(
        api.get(&format!("/api/jobs/{BACKLOG}/01NOSUCHJOB")).await.0,
        404
    );
    assert_eq!(api.get("/api/jobs/bad%20id").await.0, 400);
    assert_eq!(api.get("/api/failed?queue=no%7Bgood").await.0, 400);

    assert_eq!(
        api.post(&format!("/api/failed/{WORKED}/nosuch/forget"))
            .await
            .0,
        404
    );
    let (status, answer) = api.post("/api/failed/retry-all").await;
    assert_eq!((status, answer["retried"].as_u64()), (200, Some(1)));
    app.h
        .wait_processed(WORKED, 2, Duration::from_secs(10))
        .await;
    assert_eq!(api.get("/api/failed").await.1, json!([]));
    app.stop().await;
}

/// The API with the bearer token.
struct Api<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    auth: String,
}

impl<'a> Api<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            client: plain_client(),
            auth: format!("Bearer {TOKEN}"),
        }
    }

    async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let req = self.client.get(self.app.url(path));
        Self::send(req.header("authorization", &self.auth)).await
    }

    async fn post(&self, path: &str) -> (u16, Value) {
        let req = self.client.post(self.app.url(path));
        Self::send(req.header("authorization", &self.auth)).await
    }
}

#[tokio::test]
async fn a_job_a_blocking_fetch_took_is_found_as_running() {
    let h = common::Harness::new().await;
    let id = h
        .queues
        .enqueue_json("noop", 1, "{}".into(), "landing", EnqueueOptions::default())
        .await
        .unwrap()
        .id;
    // What a worker's blocking fetch does before its next fetch leases the job.
    let keys = h.queues.keys("landing").unwrap();
    let worker = "host:1:sup:landing:0:abcd";
    let mut conn = h.conn();
    let moved: Option<String> = redis::cmd("LMOVE")
        .arg(&keys.pending)
        .arg(keys.inbox(worker))
        .arg("RIGHT")
        .arg("LEFT")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(moved.is_some_and(|item| item.starts_with(&id)));
    let () = redis::cmd("ZADD")
        .arg(&keys.workers)
        .arg(u64::MAX >> 12)
        .arg(worker)
        .query_async(&mut conn)
        .await
        .unwrap();
    let found = h.queues.find_job("landing", &id).await.unwrap().unwrap();
    assert_eq!(found.state.as_str(), "running");
    assert_eq!(found.worker.as_deref(), Some(worker));
    assert_eq!(found.kind.as_deref(), Some("noop"));
}
