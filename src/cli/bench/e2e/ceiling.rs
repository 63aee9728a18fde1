//! The database's own ceiling for `bench e2e`: single-row autocommit inserts into a scratch
//! table, from [`CONCURRENCY`] connections at once for a while, each one statement and one
//! commit — what the database takes when nothing else is asked of it. The connections are
//! set up as the store sets up its own (`SQLite`: WAL, busy timeout), and the table is dropped
//! afterwards.

use std::time::Duration;

use anyhow::Context;
use switchboard_jobs::store::{Store, probe};

/// Inserting connections.
pub const CONCURRENCY: u32 = 32;

/// Inserts per second into a scratch table named after run `tag`, for `secs` seconds.
pub async fn measure(url: &str, tag: &str, secs: f64) -> anyhow::Result<f64> {
    let store = Store::connect_sized(url, CONCURRENCY)
        .await
        .context("connecting for the insert ceiling")?;
    let table = format!("bench_ceiling_{tag}");
    let span = Duration::from_secs_f64(secs.max(0.1));
    let result = probe::insert_ceiling(&store, &table, CONCURRENCY as usize, span).await;
    store.pool().close().await;
    Ok(result?)
}
