//! The web view's routes: what may be shown is decided here (public repositories this
//! node holds, nothing else; a private or unknown id is the same "not found"), the pages
//! are `guts_web`'s. Reading git runs on the blocking pool.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use guts_protocol::RepositoryId;
use guts_web::{BrowseError, Browser, pages};
use maud::Markup;

use super::{HttpState, limited, missing, public_id, served};

fn page(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

pub(super) fn not_found(what: &str) -> Response {
    page(StatusCode::NOT_FOUND, pages::not_found(what))
}

fn failed(e: impl std::fmt::Display) -> Response {
    tracing::warn!("web view: {e}");
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        pages::layout(
            "error",
            maud::html! { h1 { "This page could not be made" } },
        ),
    )
}

/// Runs `read` on the repository `repo` (a public one this node holds) off the async
/// threads; "not found" for anything else, and for what `read` cannot find.
async fn with_repo(
    state: &HttpState,
    repo: &str,
    read: impl FnOnce(RepositoryId, Browser) -> Result<Markup, BrowseError> + Send + 'static,
) -> Response {
    let Some(dir) = served(state, repo).await else {
        return missing();
    };
    let Some(id) = super::repo_id(repo) else {
        return missing();
    };
    let made = tokio::task::spawn_blocking(move || read(id, Browser::open(&dir)?)).await;
    match made {
        Ok(Ok(markup)) => page(StatusCode::OK, markup),
        Ok(Err(BrowseError::NotFound(what))) => not_found(&what),
        Ok(Err(e)) => failed(e),
        Err(e) => failed(e),
    }
}

/// `GET /`: the node and its public repositories.
pub(super) async fn node(
    State(state): State<HttpState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
) -> Response {
    if let Some(r) = limited(&state, remote) {
        return r;
    }
    let (status, peers, repos) = match (
        state.node.status().await,
        state.node.peers().await,
        state.node.repositories().await,
    ) {
        (Ok(s), Ok(p), Ok(r)) => (s, p, r),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failed(e),
    };
    let mut shown = Vec::new();
    for r in repos {
        if r.sequence > 0 && public_id(&state, &r.id).await.is_some() {
            shown.push(r);
        }
    }
    page(StatusCode::OK, pages::node(&status, &peers, &shown))
}

/// `GET /<id>`: a repository.
pub(super) async fn repository(
    State(state): State<HttpState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(repo): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = limited(&state, remote) {
        return r;
    }
    let Some(id) = public_id(&state, &repo).await else {
        return missing();
    };
    let detail = match state.node.repository(id).await {
        Ok(Some(d)) => d,
        Ok(None) => return missing(),
        Err(e) => return failed(e),
    };
    // The address the browser used, so the clone command works from where it is.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:-[]".contains(&b))
        })
        .map_or_else(|| state.local_addr.to_string(), str::to_owned);
    let url = format!("http://{host}/{id}");
    let counts = match (state.node.patches(id).await, state.node.issues(id).await) {
        (Ok(p), Ok(i)) => (p.len(), i.len()),
        (Err(e), _) | (_, Err(e)) => return failed(e),
    };
    with_repo(&state, &repo, move |_, browser| {
        let (branches, tags) = browser.refs()?;
        let head = browser.head();
        Ok(pages::repository(
            &detail,
            &url,
            &branches,
            &tags,
            head.as_deref(),
            counts,
        ))
    })
    .await
}

/// `GET /<id>/tree/<ref>/<path>` and `/<id>/blob/<ref>/<path>`: a directory or a file
/// (and `/<id>/issues/<issue>`, `/<id>/patches/<patch>`, which share the route's shape).
pub(super) async fn browse(
    State(state): State<HttpState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path((repo, kind, rest)): Path<(String, String, String)>,
) -> Response {
    if let Some(r) = limited(&state, remote) {
        return r;
    }
    if kind == "issues" || kind == "patches" {
        return collab_one(&state, &repo, &kind, rest).await;
    }
    with_repo(&state, &repo, move |id, browser| {
        let segments: Vec<&str> = rest.split('/').collect();
        let (at, path) = browser.resolve(&segments)?;
        let id = id.to_string();
        match kind.as_str() {
            "tree" if browser.is_dir(&at, &path)? => {
                Ok(pages::tree(&id, &at, &path, &browser.tree(&at, &path)?))
            }
            "tree" | "blob" => Ok(pages::file(&id, &at, &path, &browser.file(&at, &path)?)),
            "log" => Err(BrowseError::NotFound("history has no path".into())),
            _ => Err(BrowseError::NotFound(format!("no page {kind}"))),
        }
    })
    .await
}

/// `GET /<id>/log/<ref>?skip=N`: history.
pub(super) async fn log(
    State(state): State<HttpState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path((repo, rest)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = limited(&state, remote) {
        return r;
    }
    let skip = query
        .get("skip")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    with_repo(&state, &repo, move |id, browser| {
        let segments: Vec<&str> = rest.split('/').collect();
        let (at, _) = browser.resolve(&segments)?;
        let (lines, more) = browser.log(&at, skip)?;
        Ok(pages::log(&id.to_string(), &at, &lines, skip, more))
    })
    .await
}

/// `GET /<id>/commit/<commit>`: a commit and its diff.
pub(super) async fn commit(
    State(state): State<HttpState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path((repo, commit)): Path<(String, String)>,
) -> Response {
    if let Some(r) = limited(&state, remote) {
        return r;
    }
    with_repo(&state, &repo, move |id, browser| {
        Ok(pages::commit(&id.to_string(), &browser.commit(&commit)?))
    })
    .await
}

/// A patch or issue page's outcome: its markup, "not found" for one the node does not
/// know, else an error page.
fn collab_page(made: Result<Markup, crate::error::NodeError>) -> Response {
    match made {
        Ok(markup) => page(StatusCode::OK, markup),
        // A bad id in the URL is no page either.
        Err(crate::error::NodeError::NotFound(_) | crate::error::NodeError::BadRequest(_)) => {
            not_found("No such patch or issue here.")
        }
        Err(e) => failed(e),
    }
}

/// `GET /<id>/issues` and `/<id>/patches`.
pub(super) async fn collab_list(
    State(state): State<HttpState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path((repo, kind)): Path<(String, String)>,
) -> Response {
    if let Some(r) = limited(&state, remote) {
        return r;
    }
    let Some(id) = public_id(&state, &repo).await else {
        return missing();
    };
    let shown = id.to_string();
    collab_page(match kind.as_str() {
        "issues" => state
            .node
            .issues(id)
            .await
            .map(|l| guts_web::collab::issues(&shown, &l)),
        "patches" => state
            .node
            .patches(id)
            .await
            .map(|l| guts_web::collab::patches(&shown, &l)),
        _ => return not_found("No such page."),
    })
}

/// `GET /<id>/issues/<issue>` and `/<id>/patches/<patch>`.
async fn collab_one(state: &HttpState, repo: &str, kind: &str, which: String) -> Response {
    let Some(id) = public_id(state, repo).await else {
        return missing();
    };
    let shown = id.to_string();
    collab_page(match kind {
        "issues" => state
            .node
            .issue(id, which)
            .await
            .map(|i| guts_web::collab::issue(&shown, &i)),
        "patches" => state
            .node
            .patch(id, which)
            .await
            .map(|p| guts_web::collab::patch(&shown, &p)),
        _ => return not_found("No such page."),
    })
}
