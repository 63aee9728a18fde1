//! Browsing what a queue holds, and purging what waits, for operators (dashboard, JSON API,
//! CLI): the jobs waiting to run, the delayed ones and the recently completed, page by page,
//! filtered by kind and tenant.
//!
//! Orders shown:
//! * pending: the `high` lanes, then plain `pending` (no tenant, normal priority), then the
//!   tenants' `normal` lanes, then the `low` lanes; within a priority, tenants by name; within
//!   a list, the next to run first. Fetch interleaves these lists (by weight between
//!   priorities, round robin between tenants), so this is who heads each list, not the exact
//!   order jobs will start in. A partitioned queue is listed partition by partition.
//! * delayed: soonest due first, merged over partitions.
//! * completed: newest first, merged over partitions; kind and tenant come from `done`
//!   (a completed job's item is gone by design).
//!
//! What must stay true: one call reads at most [`READ_LIMIT`] elements, in commands of at
//! most [`CHUNK`], so browsing a huge queue never stalls Redis. A filter that matches rarely
//! can therefore answer a short page with [`BrowsePage::partial`] set: the limit was reached
//! before the page filled. Lanes are found through their rings and the `blocked` and
//! `throttled` sets (a non-empty lane's tenant is always in one of them), never by `SCAN`.
//!
//! Purge walks each partition's `index` hash with `HSCAN` and withdraws the matching ids with
//! the `purge` script, at most [`PURGE_CHUNK`] per call; jobs enqueued while it runs may or
//! may not be purged.

mod purge;
mod read;

use serde::{Deserialize, Serialize};

use super::{
    QueueError, Queues,
    inspect::{JobState, JobView},
    job,
};

/// Most jobs one page shows.
pub const MAX_PAGE: usize = 200;
/// Most elements (items, ids, tenants) one browse call reads from Redis.
pub const READ_LIMIT: usize = 10_000;
/// Most elements one command reads.
const CHUNK: usize = 500;
/// Most ids per call of the `purge` script (its contract), and per `HSCAN` round.
pub const PURGE_CHUNK: usize = 500;

/// Which jobs to browse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrowseState {
    /// Ready to run, waiting for a worker.
    #[default]
    Pending,
    /// Waiting for their time (scheduled, or a retry after backoff).
    Delayed,
    /// Finished successfully, while the completed window remembers them.
    Completed,
}

impl BrowseState {
    /// Every state, in the order the dashboard's tabs show them.
    pub const ALL: [Self; 3] = [Self::Pending, Self::Delayed, Self::Completed];

    /// The lowercase name, as in URLs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delayed => "delayed",
            Self::Completed => "completed",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// One page of a queue's jobs: which, filtered how, from where.
#[derive(Debug, Clone, Default)]
pub struct BrowseQuery {
    pub state: BrowseState,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Only jobs of this tenant.
    pub tenant: Option<String>,
    /// Matching jobs to skip.
    pub offset: usize,
    /// Most jobs to show; capped at [`MAX_PAGE`], at least 1.
    pub limit: usize,
}

/// Which waiting jobs a purge withdraws: those matching every filter given (all without).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeFilter {
    pub kind: Option<String>,
    pub tenant: Option<String>,
}

impl PurgeFilter {
    fn matches(&self, kind: &str, tenant: Option<&str>) -> bool {
        let kind_ok = given(self.kind.as_ref()).is_none_or(|k| k == kind);
        kind_ok && given(self.tenant.as_ref()).is_none_or(|t| Some(t) == tenant)
    }

    fn tenant(&self) -> Option<&str> {
        given(self.tenant.as_ref())
    }
}

/// A filter's value when it is given: blank means no filter.
fn given(value: Option<&String>) -> Option<&str> {
    value.map(String::as_str).filter(|s| !s.is_empty())
}

/// What the filter selects, for people and the audit trail: `every waiting job`, `kind K`,
/// `tenant T` or `kind K, tenant T`.
impl std::fmt::Display for PurgeFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (given(self.kind.as_ref()), given(self.tenant.as_ref())) {
            (None, None) => f.write_str("every waiting job"),
            (Some(k), None) => write!(f, "kind {k}"),
            (None, Some(t)) => write!(f, "tenant {t}"),
            (Some(k), Some(t)) => write!(f, "kind {k}, tenant {t}"),
        }
    }
}

/// A job as listed: its view (with the tenant and priority it is served by; a completed
/// job's priority is gone with its item).
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub job: JobView,
}

/// One page of jobs.
#[derive(Debug, Clone, Serialize)]
pub struct BrowsePage {
    pub jobs: Vec<Listed>,
    /// More matching jobs follow this page.
    pub has_more: bool,
    /// The read limit ([`READ_LIMIT`]) was reached before the page was complete: matching
    /// jobs further back are not shown (narrow the filter, or page less deep).
    pub partial: bool,
}

/// A match found while reading, with the score it sorts by across partitions.
struct Hit {
    score: f64,
    listed: Listed,
}

/// One call's progress: what it looks for, how much it may still read, what it found.
struct Reader<'a> {
    filter: &'a PurgeFilter,
    queue: &'a str,
    /// Matches wanted: the offset, the page and one more (to know whether more follow).
    want: usize,
    /// Elements this call may still read.
    budget: usize,
    partial: bool,
    hits: Vec<Hit>,
}

impl Reader<'_> {
    fn full(&self) -> bool {
        self.hits.len() >= self.want
    }

    /// How many elements the next command may read; marks the page partial at the limit.
    fn next_chunk(&mut self, wanted: usize) -> usize {
        let n = CHUNK.min(self.budget).min(wanted.max(1));
        if n == 0 {
            self.partial = true;
        }
        n
    }
}

impl Queues {
    /// One page of `queue`'s jobs in state `q.state` matching `q`'s filters (see the module
    /// doc for the order), every partition.
    pub async fn browse(&self, queue: &str, q: &BrowseQuery) -> Result<BrowsePage, QueueError> {
        let limit = q.limit.clamp(1, MAX_PAGE);
        let filter = PurgeFilter {
            kind: q.kind.clone().filter(|s| !s.is_empty()),
            tenant: q.tenant.clone().filter(|s| !s.is_empty()),
        };
        let parts = self.partition_names(queue);
        // Unfiltered, one sorted set: start at the offset instead of reading up to it.
        let direct = parts.len() == 1 && filter == PurgeFilter::default();
        let skip = if direct && q.state != BrowseState::Pending {
            q.offset
        } else {
            0
        };
        let mut r = Reader {
            filter: &filter,
            queue,
            want: q.offset - skip + limit + 1,
            budget: READ_LIMIT,
            partial: false,
            hits: Vec::new(),
        };
        for part in &parts {
            let k = self.keys(part)?;
            match q.state {
                BrowseState::Pending => self.read_pending(&k, &mut r).await?,
                BrowseState::Delayed => self.read_delayed(&k, skip, &mut r).await?,
                BrowseState::Completed => self.read_completed(&k, skip, &mut r).await?,
            }
        }
        let mut hits = r.hits;
        match q.state {
            BrowseState::Pending => {}
            BrowseState::Delayed => hits.sort_by(|a, b| a.score.total_cmp(&b.score)),
            BrowseState::Completed => hits.sort_by(|a, b| b.score.total_cmp(&a.score)),
        }
        let start = q.offset - skip;
        let has_more = hits.len() > start + limit;
        let jobs = hits
            .into_iter()
            .skip(start)
            .take(limit)
            .map(|h| h.listed)
            .collect();
        Ok(BrowsePage {
            jobs,
            has_more,
            partial: r.partial,
        })
    }

    /// The listing of a waiting `item` when it matches the reader's filter. An item that
    /// does not decode is shown (with why) only when nothing filters.
    fn listed(&self, r: &Reader<'_>, state: JobState, item: &str) -> Option<Listed> {
        let (id, env) = match job::decode(item) {
            Ok(decoded) => decoded,
            Err(e) => {
                if *r.filter != PurgeFilter::default() {
                    return None;
                }
                let id = item.split(' ').next().unwrap_or_default();
                let mut job = JobView::empty(r.queue, id, state);
                job.error = Some(e.to_string());
                return Some(Listed { job });
            }
        };
        if !r.filter.matches(&env.kind, env.tn.as_deref()) {
            return None;
        }
        Some(Listed {
            job: JobView::from_item(self, r.queue, id, state, item),
        })
    }
}

/// The listing of completed job `id` (`done` holds `"<kind> <tenant>"`), when it matches.
fn completed(r: &Reader<'_>, id: &str, finished: f64, done: Option<&str>) -> Option<Listed> {
    let (kind, tenant) = match done.map(|d| d.split_once(' ').unwrap_or((d, ""))) {
        Some((kind, tenant)) => (Some(kind), Some(tenant).filter(|t| !t.is_empty())),
        None => (None, None),
    };
    let filtered = *r.filter != PurgeFilter::default();
    if filtered && !kind.is_some_and(|k| r.filter.matches(k, tenant)) {
        return None;
    }
    let mut job = JobView::empty(r.queue, id, JobState::Completed);
    job.kind = kind.map(str::to_owned);
    job.tenant = tenant.map(str::to_owned);
    job.finished_at_ms = Some(finished as u64);
    Some(Listed { job })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(kind: Option<&str>, tenant: Option<&str>) -> PurgeFilter {
        PurgeFilter {
            kind: kind.map(str::to_owned),
            tenant: tenant.map(str::to_owned),
        }
    }

    #[test]
    fn filters_match_every_value_given_and_blank_means_any() {
        let any = filter(None, Some(""));
        assert!(any.matches("a", None) && any.matches("b", Some("t1")));
        let kind = filter(Some("a"), None);
        assert!(kind.matches("a", Some("t1")) && !kind.matches("b", None));
        let tenant = filter(None, Some("t1"));
        assert!(tenant.matches("b", Some("t1")));
        assert!(!tenant.matches("b", None) && !tenant.matches("b", Some("t2")));
        let both = filter(Some("a"), Some("t1"));
        assert!(both.matches("a", Some("t1")) && !both.matches("a", Some("t2")));
        assert_eq!(any.to_string(), "every waiting job");
        assert_eq!(both.to_string(), "kind a, tenant t1");
        assert_eq!(tenant.to_string(), "tenant t1");
    }

    #[test]
    fn states_round_trip_their_names() {
        for s in BrowseState::ALL {
            assert_eq!(BrowseState::parse(s.as_str()), Some(s));
        }
        assert_eq!(BrowseState::parse("dead"), None);
    }
}
