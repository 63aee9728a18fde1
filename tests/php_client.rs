//! The PHP client the Laravel team copies (`docs/examples/enqueue.php`), run with the real
//! `php` against a running Switchboard (HTTP, fleet and maintenance in this process): it
//! enqueues a `noop` job, sees it completed, and sees a job with a wrong argument refused
//! with 422 naming the field. `docs/enqueue-from-php.md` must show the example verbatim.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use common::{Harness, running::Running, tools};
use switchboard::{
    api::keys::{ApiKeys, NewKey},
    app::{Hooks, Roles},
};

const EXAMPLE: &str = "docs/examples/enqueue.php";
const DOC: &str = "docs/enqueue-from-php.md";

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// A `php` with the curl extension, or fail naming how to install them.
fn php_with_curl() -> PathBuf {
    let php = tools::require(
        "php",
        "apt-get install php-cli php-curl (macOS: brew install php)",
    );
    let modules = Command::new(&php)
        .arg("-m")
        .output()
        .unwrap_or_else(|e| tools::fail(&format!("running {} -m: {e}", php.display())));
    let has_curl = String::from_utf8_lossy(&modules.stdout)
        .lines()
        .any(|m| m.trim().eq_ignore_ascii_case("curl"));
    if !has_curl {
        tools::fail(&format!(
            "missing test tool: PHP's curl extension ({} -m does not list curl); install it with `apt-get install php-curl` (scripts/test installs every test tool and runs the suite)",
            php.display()
        ));
    }
    php
}

/// `php docs/examples/enqueue.php` against `base` with `key`, off the runtime's threads.
async fn run_example(php: &Path, base: &str, key: &str) -> Output {
    let mut cmd = Command::new(php);
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLE))
        .env("SWITCHBOARD_URL", base)
        .env("SWITCHBOARD_API_KEY", key);
    let run = tokio::task::spawn_blocking(move || cmd.output().expect("php runs"));
    tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the example finishes within 90 s")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_php_example_enqueues_sees_completed_and_sees_a_refusal() {
    let php = php_with_curl();
    let h = Harness::new().await;
    // The default fleet serves every kind's queue (noop: maintenance; notify.email:
    // notifications), so the API accepts both kinds' queues; the built-in registry runs noop.
    let settings = h.settings.clone();
    assert!(
        settings
            .fleet
            .supervisors
            .iter()
            .any(|s| s.queues.iter().any(|q| q == "maintenance")),
        "the default fleet serves the maintenance queue"
    );
    let roles = Roles {
        http: true,
        fleet: true,
        maintenance: true,
        ..Roles::default()
    };
    let hooks = Hooks {
        registry: Some(switchboard_jobs::registry()),
        ..Hooks::default()
    };
    let running = Running::start(settings, roles, hooks).await;
    let issued = ApiKeys::new(h.queues.clone())
        .create(NewKey {
            name: "laravel".into(),
            scopes: vec!["*".into()],
            rate_per_minute: 600,
            expires_ms: None,
        })
        .await
        .unwrap();

    let out = run_example(&php, &running.base, &issued.key).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{EXAMPLE} exited {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert_eq!(stderr, "", "nothing on stderr");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "three lines: {stdout}");
    let id = lines[0]
        .strip_prefix("accepted ")
        .unwrap_or_else(|| panic!("first line: {stdout}"));
    assert!(id.starts_with("maintenance~"), "an API job id: {id}");
    assert_eq!(lines[1], format!("completed {id}"));
    assert_eq!(lines[2], "refused 422 args.to");

    // Redis agrees: the one job ran once (the repeated Idempotency-Key enqueued nothing) and
    // the refused one was never queued.
    let maintenance = h.stats("maintenance").await;
    assert_eq!(
        (maintenance.processed, maintenance.pending, maintenance.dead),
        (1, 0, 0),
        "{maintenance:?}"
    );
    let notifications = h.stats("notifications").await;
    assert_eq!(
        (notifications.pending, notifications.delayed),
        (0, 0),
        "{notifications:?}"
    );

    // A wrong key: exit status 1 and one line naming the 401.
    let flipped = if issued.key.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{flipped}", &issued.key[..issued.key.len() - 1]);
    let out = run_example(&php, &running.base, &wrong).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(out.stdout, b"", "nothing accepted");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("HTTP 401"), "{stderr}");

    running.stop().await;
}

#[test]
fn the_doc_shows_the_example_verbatim() {
    let example = repo_file(EXAMPLE);
    let doc = repo_file(DOC);
    assert!(
        doc.contains(&format!("```php\n{example}```\n")),
        "{DOC} must show {EXAMPLE} whole and unchanged in a ```php block"
    );
}
