//! The rules for state-changing requests (anything but GET, HEAD, OPTIONS): bearer calls pass;
//! everything a browser may send by itself (basic auth, the session cookie, nothing at all)
//! must come from the dashboard's own origin, and with a session must carry its CSRF token
//! (form field `csrf`, or header `X-CSRF-Token` for scripts on the page).

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderMap, Method},
};

use super::access::{Access, secret_eq};

/// Largest form body read to find the CSRF token.
const MAX_FORM_BYTES: usize = 16 * 1024;

pub(crate) fn is_change(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A change must come from this origin (browsers say so in `Origin` or `Sec-Fetch-Site`)
/// and, with a session, carry its CSRF token. Returns the request (body restored).
pub(crate) async fn check_change(
    access: &Access,
    request: Request,
) -> Result<Request, &'static str> {
    if matches!(access, Access::Bearer(_)) {
        return Ok(request);
    }
    if !same_origin(request.headers()) {
        return Err("cross-site request refused");
    }
    let Access::Session(session) = access else {
        return Ok(request);
    };
    if let Some(token) = request.headers().get("x-csrf-token") {
        let token = token.to_str().unwrap_or_default();
        return if secret_eq(token, &session.csrf) {
            Ok(request)
        } else {
            Err("wrong CSRF token")
        };
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| "form too large")?;
    let token = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned());
    match token {
        Some(t) if secret_eq(&t, &session.csrf) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        Some(_) => Err("wrong CSRF token"),
        None => Err("missing CSRF token"),
    }
}

/// Whether the browser's own signals say the request comes from this origin. A request
/// without them (curl, scripts) is not a browser's and passes this check.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(origin) = get("origin") {
        let hosts = [get("host"), get("x-forwarded-host")];
        return hosts.into_iter().flatten().any(|host| {
            origin.eq_ignore_ascii_case(&format!("http://{host}"))
                || origin.eq_ignore_ascii_case(&format!("https://{host}"))
        });
    }
    get("sec-fetch-site").is_none_or(|site| site == "same-origin" || site == "none")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::test_headers as headers;

    #[test]
    fn origin_must_match_the_host() {
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null")
        ])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(same_origin(&headers(&[])), "not a browser");
    }
}
