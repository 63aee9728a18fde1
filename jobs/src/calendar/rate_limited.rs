//! How a calendar job reaches Cal.com: the client for the company's key, and every request
//! behind a slot of that key's fleet-wide rate limit (a full limit or a 429 snoozes the job,
//! so waiting for Cal.com never uses up an attempt).

use crate::{
    JobError,
    clients::{
        SendError,
        calcom::{Booking, BookingQuery, CalcomClient},
    },
    services::Services,
    store::{
        appointments::{self, Appointment},
        companies,
    },
};

/// The appointment `uid` and a Cal.com client for its company, or `None` when the
/// appointment is already `done` (a repeat has nothing left to do).
pub(super) async fn appointment_and_client(
    services: &Services,
    uid: &str,
    done: &str,
) -> Result<Option<(Appointment, CalcomClient, String)>, JobError> {
    let appointment = appointments::get(&services.store, uid)
        .await
        .map_err(JobError::retry)?
        .ok_or_else(|| JobError::permanent(format!("no appointment with uid {uid}")))?;
    if appointment.status == done {
        return Ok(None);
    }
    let company = companies::get(&services.store, appointment.company_id)
        .await
        .map_err(JobError::retry)?
        .ok_or_else(|| {
            JobError::permanent(format!("company {} does not exist", appointment.company_id))
        })?;
    let (client, limit_name) = services.calendar.client_for(&company).ok_or_else(|| {
        JobError::permanent(format!("no Cal.com API key for company {}", company.id))
    })?;
    Ok(Some((appointment, client, limit_name)))
}

/// Cal.com calls of one job: each takes a rate-limit slot first.
pub(super) struct RateLimited<'a> {
    pub services: &'a Services,
    pub limit_name: &'a str,
}

impl RateLimited<'_> {
    /// List bookings matching `query`, taking a slot for every page requested.
    pub async fn list_bookings(
        &self,
        client: &CalcomClient,
        query: &BookingQuery,
    ) -> Result<Vec<Booking>, JobError> {
        let mut pages = client.booking_pages(query);
        while !pages.is_complete() {
            self.call(pages.next_page()).await?;
        }
        Ok(pages.into_bookings())
    }

    /// Take a slot, then run `request`; a full limit or a 429 snoozes the job.
    pub async fn call<T>(
        &self,
        request: impl Future<Output = Result<T, SendError>>,
    ) -> Result<T, JobError> {
        let access = &self.services.calendar;
        let wait = self
            .services
            .limiter
            .acquire(
                self.limit_name,
                access.requests_per_minute,
                std::time::Duration::from_secs(60),
            )
            .await
            .map_err(JobError::Retry)?;
        if let Some(wait) = wait {
            return Err(JobError::Snooze(wait));
        }
        request.await.map_err(|e| match e {
            SendError::Transient {
                retry_after: Some(after),
                ..
            } => JobError::Snooze(after),
            other => other.into(),
        })
    }
}
