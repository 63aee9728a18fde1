//! `serve`'s embedded Redis: when nothing answers at the configured URL and `redis-server` is
//! on PATH, start a private one under `var/redis/` so a fresh machine runs with no set-up.

use std::{path::Path, process::Stdio, time::Duration};

use tokio::process::{Child, Command};

/// Start a private `redis-server` for `url` if nothing answers there. Returns the child
/// (killed on drop) or `None` when a Redis already answers or none can be started.
pub async fn ensure_redis(url: &str, var_dir: &Path) -> anyhow::Result<Option<Child>> {
    if answers(url).await {
        return Ok(None);
    }
    let port = port_of(url).unwrap_or(6379);
    let host = host_of(url).unwrap_or("127.0.0.1");
    if !matches!(host, "127.0.0.1" | "localhost") {
        anyhow::bail!(
            "nothing answers at {host}:{port}, and an embedded Redis only runs on loopback"
        );
    }
    let dir = var_dir.join("redis");
    std::fs::create_dir_all(&dir)?;
    let child = Command::new("redis-server")
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
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(child) = child else {
        anyhow::bail!("nothing answers at {url} and no redis-server is on PATH to start one");
    };
    tracing::info!(port, dir = %dir.display(), "no Redis answered; started a private redis-server (embedded default)");
    for _ in 0..100 {
        if answers(url).await {
            return Ok(Some(child));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the private redis-server did not answer within 5 s")
}

async fn answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let attempt = async {
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Some(_))
    )
}

fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let rest = rest.split(['/', '?']).next()?;
    Some(rest.rsplit_once('@').map_or(rest, |(_, h)| h))
}

fn host_of(url: &str) -> Option<&str> {
    authority(url).map(|a| a.split(':').next().unwrap_or(a))
}

fn port_of(url: &str) -> Option<u16> {
    authority(url)?.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_and_port() {
        assert_eq!(host_of("redis://127.0.0.1:6380/0"), Some("127.0.0.1"));
        assert_eq!(port_of("redis://127.0.0.1:6380/0"), Some(6380));
        assert_eq!(port_of("redis://:pw@localhost:7000"), Some(7000));
        assert_eq!(port_of("redis://localhost"), None);
    }
}
