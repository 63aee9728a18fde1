//! Reading the lists and sorted sets a page comes from, chunk by chunk within the call's
//! read budget (see the parent module for the orders and the budget).

use std::collections::BTreeSet;

use super::{Hit, Reader, completed};
use crate::queue::{QueueError, Queues, inspect::JobState, keys::QueueKeys};

impl Queues {
    /// The ready lists of one partition in the order the module doc gives; with a tenant
    /// filter, only that tenant's lanes (plain `pending` holds no tenant's jobs).
    pub(super) async fn read_pending(
        &self,
        k: &QueueKeys,
        r: &mut Reader<'_>,
    ) -> Result<(), QueueError> {
        for prio in ["high", "normal", "low"] {
            if prio == "normal" && r.filter.tenant().is_none() {
                self.read_list(&k.pending, r).await?;
            }
            for tenant in self.lane_tenants(k, prio, r).await? {
                if prio == "normal" && tenant == "_" {
                    continue; // the plain `pending` list, read above
                }
                self.read_list(&k.lane(prio, &tenant), r).await?;
            }
        }
        Ok(())
    }

    /// The tenants with a lane at `prio`, by name: the filter's one, or those in the ring,
    /// `blocked` and `throttled` (where a tenant at its limit waits outside the ring).
    async fn lane_tenants(
        &self,
        k: &QueueKeys,
        prio: &str,
        r: &mut Reader<'_>,
    ) -> Result<BTreeSet<String>, QueueError> {
        if let Some(t) = r.filter.tenant() {
            return Ok(BTreeSet::from([t.to_owned()]));
        }
        if r.full() {
            return Ok(BTreeSet::new());
        }
        let n = r.budget.max(1) as i64 - 1;
        let (ring, blocked, throttled): (Vec<String>, Vec<String>, Vec<String>) = redis::pipe()
            .lrange(k.ring(prio), 0, n as isize)
            .cmd("SRANDMEMBER")
            .arg(&k.blocked)
            .arg(n + 1)
            .zrange(&k.throttled, 0, n as isize)
            .query_async(&mut self.conn())
            .await?;
        r.budget = r
            .budget
            .saturating_sub(ring.len() + blocked.len() + throttled.len());
        let at_prio = |m: String| {
            m.split_once(' ')
                .filter(|(p, _)| *p == prio)
                .map(|(_, t)| t.to_owned())
        };
        let mut tenants: BTreeSet<String> = ring.into_iter().collect();
        tenants.extend(blocked.into_iter().chain(throttled).filter_map(at_prio));
        Ok(tenants)
    }

    /// Read `key` (a LIST served from the right) from its right end, skipping lane tokens.
    pub(super) async fn read_list(&self, key: &str, r: &mut Reader<'_>) -> Result<(), QueueError> {
        let mut read = 0usize;
        while !r.full() {
            let n = r.next_chunk(usize::MAX);
            if n == 0 {
                return Ok(());
            }
            let items: Vec<String> = redis::cmd("LRANGE")
                .arg(key)
                .arg(-((read + n) as i64))
                .arg(-((read + 1) as i64))
                .query_async(&mut self.conn())
                .await?;
            r.budget -= items.len().min(r.budget);
            let withdrawn = self.withdrawn(key, &items).await?;
            for item in items.iter().rev().filter(|i| !i.starts_with('~')) {
                if r.full() {
                    break;
                }
                if withdrawn
                    .iter()
                    .any(|id| item.split(' ').next() == Some(id.as_str()))
                {
                    continue;
                }
                if let Some(listed) = self.listed(r, JobState::Pending, item) {
                    r.hits.push(Hit { score: 0.0, listed });
                }
            }
            if items.len() < n {
                return Ok(());
            }
            read += n;
        }
        Ok(())
    }

    /// The ids among `items` (read from list `key`) that were cancelled or purged while
    /// they waited: they sit in the list until fetch drops them, and are not shown.
    async fn withdrawn(&self, key: &str, items: &[String]) -> Result<Vec<String>, QueueError> {
        let Some(end) = key.find("}:") else {
            return Ok(Vec::new());
        };
        let tomb = format!("{}tomb", &key[..end + 2]);
        let ids: Vec<&str> = items
            .iter()
            .filter(|i| !i.starts_with('~'))
            .filter_map(|i| i.split(' ').next())
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marked: Vec<bool> = redis::cmd("SMISMEMBER")
            .arg(&tomb)
            .arg(&ids)
            .query_async(&mut self.conn())
            .await?;
        Ok(ids
            .into_iter()
            .zip(marked)
            .filter(|&(_, m)| m)
            .map(|(id, _)| id.to_owned())
            .collect())
    }

    /// Read `delayed` soonest first, from rank `skip`.
    pub(super) async fn read_delayed(
        &self,
        k: &QueueKeys,
        skip: usize,
        r: &mut Reader<'_>,
    ) -> Result<(), QueueError> {
        let mut read = skip;
        let mine = r.hits.len();
        while r.hits.len() - mine < r.want {
            let n = r.next_chunk(r.want);
            if n == 0 {
                return Ok(());
            }
            let rows: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(&k.delayed)
                .arg(read)
                .arg(read + n - 1)
                .arg("WITHSCORES")
                .query_async(&mut self.conn())
                .await?;
            r.budget -= rows.len().min(r.budget);
            for (item, due) in &rows {
                if r.hits.len() - mine >= r.want {
                    break;
                }
                if let Some(mut listed) = self.listed(r, JobState::Delayed, item) {
                    listed.job.run_at_ms = Some(*due as u64);
                    r.hits.push(Hit {
                        score: *due,
                        listed,
                    });
                }
            }
            if rows.len() < n {
                return Ok(());
            }
            read += n;
        }
        Ok(())
    }

    /// Read `completed` newest first, from rank `skip`, with kind and tenant from `done`.
    pub(super) async fn read_completed(
        &self,
        k: &QueueKeys,
        skip: usize,
        r: &mut Reader<'_>,
    ) -> Result<(), QueueError> {
        let mut read = skip;
        let mine = r.hits.len();
        while r.hits.len() - mine < r.want {
            let n = r.next_chunk(r.want);
            if n == 0 {
                return Ok(());
            }
            let rows: Vec<String> = redis::cmd("LRANGE")
                .arg(&k.done)
                .arg(read)
                .arg(read + n - 1)
                .query_async(&mut self.conn())
                .await?;
            if rows.is_empty() {
                return Ok(());
            }
            r.budget -= rows.len().min(r.budget);
            for row in &rows {
                if r.hits.len() - mine >= r.want {
                    break;
                }
                // "<id> <finish ms> <kind> <tenant>"
                let mut parts = row.splitn(3, ' ');
                let (Some(id), Some(ms), what) = (parts.next(), parts.next(), parts.next()) else {
                    continue;
                };
                let finished = ms.parse::<f64>().unwrap_or(0.0);
                if let Some(listed) = completed(r, id, finished, what) {
                    r.hits.push(Hit {
                        score: finished,
                        listed,
                    });
                }
            }
            if rows.len() < n {
                return Ok(());
            }
            read += n;
        }
        Ok(())
    }
}
