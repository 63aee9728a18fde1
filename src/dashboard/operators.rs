//! Named operators: who may log in to the dashboard besides the shared credentials, with
//! which [`Role`].
//!
//! They come from `SWITCHBOARD_DASHBOARD_OPERATORS` only, as `<name>:<role>:<hash>` entries
//! separated by spaces, newlines or `;`, where the hash is an argon2 PHC string
//! (`switchboard hash-password` prints one). No password is ever configured in clear.
//!
//! An argon2 check costs tens of milliseconds of CPU by design; HTTP basic auth repeats the
//! password on every request, so a successful check is remembered for [`REMEMBER`] under a
//! SHA-256 digest of name and password (never the password itself). Failures are never
//! remembered: they are throttled instead (`throttle`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString},
};
use sha2::{Digest, Sha256};

use super::access::{Role, Who};

/// How long a verified name and password are remembered.
pub const REMEMBER: Duration = Duration::from_secs(60);

/// Most remembered verifications (the memory is cleared when full).
const REMEMBER_MAX: usize = 1024;

/// One configured operator.
#[derive(Clone)]
struct Operator {
    name: String,
    role: Role,
    hash: String,
}

/// Verified name-and-password digests, with who they are and when they were verified.
type Verified = HashMap<[u8; 32], (Who, Instant)>;

/// The configured operators. Cheap to clone.
#[derive(Clone, Default)]
pub struct Operators {
    list: Arc<Vec<Operator>>,
    verified: Arc<Mutex<Verified>>,
}

impl std::fmt::Debug for Operators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .list
            .iter()
            .map(|o| format!("{}:{}", o.name, o.role))
            .collect();
        write!(f, "Operators({})", names.join(", "))
    }
}

impl Operators {
    /// Parse the variable's value; one line naming the entry that is wrong.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut list: Vec<Operator> = Vec::new();
        for (i, entry) in raw
            .split(|c: char| c == ';' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let n = i + 1;
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "SWITCHBOARD_DASHBOARD_OPERATORS entry {n} is not <name>:<role>:<argon2 hash>"
                ));
            };
            if !valid_name(name) {
                return Err(format!(
                    "SWITCHBOARD_DASHBOARD_OPERATORS entry {n}: name {name:?} must be 1 to 64 of letters, digits, '.', '_', '-' or '@'"
                ));
            }
            let Some(role) = Role::parse(role) else {
                return Err(format!(
                    "SWITCHBOARD_DASHBOARD_OPERATORS entry {n} ({name}): role {role:?} must be viewer, operator or admin"
                ));
            };
            if PasswordHash::new(hash).is_err() || !hash.starts_with("$argon2") {
                return Err(format!(
                    "SWITCHBOARD_DASHBOARD_OPERATORS entry {n} ({name}): the hash is not an argon2 PHC string (make one with `switchboard hash-password`)"
                ));
            }
            if list.iter().any(|o| o.name == name) {
                return Err(format!(
                    "SWITCHBOARD_DASHBOARD_OPERATORS names {name} twice"
                ));
            }
            list.push(Operator {
                name: name.to_owned(),
                role,
                hash: hash.to_owned(),
            });
        }
        Ok(Self {
            list: Arc::new(list),
            verified: Arc::default(),
        })
    }

    /// Whether any operator is configured.
    pub fn is_set(&self) -> bool {
        !self.list.is_empty()
    }

    /// Whether an operator of that name exists.
    pub fn has(&self, name: &str) -> bool {
        self.list.iter().any(|o| o.name == name)
    }

    /// The operator `name` if `password` is theirs. Runs argon2 off the async threads.
    pub async fn verify(&self, name: &str, password: &str) -> Option<Who> {
        if self.list.is_empty() {
            return None;
        }
        let digest: [u8; 32] = Sha256::new()
            .chain_update(name.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        if let Some((who, at)) = self.verified.lock().expect("operators lock").get(&digest)
            && at.elapsed() < REMEMBER
        {
            return Some(who.clone());
        }
        // An unknown name is checked against some hash all the same, so the answer takes as
        // long as for a known one.
        let known = self.list.iter().find(|o| o.name == name);
        let (hash, who) = match known {
            Some(o) => (
                o.hash.clone(),
                Some(Who {
                    name: o.name.clone(),
                    role: o.role,
                }),
            ),
            None => (self.list[0].hash.clone(), None),
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        let who = who.filter(|_| ok)?;
        let mut verified = self.verified.lock().expect("operators lock");
        if verified.len() >= REMEMBER_MAX {
            verified.clear();
        }
        verified.insert(digest, (who.clone(), Instant::now()));
        Some(who)
    }
}

/// An operator name: it is shown on pages and kept in the audit trail and session values.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// An argon2id PHC string for `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn operators_verify_their_own_password_only() {
        let alice = hash_password("alice-pw").unwrap();
        let bob = hash_password("bob-pw").unwrap();
        let ops = Operators::parse(&format!("alice:operator:{alice};\n bob:viewer:{bob}")).unwrap();
        let who = ops.verify("alice", "alice-pw").await.unwrap();
        assert_eq!((who.name.as_str(), who.role), ("alice", Role::Operator));
        // Remembered, and still right.
        assert_eq!(ops.verify("alice", "alice-pw").await, Some(who));
        assert_eq!(ops.verify("alice", "bob-pw").await, None);
        assert_eq!(
            ops.verify("bob", "bob-pw").await.unwrap().role,
            Role::Viewer
        );
        assert_eq!(ops.verify("carol", "alice-pw").await, None);
        assert!(format!("{ops:?}").contains("bob:viewer"));
        assert!(!format!("{ops:?}").contains("argon2"));
    }

    #[test]
    fn bad_entries_name_themselves() {
        let h = hash_password("x").unwrap();
        for (raw, says) in [
            ("alice", "entry 1 is not"),
            (&format!("al ice:viewer:{h}")[..], "entry 1"),
            (&format!("alice:root:{h}")[..], "role \"root\""),
            ("alice:viewer:plaintext", "not an argon2"),
            (&format!("a:viewer:{h} a:admin:{h}")[..], "names a twice"),
        ] {
            let err = Operators::parse(raw).unwrap_err();
            assert!(err.contains(says), "{raw}: {err}");
            assert!(!err.contains("$argon2"), "{err}");
        }
        assert!(!Operators::parse("").unwrap().is_set());
    }
}
