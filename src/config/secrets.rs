//! Every secret the program uses, read once from the environment at start-up
//! ([`Secrets::from_env`], called by `Settings::load`) and never from a file, so no committed
//! configuration can hold one. Everything else takes its credentials from here: the provider
//! clients, ingest's webhook secrets and the dashboard's credentials, so the environment is
//! read in one place.
//!
//! An unset variable and an empty one are the same: not configured. The three webhook
//! secrets are comma-separated lists, so a secret can be rotated (any one of them passes).
//! `Debug` says only which secrets are set, never a value.
//!
//! `SWITCHBOARD_PAYLOAD_KEYS` is a list too, of `id:<base64 of 32 bytes>`: the first key
//! seals job payloads in Redis, every key opens them ([`Secrets::payload_keys`] parses it; a
//! problem with it is one line naming the entry, never the key).

use std::fmt;

use base64::Engine as _;
use switchboard_jobs::Secret;

/// The secrets, each `None` (or empty) when not configured.
#[derive(Clone, Default)]
pub struct Secrets {
    /// `RETELL_WEBHOOK_KEY`: the Retell API key(s) webhooks are signed with.
    pub retell_webhook_keys: Vec<Secret>,
    /// `CALCOM_WEBHOOK_SECRET`: Cal.com's webhook signing secret(s).
    pub calcom_webhook_secrets: Vec<Secret>,
    /// `STRIPE_WEBHOOK_SECRET`: Stripe's endpoint signing secret(s) (`whsec_...`).
    pub stripe_webhook_secrets: Vec<Secret>,
    /// `CALCOM_API_KEY`: for companies without a Cal.com key of their own.
    pub calcom_api_key: Option<Secret>,
    /// `STRIPE_SECRET_KEY`: reports usage to Stripe.
    pub stripe_secret_key: Option<Secret>,
    /// `SMS_ACCOUNT_SID`: the SMS gateway account.
    pub sms_account_sid: Option<Secret>,
    /// `SMS_AUTH_TOKEN`: the SMS gateway account's token.
    pub sms_auth_token: Option<Secret>,
    /// `SMTP_USERNAME`: the SMTP login (with the password, or neither).
    pub smtp_username: Option<Secret>,
    /// `SMTP_PASSWORD`.
    pub smtp_password: Option<Secret>,
    /// `SWITCHBOARD_DASHBOARD_TOKEN`: the dashboard's bearer token.
    pub dashboard_token: Option<Secret>,
    /// `SWITCHBOARD_DASHBOARD_PASSWORD`: the password of `dashboard.username`.
    pub dashboard_password: Option<Secret>,
    /// `SWITCHBOARD_DASHBOARD_OPERATORS`: named operators, `<name>:<role>:<argon2 PHC hash>`
    /// separated by spaces, newlines or `;` (hashes, never passwords).
    pub dashboard_operators: Option<Secret>,
    /// `SWITCHBOARD_PAYLOAD_KEYS`: the keys job payloads are sealed with in Redis, as given
    /// (parsed by [`Secrets::payload_keys`]).
    pub payload_keys: Option<Secret>,
}

impl Secrets {
    /// Read every secret from the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read every secret through `lookup` (variable name -> value), as [`Secrets::from_env`]
    /// does with the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let one = |name: &str| lookup(name).filter(|v| !v.is_empty()).map(Secret::from);
        let list = |name: &str| lookup(name).map_or_else(Vec::new, |v| split(&v));
        Self {
            retell_webhook_keys: list("RETELL_WEBHOOK_KEY"),
            calcom_webhook_secrets: list("CALCOM_WEBHOOK_SECRET"),
            stripe_webhook_secrets: list("STRIPE_WEBHOOK_SECRET"),
            calcom_api_key: one("CALCOM_API_KEY"),
            stripe_secret_key: one("STRIPE_SECRET_KEY"),
            sms_account_sid: one("SMS_ACCOUNT_SID"),
            sms_auth_token: one("SMS_AUTH_TOKEN"),
            smtp_username: one("SMTP_USERNAME"),
            smtp_password: one("SMTP_PASSWORD"),
            dashboard_token: one("SWITCHBOARD_DASHBOARD_TOKEN"),
            dashboard_password: one("SWITCHBOARD_DASHBOARD_PASSWORD"),
            dashboard_operators: one("SWITCHBOARD_DASHBOARD_OPERATORS"),
            payload_keys: one("SWITCHBOARD_PAYLOAD_KEYS"),
        }
    }

    /// The payload keys, current (sealing) key first; empty when none is configured. The
    /// error is one line naming the entry at fault, never a key's value.
    pub fn payload_keys(&self) -> Result<Vec<PayloadKey>, String> {
        self.payload_keys
            .as_ref()
            .map_or_else(|| Ok(Vec::new()), |raw| parse_payload_keys(raw.expose()))
    }
}

/// Longest payload key id: it is written into every sealed value.
const KEY_ID_MAX: usize = 32;

/// One key that seals and opens job payloads. `Debug` shows its id only.
#[derive(Clone, PartialEq, Eq)]
pub struct PayloadKey {
    /// Short name written next to everything sealed with it, so the key that opens it is
    /// found without trying each: 1 to 32 of letters, digits, `_` and `-`.
    pub id: String,
    key: [u8; 32],
}

impl PayloadKey {
    /// A key named `id` (checked as in `SWITCHBOARD_PAYLOAD_KEYS`).
    pub fn new(id: &str, key: [u8; 32]) -> Result<Self, String> {
        let ok = !id.is_empty()
            && id.len() <= KEY_ID_MAX
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(format!(
                "payload key id {id:?} must be 1 to {KEY_ID_MAX} of letters, digits, '_' and '-'"
            ));
        }
        Ok(Self {
            id: id.to_owned(),
            key,
        })
    }

    /// The key material, for the cipher. Never log it.
    pub fn expose(&self) -> &[u8; 32] {
        &self.key
    }
}

impl fmt::Debug for PayloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayloadKey")
            .field("id", &self.id)
            .field("key", &switchboard_jobs::secret::REDACTED)
            .finish()
    }
}

/// Parse `id:<base64>,id:<base64>` (standard or URL-safe base64, padded or not).
fn parse_payload_keys(raw: &str) -> Result<Vec<PayloadKey>, String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let at = |n: usize| format!("SWITCHBOARD_PAYLOAD_KEYS entry {n}");
    let mut keys: Vec<PayloadKey> = Vec::new();
    for (i, entry) in raw.split(',').map(str::trim).enumerate() {
        let n = i + 1;
        if entry.is_empty() {
            continue;
        }
        let Some((id, b64)) = entry.split_once(':') else {
            return Err(format!(
                "{}: expected <id>:<base64 of 32 bytes> (e.g. k1:$(openssl rand -base64 32))",
                at(n)
            ));
        };
        let id = id.trim();
        let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(b64.trim()).ok())
            .ok_or_else(|| format!("{} (key {id:?}): the key is not valid base64", at(n)))?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "{} (key {id:?}): the key is {} bytes, it must be exactly 32",
                at(n),
                bytes.len()
            )
        })?;
        let key = PayloadKey::new(id, key).map_err(|e| format!("{}: {e}", at(n)))?;
        if keys.iter().any(|k| k.id == key.id) {
            return Err(format!("{}: key id {id:?} appears twice", at(n)));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// A comma-separated list, trimmed, blanks dropped.
fn split(raw: &str) -> Vec<Secret> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Secret::from)
        .collect()
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one = |s: &Option<Secret>| if s.is_some() { "set" } else { "unset" };
        let list = |l: &Vec<Secret>| format!("{} set", l.len());
        f.debug_struct("Secrets")
            .field("retell_webhook_keys", &list(&self.retell_webhook_keys))
            .field(
                "calcom_webhook_secrets",
                &list(&self.calcom_webhook_secrets),
            )
            .field(
                "stripe_webhook_secrets",
                &list(&self.stripe_webhook_secrets),
            )
            .field("calcom_api_key", &one(&self.calcom_api_key))
            .field("stripe_secret_key", &one(&self.stripe_secret_key))
            .field("sms_account_sid", &one(&self.sms_account_sid))
            .field("sms_auth_token", &one(&self.sms_auth_token))
            .field("smtp_username", &one(&self.smtp_username))
            .field("smtp_password", &one(&self.smtp_password))
            .field("dashboard_token", &one(&self.dashboard_token))
            .field("dashboard_password", &one(&self.dashboard_password))
            .field("dashboard_operators", &one(&self.dashboard_operators))
            .field("payload_keys", &one(&self.payload_keys))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const ENV: [(&str, &str); 12] = [
        ("RETELL_WEBHOOK_KEY", "key_retell_a1, key_retell_b2"),
        ("CALCOM_WEBHOOK_SECRET", "cal_whsec_c3"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_d4,,whsec_e5 "),
        ("CALCOM_API_KEY", "cal_live_f6"),
        ("STRIPE_SECRET_KEY", "sk_live_g7"),
        ("SMS_ACCOUNT_SID", "AC_h8"),
        ("SMS_AUTH_TOKEN", "token_i9"),
        ("SMTP_USERNAME", "mailer_j10"),
        ("SMTP_PASSWORD", "hunter2_k11"),
        ("SWITCHBOARD_DASHBOARD_TOKEN", "dash_token_l12"),
        ("SWITCHBOARD_DASHBOARD_PASSWORD", "dash_pass_m13"),
        (
            "SWITCHBOARD_PAYLOAD_KEYS",
            "k2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=, k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
        ),
    ];

    fn loaded() -> Secrets {
        let env: HashMap<&str, &str> = ENV.into_iter().collect();
        Secrets::from_lookup(|name| env.get(name).map(|v| (*v).to_owned()))
    }

    #[test]
    fn every_secret_is_read_and_lists_split() {
        let s = loaded();
        let texts = |l: &[Secret]| l.iter().map(|s| s.expose().to_owned()).collect::<Vec<_>>();
        assert_eq!(
            texts(&s.retell_webhook_keys),
            ["key_retell_a1", "key_retell_b2"]
        );
        assert_eq!(texts(&s.calcom_webhook_secrets), ["cal_whsec_c3"]);
        assert_eq!(texts(&s.stripe_webhook_secrets), ["whsec_d4", "whsec_e5"]);
        let one = |o: &Option<Secret>| o.as_ref().map(|s| s.expose().to_owned());
        assert_eq!(one(&s.calcom_api_key).as_deref(), Some("cal_live_f6"));
        assert_eq!(one(&s.stripe_secret_key).as_deref(), Some("sk_live_g7"));
        assert_eq!(one(&s.sms_account_sid).as_deref(), Some("AC_h8"));
        assert_eq!(one(&s.sms_auth_token).as_deref(), Some("token_i9"));
        assert_eq!(one(&s.smtp_username).as_deref(), Some("mailer_j10"));
        assert_eq!(one(&s.smtp_password).as_deref(), Some("hunter2_k11"));
        assert_eq!(one(&s.dashboard_token).as_deref(), Some("dash_token_l12"));
        assert_eq!(one(&s.dashboard_password).as_deref(), Some("dash_pass_m13"));
    }

    #[test]
    fn debug_prints_no_value() {
        let printed = format!("{:?}", loaded());
        for (name, raw) in ENV {
            for value in raw.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                assert!(!printed.contains(value), "{name}: {printed}");
            }
        }
        assert!(printed.contains("calcom_api_key: \"set\""), "{printed}");
        assert!(
            printed.contains("retell_webhook_keys: \"2 set\""),
            "{printed}"
        );
    }

    #[test]
    fn unset_and_empty_are_the_same() {
        let empty = Secrets::from_lookup(|_| Some(String::new()));
        let unset = Secrets::from_lookup(|_| None);
        for s in [empty, unset] {
            assert!(s.calcom_api_key.is_none() && s.smtp_password.is_none());
            assert!(s.dashboard_token.is_none() && s.sms_auth_token.is_none());
            assert!(s.retell_webhook_keys.is_empty() && s.stripe_webhook_secrets.is_empty());
        }
        let blanks = Secrets::from_lookup(|_| Some(" , ".into()));
        assert!(blanks.calcom_webhook_secrets.is_empty());
    }

    #[test]
    fn payload_keys_parse_current_first() {
        let keys = loaded().payload_keys().unwrap();
        let ids: Vec<_> = keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["k2", "k1"]);
        assert_eq!(keys[0].expose(), &[2; 32]);
        assert_eq!(keys[1].expose(), &[1; 32]);
        assert!(!format!("{keys:?}").contains("AgIC"), "{keys:?}");
        assert!(Secrets::default().payload_keys().unwrap().is_empty());
    }

    #[test]
    fn bad_payload_keys_are_one_clear_line_without_the_key() {
        let with = |raw: &str| {
            Secrets::from_lookup(|name| (name == "SWITCHBOARD_PAYLOAD_KEYS").then(|| raw.into()))
                .payload_keys()
                .unwrap_err()
        };
        let good = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        let short = "AQEBAQEBAQEBAQEBAQEBAQ==";
        for (raw, says) in [
            ("k1:not*base64!".to_owned(), "not valid base64"),
            (format!("k1:{short}"), "16 bytes, it must be exactly 32"),
            (format!("k1:{good},k1:{good}"), "\"k1\" appears twice"),
            (good.to_owned(), "expected <id>:<base64"),
            (format!("k 1:{good}"), "must be 1 to 32 of letters"),
        ] {
            let e = with(&raw);
            assert!(e.contains(says), "{raw}: {e}");
            assert!(e.starts_with("SWITCHBOARD_PAYLOAD_KEYS entry"), "{e}");
            assert!(
                !e.contains(good) && !e.contains(short) && !e.contains('\n'),
                "{e}"
            );
        }
    }
}
