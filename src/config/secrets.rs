//! Every secret the program uses, read once from the environment at start-up
//! ([`Secrets::from_env`], called by `Settings::load`) and never from a file, so no committed
//! configuration can hold one. Everything else takes its credentials from here: the provider
//! clients, ingest's webhook secrets and the dashboard's credentials, so the environment is
//! read in one place.
//!
//! An unset variable and an empty one are the same: not configured. The three webhook
//! secrets are comma-separated lists, so a secret can be rotated (any one of them passes).
//! `Debug` says only which secrets are set, never a value.

use std::fmt;

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
        }
    }
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
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const ENV: [(&str, &str); 11] = [
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
}
