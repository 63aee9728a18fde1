//! A credential that never prints: API keys, auth tokens, passwords, webhook secrets.
//!
//! The runtime reads every secret once, at start-up, and hands them to the clients as
//! [`Secret`] values; this crate never reads the environment. `Debug` and `Display` print
//! `[redacted]`, so a secret inside a settings struct, a client or an error message cannot
//! leak through logging. The only way to the text is [`Secret::expose`], and its callers are
//! the few places that must send it (an `Authorization` header, an SMTP login).

use std::fmt;

/// What `Debug` and `Display` print instead of the value.
pub const REDACTED: &str = "[redacted]";

/// A secret string. Compared by value (`PartialEq`) only where that is not a timing risk:
/// tests and configuration, never an incoming credential check.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the request that must carry it. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty (an empty secret counts as not configured).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_prints_redacted_and_exposes_its_value() {
        let s = Secret::new("sk_live_hunter2");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([redacted])");
        assert_eq!(s.expose(), "sk_live_hunter2");
        assert_eq!(Secret::from("sk_live_hunter2".to_owned()), s);
        assert!(Secret::default().is_empty() && !s.is_empty());
    }
}
