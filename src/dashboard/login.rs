//! The browser login: a form that checks the configured credentials and starts a session
//! (cookie `HttpOnly`, `SameSite=Strict`), and the log-out that ends it. The login form itself
//! is only accepted from this origin, so another site cannot log a browser in to its own
//! account (login CSRF).

use askama::Template;
use axum::{
    Extension, Form,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use switchboard_jobs::RateLimiter;

use std::time::Duration;

use crate::queue::rate_limit::RedisRateLimiter;

use super::{Dash, access::Client, auth, csrf, pages::error_page, session, views::LoginPage};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

/// Where to go after logging in: a dashboard path only (no open redirect).
fn next_path(next: Option<&str>) -> String {
    next.filter(|n| {
        n.starts_with("/dashboard")
            && !n.starts_with("/dashboard/login")
            && !n.contains("//")
            && !n.contains('\\')
            && !n.chars().any(char::is_control)
    })
    .unwrap_or("/dashboard")
    .to_owned()
}

fn page(dash: &Dash, next: String, error: Option<String>) -> Response {
    let only_token = dash.credentials.token.is_some() && dash.credentials.password.is_none();
    let page = LoginPage {
        next,
        username: dash.settings.username.clone(),
        error,
        password_label: if only_token { "Token" } else { "Password" },
    };
    match page.render() {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering the login page failed");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "login page broken".into(),
            )
        }
    }
}

pub(crate) async fn form(State(dash): State<Dash>, Query(q): Query<Next>) -> Response {
    if !dash.credentials.is_set() {
        // Nothing to log in with: the guard lets loopback requests in as they are.
        return Redirect::to(&next_path(q.next.as_deref())).into_response();
    }
    page(&dash, next_path(q.next.as_deref()), None)
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    password: String,
    next: Option<String>,
}

pub(crate) async fn submit(
    State(dash): State<Dash>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if !csrf::same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-site request refused\n").into_response();
    }
    let next = next_path(f.next.as_deref());
    if !dash.credentials.is_set() {
        return Redirect::to(&next).into_response();
    }
    if let Some(refused) = throttled(&dash, client).await {
        return refused;
    }
    let Some(who) = dash
        .credentials
        .login(&dash.settings, &f.username, &f.password)
        .await
    else {
        tracing::warn!(client = %client.audit(), "dashboard login refused");
        if let Err(e) = dash.throttle.failed(client.0.map(|a| a.ip())).await {
            tracing::error!(error = %e, "counting a failed login failed");
        }
        let mut r = page(&dash, next, Some("Wrong user name or password.".into()));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    };
    match dash.sessions.create(who.clone()).await {
        Ok(s) => {
            tracing::info!(operator = %who.name, role = %who.role, client = %client.audit(), "dashboard login");
            with_cookie(
                Redirect::to(&next).into_response(),
                &dash.sessions.cookie(&s),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "starting a dashboard session failed");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The session store (Redis) is unavailable.".into(),
            )
        }
    }
}

/// The refusal when the client's address is over its limit of failed credentials, or no slot
/// of the deployment-wide login window is free (429 with `Retry-After`), or a window cannot
/// be read (503).
async fn throttled(dash: &Dash, client: Client) -> Option<Response> {
    match dash.throttle.refused(client.0.map(|a| a.ip())).await {
        Ok(None) => {}
        Ok(Some(wait)) => return Some(auth::too_many(false, wait, client)),
        Err(e) => {
            tracing::error!(error = %e, "reading the failed-credentials window failed");
            return Some(error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The session store (Redis) is unavailable.".into(),
            ));
        }
    }
    let limiter = RedisRateLimiter::new(dash.queues.clone());
    let limit = dash.settings.login_attempts_per_minute;
    match limiter
        .acquire("dashboard-login", limit, Duration::from_secs(60))
        .await
    {
        Ok(None) => None,
        Ok(Some(wait)) => {
            tracing::warn!(limit, "dashboard login attempts throttled");
            let secs = wait.as_secs().max(1);
            let mut r = error_page(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many login attempts; try again in {secs} s."),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            Some(r)
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the login window failed");
            Some(error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The session store (Redis) is unavailable.".into(),
            ))
        }
    }
}

/// Behind the guard, so it needs the session's CSRF token like any other change.
pub(crate) async fn logout(State(dash): State<Dash>, headers: HeaderMap) -> Response {
    if let Some(id) = session::cookie_value(&headers)
        && let Err(e) = dash.sessions.delete(id).await
    {
        tracing::warn!(error = %e, "ending a dashboard session failed");
    }
    with_cookie(
        Redirect::to("/dashboard/login").into_response(),
        &dash.sessions.clear_cookie(),
    )
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}
