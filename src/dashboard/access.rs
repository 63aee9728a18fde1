//! What a request that got past the guard is: how it got in ([`Access`]), and the one
//! constant-time comparison every secret check uses. Both the guard (`auth.rs`) and the CSRF
//! rules (`csrf.rs`) depend on this file, and it on neither.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::session::Session;

/// How a request got in.
#[derive(Debug, Clone)]
pub enum Access {
    Bearer,
    Basic,
    Session(Session),
    /// No credentials configured, an API call without a session.
    Open,
}

impl Access {
    /// The CSRF token to put in forms (empty when the access needs none).
    pub fn csrf(&self) -> &str {
        match self {
            Self::Session(s) => &s.csrf,
            Self::Bearer | Self::Basic | Self::Open => "",
        }
    }
}

/// Constant-time equality of two secrets of any length.
pub fn secret_eq(given: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.ct_eq(&b).into()
}
