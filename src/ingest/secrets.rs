//! Webhook secrets, from the environment only (through `config::Secrets`). A variable may
//! hold a comma-separated list so secrets can be rotated: any one matching secret passes.
//! Never printed.

use std::fmt;

/// One provider's accepted secrets. `Debug` shows only how many there are.
#[derive(Clone, Default)]
pub struct SecretList(Vec<String>);

impl SecretList {
    /// Split a comma-separated list, dropping blanks.
    pub fn parse(raw: &str) -> Self {
        Self(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// The secrets in order.
    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.iter()
    }

    /// True when no secret is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretList({} secret(s), redacted)", self.0.len())
    }
}

/// The secrets of all three providers; `None` means the provider is not configured (its
/// route answers 404).
#[derive(Debug, Clone, Default)]
pub struct WebhookSecrets {
    pub retell: Option<SecretList>,
    pub calcom: Option<SecretList>,
    pub stripe: Option<SecretList>,
}

impl WebhookSecrets {
    /// `RETELL_WEBHOOK_KEY`, `CALCOM_WEBHOOK_SECRET` and `STRIPE_WEBHOOK_SECRET`, as loaded.
    pub fn new(secrets: &crate::config::Secrets) -> Self {
        let list = |l: &[switchboard_jobs::Secret]| {
            Some(SecretList(
                l.iter().map(|s| s.expose().to_owned()).collect(),
            ))
            .filter(|l| !l.is_empty())
        };
        Self {
            retell: list(&secrets.retell_webhook_keys),
            calcom: list(&secrets.calcom_webhook_secrets),
            stripe: list(&secrets.stripe_webhook_secrets),
        }
    }
}

impl WebhookSecrets {
    /// Fill unset providers with development secrets (only with dev stand-ins on).
    pub fn with_dev_defaults(&mut self, retell: &str, calcom: &str, stripe: &str) {
        for (slot, secret, var) in [
            (&mut self.retell, retell, "RETELL_WEBHOOK_KEY"),
            (&mut self.calcom, calcom, "CALCOM_WEBHOOK_SECRET"),
            (&mut self.stripe, stripe, "STRIPE_WEBHOOK_SECRET"),
        ] {
            if slot.is_none() {
                // Said once in the start-up block (`banner`).
                tracing::debug!(
                    "{var} is not set: using the published development secret (dev.stand_ins)"
                );
                *slot = Some(SecretList::parse(secret));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_and_never_print() {
        let l = SecretList::parse(" new_secret , old_secret,, ");
        assert_eq!(
            l.iter().cloned().collect::<Vec<_>>(),
            ["new_secret", "old_secret"]
        );
        assert_eq!(format!("{l:?}"), "SecretList(2 secret(s), redacted)");
        assert!(SecretList::parse(" , ").is_empty());
    }
}
