//! `git-remote-guts`: lets git use `guts://<repository-id>` URLs.
//!
//! git runs it as `git-remote-guts <remote> <url>` and talks the remote-helper protocol
//! on stdin/stdout (gitremote-helpers(7)). It works through the local node (`GUTS_API`,
//! or the default API address):
//!
//! - fetch, clone, pull: the node first brings the repository to its latest verified
//!   snapshot (fetching it from the network if it does not hold it yet, with progress on
//!   stderr). Into a repository with history (`connect git-upload-pack`) this process
//!   then becomes `git upload-pack` on the node's store, so git's own negotiation sends
//!   only what is missing. Into an empty one (a clone) it answers `fallback` and takes
//!   the `fetch` route instead, which hands git the node's verified packs as they are
//!   ([`handoff`]).
//! - push: the `push` capability (so each ref's outcome is reported as the node decides
//!   it). The objects go as one thin pack (git's pack-objects into git's index-pack)
//!   into a push area the node created (it borrows the repository's objects, so only
//!   new ones travel); then the node checks each update
//!   (owner only, fast-forward unless forced, deletes allowed), signs the next snapshot
//!   and announces it.

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, anyhow, bail};
use guts_api::client::{Client, Progress, SLOW, Target, sync};
use guts_api::terminal::{safe, safe_lines};
use guts_api::{PushAreaResponse, PushRequest, PushResponse, PushUpdate, RepoDetail, StatusReport};
use guts_protocol::RepositoryId;

mod handoff;
mod patches;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(url) = args.get(2).or(args.get(1)) else {
        eprintln!(
            "usage: git-remote-guts <remote> guts://<repository-id> (git runs this for guts:// URLs)"
        );
        return ExitCode::from(2);
    };
    match run(url) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fatal: guts: {}", safe_lines(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn parse_url(url: &str) -> anyhow::Result<RepositoryId> {
    let id = url
        .strip_prefix("guts://")
        .or_else(|| url.strip_prefix("guts::"))
        .unwrap_or(url)
        .trim_end_matches('/');
    id.parse()
        .map_err(|e: guts_protocol::ids::RepositoryIdError| {
            anyhow!("{e} (in URL {url:?}; expected guts://<32-character id>)")
        })
}

fn run(url: &str) -> anyhow::Result<()> {
    let id = parse_url(url)?;
    let api = Target::from_env()?;
    // One client: it has the node prove it holds the token once, then checks every answer.
    let client = Client::new(&api, SLOW)?;
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    let mut out = io::stdout().lock();
    // Set by an option that needs git's own negotiation (a shallow clone).
    let mut negotiate = false;
    let mut check_connectivity = false;
    let mut progress = Progress::Shown;
    // The node's copy, once the repository has been brought up to date.
    let mut store: Option<PathBuf> = None;
    // `git push -o ...`: what a patch is opened with.
    let mut push_options = patches::Options::default();
    while let Some(line) = lines.next() {
        let line = line.context("reading git's commands")?;
        let command = line.trim();
        match command {
            "" => return Ok(()),
            "capabilities" => {
                for capability in ["connect", "fetch", "push", "option", "check-connectivity"] {
                    writeln!(out, "{capability}")?;
                }
                writeln!(out)?;
            }
            c if c.starts_with("option ") => {
                let mut words = c["option ".len()..].splitn(2, ' ');
                let (name, value) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                match name {
                    "depth" | "deepen-since" | "deepen-not" | "deepen-relative" | "filter" => {
                        negotiate = true;
                        // git keeps it for upload-pack's negotiation.
                        writeln!(out, "unsupported")?;
                    }
                    "check-connectivity" => {
                        check_connectivity = value == "true";
                        writeln!(out, "ok")?;
                    }
                    "verbosity" => {
                        // `git clone --quiet` says 0: no sync progress either.
                        progress = if value == "0" {
                            Progress::Quiet
                        } else {
                            Progress::Shown
                        };
                        writeln!(out, "ok")?;
                    }
                    "push-option" => match push_options.add(value) {
                        Ok(()) => writeln!(out, "ok")?,
                        Err(e) => writeln!(out, "error {}", safe(&format!("{e:#}")))?,
                    },
                    "cloning" | "progress" | "followtags" => writeln!(out, "ok")?,
                    _ => writeln!(out, "unsupported")?,
                }
            }
            "connect git-upload-pack"
                if !negotiate && handoff::is_empty_repository() && !handoff::user_wants_fsck() =>
            {
                // A clone: the `fetch` route hands over the node's packs.
                writeln!(out, "fallback")?;
            }
            "connect git-upload-pack" => {
                let path = prepare_fetch(&client, &id, progress)?;
                writeln!(out)?;
                out.flush()?;
                return become_upload_pack(&path);
            }
            c if c.starts_with("connect ") => {
                // Pushes take the `push` capability, so the node decides each ref.
                writeln!(out, "fallback")?;
            }
            "list" | "list for-push" => {
                if command == "list" && store.is_none() {
                    // A fetch lists what it will get: the latest verified snapshot.
                    store = Some(prepare_fetch(&client, &id, progress)?);
                }
                let detail = repository(&client, &id)?;
                let listed = if command == "list for-push" {
                    detail.refs_for_push()
                } else {
                    refs_for_fetch(&detail)
                };
                for (name, target) in &listed {
                    writeln!(out, "{target} {name}")?;
                }
                if let Some(head) = &detail.summary.head {
                    writeln!(out, "@{head} HEAD")?;
                }
                writeln!(out)?;
            }
            c if c.starts_with("fetch ") => {
                let mut wants = Vec::new();
                let mut refs = Vec::new();
                let mut next = Some(c.to_owned());
                while let Some(line) = next.take() {
                    let Some(spec) = line.trim().strip_prefix("fetch ") else {
                        break;
                    };
                    let (sha, name) = spec.split_once(' ').unwrap_or((spec, ""));
                    wants.push(sha.to_owned());
                    refs.push(name.to_owned());
                    next = lines.next().transpose().context("reading git's commands")?;
                }
                let store = match &store {
                    Some(s) => s.clone(),
                    None => prepare_fetch(&client, &id, progress)?,
                };
                match handoff::link_packs(&store, &wants) {
                    Ok(keep) => {
                        if let Some(keep) = keep {
                            writeln!(out, "lock {}", keep.display())?;
                        }
                        if check_connectivity {
                            writeln!(out, "connectivity-ok")?;
                        }
                    }
                    Err(e) => {
                        eprintln!("guts: {e:#}; fetching through git instead");
                        handoff::fetch_pack(&store, &refs)?;
                    }
                }
                writeln!(out)?;
            }
            c if c.starts_with("push ") => {
                let mut specs = vec![c["push ".len()..].to_owned()];
                for more in lines.by_ref() {
                    let more = more.context("reading git's commands")?;
                    match more.trim().strip_prefix("push ") {
                        Some(spec) => specs.push(spec.to_owned()),
                        None => break,
                    }
                }
                for line in push(&client, &id, &specs, &push_options)? {
                    writeln!(out, "{line}")?;
                }
                writeln!(out)?;
            }
            other => bail!("unsupported command from git: {other:?}"),
        }
        out.flush()?;
    }
    Ok(())
}

/// The node's status, or an error saying there is no node and how to start one.
fn node_peer_id(client: &Client) -> anyhow::Result<String> {
    let status: StatusReport = client.get("/api/v1/status")?;
    Ok(status.peer_id)
}

fn repository(client: &Client, id: &RepositoryId) -> anyhow::Result<RepoDetail> {
    Ok(client.get(&format!("/api/v1/repos/{id}"))?)
}

/// Brings the node's copy up to date (fetching it first if needed); returns its path.
fn prepare_fetch(
    client: &Client,
    id: &RepositoryId,
    progress: Progress,
) -> anyhow::Result<PathBuf> {
    node_peer_id(client)?;
    let held = repository(client, id)
        .ok()
        .filter(|d| d.summary.sequence > 0);
    if let Some(d) = held.as_ref().filter(|d| d.summary.owned) {
        return Ok(client.local_path(&d.summary.path)?);
    }
    match sync(client, id, None, progress) {
        Ok(_) => {}
        Err(e) if held.is_some() => eprintln!(
            "guts: warning: could not reach holders ({e:#}); using the copy this node has"
        ),
        Err(e) => return Err(anyhow::Error::from(e).context(format!("cannot fetch guts://{id}"))),
    }
    // Whoever clones or fetches a repository wants it kept up to date.
    client.post::<_, serde_json::Value>(
        &format!("/api/v1/repos/{id}/follow"),
        &serde_json::json!({}),
    )?;
    Ok(client.local_path(&repository(client, id)?.summary.path)?)
}

/// git in the repository git runs this helper for (its `GIT_DIR`, else found from the
/// working directory), in the fixed environment: the helper runs no hook, fsmonitor or
/// lazy fetch of that repository's config either.
fn user_git() -> Command {
    match std::env::var_os("GIT_DIR") {
        Some(dir) => guts_git::in_dir(dir),
        None => guts_git::command(),
    }
}

/// Replaces this process with `git upload-pack` on the node's store.
fn become_upload_pack(path: &Path) -> anyhow::Result<()> {
    let mut cmd = guts_git::command();
    // A patch's commits are reachable only from its changes' refs: a fetch may name
    // them (`git fetch guts://<id> <head>`), as `guts patch show` says.
    cmd.args([
        "-c",
        "uploadpack.allowReachableSHA1InWant=true",
        "upload-pack",
        "--strict",
    ])
    .arg(path);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = cmd.exec();
        Err(anyhow!("cannot run git upload-pack: {e}"))
    }
    #[cfg(not(unix))]
    {
        let status = cmd.status().context("running git upload-pack")?;
        if status.success() {
            Ok(())
        } else {
            Err(anyhow!("git upload-pack failed: {status}"))
        }
    }
}

/// Sends the objects of `tips` that `held` (tips the node holds) does not reach into
/// the push area, as one pack: git's pack-objects, thin, into git's index-pack, which
/// hashes every object and completes the pack from the node's objects (the area borrows
/// them). Not `git push`: its receive-pack also walks all the new history to check it is
/// connected, which the node does again, completely, before it signs anything.
fn send_objects(area: &Path, tips: &[String], held: &[String]) -> anyhow::Result<()> {
    let mut packer = user_git()
        .args([
            "pack-objects",
            "--revs",
            "--thin",
            "--stdout",
            "--delta-base-offset",
            "-q",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running git pack-objects")?;
    let mut input = packer.stdin.take().context("git pack-objects' input")?;
    let pack = packer.stdout.take().context("git pack-objects' output")?;
    let revs: String = tips
        .iter()
        .map(|t| format!("{t}\n"))
        .chain(held.iter().map(|h| format!("^{h}\n")))
        .collect();
    let writer = std::thread::spawn(move || input.write_all(revs.as_bytes()));
    // The area is its own repository: nothing of the pushing one's leaks in (the fixed
    // environment drops GIT_DIR, GIT_OBJECT_DIRECTORY and the like).
    let indexed = guts_git::in_dir(area)
        .args([
            "index-pack",
            "--stdin",
            "--fix-thin",
            guts_git::INDEX_PACK_STRICT,
        ])
        .stdin(Stdio::from(pack))
        .stdout(Stdio::null())
        .status()
        .context("running git index-pack into the node's push area")?;
    let wrote = writer
        .join()
        .map_err(|_| anyhow!("writing to git pack-objects panicked"))?;
    let packed = packer.wait().context("waiting for git pack-objects")?;
    if !packed.success() {
        bail!("packing the objects to push failed ({packed})");
    }
    wrote.context("writing to git pack-objects")?;
    if !indexed.success() {
        bail!("sending objects to the node failed ({indexed})");
    }
    Ok(())
}

/// The object each of `sources` names (the ref itself, e.g. an annotated tag, is what
/// moves), `None` where it names nothing or peels to nothing. One `git cat-file` for all
/// of them: a process per ref took a second of a first push of tokio's 470 refs.
fn resolve(sources: &[&str]) -> anyhow::Result<Vec<Option<String>>> {
    let names: Vec<String> = sources
        .iter()
        .flat_map(|src| [src.to_string(), format!("{src}^{{}}")])
        .collect();
    Ok(batch_check(None, &names)?
        .chunks(2)
        .map(|pair| match pair {
            [Some(raw), Some(_peeled)] => Some(raw.clone()),
            _ => None,
        })
        .collect())
}

/// What `git cat-file --batch-check` says of each of `names` in the repository at
/// `git_dir` (the one git runs this helper for when `None`): the object's full name, or
/// `None` where the name is missing or ambiguous.
fn batch_check(git_dir: Option<&Path>, names: &[String]) -> anyhow::Result<Vec<Option<String>>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut command = match git_dir {
        Some(dir) => guts_git::in_dir(dir),
        None => user_git(),
    };
    let mut child = command
        .args(["cat-file", "--batch-check=%(objectname)"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("running git cat-file")?;
    let mut stdin = child.stdin.take().context("git cat-file's input")?;
    let input: String = names.iter().map(|n| format!("{n}\n")).collect();
    // git answers line by line, so writing on another thread keeps both pipes moving.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .context("waiting for git cat-file")?;
    writer
        .join()
        .map_err(|_| anyhow!("writing to git cat-file panicked"))?
        .context("writing to git cat-file")?;
    if !out.status.success() {
        bail!("git cat-file failed ({})", out.status);
    }
    // An answer is the object's name, or the input followed by "missing"/"ambiguous".
    let answers: Vec<&str> = std::str::from_utf8(&out.stdout)
        .context("git cat-file's answer is not text")?
        .lines()
        .collect();
    if answers.len() != names.len() {
        bail!(
            "git cat-file answered {} lines for {} names",
            answers.len(),
            names.len()
        );
    }
    let is_name =
        |line: &str| matches!(line.len(), 40 | 64) && line.bytes().all(|b| b.is_ascii_hexdigit());
    Ok(answers
        .into_iter()
        .map(|line| is_name(line).then(|| line.to_owned()))
        .collect())
}

/// Runs a push: objects into a push area, then the node decides each ref; pushes to
/// `refs/patches[/<patch>]` open or revise patches instead ([`patches`]). A key that does
/// not maintain the repository moves its own fork. Returns the
/// helper-protocol status lines (`ok <ref>` / `error <ref> <why>`).
fn push(
    client: &Client,
    id: &RepositoryId,
    specs: &[String],
    options: &patches::Options,
) -> anyhow::Result<Vec<String>> {
    let mut parsed = Vec::new();
    for spec in specs {
        let (force, spec) = match spec.strip_prefix('+') {
            Some(s) => (true, s),
            None => (false, spec.as_str()),
        };
        let (src, dst) = spec
            .split_once(':')
            .ok_or_else(|| anyhow!("unexpected refspec from git: {spec:?}"))?;
        parsed.push((force, src, dst));
    }
    let sources: Vec<&str> = parsed
        .iter()
        .map(|(_, src, _)| *src)
        .filter(|src| !src.is_empty())
        .collect();
    let mut resolved = resolve(&sources)?.into_iter();
    let mut updates = Vec::new();
    let mut to_send = Vec::new();
    let mut proposals = Vec::new();
    let mut lines = Vec::new();
    for (force, src, dst) in parsed {
        let new = if src.is_empty() {
            None
        } else {
            let sha = resolved
                .next()
                .flatten()
                .ok_or_else(|| anyhow!("{src} is not a ref or object in this repository"))?;
            Some(sha)
        };
        if patches::is_patch_ref(dst) {
            match new {
                Some(sha) => proposals.push((dst, sha)),
                None => lines.push(format!(
                    "error {dst} a patch is not deleted: close it with guts patch close"
                )),
            }
            continue;
        }
        to_send.extend(new.clone());
        updates.push(PushUpdate {
            ref_name: dst.to_owned(),
            new,
            force,
        });
    }
    // What the node's refs hold is not sent again; refs this repository lacks cannot be
    // named to git, so they are left out.
    let held = if to_send.is_empty() && proposals.is_empty() {
        Vec::new()
    } else {
        let detail = repository(client, id)?;
        let targets: Vec<&str> = detail.refs.values().map(String::as_str).collect();
        resolve(&targets)?.into_iter().flatten().collect()
    };
    for (dst, sha) in proposals {
        lines.push(match patches::push(client, id, dst, &sha, &held, options) {
            Ok(line) => line,
            Err(e) => format!("error {dst} {}", safe(&format!("{e:#}"))),
        });
    }
    if updates.is_empty() {
        return Ok(lines);
    }
    let area: PushAreaResponse = client.post(
        &format!("/api/v1/repos/{id}/push-area"),
        &serde_json::json!({}),
    )?;
    let area_dir = client.local_path(&area.path)?;
    if !to_send.is_empty() {
        send_objects(&area_dir, &to_send, &held)?;
    }
    let response: PushResponse = client.post(
        &format!("/api/v1/repos/{id}/push"),
        &PushRequest {
            area: area.path,
            updates,
        },
    )?;
    if response.changed && response.fork {
        eprintln!(
            "guts: signed your fork {} of guts://{id} and announced it: other nodes list it as refs/forks/<your key>/...; the branches stay the maintainers' (to propose a change: git push guts://{id} HEAD:refs/patches)",
            response.sequence
        );
    } else if response.changed && response.view {
        eprintln!(
            "guts: signed view {} of guts://{id} and announced it (branches move where enough maintainers' views agree: guts repo show {id})",
            response.sequence
        );
    } else if response.changed {
        eprintln!(
            "guts: signed snapshot {} of guts://{id} and announced it",
            response.sequence
        );
    }
    lines.extend(response.results.into_iter().map(|r| match r.error {
        None => format!("ok {}", r.ref_name),
        // One line each: the reason may quote peer text.
        Some(why) => format!("error {} {}", r.ref_name, safe(&why)),
    }));
    Ok(lines)
}

/// What a fetch lists: the canonical refs and, with maintainers, each maintainer's view
/// under `refs/views/<key>/` (fetched with `git fetch origin 'refs/views/*:refs/views/*'`),
/// and each contributor's fork under `refs/forks/<key>/`.
fn refs_for_fetch(detail: &RepoDetail) -> Vec<(String, String)> {
    let mut refs: Vec<(String, String)> = detail
        .refs
        .iter()
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    for (name, at) in &detail.positions {
        let rest = name.strip_prefix("refs/").unwrap_or(name);
        for (key, target) in at {
            if let Some(target) = target {
                refs.push((format!("refs/views/{key}/{rest}"), target.clone()));
            }
        }
    }
    for fork in &detail.forks {
        for (name, target) in &fork.refs {
            let rest = name.strip_prefix("refs/").unwrap_or(name);
            refs.push((format!("refs/forks/{}/{rest}", fork.key), target.clone()));
        }
    }
    refs
}
