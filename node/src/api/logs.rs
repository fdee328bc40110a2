//! `GET /api/v1/logs`: the node's recent log lines, and with `follow=true` each new one as
//! it is logged, as JSON lines (`{"line": "..."}`; `{"skipped": N}` where a slow reader
//! missed lines). A followed stream ends when the node stops.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::state::ApiState;
use crate::logs::{self, RECENT};

/// Query of `GET /api/v1/logs`.
#[derive(Deserialize)]
pub(super) struct LogsQuery {
    /// How many past lines (at most [`RECENT`]); 100 when absent.
    lines: Option<usize>,
    /// Keep the answer open and send each new line.
    #[serde(default)]
    follow: bool,
}

pub(super) async fn logs(State(s): State<ApiState>, Query(q): Query<LogsQuery>) -> Response {
    let (past, live) = logs::tap().follow(q.lines.unwrap_or(100).min(RECENT));
    let past = futures::stream::iter(past.into_iter().map(|l| json_line(&Entry::Line(&l))));
    let live = futures::stream::unfold(
        (live, s.stopping, q.follow),
        |(mut live, mut stopping, follow)| async move {
            if !follow || *stopping.borrow() {
                return None;
            }
            let line = tokio::select! {
                line = live.recv() => line,
                _ = stopping.wait_for(|s| *s) => return None,
            };
            let bytes = match line {
                Ok(l) => json_line(&Entry::Line(&l)),
                Err(RecvError::Lagged(n)) => json_line(&Entry::Skipped(n)),
                Err(RecvError::Closed) => return None,
            };
            Some((bytes, (live, stopping, follow)))
        },
    );
    let body = futures::StreamExt::map(futures::StreamExt::chain(past, live), |b| {
        Ok::<_, std::convert::Infallible>(b)
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

#[derive(serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Entry<'a> {
    Line(&'a str),
    Skipped(u64),
}

fn json_line(entry: &Entry<'_>) -> Vec<u8> {
    let mut line = serde_json::to_vec(entry).unwrap_or_default();
    line.push(b'\n');
    line
}
