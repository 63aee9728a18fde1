//! The episode rules of [`plan`], step by step, without Redis or a clock.

use super::*;

const COOLDOWN: u64 = 60_000;

fn dests() -> Vec<String> {
    vec!["webhook".into(), "email ops@example.com".into()]
}

/// One check at `t` seconds with `wait`, every owed notice delivered.
fn check(w: &mut Watch, t: u64, wait: f64) -> Vec<Kind> {
    let p = plan(w, wait, 10, t * 1000, COOLDOWN, &dests());
    for (d, kind) in &p.owed {
        if *kind == Kind::LongWait {
            w.told.insert(d.clone());
        } else {
            w.told.remove(d);
        }
    }
    p.owed.iter().map(|(_, k)| *k).collect()
}

#[test]
fn one_notice_when_over_none_while_over_one_when_back() {
    let mut w = Watch::default();
    assert!(check(&mut w, 1_000, 3.0).is_empty());
    assert_eq!(check(&mut w, 1_001, 11.0), [Kind::LongWait, Kind::LongWait]);
    for t in 1_002..1_010 {
        assert!(check(&mut w, t, 20.0).is_empty(), "still over at {t}");
    }
    assert!(
        (w.peak_secs - 20.0).abs() < f64::EPSILON,
        "the longest wait is kept"
    );
    assert_eq!(
        check(&mut w, 1_010, 0.0),
        [Kind::Recovered, Kind::Recovered]
    );
    assert!(check(&mut w, 1_011, 0.0).is_empty());
    assert!(w.told.is_empty() && w.over_since_ms.is_none());
}

#[test]
fn a_new_episode_inside_the_cooldown_is_told_only_if_it_outlasts_it() {
    let mut w = Watch::default();
    check(&mut w, 1_000, 11.0);
    check(&mut w, 1_005, 1.0);
    // Over again 10 s after the notice: inside the 60 s cooldown, nothing.
    let p = plan(&mut w, 12.0, 10, 1_010_000, COOLDOWN, &dests());
    assert_eq!(p.crossed, Some(Kind::LongWait));
    assert!(p.owed.is_empty() && !w.announced);
    let (kind, note) = p.event(&w, &[], COOLDOWN).unwrap();
    assert_eq!(kind, Kind::LongWait);
    assert!(
        note.unwrap()
            .contains("within the cooldown of the last notice; told at"),
        "the event says why nobody was told"
    );
    // Back under inside the cooldown: nobody was told, nobody is told it ended.
    let p = plan(&mut w, 0.0, 10, 1_020_000, COOLDOWN, &dests());
    assert!(p.owed.is_empty());
    assert!(
        p.event(&w, &[], COOLDOWN)
            .unwrap()
            .1
            .unwrap()
            .contains("nobody was told")
    );
    // Over again and still over when the cooldown ends: told then, once.
    assert!(check(&mut w, 1_030, 12.0).is_empty());
    assert!(check(&mut w, 1_059, 12.0).is_empty());
    let p = plan(&mut w, 12.0, 10, 1_060_000, COOLDOWN, &dests());
    assert!(p.announced_now && p.crossed.is_none());
    assert_eq!(
        p.event(&w, &["webhook".into()], COOLDOWN),
        Some((
            Kind::LongWait,
            Some("still over when the cooldown ended: told now".into())
        ))
    );
}

#[test]
fn a_failed_destination_is_owed_until_it_is_reached_and_only_it() {
    let mut w = Watch::default();
    let p = plan(&mut w, 11.0, 10, 1_000_000, COOLDOWN, &dests());
    assert_eq!(p.owed.len(), 2);
    // Only the webhook got through.
    w.told.insert("webhook".into());
    let p = plan(&mut w, 11.0, 10, 1_001_000, COOLDOWN, &dests());
    assert_eq!(p.owed, [("email ops@example.com".into(), Kind::LongWait)]);
    // Recovered while the email never got through: only the webhook hears of it.
    let p = plan(&mut w, 0.0, 10, 1_002_000, COOLDOWN, &dests());
    assert_eq!(p.owed, [("webhook".into(), Kind::Recovered)]);
}

#[test]
fn an_unsent_recovery_is_not_owed_while_the_queue_is_over_again() {
    let mut w = Watch::default();
    check(&mut w, 1_000, 11.0);
    // Back under, but the recovery notices fail: both still believe the queue is over.
    let p = plan(&mut w, 0.0, 10, 1_001_000, COOLDOWN, &dests());
    assert_eq!(p.owed.len(), 2);
    // Over again (inside the cooldown): they are right, nothing is owed either way.
    let p = plan(&mut w, 11.0, 10, 1_002_000, COOLDOWN, &dests());
    assert!(p.owed.is_empty());
    // Under for good: now the recovery goes out, once.
    assert_eq!(check(&mut w, 1_003, 0.0).len(), 2);
    assert!(check(&mut w, 1_004, 0.0).is_empty());
}

#[test]
fn destinations_taken_out_of_the_configuration_are_forgotten() {
    let mut w = Watch::default();
    check(&mut w, 1_000, 11.0);
    let only_webhook = vec!["webhook".to_owned()];
    let p = plan(&mut w, 0.0, 10, 1_001_000, COOLDOWN, &only_webhook);
    assert_eq!(p.owed, [("webhook".into(), Kind::Recovered)]);
    assert_eq!(w.told.len(), 1);
}

#[test]
fn a_wait_at_the_threshold_is_not_over_it() {
    let mut w = Watch::default();
    assert!(check(&mut w, 1_000, 10.0).is_empty());
    assert!(w.over_since_ms.is_none());
}
