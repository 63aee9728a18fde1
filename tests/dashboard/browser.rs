//! The dashboard as an operator uses it, in headless Chromium driven over `WebDriver`
//! (Debian's `chromium` and `chromium-driver`; `.ci/run` installs them): log in, read a
//! queue's depth, open the failed job (its hostile payload shown inert), press Retry and watch
//! the page turn to "completed" by its own refresh. Screenshots go to `$SWITCHBOARD_TEST_ARTIFACTS`
//! or `<target dir>/test-artifacts/`.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::{
    hostile_payload,
    support::{BACKLOG, PASSWORD, TestApp, WORKED, credentials},
};

/// chromedriver, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_browser() -> (Driver, Client) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let chromedriver = crate::common::tools::require(
        "chromedriver",
        "apt-get install chromium chromium-driver (macOS: brew install --cask chromedriver google-chrome)",
    );
    for browser in ["chromium", "google-chrome", "chrome"] {
        if crate::common::tools::find(browser).is_some() {
            break;
        }
        if browser == "chrome" {
            crate::common::tools::fail(
                "missing test tool: chromium is not on PATH; install it with `apt-get install chromium chromium-driver` (scripts/test installs every test tool and runs the suite)",
            );
        }
    }
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let driver = Driver(child);
    let url = format!("http://127.0.0.1:{port}");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"]
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ClientBuilder::native()
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return (driver, client),
            Err(e) => {
                assert!(Instant::now() < deadline, "chromedriver did not start: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The text of the first element matching `css`, if there is one now.
async fn text(client: &Client, css: &str) -> Option<String> {
    let el = client.find(Locator::Css(css)).await.ok()?;
    el.text().await.ok()
}

/// Wait until the element matching `css` shows `want` (pages swap their content as they
/// refresh, so the element is looked up anew each time).
async fn wait_text(client: &Client, css: &str, want: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = text(client, css).await;
        if got.as_deref() == Some(want) {
            return;
        }
        if Instant::now() >= deadline {
            let url = client.current_url().await.map(|u| u.to_string());
            let main = text(client, "main").await;
            panic!("{css} shows {got:?}, not {want:?}, after {limit:?} at {url:?}: {main:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Click the element matching `css`, looked up anew when the page swapped its content
/// between the lookup and the click (a stale element was never clicked, so trying again
/// cannot click twice).
async fn click_fresh(client: &Client, css: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let clicked = match client.find(Locator::Css(css)).await {
            Ok(el) => el.click().await.map(drop),
            Err(e) => Err(e),
        };
        match clicked {
            Ok(()) => return,
            Err(e) if e.is_stale_element_reference() && Instant::now() < deadline => {}
            Err(e) => panic!("clicking {css}: {e}"),
        }
    }
}

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("SWITCHBOARD_TEST_ARTIFACTS").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = artifacts().join(name);
    std::fs::write(&path, png).unwrap();
    path
}

pub async fn retry_in_chromium() {
    let app = TestApp::start(Some(credentials())).await;
    let id = app.dead_job(&hostile_payload()).await;
    for n in 0..3 {
        app.enqueue(BACKLOG, &json!({ "n": n })).await;
    }
    let (_driver, client) = start_browser().await;

    // Not logged in: the dashboard sends the browser to the login page.
    client.goto(&app.url("/dashboard")).await.unwrap();
    let at = client.current_url().await.unwrap();
    assert_eq!(at.path(), "/dashboard/login", "{at}");
    client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    client
        .find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(
        &client,
        &format!(r#"tr[data-queue="{BACKLOG}"] td[data-field="pending"]"#),
        "3",
        Duration::from_secs(10),
    )
    .await;
    wait_text(
        &client,
        &format!(r#"tr[data-queue="{WORKED}"] td[data-field="dead"]"#),
        "1",
        Duration::from_secs(10),
    )
    .await;
    screenshot(&client, "dashboard-overview.png").await;

    // The failed list links to the job; its page shows the error and the payload, inert.
    client.goto(&app.url("/dashboard/failed")).await.unwrap();
    client
        .find(Locator::Css(&format!(r#"tr[data-job="{id}"] a"#)))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "#job-state", "dead", Duration::from_secs(10)).await;
    assert_eq!(text(&client, "#job-error").await.as_deref(), Some("boom"));
    let payload = text(&client, "#payload").await.unwrap();
    assert!(
        payload.contains("<script>window.__pwned = 1</script>"),
        "shown as text: {payload}"
    );
    assert!(
        payload.contains("[redacted]") && !payload.contains("hunter2"),
        "{payload}"
    );
    let injected = client
        .execute(
            "return [window.__pwned === undefined, document.querySelectorAll('main script, main img').length];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        injected,
        json!([true, 0]),
        "nothing from the payload ran or became DOM"
    );
    assert!(client.get_alert_text().await.is_err(), "no dialog opened");
    screenshot(&client, "dashboard-dead-job.png").await;

    // Fix the cause, press Retry: the job runs again and the page says so by itself.
    app.failing.store(false, Ordering::SeqCst);
    click_fresh(&client, "#retry", Duration::from_secs(10)).await;
    wait_text(&client, "#job-state", "completed", Duration::from_secs(15)).await;
    let notice = text(&client, ".notice").await;
    assert_eq!(notice.as_deref(), Some("Retried 1 job(s)."));
    let shot = screenshot(&client, "dashboard-job-completed.png").await;
    eprintln!("screenshot: {}", shot.display());
    assert_eq!(app.h.stats(WORKED).await.dead, 0);

    audit_page_names_the_retry(&client, &app, &id).await;

    client.close().await.unwrap();
    app.stop().await;
}

/// The audit page says who retried which job, and the header who is logged in.
async fn audit_page_names_the_retry(client: &Client, app: &TestApp, id: &str) {
    client.goto(&app.url("/dashboard/audit")).await.unwrap();
    wait_text(
        client,
        "#audit tbody tr:first-child .action",
        "retry",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        text(client, "#audit tbody tr:first-child .who")
            .await
            .as_deref(),
        Some("admin")
    );
    let row = text(client, "#audit tbody tr:first-child").await.unwrap();
    assert!(row.contains(id) && row.contains("dashboard"), "{row}");
    assert_eq!(text(client, "#who").await.as_deref(), Some("admin (admin)"));
    screenshot(client, "dashboard-audit.png").await;
}
