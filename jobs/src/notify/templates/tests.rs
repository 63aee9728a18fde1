//! Every template in every locale, rendered.

use super::*;

/// The GSM 03.38 alphabet: basic set (one septet) and extension set (two septets).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
    ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXTENSION: &str = "^{}\\[~]|€";

fn vars() -> MessageVars {
    MessageVars {
        recipient_name: "Dana Ruiz".into(),
        company_name: "Harbor Dental".into(),
        service: Some("Zahnreinigung".into()),
        start: Some("Di., 29.09.2026, 09:30 Uhr".into()),
        previous_start: Some("Mo., 28.09.2026, 14:00 Uhr".into()),
        location: Some("Pier St 12, San Francisco".into()),
        amount: Some("48,70 €".into()),
        invoice_url: Some("https://invoice.stripe.com/i/acct_1T8x/test_YWNjdF8x".into()),
    }
}

fn all() -> impl Iterator<Item = (Template, Locale)> {
    Template::ALL
        .into_iter()
        .flat_map(|t| Locale::ALL.map(|l| (t, l)))
}

/// SMS length in GSM septets, or the first character outside the alphabet.
fn septets(sms: &str) -> Result<usize, char> {
    sms.chars().try_fold(0, |n, c| match c {
        c if GSM_BASIC.contains(c) => Ok(n + 1),
        c if GSM_EXTENSION.contains(c) => Ok(n + 2),
        c => Err(c),
    })
}

#[test]
fn every_message_mentions_what_it_is_about() {
    let v = vars();
    for (t, l) in all() {
        let r = render(t, l, &v);
        let what = format!("{} {}", t.as_str(), l.as_str());
        for part in [&r.subject, &r.text, &r.html, &r.sms] {
            assert!(part.contains("Harbor Dental"), "{what}: company in {part}");
        }
        for part in [&r.text, &r.html] {
            assert!(part.contains("Dana Ruiz"), "{what}: greeting in {part}");
        }
        let key: &[&str] = match t {
            Template::Confirmation | Template::Reminder => {
                &["Di., 29.09.2026, 09:30 Uhr", "Zahnreinigung", "Pier St 12"]
            }
            Template::Reschedule => &["Di., 29.09.2026, 09:30 Uhr", "Mo., 28.09.2026, 14:00 Uhr"],
            Template::Cancellation => &["Di., 29.09.2026, 09:30 Uhr", "Zahnreinigung"],
            Template::PaymentFailed => &["48,70 €", "https://invoice.stripe.com/i/acct_1T8x"],
        };
        for k in key {
            assert!(r.text.contains(k), "{what}: {k} in text {}", r.text);
            assert!(r.html.contains(k), "{what}: {k} in html {}", r.html);
        }
        let sms_key = if t == Template::PaymentFailed {
            "48,70 €"
        } else {
            key[0]
        };
        assert!(
            r.sms.contains(sms_key),
            "{what}: {sms_key} in sms {}",
            r.sms
        );
        assert!(r.html.starts_with("<!DOCTYPE html>"), "{what}: {}", r.html);
        assert!(
            r.html.contains(&format!("<html lang=\"{}\">", l.as_str())),
            "{what}"
        );
        assert!(
            !r.subject.contains('\n') && !r.sms.contains('\n'),
            "{what}: one line"
        );
    }
}

#[test]
fn german_and_english_differ() {
    let v = vars();
    for t in Template::ALL {
        let (de, en) = (render(t, Locale::De, &v), render(t, Locale::En, &v));
        assert_ne!(de.subject, en.subject, "{}", t.as_str());
        assert_ne!(de.sms, en.sms, "{}", t.as_str());
    }
    let r = render(Template::Confirmation, Locale::De, &v);
    assert_eq!(r.subject, "Ihr Termin ist bestätigt – Harbor Dental");
    assert!(
        r.text
            .starts_with("Guten Tag Dana Ruiz,\n\nIhr Termin bei Harbor Dental ist")
    );
    assert_eq!(
        render(Template::PaymentFailed, Locale::De, &v).subject,
        "Zahlung fehlgeschlagen – Harbor Dental"
    );
}

#[test]
fn html_escapes_values_and_text_keeps_them() {
    let v = MessageVars {
        recipient_name: "<script>alert(1)</script>".into(),
        ..vars()
    };
    for (t, l) in all() {
        let r = render(t, l, &v);
        assert!(
            !r.html.contains("<script>"),
            "{} {}: {}",
            t.as_str(),
            l.as_str(),
            r.html
        );
        assert!(
            r.html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{}",
            r.html
        );
        assert!(
            r.text.contains("<script>alert(1)</script>"),
            "plain text is not escaped"
        );
    }
}

#[test]
fn sms_fit_one_gsm_segment() {
    let v = MessageVars {
        invoice_url: None,
        ..vars()
    };
    for (t, l) in all() {
        // As sent: with the reference that lets an in-doubt retry find it at the gateway.
        let sms = crate::notify::doubt::sms_body(&render(t, l, &v).sms, "appointment:x:y:sms");
        let n = septets(&sms).unwrap_or_else(|c| panic!("{c:?} is not GSM 7-bit: {sms}"));
        assert!(
            n <= 160,
            "{} {}: {n} septets: {sms}",
            t.as_str(),
            l.as_str()
        );
    }
    // With the invoice link the payment SMS may need two segments, but stays GSM.
    let sms = render(Template::PaymentFailed, Locale::De, &vars()).sms;
    assert!(septets(&sms).is_ok(), "{sms}");
}

#[test]
fn missing_values_leave_no_gaps() {
    let v = MessageVars {
        recipient_name: "Dana".into(),
        company_name: "Harbor Dental".into(),
        ..MessageVars::default()
    };
    for (t, l) in all() {
        let r = render(t, l, &v);
        let what = format!("{} {}", t.as_str(), l.as_str());
        assert!(
            !r.text.contains("\n\n\n") && !r.text.starts_with('\n'),
            "{what}: {}",
            r.text
        );
        assert!(
            r.text.ends_with("Harbor Dental\n")
                || r.text.ends_with("AskProAI team\n")
                || r.text.ends_with("AskProAI-Team\n"),
            "{what}: {}",
            r.text
        );
        assert!(!r.sms.contains(" ."), "{what}: {}", r.sms);
        assert!(!r.html.contains("<tr>"), "{what}: no empty detail rows");
    }
}

#[test]
fn locale_tags() {
    for tag in ["de", "DE", "de-DE", "de_AT", "de-CH", " de "] {
        assert_eq!(Locale::from_tag(tag), Locale::De, "{tag}");
    }
    for tag in ["en", "en-US", "fr", "", "deu", "dk"] {
        assert_eq!(Locale::from_tag(tag), Locale::En, "{tag}");
    }
}

#[test]
fn template_names_round_trip() {
    for t in Template::ALL {
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, format!("\"{}\"", t.as_str()));
        assert_eq!(serde_json::from_str::<Template>(&json).unwrap(), t);
    }
    assert!(serde_json::from_str::<Template>("\"PaymentFailed\"").is_err());
}
