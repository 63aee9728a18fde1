//! API keys for the app's enqueue API, separate from the dashboard's credentials.
//!
//! A key is `sbk_<id>_<secret>`: `id` names its record, `secret` is 32 random bytes (hex).
//! The key is shown once, when it is created; Redis keeps only the SHA-256 of the secret, in
//! one hash per deployment (`{<prefix>:apikeys}:records`, id -> record JSON). Redis, not the
//! database, because every host that answers the API reaches Redis already (ingest hosts may
//! have no database), a revocation takes effect fleet-wide at the next request, and the
//! per-key rate limit lives there too. A plain hash is enough for a 256-bit random secret (a
//! slow password hash guards guessable passwords; nobody guesses 2^256), and it is compared in
//! constant time.
//!
//! Scopes say what a key may enqueue: a kind (`calendar.book`), a family (`notify.*`), a whole
//! queue (`queue:calendar`) or everything (`*`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::queue::{QueueError, Queues, job};

/// What a key may do, as stored (without its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The key's id, part of the key itself.
    pub id: String,
    /// Who uses it (`laravel`); audit records name it.
    pub name: String,
    /// Hex SHA-256 of the secret.
    #[serde(rename = "sha256")]
    pub digest: String,
    /// Kinds, families (`notify.*`), queues (`queue:<name>`) or `*`.
    pub scopes: Vec<String>,
    /// Requests per minute allowed, fleet-wide.
    pub rate_per_minute: u32,
    /// When it was made, ms since the epoch.
    pub created_ms: u64,
    /// When it stops working, if ever.
    pub expires_ms: Option<u64>,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<u64>,
}

/// A key just made: its record and the key itself, shown this once.
#[derive(Debug)]
pub struct Issued {
    pub record: KeyRecord,
    pub key: String,
}

/// Why a presented key does not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("not an API key")]
    Malformed,
    #[error("unknown API key")]
    Unknown,
    #[error("the API key was revoked")]
    Revoked,
    #[error("the API key has expired")]
    Expired,
}

/// Failures of key management.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("a key record does not decode: {0}")]
    Record(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
}

impl From<redis::RedisError> for KeyError {
    fn from(e: redis::RedisError) -> Self {
        Self::Queue(e.into())
    }
}

/// What a new key is for.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub scopes: Vec<String>,
    pub rate_per_minute: u32,
    pub expires_ms: Option<u64>,
}

/// The keys of one deployment (one key prefix).
#[derive(Clone)]
pub struct ApiKeys {
    queues: Queues,
    records: String,
}

const KEY_PREFIX: &str = "sbk_";

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A scope as written: a kind or family name, `queue:<name>`, or `*`.
fn check_scope(scope: &str) -> Result<(), KeyError> {
    let body = scope.strip_prefix("queue:").unwrap_or(scope);
    let body = body.strip_suffix(".*").unwrap_or(body);
    let ok = scope == "*"
        || (!body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')));
    if ok {
        Ok(())
    } else {
        Err(KeyError::Invalid(format!(
            "scope {scope:?}: use a kind (calendar.book), a family (notify.*), a queue (queue:calendar) or *"
        )))
    }
}

impl KeyRecord {
    /// Whether this key may enqueue `kind` on `queue`.
    pub fn allows(&self, kind: &str, queue: &str) -> bool {
        self.scopes.iter().any(|s| {
            s == "*"
                || s.strip_prefix("queue:") == Some(queue)
                || s == kind
                || s.strip_suffix('*')
                    .is_some_and(|family| family.ends_with('.') && kind.starts_with(family))
        })
    }

    /// Whether it works at `now_ms` (neither revoked nor expired).
    pub fn check(&self, now_ms: u64) -> Result<(), Denied> {
        if self.revoked_ms.is_some() {
            return Err(Denied::Revoked);
        }
        if self.expires_ms.is_some_and(|at| at <= now_ms) {
            return Err(Denied::Expired);
        }
        Ok(())
    }
}

impl ApiKeys {
    /// The keys kept under `queues`' prefix.
    pub fn new(queues: Queues) -> Self {
        let records = format!("{{{}:apikeys}}:records", queues.settings().prefix);
        Self { queues, records }
    }

    /// Make a key; the key itself is in the answer and nowhere else. Refused when an
    /// unrevoked key already has `name`, or a scope is malformed.
    pub async fn create(&self, new: NewKey) -> Result<Issued, KeyError> {
        if new.name.trim().is_empty() || new.name.len() > 100 {
            return Err(KeyError::Invalid(
                "a key needs a name of 1 to 100 characters".into(),
            ));
        }
        if new.scopes.is_empty() {
            return Err(KeyError::Invalid(
                "a key needs at least one --scope (a kind, notify.*, queue:<name> or *)".into(),
            ));
        }
        for scope in &new.scopes {
            check_scope(scope)?;
        }
        if new.rate_per_minute == 0 {
            return Err(KeyError::Invalid(
                "--rate-per-minute must be at least 1".into(),
            ));
        }
        let now = job::now_ms();
        if self
            .list()
            .await?
            .iter()
            .any(|k| k.name == new.name && k.check(now).is_ok())
        {
            return Err(KeyError::Invalid(format!(
                "a key named {:?} exists: revoke it first, or pick another name",
                new.name
            )));
        }
        let id = hex::encode(rand::random::<[u8; 6]>());
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let record = KeyRecord {
            id: id.clone(),
            name: new.name,
            digest: digest(&secret),
            scopes: new.scopes,
            rate_per_minute: new.rate_per_minute,
            created_ms: now,
            expires_ms: new.expires_ms,
            revoked_ms: None,
        };
        let mut conn = self.queues.conn();
        let added: bool = redis::cmd("HSETNX")
            .arg(&self.records)
            .arg(&id)
            .arg(serde_json::to_string(&record)?)
            .query_async(&mut conn)
            .await?;
        if !added {
            return Err(KeyError::Invalid("key id collision; try again".into()));
        }
        Ok(Issued {
            record,
            key: format!("{KEY_PREFIX}{id}_{secret}"),
        })
    }

    /// Every key, oldest first (records only: no secret is kept).
    pub async fn list(&self) -> Result<Vec<KeyRecord>, KeyError> {
        let mut conn = self.queues.conn();
        let raw: Vec<String> = redis::cmd("HVALS")
            .arg(&self.records)
            .query_async(&mut conn)
            .await?;
        let mut keys = raw
            .iter()
            .map(|r| serde_json::from_str(r))
            .collect::<Result<Vec<KeyRecord>, _>>()?;
        keys.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(keys)
    }

    /// Revoke every unrevoked key named `name` (or with id `name`); how many.
    pub async fn revoke(&self, name: &str) -> Result<usize, KeyError> {
        let now = job::now_ms();
        let mut conn = self.queues.conn();
        let mut n = 0;
        for mut key in self.list().await? {
            if (key.name == name || key.id == name) && key.revoked_ms.is_none() {
                key.revoked_ms = Some(now);
                let () = redis::cmd("HSET")
                    .arg(&self.records)
                    .arg(&key.id)
                    .arg(serde_json::to_string(&key)?)
                    .query_async(&mut conn)
                    .await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The record of the key `presented`, when it is a working key.
    pub async fn authenticate(
        &self,
        presented: &str,
    ) -> Result<Result<KeyRecord, Denied>, KeyError> {
        let Some((id, secret)) = presented
            .strip_prefix(KEY_PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(Err(Denied::Malformed));
        };
        let mut conn = self.queues.conn();
        let raw: Option<String> = redis::cmd("HGET")
            .arg(&self.records)
            .arg(id)
            .query_async(&mut conn)
            .await?;
        let Some(raw) = raw else {
            return Ok(Err(Denied::Unknown));
        };
        let record: KeyRecord = serde_json::from_str(&raw)?;
        if !bool::from(digest(secret).as_bytes().ct_eq(record.digest.as_bytes())) {
            return Ok(Err(Denied::Unknown));
        }
        Ok(record.check(job::now_ms()).map(|()| record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(scopes: &[&str]) -> KeyRecord {
        KeyRecord {
            id: "a1".into(),
            name: "laravel".into(),
            digest: String::new(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            rate_per_minute: 60,
            created_ms: 0,
            expires_ms: None,
            revoked_ms: None,
        }
    }

    #[test]
    fn scopes_name_kinds_families_queues_or_everything() {
        let notify = record(&["notify.*"]);
        assert!(notify.allows("notify.email", "notifications"));
        assert!(!notify.allows("calendar.book", "calendar"));
        assert!(!notify.allows("notifyx.email", "notifications"));
        let queue = record(&["queue:calendar"]);
        assert!(queue.allows("calendar.book", "calendar"));
        assert!(!queue.allows("calendar.book", "webhooks"));
        assert!(record(&["calendar.book"]).allows("calendar.book", "calendar"));
        assert!(record(&["*"]).allows("billing.report_usage", "billing"));
        for bad in ["", "no spaces", "queue:", "a/b"] {
            assert!(check_scope(bad).is_err(), "{bad:?}");
        }
        for good in ["*", "notify.*", "queue:calendar", "calendar.book"] {
            assert!(check_scope(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn revoked_and_expired_keys_are_refused() {
        let mut key = record(&["*"]);
        assert_eq!(key.check(10), Ok(()));
        key.expires_ms = Some(10);
        assert_eq!(key.check(10), Err(Denied::Expired));
        key.revoked_ms = Some(5);
        assert_eq!(key.check(1), Err(Denied::Revoked));
    }
}
