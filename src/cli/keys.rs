//! `switchboard keys create|list|revoke`: the app's API keys ([`crate::api::keys`]).

use clap::Subcommand;
use serde_json::json;

use super::{
    Refused,
    admin::{audit, connect},
};
use crate::{
    api::keys::{ApiKeys, KeyError, NewKey},
    audit::Entry,
    config::Settings,
    queue::job,
};

/// `switchboard keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Make a key and print it (shown this once; only its hash is kept).
    Create {
        /// Who uses it, e.g. laravel (audit records name it).
        #[arg(long)]
        name: String,
        /// What it may enqueue: a kind (calendar.book), a family (notify.*), a queue
        /// (queue:calendar) or *. Repeat for more.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Requests per minute, fleet-wide.
        #[arg(long, default_value_t = 600)]
        rate_per_minute: u32,
        /// Stop working after this many days.
        #[arg(long)]
        expires_days: Option<u64>,
    },
    /// List the keys (names, scopes, state; never a secret).
    List {
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Revoke the key with this name (or id) at once, fleet-wide.
    Revoke {
        /// The key's name or id.
        name: String,
    },
}

fn refused(e: KeyError) -> anyhow::Error {
    match e {
        KeyError::Invalid(text) => Refused(text).into(),
        other => other.into(),
    }
}

/// Run a `keys` action.
pub async fn run(settings: &Settings, action: KeysAction) -> anyhow::Result<()> {
    let queues = connect(settings).await?;
    let keys = ApiKeys::new(queues.clone());
    match action {
        KeysAction::Create {
            name,
            scopes,
            rate_per_minute,
            expires_days,
        } => {
            let issued = keys
                .create(NewKey {
                    name,
                    scopes,
                    rate_per_minute,
                    expires_ms: expires_days.map(|d| job::now_ms() + d * 86_400_000),
                })
                .await
                .map_err(refused)?;
            let r = &issued.record;
            audit(
                settings,
                &queues,
                Entry::cli("keys.create").count(1).detail(format!(
                    "key {} ({}), scopes {}",
                    r.name,
                    r.id,
                    r.scopes.join(" ")
                )),
            )
            .await;
            println!("{}", issued.key);
            eprintln!(
                "key {} ({}) made: scopes {}, {} requests/min; it is shown this once, keep it in the app's secrets",
                r.name,
                r.id,
                r.scopes.join(" "),
                r.rate_per_minute
            );
        }
        KeysAction::List { json: as_json } => {
            let list = keys.list().await?;
            let now = job::now_ms();
            if as_json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|k| {
                        json!({
                            "id": k.id, "name": k.name, "scopes": k.scopes,
                            "rate_per_minute": k.rate_per_minute, "created_ms": k.created_ms,
                            "expires_ms": k.expires_ms, "revoked_ms": k.revoked_ms,
                            "state": k.check(now).map_or_else(|d| d.to_string(), |()| "active".into()),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
                return Ok(());
            }
            for k in &list {
                let state = k
                    .check(now)
                    .map_or_else(|d| d.to_string(), |()| "active".into());
                println!(
                    "{:<14} {:<20} {:<9} {:>6}/min  {}",
                    k.id,
                    k.name,
                    state,
                    k.rate_per_minute,
                    k.scopes.join(" ")
                );
            }
        }
        KeysAction::Revoke { name } => {
            let n = keys.revoke(&name).await?;
            if n == 0 {
                return Err(Refused(format!("no active key named {name:?}")).into());
            }
            let entry = Entry::cli("keys.revoke")
                .count(n as u64)
                .detail(format!("key {name}"));
            audit(settings, &queues, entry).await;
            eprintln!("revoked {n} key(s) named {name}");
        }
    }
    Ok(())
}
