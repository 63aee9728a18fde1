//! `switchboard demo` against `switchboard serve`, both as real binaries, each test with its
//! own Redis prefix and directories: the whole path through the stand-ins; two runs in a row,
//! each with its own call; a demo started from another directory than serve's; and a demo
//! against a fresh database whose Redis still remembers an earlier run's deliveries; an
//! unreachable server named at once, and an unmigrated `MariaDB` refused at serve start.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{Harness, free_port};
use serde_json::Value;

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((code, body))
}

/// A `switchboard` command with the test's Redis and prefix, run in `dir`.
fn switchboard(h: &Harness, dir: &Path, listen: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    c.current_dir(dir)
        .args(["--redis-url", &h.settings.redis.url])
        .env("SWITCHBOARD_QUEUE__PREFIX", h.prefix())
        .env("SWITCHBOARD_HTTP__LISTEN", listen)
        .env("SWITCHBOARD_LOG", "warn");
    c
}

/// `switchboard demo --url url`, run in `dir`.
fn demo(h: &Harness, dir: &Path, url: &str) -> Output {
    switchboard(h, dir, "127.0.0.1:1")
        .args(["demo", "--url", url])
        .output()
        .unwrap()
}

/// `switchboard serve` in `dir`, up and ready; stopped with SIGTERM on [`Serve::stop`].
struct Serve {
    child: Child,
    port: u16,
}

impl Serve {
    async fn start(h: &Harness, dir: &Path) -> Self {
        Self::start_with(h, dir, &[]).await
    }

    /// Like [`Serve::start`], with `env` set for serve.
    async fn start_with(h: &Harness, dir: &Path, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let child = switchboard(h, dir, &format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(port, "/readyz").is_none_or(|(code, _)| code != 200) {
            assert!(Instant::now() < deadline, "serve did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Run the demo from `dir`; its summary, after asserting it succeeded.
    fn demo(&self, h: &Harness, dir: &Path) -> Value {
        let out = demo(h, dir, &self.url());
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout}{stderr}");
        for step in [
            "call stored",
            "appointment booked",
            "usage reported to Stripe",
        ] {
            assert!(
                stderr
                    .lines()
                    .any(|l| l.contains("ok") && l.contains(step) && l.ends_with(" s")),
                "each step is reported with its time: {stderr}"
            );
        }
        let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(summary["demo"], "ok", "{summary}");
        assert_eq!(summary["usage_reported"], true);
        summary
    }

    /// What the server's database holds for `call_id`.
    fn call(&self, call_id: &str) -> Value {
        let (code, body) = http_get(self.port, &format!("/dev/demo/calls/{call_id}")).unwrap();
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn stop(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "serve did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success());
    }
}

/// The call of `summary` is stored, analysed, booked and billed in the server's database.
fn assert_stored(serve: &Serve, summary: &Value) {
    let call_id = summary["call"]["id"].as_str().unwrap();
    let view = serve.call(call_id);
    assert_eq!(view["call"]["stage"], "analyzed", "{view}");
    assert_eq!(view["usage"]["reported"], true, "{view}");
    assert_eq!(
        view["appointment"]["uid"], summary["appointment"]["uid"],
        "{view}"
    );
}

#[tokio::test]
async fn demo_drives_the_whole_path_through_serve_and_its_stand_ins() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&h, dir.path()).await;
    let summary = serve.demo(&h, dir.path());
    assert!(
        summary["appointment"]["uid"]
            .as_str()
            .unwrap()
            .starts_with("dev_booking_")
    );
    assert_eq!(
        summary["jobs"].as_array().map(Vec::len),
        Some(5),
        "{summary}"
    );
    let mails = std::fs::read_dir(dir.path().join("var/mail"))
        .unwrap()
        .count();
    assert!(mails >= 1, "the confirmation email was written to var/mail");
    let call_id = summary["call"]["id"].as_str().unwrap();
    let (code, state) = http_get(serve.port, "/dev/state").unwrap();
    assert_eq!(code, 200);
    assert!(
        state.contains(call_id),
        "the stand-in saw the meter event: {state}"
    );
    assert_stored(&serve, &summary);
    serve.stop().await;
}

#[tokio::test]
async fn demo_twice_in_a_row_follows_each_run_own_call() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&h, dir.path()).await;
    let first = serve.demo(&h, dir.path());
    let second = serve.demo(&h, dir.path());
    assert_ne!(first, second);
    assert_ne!(first["call"]["id"], second["call"]["id"]);
    assert_ne!(first["appointment"]["uid"], second["appointment"]["uid"]);
    assert_ne!(first["jobs"], second["jobs"]);
    assert_stored(&serve, &second);
    assert_stored(&serve, &first);
    serve.stop().await;
}

#[tokio::test]
async fn demo_from_another_directory_reads_the_server_not_its_own_directory() {
    let h = Harness::new().await;
    let (serve_dir, demo_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let serve = Serve::start(&h, serve_dir.path()).await;
    let summary = serve.demo(&h, demo_dir.path());
    assert_stored(&serve, &summary);
    assert!(
        !demo_dir.path().join("var").exists(),
        "the demo opened nothing under its own directory"
    );
    serve.stop().await;
}

#[tokio::test]
async fn demo_against_a_fresh_database_whose_redis_remembers_an_earlier_run() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&h, dir.path()).await;
    let first = serve.demo(&h, dir.path());
    serve.stop().await;
    // The database (and the mail) are gone; Redis keeps the first run's dedupe keys.
    std::fs::remove_dir_all(dir.path().join("var")).unwrap();
    let serve = Serve::start(&h, dir.path()).await;
    let second = serve.demo(&h, dir.path());
    assert_ne!(first["call"]["id"], second["call"]["id"]);
    assert_stored(&serve, &second);
    let old = serve.call(first["call"]["id"].as_str().unwrap());
    assert!(
        old["call"].is_null(),
        "the fresh database never saw the first run: {old}"
    );
    serve.stop().await;
}

#[tokio::test]
async fn demo_says_when_the_server_is_not_reachable() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = demo(&h, dir.path(), &format!("http://127.0.0.1:{}", free_port()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is not reachable") && stderr.contains("switchboard serve"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "no waiting for a deadline"
    );
}

/// A `MariaDB` database of its own, empty (no migrations), dropped at the end.
struct MariaDb {
    name: String,
    url: String,
}

impl MariaDb {
    fn create() -> Self {
        let name = format!("sbt_demo_{}", ulid::Ulid::new().to_string().to_lowercase());
        let status = Command::new("mariadb")
            .args(["-uroot", "-h127.0.0.1", "-e"])
            .arg(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .status()
            .expect("the mariadb client (MariaDB on 127.0.0.1:3306, root, no password)");
        assert!(status.success(), "MariaDB must run on 127.0.0.1:3306");
        let admin =
            std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned());
        let url = format!("{admin}/{name}");
        Self { name, url }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = Command::new("mariadb")
            .args(["-uroot", "-h127.0.0.1", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS `{}`", self.name))
            .status();
    }
}

#[tokio::test]
async fn an_unmigrated_mariadb_is_refused_at_serve_start_and_the_demo_runs_once_migrated() {
    let h = Harness::new().await;
    let db = MariaDb::create();
    let dir = tempfile::tempdir().unwrap();
    let refused = switchboard(&h, dir.path(), &format!("127.0.0.1:{}", free_port()))
        .env("DATABASE_URL", &db.url)
        .arg("serve")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "serve started on an empty schema"
    );
    assert!(
        stderr.contains("lacks") && stderr.contains("run `switchboard migrate` first"),
        "{stderr}"
    );

    let migrated = switchboard(&h, dir.path(), "127.0.0.1:1")
        .env("DATABASE_URL", &db.url)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let serve = Serve::start_with(&h, dir.path(), &[("DATABASE_URL", &db.url)]).await;
    let summary = serve.demo(&h, dir.path());
    assert_stored(&serve, &summary);
    assert!(
        !dir.path().join("var/switchboard.db").exists(),
        "the demo and serve used MariaDB, not a SQLite file"
    );
    serve.stop().await;
}
