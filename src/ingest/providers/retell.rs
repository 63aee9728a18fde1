//! Retell.ai: `x-retell-signature: v=<unix ms>,d=<64 hex>`, HMAC-SHA256 keyed by the API key
//! over the raw body followed by the decimal timestamp; rejected beyond +-300 s.

use std::borrow::Cow;

use serde::Deserialize;

use super::{EventId, IdentifyError, SignatureError, any_matches, decode, hex32};
use crate::ingest::secrets::SecretList;

/// Header carrying the signature.
pub const HEADER: &str = "x-retell-signature";
/// Replay window either side of now.
pub const TOLERANCE_MS: u64 = 300_000;

/// A parsed signature header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Signing time, ms since the epoch, as sent (its decimal text is part of the message).
    pub timestamp: String,
    /// The digest.
    pub digest: [u8; 32],
}

const fn malformed(reason: &'static str) -> SignatureError {
    SignatureError::Malformed {
        header: HEADER,
        reason,
    }
}

/// Parse `v=<ms>,d=<hex>` strictly: exactly those two fields, in that order.
pub fn parse_header(value: &str) -> Result<Signature, SignatureError> {
    let (v, d) = value
        .split_once(',')
        .ok_or(malformed("expected v=<ms>,d=<hex>"))?;
    let timestamp = v
        .strip_prefix("v=")
        .ok_or(malformed("first field must be v=<ms>"))?;
    let digest = d
        .strip_prefix("d=")
        .ok_or(malformed("second field must be d=<hex>"))?;
    if timestamp.is_empty()
        || timestamp.len() > 16
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(malformed("v must be a millisecond timestamp"));
    }
    let digest = hex32(digest).ok_or(malformed("d must be 64 hex digits"))?;
    Ok(Signature {
        timestamp: timestamp.to_owned(),
        digest,
    })
}

/// Verify a delivery at `now_ms` against any of `secrets`.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &SecretList,
    now_ms: u64,
) -> Result<(), SignatureError> {
    let sig = parse_header(header.ok_or(SignatureError::Missing(HEADER))?)?;
    let ts: u64 = sig
        .timestamp
        .parse()
        .map_err(|_| malformed("v must be a millisecond timestamp"))?;
    if ts.abs_diff(now_ms) > TOLERANCE_MS {
        return Err(SignatureError::Stale {
            window_secs: TOLERANCE_MS / 1000,
        });
    }
    if any_matches(secrets, &[body, sig.timestamp.as_bytes()], &[sig.digest]) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    call: Call<'a>,
}

#[derive(Deserialize)]
struct Call<'a> {
    #[serde(borrow)]
    call_id: Cow<'a, str>,
}

/// `event` and `call.call_id`; dedupe key `<event>:<call_id>`, sequence the call.
pub fn identify(body: &[u8]) -> Result<EventId, IdentifyError> {
    let b: Body<'_> = decode(body)?;
    if b.event.is_empty() || b.call.call_id.is_empty() {
        return Err(IdentifyError::MissingIdentifier(
            "event and call.call_id must not be empty".into(),
        ));
    }
    Ok(EventId {
        sequence: super::sequence_key("retell", &b.call.call_id),
        dedupe_key: format!("{}:{}", b.event, b.call.call_id),
        event_type: b.event.into_owned(),
    })
}
