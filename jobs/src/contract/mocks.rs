//! The contracts on wiremock servers (feature `mocks`, for tests): [`guard`] mounts, ahead of
//! every other mock, one that catches each request the provider would refuse and answers it
//! with the provider's refusal. It expects no such request, so the server fails the test when
//! it drops if any came, even when another mock was written to accept it; the reasons are
//! printed as they happen.

use std::time::{SystemTime, UNIX_EPOCH};

use wiremock::{Match, Mock, MockServer, Respond, ResponseTemplate};

use super::{Contract, Provider, Request};

/// Matches (and answers) the requests `provider`'s contract refuses.
#[derive(Debug, Clone, Copy)]
pub struct Refused(pub Provider);

impl Refused {
    fn check(self, request: &wiremock::Request) -> Result<(), super::Refusal> {
        let contract = Contract::of(self.0);
        contract.check(
            &Request {
                method: request.method.as_str(),
                path: request.url.path(),
                query: request.url.query().unwrap_or_default(),
                headers: &request.headers,
                body: &request.body,
            },
            now(),
        )
    }
}

impl Match for Refused {
    fn matches(&self, request: &wiremock::Request) -> bool {
        match self.check(request) {
            Ok(()) => false,
            Err(refusal) => {
                eprintln!(
                    "contract: {} {} refused: {refusal}",
                    request.method, request.url
                );
                true
            }
        }
    }
}

impl Respond for Refused {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        match self.check(request) {
            Ok(()) => ResponseTemplate::new(500).set_body_string("contract guard: not refused"),
            Err(refusal) => ResponseTemplate::new(refusal.status).set_body_json(refusal.body),
        }
    }
}

/// Mount `provider`'s contract on `server`: refused requests get the provider's refusal, and
/// the server fails the test on drop if any request was refused.
pub async fn guard(server: &MockServer, provider: Provider) {
    Mock::given(Refused(provider))
        .respond_with(Refused(provider))
        .with_priority(1)
        .expect(0)
        .named(format!("requests the {provider:?} contract refuses"))
        .mount(server)
        .await;
}

/// The requests `server` received that `provider`'s contract refuses, as reasons.
pub async fn refused(server: &MockServer, provider: Provider) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| Refused(provider).check(r).err().map(|e| e.to_string()))
        .collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
