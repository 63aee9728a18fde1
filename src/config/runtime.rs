//! `[runtime]`: how many threads the process's async runtime runs its tasks on.
//!
//! A Redis server runs its commands on one thread. When it shares this machine's cores with
//! the workers, a runtime thread on every core competes with it for its core, and both wait:
//! on a 2-core machine a drain of 1,000 tenants' jobs took 111,639–160,785 jobs/s with two
//! runtime threads and 203,512–241,021 with one (README, Benchmarks). So by default a process
//! whose every Redis address is on this machine leaves Redis a core.

use serde::{Deserialize, Serialize};

/// See `[runtime]` in `config/default.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSettings {
    /// Threads of the async runtime; 0: chosen (see [`RuntimeSettings::worker_threads`]).
    pub worker_threads: usize,
}

impl RuntimeSettings {
    /// The runtime's thread count: `worker_threads` when set; else the runtime's own
    /// `TOKIO_WORKER_THREADS` (`env`) when it is a positive number; else `cores`, less one
    /// when every Redis address (`redis_urls`) is on this machine. At least 1.
    pub fn worker_threads(&self, cores: usize, env: Option<&str>, redis_urls: &[&str]) -> usize {
        if self.worker_threads > 0 {
            return self.worker_threads;
        }
        if let Some(n) = env
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
        {
            return n;
        }
        let local = !redis_urls.is_empty() && redis_urls.iter().all(|url| on_this_machine(url));
        if local {
            cores.saturating_sub(1)
        } else {
            cores
        }
        .max(1)
    }
}

/// Whether the Redis at `url` runs on this machine: a Unix socket, or a loopback host
/// (`localhost`, `127.0.0.0/8`, `::1`). An address that does not parse counts as elsewhere.
fn on_this_machine(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    if scheme.ends_with("unix") {
        return true;
    }
    // Authority: after any credentials, before the path.
    let authority = rest.split('/').next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: &[&str] = &["redis://127.0.0.1:6379"];

    #[test]
    fn a_local_redis_is_left_a_core_and_a_remote_one_is_not() {
        let auto = RuntimeSettings::default();
        assert_eq!(auto.worker_threads(2, None, LOCAL), 1);
        assert_eq!(auto.worker_threads(8, None, LOCAL), 7);
        assert_eq!(auto.worker_threads(1, None, LOCAL), 1);
        assert_eq!(
            auto.worker_threads(8, None, &["redis://cache.internal:6379"]),
            8
        );
        let cluster = [
            "redis://127.0.0.1:7100",
            "redis://localhost:7101",
            "redis://[::1]:7102",
        ];
        assert_eq!(auto.worker_threads(4, None, &cluster), 3);
        // One node elsewhere: Redis does not only run here.
        assert_eq!(
            auto.worker_threads(
                4,
                None,
                &["redis://127.0.0.1:7100", "redis://10.0.0.5:7101"]
            ),
            4
        );
        assert_eq!(
            auto.worker_threads(4, None, &["redis+unix:///run/redis.sock"]),
            3
        );
        assert_eq!(
            auto.worker_threads(4, None, &["redis://:secret@127.0.0.1:6379/2"]),
            3
        );
        assert_eq!(
            auto.worker_threads(4, None, &["rediss://user:pw@redis.example.com:6380"]),
            4
        );
    }

    #[test]
    fn a_setting_beats_the_environment_and_the_environment_beats_the_choice() {
        let set = RuntimeSettings { worker_threads: 3 };
        assert_eq!(set.worker_threads(2, Some("5"), LOCAL), 3);
        let auto = RuntimeSettings::default();
        assert_eq!(auto.worker_threads(2, Some("5"), LOCAL), 5);
        // Not a positive number: ignored, as the runtime itself would refuse it.
        assert_eq!(auto.worker_threads(2, Some("0"), LOCAL), 1);
        assert_eq!(auto.worker_threads(2, Some("many"), LOCAL), 1);
    }
}
