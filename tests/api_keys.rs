//! The app's API keys (the first part of the enqueue API's door): made, checked, scoped,
//! expired and revoked in a real Redis, from the library and from `switchboard keys`.

mod common;

use common::Harness;
use switchboard::{
    api::keys::{ApiKeys, Denied, NewKey},
    audit::AuditLog,
    queue::job::now_ms,
};

fn new_key(name: &str, scopes: &[&str]) -> NewKey {
    NewKey {
        name: name.into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        rate_per_minute: 60,
        expires_ms: None,
    }
}

#[tokio::test]
async fn a_key_is_shown_once_kept_as_a_hash_and_refused_once_revoked_or_expired() {
    let h = Harness::new().await;
    let keys = ApiKeys::new(h.queues.clone());
    let issued = keys
        .create(new_key("laravel", &["notify.*"]))
        .await
        .unwrap();
    assert!(issued.key.starts_with("sbk_"), "{}", issued.key);
    let secret = issued.key.rsplit('_').next().unwrap().to_owned();
    assert_eq!(secret.len(), 64);

    let record = keys.authenticate(&issued.key).await.unwrap().unwrap();
    assert_eq!(record.name, "laravel");
    assert!(record.allows("notify.email", "notifications"));
    assert!(!record.allows("calendar.book", "calendar"));

    // Only the hash is in Redis.
    let stored: Vec<String> = redis::cmd("HVALS")
        .arg(format!("{{{}:apikeys}}:records", h.prefix()))
        .query_async(&mut h.conn())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains(&secret), "{}", stored[0]);

    let flipped = if issued.key.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{flipped}", &issued.key[..issued.key.len() - 1]);
    assert_eq!(
        keys.authenticate(&wrong).await.unwrap(),
        Err(Denied::Unknown)
    );
    assert_eq!(
        keys.authenticate("Bearer nonsense").await.unwrap(),
        Err(Denied::Malformed)
    );
    assert_eq!(
        keys.authenticate("sbk_ffff_00").await.unwrap(),
        Err(Denied::Unknown)
    );

    let twin = keys.create(new_key("laravel", &["*"])).await.unwrap_err();
    assert!(twin.to_string().contains("exists"), "{twin}");

    assert_eq!(keys.revoke("laravel").await.unwrap(), 1);
    assert_eq!(
        keys.authenticate(&issued.key).await.unwrap(),
        Err(Denied::Revoked)
    );

    let mut old = new_key("old", &["*"]);
    old.expires_ms = Some(now_ms() - 1);
    let old = keys.create(old).await.unwrap();
    assert_eq!(
        keys.authenticate(&old.key).await.unwrap(),
        Err(Denied::Expired)
    );

    let bad = keys.create(new_key("x", &["no spaces"])).await.unwrap_err();
    assert!(bad.to_string().contains("scope"), "{bad}");
}

#[tokio::test]
async fn switchboard_keys_creates_lists_and_revokes_with_an_audit_record_each() {
    let h = Harness::new().await;
    let run = |args: &[&str]| h.command().arg("keys").args(args).output().unwrap();

    let made = run(&[
        "create",
        "--name",
        "laravel",
        "--scope",
        "notify.*",
        "--scope",
        "calendar.book",
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let key = String::from_utf8(made.stdout).unwrap();
    let key = key.trim();
    assert!(key.starts_with("sbk_") && !key.contains('\n'), "{key}");
    let keys = ApiKeys::new(h.queues.clone());
    assert!(keys.authenticate(key).await.unwrap().is_ok());

    let listed = run(&["list", "--json"]);
    assert!(listed.status.success());
    let text = String::from_utf8(listed.stdout).unwrap();
    let secret = key.rsplit('_').next().unwrap();
    assert!(
        !text.contains(secret),
        "the list never shows a secret: {text}"
    );
    let rows: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(rows[0]["name"], "laravel");
    assert_eq!(rows[0]["state"], "active");
    assert_eq!(
        rows[0]["scopes"],
        serde_json::json!(["notify.*", "calendar.book"])
    );

    let revoked = run(&["revoke", "laravel"]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert_eq!(keys.authenticate(key).await.unwrap(), Err(Denied::Revoked));

    let again = run(&["revoke", "laravel"]);
    assert_eq!(again.status.code(), Some(2));
    let stderr = String::from_utf8(again.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let no_scope = run(&["create", "--name", "app"]);
    assert!(!no_scope.status.success());

    let audit = AuditLog::new(h.queues.clone(), 100)
        .recent(10, None)
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|(_, e)| e.action.as_str()).collect();
    assert_eq!(actions, ["keys.revoke", "keys.create"]);
    assert!(
        audit
            .iter()
            .all(|(_, e)| !e.detail.as_deref().unwrap_or("").contains(secret))
    );
}
