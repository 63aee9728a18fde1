//! Browser sessions: a random id in a cookie (`HttpOnly`, `SameSite=Strict`, optionally `Secure`),
//! and in Redis, under the hash of that id, the session's CSRF token with the session's TTL.
//! Kept in Redis so every instance behind a load balancer knows every session and a restart
//! logs nobody out; only the hash is stored, so reading Redis does not yield a usable cookie.

use redis::AsyncCommands as _;
use sha2::{Digest, Sha256};

use super::access::{Role, Session, Who};
use crate::queue::{QueueError, Queues};

/// The session cookie's name.
pub const COOKIE: &str = "sb_dashboard";

/// The session store.
#[derive(Clone)]
pub struct Sessions {
    queues: Queues,
    ttl_secs: u64,
    secure: bool,
}

impl Sessions {
    pub fn new(queues: Queues, ttl_secs: u64, secure: bool) -> Self {
        Self {
            queues,
            ttl_secs,
            secure,
        }
    }

    /// Start a session for `who`.
    pub async fn create(&self, who: Who) -> Result<Session, QueueError> {
        let session = Session {
            id: random_token(),
            csrf: random_token(),
            who,
        };
        // `<csrf> <role> <name>`: names never hold spaces (see `operators`).
        let value = format!(
            "{} {} {}",
            session.csrf,
            session.who.role.as_str(),
            session.who.name
        );
        let mut conn = self.queues.conn();
        let () = conn
            .set_ex(self.key(&session.id), value, self.ttl_secs)
            .await?;
        Ok(session)
    }

    /// The session whose cookie value is `id`, if it exists and has not expired.
    pub async fn get(&self, id: &str) -> Result<Option<Session>, QueueError> {
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let mut conn = self.queues.conn();
        let value: Option<String> = conn.get(self.key(id)).await?;
        // A value in another shape (a session from before roles) is no session: log in again.
        Ok(value.and_then(|v| {
            let mut parts = v.splitn(3, ' ');
            let (csrf, role, name) = (parts.next()?, parts.next()?, parts.next()?);
            Some(Session {
                id: id.to_owned(),
                csrf: csrf.to_owned(),
                who: Who {
                    name: name.to_owned(),
                    role: Role::parse(role)?,
                },
            })
        }))
    }

    /// End a session.
    pub async fn delete(&self, id: &str) -> Result<(), QueueError> {
        let mut conn = self.queues.conn();
        let () = conn.del(self.key(id)).await?;
        Ok(())
    }

    /// The `Set-Cookie` value that carries `session`.
    pub fn cookie(&self, session: &Session) -> String {
        format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            session.id,
            self.ttl_secs,
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    fn key(&self, id: &str) -> String {
        let digest = Sha256::digest(id.as_bytes());
        format!(
            "{}:dashboard:session:{}",
            self.queues.settings().prefix,
            hex::encode(digest)
        )
    }
}

/// The session cookie's value in a `Cookie` header, if sent.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value)
        })
}

/// 32 random bytes as hex, from the thread-local CSPRNG.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}
