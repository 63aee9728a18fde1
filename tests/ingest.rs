//! The ingest endpoint over HTTP against a real Redis: fixture deliveries, duplicates (also
//! 50 at once), every rejection, rotation, Redis outages, and interop with the official SDKs.

mod common;

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use common::{Harness, free_port};
use reqwest::StatusCode;
use serde_json::Value;
use switchboard::{
    app::{self, Hooks, Roles},
    config::Settings,
    ingest::{SecretList, WebhookSecrets},
    queue::job,
};
use tokio::sync::oneshot;

const RETELL_KEY: &str = "key_test_0123456789abcdef";
const STRIPE_SECRET: &str = "whsec_test_0123456789abcdef";
const CALCOM_SECRET: &str = "cal_webhook_secret_test";
/// The fixture vectors' signing times: Retell in ms, Stripe in s.
const RETELL_TS: u64 = 1_790_150_400_000;
const STRIPE_TS: u64 = 1_790_154_061;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn vector(file: &str) -> (String, String) {
    let all: Value = serde_json::from_slice(&fixture("signature_vectors.json")).unwrap();
    let v = all
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["file"] == file)
        .unwrap();
    (
        v["header"].as_str().unwrap().to_owned(),
        v["value"].as_str().unwrap().to_owned(),
    )
}

fn secrets() -> WebhookSecrets {
    WebhookSecrets {
        retell: Some(SecretList::parse(RETELL_KEY)),
        calcom: Some(SecretList::parse(&format!(
            "cal_new_secret,{CALCOM_SECRET}"
        ))),
        stripe: Some(SecretList::parse(STRIPE_SECRET)),
    }
}

/// A running ingest role with its own key prefix.
struct Ingest {
    base: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Ingest {
    async fn start(settings: Settings, secrets: WebhookSecrets, clock_ms: Option<u64>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let hooks = Hooks {
            listener: Some(listener),
            secrets: Some(secrets),
            clock: clock_ms.map(|ms| Arc::new(move || ms) as switchboard::ingest::Clock),
            ..Hooks::default()
        };
        let task = tokio::spawn(app::run(settings, Roles::ingest(), hooks, async {
            let _ = rx.await;
        }));
        let client = reqwest::Client::new();
        let base = format!("http://{addr}");
        let ingest = Self {
            base,
            client,
            stop: Some(tx),
            task: Some(task),
        };
        for _ in 0..200 {
            if ingest
                .client
                .get(format!("{}/healthz", ingest.base))
                .send()
                .await
                .is_ok()
            {
                return ingest;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("ingest did not come up");
    }

    async fn post(
        &self,
        provider: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .client
            .post(format!("{}/webhooks/{provider}", self.base))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let json = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, json, headers)
    }

    async fn post_fixture(&self, file: &str) -> (StatusCode, Value) {
        let (header, value) = vector(file);
        let provider = file.split('_').next().unwrap();
        let (s, j, _) = self
            .post(
                provider,
                &[
                    (header.as_str(), value.as_str()),
                    ("x-request-id", "req-test-1"),
                ],
                fixture(file),
            )
            .await;
        (s, j)
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// Items on the webhooks queue, decoded.
/// Every webhook job enqueued: the pending ones, then those waiting in line behind an
/// earlier event of the same provider object (`<due ms> <item>` in its sequence list).
async fn queued(h: &Harness) -> Vec<(String, job::Envelope)> {
    let mut items = h.pending_items("webhooks").await;
    let prefix = h.queues.keys("webhooks").unwrap().sequence_prefix();
    let mut conn = h.conn();
    for key in h
        .keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
    {
        let waiting: Vec<String> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(1)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        items.extend(
            waiting
                .iter()
                .map(|w| w.split_once(' ').unwrap().1.to_owned()),
        );
    }
    items
        .iter()
        .map(|i| {
            let (id, e) = job::decode(i).unwrap();
            (id.to_owned(), e)
        })
        .collect()
}

#[tokio::test]
async fn fixture_deliveries_are_enqueued_with_their_exact_bytes() {
    let h = Harness::new().await;
    let retell = Ingest::start(h.settings.clone(), secrets(), Some(RETELL_TS)).await;
    let stripe = Ingest::start(h.settings.clone(), secrets(), Some(STRIPE_TS * 1000)).await;
    let mut accepted = Vec::new();
    for file in [
        "retell_call_started.json",
        "retell_call_ended.json",
        "retell_call_analyzed.json",
    ] {
        let (status, body) = retell.post_fixture(file).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{file}: {body}");
        accepted.push((file, body["id"].as_str().unwrap().to_owned()));
    }
    for file in [
        "stripe_invoice_paid.json",
        "stripe_invoice_payment_failed.json",
        "calcom_booking_created.json",
        "calcom_booking_cancelled.json",
        "calcom_booking_rescheduled.json",
    ] {
        let (status, body) = stripe.post_fixture(file).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{file}: {body}");
        accepted.push((file, body["id"].as_str().unwrap().to_owned()));
    }
    let jobs = queued(&h).await;
    assert_eq!(jobs.len(), accepted.len());
    for (file, id) in &accepted {
        let (_, env) = jobs
            .iter()
            .find(|(jid, _)| jid == id)
            .unwrap_or_else(|| panic!("{file} not queued"));
        let provider = file.split('_').next().unwrap();
        assert_eq!(env.kind, format!("webhook.{provider}"));
        // Each event is in line with the other events of its provider object.
        let object = match provider {
            "retell" => "call_5b2e9d0c7a4f41e38a1d2c6f90b1e7aa",
            "stripe" => "cus_T8xHarborDental",
            _ => "bK3v9Qp2LmX7tRz1Yc8WnA",
        };
        assert_eq!(
            env.sq.as_deref(),
            Some(format!("{provider}:{object}").as_str()),
            "{file}"
        );
        let args: Value = serde_json::from_str(env.args.get()).unwrap();
        assert_eq!(
            args["body"].as_str().unwrap().as_bytes(),
            fixture(file).as_slice(),
            "{file}: exact raw body"
        );
        assert_eq!(args["provider"], provider);
        assert_eq!(args["request_id"], "req-test-1");
        assert!(args["received_at_ms"].as_u64().unwrap() > 0);
        assert!(!args["event_type"].as_str().unwrap().is_empty());
        assert!(!args["dedupe_key"].as_str().unwrap().is_empty());
    }
    retell.stop().await;
    stripe.stop().await;
}

#[tokio::test]
async fn a_repeated_event_is_a_duplicate_even_fifty_at_once() {
    let h = Harness::new().await;
    let ingest =
        Arc::new(Ingest::start(h.settings.clone(), secrets(), Some(STRIPE_TS * 1000)).await);
    let (status, first) = ingest.post_fixture("stripe_invoice_paid.json").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, again) = ingest.post_fixture("stripe_invoice_paid.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], first["id"]);

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let ingest = Arc::clone(&ingest);
        tasks.push(tokio::spawn(async move {
            ingest
                .post_fixture("stripe_invoice_payment_failed.json")
                .await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let created: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .collect();
    assert_eq!(
        created.len(),
        1,
        "exactly one job for 50 identical deliveries"
    );
    let id = created[0].1["id"].clone();
    assert!(results.iter().all(|(s, b)| *s == StatusCode::ACCEPTED
        || (*s == StatusCode::OK && b["duplicate"] == true && b["id"] == id)));
    assert_eq!(queued(&h).await.len(), 2);
    Arc::into_inner(ingest).unwrap().stop().await;
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one walk through every rejection
async fn every_rejection_path_answers_with_a_clear_error_and_enqueues_nothing() {
    let mut h = Harness::new().await;
    h.settings.ingest.max_body_bytes = 4096;
    let ingest = Ingest::start(h.settings.clone(), secrets(), Some(RETELL_TS)).await;
    let body = fixture("retell_call_started.json");
    let (header, value) = vector("retell_call_started.json");

    let (s, j, _) = ingest.post("retell", &[], body.clone()).await;
    assert_eq!(
        (s, j["error"].as_str().unwrap()),
        (
            StatusCode::UNAUTHORIZED,
            "missing x-retell-signature header"
        )
    );
    let wrong = format!("v={RETELL_TS},d={}", "ab".repeat(32));
    let (s, j, _) = ingest
        .post("retell", &[(&header, &wrong)], body.clone())
        .await;
    assert_eq!(
        (s, j["error"].as_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "signature does not match")
    );
    let (s, j, _) = ingest
        .post("retell", &[(&header, "v=oops")], body.clone())
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed x-retell-signature header"),
        "{j}"
    );
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let (s, _, _) = ingest.post("retell", &[(&header, &value)], tampered).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let late = Ingest::start(h.settings.clone(), secrets(), Some(RETELL_TS + 300_001)).await;
    let (s, j, _) = late
        .post("retell", &[(&header, &value)], body.clone())
        .await;
    assert_eq!(
        (s, j["error"].as_str().unwrap()),
        (
            StatusCode::UNAUTHORIZED,
            "signature timestamp outside the 300 s tolerance"
        )
    );
    late.stop().await;

    let sign = |b: &[u8]| {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(RETELL_KEY.as_bytes()).unwrap();
        mac.update(b);
        mac.update(RETELL_TS.to_string().as_bytes());
        format!(
            "v={RETELL_TS},d={}",
            hex::encode(mac.finalize().into_bytes())
        )
    };
    let broken = b"{\"event\": \"call_started\", \"call\": {".to_vec();
    let (s, j, _) = ingest
        .post("retell", &[(&header, &sign(&broken))], broken)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .starts_with("body is not valid JSON"),
        "{j}"
    );
    let anonymous = br#"{"event":"call_started","call":{"agent_id":"a"}}"#.to_vec();
    let (s, j, _) = ingest
        .post("retell", &[(&header, &sign(&anonymous))], anonymous)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(j["error"].as_str().unwrap().contains("call_id"), "{j}");

    let big = vec![b' '; 5000];
    let (s, j, _) = ingest.post("retell", &[(&header, &sign(&big))], big).await;
    assert_eq!(
        (s, j["error"].as_str().unwrap()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body exceeds 4096 bytes")
    );

    assert!(
        queued(&h).await.is_empty(),
        "no rejected delivery was enqueued"
    );

    // Unknown event types are accepted so the provider stops retrying.
    let unknown = br#"{"event":"transcript_updated","call":{"call_id":"c9"}}"#.to_vec();
    let (s, _, headers) = ingest
        .post(
            "retell",
            &[(&header, &sign(&unknown)), ("x-request-id", "trace-77")],
            unknown,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(headers["x-request-id"], "trace-77");
    ingest.stop().await;

    // A provider without a secret answers 404.
    let only_stripe = WebhookSecrets {
        stripe: Some(SecretList::parse(STRIPE_SECRET)),
        ..WebhookSecrets::default()
    };
    let partial = Ingest::start(h.settings.clone(), only_stripe, Some(RETELL_TS)).await;
    let (s, j, _) = partial.post("calcom", &[], b"{}".to_vec()).await;
    assert_eq!(
        (s, j["error"].as_str().unwrap()),
        (StatusCode::NOT_FOUND, "calcom webhooks are not configured")
    );
    partial.stop().await;
}

#[tokio::test]
async fn rotation_accepts_the_old_secret() {
    let h = Harness::new().await;
    let ingest = Ingest::start(h.settings.clone(), secrets(), None).await;
    // The Cal.com fixture is signed with the old secret; the list holds a new one first.
    let (s, _) = ingest.post_fixture("calcom_booking_created.json").await;
    assert_eq!(s, StatusCode::ACCEPTED);
    ingest.stop().await;
}

fn redis_on(port: u16, dir: &std::path::Path) -> Child {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on PATH")
}

async fn wait_redis(url: &str, up: bool) {
    for _ in 0..500 {
        let client = redis::Client::open(url).unwrap();
        let answers = match client.get_multiplexed_async_connection().await {
            Ok(mut c) => redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok(),
            Err(_) => false,
        };
        if answers == up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "redis at {url} never became {}",
        if up { "ready" } else { "unreachable" }
    );
}

#[tokio::test]
async fn redis_outage_answers_503_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut redis = redis_on(port, dir.path());
    wait_redis(&url, true).await;
    let mut settings = Settings::defaults();
    settings.redis.url = url.clone();
    settings.ingest.enqueue_timeout_ms = 1000;
    let ingest = Ingest::start(settings.clone(), secrets(), Some(STRIPE_TS * 1000)).await;
    // Only this test makes ingest answer 503, so the counter moves by exactly its 503s.
    let ingest_errors = || {
        let text = switchboard::telemetry::init_metrics()
            .expect("the app installed the recorder")
            .render();
        common::expo::count(
            &text,
            "switchboard_redis_errors_total",
            &[("component", "ingest")],
        )
    };
    let errors_before = ingest_errors();
    let mut unavailable = 0;

    redis.kill().unwrap();
    redis.wait().unwrap();
    wait_redis(&url, false).await;
    let (s, j, headers) = {
        let (header, value) = vector("stripe_invoice_paid.json");
        ingest
            .post(
                "stripe",
                &[(&header, &value)],
                fixture("stripe_invoice_paid.json"),
            )
            .await
    };
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{j}");
    unavailable += 1;
    assert_eq!(headers["retry-after"], "5");
    let ready = ingest
        .client
        .get(format!("{}/readyz", ingest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    let mut redis = redis_on(port, dir.path());
    wait_redis(&url, true).await;
    let queues = switchboard::queue::Queues::connect(&url, settings.queue.clone())
        .await
        .unwrap();
    assert_eq!(
        queues.stats("webhooks").await.unwrap().pending,
        0,
        "nothing was half-written"
    );
    let mut accepted = None;
    for _ in 0..100 {
        let (s, j) = ingest.post_fixture("stripe_invoice_paid.json").await;
        if s == StatusCode::ACCEPTED {
            accepted = Some(j);
            break;
        }
        assert_eq!(
            s,
            StatusCode::SERVICE_UNAVAILABLE,
            "while reconnecting only 503: {j}"
        );
        unavailable += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted.is_some(), "Redis back: 202");
    assert_eq!(
        ingest_errors() - errors_before,
        unavailable,
        "each 503 counts a Redis error of ingest"
    );
    assert_eq!(queues.stats("webhooks").await.unwrap().pending, 1);
    ingest.stop().await;
    redis.kill().unwrap();
    redis.wait().unwrap();
}

/// Install the official SDKs (once per machine) and sign with them.
fn sdk_sign(provider: &str, secret: &str, body: &str) -> (String, String) {
    let dir = format!("{}/tests/interop", env!("CARGO_MANIFEST_DIR"));
    let installed = std::path::Path::new(&dir)
        .join("node_modules/retell-sdk")
        .exists()
        && std::path::Path::new(&dir)
            .join("node_modules/stripe")
            .exists();
    if !installed {
        let npm = common::tools::require("npm", "apt-get install npm (macOS: brew install node)");
        let status = Command::new(npm)
            .args([
                "ci",
                "--prefix",
                &dir,
                "--no-audit",
                "--no-fund",
                "--silent",
            ])
            .status()
            .expect("running npm");
        assert!(status.success(), "npm ci of the official SDKs failed");
    }
    let node = common::tools::require("node", "apt-get install nodejs (macOS: brew install node)");
    let mut child = Command::new(node)
        .arg(format!("{dir}/sign.mjs"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let request = serde_json::json!({ "provider": provider, "secret": secret, "body": body });
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        request.to_string().as_bytes(),
    )
    .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        line["header"].as_str().unwrap().to_owned(),
        line["value"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn payloads_signed_now_by_the_official_sdks_are_accepted() {
    let h = Harness::new().await;
    let ingest = Ingest::start(h.settings.clone(), secrets(), None).await;
    let id = ulid::Ulid::new().to_string();
    let stripe_body = format!(
        "{{\"id\":\"evt_{id}\",\"object\":\"event\",\"type\":\"invoice.paid\",\"data\":{{\"object\":{{}}}}}}\n"
    );
    let retell_body =
        format!("{{\"event\":\"call_ended\",\"call\":{{\"call_id\":\"call_{id}\"}}}}");
    let signed = tokio::task::spawn_blocking({
        let (s, r) = (stripe_body.clone(), retell_body.clone());
        move || {
            (
                sdk_sign("stripe", STRIPE_SECRET, &s),
                sdk_sign("retell", RETELL_KEY, &r),
            )
        }
    })
    .await
    .unwrap();
    let ((sh, sv), (rh, rv)) = signed;
    let (s, j, _) = ingest
        .post("stripe", &[(&sh, &sv)], stripe_body.into_bytes())
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "stripe: {j}");
    let (s, j, _) = ingest
        .post("retell", &[(&rh, &rv)], retell_body.into_bytes())
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "retell: {j}");
    assert_eq!(queued(&h).await.len(), 2);
    ingest.stop().await;
}

#[tokio::test]
async fn the_callers_traceparent_and_the_request_id_travel_in_the_job() {
    use switchboard_jobs::trace::{self, Carried};
    let h = Harness::new().await;
    let ingest = Ingest::start(h.settings.clone(), secrets(), Some(RETELL_TS)).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (header, value) = vector("retell_call_started.json");
    let (status, body, headers) = ingest
        .post(
            "retell",
            &[
                (header.as_str(), value.as_str()),
                ("traceparent", tp),
                ("x-request-id", "req-trace-7"),
            ],
            fixture("retell_call_started.json"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(headers["x-request-id"], "req-trace-7");
    // A malformed traceparent starts nothing and is not handed on.
    let (header, value) = vector("retell_call_ended.json");
    let (status, second, _) = ingest
        .post(
            "retell",
            &[
                (header.as_str(), value.as_str()),
                ("traceparent", "00-xyz-00f067aa0ba902b7-01"),
            ],
            fixture("retell_call_ended.json"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    let jobs = queued(&h).await;
    let env = |id: &Value| {
        jobs.iter()
            .find(|(jid, _)| jid == id.as_str().unwrap())
            .unwrap()
            .1
            .clone()
    };
    // No trace export in this binary: the caller's traceparent goes on as it came.
    let first = env(&body["id"]);
    assert_eq!(
        (first.tp.as_deref(), first.rid.as_deref()),
        (Some(tp), Some("req-trace-7"))
    );
    let second = env(&second["id"]);
    assert_eq!(second.tp, None);
    assert_eq!(second.rid.as_ref().map(String::len), Some(26), "a new ULID");

    // Work a job enqueues carries the job's trace and request on.
    let carried = Carried {
        traceparent: Some(tp.into()),
        request_id: Some("req-trace-7".into()),
    };
    let id = trace::scope(carried, async {
        h.queues
            .enqueue(
                &switchboard_jobs::noop::Noop::default(),
                switchboard_jobs::EnqueueOptions::default().on_queue("follow"),
            )
            .await
            .unwrap()
            .id
    })
    .await;
    let items = h.pending_items("follow").await;
    let (got, envelope) = job::decode(&items[0]).unwrap();
    assert_eq!(got, id);
    assert_eq!(
        (envelope.tp.as_deref(), envelope.rid.as_deref()),
        (Some(tp), Some("req-trace-7"))
    );
    ingest.stop().await;
}
