//! Replacing or removing one exact item where it sits, for `switchboard erase`: a
//! compare-and-swap in Lua (`lua/swap.lua`), so an item a worker took (or the promoter moved)
//! since it was read is left alone and reported as skipped, and a kept item keeps its
//! position in its list, its score in its sorted set and its TTL. Nothing else changes:
//! `stats` counters stay as they were, and a removal from `pending`, `delayed` or a dead or
//! expired hash (with its index) changes only the lengths the stats are read from.

use super::{QueueError, Queues, scripts};

/// Where an item sits. Every key belongs to one queue (one hash tag).
#[derive(Debug, Clone, Copy)]
pub enum Place<'a> {
    /// A LIST: `pending` or a sequence `seq:<key>` (whose successors are `<due> <item>`).
    List(&'a str),
    /// A ZSET: `delayed`.
    Zset(&'a str),
    /// A HASH `key` (`dead`, `expired`) with its ordering ZSET `index` (`dead_at`,
    /// `expired_at`), at `field` (the job id).
    Hash {
        key: &'a str,
        index: &'a str,
        field: &'a str,
    },
    /// A STRING: a completed job's `result:<id>`.
    Str(&'a str),
}

impl Queues {
    /// Put `new` in place of `old` at `place`, or remove `old` when `new` is `None`; false
    /// when `old` is no longer there.
    pub async fn swap_item(
        &self,
        place: Place<'_>,
        old: &str,
        new: Option<&str>,
    ) -> Result<bool, QueueError> {
        let (kind, key, index, field) = match place {
            Place::List(key) => ("list", key, key, ""),
            Place::Zset(key) => ("zset", key, key, ""),
            Place::Hash { key, index, field } => ("hash", key, index, field),
            Place::Str(key) => ("string", key, key, ""),
        };
        let mut conn = self.conn();
        let swapped: i64 = scripts::SWAP
            .key(key)
            .key(index)
            .arg(kind)
            .arg(old)
            .arg(new.unwrap_or(""))
            .arg(field)
            .invoke_async(&mut conn)
            .await?;
        Ok(swapped == 1)
    }
}
