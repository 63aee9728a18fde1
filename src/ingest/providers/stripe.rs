//! Stripe: `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>...][,v0=...]`, HMAC-SHA256 keyed
//! by the whole `whsec_...` string over `<t>.<raw body>`; older than 300 s is rejected (future
//! timestamps are accepted, as the SDKs do); any one matching `v1` passes.

use std::borrow::Cow;

use serde::Deserialize;

use super::{EventId, IdentifyError, SignatureError, any_matches, decode, hex32};
use crate::ingest::secrets::SecretList;

/// Header carrying the signature.
pub const HEADER: &str = "stripe-signature";
/// Oldest accepted signature, seconds.
pub const TOLERANCE_SECS: u64 = 300;
/// Most `v1` entries considered (a header is small; this bounds the work).
const MAX_SIGNATURES: usize = 8;

/// A parsed signature header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// `t`, as sent (its decimal text is part of the message).
    pub timestamp: String,
    /// Every `v1` digest.
    pub v1: Vec<[u8; 32]>,
}

const fn malformed(reason: &'static str) -> SignatureError {
    SignatureError::Malformed {
        header: HEADER,
        reason,
    }
}

/// Parse the header: exactly one `t`, at least one well-formed `v1`; other schemes ignored.
pub fn parse_header(value: &str) -> Result<Signature, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in value.split(',') {
        let (key, val) = item
            .trim()
            .split_once('=')
            .ok_or(malformed("items must be key=value"))?;
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(malformed("t given twice"));
                }
                if val.is_empty() || val.len() > 12 || !val.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(malformed("t must be a unix timestamp"));
                }
                timestamp = Some(val.to_owned());
            }
            "v1" => {
                if v1.len() == MAX_SIGNATURES {
                    return Err(malformed("too many v1 signatures"));
                }
                v1.push(hex32(val).ok_or(malformed("v1 must be 64 hex digits"))?);
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(malformed("no t= timestamp"))?;
    if v1.is_empty() {
        return Err(malformed("no v1= signature"));
    }
    Ok(Signature { timestamp, v1 })
}

/// Verify a delivery at `now_secs` against any of `secrets`.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &SecretList,
    now_secs: u64,
) -> Result<(), SignatureError> {
    let sig = parse_header(header.ok_or(SignatureError::Missing(HEADER))?)?;
    let t: u64 = sig
        .timestamp
        .parse()
        .map_err(|_| malformed("t must be a unix timestamp"))?;
    if now_secs.saturating_sub(t) > TOLERANCE_SECS {
        return Err(SignatureError::Stale {
            window_secs: TOLERANCE_SECS,
        });
    }
    if any_matches(secrets, &[sig.timestamp.as_bytes(), b".", body], &sig.v1) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    data: Option<Data<'a>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow)]
    object: Object<'a>,
}

#[derive(Deserialize)]
struct Object<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    /// A customer id, or the expanded customer object (then not used).
    #[serde(default)]
    customer: Option<serde_json::Value>,
}

/// `id` and `type`; dedupe key is the event id.
pub fn identify(body: &[u8]) -> Result<EventId, IdentifyError> {
    let b: Body<'_> = decode(body)?;
    if b.id.is_empty() || b.kind.is_empty() {
        return Err(IdentifyError::MissingIdentifier(
            "id and type must not be empty".into(),
        ));
    }
    // Invoice and subscription events both set the customer's billing status, so they are
    // ordered per customer; an object without one is ordered by its own id, else the event.
    let object = b.data.as_ref().map(|d| &d.object);
    let customer = object
        .and_then(|o| o.customer.as_ref())
        .and_then(serde_json::Value::as_str);
    let sequence = match (customer, object.and_then(|o| o.id.as_deref())) {
        (Some(customer), _) if !customer.is_empty() => super::sequence_key("stripe", customer),
        (_, Some(id)) if !id.is_empty() => super::sequence_key("stripe", id),
        _ => super::sequence_key("stripe", &b.id),
    };
    Ok(EventId {
        sequence,
        dedupe_key: b.id.into_owned(),
        event_type: b.kind.into_owned(),
    })
}
