//! A complete processing world for domain tests: a database of either dialect (a `SQLite` file
//! or a `MariaDB` database of the test's own), a seeded business, a real SMTP sink, a wiremock
//! SMS gateway, and a fleet running the domain handlers over the test's own Redis prefix.

#![allow(dead_code)]

/// For each name, a module with a `sqlite` and a `mariadb` test calling `super::name(dialect)`.
#[allow(unused_macros)]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name("sqlite").await;
            }
            #[tokio::test]
            async fn mariadb() {
                super::$name("mysql").await;
            }
        }
    )*};
}

use std::{process::Command, sync::Arc, time::Duration};

use switchboard::{
    config::{FleetSettings, SupervisorSettings},
    fleet::{Fleet, inline::drain},
    maintenance::{Promoter, Service as _},
    queue::rate_limit::RedisRateLimiter,
};
use switchboard_jobs::contract::{Provider, mocks};
use switchboard_jobs::{
    clients::{
        mail::{MailSettings, Mailer},
        sms::{SmsClient, SmsSettings},
        stripe::StripeClient,
    },
    notify::faults::Faults,
    services::{CalendarAccess, Services},
    store::{Store, companies},
};
use tokio_util::sync::CancellationToken;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

pub use crate::common::smtp_sink::SmtpSink;
use crate::common::{Harness, tcp_cut::TcpCut};

/// The called number, Cal.com event type and Stripe customer of the seeded business.
pub const NUMBER: &str = "+14155550987";
pub const EVENT_TYPE: i64 = 90211;
pub const STRIPE_CUSTOMER: &str = "cus_T8xHarborDental";
pub const ADMIN_EMAIL: &str = "owner@harbordental.example";
pub const CALCOM_KEY: &str = "cal_live_test_key";
/// Attempts the world's supervisor allows a job whose kind has no policy of its own.
pub const MAX_ATTEMPTS: u32 = 3;
/// A well-formed account SID and message SID (`AC`/`SM` and 32 hex digits), as Twilio's
/// document wants them.
pub const SMS_ACCOUNT: &str = "AC7f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c";
pub const SMS_SID: &str = "SM0a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// Where the test's database lives.
pub enum Db {
    Sqlite(tempfile::TempDir),
    MariaDb { admin_url: String, name: String },
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::MariaDb { name, .. } = self {
            let _ = Command::new("mariadb")
                .args([
                    "-uroot",
                    "-h127.0.0.1",
                    "-e",
                    &format!("DROP DATABASE IF EXISTS `{name}`"),
                ])
                .status();
        }
    }
}

/// `MariaDB` server URL without a database (tests create their own databases on it).
pub fn mariadb_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

/// A fresh, migrated database of `dialect` ("sqlite" or "mysql").
pub async fn database(dialect: &str) -> (Store, Db) {
    let (url, db) = if dialect == "sqlite" {
        let dir = tempfile::tempdir().unwrap();
        (
            format!("sqlite://{}/switchboard.db?mode=rwc", dir.path().display()),
            Db::Sqlite(dir),
        )
    } else {
        let name = format!("sbt_{}", ulid::Ulid::new().to_string().to_lowercase());
        let admin = mariadb_url();
        let status = Command::new("mariadb")
            .args([
                "-uroot",
                "-h127.0.0.1",
                "-e",
                &format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"),
            ])
            .status()
            .expect("the mariadb client");
        assert!(
            status.success(),
            "MariaDB must run on 127.0.0.1:3306 (root, no password)"
        );
        (
            format!("{admin}/{name}"),
            Db::MariaDb {
                admin_url: admin,
                name,
            },
        )
    };
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    (store, db)
}

/// How a [`World`] is set up.
#[allow(clippy::struct_excessive_bools)] // independent switches of one test world
pub struct Options {
    /// The company's locale.
    pub locale: &'static str,
    /// SMTP sink refuses this many messages first.
    pub smtp_fail_first: u32,
    /// Queues the fleet works.
    pub queues: &'static [&'static str],
    /// Cal.com requests per minute per key, fleet-wide.
    pub calcom_per_minute: u32,
    /// Worker loops per queue.
    pub workers: usize,
    /// Start the world's own fleet (off when the test runs `serve` itself).
    pub fleet: bool,
    /// Run jobs inline in `settled` instead of in a fleet (no fleet is started).
    pub inline: bool,
    /// The handlers reach `MariaDB` through a [`TcpCut`] the test can cut (`World::db_cut`).
    pub db_cut: bool,
    /// Send SMS to the development stand-in (which remembers and lists what it accepted)
    /// instead of the wiremock gateway `World::sms`.
    pub sms_stand_in: bool,
    /// Send Cal.com requests to the development stand-in (which validates them against the
    /// document and keeps its bookings) instead of the wiremock server `World::calcom`.
    pub calcom_stand_in: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            locale: "en",
            smtp_fail_first: 0,
            queues: &["webhooks", "notifications"],
            calcom_per_minute: 120,
            workers: 1,
            fleet: true,
            inline: false,
            db_cut: false,
            sms_stand_in: false,
            calcom_stand_in: false,
        }
    }
}

/// Everything a processing test needs.
pub struct World {
    pub h: Harness,
    pub store: Store,
    pub db: Db,
    pub sink: SmtpSink,
    pub sms: MockServer,
    /// With `Options::sms_stand_in`: the stand-in gateway SMS go to.
    pub gateway: Option<switchboard::dev::sms::Gateway>,
    /// Cal.com stand-in (base URL `<uri>/v2`).
    pub calcom: MockServer,
    /// Stripe stand-in.
    pub stripe: MockServer,
    pub company_id: i64,
    pub branch_id: i64,
    pub fleet: Option<Fleet>,
    /// The handlers' dependencies, wired to the stand-ins.
    pub services: Arc<Services>,
    /// With `Options::db_cut`: the proxy between the handlers and the database.
    pub db_cut: Option<TcpCut>,
    promoter: CancellationToken,
    /// With `Options::inline`: the handlers and supervisor defaults `settled` drains with.
    inline: Option<(Arc<switchboard_jobs::Registry>, SupervisorSettings)>,
}

impl World {
    /// A world with a business whose notifications are in `locale`; the SMTP sink refuses the
    /// first `smtp_fail_first` messages.
    pub async fn new(dialect: &str, locale: &'static str, smtp_fail_first: u32) -> Self {
        Self::with(
            dialect,
            Options {
                locale,
                smtp_fail_first,
                inline: true,
                ..Options::default()
            },
        )
        .await
    }

    /// A world set up as `options` say.
    #[allow(clippy::too_many_lines)] // one linear set-up of every part
    pub async fn with(dialect: &str, options: Options) -> Self {
        let Options {
            locale,
            smtp_fail_first,
            queues,
            calcom_per_minute,
            workers,
            fleet: own_fleet,
            inline,
            db_cut,
            sms_stand_in,
            calcom_stand_in,
        } = options;
        // An open circuit holds its provider's jobs for the least time allowed, so a test that
        // opens one sees its probe within a second.
        let h = Harness::with(|s| s.queue.circuit_open_secs = 1).await;
        let (store, db) = database(dialect).await;
        let company_id = companies::insert_company(
            &store,
            &companies::NewCompany {
                name: "Harbor Dental".into(),
                locale: locale.into(),
                timezone: "America/Los_Angeles".into(),
                admin_email: Some(ADMIN_EMAIL.into()),
                admin_phone: None,
                stripe_customer_id: Some(STRIPE_CUSTOMER.into()),
                calcom_api_key: None,
            },
        )
        .await
        .unwrap();
        let branch_id = companies::insert_branch(
            &store,
            company_id,
            "Pier St",
            Some(EVENT_TYPE),
            "America/Los_Angeles",
        )
        .await
        .unwrap();
        companies::insert_phone_number(&store, branch_id, NUMBER)
            .await
            .unwrap();

        let (db_cut, handler_store) = if db_cut {
            let (cut, store) = through_cut(&db).await;
            (Some(cut), store)
        } else {
            (None, store.clone())
        };
        let sink = SmtpSink::start(smtp_fail_first);
        let calcom = MockServer::start().await;
        let stripe = MockServer::start().await;
        let sms = MockServer::start().await;
        // Every request the providers' documents refuse gets their refusal and fails the test.
        mocks::guard(&calcom, Provider::Calcom).await;
        mocks::guard(&stripe, Provider::Stripe).await;
        mocks::guard(&sms, Provider::Twilio).await;
        Mock::given(matchers::method("POST"))
            .and(matchers::path(format!(
                "/2010-04-01/Accounts/{SMS_ACCOUNT}/Messages.json"
            )))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(serde_json::json!({"sid": SMS_SID, "status": "queued"})),
            )
            .mount(&sms)
            .await;
        let mailer = Mailer::new(&mail_settings(sink.port), None).unwrap();
        let (sms_client, gateway) = if sms_stand_in {
            let (gateway, base) = crate::common::sms_stand_in().await;
            let sid = switchboard::dev::sms::ACCOUNT_SID;
            let token = switchboard::dev::sms::AUTH_TOKEN;
            let client = SmsClient::new(&sms_settings(&base), sid.into(), token.into());
            (client, Some(gateway))
        } else {
            let client = SmsClient::new(
                &sms_settings(&sms.uri()),
                SMS_ACCOUNT.into(),
                "token".into(),
            );
            (client, None)
        };
        let calcom_base = if calcom_stand_in {
            format!("{}/calcom/v2", crate::common::stand_ins().await)
        } else {
            format!("{}/v2", calcom.uri())
        };
        let calendar = CalendarAccess {
            settings: serde_json::from_value(
                serde_json::json!({"base_url": calcom_base, "timeout_secs": 1}),
            )
            .unwrap(),
            default_key: Some(CALCOM_KEY.into()),
            requests_per_minute: calcom_per_minute,
        };
        let stripe_settings = serde_json::from_value(serde_json::json!({
            "base_url": stripe.uri(), "meter_event_name": "call_minutes", "timeout_secs": 5
        }))
        .unwrap();
        let services = Arc::new(Services {
            store: handler_store,
            mailer,
            sms: Some(sms_client),
            calendar,
            stripe: Some(StripeClient::new(&stripe_settings, "sk_test_world".into())),
            limiter: Arc::new(RedisRateLimiter::new(h.queues.clone())),
            faults: Some(Arc::new(Faults::default())),
        });

        let promoter = CancellationToken::new();
        let names: Vec<String> = queues.iter().map(|q| (*q).to_owned()).collect();
        tokio::spawn(
            Promoter::new(h.queues.clone(), names.clone(), &h.settings.maintenance)
                .run(promoter.clone()),
        );
        let supervisor = SupervisorSettings {
            workers,
            ..crate::common::supervisor("domain", queues, 4, 4, MAX_ATTEMPTS)
        };
        let registry = Arc::new(switchboard_jobs::domain_registry(&services));
        let fleet = FleetSettings {
            shutdown_timeout_secs: 5,
            supervisors: vec![supervisor.clone()],
        };
        let fleet = if own_fleet && !inline {
            Some(
                Fleet::start(&h.queues, Arc::clone(&registry), &fleet, None)
                    .await
                    .unwrap(),
            )
        } else {
            None
        };
        Self {
            h,
            store,
            db,
            sink,
            sms,
            gateway,
            calcom,
            stripe,
            company_id,
            branch_id,
            fleet,
            services,
            db_cut,
            promoter,
            inline: inline.then_some((registry, supervisor)),
        }
    }

    /// Wait until `queue` has settled `n` jobs (completed or dead) and nothing is left running
    /// or waiting on it.
    pub async fn settled(&self, queue: &str, n: u64) {
        if let Some((registry, supervisor)) = &self.inline {
            // Like a fleet working every queue: drain them all until a pass runs nothing.
            loop {
                let mut runs = 0;
                for name in &supervisor.queues {
                    let drained = drain(&self.h.queues, Arc::clone(registry), name, supervisor)
                        .await
                        .unwrap();
                    assert!(!drained.stopped_early, "{name} did not drain: {drained:?}");
                    runs += drained.runs;
                }
                if runs == 0 {
                    break;
                }
            }
            let s = self.h.queues.stats(queue).await.unwrap();
            for dead in self.h.queues.dead_list(queue, 20).await.unwrap() {
                eprintln!(
                    "dead on {queue}: {} {} {:?}",
                    dead.id, dead.kind, dead.error
                );
            }
            assert!(
                s.processed + s.dead >= n && s.pending + s.running + s.delayed == 0,
                "expected {n} jobs settled on {queue}: {s:?}"
            );
            return;
        }
        let queues = self.h.queues.clone();
        self.h
            .wait_for(
                &format!("{n} jobs settled on {queue}"),
                Duration::from_secs(20),
                || {
                    let queues = queues.clone();
                    async move {
                        let s = queues.stats(queue).await.unwrap();
                        s.processed + s.dead >= n && s.pending + s.running + s.delayed == 0
                    }
                },
            )
            .await;
        for dead in self.h.queues.dead_list(queue, 20).await.unwrap() {
            eprintln!(
                "dead on {queue}: {} {} {:?}",
                dead.id, dead.kind, dead.error
            );
        }
    }

    /// The fault injection of the world's deliveries (never fires until armed).
    pub fn faults(&self) -> &Faults {
        self.services
            .faults
            .as_deref()
            .expect("the world arms faults")
    }

    /// With `Options::inline`: run the jobs of `queue` alone (it need not be one the world
    /// works), leaving what they enqueue on other queues waiting; returns the runs.
    pub async fn drain_only(&self, queue: &str) -> u64 {
        let (registry, supervisor) = self.inline.as_ref().expect("an inline world");
        let drained = drain(&self.h.queues, Arc::clone(registry), queue, supervisor)
            .await
            .unwrap();
        assert!(!drained.stopped_early, "{queue} did not drain: {drained:?}");
        drained.runs
    }

    pub async fn stop(mut self) {
        if let Some(fleet) = self.fleet.take() {
            fleet.stop().await;
        }
        self.promoter.cancel();
    }
}

/// A [`TcpCut`] in front of `db`'s server and a store of `db` connected through it.
async fn through_cut(db: &Db) -> (TcpCut, Store) {
    let Db::MariaDb { admin_url, name } = db else {
        panic!("a database cut needs MariaDB");
    };
    let mut url = reqwest::Url::parse(admin_url).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(3306));
    let cut = TcpCut::start(upstream).await;
    url.set_port(Some(cut.port)).unwrap();
    url.set_path(name);
    let store = Store::connect(url.as_str()).await.unwrap();
    (cut, store)
}

fn mail_settings(port: u16) -> MailSettings {
    serde_json::from_value(serde_json::json!({
        "transport": "smtp", "host": "127.0.0.1", "port": port, "tls": "none",
        "from": "AskProAI <noreply@askproai.example>", "file_dir": "var/mail", "timeout_secs": 5
    }))
    .unwrap()
}

fn sms_settings(base: &str) -> SmsSettings {
    serde_json::from_value(
        serde_json::json!({ "base_url": base, "from": "+15550000000", "timeout_secs": 5 }),
    )
    .unwrap()
}
