//! Every request to a stand-in is first checked against its provider's `OpenAPI` document
//! (`switchboard_jobs::contract`) and refused as that provider refuses it, so `serve` on a
//! fresh machine fails where production would. Operations the documents do not have (a
//! stand-in route added for development only) pass unchecked.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::{
    Json,
    body::{Body, to_bytes},
    extract::Request,
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use switchboard_jobs::contract::{self, Contract, Provider};

/// Largest request body a stand-in reads.
const MAX_BODY: usize = 1 << 20;

/// The mounts of the stand-ins and the provider behind each.
const MOUNTS: [(&str, Provider); 3] = [
    ("/dev/calcom", Provider::Calcom),
    ("/dev/stripe", Provider::Stripe),
    ("/dev/sms", Provider::Twilio),
];

/// Middleware: pass the request on when the provider's contract accepts it.
pub async fn check(request: Request, next: Next) -> Response {
    let uri = request.uri().clone();
    let Some((provider, path)) = MOUNTS
        .iter()
        .find_map(|(mount, p)| uri.path().strip_prefix(mount).map(|rest| (*p, rest)))
    else {
        return next.run(request).await;
    };
    let contract = Contract::of(provider);
    if !contract.knows(request.method().as_str(), path) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let verdict = contract.check(
        &contract::Request {
            method: parts.method.as_str(),
            path,
            query: uri.query().unwrap_or_default(),
            headers: &parts.headers,
            body: &bytes,
        },
        now,
    );
    match verdict {
        Ok(()) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(refusal) => {
            tracing::warn!(%refusal, "dev stand-in: refused as the provider would");
            let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, Json(refusal.body)).into_response()
        }
    }
}
