//! The running Switchboard of the pages tests: fleet, maintenance and HTTP in one process
//! over queues `quick` and `slow` with two job kinds of known run times, and a logged-in
//! browser session.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard::{
    app::{self, Hooks, Roles},
    dashboard::Credentials,
};
use switchboard_jobs::{EnqueueOptions, JobArgs};
use tokio::sync::oneshot;

use crate::common::{Harness, supervisor};

pub const LIMIT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "metrics-password-3b9e51d2";

/// `GET url`: status and body; `None` while nothing answers.
pub async fn get(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let r = client.get(url).send().await.ok()?;
    Some((r.status().as_u16(), r.text().await.ok()?))
}

/// Sleeps 30 ms.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Quick {}

impl JobArgs for Quick {
    const KIND: &'static str = "test.quick";
    const QUEUE: &'static str = "quick";
}

/// Sleeps 150 ms.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Slow {}

impl JobArgs for Slow {
    const KIND: &'static str = "test.slow";
    const QUEUE: &'static str = "slow";
}

pub const QUICK_MS: f64 = 30.0;
pub const SLOW_MS: f64 = 150.0;
/// What a run may take beyond its sleep on a loaded test machine.
pub const SLACK_MS: f64 = 400.0;

/// Fleet, maintenance and HTTP over one supervisor on `quick` and `slow`, 4 slots each.
pub struct MetricsApp {
    pub h: Harness,
    pub base: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl MetricsApp {
    pub async fn start(kind_metrics: bool) -> Self {
        let h = Harness::with(|s| {
            s.dev.stand_ins = false;
            s.queue.kind_metrics = kind_metrics;
            s.fleet.supervisors = vec![supervisor("metrics", &["quick", "slow"], 4, 4, 2)];
        })
        .await;
        let mut registry = switchboard_jobs::registry();
        registry.register::<Quick, _, _>(|_, _| async {
            tokio::time::sleep(Duration::from_millis(QUICK_MS as u64)).await;
            Ok(())
        });
        registry.register::<Slow, _, _>(|_, _| async {
            tokio::time::sleep(Duration::from_millis(SLOW_MS as u64)).await;
            Ok(())
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hooks = Hooks {
            listener: Some(listener),
            registry: Some(registry),
            dashboard_credentials: Some(Credentials {
                password: Some(PASSWORD.into()),
                ..Credentials::default()
            }),
            ..Hooks::default()
        };
        let roles = Roles {
            fleet: true,
            maintenance: true,
            http: true,
            ..Roles::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app::run(h.settings.clone(), roles, hooks, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        let url = format!("{base}/readyz");
        h.wait_for("the app to answer", LIMIT, || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                get(&client, &url)
                    .await
                    .is_some_and(|(code, _)| code == 200)
            }
        })
        .await;
        Self {
            h,
            base,
            stop,
            task,
        }
    }

    /// 6 quick jobs on `quick`, 2 quick and 3 slow ones on `slow`; returns once all 11 are
    /// done in Redis.
    pub async fn run_jobs(&self) {
        let queues = &self.h.queues;
        queues
            .enqueue_many("quick", &vec![Quick::default(); 6], None)
            .await
            .unwrap();
        for _ in 0..2 {
            let on_slow = EnqueueOptions::default().on_queue("slow".to_owned());
            queues.enqueue(&Quick::default(), on_slow).await.unwrap();
        }
        queues
            .enqueue_many("slow", &vec![Slow::default(); 3], None)
            .await
            .unwrap();
        self.h.wait_processed("quick", 6, LIMIT).await;
        self.h.wait_processed("slow", 5, LIMIT).await;
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// A browser session: logs in through the form and keeps the cookie.
pub struct Session {
    client: reqwest::Client,
    cookie: String,
    base: String,
}

impl Session {
    pub async fn login(base: &str) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = client
            .post(format!("{base}/dashboard/login"))
            .header("origin", base)
            .form(&[
                ("username", "admin"),
                ("password", PASSWORD),
                ("next", "/dashboard/metrics"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "logged in");
        let cookie = r.headers()["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_owned();
        Self {
            client,
            cookie,
            base: base.to_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn json(&self, path: &str) -> Value {
        let (code, body) = self.get(path).await;
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}
