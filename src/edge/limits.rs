//! The `[http]` limits as the edge applies them ([`Limits`], with the connection cap fitted
//! to the descriptor limit) and the reasons a connection is shed ([`Shed`]), counted here.

use std::time::Duration;

use super::body::BodyLimits;
use crate::{config::HttpSettings, telemetry::metric};

/// Descriptors kept out of the connection cap for Redis, the database, logs and files.
pub const FD_RESERVE: u64 = 64;

/// The limits of `[http]`, as durations, with the connection cap in force.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub(crate) header_read: Duration,
    pub(crate) body: BodyLimits,
    pub(crate) idle: Duration,
    pub(crate) request: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_ip: usize,
}

impl Limits {
    /// `settings`' limits, the cap lowered to what `fd_limit` (the soft descriptor limit,
    /// `None`: unlimited or unknown) leaves after [`FD_RESERVE`].
    pub fn new(settings: &HttpSettings, fd_limit: Option<u64>) -> Self {
        let fits = fd_limit.map_or(usize::MAX, |n| {
            usize::try_from(n.saturating_sub(FD_RESERVE).max(16)).unwrap_or(usize::MAX)
        });
        Self {
            header_read: Duration::from_millis(settings.header_read_timeout_ms),
            body: BodyLimits {
                timeout: Duration::from_millis(settings.body_read_timeout_ms),
                grace: Duration::from_millis(settings.body_grace_ms),
                min_bytes_per_sec: settings.body_min_bytes_per_sec,
            },
            idle: Duration::from_secs(settings.idle_timeout_secs),
            request: Duration::from_secs(settings.request_timeout_secs),
            max_connections: settings.max_connections.min(fits),
            max_connections_per_ip: settings.max_connections_per_ip,
        }
    }

    /// The connection cap in force.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }
}

/// This process's soft descriptor limit (`None`: unlimited).
pub fn fd_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Why the edge closed a connection (the `reason` label of the shed counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shed {
    Cap,
    PerIp,
    AcceptError,
    HeaderTimeout,
    BodyTimeout,
    RequestTimeout,
    Idle,
}

impl Shed {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Cap => "cap",
            Self::PerIp => "per_ip",
            Self::AcceptError => "accept_error",
            Self::HeaderTimeout => "header_timeout",
            Self::BodyTimeout => "body_timeout",
            Self::RequestTimeout => "request_timeout",
            Self::Idle => "idle",
        }
    }

    pub(crate) fn count(self, n: u64) {
        if n > 0 {
            metric::http_shed(self.label(), n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn the_cap_fits_the_descriptor_limit_less_the_reserve() {
        let http = Settings::defaults().http;
        assert_eq!(http.max_connections, 1024);
        let cap = |fds| Limits::new(&http, fds).max_connections();
        assert_eq!(cap(None), 1024, "unlimited: as configured");
        assert_eq!(cap(Some(20_000)), 1024);
        assert_eq!(cap(Some(1024)), 1024 - 64);
        assert_eq!(cap(Some(256)), 192);
        assert_eq!(cap(Some(32)), 16, "never below 16");
    }
}
