//! The fixture vectors (made by the official SDKs) with a fixed clock, every rejection of the
//! header parsers, rotation, and property tests that no header input panics a parser.

use proptest::prelude::*;

use super::*;
use crate::ingest::secrets::SecretList;

struct Vector {
    file: String,
    secret: String,
    timestamp: Option<u64>,
    value: String,
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn vectors() -> Vec<Vector> {
    let all: serde_json::Value =
        serde_json::from_slice(&fixture("signature_vectors.json")).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .map(|v| Vector {
            file: v["file"].as_str().unwrap().to_owned(),
            secret: v["secret"].as_str().unwrap().to_owned(),
            timestamp: v["timestamp"].as_u64(),
            value: v["value"].as_str().unwrap().to_owned(),
        })
        .collect()
}

fn one(secret: &str) -> SecretList {
    SecretList::parse(secret)
}

#[test]
fn every_fixture_vector_verifies_with_a_fixed_clock() {
    let mut checked = 0;
    for v in vectors() {
        let body = fixture(&v.file);
        let secrets = one(&v.secret);
        let header = Some(v.value.as_str());
        let result = if v.file.starts_with("retell") {
            retell::verify(header, &body, &secrets, v.timestamp.unwrap())
        } else if v.file.starts_with("stripe") {
            stripe::verify(header, &body, &secrets, v.timestamp.unwrap())
        } else {
            calcom::verify(header, &body, &secrets)
        };
        assert_eq!(result, Ok(()), "{}", v.file);
        // The trailing newline is part of what was signed.
        let trimmed = &body[..body.len() - 1];
        let again = if v.file.starts_with("retell") {
            retell::verify(header, trimmed, &secrets, v.timestamp.unwrap())
        } else if v.file.starts_with("stripe") {
            stripe::verify(header, trimmed, &secrets, v.timestamp.unwrap())
        } else {
            calcom::verify(header, trimmed, &secrets)
        };
        assert_eq!(again, Err(SignatureError::Mismatch), "{}", v.file);
        checked += 1;
    }
    assert_eq!(checked, 9);
}

#[test]
fn fixture_envelopes_give_type_and_dedupe_key() {
    let r = retell::identify(&fixture("retell_call_ended.json")).unwrap();
    assert_eq!(r.event_type, "call_ended");
    assert!(r.dedupe_key.starts_with("call_ended:"), "{}", r.dedupe_key);
    let s = stripe::identify(&fixture("stripe_invoice_paid.json")).unwrap();
    assert_eq!(s.event_type, "invoice.paid");
    assert!(s.dedupe_key.starts_with("evt_"), "{}", s.dedupe_key);
    let c = calcom::identify(&fixture("calcom_booking_created.json")).unwrap();
    assert_eq!(c.event_type, "BOOKING_CREATED");
    assert!(c.dedupe_key.matches(':').count() >= 2, "{}", c.dedupe_key);
    // A Retell custom-function call is not a webhook event.
    assert!(matches!(
        retell::identify(&fixture("retell_function_check_availability.json")),
        Err(IdentifyError::MissingIdentifier(_))
    ));
}

#[test]
fn events_are_sequenced_by_the_object_they_are_about() {
    let r = retell::identify(&fixture("retell_call_ended.json")).unwrap();
    assert_eq!(r.sequence, "retell:call_5b2e9d0c7a4f41e38a1d2c6f90b1e7aa");
    let created = calcom::identify(&fixture("calcom_booking_created.json")).unwrap();
    let cancelled = calcom::identify(&fixture("calcom_booking_cancelled.json")).unwrap();
    assert_eq!(created.sequence, "calcom:bK3v9Qp2LmX7tRz1Yc8WnA");
    assert_eq!(cancelled.sequence, created.sequence);
    // A reschedule runs in line with the booking that moved, not under its new uid.
    let moved = calcom::identify(&fixture("calcom_booking_rescheduled.json")).unwrap();
    assert_eq!(moved.sequence, created.sequence);
    // Invoice events are ordered per customer (they set its billing status).
    let paid = stripe::identify(&fixture("stripe_invoice_paid.json")).unwrap();
    let failed = stripe::identify(&fixture("stripe_invoice_payment_failed.json")).unwrap();
    assert_eq!(paid.sequence, "stripe:cus_T8xHarborDental");
    assert_eq!(failed.sequence, paid.sequence);
    let bare = stripe::identify(br#"{"id":"evt_9","type":"x","data":{"object":{"id":"sub_1"}}}"#);
    assert_eq!(bare.unwrap().sequence, "stripe:sub_1");
    // Ids with characters a key cannot hold are hashed, the same id to the same key.
    let odd = super::sequence_key("retell", "call id/with space");
    assert!(
        odd.starts_with("retell:h") && odd.len() == "retell:h".len() + 16,
        "{odd}"
    );
    assert_eq!(odd, super::sequence_key("retell", "call id/with space"));
}

#[test]
fn malformed_json_and_missing_identifiers_are_told_apart() {
    assert!(matches!(
        stripe::identify(b"{\"id\": \"evt_1\", "),
        Err(IdentifyError::Malformed(_))
    ));
    assert!(matches!(
        stripe::identify(b"not json"),
        Err(IdentifyError::Malformed(_))
    ));
    assert!(matches!(
        stripe::identify(br#"{"type":"invoice.paid"}"#),
        Err(IdentifyError::MissingIdentifier(_))
    ));
    assert!(matches!(
        stripe::identify(br#"{"id":"","type":"x"}"#),
        Err(IdentifyError::MissingIdentifier(_))
    ));
    assert!(matches!(
        retell::identify(br#"{"event":"call_ended","call":{}}"#),
        Err(IdentifyError::MissingIdentifier(_))
    ));
    assert!(matches!(
        calcom::identify(br#"{"triggerEvent":"BOOKING_CREATED","createdAt":"x","payload":{}}"#),
        Err(IdentifyError::MissingIdentifier(_))
    ));
}

#[test]
fn retell_window_is_300_seconds_either_side() {
    let body = br#"{"event":"call_started","call":{"call_id":"c1"}}"#;
    let ts = 1_790_000_000_000u64;
    let digest = hex::encode(hmac_sha256(b"key", &[body, ts.to_string().as_bytes()]));
    let header = format!("v={ts},d={digest}");
    let secrets = one("key");
    assert_eq!(
        retell::verify(Some(&header), body, &secrets, ts + 300_000),
        Ok(())
    );
    assert_eq!(
        retell::verify(Some(&header), body, &secrets, ts - 300_000),
        Ok(())
    );
    assert_eq!(
        retell::verify(Some(&header), body, &secrets, ts + 300_001),
        Err(SignatureError::Stale { window_secs: 300 })
    );
    assert_eq!(
        retell::verify(Some(&header), body, &secrets, ts - 300_001),
        Err(SignatureError::Stale { window_secs: 300 })
    );
    assert_eq!(
        retell::verify(None, body, &secrets, ts),
        Err(SignatureError::Missing(retell::HEADER))
    );
    assert_eq!(
        retell::verify(Some(&header), body, &one("other"), ts),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn stripe_accepts_any_v1_and_future_times_but_not_old_ones() {
    let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    let t = 1_790_000_000u64;
    let good = hex::encode(hmac_sha256(
        b"whsec_a",
        &[t.to_string().as_bytes(), b".", body],
    ));
    let bad = "0".repeat(64);
    let header = format!("t={t},v1={bad},v1={good},v0={bad},scheme=x");
    let secrets = one("whsec_a");
    assert_eq!(
        stripe::verify(Some(&header), body, &secrets, t + 300),
        Ok(())
    );
    assert_eq!(
        stripe::verify(Some(&header), body, &secrets, t - 3_600),
        Ok(()),
        "future timestamps pass"
    );
    assert_eq!(
        stripe::verify(Some(&header), body, &secrets, t + 301),
        Err(SignatureError::Stale { window_secs: 300 })
    );
    let only_bad = format!("t={t},v1={bad}");
    assert_eq!(
        stripe::verify(Some(&only_bad), body, &secrets, t),
        Err(SignatureError::Mismatch)
    );
    let only_v0 = format!("t={t},v0={good}");
    assert!(matches!(
        stripe::verify(Some(&only_v0), body, &secrets, t),
        Err(SignatureError::Malformed { .. })
    ));
}

#[test]
fn rotation_accepts_any_configured_secret() {
    let body = b"{}";
    let digest = hex::encode(hmac_sha256(b"old_secret", &[body]));
    assert_eq!(
        calcom::verify(
            Some(&digest),
            body,
            &SecretList::parse("new_secret,old_secret")
        ),
        Ok(())
    );
    assert_eq!(
        calcom::verify(Some(&digest), body, &SecretList::parse("new_secret")),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        calcom::verify(
            Some(&digest.to_uppercase()),
            body,
            &SecretList::parse("old_secret")
        ),
        Ok(())
    );
}

#[test]
fn header_parsers_reject_malformed_values() {
    for bad in [
        "",
        "v=1",
        "d=ab,v=1",
        "v=,d=00",
        "v=12a,d=00",
        &format!("v=1,d={}", "0".repeat(63)),
        &format!("v=1,d={}", "g".repeat(64)),
        &format!("v=1,d={},x=1", "0".repeat(64)),
    ] {
        assert!(
            retell::parse_header(bad).is_err(),
            "retell accepted {bad:?}"
        );
    }
    for bad in [
        "",
        "t=1",
        "v1=00",
        "t=1,t=2",
        "t=x,v1=00",
        "garbage",
        &format!("t=1,v1={}", "0".repeat(65)),
    ] {
        assert!(
            stripe::parse_header(bad).is_err(),
            "stripe accepted {bad:?}"
        );
    }
    for bad in ["", "sha256=ab", &"0".repeat(63), "no-secret-provided"] {
        assert!(
            calcom::parse_header(bad).is_err(),
            "calcom accepted {bad:?}"
        );
    }
}

proptest! {
    #[test]
    fn retell_parser_never_panics(s in "\\PC*") {
        let _ = retell::parse_header(&s);
    }

    #[test]
    fn stripe_parser_never_panics(s in "\\PC*") {
        let _ = stripe::parse_header(&s);
    }

    #[test]
    fn calcom_parser_never_panics(s in "\\PC*") {
        let _ = calcom::parse_header(&s);
    }

    #[test]
    fn structured_headers_round_trip(ts in 0u64..10_000_000_000_000, digest in proptest::array::uniform32(any::<u8>())) {
        let r = retell::parse_header(&format!("v={ts},d={}", hex::encode(digest))).unwrap();
        prop_assert_eq!(r.digest, digest);
        prop_assert_eq!(r.timestamp, ts.to_string());
        let s = stripe::parse_header(&format!("t={},v1={}", ts / 1000, hex::encode(digest))).unwrap();
        prop_assert_eq!(s.v1, vec![digest]);
    }

    #[test]
    fn identify_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = retell::identify(&body);
        let _ = stripe::identify(&body);
        let _ = calcom::identify(&body);
    }
}
