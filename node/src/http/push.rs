//! `git push` over HTTP for whoever holds the node's API token, off unless
//! `--http-push`: a node in a container or on a server is then pushed to from a laptop
//! with stock git, as `git-remote-guts` pushes on the node's own machine.
//!
//! git's receive-pack is not run: it would move refs itself and tell git "ok" before the
//! node has decided anything. The request is read here instead (gitprotocol-pack(5): the
//! ref commands as pkt-lines, then the pack), the pack goes to git's own `index-pack
//! --fix-thin --strict` into a push area that borrows the store's objects (as
//! git-remote-guts sends it), the node applies and signs the updates like any push, and
//! the report git prints is the node's own answer for each ref.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::StreamExt;
use guts_protocol::{ObjectId, RepositoryId};
use guts_storage::RefUpdate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{HttpState, limited, plain};

/// What receive-pack would advertise, less what the node does not do (atomic pushes,
/// push options, signed pushes).
const CAPABILITIES: &str = "report-status delete-refs side-band-64k quiet ofs-delta";
/// Largest pkt-line (git's LARGE_PACKET_MAX).
const MAX_PKT: usize = 65520;
/// Most bytes of ref commands read before the pack.
const MAX_COMMANDS: usize = 8 << 20;
/// Bytes of one side-band packet's data.
const BAND_DATA: usize = 65515;
const ZERO: &str = "0000000000000000000000000000000000000000";

/// Unless the request carries the node's API token (`Authorization: Basic`, any user
/// name, the token as password, as git sends a URL's or a credential helper's; or
/// `Bearer`): the answer that says what is missing.
fn unauthorized(state: &HttpState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &state.push_token else {
        return Some(super::read_only());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            if let Some(basic) = v.strip_prefix("Basic ") {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(basic.trim())
                    .ok()?;
                let text = String::from_utf8(decoded).ok()?;
                Some(text.split_once(':')?.1.to_owned())
            } else {
                v.strip_prefix("Bearer ").map(|t| t.trim().to_owned())
            }
        });
    if presented.is_some_and(|p| token.matches(&p)) {
        return None;
    }
    let mut r = plain(
        StatusCode::UNAUTHORIZED,
        "pushing here takes the node's API token as the password (guts api-token)\n",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"guts node\""),
    );
    Some(r)
}

/// One pkt-line.
fn pkt(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", data.len() + 4).into_bytes();
    out.extend_from_slice(data);
    out
}

/// The refs a push moves, as the node lists them for its key (its view, its fork, or the
/// canonical refs); `None` if the node does not hold `id`.
async fn push_refs(
    state: &HttpState,
    id: RepositoryId,
) -> Result<Option<Vec<(String, String)>>, Response> {
    match state.node.repository(id).await {
        Ok(Some(detail)) => Ok(Some(detail.refs_for_push())),
        Ok(None) => Ok(None),
        Err(e) => {
            tracing::warn!(repository = %id, "cannot list refs for a push over HTTP: {e}");
            Err(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot list its refs\n",
            ))
        }
    }
}

/// `GET /<id>/info/refs?service=git-receive-pack`.
/// (The caller, `info/refs`, counted the request against the IP's rate.)
pub(super) async fn advertise(state: HttpState, repo: String, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&state, &headers) {
        return r;
    }
    let Some(id) = super::repo_id(&repo) else {
        return super::missing();
    };
    let refs = match push_refs(&state, id).await {
        Ok(Some(refs)) => refs,
        Ok(None) => return super::missing(),
        Err(r) => return r,
    };
    let service = "# service=git-receive-pack\n";
    let mut body = pkt(service.as_bytes());
    body.extend_from_slice(b"0000");
    let mut first = true;
    let mut line = |target: &str, name: &str| {
        let caps = if first {
            format!("\0{CAPABILITIES} agent=guts/{}", env!("CARGO_PKG_VERSION"))
        } else {
            String::new()
        };
        first = false;
        body.extend(pkt(format!("{target} {name}{caps}\n").as_bytes()));
    };
    if refs.is_empty() {
        line(ZERO, "capabilities^{}");
    }
    for (name, target) in &refs {
        line(target, name);
    }
    body.extend_from_slice(b"0000");
    (
        [
            (
                header::CONTENT_TYPE,
                "application/x-git-receive-pack-advertisement",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// One ref command of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Command {
    old: String,
    new: String,
    name: String,
}

/// What the request starts with: the commands and the capabilities git chose.
#[derive(Debug, Default, PartialEq, Eq)]
struct Commands {
    commands: Vec<Command>,
    side_band: bool,
}

/// Reads the ref commands at the front of a request as its pieces arrive, each pkt-line
/// once (reading from the start at every piece was quadratic in the commands).
#[derive(Debug, Default)]
struct CommandReader {
    parsed: Commands,
    at: usize,
}

impl CommandReader {
    /// Reads on in `buf` (the request so far, which only grows) from where the last call
    /// stopped; the bytes the commands took once the flush is reached, `Ok(None)` if
    /// more bytes are needed.
    fn read(&mut self, buf: &[u8]) -> Result<Option<usize>, String> {
        let CommandReader { parsed, at } = self;
        loop {
            let Some(head) = buf.get(*at..*at + 4) else {
                return Ok(None);
            };
            let len = std::str::from_utf8(head)
                .ok()
                .and_then(|h| usize::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    format!("not a pkt-line length: {:?}", String::from_utf8_lossy(head))
                })?;
            if len == 0 {
                return Ok(Some(*at + 4));
            }
            if !(5..=MAX_PKT).contains(&len) {
                return Err(format!("a pkt-line of {len} bytes"));
            }
            let Some(data) = buf.get(*at + 4..*at + len) else {
                return Ok(None);
            };
            *at += len;
            let text = std::str::from_utf8(data)
                .map_err(|_| "a ref command that is not UTF-8".to_owned())?;
            let text = text.strip_suffix('\n').unwrap_or(text);
            let (command, caps) = match text.split_once('\0') {
                Some((c, caps)) => (c, Some(caps)),
                None => (text, None),
            };
            if let Some(caps) = caps {
                parsed.side_band |= caps.split(' ').any(|c| c == "side-band-64k");
            }
            if command.starts_with("shallow ") {
                return Err("pushing from a shallow clone is not taken here".into());
            }
            let mut parts = command.splitn(3, ' ');
            let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("not a ref command: {command:?}"));
            };
            let hex = |s: &str| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex(old) || !hex(new) || name.is_empty() {
                return Err(format!("not a ref command: {command:?}"));
            }
            parsed.commands.push(Command {
                old: old.to_ascii_lowercase(),
                new: new.to_ascii_lowercase(),
                name: name.to_owned(),
            });
        }
    }
}

/// The commands at the front of `buf` and the bytes they took; `Ok(None)` if more bytes
/// are needed.
#[cfg(test)]
fn parse_commands(buf: &[u8]) -> Result<Option<(Commands, usize)>, String> {
    let mut reader = CommandReader::default();
    Ok(reader.read(buf)?.map(|used| (reader.parsed, used)))
}

/// The answer git prints: `unpack` and one line per ref, in side-band packets if git
/// asked for them, with `progress` on band 2 (git prints it as `remote: ...`).
fn report(
    parsed: &Commands,
    unpack: &str,
    results: &[(String, Result<(), String>)],
    progress: &[String],
) -> Vec<u8> {
    let mut status = pkt(format!("unpack {unpack}\n").as_bytes());
    for (name, result) in results {
        let line = match result {
            Ok(()) => format!("ok {name}\n"),
            // One line: the reason may quote peer text.
            Err(why) => format!("ng {name} {}\n", why.replace(['\n', '\r'], " ")),
        };
        status.extend(pkt(line.as_bytes()));
    }
    status.extend_from_slice(b"0000");
    if !parsed.side_band {
        return status;
    }
    let mut out = Vec::new();
    // Shown even when git asked for quiet, as a hook's output is.
    for message in progress {
        let mut data = vec![2u8];
        data.extend_from_slice(format!("{message}\n").as_bytes());
        out.extend(pkt(&data));
    }
    for chunk in status.chunks(BAND_DATA) {
        let mut data = vec![1u8];
        data.extend_from_slice(chunk);
        out.extend(pkt(&data));
    }
    out.extend_from_slice(b"0000");
    out
}

fn result_response(body: Vec<u8>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/x-git-receive-pack-result",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `POST /<id>/git-receive-pack`.
pub(super) async fn receive(
    State(state): State<HttpState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(repo): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(r) = limited(&state, remote) {
        return r;
    }
    if let Some(r) = unauthorized(&state, &headers) {
        return r;
    }
    let typed = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/x-git-receive-pack-request");
    let gzip = headers.contains_key(header::CONTENT_ENCODING);
    if !typed || gzip {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected an uncompressed application/x-git-receive-pack-request\n",
        );
    }
    let Some(id) = super::repo_id(&repo) else {
        return super::missing();
    };
    let current: BTreeMap<String, String> = match push_refs(&state, id).await {
        Ok(Some(refs)) => refs.into_iter().collect(),
        Ok(None) => return super::missing(),
        Err(r) => return r,
    };

    // The commands, then whatever follows is the pack.
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut reader = CommandReader::default();
    let used = loop {
        match reader.read(&buf) {
            Ok(Some(used)) => break used,
            Ok(None) if buf.len() > MAX_COMMANDS => {
                return plain(StatusCode::PAYLOAD_TOO_LARGE, "too many ref commands\n");
            }
            Ok(None) => {}
            Err(why) => return plain(StatusCode::BAD_REQUEST, &format!("{why}\n")),
        }
        match stream.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(_)) => return plain(StatusCode::BAD_REQUEST, "the request broke off\n"),
            None => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "the request ends inside its ref commands\n",
                );
            }
        }
    };
    let parsed = reader.parsed;
    // git's probe before a large push (a lone flush): nothing to do.
    if parsed.commands.is_empty() {
        return result_response(Vec::new());
    }
    let rest = buf.split_off(used);

    let area = match state.node.push_area(id).await {
        Ok(a) => a,
        Err(e) => {
            let results: Vec<_> = parsed
                .commands
                .iter()
                .map(|c| (c.name.clone(), Err(e.to_string())))
                .collect();
            return result_response(report(&parsed, "ok", &results, &[]));
        }
    };
    let sends_pack = parsed.commands.iter().any(|c| c.new != ZERO);
    if sends_pack && let Err(why) = index_pack(&area, rest, &mut stream).await {
        let _ = std::fs::remove_dir_all(&area);
        let results: Vec<_> = parsed
            .commands
            .iter()
            .map(|c| (c.name.clone(), Err("unpacker error".to_owned())))
            .collect();
        return result_response(report(&parsed, &why, &results, &[]));
    }

    // Each ref: where the push expects it, and whether it is one a push moves here.
    let mut results: BTreeMap<String, Result<(), String>> = BTreeMap::new();
    let mut updates = Vec::new();
    for c in &parsed.commands {
        let at = current.get(&c.name).map(String::as_str).unwrap_or(ZERO);
        let refused = if c.name.starts_with("refs/patches") {
            Some(format!(
                "patches are proposed with git-remote-guts: git push guts://{id} HEAD:refs/patches"
            ))
        } else if at != c.old {
            Some("stale info: it moved since you fetched (fetch first)".to_owned())
        } else {
            None
        };
        if let Some(why) = refused {
            results.insert(c.name.clone(), Err(why));
            continue;
        }
        let new = if c.new == ZERO {
            None
        } else {
            match c.new.parse::<ObjectId>() {
                Ok(n) => Some(n),
                Err(e) => {
                    results.insert(c.name.clone(), Err(e.to_string()));
                    continue;
                }
            }
        };
        // git decided fast-forward or force against the refs it was shown; the old value
        // was checked above.
        updates.push(RefUpdate {
            name: c.name.clone(),
            new,
            force: true,
        });
    }
    let mut progress = Vec::new();
    if updates.is_empty() {
        let _ = std::fs::remove_dir_all(&area);
    } else {
        match state.node.push(id, area, updates).await {
            Ok(pushed) => {
                if pushed.changed {
                    let what = if pushed.fork {
                        "fork"
                    } else if pushed.shared {
                        "view"
                    } else {
                        "snapshot"
                    };
                    progress.push(format!(
                        "guts: signed {what} {} of {id} and announced it",
                        pushed.snapshot.sequence()
                    ));
                }
                for (name, result) in pushed.results {
                    results.insert(name, result);
                }
            }
            Err(e) => {
                for c in &parsed.commands {
                    results
                        .entry(c.name.clone())
                        .or_insert_with(|| Err(e.to_string()));
                }
            }
        }
    }
    let ordered: Vec<(String, Result<(), String>)> = parsed
        .commands
        .iter()
        .map(|c| {
            let r = results
                .remove(&c.name)
                .unwrap_or_else(|| Err("not applied".into()));
            (c.name.clone(), r)
        })
        .collect();
    result_response(report(&parsed, "ok", &ordered, &progress))
}

/// Streams the pack (`first`, then the rest of the request) into git's index-pack in
/// `area`; git's reason if it refuses it.
async fn index_pack(
    area: &std::path::Path,
    first: Vec<u8>,
    rest: &mut (impl futures::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
) -> Result<(), String> {
    let mut command = guts_git::in_dir(area);
    command.args([
        "index-pack",
        "--stdin",
        "--fix-thin",
        guts_git::INDEX_PACK_STRICT,
    ]);
    let mut child = tokio::process::Command::from(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run git index-pack: {e}"))?;
    let (Some(mut stdin), Some(mut stderr)) = (child.stdin.take(), child.stderr.take()) else {
        return Err("cannot run git index-pack".into());
    };
    let errors = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = (&mut stderr).take(4096).read_to_end(&mut text).await;
        String::from_utf8_lossy(&text).trim().replace('\n', " ")
    });
    let mut broke = None;
    if stdin.write_all(&first).await.is_ok() {
        while let Some(chunk) = rest.next().await {
            match chunk {
                Ok(bytes) => {
                    if stdin.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Err(_) => {
                    broke = Some("the request broke off inside the pack".to_owned());
                    break;
                }
            }
        }
    }
    drop(stdin);
    if let Some(why) = broke {
        return Err(why);
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("git index-pack: {e}"))?;
    let said = errors.await.unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(format!("index-pack failed: {said}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Vec<u8> {
        pkt(text.as_bytes())
    }

    #[test]
    fn commands_are_read_up_to_the_flush_and_the_pack_is_left() {
        let a = "1".repeat(40);
        let b = "2".repeat(40);
        let mut req = line(&format!(
            "{ZERO} {a} refs/heads/main\0report-status side-band-64k agent=git/2\n"
        ));
        req.extend(line(&format!("{b} {ZERO} refs/heads/old\n")));
        req.extend_from_slice(b"0000PACK...");
        for cut in 0..req.len() - 11 {
            assert_eq!(parse_commands(&req[..cut]), Ok(None), "cut at {cut}");
        }
        let (parsed, used) = parse_commands(&req).unwrap().unwrap();
        assert_eq!(&req[used..], b"PACK...");
        assert!(parsed.side_band);
        assert_eq!(parsed.commands.len(), 2);
        assert_eq!(parsed.commands[1].name, "refs/heads/old");
        assert_eq!(
            parse_commands(b"0000").unwrap().unwrap().0.commands.len(),
            0
        );
    }

    #[test]
    fn a_reader_fed_piece_by_piece_reads_each_line_once() {
        let a = "1".repeat(40);
        let mut req = Vec::new();
        for n in 0..50 {
            req.extend(line(&format!("{ZERO} {a} refs/heads/b{n}\n")));
        }
        req.extend_from_slice(b"0000PACK");
        let mut reader = CommandReader::default();
        let mut used = None;
        for end in (0..=req.len()).step_by(7).chain([req.len()]) {
            if let Some(u) = reader.read(&req[..end]).unwrap() {
                used = Some(u);
                break;
            }
        }
        assert_eq!(used, Some(req.len() - 4));
        let names: Vec<&str> = reader
            .parsed
            .commands
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names.len(), 50, "no line read twice: {names:?}");
        assert_eq!(names[49], "refs/heads/b49");
    }

    #[test]
    fn garbage_is_refused_by_name() {
        assert!(parse_commands(b"zzzz").unwrap_err().contains("zzzz"));
        assert!(parse_commands(b"0003").is_err());
        assert!(parse_commands(&line("not a command\n")).is_err());
        assert!(parse_commands(&line(&format!("shallow {ZERO}\n"))).is_err());
    }

    #[test]
    fn the_report_goes_in_side_band_packets_when_asked() {
        let parsed = Commands {
            commands: vec![],
            side_band: true,
        };
        let results = vec![
            ("refs/heads/main".to_owned(), Ok(())),
            ("refs/heads/x".to_owned(), Err("no\nway".to_owned())),
        ];
        let out = report(&parsed, "ok", &results, &["guts: signed".into()]);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("0012\u{2}guts: signed\n"), "{text}");
        assert!(
            text.contains(
                "\u{1}000eunpack ok\n0017ok refs/heads/main\n001bng refs/heads/x no way\n0000"
            ),
            "{text}"
        );
        assert!(text.ends_with("00000000"), "{text}");
        let plain = Commands::default();
        assert!(report(&plain, "ok", &results, &[]).starts_with(b"000eunpack ok\n"));
    }
}
