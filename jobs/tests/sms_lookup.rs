//! The SMS client's lookup (`SmsClient::find_sent`) against a mock Twilio API: the list
//! request's filters and auth, paging by `next_page_uri`, matching by reference and number,
//! and how refusals are classified (a lookup that cannot answer must never read as "not
//! sent"). Each test has its own mock server, so they run in parallel.

use std::time::Duration;

use switchboard_jobs::clients::{
    SendError,
    sms::{SmsClient, SmsSettings},
};
use time::{Date, Month};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

const MESSAGES: &str = "/2010-04-01/Accounts/ACtest/Messages.json";
const TO: &str = "+4915112345678";
const REF: &str = "Ref K7Q2X9";

async fn twilio() -> (MockServer, SmsClient) {
    let server = MockServer::start().await;
    let settings = SmsSettings {
        base_url: format!("{}/", server.uri()),
        from: "+4930555000".into(),
        timeout_secs: 5,
    };
    let client = SmsClient::new(&settings, "ACtest".into(), "s3cret-token".into());
    (server, client)
}

fn day() -> Date {
    Date::from_calendar_date(2026, Month::December, 5).unwrap()
}

fn message(sid: &str, to: &str, body: &str) -> serde_json::Value {
    serde_json::json!({
        "sid": sid, "to": to, "from": "+4930555000", "body": body, "status": "delivered",
        "date_sent": "Sat, 05 Dec 2026 10:00:00 +0000", "direction": "outbound-api"
    })
}

fn page(messages: &[serde_json::Value], next: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "messages": messages, "next_page_uri": next, "page": 0, "page_size": 100,
        "previous_page_uri": null, "uri": MESSAGES, "first_page_uri": MESSAGES
    }))
}

#[tokio::test]
async fn the_list_is_asked_by_number_and_day_with_basic_auth() {
    let (server, client) = twilio().await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path(MESSAGES))
        .and(matchers::basic_auth("ACtest", "s3cret-token"))
        .and(matchers::query_param("To", TO))
        .and(matchers::query_param("DateSent>", "2026-12-05"))
        .and(matchers::query_param("PageSize", "100"))
        .respond_with(page(
            &[
                message("SMaaaa", TO, "Another notification. Ref AAAAAA"),
                message(
                    "SMbbbb",
                    TO,
                    &format!("Your appointment is confirmed. {REF}"),
                ),
            ],
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let found = client.find_sent(TO, day(), REF).await.unwrap().unwrap();
    assert_eq!((found.sid.as_str(), found.to.as_str()), ("SMbbbb", TO));
    let query = server.received_requests().await.unwrap()[0]
        .url
        .query()
        .unwrap()
        .to_owned();
    assert!(query.contains("DateSent%3E=2026-12-05"), "{query}");
}

#[tokio::test]
async fn pages_are_followed_until_the_message_is_found_or_the_list_ends() {
    let (server, client) = twilio().await;
    let next = format!(
        "{MESSAGES}?To=%2B4915112345678&DateSent%3E=2026-12-05&PageSize=100&Page=1&PageToken=PA1"
    );
    Mock::given(matchers::method("GET"))
        .and(matchers::query_param("Page", "1"))
        .and(matchers::query_param("PageToken", "PA1"))
        .and(matchers::basic_auth("ACtest", "s3cret-token"))
        .respond_with(page(&[message("SMcccc", TO, &format!("Hi. {REF}"))], None))
        .mount(&server)
        .await;
    Mock::given(matchers::method("GET"))
        .and(matchers::query_param_is_missing("Page"))
        .respond_with(page(
            &[message("SMaaaa", TO, "Other. Ref AAAAAA")],
            Some(&next),
        ))
        .mount(&server)
        .await;
    let found = client.find_sent(TO, day(), REF).await.unwrap();
    assert_eq!(found.map(|m| m.sid).as_deref(), Some("SMcccc"));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);

    // Not on any page: not sent.
    let found = client.find_sent(TO, day(), "Ref ZZZZZZ").await.unwrap();
    assert_eq!(found, None);
    assert_eq!(server.received_requests().await.unwrap().len(), 4);
}

#[tokio::test]
async fn messages_to_other_numbers_or_without_a_body_never_match() {
    let (server, client) = twilio().await;
    // A gateway that ignored the `To` filter.
    let mut no_body = message("SMdddd", TO, "");
    no_body["body"] = serde_json::Value::Null;
    Mock::given(matchers::method("GET"))
        .respond_with(page(
            &[
                message("SMeeee", "+4915100000000", &format!("Hi. {REF}")),
                no_body,
            ],
            None,
        ))
        .mount(&server)
        .await;
    assert_eq!(client.find_sent(TO, day(), REF).await.unwrap(), None);
}

#[tokio::test]
async fn page_links_outside_the_accounts_messages_are_not_followed() {
    for next in [
        "https://elsewhere.example/2010-04-01/Accounts/ACtest/Messages.json?Page=1",
        "/2010-04-01/Accounts/ACother/Messages.json?Page=1",
    ] {
        let (server, client) = twilio().await;
        Mock::given(matchers::method("GET"))
            .respond_with(page(&[], Some(next)))
            .mount(&server)
            .await;
        let result = client.find_sent(TO, day(), REF).await;
        assert!(
            matches!(&result, Err(SendError::Permanent(r)) if r.contains("next page")),
            "{next}: {result:?}"
        );
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn lookup_refusals_are_classified_by_what_a_retry_can_do() {
    let cases = [
        (
            ResponseTemplate::new(401).set_body_json(
                serde_json::json!({"code": 20003, "message": "Authenticate", "status": 401}),
            ),
            "permanent",
        ),
        (ResponseTemplate::new(404), "permanent"),
        (
            ResponseTemplate::new(429).insert_header("Retry-After", "7"),
            "transient 7s",
        ),
        (ResponseTemplate::new(500), "transient"),
        (
            ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"),
            "transient",
        ),
        (
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"next_page_uri": null})),
            "transient",
        ),
    ];
    for (answer, expected) in cases {
        let (server, client) = twilio().await;
        Mock::given(matchers::any())
            .respond_with(answer)
            .mount(&server)
            .await;
        let result = client.find_sent(TO, day(), REF).await;
        let class = match &result {
            Err(SendError::Permanent(_)) => "permanent",
            Err(SendError::Transient {
                retry_after: Some(d),
                ..
            }) if *d == Duration::from_secs(7) => "transient 7s",
            Err(SendError::Transient {
                retry_after: None, ..
            }) => "transient",
            _ => "other",
        };
        assert_eq!(class, expected, "{result:?}");
        let reason = result.unwrap_err().to_string();
        assert!(
            !reason.contains("ACtest") && !reason.contains("s3cret"),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_gateway_is_transient() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = SmsSettings {
        base_url: format!("http://127.0.0.1:{port}"),
        from: "+4930555000".into(),
        timeout_secs: 5,
    };
    let client = SmsClient::new(&settings, "ACtest".into(), "s3cret-token".into());
    let result = client.find_sent(TO, day(), REF).await;
    assert!(
        matches!(&result, Err(SendError::Transient { .. })),
        "{result:?}"
    );
}
