//! `switchboard bench e2e` on `MariaDB` and on `SQLite`, small: 50 deliveries of every kind
//! through the binary's own ingest and fleet into a fresh database; its one JSON line must
//! account for every event as stored, none dead, one call row per call, one usage row and one
//! billing job per ended call, and carry the database's insert ceiling.

mod common;
#[macro_use]
#[path = "common/world.rs"]
mod world;

use common::Harness;
use world::Db;

on_both_databases!(fifty_deliveries_of_every_kind_are_all_stored);

const MIX: &str = "call_started,call_ended,call_analyzed,booking_created,invoice_paid";

fn url_of(db: &Db) -> String {
    match db {
        Db::Sqlite(dir) => format!("sqlite://{}/switchboard.db?mode=rwc", dir.path().display()),
        Db::MariaDb { admin_url, name } => format!("{admin_url}/{name}"),
    }
}

async fn fifty_deliveries_of_every_kind_are_all_stored(dialect: &str) {
    let (store, db) = world::database(dialect).await;
    store.pool().close().await;
    let h = Harness::new().await;
    let out = h
        .command()
        .args([
            "bench",
            "e2e",
            "--events",
            "50",
            "--mix",
            MIX,
            "--ceiling-secs",
            "0.3",
        ])
        .args(["--database-url", &url_of(&db)])
        .output()
        .expect("running switchboard bench e2e");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench e2e failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let [line] = lines.as_slice() else {
        panic!("one JSON line, not {stdout}")
    };
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["bench"], "e2e", "{v}");
    assert_eq!(v["events"], 50, "{v}");
    assert_eq!(
        v["stored"], 50,
        "every event processed in webhook_events: {v}"
    );
    assert_eq!(v["dead"], 0, "{v}");
    assert_eq!(v["mix"], MIX, "{v}");
    // Ten rounds of five kinds: ten calls, each ended once.
    assert_eq!(
        (v["calls"].as_u64(), v["calls_expected"].as_u64()),
        (Some(10), Some(10)),
        "{v}"
    );
    assert_eq!(v["usage_rows"], 10, "one usage row per ended call: {v}");
    assert_eq!(v["billing_jobs"], 10, "one billing job per ended call: {v}");
    assert!(v["seconds"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["events_per_sec"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["ceiling_inserts_per_sec"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["ceiling_concurrency"], 32, "{v}");
    let database = if dialect == "sqlite" {
        "sqlite"
    } else {
        "mysql"
    };
    assert_eq!(v["database"], database, "{v}");
    // The server's counters are profiled where it keeps them.
    assert_eq!(v["profile"].is_object(), dialect != "sqlite", "{v}");
}
