//! `calendar.reconcile`: Cal.com is the calendar; this job makes `appointments` agree with
//! it for the next `days` of every branch that books through Cal.com (companies whose
//! subscription ended, `canceled`, are left out).
//!
//! Per branch, one listing of the branch's event type in the window (each Cal.com call takes
//! a slot of the key's fleet-wide rate limit), then for each listed booking:
//! - accepted at Cal.com, unknown here: the appointment is created (the customer found or
//!   created from the first attendee: by phone number, else by email); no notification is
//!   sent, Cal.com itself told the attendee. One carrying `rescheduledFromUid` is a move done
//!   Cal.com's way (a new booking, the old one cancelled) whose webhook was lost: it is linked
//!   to the old appointment, which is marked `rescheduled`, and counted as rescheduled;
//! - accepted, booked here at other times: our start and end are set to Cal.com's;
//! - cancelled or rejected at Cal.com, booked here: ours is cancelled;
//! - anything else is unchanged. That includes a booking active at Cal.com that is cancelled
//!   or rescheduled here (our writes go to Cal.com first, so this is a change still on its way
//!   and not restored; it is logged) and pending bookings (not booked until accepted).
//!
//! Listed bookings of another event type, or outside the window, are ignored (the listing's
//! filters are checked, not trusted). Appointments booked here in the window that Cal.com
//! does not list at all are cancelled.
//! They are read before Cal.com is asked: every booking stored before that read was made at
//! Cal.com before the listing (the calendar jobs and webhooks write Cal.com first), so one
//! missing from the listing is gone there, not too new to be listed.
//! Every write is conditional on the row still being `booked`, so a webhook or calendar job
//! that changes a booking meanwhile wins. Reconciliation writes no event time (`event_at_ms`
//! stays as the last webhook left it, NULL on a row it creates), so any later Cal.com webhook
//! still lands, and a stale one is still judged against the webhook time stored before.
//!
//! A branch that fails (no key, a Cal.com error) is logged and counted as `failed`; the run
//! fails only when every branch it tried failed (Cal.com down). When the rate limit is full,
//! the run stops there and enqueues a continuation for the remaining branches, to run when a
//! slot frees (so a fleet with more branches than the limit allows per minute still gets
//! through them all), or snoozes when it had done nothing yet. Past `budget_secs` it hands
//! the remaining branches to a continuation at once, so no run outlives the job timeout.

use std::{collections::HashSet, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use time::{Duration as Span, OffsetDateTime, format_description::well_known::Rfc3339};

use super::rate_limited::RateLimited;
use crate::{
    EnqueueOptions, JobArgs, JobContext, JobError,
    clients::calcom::{self, Booking, BookingQuery},
    services::Services,
    store::{
        Store, StoreError,
        appointments::{self, Appointment},
        companies::{Branch, Company, calendar_branches},
        customers,
    },
};

const CANCELLED_THERE: &str = "cancelled at Cal.com (found by reconciliation)";
const GONE_THERE: &str = "no longer listed by Cal.com (found by reconciliation)";

/// What reconciliation did, summed over branches.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    created: u64,
    cancelled: u64,
    rescheduled: u64,
    unchanged: u64,
}

impl Counts {
    fn count(&mut self, drift: Drift) {
        match drift {
            Drift::Created => self.created += 1,
            Drift::Cancelled => self.cancelled += 1,
            Drift::Rescheduled => self.rescheduled += 1,
            Drift::Unchanged => self.unchanged += 1,
        }
    }

    fn add(&mut self, o: Self) {
        self.created += o.created;
        self.cancelled += o.cancelled;
        self.rescheduled += o.rescheduled;
        self.unchanged += o.unchanged;
    }
}

/// The compared stretch of time, as instants and as sent to Cal.com.
struct Window {
    from: OffsetDateTime,
    to: OffsetDateTime,
}

impl Window {
    /// Whether an appointment lies in the window as Cal.com's filter reads it: starting at or
    /// after `from` and ending at or before `to`.
    fn holds(&self, a: &Appointment) -> bool {
        self.holds_times(&a.start_at, &a.end_at)
    }

    fn holds_times(&self, start: &str, end: &str) -> bool {
        let at = |t: &str| OffsetDateTime::parse(t.trim(), &Rfc3339).ok();
        matches!((at(start), at(end)), (Some(s), Some(e)) if s >= self.from && e <= self.to)
    }

    fn text(t: OffsetDateTime) -> Result<String, JobError> {
        t.format(&Rfc3339).map_err(JobError::permanent)
    }
}

/// One run's progress through the branches, in id order.
#[derive(Default)]
struct Sweep {
    total: Counts,
    /// Branches reconciled.
    done: u64,
    /// Why each failed branch failed.
    failures: Vec<JobError>,
    /// The last branch tried (done or failed): a continuation starts after it.
    last: Option<i64>,
}

impl Sweep {
    fn result(&self, continued_after: Option<i64>) -> serde_json::Value {
        let mut result = serde_json::json!({
            "branches": self.done,
            "created": self.total.created,
            "cancelled": self.total.cancelled,
            "rescheduled": self.total.rescheduled,
            "unchanged": self.total.unchanged,
            "failed": self.failures.len(),
        });
        if let Some(after) = continued_after {
            result["continued_after_branch"] = after.into();
        }
        result
    }

    /// The run's failure when every branch it tried failed (Cal.com down, say).
    fn all_failed(&self) -> Option<JobError> {
        if self.done > 0 || self.failures.is_empty() {
            return None;
        }
        let permanent = self
            .failures
            .iter()
            .all(|e| matches!(e, JobError::Permanent(_)));
        let reasons: Vec<String> = self.failures.iter().map(ToString::to_string).collect();
        let reason = format!("every branch failed: {}", reasons.join("; "));
        Some(if permanent {
            JobError::Permanent(reason)
        } else {
            JobError::Retry(reason)
        })
    }
}

/// Arguments of `calendar.reconcile`; every field has a default, so `{}` is a whole job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct CalendarReconcile {
    /// How many days ahead of now are compared with Cal.com.
    pub days: u32,
    /// After this many seconds a run starts no further branch and leaves the rest to a
    /// continuation: keep it well below the calendar supervisor's job timeout.
    pub budget_secs: u64,
    /// Set on a continuation (a run cut short by the Cal.com rate limit or its budget): only
    /// branches with a larger id are left to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_branch_id: Option<i64>,
}

impl Default for CalendarReconcile {
    fn default() -> Self {
        Self {
            days: 14,
            budget_secs: 10,
            after_branch_id: None,
        }
    }
}

impl JobArgs for CalendarReconcile {
    const KIND: &'static str = "calendar.reconcile";
    const QUEUE: &'static str = "calendar";
    /// A sweep that repairs drift: bookings and cancellations go first.
    const PRIORITY: crate::Priority = crate::Priority::Low;
}

/// Handler of `calendar.reconcile`.
pub async fn handle(
    services: Arc<Services>,
    args: CalendarReconcile,
    ctx: JobContext,
) -> Result<(), JobError> {
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .map_err(JobError::permanent)?;
    let window = Window {
        from: now,
        to: now + Span::days(i64::from(args.days.max(1))),
    };
    let branches = calendar_branches(&services.store)
        .await
        .map_err(JobError::retry)?;
    let mut sweep = Sweep {
        last: args.after_branch_id,
        ..Sweep::default()
    };
    // Where this run stops early, and how long until the rest may run.
    let mut pause = None;
    let started = std::time::Instant::now();
    let todo = branches
        .iter()
        .filter(|(_, b)| args.after_branch_id.is_none_or(|after| b.id > after));
    for (i, (company, branch)) in todo.enumerate() {
        if i > 0 && started.elapsed() >= Duration::from_secs(args.budget_secs) {
            pause = Some(Duration::ZERO);
            break;
        }
        match reconcile_branch(&services, company, branch, &window).await {
            Ok(counts) => {
                sweep.total.add(counts);
                sweep.done += 1;
            }
            Err(JobError::Snooze(wait)) => {
                pause = Some(wait);
                break;
            }
            Err(e) => {
                tracing::warn!(branch = branch.id, company = company.id, error = %e, "reconciling the branch failed");
                sweep.failures.push(e);
            }
        }
        sweep.last = Some(branch.id);
    }
    let mut continued_after = None;
    if let Some(wait) = pause {
        if sweep.last == args.after_branch_id {
            // Nothing done yet: the whole job waits, without using an attempt.
            return Err(JobError::Snooze(wait));
        }
        let next = CalendarReconcile {
            after_branch_id: sweep.last,
            ..args
        };
        ctx.enqueue(&next, EnqueueOptions::default().run_in(wait))
            .await
            .map_err(JobError::retry)?;
        continued_after = sweep.last;
    } else if let Some(e) = sweep.all_failed() {
        return Err(e);
    }
    let result = sweep.result(continued_after);
    tracing::info!(counts = %result, "calendars reconciled");
    ctx.set_result(result);
    Ok(())
}

async fn reconcile_branch(
    services: &Services,
    company: &Company,
    branch: &Branch,
    window: &Window,
) -> Result<Counts, JobError> {
    let store = &services.store;
    let event_type = branch.calcom_event_type_id.ok_or_else(|| {
        JobError::permanent(format!("branch {} has no Cal.com event type", branch.id))
    })?;
    let (client, limit_name) = services.calendar.client_for(company).ok_or_else(|| {
        JobError::permanent(format!(
            "no Cal.com API key for company {} (set one or CALCOM_API_KEY)",
            company.id
        ))
    })?;
    // Ours before Cal.com's: see the module documentation.
    let ours: Vec<Appointment> =
        appointments::booked_around(store, Some(branch.id), window.from, window.to)
            .await
            .map_err(JobError::retry)?
            .into_iter()
            .filter(|a| window.holds(a))
            .collect();
    let query = BookingQuery {
        event_type_id: Some(event_type),
        after_start: Some(Window::text(window.from)?),
        before_end: Some(Window::text(window.to)?),
        ..BookingQuery::default()
    };
    let cal = RateLimited {
        services,
        limit_name: &limit_name,
    };
    let listed = cal.list_bookings(&client, &query).await?;
    let mut counts = Counts::default();
    // Trust the filters, but check them: a booking of another event type, or outside the
    // window, is not this branch's to import (or to count as listed).
    let (mut listed, foreign): (Vec<Booking>, Vec<Booking>) = listed.into_iter().partition(|b| {
        b.event_type_id.is_none_or(|t| t == event_type) && window.holds_times(&b.start, &b.end)
    });
    for b in &foreign {
        tracing::warn!(uid = %b.uid, event_type = ?b.event_type_id, branch = branch.id,
            "listed booking of another event type or outside the window: ignored");
    }
    // Moves first: a move's new booking marks the old one `rescheduled` before the old one,
    // cancelled at Cal.com as part of the move, could be taken for a cancellation.
    listed.sort_by_key(|b| b.rescheduled_from_uid.is_none());
    for booking in &listed {
        let drift = sync(store, company, branch, booking)
            .await
            .map_err(JobError::retry)?;
        counts.count(drift);
    }
    let listed: HashSet<&str> = listed.iter().map(|b| b.uid.as_str()).collect();
    for a in ours.iter().filter(|a| !listed.contains(a.uid.as_str())) {
        if appointments::cancel_if_booked(store, &a.uid, GONE_THERE)
            .await
            .map_err(JobError::retry)?
        {
            tracing::info!(uid = %a.uid, branch = branch.id, "booked here, gone at Cal.com: cancelled");
            counts.cancelled += 1;
        }
    }
    Ok(counts)
}

/// What one listed booking needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drift {
    Created,
    Cancelled,
    Rescheduled,
    Unchanged,
}

/// Bring our row of one listed booking in line with it.
async fn sync(
    store: &Store,
    company: &Company,
    branch: &Branch,
    b: &Booking,
) -> Result<Drift, StoreError> {
    let status = b.status.to_ascii_lowercase();
    let ours = appointments::get(store, &b.uid).await?;
    let drift = match (status.as_str(), ours) {
        ("accepted", None) => {
            let row = new_appointment(store, company, branch, b).await?;
            if !appointments::insert_if_absent(store, &row).await? {
                Drift::Unchanged
            } else if let Some(old) = &b.rescheduled_from_uid {
                // Moved at Cal.com with the webhook lost: link and mark as the webhook would.
                appointments::reschedule_if_booked(store, old).await?;
                Drift::Rescheduled
            } else {
                Drift::Created
            }
        }
        ("accepted", Some(a)) if a.status == "booked" => {
            let same = |ours: &str, theirs: &str| calcom::utc(ours).as_deref() == Some(theirs);
            if same(&a.start_at, &b.start) && same(&a.end_at, &b.end) {
                Drift::Unchanged
            } else if appointments::move_if_booked(store, &b.uid, &b.start, &b.end).await? {
                Drift::Rescheduled
            } else {
                Drift::Unchanged
            }
        }
        ("accepted", Some(a)) => {
            tracing::warn!(uid = %b.uid, ours = %a.status, "active at Cal.com but not booked here: left alone");
            Drift::Unchanged
        }
        ("cancelled" | "rejected", Some(a)) if a.status == "booked" => {
            if appointments::cancel_if_booked(store, &b.uid, CANCELLED_THERE).await? {
                Drift::Cancelled
            } else {
                Drift::Unchanged
            }
        }
        _ => Drift::Unchanged,
    };
    if drift != Drift::Unchanged {
        tracing::info!(uid = %b.uid, branch = branch.id, cal_status = %b.status, ?drift, "booking reconciled");
    }
    Ok(drift)
}

/// The appointment row of a booking made at Cal.com, its customer found or created from the
/// first attendee.
async fn new_appointment(
    store: &Store,
    company: &Company,
    branch: &Branch,
    b: &Booking,
) -> Result<Appointment, StoreError> {
    let attendee = b.attendees.first();
    let name = attendee.map(|a| a.name.clone()).filter(|n| !n.is_empty());
    // Addresses under `.invalid` stand in for callers who gave none (see `calendar.book`).
    let email = attendee
        .map(|a| a.email.clone())
        .filter(|e| e.contains('@') && !e.ends_with(".invalid"));
    let phone = attendee
        .and_then(|a| a.phone_number.clone())
        .filter(|p| !p.is_empty());
    let customer_id = match (&phone, &email) {
        (Some(phone), _) => Some(
            customers::upsert(store, company.id, phone, name.as_deref(), email.as_deref()).await?,
        ),
        (None, Some(email)) => customers::find_by_email(store, company.id, email).await?,
        (None, None) => None,
    };
    Ok(Appointment {
        uid: b.uid.clone(),
        company_id: company.id,
        branch_id: branch.id,
        customer_id,
        status: "booked".into(),
        title: b.title.clone(),
        start_at: b.start.clone(),
        end_at: b.end.clone(),
        location: None,
        attendee_name: name,
        attendee_email: email,
        attendee_phone: phone,
        rescheduled_from_uid: b.rescheduled_from_uid.clone(),
        cancellation_reason: None,
        call_id: b.metadata.get("retell_call_id").cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_fails_only_when_every_branch_it_tried_failed() {
        let mut sweep = Sweep::default();
        assert!(
            sweep.all_failed().is_none(),
            "no branch at all is no failure"
        );
        sweep
            .failures
            .push(JobError::permanent("no Cal.com API key"));
        assert!(
            matches!(sweep.all_failed(), Some(JobError::Permanent(r)) if r.contains("no Cal.com API key"))
        );
        sweep.failures.push(JobError::retry("Cal.com answered 503"));
        assert!(
            matches!(sweep.all_failed(), Some(JobError::Retry(_))),
            "a transient failure among them: worth retrying"
        );
        sweep.done = 1;
        assert!(sweep.all_failed().is_none(), "one branch reconciled");
        assert_eq!(sweep.result(None)["failed"], 2);
        assert_eq!(sweep.result(Some(7))["continued_after_branch"], 7);
    }

    #[test]
    fn the_window_holds_what_cal_com_would_list() {
        let from = OffsetDateTime::parse("2026-12-01T10:00:00Z", &Rfc3339).unwrap();
        let window = Window {
            from,
            to: from + Span::days(14),
        };
        let a = |start: &str, end: &str| Appointment {
            start_at: start.into(),
            end_at: end.into(),
            ..Appointment::default()
        };
        assert!(window.holds(&a("2026-12-01T10:00:00.000Z", "2026-12-01T10:30:00.000Z")));
        assert!(window.holds(&a("2026-12-01T12:00:00+02:00", "2026-12-01T12:30:00+02:00")));
        assert!(
            !window.holds(&a("2026-12-01T09:59:00Z", "2026-12-01T10:29:00Z")),
            "starts before"
        );
        assert!(
            !window.holds(&a("2026-12-15T09:45:00Z", "2026-12-15T10:15:00Z")),
            "ends after"
        );
        assert!(
            !window.holds(&a("next Tuesday", "2026-12-02T10:30:00Z")),
            "unreadable"
        );
    }
}
