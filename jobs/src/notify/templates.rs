//! The words of every notification, in every language, as compile-checked askama templates.
//!
//! Each message lives under `jobs/templates/notify/<template>/`: `<locale>.txt` holds the
//! blocks `subject`, `text` and `sms` (plain text, never escaped) and `<locale>.html` the HTML
//! body inside `layout.html` (escaped: values cannot inject markup). A template that names a
//! missing variable does not compile. Values arrive pre-formatted (times in the business's
//! time zone and language), so rendering cannot fail and does no I/O.
//!
//! What must stay true: SMS text uses only the GSM 7-bit alphabet (one non-GSM character
//! turns the whole message into UCS-2 and 70-character segments) and, apart from links, fits
//! in 160 characters with the reference an SMS is sent with (`super::doubt`); the tests
//! below check both.

use serde::{Deserialize, Serialize};

/// Which message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// A booking was made (to the customer).
    Confirmation,
    /// A booking moved to another time (to the customer).
    Reschedule,
    /// A booking was cancelled (to the customer).
    Cancellation,
    /// A booking is coming up (to the customer).
    Reminder,
    /// The business's subscription payment failed (to the company admin).
    PaymentFailed,
}

impl Template {
    /// Every template.
    pub const ALL: [Template; 5] = [
        Self::Confirmation,
        Self::Reschedule,
        Self::Cancellation,
        Self::Reminder,
        Self::PaymentFailed,
    ];

    /// The stable name, as serialized and stored with each notification.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmation => "confirmation",
            Self::Reschedule => "reschedule",
            Self::Cancellation => "cancellation",
            Self::Reminder => "reminder",
            Self::PaymentFailed => "payment_failed",
        }
    }
}

/// The language of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Locale {
    /// German (formal "Sie").
    De,
    /// English; also the fallback for every language without its own texts.
    #[default]
    En,
}

impl Locale {
    /// Every locale.
    pub const ALL: [Locale; 2] = [Self::De, Self::En];

    /// The locale for a language tag such as `de`, `de-DE`, `de_AT` or `en-US`
    /// (case-insensitive); unknown languages get English.
    pub fn from_tag(tag: &str) -> Locale {
        let language = tag.trim().split(['-', '_']).next().unwrap_or_default();
        if language.eq_ignore_ascii_case("de") {
            Self::De
        } else {
            Self::En
        }
    }

    /// The language tag, `de` or `en`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::De => "de",
            Self::En => "en",
        }
    }
}

/// What a message mentions. Which fields a template uses depends on the template; a missing
/// optional value leaves its line out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MessageVars {
    /// Whom the message greets: the customer, or the company admin for `payment_failed`.
    pub recipient_name: String,
    /// The business the customer booked with (or whose payment failed).
    pub company_name: String,
    /// The booked service, e.g. "Zahnreinigung".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Start of the appointment, formatted for the reader in the business's zone (see
    /// [`super::local_time`]), e.g. "Dienstag, 29. September 2026, 09:30 Uhr (MESZ)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// The old start of a rescheduled appointment, formatted like `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_start: Option<String>,
    /// Where the appointment takes place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The amount due, formatted with its currency, e.g. "48,70 €".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// Where the admin can see and pay the invoice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_url: Option<String>,
}

/// One message in every shape it can be sent in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Email subject: one line.
    pub subject: String,
    /// Plain-text email body.
    pub text: String,
    /// HTML email body, a complete document.
    pub html: String,
    /// SMS text: one line.
    pub sms: String,
}

/// Render `template` in `locale` with `vars`.
pub fn render(template: Template, locale: Locale, vars: &MessageVars) -> Rendered {
    use {Locale::De, Locale::En, Template as T};
    let lang = locale.as_str();
    let rendered = match (template, locale) {
        (T::Confirmation, De) => confirmation_de::render(vars, lang),
        (T::Confirmation, En) => confirmation_en::render(vars, lang),
        (T::Reschedule, De) => reschedule_de::render(vars, lang),
        (T::Reschedule, En) => reschedule_en::render(vars, lang),
        (T::Cancellation, De) => cancellation_de::render(vars, lang),
        (T::Cancellation, En) => cancellation_en::render(vars, lang),
        (T::Reminder, De) => reminder_de::render(vars, lang),
        (T::Reminder, En) => reminder_en::render(vars, lang),
        (T::PaymentFailed, De) => payment_failed_de::render(vars, lang),
        (T::PaymentFailed, En) => payment_failed_en::render(vars, lang),
    };
    // Writing owned strings into a String has no failure mode; an error here is a bug.
    rendered.expect("rendering a notification template into a String cannot fail")
}

/// For each message in each language, a module with its template structs (askama needs a
/// type per file) and a `render` that fills in all four parts.
macro_rules! messages {
    ($($module:ident: $plain:tt, $html:tt;)*) => {$(
        mod $module {
            use askama::Template as _;

            use super::{MessageVars, Rendered, one_line, paragraphs};

            #[derive(askama::Template)]
            #[template(path = $plain, blocks = ["subject", "text", "sms"])]
            struct Plain<'a> {
                v: &'a MessageVars,
            }

            #[derive(askama::Template)]
            #[template(path = $html)]
            struct Html<'a> {
                v: &'a MessageVars,
                lang: &'a str,
                subject: &'a str,
            }

            pub(super) fn render(v: &MessageVars, lang: &str) -> askama::Result<Rendered> {
                let plain = Plain { v };
                let subject = one_line(&plain.as_subject().render()?);
                let html = Html {
                    v,
                    lang,
                    subject: &subject,
                }
                .render()?;
                Ok(Rendered {
                    text: paragraphs(&plain.as_text().render()?),
                    sms: one_line(&plain.as_sms().render()?),
                    html,
                    subject,
                })
            }
        }
    )*};
}

messages! {
    confirmation_de: "notify/confirmation/de.txt", "notify/confirmation/de.html";
    confirmation_en: "notify/confirmation/en.txt", "notify/confirmation/en.html";
    reschedule_de: "notify/reschedule/de.txt", "notify/reschedule/de.html";
    reschedule_en: "notify/reschedule/en.txt", "notify/reschedule/en.html";
    cancellation_de: "notify/cancellation/de.txt", "notify/cancellation/de.html";
    cancellation_en: "notify/cancellation/en.txt", "notify/cancellation/en.html";
    reminder_de: "notify/reminder/de.txt", "notify/reminder/de.html";
    reminder_en: "notify/reminder/en.txt", "notify/reminder/en.html";
    payment_failed_de: "notify/payment_failed/de.txt", "notify/payment_failed/de.html";
    payment_failed_en: "notify/payment_failed/en.txt", "notify/payment_failed/en.html";
}

/// Subjects and SMS are one line whatever the template's layout or a value's newlines.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Plain-text bodies: trailing spaces cut, at most one blank line in a row (optional lines
/// that are left out must not leave gaps), no blank lines at either end.
fn paragraphs(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank = false;
    for line in s.lines().map(str::trim_end) {
        if line.is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if blank {
            out.push('\n');
            blank = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
