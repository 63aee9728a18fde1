//! A running Switchboard for the dashboard tests: `app::run` with the fleet, maintenance and
//! HTTP roles on a port-0 listener, the test's own Redis prefix, and one job kind the test
//! controls (`test.fickle` fails with "boom" while its switch is on). Plus HTTP helpers that
//! do what a browser would: log in, keep the cookie, read the CSRF token from a page.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard::{
    app::{self, Hooks, Roles},
    dashboard::Credentials,
};
use switchboard_jobs::{EnqueueOptions, JobArgs, JobError};
use tokio::sync::oneshot;

use crate::common::{Harness, supervisor};

pub const TOKEN: &str = "dash-token-5d1f0c2e9b7a4e36";
pub const PASSWORD: &str = "dash-password-8c41e07f";
/// The queue the fleet works; `backlog` is registered but nobody works it.
pub const WORKED: &str = "flaky";
pub const BACKLOG: &str = "backlog";

/// Fails with "boom" while the test's switch is on. Carries whatever the test puts in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fickle(pub Value);

impl JobArgs for Fickle {
    const KIND: &'static str = "test.fickle";
    const QUEUE: &'static str = WORKED;
}

pub fn credentials() -> Credentials {
    Credentials {
        token: Some(TOKEN.into()),
        password: Some(PASSWORD.into()),
        ..Credentials::default()
    }
}

pub struct TestApp {
    pub h: Harness,
    pub base: String,
    pub failing: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Start with `credentials` (`None`: a dashboard without any).
    pub async fn start(credentials: Option<Credentials>) -> Self {
        let h = Harness::with(|s| {
            s.dev.stand_ins = false;
            s.dashboard.refresh_secs = 1;
            s.fleet.supervisors = vec![supervisor("dash", &[WORKED], 2, 2, 2)];
        })
        .await;
        h.queues.register_queue(BACKLOG).await.unwrap();
        let failing = Arc::new(AtomicBool::new(true));
        let mut registry = switchboard_jobs::registry();
        let f = Arc::clone(&failing);
        registry.register::<Fickle, _, _>(move |_, _| {
            let failing = f.load(Ordering::SeqCst);
            async move {
                if failing {
                    Err(JobError::retry("boom"))
                } else {
                    Ok(())
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hooks = Hooks {
            listener: Some(listener),
            registry: Some(registry),
            dashboard_credentials: Some(credentials.unwrap_or_default()),
            ..Hooks::default()
        };
        let roles = Roles {
            fleet: true,
            maintenance: true,
            scheduler: false,
            http: true,
            ingest: false,
            embedded_redis: false,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app::run(h.settings.clone(), roles, hooks, async {
            let _ = stopped.await;
        }));
        let app = Self {
            h,
            base,
            failing,
            stop: Some(stop),
            task: Some(task),
        };
        app.wait_ready().await;
        app
    }

    async fn wait_ready(&self) {
        let client = plain_client();
        let url = self.url("/readyz");
        self.h
            .wait_for("the app to answer", Duration::from_secs(20), || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    client
                        .get(url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200)
                }
            })
            .await;
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The `Origin` a browser on the dashboard sends.
    pub fn origin(&self) -> &str {
        &self.base
    }

    /// Enqueue a `test.fickle` job with `args` on `queue`; its id.
    pub async fn enqueue(&self, queue: &str, args: &Value) -> String {
        self.h
            .queues
            .enqueue_json(
                Fickle::KIND,
                1,
                args.to_string(),
                queue,
                EnqueueOptions::default(),
            )
            .await
            .unwrap()
            .id
    }

    /// Enqueue on the worked queue and wait until the job is dead (two failed attempts).
    pub async fn dead_job(&self, args: &Value) -> String {
        let before = self.h.stats(WORKED).await.dead;
        let id = self.enqueue(WORKED, args).await;
        let queues = self.h.queues.clone();
        self.h
            .wait_for("the job to die", Duration::from_secs(15), || {
                let queues = queues.clone();
                async move { queues.stats(WORKED).await.unwrap().dead > before }
            })
            .await;
        id
    }
}

/// A client that shows redirects instead of following them.
pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A logged-in browser, as far as HTTP goes: the session cookie and its CSRF token.
pub struct Browser {
    pub client: reqwest::Client,
    pub cookie: String,
    pub csrf: String,
}

impl Browser {
    /// Log in through the form, then read the CSRF token from a page.
    pub async fn login(app: &TestApp) -> Self {
        let client = plain_client();
        let r = client
            .post(app.url("/dashboard/login"))
            .header("origin", app.origin())
            .form(&[
                ("username", "admin"),
                ("password", PASSWORD),
                ("next", "/dashboard/failed"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "login answers with a redirect");
        assert_eq!(r.headers()["location"], "/dashboard/failed");
        let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attr), "cookie lacks {attr}: {set}");
        }
        let cookie = set.split(';').next().unwrap().to_owned();
        let page = client
            .get(app.url("/dashboard/failed"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let csrf = csrf_in(&page.text().await.unwrap());
        Self {
            client,
            cookie,
            csrf,
        }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.client
            .get(url)
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }
}

/// The CSRF token in the forms of a page.
pub fn csrf_in(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .expect("the page has a form with a CSRF token");
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    let token = &rest[..rest.find('"').unwrap()];
    assert_eq!(token.len(), 64, "a 256-bit token: {token}");
    token.to_owned()
}
