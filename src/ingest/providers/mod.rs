//! The three provider schemes: how a delivery is authenticated and identified. Each module
//! parses its signature header strictly (never panicking on any input), verifies over the
//! raw body bytes in constant time, and extracts the event type and dedupe key.

pub mod calcom;
pub mod retell;
pub mod stripe;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::secrets::SecretList;

/// Why a delivery is not authentic (answered 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature header is absent.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// The header does not have the scheme's shape.
    #[error("malformed {header} header: {reason}")]
    Malformed {
        header: &'static str,
        reason: &'static str,
    },
    /// The signed timestamp is outside the replay window.
    #[error("signature timestamp outside the {window_secs} s tolerance")]
    Stale { window_secs: u64 },
    /// No configured secret produces this signature.
    #[error("signature does not match")]
    Mismatch,
}

/// Why a verified body cannot be queued (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifyError {
    /// Not JSON at all.
    #[error("body is not valid JSON: {0}")]
    Malformed(String),
    /// JSON, but without the fields that identify the event.
    #[error("body lacks an identifier: {0}")]
    MissingIdentifier(String),
}

/// What ingest needs to know of a verified event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventId {
    /// The provider's event type.
    pub event_type: String,
    /// Deliveries with the same key are one event.
    pub dedupe_key: String,
    /// The provider object the event is about (`calcom:<booking uid>`, `stripe:<customer>`,
    /// `retell:<call id>`): events of one object are processed one at a time, in arrival
    /// order (the queue's sequence key); events of other objects run in parallel.
    pub sequence: String,
}

/// `provider:id` as a sequence key: ids made only of the characters a key may hold are kept
/// as they are (readable in Redis); any other id is replaced by its FNV-1a hash, which keeps
/// one object on one key (a collision only serialises two objects, it never reorders).
pub(crate) fn sequence_key(provider: &str, id: &str) -> String {
    let plain = !id.is_empty()
        && id.len() <= 120
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if plain {
        return format!("{provider}:{id}");
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{provider}:h{hash:016x}")
}

/// Parse `body` as `T`, telling bad JSON apart from missing fields.
pub(crate) fn decode<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, IdentifyError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => IdentifyError::MissingIdentifier(e.to_string()),
        _ => IdentifyError::Malformed(e.to_string()),
    })
}

/// HMAC-SHA256 of `parts` (concatenated) under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// True when any secret in `secrets` signs `parts` to one of `candidates`. Every comparison
/// is constant-time; the loop runs over all secrets and candidates regardless of matches.
pub(crate) fn any_matches(secrets: &SecretList, parts: &[&[u8]], candidates: &[[u8; 32]]) -> bool {
    let mut found = subtle::Choice::from(0);
    for secret in secrets.iter() {
        let expected = hmac_sha256(secret.as_bytes(), parts);
        for c in candidates {
            found |= expected.ct_eq(c);
        }
    }
    found.into()
}

/// Decode exactly 64 hex digits (either case) into 32 bytes.
pub(crate) fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests;
