//! `guts issue …` and `guts patch …`: list, show and change a repository's issues and
//! patches through the node, which signs each change with its key and announces it.
//! A patch is opened and revised with git: `git push guts://<id> HEAD:refs/patches`.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use guts_api::client::Client;
use guts_api::collab::{
    ActionBody, ChangeRequest, ChangeResponse, CodeCommentBody, CommentReport, EventReport,
    IssueReport, PatchReport,
};
use guts_api::terminal::safe;
use guts_api::{PushAreaResponse, PushRequest, PushResponse, PushUpdate};
use guts_protocol::RepositoryId;

use crate::api_args::{ApiArgs, print_json};
use crate::repo_cmd::parse_id;

/// The repository and the node: what every subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct On {
    /// The repository id (or guts://<id>).
    #[arg(value_parser = parse_id)]
    repo: RepositoryId,
    #[command(flatten)]
    api: ApiArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// What issues and patches both take.
#[derive(Subcommand, Debug)]
pub enum Common {
    /// Add a comment (or a reply to one with --reply-to).
    Comment {
        #[command(flatten)]
        on: On,
        /// The issue or patch (its id or first 7+ hex digits).
        object: String,
        /// The comment.
        #[arg(long, short = 'm', value_name = "TEXT")]
        message: String,
        /// The comment it answers.
        #[arg(long, value_name = "COMMENT")]
        reply_to: Option<String>,
    },
    /// Replace the text of one of this node's comments.
    EditComment {
        #[command(flatten)]
        on: On,
        /// The issue or patch.
        object: String,
        /// The comment.
        comment: String,
        /// Its new text.
        #[arg(long, short = 'm', value_name = "TEXT")]
        message: String,
    },
    /// Give it a new title (its author or a maintainer).
    Retitle {
        #[command(flatten)]
        on: On,
        /// The issue or patch.
        object: String,
        /// The title.
        title: String,
    },
    /// Add or remove labels (maintainers).
    Label {
        #[command(flatten)]
        on: On,
        /// The issue or patch.
        object: String,
        /// Labels to add.
        #[arg(long, value_name = "LABEL")]
        add: Vec<String>,
        /// Labels to remove.
        #[arg(long, value_name = "LABEL")]
        remove: Vec<String>,
    },
    /// Add or remove assignees by key (maintainers).
    Assign {
        #[command(flatten)]
        on: On,
        /// The issue or patch.
        object: String,
        /// Keys to add (hex, as `guts status` shows a node's key).
        #[arg(long, value_name = "KEY")]
        add: Vec<String>,
        /// Keys to remove.
        #[arg(long, value_name = "KEY")]
        remove: Vec<String>,
    },
    /// Close it (its author or a maintainer).
    Close {
        #[command(flatten)]
        on: On,
        /// The issue or patch.
        object: String,
    },
    /// Open it again (its author or a maintainer).
    Reopen {
        #[command(flatten)]
        on: On,
        /// The issue or patch.
        object: String,
    },
}

/// `guts issue …`.
#[derive(Subcommand, Debug)]
pub enum IssueCommand {
    /// Open an issue.
    Open {
        #[command(flatten)]
        on: On,
        /// One line.
        #[arg(long, short = 't')]
        title: String,
        /// What it is about.
        #[arg(long, short = 'm', value_name = "TEXT", default_value = "")]
        message: String,
        /// Labels (kept if this node's key maintains the repository).
        #[arg(long, value_name = "LABEL")]
        label: Vec<String>,
    },
    /// List the issues, newest first (open ones; --all for every one).
    List {
        #[command(flatten)]
        on: On,
        /// Closed ones too.
        #[arg(long)]
        all: bool,
    },
    /// Show an issue with its discussion.
    Show {
        #[command(flatten)]
        on: On,
        /// The issue.
        issue: String,
    },
    #[command(flatten)]
    Common(Common),
}

/// `guts patch …`.
#[derive(Subcommand, Debug)]
pub enum PatchCommand {
    /// List the patches, newest first (open and draft ones; --all for every one).
    List {
        #[command(flatten)]
        on: On,
        /// Merged and closed ones too.
        #[arg(long)]
        all: bool,
    },
    /// Show a patch: revisions, reviews, discussion, and how to fetch it.
    Show {
        #[command(flatten)]
        on: On,
        /// The patch.
        patch: String,
    },
    /// Review a revision (the latest unless --revision).
    Review {
        #[command(flatten)]
        on: On,
        /// The patch.
        patch: String,
        /// Would merge it.
        #[arg(long, conflicts_with = "reject")]
        accept: bool,
        /// Would not merge it.
        #[arg(long)]
        reject: bool,
        /// What the review says overall.
        #[arg(long, short = 'm', value_name = "TEXT", default_value = "")]
        message: String,
        /// A comment on a file, or a line of it: PATH[:LINE]=TEXT (repeatable).
        #[arg(long, value_name = "PATH[:LINE]=TEXT")]
        comment: Vec<String>,
        /// The revision reviewed.
        #[arg(long)]
        revision: Option<String>,
    },
    /// Mark it a draft, not ready for review (its author).
    Draft {
        #[command(flatten)]
        on: On,
        /// The patch.
        patch: String,
    },
    /// Mark a draft ready for review.
    Ready {
        #[command(flatten)]
        on: On,
        /// The patch.
        patch: String,
    },
    /// Merge it (a maintainer): move its target branch in this node's view to the
    /// latest revision, a fast-forward; it shows merged once enough maintainers have.
    Merge {
        #[command(flatten)]
        on: On,
        /// The patch.
        patch: String,
    },
    #[command(flatten)]
    Common(Common),
}

fn client(api: &ApiArgs) -> anyhow::Result<Client> {
    Ok(Client::new(&api.target(), Duration::from_secs(60))?)
}

fn change(on: &On, object: Option<&str>, action: ActionBody) -> anyhow::Result<ChangeResponse> {
    let id = on.repo;
    let response: ChangeResponse = client(&on.api)?.post(
        &format!("/api/v1/repos/{id}/changes"),
        &ChangeRequest {
            object: object.map(str::to_owned),
            area: None,
            action,
        },
    )?;
    Ok(response)
}

fn done(on: &On, what: &str, response: ChangeResponse) -> anyhow::Result<()> {
    if on.json {
        return print_json(&response);
    }
    println!("{what} {} (change {})", response.object, response.change);
    Ok(())
}

fn run_common(common: Common) -> anyhow::Result<()> {
    let (on, object, action, what) = match common {
        Common::Comment {
            on,
            object,
            message,
            reply_to,
        } => (
            on,
            object,
            ActionBody::Comment {
                body: message,
                reply_to,
            },
            "commented on",
        ),
        Common::EditComment {
            on,
            object,
            comment,
            message,
        } => (
            on,
            object,
            ActionBody::EditComment {
                comment,
                body: message,
            },
            "edited a comment on",
        ),
        Common::Retitle { on, object, title } => {
            (on, object, ActionBody::Retitle { title }, "retitled")
        }
        Common::Label {
            on,
            object,
            add,
            remove,
        } => {
            if add.is_empty() && remove.is_empty() {
                bail!("nothing to change: give --add or --remove");
            }
            (on, object, ActionBody::Label { add, remove }, "labelled")
        }
        Common::Assign {
            on,
            object,
            add,
            remove,
        } => {
            if add.is_empty() && remove.is_empty() {
                bail!("nothing to change: give --add or --remove");
            }
            (on, object, ActionBody::Assign { add, remove }, "assigned")
        }
        Common::Close { on, object } => (on, object, state("closed"), "closed"),
        Common::Reopen { on, object } => (on, object, state("open"), "reopened"),
    };
    let response = change(&on, Some(&object), action)?;
    done(&on, what, response)
}

fn state(state: &str) -> ActionBody {
    ActionBody::State {
        state: state.to_owned(),
    }
}

/// `guts issue …`.
pub fn run_issue(command: IssueCommand) -> anyhow::Result<()> {
    match command {
        IssueCommand::Open {
            on,
            title,
            message,
            label,
        } => {
            let response = change(
                &on,
                None,
                ActionBody::OpenIssue {
                    title,
                    body: message,
                    labels: label,
                },
            )?;
            done(&on, "opened issue", response)
        }
        IssueCommand::List { on, all } => {
            let id = on.repo;
            let issues: Vec<IssueReport> =
                client(&on.api)?.get(&format!("/api/v1/repos/{id}/issues"))?;
            let shown: Vec<&IssueReport> =
                issues.iter().filter(|i| all || i.state == "open").collect();
            if on.json {
                return print_json(&shown);
            }
            if shown.is_empty() {
                println!("no {}issues in guts://{id}", if all { "" } else { "open " });
            }
            for i in shown {
                println!(
                    "{}  {:<6}  {}{}  ({} comment{})",
                    &i.id[..10],
                    i.state,
                    safe(&i.title),
                    labels(&i.labels),
                    i.comments.len().saturating_sub(1),
                    if i.comments.len() == 2 { "" } else { "s" }
                );
            }
            Ok(())
        }
        IssueCommand::Show { on, issue } => {
            let id = on.repo;
            let i: IssueReport =
                client(&on.api)?.get(&format!("/api/v1/repos/{id}/issues/{issue}"))?;
            if on.json {
                return print_json(&i);
            }
            println!("issue {}: {}", i.id, safe(&i.title));
            println!("state: {}{}", i.state, labels(&i.labels));
            println!("opened by {}", short(&i.author));
            assignees(&i.assignees);
            print_comments(&i.comments);
            Ok(())
        }
        IssueCommand::Common(common) => run_common(common),
    }
}

/// `guts patch …`.
pub fn run_patch(command: PatchCommand) -> anyhow::Result<()> {
    match command {
        PatchCommand::List { on, all } => {
            let id = on.repo;
            let patches: Vec<PatchReport> =
                client(&on.api)?.get(&format!("/api/v1/repos/{id}/patches"))?;
            let shown: Vec<&PatchReport> = patches
                .iter()
                .filter(|p| all || p.state == "open" || p.state == "draft")
                .collect();
            if on.json {
                return print_json(&shown);
            }
            if shown.is_empty() {
                println!(
                    "no {}patches in guts://{id}",
                    if all { "" } else { "open " }
                );
            }
            for p in shown {
                println!(
                    "{}  {:<6}  {}{}  ({} revision{}, into {})",
                    &p.id[..10],
                    p.state,
                    safe(&p.title),
                    labels(&p.labels),
                    p.revisions.len(),
                    if p.revisions.len() == 1 { "" } else { "s" },
                    safe(p.target.trim_start_matches("refs/heads/"))
                );
            }
            Ok(())
        }
        PatchCommand::Show { on, patch } => {
            let p = get_patch(&on, &patch)?;
            if on.json {
                return print_json(&p);
            }
            print_patch(&on.repo, &p);
            Ok(())
        }
        PatchCommand::Review {
            on,
            patch,
            accept,
            reject,
            message,
            comment,
            revision,
        } => {
            let verdict = match (accept, reject) {
                (true, _) => Some("accept".to_owned()),
                (_, true) => Some("reject".to_owned()),
                _ => None,
            };
            if verdict.is_none() && message.is_empty() && comment.is_empty() {
                bail!("an empty review: give --accept, --reject, -m or --comment");
            }
            let comments = comment
                .iter()
                .map(|c| code_comment(c))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let response = change(
                &on,
                Some(&patch),
                ActionBody::Review {
                    revision,
                    verdict,
                    summary: message,
                    comments,
                },
            )?;
            done(&on, "reviewed", response)
        }
        PatchCommand::Draft { on, patch } => {
            let response = change(&on, Some(&patch), state("draft"))?;
            done(&on, "made a draft of", response)
        }
        PatchCommand::Ready { on, patch } => {
            let response = change(&on, Some(&patch), state("open"))?;
            done(&on, "opened for review", response)
        }
        PatchCommand::Merge { on, patch } => merge(&on, &patch),
        PatchCommand::Common(common) => run_common(common),
    }
}

fn get_patch(on: &On, patch: &str) -> anyhow::Result<PatchReport> {
    let id = on.repo;
    Ok(client(&on.api)?.get(&format!("/api/v1/repos/{id}/patches/{patch}"))?)
}

/// A maintainer's merge: its target branch (in its view) fast-forwards to the latest
/// revision's head, as `git push guts://<id> <head>:<target>` would.
fn merge(on: &On, patch: &str) -> anyhow::Result<()> {
    let p = get_patch(on, patch)?;
    let id = on.repo;
    let head = p
        .revisions
        .last()
        .map(|r| r.head.clone())
        .context("a patch without revisions")?;
    let client = client(&on.api)?;
    let area: PushAreaResponse = client.post(
        &format!("/api/v1/repos/{id}/push-area"),
        &serde_json::json!({}),
    )?;
    let pushed: PushResponse = client.post(
        &format!("/api/v1/repos/{id}/push"),
        &PushRequest {
            area: area.path,
            updates: vec![PushUpdate {
                ref_name: p.target.clone(),
                new: Some(head.clone()),
                force: false,
            }],
        },
    )?;
    if let Some(why) = pushed.results.iter().find_map(|r| r.error.as_ref()) {
        bail!(
            "{} cannot move to {head}: {why} (merge it locally, then git push guts://{id})",
            p.target
        );
    }
    if on.json {
        return print_json(&pushed);
    }
    println!(
        "{} is at {head} in this node's {}; the patch shows merged once enough maintainers' branches hold it",
        p.target,
        if pushed.view { "view" } else { "snapshot" }
    );
    Ok(())
}

/// `PATH[:LINE]=TEXT`.
fn code_comment(text: &str) -> anyhow::Result<CodeCommentBody> {
    let (place, body) = text
        .split_once('=')
        .with_context(|| format!("comment {text:?}: use PATH[:LINE]=TEXT"))?;
    let (path, line) = match place.rsplit_once(':') {
        Some((path, line)) => (
            path,
            Some(
                line.parse::<u32>()
                    .with_context(|| format!("comment {text:?}: line {line:?} is not a number"))?,
            ),
        ),
        None => (place, None),
    };
    Ok(CodeCommentBody {
        path: path.to_owned(),
        line,
        body: body.to_owned(),
    })
}

fn labels(labels: &[String]) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("  [{}]", safe(&labels.join(", ")))
    }
}

fn short(key: &str) -> &str {
    &key[..key.len().min(16)]
}

fn assignees(keys: &[String]) {
    if !keys.is_empty() {
        let keys: Vec<&str> = keys.iter().map(|k| short(k)).collect();
        println!("assigned to {}", keys.join(", "));
    }
}

fn print_comments(comments: &[CommentReport]) {
    for c in comments {
        println!();
        println!(
            "{} {}{}{}",
            &c.id[..10],
            short(&c.author),
            if c.edited { " (edited)" } else { "" },
            c.reply_to
                .as_ref()
                .map(|r| format!(" in reply to {}", &r[..10]))
                .unwrap_or_default()
        );
        for line in c.body.lines() {
            println!("    {}", safe(line));
        }
    }
}

fn print_patch(id: &RepositoryId, p: &PatchReport) {
    println!("patch {}: {}", p.id, safe(&p.title));
    println!(
        "state: {}{}  into {}",
        p.state,
        labels(&p.labels),
        safe(&p.target)
    );
    println!("opened by {}", short(&p.author));
    assignees(&p.assignees);
    for (n, r) in p.revisions.iter().enumerate() {
        println!(
            "revision {} {}: {} on {}{}",
            n + 1,
            &r.id[..10],
            r.head,
            &r.base[..10],
            if p.merged_revision.as_deref() == Some(r.id.as_str()) {
                " (merged)"
            } else {
                ""
            }
        );
        if n > 0 && !r.note.is_empty() {
            println!("    {}", safe(&r.note));
        }
        for v in &r.reviews {
            println!(
                "    review by {}: {}{}",
                short(&v.author),
                v.verdict.as_deref().unwrap_or("comments"),
                if v.summary.is_empty() {
                    String::new()
                } else {
                    format!(": {}", safe(&v.summary))
                }
            );
            for c in &v.comments {
                let at = c.line.map(|l| format!(":{l}")).unwrap_or_default();
                println!("      {}{at}: {}", safe(&c.path), safe(&c.body));
            }
        }
    }
    if let Some(latest) = p.revisions.last() {
        println!(
            "fetch it: git fetch guts://{id} {}  (then git checkout FETCH_HEAD)",
            latest.head
        );
    }
    print_comments(&p.comments);
}

/// `guts repo hide ID KEY [--undo]`.
pub fn hide(
    api: &ApiArgs,
    repo: RepositoryId,
    key: String,
    undo: bool,
    json: bool,
) -> anyhow::Result<()> {
    let action = if undo {
        ActionBody::Unhide { key: key.clone() }
    } else {
        ActionBody::Hide { key: key.clone() }
    };
    let response: ChangeResponse = client(api)?.post(
        &format!("/api/v1/repos/{repo}/changes"),
        &ChangeRequest {
            object: None,
            area: None,
            action,
        },
    )?;
    if json {
        return print_json(&response);
    }
    println!(
        "{} {key}'s patches, issues and comments in guts://{repo} (change {})",
        if undo { "showing again" } else { "hid" },
        response.change
    );
    Ok(())
}

/// `guts repo contributions ID on|off`.
pub fn set_contributions(
    api: &ApiArgs,
    repo: RepositoryId,
    open: bool,
    json: bool,
) -> anyhow::Result<()> {
    let response: ChangeResponse = client(api)?.post(
        &format!("/api/v1/repos/{repo}/changes"),
        &ChangeRequest {
            object: None,
            area: None,
            action: ActionBody::SetContributions { open },
        },
    )?;
    if json {
        return print_json(&response);
    }
    if open {
        println!(
            "contributions to guts://{repo} are on: anyone may open patches and issues and publish a fork (change {})",
            response.change
        );
    } else {
        println!(
            "contributions to guts://{repo} are off: only its maintainers' patches, issues and forks are kept and shown (change {})",
            response.change
        );
    }
    Ok(())
}

/// `guts events`: what happened to patches and issues since `since`.
pub fn events(
    api: &ApiArgs,
    repo: Option<RepositoryId>,
    since: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let since = match since {
        None => 0,
        Some(text) => parse_since(text, std::time::SystemTime::now())?,
    };
    let mut path = format!("/api/v1/events?since={since}");
    if let Some(id) = repo {
        path.push_str(&format!("&repo={id}"));
    }
    let events: Vec<EventReport> = client(api)?.get(&path)?;
    if json {
        return print_json(&events);
    }
    if events.is_empty() {
        println!("nothing happened to patches or issues since then");
    }
    for e in events {
        let when = std::time::UNIX_EPOCH + Duration::from_secs(e.timestamp);
        println!(
            "{}  {}  {} {}  {} by {}: {}",
            humantime::format_rfc3339_seconds(when),
            e.repository,
            e.kind,
            &e.object[..10],
            e.action,
            short(&e.author),
            safe(&e.title)
        );
    }
    Ok(())
}

/// A point in time: seconds since the epoch, an RFC 3339 time, or a duration ago
/// (`2h`, `3days`).
fn parse_since(text: &str, now: std::time::SystemTime) -> anyhow::Result<u64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs);
    }
    let at = if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        t
    } else if let Ok(ago) = humantime::parse_duration(text) {
        now.checked_sub(ago).unwrap_or(std::time::UNIX_EPOCH)
    } else {
        bail!(
            "--since {text:?}: use seconds since the epoch, a time (2026-12-01T09:00:00Z) or a duration ago (2h, 3days)"
        );
    };
    Ok(at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_seconds_times_and_durations_ago() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_since("12345", now).unwrap(), 12345);
        assert_eq!(parse_since("2h", now).unwrap(), 1_000_000 - 7200);
        assert_eq!(parse_since("1970-01-02T00:00:00Z", now).unwrap(), 86_400);
        let err = parse_since("yesterday", now).unwrap_err().to_string();
        assert!(err.contains("\"yesterday\""), "{err}");
    }
}
