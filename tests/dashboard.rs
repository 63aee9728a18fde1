//! The operator dashboard against a running Switchboard (real Redis, real fleet): access
//! control, CSRF, escaping and redaction, the JSON API, `serve`'s refusal to expose it without
//! credentials, `switchboard status`, and the whole retry path in headless Chromium
//! (`dashboard/browser.rs`).

#[path = "dashboard/api.rs"]
mod api;
#[path = "dashboard/browser.rs"]
mod browser;
mod common;
#[path = "dashboard/roles.rs"]
mod roles;
#[path = "dashboard/support.rs"]
mod support;

use std::{process::Command, sync::atomic::Ordering, time::Duration};

use serde_json::{Value, json};
use support::{BACKLOG, Browser, PASSWORD, TOKEN, TestApp, WORKED, credentials, plain_client};

/// A payload that would run script if anything printed it raw, with secrets in it.
fn hostile_payload() -> Value {
    let body = json!({
        "id": "evt_1",
        "type": "invoice.paid",
        "data": {"object": {"customer": "cus_1", "client_secret": "pi_3_secret_zz"}},
        "headers": {"Stripe-Signature": "t=1700000000,v1=deadbeefcafe"}
    });
    json!({
        "note": "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">",
        "password": "hunter2-in-payload",
        "api_key": "sk_live_in_payload",
        "customer_email": "dana@example.com",
        "body": body.to_string(),
    })
}

const SECRETS: [&str; 5] = [
    "hunter2-in-payload",
    "sk_live_in_payload",
    "pi_3_secret_zz",
    "deadbeefcafe",
    "t=1700000000",
];

#[tokio::test]
async fn unauthenticated_requests_are_refused() {
    let app = TestApp::start(Some(credentials())).await;
    let c = plain_client();

    let page = c.get(app.url("/dashboard/failed")).send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(
        page.headers()["location"],
        "/dashboard/login?next=%2Fdashboard%2Ffailed"
    );
    let login = c.get(app.url("/dashboard/login")).send().await.unwrap();
    assert_eq!(login.status(), 200, "the login page is open");

    let api = c.get(app.url("/api/overview")).send().await.unwrap();
    assert_eq!(api.status(), 401);
    let challenges: Vec<_> = api.headers().get_all("www-authenticate").iter().collect();
    assert_eq!(challenges.len(), 2, "bearer and basic are offered");

    let wrong = [
        ("authorization", "Bearer not-the-token".to_owned()),
        ("authorization", basic("admin", "wrong")),
        ("authorization", basic("root", PASSWORD)),
        ("cookie", format!("sb_dashboard={}", "ab".repeat(32))),
    ];
    for (name, value) in wrong {
        let r = c
            .get(app.url("/api/overview"))
            .header(name, &value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{name}: {value}");
    }
    let post = c
        .post(app.url("/api/failed/retry-all"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 401, "changes need credentials too");

    for value in [format!("Bearer {TOKEN}"), basic("admin", PASSWORD)] {
        let r = c
            .get(app.url("/api/overview"))
            .header("authorization", &value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
    }
    let bad_login = c
        .post(app.url("/dashboard/login"))
        .header("origin", app.origin())
        .form(&[("username", "admin"), ("password", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_login.status(), 401);
    assert!(bad_login.headers().get("set-cookie").is_none());
    let browser = Browser::login(&app).await;
    assert_eq!(browser.get(&app.url("/dashboard")).await.status(), 200);
    let elsewhere = c
        .post(app.url("/dashboard/login"))
        .header("origin", app.origin())
        .form(&[("password", TOKEN), ("next", "https://evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 303, "the token logs in too");
    assert_eq!(
        elsewhere.headers()["location"],
        "/dashboard",
        "never off the dashboard"
    );

    // Logging out ends the session on the server, not only in the browser.
    let out = browser
        .client
        .post(app.url("/dashboard/logout"))
        .header("cookie", &browser.cookie)
        .header("origin", app.origin())
        .form(&[("csrf", browser.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(browser.get(&app.url("/dashboard")).await.status(), 303);
    app.stop().await;
}

/// A refused change: what it is, its extra headers, its form fields.
type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<(&'a str, &'a str)>);

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn login_attempts_are_throttled_across_the_deployment() {
    let app = TestApp::start(Some(credentials())).await;
    let c = plain_client();
    let attempt = |password: &'static str| {
        c.post(app.url("/dashboard/login"))
            .header("origin", app.origin())
            .form(&[("username", "admin"), ("password", password)])
            .send()
    };
    let defaults = switchboard::config::Settings::defaults().dashboard;
    // Whichever comes first: the deployment's login window or this address' failures.
    let limit = defaults
        .login_attempts_per_minute
        .min(defaults.auth_failures_per_minute_per_ip);
    for _ in 0..limit {
        assert_eq!(attempt("guess").await.unwrap().status(), 401);
    }
    // The window is full: even the right password waits, and nothing logs in.
    let throttled = attempt(PASSWORD).await.unwrap();
    assert_eq!(throttled.status(), 429);
    let wait: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(throttled.headers().get("set-cookie").is_none());
    // The failures count against this address for bearer calls too ...
    let here = c
        .get(app.url("/api/overview"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(here.status(), 429);
    // ... while another address with the right token keeps working.
    let api = roles::client_from("127.0.0.2")
        .get(app.url("/api/overview"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn cross_site_and_tokenless_changes_are_refused() {
    let app = TestApp::start(Some(credentials())).await;
    let id = app.dead_job(&json!({"n": 1})).await;
    let browser = Browser::login(&app).await;
    let retry = app.url(&format!("/dashboard/failed/{WORKED}/{id}/retry"));
    let csrf = browser.csrf.clone();

    let refused: Vec<Case> = vec![
        (
            "a foreign Origin",
            vec![("origin", "https://evil.example".into())],
            vec![("csrf", csrf.as_str())],
        ),
        (
            "a cross-site fetch",
            vec![("sec-fetch-site", "cross-site".into())],
            vec![("csrf", csrf.as_str())],
        ),
        (
            "no CSRF token",
            vec![("origin", app.origin().to_owned())],
            vec![],
        ),
        (
            "a wrong CSRF token",
            vec![("origin", app.origin().to_owned())],
            vec![("csrf", "0".repeat(64).leak())],
        ),
    ];
    for (what, headers, form) in refused {
        let mut r = browser
            .client
            .post(&retry)
            .header("cookie", &browser.cookie)
            .form(&form);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 403, "{what}");
        assert_eq!(app.h.stats(WORKED).await.dead, 1, "{what} changed nothing");
    }
    // Basic auth is replayed by browsers on their own: a foreign origin is refused there too.
    let r = plain_client()
        .post(app.url("/api/queues/flaky/pause"))
        .header("authorization", basic("admin", PASSWORD))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = plain_client()
        .post(app.url("/dashboard/login"))
        .header("origin", "https://evil.example")
        .form(&[("username", "admin"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no login CSRF");
    assert!(!app.h.stats(WORKED).await.paused);

    // The same request from the dashboard's own page goes through.
    let ok = browser
        .client
        .post(&retry)
        .header("cookie", &browser.cookie)
        .header("origin", app.origin())
        .form(&[("csrf", csrf.as_str()), ("back", "https://evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(
        ok.headers()["location"],
        "/dashboard/failed?done=retried&n=1",
        "never redirected off the dashboard"
    );
    app.failing.store(false, Ordering::SeqCst);
    app.h
        .wait_processed(WORKED, 1, Duration::from_secs(10))
        .await;
    assert_eq!(app.h.stats(WORKED).await.dead, 0);
    app.stop().await;
}

#[tokio::test]
async fn payloads_are_escaped_and_secrets_redacted() {
    let app = TestApp::start(Some(credentials())).await;
    let id = app.dead_job(&hostile_payload()).await;
    let browser = Browser::login(&app).await;

    let html = browser
        .get(&app.url(&format!("/dashboard/jobs/{WORKED}/{id}")))
        .await
        .text()
        .await
        .unwrap();
    // Escaped by name or by number, the markup arrives as text.
    let escaped = [
        "&lt;script&gt;window.__pwned = 1&lt;/script&gt;",
        "&#60;script&#62;window.__pwned = 1&#60;/script&#62;",
    ];
    assert!(escaped.iter().any(|e| html.contains(e)), "{html}");
    assert!(
        !html.contains("<script>window"),
        "raw script in the page: {html}"
    );
    assert!(!html.contains("<img src=x"), "raw tag in the page");
    assert!(
        html.contains("dana@example.com"),
        "ordinary fields are shown"
    );
    assert!(html.contains("[redacted]"));
    for secret in SECRETS {
        assert!(!html.contains(secret), "{secret} shown in the page");
    }
    let found = browser
        .get(&app.url(&format!("/dashboard/jobs?id={id}")))
        .await;
    assert_eq!(found.status(), 303, "the Find box");
    assert_eq!(
        found.headers()["location"],
        format!("/dashboard/jobs/{WORKED}/{id}").as_str()
    );
    let workers = browser.get(&app.url("/dashboard/workers")).await;
    assert_eq!(workers.status(), 200);
    let workers = workers.text().await.unwrap();
    assert!(
        workers.contains(":dash:flaky:0:") && workers.contains("left"),
        "{workers}"
    );
    let failed = browser
        .get(&app.url("/dashboard/failed"))
        .await
        .text()
        .await
        .unwrap();
    assert!(failed.contains(&id) && failed.contains("boom"));

    let auth = format!("Bearer {TOKEN}");
    let c = plain_client();
    for path in [
        format!("/api/jobs/{WORKED}/{id}"),
        format!("/api/jobs/{id}"),
        "/api/failed".to_owned(),
    ] {
        let r = c
            .get(app.url(&path))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let text = r.text().await.unwrap();
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} in {path}: {text}");
        }
        assert!(text.contains("[redacted]"), "{path}: {text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn without_credentials_only_loopback_hosts_are_served() {
    let app = TestApp::start(None).await;
    let c = plain_client();
    let page = c.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), 200, "open on loopback");
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let csrf = support::csrf_in(&html);
    assert!(!html.contains("Log out"));
    let rebound = c
        .get(app.url("/api/overview"))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403, "a DNS-rebound name is refused");
    // Changes still need the page's token, even without credentials.
    let cookie = cookie.split(';').next().unwrap();
    let pause = app.url(&format!("/dashboard/queues/{BACKLOG}/pause"));
    let bare = c
        .post(&pause)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 403);
    let ok = c
        .post(&pause)
        .header("cookie", cookie)
        .form(&[("csrf", csrf.as_str()), ("back", "/dashboard")])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    assert!(app.h.stats(BACKLOG).await.paused);

    // Scripts on this machine use the API as it is; a foreign page cannot.
    let api = c.get(app.url("/api/overview")).send().await.unwrap();
    assert_eq!(api.status(), 200);
    assert!(
        api.headers().get("set-cookie").is_none(),
        "no session for API calls"
    );
    let resume = app.url(&format!("/api/queues/{BACKLOG}/continue"));
    let foreign = c
        .post(&resume)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(app.h.stats(BACKLOG).await.paused);
    assert_eq!(c.post(&resume).send().await.unwrap().status(), 200);
    assert!(!app.h.stats(BACKLOG).await.paused);
    app.stop().await;
}

#[tokio::test]
async fn serve_refuses_a_dashboard_open_to_the_network() {
    let h = common::Harness::new().await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .current_dir(dir.path())
        .args(["--redis-url", &h.settings.redis.url])
        .args(["serve", "--listen", &format!("0.0.0.0:{port}")])
        .env("SWITCHBOARD_QUEUE__PREFIX", h.prefix())
        .env("SWITCHBOARD_REDIS__EMBEDDED", "false")
        .env("SWITCHBOARD_LOG", "warn")
        .env_remove("SWITCHBOARD_DASHBOARD_TOKEN")
        .env_remove("SWITCHBOARD_DASHBOARD_PASSWORD")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve started: {err}");
    assert!(
        err.contains(&format!(
            "the dashboard would be reachable on 0.0.0.0:{port} (http.listen) without credentials"
        )),
        "{err}"
    );
    assert!(
        err.contains("SWITCHBOARD_DASHBOARD_TOKEN"),
        "says how to fix it: {err}"
    );
    assert!(
        h.keys().await.is_empty(),
        "nothing started: no worker registered"
    );
}

#[tokio::test]
async fn status_prints_the_overview_as_a_table() {
    let app = TestApp::start(Some(credentials())).await;
    app.dead_job(&json!({})).await;
    for _ in 0..2 {
        app.enqueue(BACKLOG, &json!({})).await;
    }
    let run = |json: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        c.args(["--redis-url", &app.h.settings.redis.url, "status"])
            .env("SWITCHBOARD_QUEUE__PREFIX", app.h.prefix())
            .env("SWITCHBOARD_LOG", "warn");
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = run(false);
    assert!(table.starts_with("status: active"), "{table}");
    assert!(table.contains("failed past 7 days: 1"), "{table}");
    assert!(
        table.contains("longest wait:") && table.contains(" s on backlog"),
        "{table}"
    );
    let backlog = table
        .lines()
        .find(|l| l.starts_with("backlog "))
        .expect(&table);
    assert_eq!(
        backlog.split_whitespace().nth(1),
        Some("2"),
        "pending: {backlog}"
    );
    assert!(table.contains("1 supervisor(s)\n  dash  host="), "{table}");
    let json: Value = serde_json::from_str(&run(true)).unwrap();
    assert_eq!(json["overview"]["failed_past_7_days"], 1);
    let q = json["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == BACKLOG)
        .unwrap();
    assert_eq!(q["pending"], 2);
    assert_eq!(json["supervisors"][0]["name"], "dash");
    app.stop().await;
}

#[tokio::test]
async fn browser_logs_in_sees_the_workload_and_retries_a_failed_job() {
    browser::retry_in_chromium().await;
}
