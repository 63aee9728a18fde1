//! Who may see and change what: credentials, the guard in front of every page and API call,
//! and the CSRF rules for state-changing requests.
//!
//! A request is let in by one of:
//! * `Authorization: Bearer <SWITCHBOARD_DASHBOARD_TOKEN>`: scripts; never ambient in a
//!   browser, so it needs no CSRF token.
//! * `Authorization: Basic` with `dashboard.username` and `SWITCHBOARD_DASHBOARD_PASSWORD`:
//!   browsers replay it by themselves, so a change must come from the same origin.
//! * The session cookie from the login page: a change must come from the same origin *and*
//!   carry the session's CSRF token (form field `csrf` or header `X-CSRF-Token`).
//! * Nothing, when no credentials are configured: allowed only on a loopback listener (see
//!   [`check_exposure`]) and only for requests addressed to a loopback host (so a DNS
//!   rebinding page cannot read it). A page issues a session by itself, for the CSRF token of
//!   its forms; an API call gets none and, like basic auth, must only be same-origin.
//!
//! The CSRF rules themselves are in [`super::csrf`], what a request is in [`super::access`].
//! Secrets are compared in constant time (over SHA-256 digests, so lengths do not leak) and
//! never logged; `Debug` of [`Credentials`] says only whether each is set.

use std::{fmt, net::SocketAddr};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use base64::Engine as _;

use super::{
    Dash,
    access::{Access, secret_eq},
    csrf, session,
};
use crate::config::DashboardSettings;

/// The dashboard's secrets, from the environment only (through `config::Secrets`).
#[derive(Clone, Default)]
pub struct Credentials {
    /// Bearer token (`SWITCHBOARD_DASHBOARD_TOKEN`).
    pub token: Option<String>,
    /// Password of `dashboard.username` (`SWITCHBOARD_DASHBOARD_PASSWORD`).
    pub password: Option<String>,
}

impl Credentials {
    /// `SWITCHBOARD_DASHBOARD_TOKEN` and `SWITCHBOARD_DASHBOARD_PASSWORD`, as loaded.
    pub fn new(secrets: &crate::config::Secrets) -> Self {
        let text = |s: &Option<switchboard_jobs::Secret>| s.as_ref().map(|s| s.expose().to_owned());
        Self {
            token: text(&secrets.dashboard_token),
            password: text(&secrets.dashboard_password),
        }
    }

    /// Whether any credential is configured.
    pub fn is_set(&self) -> bool {
        self.token.is_some() || self.password.is_some()
    }

    /// Whether a login with `username` and `password` succeeds: the user's password, or the
    /// bearer token in the password field (for deployments that configure only a token).
    pub fn login(&self, settings: &DashboardSettings, username: &str, password: &str) -> bool {
        let by_password = self.password.as_deref().is_some_and(|p| {
            // Both compared always, so timing does not tell which one was wrong.
            secret_eq(username, &settings.username) & secret_eq(password, p)
        });
        let by_token = self
            .token
            .as_deref()
            .is_some_and(|t| secret_eq(password, t));
        by_password | by_token
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "set" } else { "unset" };
        write!(
            f,
            "Credentials(token: {}, password: {})",
            set(&self.token),
            set(&self.password)
        )
    }
}

/// Refuse a dashboard reachable beyond loopback without credentials: one clear line.
pub fn check_exposure(
    settings: &DashboardSettings,
    addr: SocketAddr,
    credentials: &Credentials,
) -> Result<(), String> {
    if !settings.enabled || credentials.is_set() || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "the dashboard would be reachable on {addr} (http.listen) without credentials: set \
         SWITCHBOARD_DASHBOARD_TOKEN and/or SWITCHBOARD_DASHBOARD_PASSWORD, listen on a \
         loopback address, or set dashboard.enabled = false"
    ))
}

/// The guard: authenticate, then for state-changing methods check origin and CSRF token.
pub(crate) async fn guard(State(dash): State<Dash>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let (access, new_cookie) = match authenticate(&dash, request.headers(), api).await {
        Ok(Some(found)) => found,
        Ok(None) => return refuse_unauthenticated(&dash, api, request.uri()),
        Err(response) => return response,
    };
    let request = if csrf::is_change(request.method()) {
        match csrf::check_change(&access, request).await {
            Ok(r) => r,
            Err(why) => return forbidden(api, why),
        }
    } else {
        request
    };
    let mut request = request;
    request.extensions_mut().insert(access);
    let mut response = next.run(request).await;
    if let Some(cookie) = new_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

type Authenticated = Option<(Access, Option<String>)>;

async fn authenticate(
    dash: &Dash,
    headers: &HeaderMap,
    api: bool,
) -> Result<Authenticated, Response> {
    let sessions = &dash.sessions;
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default();
        let ok = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => dash
                .credentials
                .token
                .as_deref()
                .is_some_and(|t| secret_eq(token.trim(), t))
                .then_some(Access::Bearer),
            Some((scheme, b64)) if scheme.eq_ignore_ascii_case("basic") => basic(dash, b64),
            _ => None,
        };
        // Wrong credentials are refused outright, never passed on to the cookie.
        return Ok(ok.map(|a| (a, None)));
    }
    let found = match session::cookie_value(headers) {
        Some(id) => sessions.get(id).await.map_err(|e| internal(&e))?,
        None => None,
    };
    if let Some(s) = found {
        return Ok(Some((Access::Session(s), None)));
    }
    if dash.credentials.is_set() {
        return Ok(None);
    }
    if !loopback_host(headers) {
        return Err((
            StatusCode::FORBIDDEN,
            "the dashboard has no credentials configured and answers only requests to a \
             loopback host (localhost, 127.0.0.1, [::1])\n",
        )
            .into_response());
    }
    if api {
        return Ok(Some((Access::Open, None)));
    }
    let s = sessions.create().await.map_err(|e| internal(&e))?;
    let cookie = sessions.cookie(&s);
    Ok(Some((Access::Session(s), Some(cookie))))
}

fn basic(dash: &Dash, b64: &str) -> Option<Access> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    let expected = dash.credentials.password.as_deref()?;
    (secret_eq(user, &dash.settings.username) & secret_eq(password, expected))
        .then_some(Access::Basic)
}

fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = if host.starts_with('[') {
        host.split_once(']').map_or(host, |(h, _)| &h[1..])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn refuse_unauthenticated(dash: &Dash, api: bool, uri: &axum::http::Uri) -> Response {
    if !api {
        let next = uri.path_and_query().map_or("/dashboard", |p| p.as_str());
        let to = format!(
            "/dashboard/login?next={}",
            form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        );
        return Redirect::to(&to).into_response();
    }
    let mut challenges = Vec::new();
    if dash.credentials.token.is_some() {
        challenges.push("Bearer realm=\"switchboard\"");
    }
    if dash.credentials.password.is_some() {
        challenges.push("Basic realm=\"switchboard\"");
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({"error": "authentication required"})),
    )
        .into_response();
    for c in challenges {
        response
            .headers_mut()
            .append(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    response
}

fn forbidden(api: bool, why: &'static str) -> Response {
    if api {
        (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({"error": why})),
        )
            .into_response()
    } else {
        (StatusCode::FORBIDDEN, format!("{why}\n")).into_response()
    }
}

fn internal(e: &crate::queue::QueueError) -> Response {
    tracing::error!(error = %e, "dashboard session store failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "session store unavailable\n",
    )
        .into_response()
}

/// Headers on every dashboard answer: a strict CSP (no inline script at all, so even a
/// template mistake cannot run injected code), no framing, no sniffing, no caching.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::test_headers as headers;

    #[test]
    fn loopback_hosts_only() {
        for ok in [
            "localhost:8080",
            "127.0.0.1",
            "127.0.0.1:1",
            "[::1]:8080",
            "LOCALHOST",
        ] {
            assert!(loopback_host(&headers(&[("host", ok)])), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "10.0.0.1:8080",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(&headers(&[("host", bad)])), "{bad}");
        }
        assert!(!loopback_host(&headers(&[])));
    }

    #[test]
    fn exposure_without_credentials_is_refused_beyond_loopback() {
        let settings = crate::config::Settings::defaults().dashboard;
        let none = Credentials::default();
        let token = Credentials {
            token: Some("s3cr3t-value".into()),
            password: None,
        };
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let err = check_exposure(&settings, public, &none).unwrap_err();
        assert!(err.contains("SWITCHBOARD_DASHBOARD_TOKEN"), "{err}");
        assert!(check_exposure(&settings, local, &none).is_ok());
        assert!(check_exposure(&settings, public, &token).is_ok());
        assert_eq!(
            format!("{token:?}"),
            "Credentials(token: set, password: unset)"
        );
    }

    #[test]
    fn logins_compare_user_and_secret() {
        let settings = crate::config::Settings::defaults().dashboard;
        let c = Credentials {
            token: Some("tok".into()),
            password: Some("pw".into()),
        };
        assert!(c.login(&settings, "admin", "pw"));
        assert!(c.login(&settings, "anyone", "tok"));
        assert!(!c.login(&settings, "other", "pw"));
        assert!(!c.login(&settings, "admin", "pw2"));
        assert!(!Credentials::default().login(&settings, "admin", ""));
    }
}
