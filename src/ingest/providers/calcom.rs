//! Cal.com: `X-Cal-Signature-256: <64 hex>`, HMAC-SHA256 keyed by the webhook secret over the
//! raw body. No timestamp, so replays are caught by dedupe alone.

use std::borrow::Cow;

use serde::Deserialize;

use super::{EventId, IdentifyError, SignatureError, any_matches, decode, hex32};
use crate::ingest::secrets::SecretList;

/// Header carrying the signature.
pub const HEADER: &str = "x-cal-signature-256";

/// Parse the bare hex digest (optionally surrounded by whitespace).
pub fn parse_header(value: &str) -> Result<[u8; 32], SignatureError> {
    hex32(value.trim()).ok_or(SignatureError::Malformed {
        header: HEADER,
        reason: "expected 64 hex digits",
    })
}

/// Verify a delivery against any of `secrets`.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &SecretList,
) -> Result<(), SignatureError> {
    let digest = parse_header(header.ok_or(SignatureError::Missing(HEADER))?)?;
    if any_matches(secrets, &[body], &[digest]) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    #[serde(borrow)]
    trigger_event: Cow<'a, str>,
    #[serde(borrow)]
    created_at: Cow<'a, str>,
    payload: Payload<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    /// On `BOOKING_RESCHEDULED`, the booking that moved.
    #[serde(borrow, default)]
    reschedule_uid: Option<Cow<'a, str>>,
}

/// `triggerEvent`, `payload.uid`, `createdAt`; dedupe key `<triggerEvent>:<uid>:<createdAt>`.
pub fn identify(body: &[u8]) -> Result<EventId, IdentifyError> {
    let b: Body<'_> = decode(body)?;
    if b.trigger_event.is_empty() || b.payload.uid.is_empty() || b.created_at.is_empty() {
        return Err(IdentifyError::MissingIdentifier(
            "triggerEvent, payload.uid and createdAt must not be empty".into(),
        ));
    }
    // A reschedule is about the booking that moved (its new uid is new): it runs in line
    // with that booking's other events.
    let object = b
        .payload
        .reschedule_uid
        .as_deref()
        .filter(|uid| !uid.is_empty() && b.trigger_event == "BOOKING_RESCHEDULED")
        .unwrap_or(&b.payload.uid);
    Ok(EventId {
        sequence: super::sequence_key("calcom", object),
        dedupe_key: format!("{}:{}:{}", b.trigger_event, b.payload.uid, b.created_at),
        event_type: b.trigger_event.into_owned(),
    })
}
