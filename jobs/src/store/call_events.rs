//! Call events: everything one Retell event writes — its `webhook_events` row, the caller in
//! `customers`, the merged `calls` row, the call's `usage_events` row once it ended — and,
//! when its follow-ups are enqueued, how it ended. Two paths write the same rows:
//!
//! - the single path ([`record_one`], [`finish_one`]): one autocommit statement per row, as
//!   each repository writes it;
//! - the batch path ([`record`], [`finish`]): concurrent handlers' events and finishes meet in
//!   the store's [`Writer`], which writes whatever is waiting in one transaction of a few
//!   multi-row statements (one business lookup, one insert or upsert per table) and one
//!   commit. Rows of one key (a call, a caller, an event) are applied in the order their
//!   events arrived, as the single path applies them one after another; rows are otherwise
//!   sorted by key, so concurrent batches lock in the same order.
//!
//! What must stay true: both paths leave the same rows for the same events in the same order
//! (`tests/batch_rows.rs` checks it over random orders with duplicates); a batch is all or
//! nothing, and when it fails each of its items is written again alone on the single path,
//! so one bad event fails only itself; the business is read in the batch's own transaction,
//! never from a cache, so a number moved to another business counts from the next batch on.

use std::{collections::HashMap, sync::Arc};

use super::{
    Dialect, Store, StoreError,
    batch::{Batcher, Flush},
    calls::{self, Call},
    companies,
    customers::{self, Caller},
    usage_events,
    webhook_events::{self, EventRow, Finished},
};

/// What one Retell event writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEvent {
    /// Its `webhook_events` row.
    pub event: EventRow,
    /// The called number, which finds the business.
    pub to_number: String,
    /// The caller's number, name and email, when the call has a caller number.
    pub caller: Option<(String, Option<String>, Option<String>)>,
    /// The call as the event knows it; company, branch and customer are filled in here.
    pub call: Call,
    /// The call's billable seconds, recorded once, for an ended call.
    pub usage_seconds: Option<i64>,
}

/// What [`record`] found and wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The call's rows are written.
    Stored {
        company_id: i64,
        branch_id: i64,
        customer_id: Option<i64>,
    },
    /// No business owns the called number: only the event's row was written.
    UnknownNumber,
}

/// Write `event` on the batch path; see the module doc.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db call_events.record", otel.kind = "client", db.operation.name = "call_events.record"))]
pub async fn record(store: &Store, event: CallEvent) -> Result<Recorded, StoreError> {
    match store
        .writer()
        .batcher
        .submit(Item::Record(Box::new(event)))
        .await
    {
        Some(Ok(Outcome::Recorded(r))) => Ok(r),
        Some(Err(e)) => Err(e),
        Some(Ok(Outcome::Finished)) | None => Err(writer_gone()),
    }
}

/// Write how an event ended on the batch path.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db call_events.finish", otel.kind = "client", db.operation.name = "call_events.finish"))]
pub async fn finish(store: &Store, done: Finished) -> Result<(), StoreError> {
    match store.writer().batcher.submit(Item::Finish(done)).await {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e),
        None => Err(writer_gone()),
    }
}

/// Write `events` and `finishes` together as one batch (one transaction), as the store's
/// writer writes whatever is waiting; what each event found, in order. No fallback: an error
/// is the batch's.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db call_events.write_together", otel.kind = "client", db.operation.name = "call_events.write_together"))]
pub async fn write_together(
    store: &Store,
    events: Vec<CallEvent>,
    finishes: Vec<Finished>,
) -> Result<Vec<Recorded>, StoreError> {
    let items: Vec<Item> = finishes
        .into_iter()
        .map(Item::Finish)
        .chain(events.into_iter().map(|e| Item::Record(Box::new(e))))
        .collect();
    let outcomes = write_batch(store, &items).await?;
    Ok(outcomes
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Recorded(r) => Some(r),
            Outcome::Finished => None,
        })
        .collect())
}

fn writer_gone() -> StoreError {
    StoreError::db("call_events.writer", sqlx::Error::WorkerCrashed)
}

/// Write `e` on the single path: one autocommit statement per row.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db call_events.record_one", otel.kind = "client", db.operation.name = "call_events.record_one"))]
pub async fn record_one(store: &Store, e: &CallEvent) -> Result<Recorded, StoreError> {
    let row = &e.event;
    webhook_events::begin(
        store,
        &row.provider,
        &row.event_id,
        &row.event_type,
        row.received_at_ms,
    )
    .await?;
    let Some(business) = companies::by_phone_number(store, &e.to_number).await? else {
        return Ok(Recorded::UnknownNumber);
    };
    let company_id = business.company.id;
    let customer_id = match &e.caller {
        Some((phone, name, email)) => Some(
            customers::upsert(store, company_id, phone, name.as_deref(), email.as_deref()).await?,
        ),
        None => None,
    };
    let call = Call {
        company_id,
        branch_id: business.branch_id,
        customer_id,
        ..e.call.clone()
    };
    calls::upsert(store, &call).await?;
    if let Some(seconds) = e.usage_seconds {
        usage_events::record(store, &call.call_id, company_id, seconds).await?;
    }
    Ok(Recorded::Stored {
        company_id,
        branch_id: business.branch_id,
        customer_id,
    })
}

/// Write how an event ended on the single path.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db call_events.finish_one", otel.kind = "client", db.operation.name = "call_events.finish_one"))]
pub async fn finish_one(store: &Store, f: &Finished) -> Result<(), StoreError> {
    webhook_events::finish(
        store,
        &f.event.provider,
        &f.event.event_id,
        f.status,
        f.error.as_deref(),
    )
    .await
}

/// One item for the writer.
#[derive(Debug)]
enum Item {
    /// Boxed: an event is several times the size of a finish.
    Record(Box<CallEvent>),
    Finish(Finished),
}

/// The answer to one item.
#[derive(Debug)]
enum Outcome {
    Recorded(Recorded),
    Finished,
}

/// The store's writer of call events: a [`Batcher`] whose flush is [`write_batch`].
pub(crate) struct Writer {
    batcher: Batcher<Item, Result<Outcome, StoreError>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("call_events::Writer")
    }
}

/// Flushers and items per batch: a server commits several transactions at once; `SQLite`
/// one writer at a time, so one flusher takes bigger batches.
fn shape(dialect: Dialect) -> (usize, usize) {
    match dialect {
        Dialect::MySql => (4, 64),
        Dialect::Sqlite => (1, 128),
    }
}

impl Writer {
    /// Start the flushers over `store` (the tasks hold only its pool).
    pub(crate) fn start(store: &Store) -> Self {
        let (flushers, max) = shape(store.dialect());
        let store = store.bare();
        let flush: Flush<Item, Result<Outcome, StoreError>> = Arc::new(move |items| {
            let store = store.clone();
            Box::pin(async move { flush(&store, &items).await })
        });
        Self {
            batcher: Batcher::start(flushers, max, &flush),
        }
    }
}

/// Write `items` as one batch; when that fails, each alone on the single path.
async fn flush(store: &Store, items: &[Item]) -> Vec<Result<Outcome, StoreError>> {
    let error = match write_batch(store, items).await {
        Ok(out) => return out.into_iter().map(Ok).collect(),
        Err(e) if items.len() == 1 => return vec![Err(e)],
        Err(e) => e,
    };
    tracing::warn!(error = %error, items = items.len(), "a batch of call events failed: writing each alone");
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(match item {
            Item::Record(e) => record_one(store, e).await.map(Outcome::Recorded),
            Item::Finish(f) => finish_one(store, f).await.map(|()| Outcome::Finished),
        });
    }
    out
}

/// Every item of the batch in one transaction; the outcomes in the items' order.
async fn write_batch(store: &Store, items: &[Item]) -> Result<Vec<Outcome>, StoreError> {
    const OP: &str = "call_events.write_batch";
    let dialect = store.dialect();
    let records: Vec<&CallEvent> = items
        .iter()
        .filter_map(|i| match i {
            Item::Record(e) => Some(&**e),
            Item::Finish(_) => None,
        })
        .collect();
    let mut tx = store
        .pool()
        .begin()
        .await
        .map_err(|e| StoreError::db(OP, e))?;
    // A write first: `SQLite` then takes its write lock at once (waiting its busy timeout),
    // rather than failing to upgrade a read when another writer came between.
    let mut begun: Vec<&EventRow> = records.iter().map(|e| &e.event).collect();
    begun.sort_by(|a, b| (&a.provider, &a.event_id).cmp(&(&b.provider, &b.event_id)));
    webhook_events::begin_many(&mut tx, dialect, &begun).await?;
    let mut numbers: Vec<&str> = records.iter().map(|e| e.to_number.as_str()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    let owners = companies::ids_by_phone_numbers(&mut tx, &numbers).await?;
    let found: Vec<(&CallEvent, (i64, i64))> = records
        .iter()
        .filter_map(|e| owners.get(&e.to_number).map(|&ids| (*e, ids)))
        .collect();
    let customer_ids = write_callers(&mut tx, dialect, &found).await?;
    let recorded = |e: &CallEvent| match owners.get(&e.to_number) {
        Some(&(company_id, branch_id)) => Recorded::Stored {
            company_id,
            branch_id,
            customer_id: e
                .caller
                .as_ref()
                .and_then(|(phone, _, _)| customer_ids.get(&(company_id, phone.clone())).copied()),
        },
        None => Recorded::UnknownNumber,
    };
    write_calls(&mut tx, dialect, &found, &recorded).await?;
    let mut done: Vec<&Finished> = items
        .iter()
        .filter_map(|i| match i {
            Item::Finish(f) => Some(f),
            Item::Record(_) => None,
        })
        .collect();
    done.sort_by(|a, b| {
        (&a.event.provider, &a.event.event_id).cmp(&(&b.event.provider, &b.event.event_id))
    });
    webhook_events::finish_many(&mut tx, dialect, &done).await?;
    tx.commit().await.map_err(|e| StoreError::db(OP, e))?;
    Ok(items
        .iter()
        .map(|i| match i {
            Item::Record(e) => Outcome::Recorded(recorded(e)),
            Item::Finish(_) => Outcome::Finished,
        })
        .collect())
}

/// The callers of the found events, sorted by company and phone (in arrival order within
/// one caller); their ids.
async fn write_callers(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
    found: &[(&CallEvent, (i64, i64))],
) -> Result<HashMap<(i64, String), i64>, StoreError> {
    let mut callers: Vec<Caller> = found
        .iter()
        .filter_map(|(e, (company_id, _))| {
            e.caller.as_ref().map(|(phone, name, email)| Caller {
                company_id: *company_id,
                phone: phone.clone(),
                name: name.clone(),
                email: email.clone(),
            })
        })
        .collect();
    callers.sort_by(|a, b| (a.company_id, &a.phone).cmp(&(b.company_id, &b.phone)));
    let refs: Vec<&Caller> = callers.iter().collect();
    customers::upsert_many(conn, dialect, &refs).await
}

/// The calls and usage of the found events, sorted by call (in arrival order within one
/// call), each under what `recorded` says it was stored under.
async fn write_calls(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
    found: &[(&CallEvent, (i64, i64))],
    recorded: &impl Fn(&CallEvent) -> Recorded,
) -> Result<(), StoreError> {
    let mut rows: Vec<Call> = found
        .iter()
        .filter_map(|(e, _)| match recorded(e) {
            Recorded::Stored {
                company_id,
                branch_id,
                customer_id,
            } => Some(Call {
                company_id,
                branch_id,
                customer_id,
                ..e.call.clone()
            }),
            Recorded::UnknownNumber => None,
        })
        .collect();
    rows.sort_by(|a, b| a.call_id.cmp(&b.call_id));
    let refs: Vec<&Call> = rows.iter().collect();
    calls::upsert_many(conn, dialect, &refs).await?;
    let mut usage: Vec<(&str, i64, i64)> = found
        .iter()
        .filter_map(|(e, (company_id, _))| {
            e.usage_seconds
                .map(|s| (e.call.call_id.as_str(), *company_id, s))
        })
        .collect();
    usage.sort_by(|a, b| a.0.cmp(b.0));
    usage_events::record_many(conn, dialect, &usage).await
}
