//! The person's jobs in Redis, for `switchboard erase`.
//!
//! Every job item (`<id> <envelope>`) of every queue is read where it waits — `pending`
//! (LIST, read by index ranges), `delayed` (ZSCAN), `dead` and `expired` (HSCAN), the
//! priority and tenant lanes `lane:<priority>:<tenant>` (LISTs like `pending`), the
//! successors in sequence lists and the results of completed jobs (all three found by one
//! SCAN of the prefix), and last the `index` (HASH id -> item, the copy of every waiting job
//! that lookup and cancel by id read), always in bounded batches — and its arguments are
//! opened ([`open_args`]) and searched for the person's number or address (their
//! [`Needles`]). Elements of a list that start with `~` are fetch tokens, not items: they
//! are skipped unread. A job of theirs is:
//! * **deleted** when its whole purpose is to reach or book them: `notify.email`,
//!   `notify.sms` (their outbox rows are `dropped` by the database part, so nothing is sent)
//!   and `calendar.book` (it would book a slot in their name from their data);
//! * **anonymised** in place otherwise (webhook jobs carry calls to bill and bookings to
//!   keep): every occurrence becomes `[erased]`, also inside the raw webhook body, and their
//!   transcript, recording links and names are dropped; the job keeps its place and score and
//!   still runs. A job in a sequence is never deleted (its line would stall): anonymised.
//!
//! Each change is a compare-and-swap of the exact item ([`Queues::swap_item`]): an item a
//! worker took meanwhile is skipped and reported. The index is walked after the lists and
//! sets whose items it copies, so what is left there for the person is a copy no swap of
//! the item itself brought in step; it is swapped on its own, by id. Reading `pending` from
//! the head while producers push there can show an item twice (the second time it no longer
//! matches) but never skips one; items workers pop from the tail meanwhile are running jobs.
//! Jobs held by workers (leased, or in a worker's inbox) are only counted: they are running,
//! and erase must run again once they finished.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;
use serde_json::value::RawValue;
use switchboard_jobs::store::erasure::Needles;

use crate::queue::{Envelope, QueueError, Queues, job, seal, swap::Place};

/// Kinds deleted rather than anonymised (see the module doc).
const DELETED_KINDS: &[&str] = &["notify.email", "notify.sms", "calendar.book"];
/// Items, fields or keys read per Redis call.
const BATCH: usize = 500;

/// Where a job was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Delayed,
    /// Waiting in a sequence behind an earlier job of its key.
    Waiting,
    Dead,
    Expired,
    /// Cancelled before it started (kept for the record).
    Cancelled,
    /// The recorded result of a completed job.
    Completed,
    /// Held by a worker: never touched.
    Running,
    /// A dedupe key whose name holds their number or address.
    Unique,
    /// The copy of a waiting job in the queue's `index` (lookup and cancel by id).
    Index,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delayed => "delayed",
            Self::Waiting => "waiting",
            Self::Dead => "dead",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
            Self::Completed => "completed",
            Self::Running => "running",
            Self::Unique => "unique",
            Self::Index => "index",
        }
    }
}

/// What happened to the person's jobs in one queue and state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub anonymised: u64,
    pub deleted: u64,
    /// Gone or changed between read and swap (a worker took it): run erase again.
    pub skipped: u64,
    /// Held by a running worker, not touched.
    pub running: u64,
}

/// Counts per queue and state (only those with something in them).
pub type JobsReport = BTreeMap<(String, State), Counts>;

/// One pass over the queues.
pub struct Eraser<'a> {
    pub queues: &'a Queues,
    pub needles: &'a Needles,
    /// Count only; change nothing.
    pub dry_run: bool,
    pub report: JobsReport,
    /// Ids of the person's jobs already counted in a dry run, whose copies in the index
    /// are not counted again (a real run changes the item, so the copy no longer matches
    /// once the swap keeps the index in step).
    counted: HashSet<String>,
}

/// What to do with one item.
enum Verdict {
    Keep,
    Rewrite(String),
    Remove,
}

/// The job's arguments as plain JSON text. The one place arguments are read: when payloads
/// are sealed, this opens them with the payload codec.
#[allow(clippy::unnecessary_wraps)] // opening a sealed payload can fail
fn open_args(queues: &Queues, env: &Envelope) -> Result<String, QueueError> {
    Ok(queues.open_args(env)?.get().to_owned())
}

/// `plain` as the job's stored arguments. The one place arguments are written: when
/// payloads are sealed, this seals them again with the payload codec.
fn seal_args(queues: &Queues, env: &Envelope, plain: String) -> Result<Box<RawValue>, QueueError> {
    Ok(queues.seal_args(&env.kind, RawValue::from_string(plain)?))
}

/// The job's last error in clear (sealed like its arguments when keys are configured).
fn open_error(queues: &Queues, env: &Envelope) -> Result<Option<String>, QueueError> {
    let Some(text) = env.err.as_deref() else {
        return Ok(None);
    };
    let part = seal::Part::Error { kind: &env.kind };
    Ok(Some(seal::open_text(queues.key_ring(), part, text)?))
}

/// A completed job's recorded result in clear, and how to store a rewritten one.
fn open_result(queues: &Queues, key: &str, stored: &str) -> Result<String, QueueError> {
    let id = result_id(key);
    Ok(seal::open_text(
        queues.key_ring(),
        seal::Part::Result { id },
        stored,
    )?)
}

/// The job id a result key (`QueueKeys::result`) names.
fn result_id(key: &str) -> &str {
    key.rsplit_once(":result:").map_or("", |(_, id)| id)
}

fn seal_result(queues: &Queues, key: &str, plain: String) -> String {
    queues.seal_result(result_id(key), plain)
}

impl<'a> Eraser<'a> {
    /// A pass over `queues` for the person `needles` find, changing nothing when `dry_run`.
    pub fn new(queues: &'a Queues, needles: &'a Needles, dry_run: bool) -> Self {
        Self {
            queues,
            needles,
            dry_run,
            report: JobsReport::new(),
            counted: HashSet::new(),
        }
    }

    /// Walk every queue in `names` and those found under the prefix.
    pub async fn run(&mut self, names: &[String]) -> Result<(), QueueError> {
        let mut names: BTreeSet<String> = names.iter().cloned().collect();
        self.scan_keys(&mut names).await?;
        for name in names {
            let Ok(k) = self.queues.keys(&name) else {
                continue;
            };
            self.walk_list(&name, State::Pending, &k.pending).await?;
            self.walk_delayed(&name, &k.delayed).await?;
            self.walk_hash(&name, State::Dead, &k.dead, &k.dead_at)
                .await?;
            self.walk_hash(&name, State::Expired, &k.expired, &k.expired_at)
                .await?;
            self.walk_hash(&name, State::Cancelled, &k.cancelled, &k.cancelled_at)
                .await?;
            // A HASH with no ordering ZSET: the swap's ZREM goes to a key of the same tag
            // that never exists.
            let unordered = format!("{}none", k.base());
            self.walk_index(&name, &k.index, &unordered).await?;
        }
        Ok(())
    }

    /// One SCAN over the prefix: sequences, results, leases, inboxes and dedupe keys are
    /// handled batch by batch; the queues found are added to `names`.
    async fn scan_keys(&mut self, names: &mut BTreeSet<String>) -> Result<(), QueueError> {
        let prefix = &self.queues.settings().prefix;
        let head = format!("{{{prefix}:");
        let pattern = format!("{}*", glob_escape(&head));
        // SCAN sees one server's keys: on a cluster, every master is scanned.
        for mut conn in self.queues.each_master().await? {
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(BATCH)
                    .query_async(&mut conn)
                    .await?;
                for key in keys {
                    let Some((queue, rest)) =
                        key.strip_prefix(&head).and_then(|k| k.split_once("}:"))
                    else {
                        continue;
                    };
                    let (queue, rest) = (queue.to_owned(), rest.to_owned());
                    self.visit_key(&queue, &rest, &key, names).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    async fn visit_key(
        &mut self,
        queue: &str,
        rest: &str,
        key: &str,
        names: &mut BTreeSet<String>,
    ) -> Result<(), QueueError> {
        match rest.split_once(':').map_or(rest, |(kind, _)| kind) {
            "pending" | "delayed" | "dead" | "expired" | "stats" | "index" => {
                names.insert(queue.to_owned());
            }
            "lane" => {
                names.insert(queue.to_owned());
                self.walk_list(queue, State::Pending, key).await?;
            }
            "seq" => self.walk_list(queue, State::Waiting, key).await?,
            "result" => self.visit_result(queue, key).await?,
            "leased" => self.count_leased(queue, key).await?,
            "inbox" => self.count_inbox(queue, key).await?,
            "unique" if self.needles.matches(rest) => {
                let mut conn = self.queues.conn();
                let id: Option<String> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
                if let Some(id) = id {
                    let place = Place::Str(key);
                    self.apply(queue, State::Unique, place, &id, &Verdict::Remove)
                        .await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A LIST of items (`pending`, a lane) or of sequence entries (`<due> <item>` after the
    /// head id); fetch tokens (`~...`) are skipped.
    async fn walk_list(&mut self, queue: &str, state: State, key: &str) -> Result<(), QueueError> {
        let mut conn = self.queues.conn();
        let mut start = 0usize;
        loop {
            let entries: Vec<String> = redis::cmd("LRANGE")
                .arg(key)
                .arg(start)
                .arg(start + BATCH - 1)
                .query_async(&mut conn)
                .await?;
            let mut removed = 0;
            for entry in entries.iter().filter(|e| !is_token(e)) {
                let (due, item) = match state {
                    State::Waiting => match entry.split_once(' ') {
                        Some((due, item)) if due.parse::<u64>().is_ok() => (Some(due), item),
                        _ => continue, // the head: a bare id
                    },
                    _ => (None, entry.as_str()),
                };
                let verdict = match (self.decide(item)?, due) {
                    // A successor is never removed: its sequence's `waiting` count holds it.
                    (Verdict::Remove, Some(_)) => self.anonymised(item)?,
                    (verdict, _) => verdict,
                };
                let verdict = match (verdict, due) {
                    (Verdict::Rewrite(new), Some(due)) => Verdict::Rewrite(format!("{due} {new}")),
                    (verdict, _) => verdict,
                };
                if self
                    .apply(queue, state, Place::List(key), entry, &verdict)
                    .await?
                {
                    removed += 1;
                }
            }
            if entries.len() < BATCH {
                return Ok(());
            }
            // A removal moved the items behind it one place towards the head.
            start += BATCH - removed;
        }
    }

    /// One page of `ZSCAN`/`HSCAN` over `key` from `cursor`: the next cursor and the flat
    /// member/score or field/value list.
    async fn scan_page(
        &self,
        command: &str,
        key: &str,
        cursor: u64,
    ) -> Result<(u64, Vec<String>), QueueError> {
        let mut conn = self.queues.conn();
        Ok(redis::cmd(command)
            .arg(key)
            .arg(cursor)
            .arg("COUNT")
            .arg(BATCH)
            .query_async(&mut conn)
            .await?)
    }

    async fn walk_delayed(&mut self, queue: &str, key: &str) -> Result<(), QueueError> {
        let mut cursor = 0u64;
        loop {
            let (next, flat) = self.scan_page("ZSCAN", key, cursor).await?;
            for item in flat.iter().step_by(2) {
                let verdict = self.decide(item)?;
                self.apply(queue, State::Delayed, Place::Zset(key), item, &verdict)
                    .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn walk_hash(
        &mut self,
        queue: &str,
        state: State,
        key: &str,
        index: &str,
    ) -> Result<(), QueueError> {
        let mut cursor = 0u64;
        loop {
            let (next, flat) = self.scan_page("HSCAN", key, cursor).await?;
            for pair in flat.chunks(2) {
                let [field, item] = pair else { continue };
                let verdict = self.decide(item)?;
                let place = Place::Hash { key, index, field };
                self.apply(queue, state, place, item, &verdict).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// A completed job's recorded result (JSON): anonymised like arguments.
    async fn visit_result(&mut self, queue: &str, key: &str) -> Result<(), QueueError> {
        let mut conn = self.queues.conn();
        let value: Option<String> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
        let Some(value) = value else { return Ok(()) };
        let plain = open_result(self.queues, key, &value)?;
        if let Some(clean) = self.needles.scrub_json(&plain) {
            let verdict = Verdict::Rewrite(seal_result(self.queues, key, clean));
            let place = Place::Str(key);
            self.apply(queue, State::Completed, place, &value, &verdict)
                .await?;
        }
        Ok(())
    }

    async fn count_leased(&mut self, queue: &str, key: &str) -> Result<(), QueueError> {
        let mut cursor = 0u64;
        loop {
            let (next, flat) = self.scan_page("HSCAN", key, cursor).await?;
            for item in flat.iter().skip(1).step_by(2) {
                self.count_running(queue, item)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn count_inbox(&mut self, queue: &str, key: &str) -> Result<(), QueueError> {
        let mut conn = self.queues.conn();
        let items: Vec<String> = redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(BATCH - 1)
            .query_async(&mut conn)
            .await?;
        for item in items.iter().filter(|i| !is_token(i)) {
            self.count_running(queue, item)?;
        }
        Ok(())
    }

    /// The queue's `index` (HASH id -> item): copies of waiting jobs, judged like the items
    /// themselves and swapped by id (`unordered`: see [`Eraser::run`]).
    async fn walk_index(
        &mut self,
        queue: &str,
        key: &str,
        unordered: &str,
    ) -> Result<(), QueueError> {
        let mut cursor = 0u64;
        loop {
            let (next, flat) = self.scan_page("HSCAN", key, cursor).await?;
            for pair in flat.chunks(2) {
                let [field, item] = pair else { continue };
                if self.dry_run && self.counted.contains(field) {
                    continue;
                }
                let verdict = self.decide(item)?;
                let place = Place::Hash {
                    key,
                    index: unordered,
                    field,
                };
                self.apply(queue, State::Index, place, item, &verdict)
                    .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    fn count_running(&mut self, queue: &str, item: &str) -> Result<(), QueueError> {
        if !matches!(self.decide(item)?, Verdict::Keep) {
            self.entry(queue, State::Running).running += 1;
        }
        Ok(())
    }

    /// Whether `item` is the person's, and what becomes of it.
    fn decide(&self, item: &str) -> Result<Verdict, QueueError> {
        let Ok((_, env)) = job::decode(item) else {
            // Not a job envelope: judged (and cleaned) as text.
            return Ok(self
                .needles
                .scrub(item)
                .map_or(Verdict::Keep, Verdict::Rewrite));
        };
        let plain = open_args(self.queues, &env)?;
        let in_args = self.needles.matches(&plain);
        let err = open_error(self.queues, &env)?;
        let elsewhere = [err.as_deref(), env.unique.as_deref(), env.sq.as_deref()]
            .into_iter()
            .flatten()
            .any(|text| self.needles.matches(text));
        if !in_args && !elsewhere {
            return Ok(Verdict::Keep);
        }
        if in_args && env.sq.is_none() && DELETED_KINDS.contains(&env.kind.as_str()) {
            return Ok(Verdict::Remove);
        }
        self.anonymised(item)
    }

    /// `item` with the person taken out of its arguments, error and dedupe key.
    fn anonymised(&self, item: &str) -> Result<Verdict, QueueError> {
        let (id, mut env) = job::decode(item)?;
        let plain = open_args(self.queues, &env)?;
        if let Some(clean) = self.needles.scrub_json(&plain) {
            env.args = seal_args(self.queues, &env, clean)?;
        }
        let scrub = |text: Option<String>| text.map(|t| self.needles.scrub(&t).unwrap_or(t));
        let err = scrub(open_error(self.queues, &env)?);
        env.err = err.map(|e| self.queues.seal_error(&env.kind, e));
        env.unique = scrub(env.unique.take());
        Ok(Verdict::Rewrite(job::encode(id, &env)))
    }

    /// Swap (or count, in a dry run) and record the outcome; true when an item was removed
    /// from Redis.
    async fn apply(
        &mut self,
        queue: &str,
        state: State,
        place: Place<'_>,
        old: &str,
        verdict: &Verdict,
    ) -> Result<bool, QueueError> {
        let new = match verdict {
            Verdict::Keep => return Ok(false),
            Verdict::Rewrite(new) => Some(new.as_str()),
            Verdict::Remove => None,
        };
        if self.dry_run
            && matches!(place, Place::List(_) | Place::Zset(_))
            && let Some(id) = item_id(state, old)
        {
            self.counted.insert(id.to_owned());
        }
        // Fault points: dying before the swap leaves the item as it was (a rerun finds it
        // again); after it, the item is clean and a rerun no longer matches it.
        let done = self.dry_run || self.queues.swap_item(place, old, new).await?;
        let counts = self.entry(queue, state);
        match (done, new) {
            (false, _) => counts.skipped += 1,
            (true, Some(_)) => counts.anonymised += 1,
            (true, None) => counts.deleted += 1,
        }
        Ok(done && new.is_none() && !self.dry_run)
    }

    fn entry(&mut self, queue: &str, state: State) -> &mut Counts {
        self.report.entry((queue.to_owned(), state)).or_default()
    }
}

/// Whether a list element is a fetch token (`~<ms>`) rather than an item.
fn is_token(element: &str) -> bool {
    element.starts_with('~')
}

/// The job id of a list or set element: `<id> <envelope>`, or `<due> <id> <envelope>` in
/// a sequence list.
fn item_id(state: State, element: &str) -> Option<&str> {
    let item = match state {
        State::Waiting => element.split_once(' ')?.1,
        _ => element,
    };
    Some(item.split_once(' ')?.0)
}

/// `s` with the SCAN glob specials escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
