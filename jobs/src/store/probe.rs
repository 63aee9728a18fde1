//! Probes of the database itself, for benchmarks: how many single-row autocommit inserts it
//! takes into a scratch table, and the server's own status counters. Nothing here touches
//! the domain's tables.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::{Dialect, Op, RowExt, Store, StoreError, now_ms};

/// Inserts per second into a new scratch table `table` (dropped afterwards), one row and one
/// commit per statement, from `concurrency` tasks on `store`'s pool for `span`.
pub async fn insert_ceiling(
    store: &Store,
    table: &str,
    concurrency: usize,
    span: Duration,
) -> Result<f64, StoreError> {
    const OP: &str = "probe.insert_ceiling";
    let key = store.dialect().pick(
        "BIGINT AUTO_INCREMENT PRIMARY KEY",
        "INTEGER PRIMARY KEY AUTOINCREMENT",
    );
    let create =
        format!("CREATE TABLE {table} (id {key}, n BIGINT NOT NULL, at_ms BIGINT NOT NULL)");
    sqlx::query(&create).execute(store.pool()).await.op(OP)?;
    let result = insert_for(store, table, concurrency, span).await;
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(store.pool())
        .await
        .op(OP)?;
    result
}

async fn insert_for(
    store: &Store,
    table: &str,
    concurrency: usize,
    span: Duration,
) -> Result<f64, StoreError> {
    const OP: &str = "probe.insert_ceiling";
    let sql: Arc<str> = format!("INSERT INTO {table} (n, at_ms) VALUES (?, ?)").into();
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (store, sql, done) = (store.clone(), Arc::clone(&sql), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < span {
                let n = done.fetch_add(1, Ordering::Relaxed);
                sqlx::query(&sql)
                    .bind(n as i64)
                    .bind(now_ms())
                    .execute(store.pool())
                    .await?;
            }
            Ok::<_, sqlx::Error>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| StoreError::Config(format!("an inserting task failed: {e}")))?
            .op(OP)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let row = sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .op(OP)?;
    let count: i64 = sqlx::Row::try_get(&row, 0).op(OP)?;
    Ok(count as f64 / seconds)
}

/// The server's global status counters named in `names` (`MariaDB`/`MySQL`), by lowercase
/// name; empty for `SQLite`, which keeps none.
pub async fn server_counters(
    store: &Store,
    names: &[&str],
) -> Result<BTreeMap<String, u64>, StoreError> {
    const OP: &str = "probe.server_counters";
    if store.dialect() != Dialect::MySql || names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let sql = format!(
        "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN ({})",
        vec!["?"; names.len()].join(", ")
    );
    let mut query = sqlx::query(&sql);
    for n in names {
        query = query.bind(n.to_uppercase());
    }
    let rows = query.fetch_all(store.pool()).await.op(OP)?;
    let mut out = BTreeMap::new();
    for row in rows {
        let name = row.text(0).op(OP)?.to_lowercase();
        let value = row.text(1).op(OP)?.parse::<u64>().unwrap_or(0);
        out.insert(name, value);
    }
    Ok(out)
}
