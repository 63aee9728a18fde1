//! Throttled credentials, roles and the audit trail: guessing over basic auth is answered
//! 429 per address while others keep working; a viewer reads (with personal data masked) but
//! changes nothing; an operator's change is recorded with their name, as is the CLI's.

use std::{process::Command, time::Duration};

use serde_json::{Value, json};
use switchboard::dashboard::{Credentials, operators};

use super::{
    basic,
    support::{BACKLOG, TOKEN, TestApp, WORKED, credentials, plain_client},
};

/// A client whose connections come from `ip` (any 127.0.0.0/8 address is loopback here).
pub fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

const VIEWER_PW: &str = "vera-pw-0b7c2d";
const OPERATOR_PW: &str = "otto-pw-91e4aa";

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

#[tokio::test]
async fn basic_auth_guessing_is_throttled_per_address() {
    let app = TestApp::start(Some(credentials())).await;
    let guesser = client_from("127.0.0.1");
    let mut first_429 = None;
    for n in 1..=300 {
        let r = guesser
            .get(app.url("/api/overview"))
            .header("authorization", basic("admin", &format!("guess-{n}")))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            401 => {}
            429 => {
                let wait: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&wait), "{wait}");
                first_429 = Some(n);
                break;
            }
            other => panic!("guess {n} answered {other}"),
        }
    }
    let first = first_429.expect("300 guesses and never a 429");
    assert!(first < 30, "the first 429 came at guess {first}");
    // The guessing address is refused even with the right password ...
    let right = guesser
        .get(app.url("/api/overview"))
        .header("authorization", basic("admin", super::support::PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 429);
    // ... while the right token from another address is served.
    let other = client_from("127.0.0.3")
        .get(app.url("/api/overview"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    app.stop().await;
}

async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_viewer_reads_masked_and_changes_nothing_an_operator_is_audited() {
    let app = TestApp::start(Some(with_operators())).await;
    let id = app
        .dead_job(&json!({
            "from_number": "+14155550987",
            "note": "caller +14155550987 asked for dana.ruiz@example.com",
            "call_id": "call_roles_1",
        }))
        .await;
    let c = plain_client();
    let vera = basic("vera", VIEWER_PW);
    let otto = basic("otto", OPERATOR_PW);
    let retry = app.url(&format!("/api/failed/{WORKED}/{id}/retry"));

    // The viewer reads, with the caller's number and address masked.
    let (status, job) = call(
        c.get(app.url(&format!("/api/jobs/{id}")))
            .header("authorization", &vera),
    )
    .await;
    assert_eq!(status, 200);
    let text = job.to_string();
    assert!(!text.contains("4155550987"), "{text}");
    assert!(!text.contains("dana.ruiz"), "{text}");
    assert_eq!(job["args"]["from_number"], "+14•••••••87", "{text}");
    assert_eq!(job["args"]["call_id"], "call_roles_1");
    // The admin (the shared token) sees it in clear.
    let (_, clear) = call(
        c.get(app.url(&format!("/api/jobs/{id}")))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(clear["args"]["from_number"], "+14155550987");

    // The viewer may not retry, pause or continue: 403, nothing changed, nothing audited.
    let (status, body) = call(c.post(&retry).header("authorization", &vera)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("viewer"), "{body}");
    let (status, _) = call(
        c.post(app.url(&format!("/api/queues/{BACKLOG}/pause")))
            .header("authorization", &vera),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(app.h.stats(WORKED).await.dead, 1);
    assert!(!app.h.stats(BACKLOG).await.paused);
    let (_, audit) = call(c.get(app.url("/api/audit")).header("authorization", &vera)).await;
    assert_eq!(audit, json!([]), "a refused change leaves no record");

    // The viewer's pages name them and offer no actions.
    let page = c
        .get(app.url("/dashboard/failed"))
        .header("authorization", &vera)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("vera (viewer)"), "{page}");
    assert!(page.contains(&id), "the dead job is listed");
    assert!(
        !page.contains("class=\"retry\"") && !page.contains("Retry all"),
        "{page}"
    );
    assert!(!page.contains("4155550987"), "masked in the list too");

    // The operator retries; the trail says who, from where, through which door, what.
    let (status, body) = call(c.post(&retry).header("authorization", &otto)).await;
    assert_eq!((status, body), (200, json!({"retried": 1})));
    let (_, audit) = call(c.get(app.url("/api/audit")).header("authorization", &vera)).await;
    let e = &audit[0];
    assert_eq!(e["who"], "otto", "{audit}");
    assert_eq!(e["action"], "retry");
    assert_eq!(e["via"], "api");
    assert_eq!(e["queues"], json!([WORKED]));
    assert_eq!(e["jobs"], json!([id]));
    assert_eq!(e["count"], 1);
    assert!(e["from"].as_str().unwrap().starts_with("127.0.0.1:"), "{e}");

    // A change from the CLI is recorded too, under the CLI's user.
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--redis-url", &app.h.settings.redis.url, "pause", BACKLOG])
        .env("SWITCHBOARD_QUEUE__PREFIX", app.h.prefix())
        .env("SWITCHBOARD_LOG", "warn")
        .env("USER", "carla")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, audit) = call(
        c.get(app.url("/api/audit?limit=1"))
            .header("authorization", &vera),
    )
    .await;
    assert_eq!(audit.as_array().unwrap().len(), 1);
    assert_eq!(audit[0]["who"], "cli:carla", "{audit}");
    assert_eq!(audit[0]["action"], "pause");
    assert_eq!(audit[0]["via"], "cli");
    assert_eq!(audit[0]["queues"], json!([BACKLOG]));
    // Paging: older than the newest is the operator's retry.
    let newest = audit[0]["id"].as_str().unwrap().to_owned();
    let (_, older) = call(
        c.get(app.url(&format!("/api/audit?before={newest}")))
            .header("authorization", &vera),
    )
    .await;
    assert_eq!(older[0]["who"], "otto", "{older}");
    app.stop().await;
}

#[test]
fn hash_password_prints_a_hash_the_operators_variable_accepts() {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("hash-password")
        .env("SWITCHBOARD_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));
    let ops = operators::Operators::parse(&format!("ann:viewer:{hash}")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(rt.block_on(ops.verify("ann", "correct horse")).is_some());
    assert!(rt.block_on(ops.verify("ann", "correct horse ")).is_none());
}
