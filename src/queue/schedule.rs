//! The scheduler's Redis state, kept in the hash tag of the queue a schedule enqueues on:
//! a state hash per schedule (`last_tick`, `last_fired_ms`, `last_job`) and one claim key
//! per tick. The scheduler service decides which ticks are due; this file is how a tick is
//! claimed and its job pushed, in one script.

use serde_json::value::RawValue;

use super::{
    QueueError, Queues,
    job::{self, Envelope},
    scripts,
};

/// What `schedule list` shows of a schedule's last fire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastFire {
    /// When the last job was enqueued (ms since the epoch).
    pub fired_ms: Option<i64>,
    /// That job's id.
    pub job: Option<String>,
}

/// The job a tick enqueues.
#[derive(Debug, Clone, Copy)]
pub struct TickJob<'a> {
    /// Job kind.
    pub kind: &'a str,
    /// Arguments as JSON text (an object).
    pub args: &'a str,
    /// The kind's priority: a job with one other than normal joins its lane.
    pub priority: switchboard_jobs::Priority,
}

impl Queues {
    /// The newest tick (ms) any instance handled for schedule `name` on `queue`; a schedule
    /// never seen before records `now_ms` as that tick (and the caller sees `now_ms`).
    pub async fn schedule_last_tick(
        &self,
        queue: &str,
        name: &str,
        now_ms: i64,
    ) -> Result<i64, QueueError> {
        let key = self.keys(queue)?.schedule(name);
        let mut conn = self.conn();
        let (_, last): (bool, i64) = redis::pipe()
            .hset_nx(&key, "last_tick", now_ms)
            .hget(&key, "last_tick")
            .query_async(&mut conn)
            .await?;
        Ok(last)
    }

    /// Mark `tick_ms` of schedule `name` handled and, with a `job`, claim the tick and push
    /// the job with id `job_id` in the same step. True when this call enqueued it; false when
    /// another instance had claimed the tick (or no job was asked for).
    #[allow(clippy::too_many_arguments)] // one tick's facts, each a separate script argument
    pub async fn fire_tick(
        &self,
        queue: &str,
        name: &str,
        tick_ms: i64,
        claim_ttl_ms: u64,
        job_id: &str,
        job: Option<TickJob<'_>>,
        now_ms: i64,
    ) -> Result<bool, QueueError> {
        let keys = self.keys(queue)?;
        let item = match job {
            Some(j) => {
                let args = self.seal_args(j.kind, RawValue::from_string(j.args.to_owned())?);
                let envelope = Envelope {
                    pr: Some(j.priority).filter(|p| *p != switchboard_jobs::Priority::Normal),
                    ..Envelope::new(j.kind, 1, args)
                };
                job::encode(job_id, &envelope)
            }
            None => String::new(),
        };
        let mut conn = self.conn();
        let pushed: i64 = scripts::SCHEDULE_FIRE
            .key(keys.schedule(name))
            .key(keys.schedule_claim(name, tick_ms))
            .key(&keys.pending)
            .arg(tick_ms)
            .arg(claim_ttl_ms)
            .arg(item)
            .arg(job_id)
            .arg(now_ms)
            .arg(keys.base())
            .invoke_async(&mut conn)
            .await?;
        Ok(pushed == 1)
    }

    /// Record a fire outside the timetable (`schedule run NAME`).
    pub async fn record_fire(
        &self,
        queue: &str,
        name: &str,
        job_id: &str,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let key = self.keys(queue)?.schedule(name);
        let mut conn = self.conn();
        let () = redis::cmd("HSET")
            .arg(key)
            .arg("last_fired_ms")
            .arg(now_ms)
            .arg("last_job")
            .arg(job_id)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The last fire of schedule `name` on `queue`.
    pub async fn last_fire(&self, queue: &str, name: &str) -> Result<LastFire, QueueError> {
        let key = self.keys(queue)?.schedule(name);
        let mut conn = self.conn();
        let (fired_ms, job): (Option<i64>, Option<String>) = redis::pipe()
            .hget(&key, "last_fired_ms")
            .hget(&key, "last_job")
            .query_async(&mut conn)
            .await?;
        Ok(LastFire { fired_ms, job })
    }

    /// Take or renew (`hold = true`) or give up the lease `<prefix>:leader` for `token`;
    /// true when `token` holds it afterwards.
    pub async fn leader_lease(
        &self,
        token: &str,
        lease_ms: u64,
        hold: bool,
    ) -> Result<bool, QueueError> {
        let key = super::keys::leader_key(&self.settings().prefix);
        let mut conn = self.conn();
        let holds: i64 = scripts::LEADER
            .key(key)
            .arg(token)
            .arg(lease_ms)
            .arg(if hold { "hold" } else { "release" })
            .invoke_async(&mut conn)
            .await?;
        Ok(holds == 1)
    }
}
