//! Redis deployments of a test's own, for failover tests: a Redis Cluster of six nodes (three
//! masters with one replica each) and a Sentinel set (a master, its replica and three
//! sentinels). Every process is a `redis-server` on loopback, driven with `redis-cli`; each has
//! a directory of its own (its data, its `nodes.conf` or sentinel configuration, and
//! `redis.log` with its stdout and stderr) under one temporary directory. Dropping a deployment
//! kills and reaps every process and removes that directory.
//!
//! Waiting polls what the processes report, with a deadline; nothing sleeps to synchronise.

#![allow(dead_code)]

use std::{
    collections::HashMap,
    fs::{self, File},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use super::{free_port, tools::require};

const INSTALL_SERVER: &str = "apt-get install redis-server (macOS: brew install redis)";
const INSTALL_CLI: &str = "apt-get install redis-tools (macOS: brew install redis)";

/// How long a deployment may take to form.
const FORM_LIMIT: Duration = Duration::from_secs(30);
/// How long a started process may take to answer `PING`.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);
/// The pause between two looks while polling.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// Starts of one process on freshly chosen ports, should another process take a port first.
const ATTEMPTS: usize = 5;
/// A cluster node's bus listens on its port plus this.
const BUS_OFFSET: u16 = 10_000;
/// The name the sentinels monitor the master by.
const MASTER_NAME: &str = "switchboard";
/// Each process's stdout and stderr, in its directory.
const LOG: &str = "redis.log";

/// A Redis Cluster of six nodes on loopback: three masters, each with one replica, a one
/// second node timeout and replicas that may always fail over. Killed and removed when
/// dropped.
pub struct RedisCluster {
    group: Group,
    /// The slot ranges each master killed with [`RedisCluster::kill`] served.
    lost: HashMap<u16, Vec<(u16, u16)>>,
}

impl RedisCluster {
    /// Start six nodes, join them with `redis-cli --cluster create`, and wait until every
    /// node sees all six and all 16384 slots served, and every replica's link to its master is
    /// up.
    #[must_use]
    pub fn start() -> Self {
        let mut group = Group::new("cluster");
        for _ in 0..6 {
            group.spawn("node", true, |port, dir| {
                let mut args = server_args(port, dir);
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                        "--cluster-replica-validity-factor",
                        "0",
                        "--cluster-allow-reads-when-down",
                        "no",
                    ]
                    .map(str::to_owned),
                );
                args
            });
        }
        let addresses: Vec<String> = group
            .processes
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.port))
            .collect();
        let out = Command::new(require("redis-cli", INSTALL_CLI))
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("running redis-cli --cluster create");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let create_log = group.root.join("create.log");
        fs::write(&create_log, &text).expect("writing the cluster create log");
        assert!(
            out.status.success() && text.contains("All 16384 slots covered"),
            "redis-cli --cluster create failed ({}): {}",
            out.status,
            tail(&text)
        );
        let cluster = Self {
            group,
            lost: HashMap::new(),
        };
        let formed = poll(FORM_LIMIT, || cluster.formed());
        if let Err((port, why)) = formed {
            panic!(
                "the Redis Cluster did not form within {FORM_LIMIT:?}: node {port}: {why}; its log: {}",
                cluster.group.log_tail(port)
            );
        }
        cluster
    }

    /// `Ok` once every node reports the whole cluster healthy; else the first node that does
    /// not, and why.
    fn formed(&self) -> Result<(), (u16, String)> {
        for process in &self.group.processes {
            let port = process.port;
            let info = try_cli(port, &["CLUSTER", "INFO"]).ok_or((port, "no answer".into()))?;
            for (name, want) in [
                ("cluster_state", "ok"),
                ("cluster_slots_ok", "16384"),
                ("cluster_known_nodes", "6"),
            ] {
                let have = field(&info, name).unwrap_or("?");
                if have != want {
                    return Err((port, format!("{name}:{have}")));
                }
            }
            replica_linked(port).map_err(|why| (port, why))?;
        }
        Ok(())
    }

    /// Every node, killed or not, as `redis://127.0.0.1:<port>` joined with commas.
    #[must_use]
    pub fn seeds(&self) -> String {
        self.group.urls(|_| true)
    }

    /// The ports of the live nodes that answer `ROLE` as a master.
    #[must_use]
    pub fn masters(&self) -> Vec<u16> {
        self.group
            .live()
            .filter(|&port| role(port).as_deref() == Some("master"))
            .collect()
    }

    /// The port of the master serving `key`'s slot, as a live node sees the cluster.
    #[must_use]
    pub fn master_port_for_key(&self, key: &str) -> u16 {
        let view = self.any_live();
        let slot: u16 = self
            .cli(view, &["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("CLUSTER KEYSLOT answers a slot number");
        self.view(view)
            .iter()
            .find(|n| n.serving() && n.covers(slot, slot))
            .map_or_else(
                || panic!("node {view} sees no master serving slot {slot} (of key {key:?})"),
                |n| n.port,
            )
    }

    /// SIGKILL the node on `port` (and reap it), remembering the slots it served as a master.
    pub fn kill(&mut self, port: u16) {
        assert!(
            self.group.is_live(port),
            "no live cluster node on port {port}"
        );
        let slots: Vec<(u16, u16)> = self
            .view(port)
            .into_iter()
            .find(|n| n.port == port)
            .map(|n| n.slots)
            .unwrap_or_default();
        if !slots.is_empty() {
            self.lost.insert(port, slots);
        }
        self.group.kill(port);
    }

    /// Wait at most `limit` until the slots the master on `dead_port` served (it was killed
    /// with [`RedisCluster::kill`]) are served by a live master, as every live node sees it,
    /// and every live node reports `cluster_state:ok`. Returns the new master's port.
    pub fn wait_failover(&self, dead_port: u16, limit: Duration) -> u16 {
        let slots = self.lost.get(&dead_port).unwrap_or_else(|| {
            panic!("wait_failover: {dead_port} is not a master killed with RedisCluster::kill")
        });
        poll(limit, || self.failed_over(slots)).unwrap_or_else(|why| {
            panic!("no failover of master {dead_port} within {limit:?}: {why}")
        })
    }

    /// The live master every live node sees serving `slots`, with the cluster state ok; else
    /// why not.
    fn failed_over(&self, slots: &[(u16, u16)]) -> Result<u16, String> {
        let mut served_by = None;
        for port in self.group.live() {
            let info = try_cli(port, &["CLUSTER", "INFO"]).ok_or(format!("{port}: no answer"))?;
            let state = field(&info, "cluster_state").unwrap_or("?");
            if state != "ok" {
                return Err(format!("{port}: cluster_state:{state}"));
            }
            for &(first, last) in slots {
                let owner = self
                    .view(port)
                    .into_iter()
                    .find(|n| n.serving() && n.covers(first, last))
                    .map(|n| n.port)
                    .ok_or(format!("{port} sees no master serving {first}-{last}"))?;
                if !self.group.is_live(owner) {
                    return Err(format!("{port} sees dead {owner} serving {first}-{last}"));
                }
                if served_by.is_some_and(|p| p != owner) {
                    return Err(format!("nodes disagree on who serves {first}-{last}"));
                }
                served_by = Some(owner);
            }
        }
        let owner = served_by.ok_or("no live node")?;
        match role(owner).as_deref() {
            Some("master") => Ok(owner),
            other => Err(format!("{owner} answers ROLE with {other:?}")),
        }
    }

    /// `redis-cli -h 127.0.0.1 -p <port> <args>`: its output, without the trailing newline
    /// (an error reply reads `ERR ...`). Panics when `port` is not a node of this cluster or
    /// redis-cli cannot reach it.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        assert!(
            self.group.processes.iter().any(|p| p.port == port),
            "no node of this cluster on port {port}"
        );
        cli(port, args)
    }

    /// The nodes as the node on `port` sees them (`CLUSTER NODES`).
    fn view(&self, port: u16) -> Vec<ClusterNode> {
        self.cli(port, &["CLUSTER", "NODES"])
            .lines()
            .filter_map(ClusterNode::parse)
            .collect()
    }

    fn any_live(&self) -> u16 {
        self.group.live().next().expect("a live cluster node")
    }
}

/// One line of `CLUSTER NODES`.
struct ClusterNode {
    port: u16,
    flags: Vec<String>,
    /// Inclusive ranges; slots being imported or migrated (`[...]`) are left out.
    slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    /// `<id> <ip>:<port>@<bus>[,<hostname>] <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let address = fields.get(1)?.split(['@', ',']).next()?;
        let port = address.rsplit(':').next()?.parse().ok()?;
        let flags = fields.get(2)?.split(',').map(str::to_owned).collect();
        let slots = fields
            .get(8..)
            .unwrap_or_default()
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((first, last)) => Some((first.parse().ok()?, last.parse().ok()?)),
                None => s.parse().ok().map(|slot| (slot, slot)),
            })
            .collect();
        Some(Self { port, flags, slots })
    }

    /// A master not flagged as failing.
    fn serving(&self) -> bool {
        let has = |flag: &str| self.flags.iter().any(|f| f == flag);
        has("master") && !has("fail") && !has("fail?")
    }

    /// Whether one of its ranges holds `first..=last`.
    fn covers(&self, first: u16, last: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= first && last <= b)
    }
}

/// A master, its replica and three sentinels monitoring it as `switchboard` (quorum 2,
/// down after one second, failover timeout five seconds), on loopback. Killed and removed
/// when dropped.
pub struct SentinelSet {
    group: Group,
    /// The two data servers (master and replica at the start).
    servers: [u16; 2],
    sentinels: Vec<u16>,
}

impl SentinelSet {
    /// Start the master, the replica and the three sentinels, and wait until the replica's
    /// link is up and every sentinel knows the master, its replica and the two other
    /// sentinels.
    #[must_use]
    pub fn start() -> Self {
        let mut group = Group::new("sentinel");
        let master = group.spawn("master", false, server_args);
        let replica = group.spawn("replica", false, |port, dir| {
            let mut args = server_args(port, dir);
            args.extend(["--replicaof".into(), "127.0.0.1".into(), master.to_string()]);
            args
        });
        if let Err(why) = poll(FORM_LIMIT, || replica_linked(replica)) {
            panic!(
                "replica {replica} did not link to master {master} within {FORM_LIMIT:?}: {why}; its log: {}",
                group.log_tail(replica)
            );
        }
        let sentinels: Vec<u16> = (0..3)
            .map(|_| {
                group.spawn("sentinel", false, |port, dir| {
                    let config = dir.join("sentinel.conf");
                    fs::write(
                        &config,
                        format!(
                            "port {port}\n\
                             bind 127.0.0.1\n\
                             sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                             sentinel failover-timeout {MASTER_NAME} 5000\n\
                             sentinel parallel-syncs {MASTER_NAME} 1\n"
                        ),
                    )
                    .expect("writing a sentinel configuration");
                    vec![config.display().to_string(), "--sentinel".into()]
                })
            })
            .collect();
        let set = Self {
            group,
            servers: [master, replica],
            sentinels,
        };
        if let Err((port, why)) = poll(FORM_LIMIT, || set.acquainted()) {
            panic!(
                "sentinel {port} did not learn the set within {FORM_LIMIT:?}: {why}; its log: {}",
                set.group.log_tail(port)
            );
        }
        set
    }

    /// `Ok` once every sentinel sees the master up with a replica and the two other
    /// sentinels; else the first sentinel that does not, and why.
    fn acquainted(&self) -> Result<(), (u16, String)> {
        for &port in &self.sentinels {
            let answer = try_cli(port, &["SENTINEL", "MASTER", MASTER_NAME])
                .ok_or((port, "no answer".into()))?;
            let lines: Vec<&str> = answer.lines().map(str::trim).collect();
            let get = |name: &str| {
                lines
                    .chunks(2)
                    .find(|pair| pair[0] == name)
                    .and_then(|pair| pair.get(1).copied())
                    .unwrap_or("?")
            };
            let replicas: u32 = get("num-slaves").parse().unwrap_or(0);
            if get("flags") != "master" || replicas < 1 || get("num-other-sentinels") != "2" {
                return Err((
                    port,
                    format!(
                        "flags {}, num-slaves {}, num-other-sentinels {}",
                        get("flags"),
                        get("num-slaves"),
                        get("num-other-sentinels")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The sentinels as `redis://127.0.0.1:<port>` joined with commas.
    #[must_use]
    pub fn urls(&self) -> String {
        self.group.urls(|port| self.sentinels.contains(&port))
    }

    /// The name the sentinels monitor the master by.
    #[must_use]
    pub fn master_name() -> &'static str {
        MASTER_NAME
    }

    /// The master's port, as the first sentinel that answers names it.
    #[must_use]
    pub fn master_port(&self) -> u16 {
        self.sentinels
            .iter()
            .filter(|&&port| self.group.is_live(port))
            .find_map(|&port| named_master(port))
            .expect("a sentinel that names the master")
    }

    /// The data server that is not the master now: the replica before a failover, the killed
    /// former master after one.
    #[must_use]
    pub fn replica_port(&self) -> u16 {
        let master = self.master_port();
        let [a, b] = self.servers;
        if a == master { b } else { a }
    }

    /// SIGKILL the current master (and reap it); returns its port.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        self.group.kill(port);
        port
    }

    /// Wait at most `limit` until every live sentinel names a master other than `old` and
    /// that server answers `ROLE` as a master; returns its port.
    pub fn wait_new_master(&self, old: u16, limit: Duration) -> u16 {
        poll(limit, || self.new_master(old))
            .unwrap_or_else(|why| panic!("no new master in place of {old} within {limit:?}: {why}"))
    }

    /// `redis-cli -h 127.0.0.1 -p <port> <args>` against a data server or a sentinel of this
    /// set, as [`RedisCluster::cli`].
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        assert!(
            self.group.processes.iter().any(|p| p.port == port),
            "no process of this sentinel set on port {port}"
        );
        cli(port, args)
    }

    fn new_master(&self, old: u16) -> Result<u16, String> {
        let mut named = None;
        for &sentinel in self.sentinels.iter().filter(|&&p| self.group.is_live(p)) {
            let port = named_master(sentinel).ok_or(format!("sentinel {sentinel}: no answer"))?;
            if port == old {
                return Err(format!("sentinel {sentinel} still names {old}"));
            }
            if named.is_some_and(|p| p != port) {
                return Err("sentinels disagree on the master".into());
            }
            named = Some(port);
        }
        let port = named.ok_or("no live sentinel")?;
        match role(port).as_deref() {
            Some("master") => Ok(port),
            other => Err(format!("{port} answers ROLE with {other:?}")),
        }
    }
}

/// The master port the sentinel on `port` names (`SENTINEL get-master-addr-by-name`).
fn named_master(sentinel: u16) -> Option<u16> {
    try_cli(
        sentinel,
        &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
    )?
    .lines()
    .nth(1)?
    .trim()
    .parse()
    .ok()
}

/// The arguments every data server gets: loopback, `port`, `dir`, no persistence, and a
/// master that syncs a replica at once (not five seconds later, waiting for more replicas).
fn server_args(port: u16, dir: &Path) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
        "--repl-diskless-sync-delay",
        "0",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `Ok` when the server on `port` is a master, or a replica whose link to its master is up.
fn replica_linked(port: u16) -> Result<(), String> {
    let info = try_cli(port, &["INFO", "replication"]).ok_or("no answer")?;
    match field(&info, "role") {
        Some("master") => Ok(()),
        Some("slave") => match field(&info, "master_link_status") {
            Some("up") => Ok(()),
            other => Err(format!("master_link_status:{}", other.unwrap_or("?"))),
        },
        other => Err(format!("role:{}", other.unwrap_or("?"))),
    }
}

/// The first line of `ROLE` (`master`, `slave`, `sentinel`) of the server on `port`.
fn role(port: u16) -> Option<String> {
    try_cli(port, &["ROLE"])?
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
}

/// The value of `name:value` in an `INFO`-style answer.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// `redis-cli` against the server on `port`: its output without the trailing newline, or
/// what it printed on stderr when it failed (could not connect, mostly).
fn run_cli(port: u16, args: &[&str]) -> Result<String, String> {
    let out = Command::new(require("redis-cli", INSTALL_CLI))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running redis-cli");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn try_cli(port: u16, args: &[&str]) -> Option<String> {
    run_cli(port, args).ok()
}

fn cli(port: u16, args: &[&str]) -> String {
    run_cli(port, args).unwrap_or_else(|e| panic!("redis-cli -p {port} {}: {e}", args.join(" ")))
}

/// Call `probe` until it returns `Ok`, for at most `limit`; its last `Err` when time is up.
fn poll<T, E>(limit: Duration, mut probe: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = Instant::now() + limit;
    loop {
        match probe() {
            Ok(done) => return Ok(done),
            Err(why) if Instant::now() >= deadline => return Err(why),
            Err(_) => thread::sleep(POLL_EVERY),
        }
    }
}

/// The last lines of `text` on one line.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(4)..].join(" | ")
}

/// One `redis-server` process of a deployment.
struct Process {
    port: u16,
    dir: PathBuf,
    /// `None` once killed and reaped.
    child: Option<Child>,
}

impl Process {
    /// SIGKILL the process and reap it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // It may have exited on its own already; reaping it is what matters.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Wait until the process answers on its port (it, not another that took the port: the
    /// `process_id` it reports is the child's); else why not.
    fn wait_answering(&mut self) -> Result<(), String> {
        let port = self.port;
        let child = self.child.as_mut().expect("a process not killed yet");
        let pid = child.id().to_string();
        poll(ANSWER_LIMIT, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(Err(format!("it exited ({status})")));
            }
            match try_cli(port, &["INFO", "server"]) {
                Some(info) if field(&info, "process_id") == Some(pid.as_str()) => Ok(Ok(())),
                Some(_) => Ok(Err(format!("another process answers on port {port}"))),
                None => Err(format!("no answer within {ANSWER_LIMIT:?}")),
            }
        })?
    }
}

/// The processes of one deployment and the temporary directory that holds theirs.
struct Group {
    root: PathBuf,
    processes: Vec<Process>,
}

impl Group {
    /// An empty group with a fresh directory `switchboard-<kind>-<pid>-<n>` in the temporary
    /// directory.
    fn new(kind: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "switchboard-{kind}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // Left over from an earlier test process that had the same id, if any.
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap_or_else(|e| panic!("creating {}: {e}", root.display()));
        Self {
            root,
            processes: Vec::new(),
        }
    }

    /// Start `redis-server <args(port, dir)>` on a free port (and a free bus port at
    /// port + 10000 when `bus`), in a directory of its own, and wait until it answers `PING`.
    /// Should a port be taken before the server binds it, it starts again on others.
    fn spawn(&mut self, name: &str, bus: bool, args: impl Fn(u16, &Path) -> Vec<String>) -> u16 {
        let server = require("redis-server", INSTALL_SERVER);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = pick_port(bus);
            let dir = self.root.join(format!("{name}-{port}"));
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
            let log = File::create(dir.join(LOG)).expect("creating a redis log file");
            let child = Command::new(&server)
                .args(args(port, &dir))
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("sharing the redis log file"))
                .stderr(log)
                .spawn()
                .expect("starting redis-server");
            let mut process = Process {
                port,
                dir,
                child: Some(child),
            };
            match process.wait_answering() {
                Ok(()) => {
                    self.processes.push(process);
                    return port;
                }
                Err(why) => {
                    process.kill();
                    let log = read_tail(&process.dir.join(LOG));
                    // "Address already in use": the port was taken after it was chosen.
                    let taken = log.contains("in use") || why.starts_with("another process");
                    assert!(
                        attempt < ATTEMPTS && taken,
                        "redis-server {name} on port {port} did not start: {why}; its log: {log}"
                    );
                }
            }
        }
    }

    /// The ports of the processes not killed.
    fn live(&self) -> impl Iterator<Item = u16> + '_ {
        self.processes
            .iter()
            .filter(|p| p.child.is_some())
            .map(|p| p.port)
    }

    fn is_live(&self, port: u16) -> bool {
        self.live().any(|p| p == port)
    }

    /// SIGKILL the process on `port` and reap it.
    fn kill(&mut self, port: u16) {
        let process = self
            .processes
            .iter_mut()
            .find(|p| p.port == port)
            .unwrap_or_else(|| panic!("no process of this deployment on port {port}"));
        assert!(
            process.child.is_some(),
            "the process on {port} is already killed"
        );
        process.kill();
    }

    /// `redis://127.0.0.1:<port>` of the processes whose port passes `keep`, joined with
    /// commas.
    fn urls(&self, keep: impl Fn(u16) -> bool) -> String {
        self.processes
            .iter()
            .filter(|p| keep(p.port))
            .map(|p| format!("redis://127.0.0.1:{}", p.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The end of the log of the process on `port`, on one line.
    fn log_tail(&self, port: u16) -> String {
        self.processes
            .iter()
            .find(|p| p.port == port)
            .map_or_else(String::new, |p| read_tail(&p.dir.join(LOG)))
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for process in &mut self.processes {
            process.kill();
        }
        // Best effort: a leftover directory in the temporary directory fails no test.
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A free loopback port; with `bus`, one whose port + 10000 is free too.
fn pick_port(bus: bool) -> u16 {
    for _ in 0..1000 {
        let port = free_port();
        if !bus {
            return port;
        }
        let free = port
            .checked_add(BUS_OFFSET)
            .is_some_and(|bus| TcpListener::bind(("127.0.0.1", bus)).is_ok());
        if free {
            return port;
        }
    }
    panic!("found no free port whose port + {BUS_OFFSET} is free too");
}

/// The end of the log file at `path`, on one line.
fn read_tail(path: &Path) -> String {
    fs::read_to_string(path).map_or_else(|e| format!("({}: {e})", path.display()), |t| tail(&t))
}
