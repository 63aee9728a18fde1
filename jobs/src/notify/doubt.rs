//! Resolving a notification whose send is in doubt: an earlier attempt claimed the outbox row
//! (`sending`) and ended before marking it, so the message may or may not have left.
//! Dropping it would lose a customer's message; sending blind could send it twice. What the
//! retry does instead depends on the channel:
//!
//! - **SMS: ask the gateway.** Every SMS ends with a short reference derived from its
//!   notification key ([`reference`], e.g. `Ref K7Q2X9`), the same in every attempt. The
//!   retry lists the messages to the recipient sent since the row was written
//!   ([`find_sent`]); one carrying the reference means the earlier attempt got through, and
//!   the row is marked sent with that message's sid. Only when none does is it sent. A lookup
//!   that fails leaves the row in doubt for the next attempt: never send without an answer.
//! - **Email: send again with the same Message-ID** ([`super::send::message_id`]). Mail
//!   servers and clients collapse messages with one Message-ID, so the customer sees one even
//!   in the narrowest window (the earlier attempt died after the SMTP server accepted and
//!   before the mark), where two are delivered.
//!
//! A gateway's list shows a message with a `date_sent` once it left; one still queued at the
//! gateway may be missing from a `DateSent` filtered list. The retry comes after the queue's
//! backoff or lease, by when a queued message has normally left.

use crate::clients::{SendError, sms::SmsClient};

/// How far before the row's creation the lookup starts: the gateway's clock may be behind
/// ours, and its `DateSent` filter counts whole UTC days.
const CLOCK_SKEW_MS: i64 = 15 * 60 * 1000;

/// Characters of a reference: Crockford's base 32 (no I, L, O, U), all in the GSM 7-bit
/// alphabet, so a reference never changes an SMS's encoding.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// FNV-1a of a notification key: what the Message-ID and the SMS reference derive from,
/// stable across attempts and processes.
pub(super) fn key_hash(key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The reference an SMS of notification `key` carries: `Ref ` and six characters (30 bits
/// of the key's hash; the lookup only compares messages to one number in a few days).
pub fn reference(key: &str) -> String {
    let hash = key_hash(key);
    let mut out = String::from("Ref ");
    for i in 0..6 {
        // 5 bits each, from the top; the index is below 32.
        let index = usize::try_from((hash >> (59 - 5 * i)) & 0x1f).unwrap_or(0);
        out.push(char::from(ALPHABET[index]));
    }
    out
}

/// The text an SMS of notification `key` is sent with: `text` and its reference.
pub(super) fn sms_body(text: &str, key: &str) -> String {
    format!("{text} {}", reference(key))
}

/// The sid of the SMS of notification `key` to `to` that the gateway accepted since the row
/// was written at `created_at_ms`, if it lists one.
pub(super) async fn find_sent(
    sms: &SmsClient,
    to: &str,
    key: &str,
    created_at_ms: i64,
) -> Result<Option<String>, SendError> {
    let since =
        time::OffsetDateTime::from_unix_timestamp((created_at_ms - CLOCK_SKEW_MS).div_euclid(1000))
            .map_err(|e| SendError::Permanent(format!("notification row time out of range: {e}")))?
            .date();
    let found = sms.find_sent(to, since, &reference(key)).await?;
    Ok(found.map(|m| m.sid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_short_stable_and_differ_by_key() {
        let a = reference("appointment:bK3v9Qp2LmX7tRz1Yc8WnA:confirmation:sms");
        assert_eq!(
            a,
            reference("appointment:bK3v9Qp2LmX7tRz1Yc8WnA:confirmation:sms")
        );
        assert_eq!(a.len(), 10, "{a}");
        assert!(a.starts_with("Ref "));
        assert!(a[4..].bytes().all(|b| ALPHABET.contains(&b)), "{a}");
        assert_ne!(
            a,
            reference("appointment:bK3v9Qp2LmX7tRz1Yc8WnA:reminder_2h:sms")
        );
        assert_eq!(
            sms_body("See you then.", "k"),
            format!("See you then. {}", reference("k"))
        );
    }
}
