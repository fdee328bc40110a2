//! git's smart HTTP protocol, read-only (gitprotocol-http(5)): `info/refs` advertises a
//! repository's canonical branches and tags, `git-upload-pack` answers a fetch. Both are
//! git's own `upload-pack --stateless-rpc` in its fixed environment, as `git
//! http-backend` runs it, here without a CGI server in between.

use std::io::Read;
use std::net::SocketAddr;
use std::process::Stdio;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::{DEADLINE, HttpState, limited, plain, served};

/// Largest fetch request read (its wants and haves), before and after gzip.
const MAX_REQUEST: usize = 8 << 20;
/// Read size from git's output.
const CHUNK: usize = 64 * 1024;

/// Only the canonical refs and, under `refs/guts/`, the signed record and views are
/// advertised (the published copy holds nothing else; this says so again).
const SERVED_REFS: [&str; 8] = [
    "-c",
    "uploadpack.hideRefs=refs/",
    "-c",
    "uploadpack.hideRefs=!refs/heads/",
    "-c",
    "uploadpack.hideRefs=!refs/tags/",
    "-c",
    "uploadpack.hideRefs=!refs/guts/",
];

/// What any unknown path, unknown id and private id gets, alike (the web view's page).
pub(super) async fn not_found() -> Response {
    super::missing()
}

/// The `service` query of `info/refs`.
#[derive(Debug, Deserialize)]
pub(super) struct InfoRefsQuery {
    service: Option<String>,
}

/// The protocol the client asks for (`Git-Protocol: version=2`), if it is one git sets.
fn git_protocol(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("git-protocol")?.to_str().ok()?;
    let plain = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"=:.-_".contains(&b));
    (plain && value.len() <= 256).then(|| value.to_owned())
}

/// `git upload-pack --stateless-rpc` on `dir`.
fn upload_pack(
    dir: &std::path::Path,
    advertise: bool,
    protocol: Option<&str>,
) -> tokio::process::Command {
    let mut command = guts_git::command();
    command
        .args(SERVED_REFS)
        // Partial clones (`--filter`) when git asks for them.
        .args(["-c", "uploadpack.allowFilter=true"])
        .args(["upload-pack", "--strict", "--stateless-rpc"]);
    if advertise {
        command.arg("--advertise-refs");
    }
    command.arg(dir);
    if let Some(p) = protocol {
        command.env("GIT_PROTOCOL", p);
    }
    let mut command = tokio::process::Command::from(command);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// `GET /<id>/info/refs?service=git-upload-pack`.
pub(super) async fn info_refs(
    State(state): State<HttpState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(repo): Path<String>,
    Query(query): Query<InfoRefsQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = limited(&state, remote) {
        return r;
    }
    match query.service.as_deref() {
        Some("git-upload-pack") => {}
        Some("git-receive-pack") => {
            return super::push::advertise(state, repo, headers).await;
        }
        _ => {
            return plain(
                StatusCode::FORBIDDEN,
                "this endpoint speaks git's smart HTTP protocol only (git 1.6.6 or later)\n",
            );
        }
    }
    let Some(dir) = served(&state, &repo).await else {
        return not_found().await;
    };
    let protocol = git_protocol(&headers);
    let out = match upload_pack(&dir, true, protocol.as_deref()).output().await {
        Ok(out) if out.status.success() => out.stdout,
        Ok(out) => {
            tracing::warn!(repo, "git upload-pack --advertise-refs: {}", out.status);
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot list its refs\n");
        }
        Err(e) => {
            tracing::warn!("cannot run git upload-pack: {e}");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot run git\n");
        }
    };
    let mut body = Vec::with_capacity(out.len() + 64);
    // Protocol v2 starts with its capabilities; v0 with the service line (as
    // git-http-backend does).
    if !protocol.as_deref().is_some_and(|p| p.contains("version=2")) {
        let line = "# service=git-upload-pack\n";
        body.extend_from_slice(format!("{:04x}{line}0000", line.len() + 4).as_bytes());
    }
    body.extend_from_slice(&out);
    (
        [
            (
                header::CONTENT_TYPE,
                "application/x-git-upload-pack-advertisement",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The request body, gunzipped if git compressed it, at most [`MAX_REQUEST`] bytes.
async fn request_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Response> {
    let too_large = || {
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("a fetch request is at most {MAX_REQUEST} bytes\n"),
        )
    };
    // A declared length past the limit is refused before a byte of it is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST as u64) {
        return Err(too_large());
    }
    let raw = axum::body::to_bytes(body, MAX_REQUEST)
        .await
        .map_err(|_| too_large())?;
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if !gzip {
        return Ok(raw.to_vec());
    }
    let mut plain_bytes = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .take(MAX_REQUEST as u64 + 1)
        .read_to_end(&mut plain_bytes)
        .map_err(|_| plain(StatusCode::BAD_REQUEST, "the request's gzip is corrupt\n"))?;
    if plain_bytes.len() > MAX_REQUEST {
        return Err(too_large());
    }
    Ok(plain_bytes)
}

/// `POST /<id>/git-upload-pack`: one round of a fetch; the pack streams as git writes it.
pub(super) async fn upload_pack_request(
    State(state): State<HttpState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(repo): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(r) = limited(&state, remote) {
        return r;
    }
    let typed = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/x-git-upload-pack-request");
    if !typed {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/x-git-upload-pack-request\n",
        );
    }
    let Some(dir) = served(&state, &repo).await else {
        return not_found().await;
    };
    let Ok(permit) = state.transfers.clone().try_acquire_owned() else {
        let mut r = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy sending other packs; try again shortly\n",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    };
    let request = match request_body(&headers, body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let protocol = git_protocol(&headers);
    let mut child = match upload_pack(&dir, false, protocol.as_deref()).spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot run git upload-pack: {e}");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot run git\n");
        }
    };
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot run git\n");
    };
    // Written beside the reading: git may answer before it has read everything.
    tokio::spawn(async move {
        let _ = stdin.write_all(&request).await;
    });
    let deadline = Instant::now() + DEADLINE;
    // The child and the permit live as long as the stream: a client that goes away
    // drops it, which kills git (kill_on_drop) and frees the permit.
    let chunks = futures::stream::unfold(
        (stdout, child, permit),
        move |(mut stdout, child, permit)| async move {
            let mut buf = vec![0u8; CHUNK];
            match tokio::time::timeout_at(deadline, stdout.read(&mut buf)).await {
                Ok(Ok(0)) => None,
                Ok(Ok(n)) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), (stdout, child, permit)))
                }
                Ok(Err(e)) => Some((Err(e), (stdout, child, permit))),
                Err(_) => {
                    tracing::info!("a fetch over HTTP passed its {DEADLINE:?} deadline: cut off");
                    None
                }
            }
        },
    );
    (
        [
            (header::CONTENT_TYPE, "application/x-git-upload-pack-result"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}
