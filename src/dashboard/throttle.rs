//! Throttled authentication: failed bearer, basic and login attempts share one limiter per
//! client address and one for the whole deployment, both sliding windows in Redis (so every
//! instance behind a load balancer counts the same failures).
//!
//! * An address with `auth_failures_per_minute_per_ip` failures in the last minute is
//!   answered 429 with `Retry-After` before its credential is even looked at, right or wrong,
//!   until its oldest failure leaves the window.
//! * When the deployment saw `auth_failures_per_minute` failures in the last minute (a guess
//!   spread over many addresses), every address that failed at least once in that minute is
//!   refused the same way. An address without a recent failure is still let in to try, so an
//!   operator keeps working while someone else guesses.
//!
//! Successful attempts cost one script call and record nothing.

use std::{net::IpAddr, sync::LazyLock, time::Duration};

use crate::queue::{QueueError, Queues, job};

/// The window both limits count in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// KEYS: the address' failures, the deployment's failures (ZSETs, member -> time in ms).
/// ARGV: now (ms), window (ms), per-address limit, deployment limit.
/// Returns 0 when the address may try, else the milliseconds until it may.
static CHECK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local per_ip, global = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local mine = redis.call('ZCARD', KEYS[1])
local function wait(key, keep)
  local at = redis.call('ZRANGE', key, -keep, -keep, 'WITHSCORES')
  if at[2] == nil then return 1000 end
  return math.max(1, tonumber(at[2]) + window - now)
end
if mine >= per_ip then return wait(KEYS[1], per_ip) end
if mine == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local all = redis.call('ZCARD', KEYS[2])
if all >= global then return wait(KEYS[2], global) end
return 0
",
    )
});

/// KEYS: the address' failures, the deployment's failures. ARGV: now (ms), window (ms),
/// member, deployment limit (the deployment's set keeps no more than twice that).
static FAILED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, k in ipairs(KEYS) do
  redis.call('ZADD', k, now, ARGV[3])
  redis.call('PEXPIRE', k, window)
end
local excess = redis.call('ZCARD', KEYS[2]) - 2 * tonumber(ARGV[4])
if excess > 0 then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1) end
return 0
",
    )
});

/// The limiter. Cheap to clone.
#[derive(Clone)]
pub struct AuthThrottle {
    queues: Queues,
    per_ip: u32,
    global: u32,
}

impl AuthThrottle {
    /// Limits of `per_ip` failures per address and `global` for the deployment, per [`WINDOW`].
    pub fn new(queues: Queues, per_ip: u32, global: u32) -> Self {
        Self {
            queues,
            per_ip: per_ip.max(1),
            global: global.max(1),
        }
    }

    fn keys(&self, ip: Option<IpAddr>) -> (String, String) {
        let prefix = &self.queues.settings().prefix;
        let ip = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        (
            format!("{{{prefix}:auth}}:fail:{ip}"),
            format!("{{{prefix}:auth}}:fail:*"),
        )
    }

    /// How long `ip` must wait before trying a credential, or `None` when it may now.
    pub async fn refused(&self, ip: Option<IpAddr>) -> Result<Option<Duration>, QueueError> {
        let (mine, all) = self.keys(ip);
        let mut conn = self.queues.conn();
        let wait: u64 = CHECK
            .key(mine)
            .key(all)
            .arg(job::now_ms())
            .arg(WINDOW.as_millis() as u64)
            .arg(self.per_ip)
            .arg(self.global)
            .invoke_async(&mut conn)
            .await?;
        Ok((wait > 0).then(|| Duration::from_millis(wait)))
    }

    /// Count a failed attempt from `ip`.
    pub async fn failed(&self, ip: Option<IpAddr>) -> Result<(), QueueError> {
        let (mine, all) = self.keys(ip);
        let member = format!("{}-{:08x}", job::now_us(), rand::random::<u32>());
        let mut conn = self.queues.conn();
        let _: i64 = FAILED
            .key(mine)
            .key(all)
            .arg(job::now_ms())
            .arg(WINDOW.as_millis() as u64)
            .arg(member)
            .arg(self.global)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}
