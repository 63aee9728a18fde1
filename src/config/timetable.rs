//! When a schedule fires: a cron expression (with seconds) read in an IANA time zone.
//!
//! Daylight-saving changes follow what cron users expect (the classic cron rule):
//! * A schedule whose hour field is a wildcard (`*`, `*/2`) runs on real time: in the hour
//!   that repeats in autumn it fires in both passes, and the hour skipped in spring simply has
//!   no ticks (nothing is owed for an hour that did not exist).
//! * A schedule at fixed hours runs on the wall clock: a wall time that occurs twice fires at
//!   its first occurrence only, and a wall time that does not exist (the spring gap) fires once,
//!   at the first instant after the gap (02:30 becomes 03:00 on that day).

use std::str::FromStr;

use chrono::{DateTime, Duration as Span, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use cron::Schedule;

/// A parsed cron expression in its zone.
#[derive(Debug, Clone)]
pub struct Timetable {
    schedule: Schedule,
    tz: Tz,
    /// True for fixed hours (wall-clock rules at DST changes), false for a wildcard hour field.
    wall_clock: bool,
}

/// More than any zone's daylight-saving shift (the largest in use is 2 h).
const MAX_SHIFT: Span = Span::hours(3);
/// Wall times examined per search at most (an expression matching only skipped wall times
/// must not loop forever).
const MAX_CANDIDATES: usize = 1_000_000;

impl Timetable {
    /// Parse `expr` (6 or 7 fields: sec min hour day-of-month month day-of-week [year]) in
    /// the IANA zone `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<Self, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if !(6..=7).contains(&fields.len()) {
            return Err(format!(
                "cron {expr:?} needs 6 or 7 fields (seconds first: \"sec min hour day month weekday [year]\"), found {}",
                fields.len()
            ));
        }
        let schedule = Schedule::from_str(expr).map_err(|e| format!("cron {expr:?}: {e}"))?;
        let tz =
            Tz::from_str(tz).map_err(|_| format!("timezone {tz:?} is not an IANA zone name"))?;
        Ok(Self {
            schedule,
            tz,
            wall_clock: !fields[2].starts_with('*'),
        })
    }

    /// The zone the expression is read in.
    pub fn zone(&self) -> Tz {
        self.tz
    }

    /// The first fire time strictly after `t`.
    ///
    /// Wall times come from the expression read on a plain (zone-less) clock; each maps to
    /// zero, one or two instants by the rules above, and the earliest instant after `t` wins.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Near a change, a wall time before `t`'s own can still come after `t` (the second
        // pass of a repeated hour), so the search starts earlier there.
        let near_change = self.offset_secs(t - MAX_SHIFT) != self.offset_secs(t + MAX_SHIFT);
        let from = self.wall(t) - if near_change { MAX_SHIFT } else { Span::zero() };
        let mut best: Option<DateTime<Utc>> = None;
        let walls = self.schedule.after(&Utc.from_utc_datetime(&from));
        for wall in walls.take(MAX_CANDIDATES).map(|w| w.naive_utc()) {
            if best.is_some_and(|b| wall > self.wall(b) + MAX_SHIFT) {
                break; // no later wall time can map before `best`
            }
            for instant in self.instants(wall) {
                if instant > t && best.is_none_or(|b| instant < b) {
                    best = Some(instant);
                }
            }
        }
        best
    }

    /// The instants a wall time fires at.
    fn instants(&self, wall: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(x) => vec![x.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, _) if self.wall_clock => vec![first.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, second) => {
                vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
            }
            LocalResult::None if self.wall_clock => {
                // Some time after the gap, then back to the instant the clocks jumped.
                self.tz
                    .from_local_datetime(&(wall + MAX_SHIFT))
                    .earliest()
                    .map(|later| {
                        let later = later.with_timezone(&Utc);
                        self.change_between(later - MAX_SHIFT - MAX_SHIFT, later)
                    })
                    .into_iter()
                    .collect()
            }
            LocalResult::None => Vec::new(),
        }
    }

    /// `t` on the zone's wall clock.
    fn wall(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.with_timezone(&self.tz).naive_local()
    }

    /// Fire times in `(after, until]`, at most `limit` of them.
    pub fn between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut cursor = after;
        while out.len() < limit {
            match self.next_after(cursor) {
                Some(t) if t <= until => {
                    out.push(t);
                    cursor = t;
                }
                _ => break,
            }
        }
        out
    }

    /// The next `n` fire times after `t`.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = t;
        while out.len() < n {
            let Some(next) = self.next_after(cursor) else {
                break;
            };
            out.push(next);
            cursor = next;
        }
        out
    }

    /// The first whole second in `(lo, hi]` with an offset other than `lo`'s (binary search).
    fn change_between(&self, lo: DateTime<Utc>, hi: DateTime<Utc>) -> DateTime<Utc> {
        let before = self.offset_secs(lo);
        let at = |secs: i64| Utc.timestamp_opt(secs, 0).single().unwrap_or(hi);
        let (mut lo, mut hi) = (lo.timestamp(), hi.timestamp());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.offset_secs(at(mid)) == before {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        at(hi)
    }

    fn offset_secs(&self, t: DateTime<Utc>) -> i64 {
        i64::from(
            self.tz
                .offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fires(expr: &str, from: &str, to: &str) -> Vec<String> {
        Timetable::parse(expr, "Europe/Berlin")
            .unwrap()
            .between(utc(from), utc(to), 1000)
            .iter()
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect()
    }

    #[test]
    fn daily_wall_time_in_the_spring_gap_fires_once_when_clocks_jump() {
        // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 does not exist.
        assert_eq!(
            fires(
                "0 30 2 * * *",
                "2026-03-27T12:00:00Z",
                "2026-03-31T12:00:00Z"
            ),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // the jump: 03:00 CEST
                "2026-03-30T00:30:00Z", // 02:30 CEST
                "2026-03-31T00:30:00Z",
            ]
        );
    }

    #[test]
    fn daily_wall_time_in_the_autumn_repeat_fires_once() {
        // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:30 happens twice.
        assert_eq!(
            fires(
                "0 30 2 * * *",
                "2026-10-23T12:00:00Z",
                "2026-10-27T12:00:00Z"
            ),
            [
                "2026-10-24T00:30:00Z", // 02:30 CEST
                "2026-10-25T00:30:00Z", // first 02:30 (CEST) only
                "2026-10-26T01:30:00Z", // 02:30 CET
                "2026-10-27T01:30:00Z",
            ]
        );
    }

    #[test]
    fn fixed_hours_outside_the_change_keep_their_wall_time() {
        assert_eq!(
            fires(
                "0 0 9 * * *",
                "2026-03-28T00:00:00Z",
                "2026-03-30T00:00:00Z"
            ),
            ["2026-03-28T08:00:00Z", "2026-03-29T07:00:00Z"]
        );
        assert_eq!(
            fires(
                "0 0 9 * * *",
                "2026-10-24T00:00:00Z",
                "2026-10-26T00:00:00Z"
            ),
            ["2026-10-24T07:00:00Z", "2026-10-25T08:00:00Z"]
        );
    }

    #[test]
    fn interval_schedules_run_on_real_time_across_both_changes() {
        // Every 30 minutes: the repeated autumn hour gets its ticks twice, the skipped spring
        // hour has none, and the spacing in real time stays 30 minutes throughout.
        assert_eq!(
            fires(
                "0 */30 * * * *",
                "2026-10-24T23:45:00Z",
                "2026-10-25T02:00:00Z"
            ),
            [
                "2026-10-25T00:00:00Z", // 02:00 CEST
                "2026-10-25T00:30:00Z", // 02:30 CEST
                "2026-10-25T01:00:00Z", // 02:00 CET
                "2026-10-25T01:30:00Z", // 02:30 CET
                "2026-10-25T02:00:00Z", // 03:00 CET
            ]
        );
        assert_eq!(
            fires(
                "0 */30 * * * *",
                "2026-03-29T00:15:00Z",
                "2026-03-29T02:00:00Z"
            ),
            [
                "2026-03-29T00:30:00Z", // 01:30 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST
                "2026-03-29T01:30:00Z",
                "2026-03-29T02:00:00Z",
            ]
        );
    }

    #[test]
    fn every_hour_in_the_skipped_hour_fires_once_at_the_jump() {
        // Fixed hour 2, every 15 minutes: all four wall times are skipped; one fire at 03:00.
        assert_eq!(
            fires(
                "0 */15 2 * * *",
                "2026-03-28T23:00:00Z",
                "2026-03-29T23:00:00Z"
            ),
            ["2026-03-29T01:00:00Z"]
        );
    }

    #[test]
    fn hourly_fires_25_times_on_the_long_day_and_23_on_the_short_one() {
        let count = |from: &str, to: &str| fires("0 0 * * * *", from, to).len();
        // Local midnight to midnight (exclusive of the first, inclusive of the last).
        assert_eq!(count("2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z"), 25);
        assert_eq!(count("2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"), 23);
        assert_eq!(count("2026-03-27T23:00:00Z", "2026-03-28T23:00:00Z"), 24);
    }

    #[test]
    fn upcoming_lists_the_next_fires_in_order() {
        let t = Timetable::parse("*/20 * * * * *", "Europe/Berlin").unwrap();
        let next = t.upcoming(utc("2026-10-25T00:59:50Z"), 3);
        assert_eq!(
            next,
            [
                utc("2026-10-25T01:00:00Z"),
                utc("2026-10-25T01:00:20Z"),
                utc("2026-10-25T01:00:40Z")
            ]
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_named() {
        assert!(
            Timetable::parse("*/5 * * * *", "UTC")
                .unwrap_err()
                .contains("6 or 7 fields")
        );
        assert!(
            Timetable::parse("0 0 25 * * *", "UTC")
                .unwrap_err()
                .contains("cron")
        );
        assert!(
            Timetable::parse("0 0 * * * *", "Mars/Olympus")
                .unwrap_err()
                .contains("IANA")
        );
    }
}
