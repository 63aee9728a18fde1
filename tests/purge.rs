//! Purge by tenant against a real Redis and a real fleet: it removes exactly that tenant's
//! pending and delayed jobs, none of them ever runs, and every other job still does.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use common::Harness;
use switchboard::{
    fleet::Observer,
    queue::{browse::PurgeFilter, job::Job},
};
use switchboard_jobs::{EnqueueOptions, noop::Noop};

const QUEUE: &str = "purge";
const SECS: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_tenant_removes_exactly_that_tenants_jobs() {
    const PER_TENANT: usize = 300;
    const DELAYED: usize = 20;
    let h = Harness::new().await;
    let options = |id: String| EnqueueOptions::default().on_queue(QUEUE).with_id(id);
    // Interleaved, so the purged tenant's jobs sit among the others'.
    for i in 0..PER_TENANT {
        for tenant in ["a", "b"] {
            let o = options(format!("{tenant}-{i}")).tenant(tenant);
            h.queues.enqueue(&Noop::default(), o).await.unwrap();
        }
        let o = options(format!("none-{i}"));
        h.queues.enqueue(&Noop::default(), o).await.unwrap();
    }
    // Delayed jobs of both tenants, and a witness due after them: once it ran, b's delayed
    // jobs would have been due too.
    let at = SystemTime::now() + Duration::from_millis(300);
    for i in 0..DELAYED {
        for tenant in ["a", "b"] {
            let o = options(format!("{tenant}-later-{i}"))
                .tenant(tenant)
                .run_at(at);
            h.queues.enqueue(&Noop::default(), o).await.unwrap();
        }
    }
    let witness = options("witness".into()).run_at(at + Duration::from_millis(200));
    h.queues.enqueue(&Noop::default(), witness).await.unwrap();

    let filter = PurgeFilter {
        kind: None,
        tenant: Some("b".into()),
    };
    let purged = h.queues.purge(QUEUE, &filter).await.unwrap();
    assert_eq!(
        purged,
        (PER_TENANT + DELAYED) as u64,
        "b's pending and delayed jobs"
    );
    let s = h.stats(QUEUE).await;
    assert_eq!(
        (s.pending, s.delayed),
        (2 * PER_TENANT as u64, DELAYED as u64 + 1)
    );

    let runs = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let sink = Arc::clone(&runs);
    let observer: Observer = Arc::new(move |job: &Job| {
        *sink.lock().unwrap().entry(job.id.to_string()).or_default() += 1;
    });
    let promoter = h.start_promoter(QUEUE);
    let fleet = h
        .fleet(
            &h.fleet_settings(QUEUE, 32, 32, 3),
            switchboard_jobs::registry(),
            Some(observer),
        )
        .await;
    let left = 2 * PER_TENANT + DELAYED + 1;
    h.wait_for("the witness and every job not purged", SECS, || {
        let runs = runs.lock().unwrap();
        let done = runs.contains_key("witness") && runs.len() >= left;
        async move { done }
    })
    .await;
    let queues = h.queues.clone();
    h.wait_for("nothing pending or running", SECS, || {
        let queues = queues.clone();
        async move {
            queues
                .stats(QUEUE)
                .await
                .is_ok_and(|s| s.pending == 0 && s.running == 0 && s.delayed == 0)
        }
    })
    .await;
    fleet.stop().await;
    promoter.cancel();

    let runs = runs.lock().unwrap();
    let of_b: Vec<&String> = runs.keys().filter(|id| id.starts_with("b-")).collect();
    assert!(of_b.is_empty(), "purged jobs ran: {of_b:?}");
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "jobs ran twice: {twice:?}");
    for i in 0..PER_TENANT {
        for id in [format!("a-{i}"), format!("none-{i}")] {
            assert!(runs.contains_key(&id), "{id} never ran");
        }
    }
    for i in 0..DELAYED {
        assert!(
            runs.contains_key(&format!("a-later-{i}")),
            "a-later-{i} never ran"
        );
    }
    assert_eq!(runs.len(), left);
}
