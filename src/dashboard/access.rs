//! What a request that got past the guard is: who it is, with which role ([`Who`], [`Role`]),
//! how it got in ([`Access`]), and the one constant-time comparison every secret check uses.
//! The guard (`auth.rs`), the CSRF rules (`csrf.rs`) and the handlers depend on this file, and
//! it on none of them.

use std::{fmt, net::SocketAddr};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything; personal data (phone numbers, emails, names, transcripts) masked.
    Viewer,
    /// A viewer who may also retry, forget, pause and continue.
    Operator,
    /// An operator who also sees personal data in payloads and errors.
    Admin,
}

impl Role {
    /// Whether this role may change anything (retry, forget, pause, continue).
    pub fn may_change(self) -> bool {
        self >= Self::Operator
    }

    /// Whether payloads and errors are shown with personal data in clear.
    pub fn sees_personal(self) -> bool {
        self == Self::Admin
    }

    /// The role's name, as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a request is, as far as the audit trail and the permission checks are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// Operator name (`dashboard.username` for the shared credentials, `local` for open access).
    pub name: String,
    pub role: Role,
}

/// A logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The cookie value (never logged).
    pub id: String,
    /// The token every state-changing form of this session must carry.
    pub csrf: String,
    /// Who logged in.
    pub who: Who,
}

/// How a request got in, and who it is.
#[derive(Debug, Clone)]
pub enum Access {
    Bearer(Who),
    Basic(Who),
    Session(Session),
    /// No credentials configured, an API call without a session.
    Open,
}

/// The name open (credential-less, loopback only) access is recorded under.
pub const OPEN_NAME: &str = "local";

impl Access {
    /// The CSRF token to put in forms (empty when the access needs none).
    pub fn csrf(&self) -> &str {
        match self {
            Self::Session(s) => &s.csrf,
            Self::Bearer(_) | Self::Basic(_) | Self::Open => "",
        }
    }

    /// Who this is. Open access is the local administrator (only loopback gets it).
    pub fn who(&self) -> Who {
        match self {
            Self::Bearer(w) | Self::Basic(w) => w.clone(),
            Self::Session(s) => s.who.clone(),
            Self::Open => Who {
                name: OPEN_NAME.to_owned(),
                role: Role::Admin,
            },
        }
    }

    /// The role in force.
    pub fn role(&self) -> Role {
        match self {
            Self::Bearer(w) | Self::Basic(w) => w.role,
            Self::Session(s) => s.who.role,
            Self::Open => Role::Admin,
        }
    }
}

/// The client's address, as the HTTP listener saw it (set by the guard for the handlers).
#[derive(Debug, Clone, Copy)]
pub struct Client(pub Option<SocketAddr>);

impl Client {
    /// The address for the audit trail (`unknown` when the listener did not say).
    pub fn audit(&self) -> String {
        self.0
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_their_permissions() {
        for (name, change, personal) in [
            ("viewer", false, false),
            ("operator", true, false),
            ("admin", true, true),
        ] {
            let r = Role::parse(name).unwrap();
            assert_eq!(r.as_str(), name);
            assert_eq!(r.may_change(), change, "{name}");
            assert_eq!(r.sees_personal(), personal, "{name}");
        }
        assert_eq!(Role::parse("root"), None);
    }
}
