//! Pushes that propose rather than move a branch: `git push guts://<id>
//! HEAD:refs/patches` opens a patch, `HEAD:refs/patches/<patch>` revises one. Anyone may:
//! the commits go into a contribution area of the node, and the node signs a change
//! naming them, which every node checks as it would a peer's.
//!
//! Push options (`git push -o KEY=VALUE`) say what git cannot: `title=`, `description=`,
//! `target=` (the branch; HEAD's by default), `draft`, and for a revision `note=`. The
//! title and description default to the head commit's subject and body.

use anyhow::{Context, anyhow, bail};
use guts_api::PushAreaResponse;
use guts_api::client::Client;
use guts_api::collab::{ActionBody, ChangeRequest, ChangeResponse};
use guts_protocol::RepositoryId;

/// The ref a new patch is pushed to.
pub const NEW_PATCH: &str = "refs/patches";

/// Whether a push to `dst` proposes a patch (or a revision).
pub fn is_patch_ref(dst: &str) -> bool {
    dst == NEW_PATCH || dst.starts_with("refs/patches/")
}

/// The push options git handed over (`option push-option KEY[=VALUE]`).
#[derive(Debug, Default, Clone)]
pub struct Options {
    title: Option<String>,
    description: Option<String>,
    target: Option<String>,
    note: Option<String>,
    draft: bool,
}

impl Options {
    /// Takes one push option; an unknown one is an error that names it.
    pub fn add(&mut self, option: &str) -> anyhow::Result<()> {
        let (key, value) = match option.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (option, None),
        };
        let need = || {
            value
                .clone()
                .ok_or_else(|| anyhow!("push option {key} needs =VALUE"))
        };
        match key {
            "title" => self.title = Some(need()?),
            "description" => self.description = Some(need()?),
            "target" => self.target = Some(need()?),
            "note" => self.note = Some(need()?),
            "draft" => self.draft = true,
            _ => bail!(
                "unknown push option {option:?}: guts takes title=, description=, target=, note= and draft"
            ),
        }
        Ok(())
    }
}

/// The subject and the body of commit `sha`'s message.
fn message(sha: &str) -> anyhow::Result<(String, String)> {
    let out = super::user_git()
        .args(["log", "-1", "--format=%s%n%b", sha])
        .output()
        .context("running git log")?;
    if !out.status.success() {
        bail!(
            "git log {sha} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (subject, body) = text.split_once('\n').unwrap_or((&text, ""));
    Ok((subject.trim().to_owned(), body.trim().to_owned()))
}

/// Opens or revises a patch of `id` with commit `sha` (objects `held` by the node are
/// not sent). Returns the status line for git.
pub fn push(
    client: &Client,
    id: &RepositoryId,
    dst: &str,
    sha: &str,
    held: &[String],
    options: &Options,
) -> anyhow::Result<String> {
    let area: PushAreaResponse = client.post(
        &format!("/api/v1/repos/{id}/contribution-area"),
        &serde_json::json!({}),
    )?;
    let area_dir = client.local_path(&area.path)?;
    super::send_objects(&area_dir, &[sha.to_owned()], held)?;
    let (subject, body) = message(sha)?;
    let (object, action) = match dst.strip_prefix("refs/patches/") {
        None => (
            None,
            ActionBody::OpenPatch {
                title: options.title.clone().unwrap_or(subject),
                description: options.description.clone().unwrap_or(body),
                target: options.target.clone(),
                head: sha.to_owned(),
                draft: options.draft,
            },
        ),
        Some(patch) => (
            Some(patch.to_owned()),
            ActionBody::Revise {
                note: options.note.clone().unwrap_or(subject),
                head: sha.to_owned(),
            },
        ),
    };
    let opened = object.is_none();
    let response: ChangeResponse = client.post(
        &format!("/api/v1/repos/{id}/changes"),
        &ChangeRequest {
            object,
            area: Some(area.path),
            action,
        },
    )?;
    if opened {
        eprintln!(
            "guts: opened patch {} of guts://{id}\nguts:   see it: guts patch show {id} {}\nguts:   revise it: git push guts://{id} HEAD:refs/patches/{}",
            response.object,
            &response.object[..10],
            &response.object[..10]
        );
    } else {
        eprintln!(
            "guts: revised patch {} of guts://{id} (revision {})",
            response.object, response.change
        );
    }
    Ok(format!("ok {dst}"))
}
