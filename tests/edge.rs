//! The HTTP listener's edge limits (issue 13): stalled heads, silent sockets, dribbled and
//! missing bodies are closed or answered 408 within their timeouts while other requests are
//! answered promptly; keep-alive connections idle until the idle timeout; every request
//! carries the client's address; the per-address cap; and a real `switchboard ingest` under a
//! small descriptor limit keeps taking signed deliveries through a flood of idle sockets.
//!
//! The clients here pace their bytes with sleeps (that is the attack); the tests wait for
//! the server only by reading until it closes, each read bounded.

mod common;

use std::{
    fs::File,
    io::Read as _,
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use axum::{Router, extract::ConnectInfo, routing::get};
use common::{
    Harness, expo, free_port,
    running::{self, Running},
};
use switchboard::{
    app::{Hooks, Roles},
    config::{HttpSettings, Settings},
    edge,
    ingest::{SecretList, WebhookSecrets},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, tcp::OwnedWriteHalf},
};
use tokio_util::sync::CancellationToken;

/// Slack on top of a configured timeout for a loaded test machine.
const MARGIN: Duration = Duration::from_millis(1500);

/// `switchboard ingest` (with the dashboard) in this process, its Stripe secret set and the
/// `[http]` limits tuned by `tune`.
async fn start(tune: impl FnOnce(&mut Settings)) -> (Harness, Running) {
    let h = Harness::with(tune).await;
    let hooks = Hooks {
        secrets: Some(WebhookSecrets {
            stripe: Some(SecretList::parse(running::STRIPE_SECRET)),
            ..WebhookSecrets::default()
        }),
        ..Hooks::default()
    };
    let app = Running::start(h.settings.clone(), Roles::ingest(), hooks).await;
    (h, app)
}

/// Read until the server closes the connection (end of stream or reset) or `limit` after
/// `since` passes: what it answered, and when it closed (`None`: still open at the limit).
async fn until_closed(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    since: Instant,
    limit: Duration,
) -> (String, Option<Duration>) {
    let deadline = tokio::time::Instant::from_std(since + limit);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&answer).into(), None),
            Ok(Ok(0) | Err(_)) => {
                return (
                    String::from_utf8_lossy(&answer).into(),
                    Some(since.elapsed()),
                );
            }
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
}

/// Write `bytes` one at a time, `every` apart, until done or the server closes.
fn dribble(
    mut w: OwnedWriteHalf,
    bytes: Vec<u8>,
    every: Duration,
) -> tokio::task::JoinHandle<OwnedWriteHalf> {
    tokio::spawn(async move {
        for b in bytes {
            if w.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(every).await;
        }
        w
    })
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[tokio::test]
async fn a_head_dribbled_a_byte_at_a_time_is_closed_within_the_header_timeout() {
    let (_h, app) = start(|s| s.http.header_read_timeout_ms = 500).await;
    let since = Instant::now();
    let (mut r, w) = TcpStream::connect(app.addr).await.unwrap().into_split();
    // Longer than the test: the client never finishes its head (nor half-closes).
    let head = format!(
        "POST /webhooks/stripe HTTP/1.1\r\nx-pad: {}",
        "a".repeat(200)
    );
    let writer = dribble(w, head.into_bytes(), millis(200));
    let (answer, closed) = until_closed(&mut r, since, millis(500) + MARGIN).await;
    writer.abort();
    let closed = closed.expect("the stalled head is closed");
    assert!(closed >= millis(450), "not before the timeout: {closed:?}");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_within_the_header_timeout() {
    let (_h, app) = start(|s| s.http.header_read_timeout_ms = 500).await;
    let since = Instant::now();
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let (answer, closed) = until_closed(&mut silent, since, millis(500) + MARGIN).await;
    let closed = closed.expect("the silent connection is closed");
    assert!(closed >= millis(450), "not before the timeout: {closed:?}");
    assert_eq!(answer, "", "nothing to answer");
    let text = app.metrics().await;
    assert!(
        expo::count(
            &text,
            "switchboard_http_connections_shed_total",
            &[("reason", "header_timeout")]
        ) >= 1,
        "counted: {text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_dribbled_body_is_answered_408_while_a_delivery_on_another_connection_is_answered() {
    let (_h, app) = start(|s| {
        s.http.body_grace_ms = 1500;
        s.http.body_min_bytes_per_sec = 100;
        s.http.body_read_timeout_ms = 3000;
    })
    .await;
    let since = Instant::now();
    let (mut r, mut w) = TcpStream::connect(app.addr).await.unwrap().into_split();
    w.write_all(
        b"POST /webhooks/stripe HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n",
    )
    .await
    .unwrap();
    // Five bytes a second, far below the 100 the limits ask for after the grace.
    let writer = dribble(w, vec![b' '; 1000], millis(200));

    let (body, signature) = running::signed_stripe("evt_edge_prompt_0001");
    let asked = Instant::now();
    let status = app.post_stripe(&body, Some(&signature)).await;
    let answered = since.elapsed();
    assert_eq!(status, 202);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "the delivery is not held up: {:?}",
        asked.elapsed()
    );

    let (answer, closed) = until_closed(&mut r, since, millis(3000) + MARGIN).await;
    writer.abort();
    let closed = closed.expect("the slow body's connection is closed");
    // 408, unless the close's reset (the client is still sending) beat the answer here.
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(
        answered < closed,
        "the delivery was answered ({answered:?}) while the slow body was still pending ({closed:?})"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_declared_10_mb_body_that_never_comes_is_answered_408_within_the_body_timeout() {
    let (_h, app) = start(|s| {
        // The body is under ingest's limit, so the handler waits for it.
        s.ingest.max_body_bytes = 16 << 20;
        s.http.body_grace_ms = 500;
        s.http.body_read_timeout_ms = 1000;
    })
    .await;
    let since = Instant::now();
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"POST /webhooks/stripe HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = until_closed(&mut stream, since, millis(1000) + MARGIN).await;
    let closed = closed.expect("closed after the answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(closed >= millis(450), "not before the grace: {closed:?}");
    let text = app.metrics().await;
    assert!(
        expo::count(
            &text,
            "switchboard_http_connections_shed_total",
            &[("reason", "body_timeout")]
        ) >= 1,
        "counted: {text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_keep_alive_connection_idles_past_the_header_timeout_until_the_idle_timeout() {
    let (_h, app) = start(|s| {
        s.http.header_read_timeout_ms = 300;
        s.http.idle_timeout_secs = 1;
    })
    .await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(MARGIN, stream.read(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    let since = Instant::now();
    let (more, closed) = until_closed(&mut stream, since, millis(1000) + MARGIN).await;
    let closed = closed.expect("the idle connection is closed");
    assert_eq!(more, "");
    assert!(
        closed >= millis(900),
        "idle keep-alive is held to the idle timeout, not the 300 ms header timeout: {closed:?}"
    );
    app.stop().await;
}

/// `edge::serve` alone with `router`, the default `[http]` tuned by `tune`.
fn serve_alone(
    router: Router,
    tune: impl FnOnce(&mut HttpSettings),
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let mut http = Settings::defaults().http;
    tune(&mut http);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let stop = CancellationToken::new();
    let limits = edge::Limits::new(&http, None);
    let task = tokio::spawn(edge::serve(listener, router, limits, stop.clone()));
    (addr, stop, task)
}

#[tokio::test]
async fn every_request_carries_the_client_address_and_shutdown_closes_idle_connections() {
    let router = Router::new().route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    );
    let (addr, stop, task) = serve_alone(router, |_| {});
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let me = stream.local_addr().unwrap().to_string();
    stream
        .write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = until_closed(&mut stream, Instant::now(), MARGIN).await;
    assert!(
        closed.is_some() && answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    assert!(answer.ends_with(&me), "{me} in {answer}");

    // An idle keep-alive connection does not hold up shutdown.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(idle.read(&mut buf).await.unwrap() > 0, "answered");
    stop.cancel();
    tokio::time::timeout(MARGIN, task)
        .await
        .expect("serve returns once its connections are closed")
        .unwrap();
}

#[tokio::test]
async fn a_client_over_its_per_address_cap_is_closed_at_once() {
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    let (addr, stop, task) = serve_alone(router, |h| h.max_connections_per_ip = 2);
    let mut first = TcpStream::connect(addr).await.unwrap();
    let second = TcpStream::connect(addr).await.unwrap();
    let since = Instant::now();
    let mut third = TcpStream::connect(addr).await.unwrap();
    let (answer, closed) = until_closed(&mut third, since, MARGIN).await;
    assert_eq!(answer, "");
    assert!(
        closed.is_some_and(|c| c < millis(1000)),
        "closed at once (the head timeout is 5 s): {closed:?}"
    );
    // The first two are still served.
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = until_closed(&mut first, Instant::now(), MARGIN).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.cancel();
    drop(second);
    tokio::time::timeout(MARGIN, task).await.unwrap().unwrap();
}

/// `switchboard ingest` as its own process under `ulimit -n 256` (no unsafe code here, so
/// the shell sets the limit), with idle connections held for a minute.
fn spawn_ingest_with_256_descriptors(h: &Harness, port: u16, log: File) -> std::process::Child {
    Command::new("sh")
        .args(["-c", r#"ulimit -n 256 && exec "$0" "$@""#])
        .arg(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--redis-url", &h.settings.redis.url, "ingest", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD_QUEUE__PREFIX", h.prefix())
        .env("STRIPE_WEBHOOK_SECRET", running::STRIPE_SECRET)
        .env("SWITCHBOARD_LOG", "info")
        .env("SWITCHBOARD_TELEMETRY__LOG_FORMAT", "json")
        // Neither timeout frees a descriptor during the test: only the cap can.
        .env("SWITCHBOARD_HTTP__HEADER_READ_TIMEOUT_MS", "60000")
        .env("SWITCHBOARD_HTTP__IDLE_TIMEOUT_SECS", "60")
        .env("SWITCHBOARD_HTTP__MAX_CONNECTIONS_PER_IP", "100000")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn more_idle_connections_than_descriptors_do_not_starve_signed_deliveries() {
    let h = Harness::new().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("ingest.log");
    let mut child = spawn_ingest_with_256_descriptors(&h, port, File::create(&log_path).unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "ingest did not come up");
        tokio::time::sleep(millis(20)).await;
    }

    // 400 connections that never send a byte: more than the 256 descriptors of the process.
    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    for i in 0..5 {
        let (body, signature) = running::signed_stripe(&format!("evt_edge_flood_{i:04}"));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let asked = Instant::now();
        let status = client
            .post(format!("{base}/webhooks/stripe"))
            .header("stripe-signature", signature)
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16());
        assert_eq!(
            status.as_ref().ok(),
            Some(&202),
            "delivery {i} after {:?}: {status:?}",
            asked.elapsed()
        );
    }
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shed = |reason| {
        expo::count(
            &metrics,
            "switchboard_http_connections_shed_total",
            &[("reason", reason)],
        )
    };
    // Closed to make room at the cap, or (when evicted sockets were not yet released) to
    // get descriptors back after a failed accept.
    let (cap, accept_error) = (shed("cap"), shed("accept_error"));
    assert!(
        cap > 0 && cap + accept_error >= 400 - 192,
        "idle connections closed to make room: cap {cap}, accept_error {accept_error}"
    );

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ingest did not stop");
        tokio::time::sleep(millis(20)).await;
    }
    drop(idle);
    let mut log = String::new();
    File::open(&log_path)
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains(r#""max_connections":192"#),
        "the cap is the descriptor limit less the reserve, logged: {log}"
    );
    let warned = log.matches("http connection cap reached").count();
    assert!(
        (1..5).contains(&warned),
        "logged once per episode, not per connection ({warned}): {log}"
    );
}
