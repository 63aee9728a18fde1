//! Times as the customer reads them: an instant (RFC 3339, as Cal.com and the store keep
//! it) shown in the business's time zone (the branch's, else the company's) and language,
//! written the way people write it, with the zone named:
//! `Dienstag, 1. Dezember 2026, 11:00 Uhr (MEZ)` / `Tuesday, December 1, 2026 at 11:00 AM (PST)`.
//!
//! Nothing here fails: an instant that does not parse is shown as it came, an unknown zone
//! falls back to UTC (and says so), so a message is never held back by its time line.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

use super::templates::Locale;
use crate::store::{
    Store, StoreError,
    companies::{self, Company},
};

const WEEKDAYS_DE: [&str; 7] = [
    "Montag",
    "Dienstag",
    "Mittwoch",
    "Donnerstag",
    "Freitag",
    "Samstag",
    "Sonntag",
];
const WEEKDAYS_EN: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS_DE: [&str; 12] = [
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
];
const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `instant` (RFC 3339) in `zone` (IANA), written for a reader of `locale`.
pub fn format(instant: &str, zone: &str, locale: Locale) -> String {
    let Ok(at) = DateTime::parse_from_rfc3339(instant.trim()) else {
        return instant.to_owned();
    };
    let tz: Tz = zone.parse().unwrap_or(Tz::UTC);
    let local = at.with_timezone(&Utc).with_timezone(&tz);
    let weekday = local.weekday().num_days_from_monday() as usize;
    let month = local.month0() as usize;
    let abbreviation = local.format("%Z").to_string();
    match locale {
        Locale::De => {
            let name = match abbreviation.as_str() {
                "CET" => "MEZ".to_owned(),
                "CEST" => "MESZ".to_owned(),
                other => other.to_owned(),
            };
            format!(
                "{}, {}. {} {}, {:02}:{:02} Uhr{}",
                WEEKDAYS_DE[weekday],
                local.day(),
                MONTHS_DE[month],
                local.year(),
                local.hour(),
                local.minute(),
                zone_suffix(&name)
            )
        }
        Locale::En => {
            let (pm, hour) = local.hour12();
            format!(
                "{}, {} {}, {} at {}:{:02} {}{}",
                WEEKDAYS_EN[weekday],
                MONTHS_EN[month],
                local.day(),
                local.year(),
                hour,
                local.minute(),
                if pm { "PM" } else { "AM" },
                zone_suffix(&abbreviation)
            )
        }
    }
}

/// ` (MEZ)` for a zone with a name; nothing for zones known only by their offset (`+03`).
fn zone_suffix(name: &str) -> String {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphabetic()) {
        format!(" ({name})")
    } else {
        String::new()
    }
}

/// The zone a business's customers read times in: the branch's, else the company's.
pub async fn business_zone(
    store: &Store,
    company: &Company,
    branch_id: i64,
) -> Result<String, StoreError> {
    let branch = companies::branch(store, branch_id).await?;
    Ok(branch
        .map(|b| b.timezone)
        .filter(|z| !z.trim().is_empty())
        .unwrap_or_else(|| company.timezone.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn german_and_english_on_both_sides_of_a_dst_change() {
        // Berlin: winter time (CET, +01:00) in December, summer time (CEST, +02:00) in June;
        // the clocks went forward on 29 March 2026.
        assert_eq!(
            format("2026-12-01T10:00:00.000Z", "Europe/Berlin", Locale::De),
            "Dienstag, 1. Dezember 2026, 11:00 Uhr (MEZ)"
        );
        assert_eq!(
            format("2026-03-30T10:00:00Z", "Europe/Berlin", Locale::De),
            "Montag, 30. März 2026, 12:00 Uhr (MESZ)"
        );
        assert_eq!(
            format("2026-03-28T10:00:00Z", "Europe/Berlin", Locale::En),
            "Saturday, March 28, 2026 at 11:00 AM (CET)"
        );
        // Los Angeles changed on 1 November 2026 (PDT -> PST).
        assert_eq!(
            format("2026-10-31T16:30:00Z", "America/Los_Angeles", Locale::En),
            "Saturday, October 31, 2026 at 9:30 AM (PDT)"
        );
        assert_eq!(
            format("2026-11-02T16:30:00Z", "America/Los_Angeles", Locale::En),
            "Monday, November 2, 2026 at 8:30 AM (PST)"
        );
        assert_eq!(
            format("2026-12-01T23:05:00+01:00", "Europe/Berlin", Locale::En),
            "Tuesday, December 1, 2026 at 11:05 PM (CET)"
        );
    }

    #[test]
    fn what_cannot_be_read_is_shown_as_it_came() {
        assert_eq!(format("tomorrow", "Europe/Berlin", Locale::De), "tomorrow");
        assert_eq!(
            format("2026-12-01T10:00:00Z", "Mars/Olympus", Locale::En),
            "Tuesday, December 1, 2026 at 10:00 AM (UTC)"
        );
        assert_eq!(
            format("2026-12-01T10:00:00Z", "Europe/Istanbul", Locale::De),
            "Dienstag, 1. Dezember 2026, 13:00 Uhr"
        );
    }
}
