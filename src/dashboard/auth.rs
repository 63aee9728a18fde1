//! Who may see and change what: credentials, the guard in front of every page and API call,
//! the throttle on failed credentials, and the CSRF rules for state-changing requests.
//!
//! A request is let in by one of:
//! * `Authorization: Bearer <SWITCHBOARD_DASHBOARD_TOKEN>`: scripts; never ambient in a
//!   browser, so it needs no CSRF token. Recorded as `token`, with `dashboard.shared_role`.
//! * `Authorization: Basic` with a named operator's password (`SWITCHBOARD_DASHBOARD_OPERATORS`,
//!   argon2 hashes, see [`super::operators`]) or `dashboard.username` and
//!   `SWITCHBOARD_DASHBOARD_PASSWORD`: browsers replay it by themselves, so a change must come
//!   from the same origin.
//! * The session cookie from the login page: a change must come from the same origin *and*
//!   carry the session's CSRF token (form field `csrf` or header `X-CSRF-Token`).
//! * Nothing, when no credentials are configured: allowed only on a loopback listener (see
//!   [`check_exposure`]) and only for requests addressed to a loopback host (so a DNS
//!   rebinding page cannot read it). A page issues a session by itself, for the CSRF token of
//!   its forms; an API call gets none and, like basic auth, must only be same-origin.
//!
//! Before a bearer or basic credential is looked at, the client's address must not be over its
//! limit of failed credentials ([`super::throttle`]); a wrong one counts against it. A change
//! needs a role that may change ([`Role::may_change`]): a viewer's is answered 403.
//!
//! The CSRF rules themselves are in [`super::csrf`], what a request is in [`super::access`].
//! Secrets are compared in constant time (over SHA-256 digests, so lengths do not leak) and
//! never logged; `Debug` of [`Credentials`] says only whether each is set.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use base64::Engine as _;

use super::{
    Dash,
    access::{Access, Client, Role, Who, secret_eq},
    csrf,
    operators::Operators,
    session,
};
use crate::config::DashboardSettings;

/// The name the shared bearer token is recorded under.
pub const TOKEN_NAME: &str = "token";

/// The dashboard's secrets, from the environment only (through `config::Secrets`).
#[derive(Clone)]
pub struct Credentials {
    /// Bearer token (`SWITCHBOARD_DASHBOARD_TOKEN`).
    pub token: Option<String>,
    /// Password of `dashboard.username` (`SWITCHBOARD_DASHBOARD_PASSWORD`).
    pub password: Option<String>,
    /// Named operators (`SWITCHBOARD_DASHBOARD_OPERATORS`).
    pub operators: Operators,
    /// The role of the token and the shared password (`dashboard.shared_role`).
    pub shared_role: Role,
}

impl Default for Credentials {
    fn default() -> Self {
        Self {
            token: None,
            password: None,
            operators: Operators::default(),
            shared_role: Role::Admin,
        }
    }
}

impl Credentials {
    /// The credentials as loaded from the environment, with `settings`' shared role; one line
    /// when the operators variable is malformed.
    pub fn new(
        secrets: &crate::config::Secrets,
        settings: &DashboardSettings,
    ) -> Result<Self, String> {
        let text = |s: &Option<switchboard_jobs::Secret>| s.as_ref().map(|s| s.expose().to_owned());
        let operators = match &secrets.dashboard_operators {
            Some(raw) => Operators::parse(raw.expose())?,
            None => Operators::default(),
        };
        Ok(Self {
            token: text(&secrets.dashboard_token),
            password: text(&secrets.dashboard_password),
            operators,
            shared_role: Role::parse(&settings.shared_role).unwrap_or(Role::Admin),
        })
    }

    /// Whether any credential is configured.
    pub fn is_set(&self) -> bool {
        self.token.is_some() || self.password.is_some() || self.operators.is_set()
    }

    /// Who logs in with `username` and `password`: a named operator, the shared user's
    /// password, or the bearer token in the password field (for deployments that configure
    /// only a token).
    pub async fn login(
        &self,
        settings: &DashboardSettings,
        username: &str,
        password: &str,
    ) -> Option<Who> {
        if self.operators.has(username) {
            return self.operators.verify(username, password).await;
        }
        let shared = |name: &str| Who {
            name: name.to_owned(),
            role: self.shared_role,
        };
        let by_password = self.password.as_deref().is_some_and(|p| {
            // Both compared always, so timing does not tell which one was wrong.
            secret_eq(username, &settings.username) & secret_eq(password, p)
        });
        let by_token = self
            .token
            .as_deref()
            .is_some_and(|t| secret_eq(password, t));
        if by_password {
            Some(shared(&settings.username))
        } else if by_token {
            Some(shared(TOKEN_NAME))
        } else {
            None
        }
    }

    /// Who presents `token` as a bearer token.
    fn bearer(&self, token: &str) -> Option<Who> {
        self.token
            .as_deref()
            .is_some_and(|t| secret_eq(token, t))
            .then(|| Who {
                name: TOKEN_NAME.to_owned(),
                role: self.shared_role,
            })
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "set" } else { "unset" };
        write!(
            f,
            "Credentials(token: {}, password: {}, {:?}, shared role: {})",
            set(&self.token),
            set(&self.password),
            self.operators,
            self.shared_role
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

/// The guard: find the client, authenticate (throttled), check the role may do what is
/// asked, then for state-changing methods check origin and CSRF token.
pub(crate) async fn guard(State(dash): State<Dash>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let client = request
        .extensions()
        .get::<Client>()
        .copied()
        .unwrap_or_else(|| client(&dash, &request));
    let (access, new_cookie) = match authenticate(&dash, request.headers(), api, client).await {
        Ok(Some(found)) => found,
        Ok(None) => return refuse_unauthenticated(&dash, api, request.uri()),
        Err(response) => return response,
    };
    let request = if csrf::is_change(request.method()) {
        // Logging out is a change anyone logged in may make.
        if !access.role().may_change() && request.uri().path() != "/dashboard/logout" {
            return forbidden(api, "your role (viewer) may not change anything");
        }
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

/// Put the client's address ([`client`]) on every dashboard request, the login page's too.
pub(crate) async fn with_client(
    State(dash): State<Dash>,
    mut request: Request,
    next: Next,
) -> Response {
    let c = client(&dash, &request);
    request.extensions_mut().insert(c);
    next.run(request).await
}

/// The client's address: the peer, or for a trusted proxy the last `X-Forwarded-For` entry
/// that is not itself a trusted proxy.
pub(crate) fn client(dash: &Dash, request: &Request) -> Client {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let trusted = |ip: IpAddr| dash.trusted_proxies.contains(&ip);
    let Some(peer) = peer.filter(|p| trusted(p.ip())) else {
        return Client(peer);
    };
    let forwarded = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    let ip = forwarded
        .into_iter()
        .rev()
        .find(|ip| !trusted(*ip))
        .unwrap_or(peer.ip());
    Client(Some(SocketAddr::new(ip, 0)))
}

type Authenticated = Option<(Access, Option<String>)>;

async fn authenticate(
    dash: &Dash,
    headers: &HeaderMap,
    api: bool,
    client: Client,
) -> Result<Authenticated, Response> {
    let sessions = &dash.sessions;
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let ip = client.0.map(|a| a.ip());
        if let Some(wait) = dash.throttle.refused(ip).await.map_err(|e| internal(&e))? {
            return Err(too_many(api, wait, client));
        }
        let value = value.to_str().unwrap_or_default();
        let ok = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                dash.credentials.bearer(token.trim()).map(Access::Bearer)
            }
            Some((scheme, b64)) if scheme.eq_ignore_ascii_case("basic") => {
                basic(dash, b64).await.map(Access::Basic)
            }
            _ => None,
        };
        if ok.is_none() {
            dash.throttle.failed(ip).await.map_err(|e| internal(&e))?;
        }
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
    let s = sessions
        .create(Access::Open.who())
        .await
        .map_err(|e| internal(&e))?;
    let cookie = sessions.cookie(&s);
    Ok(Some((Access::Session(s), Some(cookie))))
}

async fn basic(dash: &Dash, b64: &str) -> Option<Who> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    if dash.credentials.operators.has(user) {
        return dash.credentials.operators.verify(user, password).await;
    }
    let expected = dash.credentials.password.as_deref()?;
    (secret_eq(user, &dash.settings.username) & secret_eq(password, expected)).then(|| Who {
        name: dash.settings.username.clone(),
        role: dash.credentials.shared_role,
    })
}

/// 429 with `Retry-After` for an address over its limit of failed credentials.
pub(crate) fn too_many(api: bool, wait: std::time::Duration, client: Client) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    tracing::warn!(client = %client.audit(), retry_after_secs = secs, "dashboard credentials throttled");
    let message = format!("too many failed credentials from this address; try again in {secs} s");
    let mut response = if api {
        (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(serde_json::json!({"error": message})),
        )
            .into_response()
    } else {
        (StatusCode::TOO_MANY_REQUESTS, format!("{message}\n")).into_response()
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
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
    if dash.credentials.password.is_some() || dash.credentials.operators.is_set() {
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
            ..Credentials::default()
        };
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let err = check_exposure(&settings, public, &none).unwrap_err();
        assert!(err.contains("SWITCHBOARD_DASHBOARD_TOKEN"), "{err}");
        assert!(check_exposure(&settings, local, &none).is_ok());
        assert!(check_exposure(&settings, public, &token).is_ok());
        assert_eq!(
            format!("{token:?}"),
            "Credentials(token: set, password: unset, Operators(), shared role: admin)"
        );
    }

    #[tokio::test]
    async fn logins_compare_user_and_secret() {
        let settings = crate::config::Settings::defaults().dashboard;
        let hash = crate::dashboard::operators::hash_password("vpw").unwrap();
        let c = Credentials {
            token: Some("tok".into()),
            password: Some("pw".into()),
            operators: Operators::parse(&format!("vera:viewer:{hash}")).unwrap(),
            shared_role: Role::Operator,
        };
        let who = c.login(&settings, "admin", "pw").await.unwrap();
        assert_eq!((who.name.as_str(), who.role), ("admin", Role::Operator));
        assert_eq!(
            c.login(&settings, "anyone", "tok").await.unwrap().name,
            TOKEN_NAME
        );
        assert!(c.login(&settings, "other", "pw").await.is_none());
        assert!(c.login(&settings, "admin", "pw2").await.is_none());
        assert_eq!(
            c.login(&settings, "vera", "vpw").await.unwrap().role,
            Role::Viewer
        );
        // An operator's name does not fall back to the shared token.
        assert!(c.login(&settings, "vera", "tok").await.is_none());
        assert!(
            Credentials::default()
                .login(&settings, "admin", "")
                .await
                .is_none()
        );
    }
}
