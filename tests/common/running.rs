//! A running Switchboard (`app::run`) on a port-0 listener, and signed Stripe and Retell
//! deliveries to post to it. Used by the metrics, Prometheus and whole-path tests.

#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};

use hmac::Mac;
use switchboard::{
    app::{self, Hooks, Roles},
    config::Settings,
};
use tokio::sync::oneshot;

/// The Stripe webhook secret the helpers sign with.
pub const STRIPE_SECRET: &str = "whsec_metrics_0123456789abcdef";

/// `app::run` in a task, answering on `base`.
pub struct Running {
    pub base: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Start `roles` with `hooks` (on a new port-0 listener unless `hooks` has one) and wait
    /// until `/healthz` answers.
    pub async fn start(settings: Settings, roles: Roles, mut hooks: Hooks) -> Self {
        if hooks.listener.is_none() {
            hooks.listener = Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addr = hooks.listener.as_ref().unwrap().local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(app::run(settings, roles, hooks, async {
            let _ = rx.await;
        }));
        let running = Self {
            base: format!("http://{addr}"),
            addr,
            client: reqwest::Client::new(),
            stop: Some(tx),
            task: Some(task),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let up = running
                .client
                .get(format!("{}/healthz", running.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return running;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "switchboard did not come up"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `GET /metrics`, which must answer 200.
    pub async fn metrics(&self) -> String {
        let r = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        r.text().await.unwrap()
    }

    /// Post a Stripe delivery with `signature` (None: unsigned); returns the status.
    pub async fn post_stripe(&self, body: &[u8], signature: Option<&str>) -> u16 {
        let mut req = self
            .client
            .post(format!("{}/webhooks/stripe", self.base))
            .body(body.to_vec());
        if let Some(s) = signature {
            req = req.header("stripe-signature", s);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// Post a Retell delivery signed with `signature`, with `headers` besides; returns the
    /// status.
    pub async fn post_retell(
        &self,
        body: Vec<u8>,
        signature: &str,
        headers: &[(&str, &str)],
    ) -> u16 {
        let mut req = self
            .client
            .post(format!("{}/webhooks/retell", self.base))
            .header("x-retell-signature", signature)
            .body(body);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// Stop gracefully and wait for `run` to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// The invoice-paid fixture as event `event_id`, signed now with [`STRIPE_SECRET`]: the body
/// and its `Stripe-Signature` header.
pub fn signed_stripe(event_id: &str) -> (Vec<u8>, String) {
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/webhooks/stripe_invoice_paid.json"
    ))
    .unwrap();
    let body = fixture.replacen("evt_1T8xPaid0001", event_id, 1);
    assert_ne!(body, fixture, "the fixture's event id changed");
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(STRIPE_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body.as_bytes());
    let header = format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()));
    (body.into_bytes(), header)
}

/// The Retell `call_analyzed` fixture turned into a request for an appointment at `preferred`
/// (not booked during the call) for Dana Ruiz, signed now with `key`: the body and its
/// `X-Retell-Signature` header.
pub fn signed_call_analyzed(key: &str, preferred: &str) -> (Vec<u8>, String) {
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/webhooks/retell_call_analyzed.json"
    ))
    .unwrap();
    let body = fixture.replace(
        r#""appointment_booked": true"#,
        &format!(
            r#""appointment_booked": false, "appointment_requested": true, "preferred_start": "{preferred}", "customer_name": "Dana Ruiz", "customer_email": "dana.ruiz@example.com""#
        ),
    );
    assert!(
        body.contains("appointment_requested"),
        "the fixture changed"
    );
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    mac.update(ts.to_string().as_bytes());
    (
        body.into_bytes(),
        format!("v={ts},d={}", hex::encode(mac.finalize().into_bytes())),
    )
}
