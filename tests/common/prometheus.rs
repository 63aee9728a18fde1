//! A real Prometheus (`/usr/bin/prometheus`, Debian package `prometheus`) of the test's own:
//! a free port, a temporary TSDB, a 1 s scrape and rule interval, one scrape target and the
//! given rule files. Killed when dropped. Also `promtool`, and the HTTP API calls tests need.

#![allow(dead_code)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::common::free_port;

/// A running Prometheus.
pub struct Prometheus {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    child: Child,
    client: reqwest::Client,
    log: PathBuf,
    /// Holds the configuration, the TSDB and the log; removed on drop.
    _dir: tempfile::TempDir,
}

/// Run `promtool` with `args`; its exit status and its stdout and stderr together.
pub fn promtool(args: &[&str]) -> (bool, String) {
    let program = crate::common::tools::require(
        "promtool",
        "apt-get install prometheus (macOS: brew install prometheus)",
    );
    let out = Command::new(program)
        .args(args)
        .output()
        .expect("running promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

impl Prometheus {
    /// Start Prometheus scraping the `/metrics` of `targets` as job `switchboard`, with
    /// `rules` loaded, and wait until it is ready. promtool checks the configuration first.
    pub async fn start(targets: &[SocketAddr], rules: &Path) -> Self {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: switchboard\n    static_configs:\n      - targets: [{targets}]\n",
                rules = rules.display(),
                targets = targets.join(", ")
            ),
        )
        .unwrap();
        let (ok, out) = promtool(&["check", "config", config.to_str().unwrap()]);
        assert!(ok, "promtool check config:\n{out}");
        let log = dir.path().join("prometheus.log");
        let client = reqwest::Client::new();
        // The port is free when chosen; should another process take it first, Prometheus
        // exits and the next attempt picks another.
        for _ in 0..3 {
            let port = free_port();
            let base = format!("http://127.0.0.1:{port}");
            let mut child = Command::new(crate::common::tools::require(
                "prometheus",
                "apt-get install prometheus (macOS: brew install prometheus)",
            ))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus is installed (Debian package prometheus; .ci/run installs it)");
            if wait_ready(&mut child, &client, &base, &log).await {
                return Self {
                    base,
                    child,
                    client,
                    log,
                    _dir: dir,
                };
            }
            eprintln!(
                "prometheus exited early:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("prometheus did not start in 3 attempts");
    }

    /// What Prometheus logged (warnings and errors).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/<path>`: the `data` of a successful answer, or the error Prometheus gave.
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let answer: Value = self
            .client
            .get(format!("{}/api/v1/{path}", self.base))
            .query(params)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if answer["status"] == "success" {
            Ok(answer["data"].clone())
        } else {
            Err(format!(
                "{}: {}",
                answer["errorType"].as_str().unwrap_or("?"),
                answer["error"].as_str().unwrap_or("?")
            ))
        }
    }

    /// An instant query: the result's series, or the error (a parse error, say).
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("query", &[("query", expr)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `/-/ready` for up to 30 s; false when the process exited first.
async fn wait_ready(child: &mut Child, client: &reqwest::Client, base: &str, log: &Path) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let ready = client
            .get(format!("{base}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return true;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "prometheus not ready after 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sample values of an instant vector result.
pub fn values(result: &[Value]) -> Vec<f64> {
    result
        .iter()
        .filter_map(|s| s["value"][1].as_str())
        .map(|v| v.parse::<f64>().unwrap_or(f64::NAN))
        .collect()
}
