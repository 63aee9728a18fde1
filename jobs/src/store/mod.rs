//! The database, through sqlx: MariaDB/MySQL in production, `SQLite` as the embedded default.
//!
//! One repository module per table holds all SQL for that table; values are always bound,
//! never spliced into SQL. Where the dialects differ (upserts), a repository carries both
//! statements side by side and [`Dialect`] picks one.

pub mod appointment_reminders;
pub mod appointments;
mod batch;
pub mod call_events;
pub mod calls;
pub mod companies;
pub mod customers;
pub mod erasure;
pub mod invoices;
pub mod notifications;
pub mod probe;
pub mod usage_events;
pub mod webhook_events;

use std::time::Duration;

use sqlx::{
    AnyPool,
    any::{AnyPoolOptions, install_default_drivers},
    migrate::Migrator,
};

static MYSQL_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/mysql");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

/// Which SQL dialect the pool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    MySql,
    Sqlite,
}

impl Dialect {
    /// The dialect of a sqlx URL.
    pub fn of(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            Ok(Self::MySql)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else {
            Err(StoreError::Config(format!(
                "database.url must start with mysql:// or sqlite:, not {:?}",
                scheme(url)
            )))
        }
    }

    /// Pick the statement for this dialect.
    pub const fn pick(self, mysql: &'static str, sqlite: &'static str) -> &'static str {
        match self {
            Self::MySql => mysql,
            Self::Sqlite => sqlite,
        }
    }
}

fn scheme(url: &str) -> &str {
    url.split_once(':').map_or(url, |(s, _)| s)
}

/// Database failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached, refused a statement or gave a row that does not
    /// decode, in the repository operation `op` (`<module>.<function>`, e.g. `calls.upsert`).
    #[error("database: {op}: {source}")]
    Db {
        op: &'static str,
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
}

/// Delete up to `limit` rows of `table` whose `column` (ms) is before `cutoff_ms`; returns
/// how many went. `table` and `column` are this crate's constants, never input.
pub(crate) async fn delete_older(
    store: &Store,
    table: &'static str,
    column: &'static str,
    cutoff_ms: i64,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let sql = match store.dialect() {
        Dialect::MySql => format!("DELETE FROM {table} WHERE {column} < ? LIMIT ?"),
        Dialect::Sqlite => format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {column} < ? LIMIT ?)"
        ),
    };
    let done = sqlx::query(&sql)
        .bind(cutoff_ms)
        .bind(limit)
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected())
}

/// Counter: failed database calls (unreachable, refused statements, rows that do not decode),
/// all counted where they become a [`StoreError`].
pub const DATABASE_ERRORS: &str = "switchboard_database_errors_total";

impl StoreError {
    /// The failure of `op`, counted in [`DATABASE_ERRORS`]: every database error becomes a
    /// `StoreError` here and nowhere else, so the counter sees each one once.
    fn db(op: &'static str, source: sqlx::Error) -> Self {
        metrics::counter!(DATABASE_ERRORS).increment(1);
        Self::Db { op, source }
    }
}

/// Naming the repository operation a sqlx result belongs to: `.op("calls.upsert")?` turns
/// its error into a [`StoreError::Db`] that says which statement failed.
pub(crate) trait Op<T> {
    fn op(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> Op<T> for Result<T, sqlx::Error> {
    fn op(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::db(op, source))
    }
}

/// A pool and its dialect, and the writer that groups concurrent handlers' call events
/// into shared transactions ([`call_events`]). Cheap to clone: clones share both.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// Started on first use, so a store that never records a call event runs no task.
    writer: std::sync::Arc<std::sync::OnceLock<call_events::Writer>>,
}

impl Store {
    /// Connect to `url` with the dialect's default pool size ([`default_connections`]).
    /// A `SQLite` file's directory is created when missing.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_sized(url, default_connections(Dialect::of(url)?)).await
    }

    /// Connect to `url` with a pool of up to `max_connections`.
    pub async fn connect_sized(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        install_default_drivers();
        let dialect = Dialect::of(url)?;
        if dialect == Dialect::Sqlite
            && let Some(dir) = sqlite_dir(url)
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Config(format!("creating {dir}: {e}")))?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // Concurrent writers wait for each other instead of failing at once.
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .op("store.connect")?;
        Ok(Self {
            pool,
            dialect,
            writer: std::sync::Arc::default(),
        })
    }

    /// Apply the migrations of this dialect.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrator().run(&self.pool).await?;
        Ok(())
    }

    /// The migrations of this build not applied to the database yet (`<version>_<name>`),
    /// oldest first; all of them on a database never migrated.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        // A database never migrated has no bookkeeping table: everything is pending.
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
        Ok(self
            .migrator()
            .iter()
            .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
            .map(|m| format!("{}_{}", m.version, m.description.replace(' ', "_")))
            .collect())
    }

    fn migrator(&self) -> &'static Migrator {
        match self.dialect {
            Dialect::MySql => &MYSQL_MIGRATIONS,
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
        }
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The same pool and dialect without the writer (for the writer's own tasks, which must
    /// not keep it alive).
    fn bare(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            dialect: self.dialect,
            writer: std::sync::Arc::default(),
        }
    }

    /// The shared writer of call events (started on first use, on the current runtime).
    pub(crate) fn writer(&self) -> &call_events::Writer {
        self.writer.get_or_init(|| call_events::Writer::start(self))
    }
}

/// The pool size of [`Store::connect`]: `SQLite` takes one writer at a time, so a few
/// connections serve it; a server takes many statements at once.
pub fn default_connections(dialect: Dialect) -> u32 {
    match dialect {
        Dialect::Sqlite => 4,
        Dialect::MySql => 16,
    }
}

/// The directory of a `sqlite://path/file.db?...` URL, if it has one.
fn sqlite_dir(url: &str) -> Option<&str> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    path.rsplit_once('/')
        .map(|(dir, _)| dir)
        .filter(|d| !d.is_empty())
}

/// Reading text columns the same way on both dialects: through the Any driver, `MariaDB`
/// reports `TEXT` columns as blobs, so text is read as a string or as UTF-8 bytes.
pub(crate) trait RowExt {
    /// A non-null text column.
    fn text(&self, index: usize) -> Result<String, sqlx::Error>;
    /// A nullable text column.
    fn opt_text(&self, index: usize) -> Result<Option<String>, sqlx::Error>;
}

impl RowExt for sqlx::any::AnyRow {
    fn text(&self, index: usize) -> Result<String, sqlx::Error> {
        self.opt_text(index)?
            .ok_or_else(|| sqlx::Error::ColumnDecode {
                index: index.to_string(),
                source: "unexpected NULL in a text column".into(),
            })
    }

    fn opt_text(&self, index: usize) -> Result<Option<String>, sqlx::Error> {
        use sqlx::Row;
        match self.try_get::<Option<String>, _>(index) {
            Ok(v) => Ok(v),
            Err(_) => self
                .try_get::<Option<Vec<u8>>, _>(index)?
                .map(String::from_utf8)
                .transpose()
                .map_err(|e| sqlx::Error::ColumnDecode {
                    index: index.to_string(),
                    source: Box::new(e),
                }),
        }
    }
}

/// `n` rows of `width` placeholders each, `(?, ?), (?, ?)`, for a multi-row `VALUES`.
pub(crate) fn placeholders(n: usize, width: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    vec![row; n].join(", ")
}

/// Now in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_and_sqlite_dirs() {
        assert_eq!(
            Dialect::of("mysql://root@localhost/test").unwrap(),
            Dialect::MySql
        );
        assert_eq!(
            Dialect::of("sqlite://var/x.db?mode=rwc").unwrap(),
            Dialect::Sqlite
        );
        assert!(Dialect::of("postgres://x").is_err());
        assert_eq!(
            sqlite_dir("sqlite://var/switchboard.db?mode=rwc"),
            Some("var")
        );
        assert_eq!(sqlite_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_dir("sqlite://x.db"), None);
    }
}

#[cfg(test)]
mod metric_tests {
    use super::*;

    #[test]
    fn a_failed_statement_counts_as_a_database_error_naming_its_operation() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/db.sqlite?mode=rwc", dir.path().display());
                let store = Store::connect(&url).await.unwrap();
                // Not migrated: the table is missing.
                let e = webhook_events::get(&store, "stripe", "evt_1")
                    .await
                    .unwrap_err();
                // The error names the operation whose statement failed.
                assert!(
                    matches!(
                        &e,
                        StoreError::Db {
                            op: "webhook_events.get",
                            ..
                        }
                    ),
                    "{e:?}"
                );
                assert!(
                    e.to_string().starts_with("database: webhook_events.get: "),
                    "{e}"
                );
                store.pool().close().await;
            });
        });
        let text = handle.render();
        assert!(
            text.lines().any(|l| l == format!("{DATABASE_ERRORS} 1")),
            "{text}"
        );
    }
}
