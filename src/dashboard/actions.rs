//! The pages' form actions: retry, forget, retry all, pause, continue. Each answers 303 to
//! the page it came from (only ever a `/dashboard` path) with a one-line notice of what it
//! did; the guard has already checked origin and CSRF token before any of these run.

use axum::{
    Form,
    extract::{Path, State},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::{Actor, Dash, api::check_id, pages::PageError, views::seg};

/// The form fields of every action besides the CSRF token (which the guard checked).
#[derive(Debug, Deserialize)]
pub(crate) struct Action {
    back: Option<String>,
    queue: Option<String>,
}

/// Redirect to `back` when it is a dashboard path (never elsewhere), with the notice.
fn back_to(back: Option<&str>, default: &str, notice: &str) -> Response {
    let path = back
        .filter(|b| {
            b.starts_with("/dashboard")
                && !b.contains("//")
                && !b.contains('\\')
                && !b.chars().any(char::is_control)
        })
        .unwrap_or(default);
    // Keep only the failed list's queue filter from the old query.
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let keep: Vec<&str> = query
        .split('&')
        .filter(|p| p.starts_with("queue="))
        .collect();
    let mut to = format!("{path}?{notice}");
    for k in keep {
        to.push('&');
        to.push_str(k);
    }
    Redirect::to(&to).into_response()
}

pub(crate) async fn retry(
    State(dash): State<Dash>,
    actor: Actor,
    Path((queue, id)): Path<(String, String)>,
    Form(a): Form<Action>,
) -> Result<Response, PageError> {
    check_id(&id)?;
    let n = dash.retry(&actor, &queue, &id).await?;
    Ok(back_to(
        a.back.as_deref(),
        "/dashboard/failed",
        &format!("done=retried&n={n}"),
    ))
}

pub(crate) async fn forget(
    State(dash): State<Dash>,
    actor: Actor,
    Path((queue, id)): Path<(String, String)>,
    Form(a): Form<Action>,
) -> Result<Response, PageError> {
    check_id(&id)?;
    let n = dash.forget(&actor, &queue, &id).await?;
    // The job page of a forgotten job would only say it is gone.
    let back = a.back.filter(|b| !b.starts_with("/dashboard/jobs/"));
    Ok(back_to(
        back.as_deref(),
        "/dashboard/failed",
        &format!("done=forgot&n={n}"),
    ))
}

pub(crate) async fn retry_all(
    State(dash): State<Dash>,
    actor: Actor,
    Form(a): Form<Action>,
) -> Result<Response, PageError> {
    let queue = a.queue.filter(|q| !q.is_empty());
    let n = dash.retry_all(&actor, queue.as_deref()).await?;
    Ok(back_to(
        a.back.as_deref(),
        "/dashboard/failed",
        &format!("done=retried&n={n}"),
    ))
}

pub(crate) async fn pause(
    State(dash): State<Dash>,
    actor: Actor,
    Path(queue): Path<String>,
    Form(a): Form<Action>,
) -> Result<Response, PageError> {
    dash.set_paused(&actor, &queue, true).await?;
    Ok(back_to(
        a.back.as_deref(),
        "/dashboard",
        &format!("done=paused&q={}", seg(&queue)),
    ))
}

pub(crate) async fn resume(
    State(dash): State<Dash>,
    actor: Actor,
    Path(queue): Path<String>,
    Form(a): Form<Action>,
) -> Result<Response, PageError> {
    dash.set_paused(&actor, &queue, false).await?;
    Ok(back_to(
        a.back.as_deref(),
        "/dashboard",
        &format!("done=continued&q={}", seg(&queue)),
    ))
}
