//! `GET /bookings` page by page (`take`/`skip`), so a caller can pace each request (the
//! calendar jobs take a rate-limit slot per page). Offset paging over a list that changes
//! meanwhile can repeat a booking across pages; it is kept once.

use std::collections::HashSet;

use serde::Deserialize;

use super::{
    BOOKINGS_VERSION, Booking, BookingQuery, CalcomClient, SendError, body, bookings::to_utc,
};

/// Bookings per page of `GET /bookings`.
const PAGE_SIZE: usize = 100;
/// Pages a listing reads before it gives up rather than answer with a partial list.
const MAX_PAGES: usize = 50;

/// A page of `GET /bookings`.
#[derive(Deserialize)]
struct BookingPage {
    data: Vec<Booking>,
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pagination {
    has_next_page: Option<bool>,
}

/// A booking listing read one page per [`BookingPages::next_page`] call.
pub struct BookingPages<'a> {
    client: &'a CalcomClient,
    filters: Vec<(&'static str, String)>,
    bookings: Vec<Booking>,
    /// Offset paging over a changing list can repeat a booking across pages.
    seen: HashSet<String>,
    skip: usize,
    pages: usize,
    done: bool,
}

impl<'a> BookingPages<'a> {
    /// A listing of the bookings matching `query`, earliest start first; nothing is read yet.
    pub(super) fn new(client: &'a CalcomClient, query: &BookingQuery) -> BookingPages<'a> {
        let filters = [
            ("eventTypeId", query.event_type_id.map(|id| id.to_string())),
            ("attendeeEmail", query.attendee_email.clone()),
            // UTC like every time this client sends (Cal.com's examples are all `Z`).
            ("afterStart", query.after_start.as_deref().map(to_utc)),
            ("beforeEnd", query.before_end.as_deref().map(to_utc)),
            ("status", query.status.clone()),
            ("sortStart", Some("asc".to_owned())),
        ];
        BookingPages {
            client,
            filters: filters
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
            bookings: Vec::new(),
            seen: HashSet::new(),
            skip: 0,
            pages: 0,
            done: false,
        }
    }
}

impl BookingPages<'_> {
    /// Read the next page; false once the listing is complete (no request is made then).
    pub async fn next_page(&mut self) -> Result<bool, SendError> {
        const OP: &str = "list bookings";
        if self.done {
            return Ok(false);
        }
        if self.pages == MAX_PAGES {
            return Err(SendError::Permanent(format!(
                "Cal.com {OP}: more than {MAX_PAGES} pages of bookings match; narrow the query"
            )));
        }
        let url = self.client.url(&["bookings"])?;
        let request = self
            .client
            .http
            .get(url)
            .query(&self.filters)
            .query(&[("take", PAGE_SIZE), ("skip", self.skip)]);
        let response = self.client.send(OP, request, BOOKINGS_VERSION).await?;
        let page: BookingPage = body(OP, response).await.map_err(SendError::transient)?;
        self.pages += 1;
        let n = page.data.len();
        let seen = &mut self.seen;
        self.bookings
            .extend(page.data.into_iter().filter(|b| seen.insert(b.uid.clone())));
        // Cal.com may cap `take`; its `hasNextPage`, when given, is the better signal.
        let more = page
            .pagination
            .and_then(|p| p.has_next_page)
            .unwrap_or(n >= PAGE_SIZE);
        self.done = !more || n == 0;
        self.skip += n;
        Ok(!self.done)
    }

    /// Whether more pages remain to be read.
    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// The bookings read so far, earliest start first.
    pub fn into_bookings(self) -> Vec<Booking> {
        self.bookings
    }
}
