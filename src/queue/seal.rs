//! Sealing job data at rest in Redis: arguments, last errors and results, under
//! XChaCha20-Poly1305 with the keys of `SWITCHBOARD_PAYLOAD_KEYS`.
//!
//! A sealed value is the text `$sealed:v1:<key id>:<base64url(nonce || ciphertext)>`. Sealed
//! arguments are that text as a JSON *string* in the envelope's `args`, so everything that
//! handles items without reading arguments (the Lua scripts, the rescue edit, settling) works
//! on sealed and plain items alike; only the few places that need the plaintext open it.
//!
//! What must stay true:
//! * The nonce is 24 random bytes per seal (`XChaCha`'s extended nonce makes random nonces safe
//!   at any volume), never derived from the job.
//! * Each value is bound to what it belongs to by the associated data: arguments and errors
//!   to their job kind (and to their role), results to their job id. A sealed value moved to
//!   another kind, or from `err` to `args`, does not open.
//! * The key id travels with the value, so rotation is "add a new key first, keep the old
//!   ones listed": everything sealed under any listed key still opens.
//! * Plain (unsealed) values are accepted where sealed ones are, so a queue filled before a
//!   key was configured keeps working.

use std::{borrow::Cow, fmt};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use rand::Rng as _;
use serde_json::value::RawValue;

use crate::config::PayloadKey;

/// What every sealed value starts with (the format's version included).
pub const SEALED_PREFIX: &str = "$sealed:v1:";

const NONCE_LEN: usize = 24;

/// What a sealed value is; each has its own associated data.
#[derive(Debug, Clone, Copy)]
pub enum Part<'a> {
    /// A job's arguments, bound to its kind.
    Args { kind: &'a str },
    /// A job's last error, bound to its kind.
    Error { kind: &'a str },
    /// A completed job's result, bound to its id.
    Result { id: &'a str },
}

impl Part<'_> {
    fn associated_data(self) -> Vec<u8> {
        let (role, binding) = match self {
            Part::Args { kind } => ("args", kind),
            Part::Error { kind } => ("err", kind),
            Part::Result { id } => ("result", id),
        };
        format!("switchboard/v1/{role}\0{binding}").into_bytes()
    }
}

/// Why a sealed value did not open. Every message names the key id and never the data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Sealed under a key that is not configured (any more).
    #[error(
        "the job's data is sealed with payload key {kid:?}, which is not among the configured keys ({known}); add it back to SWITCHBOARD_PAYLOAD_KEYS to run it"
    )]
    UnknownKey { kid: String, known: String },
    /// Sealed, but no key is configured at all.
    #[error(
        "the job's data is sealed with payload key {0:?}, but no payload key is configured (SWITCHBOARD_PAYLOAD_KEYS)"
    )]
    NoKeys(String),
    /// The key is there but authentication failed: altered, or moved from another job kind.
    #[error(
        "the job's data sealed with payload key {0:?} does not open: it was altered, or belongs to another job kind"
    )]
    Forged(String),
    /// Not in the sealed format.
    #[error("the job's sealed data is malformed: {0}")]
    Malformed(&'static str),
}

/// The configured payload keys; the first seals. Cheap to share behind an `Arc`.
pub struct KeyRing {
    /// Never empty: a deployment without keys has no ring at all.
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("ids", &self.ids())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A ring of `keys` (current first); `None` when there are none.
    pub fn new(keys: &[PayloadKey]) -> Option<Self> {
        if keys.is_empty() {
            return None;
        }
        Some(Self {
            keys: keys
                .iter()
                .map(|k| (k.id.clone(), XChaCha20Poly1305::new(k.expose().into())))
                .collect(),
        })
    }

    /// The id of the key that seals.
    pub fn current(&self) -> &str {
        &self.keys[0].0
    }

    fn ids(&self) -> String {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        ids.join(", ")
    }

    /// Seal `plain` as `part` with the current key.
    pub fn seal(&self, part: Part<'_>, plain: &[u8]) -> String {
        let (kid, cipher) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce[..]);
        let aad = part.associated_data();
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any message a job can hold");
        let mut body = Vec::with_capacity(NONCE_LEN + sealed.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&sealed);
        let mut out =
            String::with_capacity(SEALED_PREFIX.len() + kid.len() + 1 + body.len() * 4 / 3 + 4);
        out.push_str(SEALED_PREFIX);
        out.push_str(kid);
        out.push(':');
        URL_SAFE_NO_PAD.encode_string(&body, &mut out);
        out
    }

    /// Open a value [`KeyRing::seal`] made for the same `part`.
    pub fn open(&self, part: Part<'_>, sealed: &str) -> Result<Vec<u8>, SealError> {
        let (kid, body) = split(sealed)?;
        let Some((_, cipher)) = self.keys.iter().find(|(id, _)| id == kid) else {
            return Err(SealError::UnknownKey {
                kid: kid.to_owned(),
                known: self.ids(),
            });
        };
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SealError::Malformed("not base64url"))?;
        if body.len() < NONCE_LEN {
            return Err(SealError::Malformed("too short"));
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let aad = part.associated_data();
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Forged(kid.to_owned()))
    }
}

/// Whether `text` is a sealed value (rather than plain data).
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(SEALED_PREFIX)
}

/// The key id a sealed value names.
pub fn key_id(sealed: &str) -> Option<&str> {
    split(sealed).ok().map(|(kid, _)| kid)
}

fn split(sealed: &str) -> Result<(&str, &str), SealError> {
    sealed
        .strip_prefix(SEALED_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .ok_or(SealError::Malformed("not $sealed:v1:<key id>:<data>"))
}

/// Seal a job's arguments (JSON) into the JSON string the envelope stores instead.
pub fn seal_args(ring: &KeyRing, kind: &str, args: &RawValue) -> Box<RawValue> {
    let sealed = ring.seal(Part::Args { kind }, args.get().as_bytes());
    // The sealed text needs no escaping: prefix, key id and base64url are all plain ASCII.
    RawValue::from_string(format!("\"{sealed}\"")).expect("a quoted sealed value is JSON")
}

/// The plaintext arguments of a job of `kind`: `args` itself when stored in clear, else
/// opened with `ring`.
pub fn open_args<'a>(
    ring: Option<&KeyRing>,
    kind: &str,
    args: &'a RawValue,
) -> Result<Cow<'a, RawValue>, SealError> {
    let Some(sealed) = sealed_text(args.get()) else {
        return Ok(Cow::Borrowed(args));
    };
    let plain = open_text(ring, Part::Args { kind }, sealed)?;
    RawValue::from_string(plain)
        .map(Cow::Owned)
        .map_err(|_| SealError::Malformed("opened arguments are not JSON"))
}

/// Open a sealed text value (an error, a result) with `ring`; plain text comes back as is.
pub fn open_text(ring: Option<&KeyRing>, part: Part<'_>, text: &str) -> Result<String, SealError> {
    if !is_sealed(text) {
        return Ok(text.to_owned());
    }
    let ring = ring.ok_or_else(|| SealError::NoKeys(key_id(text).unwrap_or("?").to_owned()))?;
    String::from_utf8(ring.open(part, text)?)
        .map_err(|_| SealError::Malformed("opened data is not UTF-8"))
}

/// The sealed text inside a JSON string `"$sealed:..."`, if `json` is one.
fn sealed_text(json: &str) -> Option<&str> {
    json.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .filter(|s| is_sealed(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(ids: &[(&str, u8)]) -> KeyRing {
        let keys: Vec<_> = ids
            .iter()
            .map(|(id, b)| PayloadKey::new(id, [*b; 32]).unwrap())
            .collect();
        KeyRing::new(&keys).unwrap()
    }

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    const ARGS: &str = r#"{"to":"+14155550123","name":"Dana Ruiz"}"#;

    #[test]
    fn round_trip_hides_the_plaintext_and_varies_the_nonce() {
        let r = ring(&[("k1", 1)]);
        let sealed = seal_args(&r, "notify.sms", &raw(ARGS));
        let text = sealed.get();
        assert!(text.starts_with("\"$sealed:v1:k1:"), "{text}");
        assert!(
            !text.contains("14155550123") && !text.contains("Dana"),
            "{text}"
        );
        let opened = open_args(Some(&r), "notify.sms", &sealed).unwrap();
        assert_eq!(opened.get(), ARGS);
        let again = seal_args(&r, "notify.sms", &raw(ARGS));
        assert_ne!(again.get(), text, "a fresh nonce per seal");
        // The sealed form is a JSON string, as the envelope stores it.
        assert!(serde_json::from_str::<String>(text).is_ok());
    }

    #[test]
    fn plain_arguments_pass_through_with_or_without_keys() {
        let plain = raw(ARGS);
        for r in [None, Some(ring(&[("k1", 1)]))] {
            let opened = open_args(r.as_ref(), "notify.sms", &plain).unwrap();
            assert!(matches!(opened, Cow::Borrowed(_)));
            assert_eq!(opened.get(), ARGS);
        }
        let string = raw(r#""just a string""#);
        assert_eq!(open_args(None, "k", &string).unwrap().get(), string.get());
    }

    #[test]
    fn any_changed_byte_is_detected() {
        let r = ring(&[("k1", 1)]);
        let sealed = r.seal(
            Part::Error { kind: "notify.sms" },
            b"no route to +14155550123",
        );
        let body_at = SEALED_PREFIX.len() + 3;
        for at in [body_at, body_at + 20, sealed.len() - 1] {
            let mut bytes = sealed.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            let e = r
                .open(Part::Error { kind: "notify.sms" }, &tampered)
                .unwrap_err();
            assert!(
                matches!(e, SealError::Forged(_) | SealError::Malformed(_)),
                "{at}: {e}"
            );
        }
        let cut = &sealed[..SEALED_PREFIX.len() + 10];
        assert!(r.open(Part::Error { kind: "notify.sms" }, cut).is_err());
    }

    #[test]
    fn a_value_sealed_for_one_kind_or_role_does_not_open_as_another() {
        let r = ring(&[("k1", 1)]);
        let sealed = seal_args(&r, "notify.sms", &raw(ARGS));
        let e = open_args(Some(&r), "notify.email", &sealed).unwrap_err();
        assert_eq!(e, SealError::Forged("k1".into()));
        assert!(e.to_string().contains("another job kind"), "{e}");
        let err = r.seal(Part::Error { kind: "notify.sms" }, ARGS.as_bytes());
        let as_args = raw(&format!("\"{err}\""));
        assert!(open_args(Some(&r), "notify.sms", &as_args).is_err());
        let result = r.seal(Part::Result { id: "01A" }, b"{}");
        assert!(r.open(Part::Result { id: "01B" }, &result).is_err());
        assert_eq!(r.open(Part::Result { id: "01A" }, &result).unwrap(), b"{}");
    }

    #[test]
    fn rotation_opens_old_keys_and_names_a_missing_one() {
        let old = ring(&[("k1", 1)]);
        let sealed = seal_args(&old, "webhook.retell", &raw(ARGS));
        let rotated = ring(&[("k2", 2), ("k1", 1)]);
        assert_eq!(rotated.current(), "k2");
        let opened = open_args(Some(&rotated), "webhook.retell", &sealed).unwrap();
        assert_eq!(opened.get(), ARGS);
        assert!(seal_args(&rotated, "x", &raw("1")).get().contains(":k2:"));

        let only_new = ring(&[("k2", 2)]);
        let e = open_args(Some(&only_new), "webhook.retell", &sealed).unwrap_err();
        assert!(matches!(e, SealError::UnknownKey { ref kid, .. } if kid == "k1"));
        assert!(e.to_string().contains("\"k1\""), "{e}");
        let e = open_args(None, "webhook.retell", &sealed).unwrap_err();
        assert_eq!(e, SealError::NoKeys("k1".into()));
        // Same id, different key material: it does not open, and says so.
        let impostor = ring(&[("k1", 9)]);
        let e = open_args(Some(&impostor), "webhook.retell", &sealed).unwrap_err();
        assert_eq!(e, SealError::Forged("k1".into()));
    }

    #[test]
    fn debug_names_key_ids_only() {
        let printed = format!("{:?}", ring(&[("k2", 2), ("k1", 1)]));
        assert!(printed.contains("k2, k1"), "{printed}");
        assert!(!printed.contains("[2, 2"), "{printed}");
    }
}
