//! One connection type over the three Redis topologies Switchboard runs on
//! (`redis.mode`): a single server, a Redis Cluster, and a master found through Sentinel.
//!
//! [`Conn`] is what every queue operation sends commands over: shared, multiplexed and
//! reconnecting, whatever the topology. [`Topology`] knows the servers behind it, for what a
//! shared connection cannot do: a blocking `BLMOVE` or `WAIT` needs a socket of its own on
//! the server that holds the key, and `SCAN` must visit every master of a cluster.
//!
//! * Cluster: the crate's cluster client follows `MOVED`/`ASK` and refreshes its slot map
//!   after a failover. Every script of a queue touches keys of one hash tag, one slot;
//!   [`Topology::check_slots`] proves it against the cluster at start.
//! * Sentinel: the master is asked of the Sentinels at connect, and again whenever it stops
//!   answering as master (`READONLY` after a demotion, a refused or dropped connection). A
//!   command that certainly did not run (`READONLY`, refused) is sent once more to the new
//!   master; one that may have run is returned as an error, for its caller to retry.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo, Pipeline,
    RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
    cluster_async::ClusterConnection,
};
use tokio::sync::RwLock;

use crate::config::{RedisMode, RedisSettings};

/// Connect timeout of every connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for one reply on a shared connection.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The shared connection of one process: cheap to clone, reconnecting.
#[derive(Clone)]
pub enum Conn {
    /// One server.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
    /// The current master behind Sentinels.
    Sentinel(SentinelMaster),
}

/// The servers behind a [`Conn`].
#[derive(Clone)]
pub enum Topology {
    /// One server.
    Single(Client),
    /// A cluster, reached through `conn`; `seeds` are the configured nodes, asked directly
    /// about the cluster's shape, and carry the credentials for every node.
    Cluster {
        conn: ClusterConnection,
        seeds: Vec<ConnectionInfo>,
    },
    /// A master found through Sentinel.
    Sentinel(SentinelMaster),
}

/// Small request/response pairs on loopback: Nagle's algorithm would hold writes back
/// waiting for ACKs, adding latency to every round trip.
fn no_delay(info: ConnectionInfo) -> ConnectionInfo {
    info.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
}

/// Connect as `settings` say. Fails when Redis does not answer.
pub async fn connect(settings: &RedisSettings) -> RedisResult<(Conn, Topology)> {
    let urls = settings.urls();
    match settings.mode {
        RedisMode::Standalone => {
            let url = urls.first().copied().unwrap_or_default();
            let client = Client::open(no_delay(url.into_connection_info()?))?;
            let conn = ConnectionManager::new_with_config(client.clone(), manager_config()).await?;
            Ok((Conn::Single(conn), Topology::Single(client)))
        }
        RedisMode::Cluster => {
            let infos = urls
                .iter()
                .map(|u| u.into_connection_info().map(no_delay))
                .collect::<RedisResult<Vec<_>>>()?;
            if infos.is_empty() {
                return Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "no cluster seed node",
                )));
            }
            let client = redis::cluster::ClusterClient::builder(infos.clone())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .retries(8)
                .min_retry_wait(50)
                .max_retry_wait(1_000)
                .build()?;
            let conn = client.get_async_connection().await?;
            Ok((
                Conn::Cluster(conn.clone()),
                Topology::Cluster { conn, seeds: infos },
            ))
        }
        RedisMode::Sentinel => {
            let sentinels = urls
                .iter()
                .map(|u| u.into_connection_info())
                .collect::<RedisResult<Vec<_>>>()?;
            let master = SentinelMaster::new(sentinels, settings.sentinel_master.clone());
            master.current().await?;
            Ok((Conn::Sentinel(master.clone()), Topology::Sentinel(master)))
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(m) => {
                Box::pin(m.run(move |mut c| async move { c.req_packed_command(cmd).await }))
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(m) => Box::pin(m.run(move |mut c| async move {
                c.req_packed_commands(pipeline, offset, count).await
            })),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) | Conn::Sentinel(_) => 0,
        }
    }
}

impl Topology {
    /// A client of the server holding `key` (the master of its slot, in a cluster), for a
    /// dedicated connection there.
    pub async fn node_for(&self, key: &str) -> RedisResult<Client> {
        match self {
            Topology::Single(client) => Ok(client.clone()),
            Topology::Sentinel(m) => Ok(m.current().await?.client),
            Topology::Cluster { seeds, .. } => {
                let slot: u16 =
                    ask_any(seeds, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).await?;
                let (host, port) = slot_masters(seeds)
                    .await?
                    .into_iter()
                    .find(|(range, _)| range.contains(&slot))
                    .map(|(_, addr)| addr)
                    .ok_or_else(|| {
                        RedisError::from((
                            ErrorKind::ClusterConnectionNotFound,
                            "no master serves the slot",
                        ))
                    })?;
                Client::open(seeds[0].clone().set_addr(ConnectionAddr::Tcp(host, port)))
            }
        }
    }

    /// A client of every master (one for a single server or a Sentinel master).
    pub async fn masters(&self) -> RedisResult<Vec<Client>> {
        match self {
            Topology::Single(client) => Ok(vec![client.clone()]),
            Topology::Sentinel(m) => Ok(vec![m.current().await?.client]),
            Topology::Cluster { seeds, .. } => {
                let mut addrs: Vec<(String, u16)> = slot_masters(seeds)
                    .await?
                    .into_iter()
                    .map(|(_, a)| a)
                    .collect();
                addrs.sort();
                addrs.dedup();
                addrs
                    .into_iter()
                    .map(|(host, port)| {
                        Client::open(seeds[0].clone().set_addr(ConnectionAddr::Tcp(host, port)))
                    })
                    .collect()
            }
        }
    }

    /// The slot of each key, as the cluster computes it; `None` outside a cluster.
    pub async fn slots_of(&self, keys: &[String]) -> RedisResult<Option<Vec<u16>>> {
        let Topology::Cluster { seeds, .. } = self else {
            return Ok(None);
        };
        // One by one: a cluster pipeline must stay within one slot, and these keys are
        // asked about precisely because they might not.
        let mut slots = Vec::with_capacity(keys.len());
        for key in keys {
            slots.push(ask_any(seeds, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).await?);
        }
        Ok(Some(slots))
    }
}

/// A question any node can answer, asked of the seed nodes directly, one after another
/// until one answers (right after a failover the cluster client may still pick a dead node).
async fn ask_any<T: redis::FromRedisValue>(seeds: &[ConnectionInfo], cmd: &Cmd) -> RedisResult<T> {
    let mut last = None;
    for seed in seeds {
        let asked = async {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT));
            let mut conn = Client::open(seed.clone())?
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            cmd.query_async(&mut conn).await
        };
        match asked.await {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        RedisError::from((ErrorKind::InvalidClientConfig, "no cluster seed node"))
    }))
}

/// The slot ranges of a cluster with the address of each range's master.
async fn slot_masters(
    seeds: &[ConnectionInfo],
) -> RedisResult<Vec<(std::ops::RangeInclusive<u16>, (String, u16))>> {
    let reply: Vec<Vec<Value>> = ask_any(seeds, redis::cmd("CLUSTER").arg("SLOTS")).await?;
    let mut out = Vec::with_capacity(reply.len());
    for range in reply {
        let mut fields = range.into_iter();
        let (Some(start), Some(end), Some(master)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let start: u16 = redis::from_redis_value(start)?;
        let end: u16 = redis::from_redis_value(end)?;
        let node: Vec<Value> = redis::from_redis_value(master)?;
        let mut node = node.into_iter();
        let (Some(host), Some(port)) = (node.next(), node.next()) else {
            continue;
        };
        out.push((
            start..=end,
            (
                redis::from_redis_value(host)?,
                redis::from_redis_value(port)?,
            ),
        ));
    }
    Ok(out)
}

/// The master behind a set of Sentinels, found again after a failover. Cheap to clone.
#[derive(Clone)]
pub struct SentinelMaster(Arc<SentinelState>);

struct SentinelState {
    sentinels: Vec<ConnectionInfo>,
    name: String,
    current: RwLock<Option<Master>>,
    generation: AtomicU64,
}

/// One discovered master: its shared connection and a client for dedicated ones.
#[derive(Clone)]
pub struct Master {
    conn: ConnectionManager,
    /// A client of the master, for dedicated connections.
    pub client: Client,
    generation: u64,
}

/// The error says the master is gone or no longer master: ask the Sentinels again.
fn lost_master(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
}

/// The command certainly did not run, so it may be sent again.
fn not_run(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) || e.is_connection_refusal()
}

impl SentinelMaster {
    fn new(sentinels: Vec<ConnectionInfo>, name: String) -> Self {
        Self(Arc::new(SentinelState {
            sentinels,
            name,
            current: RwLock::new(None),
            generation: AtomicU64::new(0),
        }))
    }

    /// The master known now, discovered when none is.
    pub async fn current(&self) -> RedisResult<Master> {
        if let Some(m) = self.0.current.read().await.clone() {
            return Ok(m);
        }
        self.rediscover(None).await
    }

    /// Run `op` on the master; when the master is lost, discover the new one (and run `op`
    /// again when it certainly did not run).
    async fn run<'a, T, F, Fut>(&'a self, op: F) -> RedisResult<T>
    where
        F: Fn(ConnectionManager) -> Fut + 'a,
        Fut: Future<Output = RedisResult<T>> + 'a,
    {
        let master = self.current().await?;
        match op(master.conn.clone()).await {
            Err(e) if lost_master(&e) => {
                let fresh = self.rediscover(Some(master.generation)).await;
                match fresh {
                    Ok(m) if not_run(&e) => op(m.conn).await,
                    _ => Err(e),
                }
            }
            done => done,
        }
    }

    /// Ask the Sentinels for the master, unless another caller already replaced the one of
    /// generation `stale`.
    async fn rediscover(&self, stale: Option<u64>) -> RedisResult<Master> {
        let mut current = self.0.current.write().await;
        if let Some(m) = current.as_ref()
            && stale.is_none_or(|g| g != m.generation)
        {
            return Ok(m.clone());
        }
        *current = None;
        let (host, port) = self.ask_sentinels().await?;
        let template = self.0.sentinels[0].clone();
        let client = Client::open(no_delay(
            template.set_addr(ConnectionAddr::Tcp(host.clone(), port)),
        ))?;
        let mut conn = ConnectionManager::new_with_config(client.clone(), manager_config()).await?;
        let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
        let role: String = role
            .into_iter()
            .next()
            .map(redis::from_redis_value)
            .transpose()?
            .unwrap_or_default();
        if role != "master" {
            return Err(RedisError::from((
                ErrorKind::Server(ServerErrorKind::ReadOnly),
                "the Sentinels name a server that is not master yet",
                format!("{host}:{port} is {role}"),
            )));
        }
        let generation = self.0.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(master = %format!("{host}:{port}"), name = %self.0.name, "redis master found through sentinel");
        let master = Master {
            conn,
            client,
            generation,
        };
        *current = Some(master.clone());
        Ok(master)
    }

    /// The master's address as the first Sentinel that answers names it.
    async fn ask_sentinels(&self) -> RedisResult<(String, u16)> {
        let mut last = None;
        for info in &self.0.sentinels {
            let asked = async {
                let client = Client::open(info.clone())?;
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(Duration::from_secs(1)));
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&self.0.name)
                    .query_async::<Option<(String, u16)>>(&mut conn)
                    .await
            };
            match asked.await {
                Ok(Some(addr)) => return Ok(addr),
                Ok(None) => {
                    last = Some(RedisError::from((
                        ErrorKind::MasterNameNotFoundBySentinel,
                        "a Sentinel does not know the master",
                        self.0.name.clone(),
                    )));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            RedisError::from((ErrorKind::EmptySentinelList, "no Sentinel configured"))
        }))
    }
}

/// A dedicated connection to the server holding one key, for blocking commands.
pub struct Dedicated {
    /// The connection itself; replies may take as long as the blocking command asks.
    pub conn: MultiplexedConnection,
    /// A client of the same server, to unblock `conn` from another socket.
    pub node: Client,
}

impl Topology {
    /// A dedicated connection to the server holding `key`, waiting at most
    /// `response_timeout` for a reply (`None`: as long as a blocking command asks).
    pub async fn dedicated(
        &self,
        key: &str,
        response_timeout: Option<Duration>,
    ) -> RedisResult<Dedicated> {
        let node = self.node_for(key).await?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(response_timeout);
        let conn = node
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Dedicated { conn, node })
    }
}
