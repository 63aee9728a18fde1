//! The demo's view of the running server, all over HTTP: the webhook endpoint, the demo's
//! `/dev/demo` routes ([`crate::dev::demo`]) and the dashboard API (open on loopback without
//! credentials; with them, `SWITCHBOARD_DASHBOARD_TOKEN` as a bearer token). Every failure
//! is turned into a sentence that says what to do.

use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::Value;

use super::sample::Delivery;
use crate::config::Settings;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Server {
    client: Client,
    url: String,
    token: Option<String>,
}

/// A delivery the server accepted, with the job it was queued as.
pub(super) struct Accepted {
    pub(super) what: String,
    pub(super) job: String,
}

impl Server {
    pub(super) fn new(settings: &Settings, url: &str) -> anyhow::Result<Self> {
        let client = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            client,
            url: url.trim_end_matches('/').to_owned(),
            token: settings
                .secrets
                .dashboard_token
                .as_ref()
                .map(|t| t.expose().to_owned()),
        })
    }

    /// Send `request`; the status and the body as JSON (`null` when it is not JSON).
    async fn send(&self, request: RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
        let answer = request.send().await.map_err(|e| {
            anyhow::anyhow!(
                "the server at {} is not reachable ({e}): is `switchboard serve` running there? (--url)",
                self.url
            )
        })?;
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Seed the demo business in the server's database.
    pub(super) async fn seed(&self) -> anyhow::Result<()> {
        let request = self.client.post(format!("{}/dev/demo/seed", self.url));
        let (status, body) = self.send(request).await?;
        self.dev_answer(status, &body).map(|_| ())
    }

    /// What the server's database holds for `call_id`.
    pub(super) async fn call(&self, call_id: &str) -> anyhow::Result<Value> {
        let request = self
            .client
            .get(format!("{}/dev/demo/calls/{call_id}", self.url));
        let (status, body) = self.send(request).await?;
        self.dev_answer(status, &body)
    }

    fn dev_answer(&self, status: StatusCode, body: &Value) -> anyhow::Result<Value> {
        if status.is_success() {
            return Ok(body.clone());
        }
        let error = body["error"].as_str().unwrap_or_default();
        if status == StatusCode::NOT_FOUND {
            bail!(
                "the server at {} has no /dev/demo routes: the demo needs `switchboard serve` with dev.stand_ins on (the development default)",
                self.url
            );
        }
        if error.contains("no such table") || error.contains("doesn't exist") {
            bail!(
                "the server's database has no schema yet ({error}): run `switchboard migrate` with the server's DATABASE_URL, then the demo again"
            );
        }
        bail!("the server answered {status}: {error}")
    }

    /// Post `delivery`; the job it was queued as. A duplicate is a failure: every run's ids
    /// are fresh, so a duplicate means the server took it for an earlier delivery.
    pub(super) async fn deliver(&self, delivery: &Delivery) -> anyhow::Result<Accepted> {
        let request = self
            .client
            .post(format!("{}/webhooks/{}", self.url, delivery.provider))
            .header(delivery.header.0, &delivery.header.1)
            .body(delivery.body.clone());
        let (status, body) = self.send(request).await?;
        let job = body["id"].as_str().unwrap_or_default().to_owned();
        if body["duplicate"] == true {
            bail!(
                "delivery {} was taken as a duplicate of an earlier run: the server answered {status} {body}",
                delivery.what
            );
        }
        if status != StatusCode::ACCEPTED || job.is_empty() {
            bail!("delivery {} was refused: {status} {body}", delivery.what);
        }
        Ok(Accepted {
            what: delivery.what.clone(),
            job,
        })
    }

    /// GET a dashboard API path; `None` when the dashboard is off or wants credentials the
    /// demo does not have.
    async fn dashboard(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let mut request = self.client.get(format!("{}{path}", self.url));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let (status, body) = self.send(request).await?;
        Ok(status.is_success().then_some(body))
    }

    /// The job `id` as the dashboard shows it (`state`, `error`, ...); `None` when the
    /// dashboard cannot be read or does not know the job.
    pub(super) async fn job(&self, id: &str) -> anyhow::Result<Option<Value>> {
        self.dashboard(&format!("/api/jobs/{id}")).await
    }

    /// The dead jobs, newest first; `None` when the dashboard cannot be read.
    pub(super) async fn dead_jobs(&self) -> anyhow::Result<Option<Vec<Value>>> {
        Ok(self
            .dashboard("/api/failed?limit=100")
            .await?
            .and_then(|v| v.as_array().cloned()))
    }
}
