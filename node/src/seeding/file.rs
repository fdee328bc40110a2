//! The seeding policy's file: TOML an operator edits by hand (then SIGHUP) or through
//! `guts seed` / `guts block` (which rewrite it). Format version 1; a file of a later
//! version is refused by name, and nothing of it applied.
//!
//! ```toml
//! version = 1
//! # Repositories no rule names: "followed" or "all" (absent: the node's `replicate`).
//! default = "followed"
//!
//! [[seed]]
//! key = "<64 hex digits>"       # every repository this key created or maintains
//! contributions = "maintainers" # all (the default), maintainers or none
//!
//! [[seed]]
//! repo = "<repository id>"
//!
//! [[block]]
//! key = "<64 hex digits>"
//! ```

use guts_protocol::RepositoryId;
use serde::{Deserialize, Serialize};

use super::{Rule, Scope, SeedingPolicy, Target};
use crate::config::Replicate;

/// The format written.
const VERSION: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seed: Vec<RawRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    block: Vec<RawTarget>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contributions: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repo: Option<String>,
}

/// Reads a policy file's text; the error names the entry and value at fault.
pub(super) fn parse(text: &str) -> Result<SeedingPolicy, String> {
    let raw: RawPolicy = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
    if let Some(v) = raw.version
        && v != VERSION
    {
        return Err(format!(
            "version = {v}: this guts reads seeding policies of version {VERSION} (a newer guts wrote it)"
        ));
    }
    let default = raw
        .default
        .map(|d| match d.as_str() {
            "all" => Ok(Replicate::All),
            "followed" => Ok(Replicate::Followed),
            _ => Err(format!("default = {d:?}: expected \"followed\" or \"all\"")),
        })
        .transpose()?;
    let mut policy = SeedingPolicy {
        default,
        ..SeedingPolicy::default()
    };
    for (n, rule) in raw.seed.into_iter().enumerate() {
        let at = format!("seed #{}", n + 1);
        let target = target(rule.key, rule.repo, &at)?;
        let contributions = match rule.contributions.as_deref() {
            None => Scope::All,
            Some(s) => s
                .parse()
                .map_err(|e| format!("{at}: contributions = {s:?}: {e}"))?,
        };
        policy.seed.push(Rule {
            target,
            contributions,
        });
    }
    for (n, t) in raw.block.into_iter().enumerate() {
        policy
            .block
            .push(target(t.key, t.repo, &format!("block #{}", n + 1))?);
    }
    Ok(policy)
}

/// The file's text for `policy`, with a header saying how it is used.
pub(super) fn render(policy: &SeedingPolicy) -> String {
    let raw = RawPolicy {
        version: Some(VERSION),
        default: policy.default.map(|d| {
            match d {
                Replicate::All => "all",
                Replicate::Followed => "followed",
            }
            .to_owned()
        }),
        seed: policy
            .seed
            .iter()
            .map(|r| {
                let (key, repo) = split(&r.target);
                RawRule {
                    key,
                    repo,
                    contributions: (r.contributions != Scope::All)
                        .then(|| r.contributions.to_string()),
                }
            })
            .collect(),
        block: policy
            .block
            .iter()
            .map(|t| {
                let (key, repo) = split(t);
                RawTarget { key, repo }
            })
            .collect(),
    };
    let body = toml::to_string_pretty(&raw).unwrap_or_default();
    format!(
        "# guts seeding policy. `guts seed`, `guts block` and the API rewrite this file; after\n\
         # editing it by hand, send the node SIGHUP (or run `guts policy --reload`).\n\
         # [[seed]]: key = \"<hex>\" (every repository it created or maintains) or repo = \"<id>\",\n\
         # contributions = \"all\" | \"maintainers\" | \"none\". [[block]]: key or repo; nothing of\n\
         # it is stored, served or relayed.\n{body}"
    )
}

fn split(target: &Target) -> (Option<String>, Option<String>) {
    match target {
        Target::Key(k) => (Some(hex::encode(k.as_bytes())), None),
        Target::Repo(id) => (None, Some(id.to_string())),
    }
}

fn target(key: Option<String>, repo: Option<String>, at: &str) -> Result<Target, String> {
    match (key, repo) {
        (Some(k), None) => crate::maintainers::parse_key(&k)
            .map(Target::Key)
            .map_err(|e| format!("{at}: {e}")),
        (None, Some(r)) => r
            .parse::<RepositoryId>()
            .map(Target::Repo)
            .map_err(|e| format!("{at}: repo = {r:?}: {e}")),
        (Some(_), Some(_)) => Err(format!("{at}: give key or repo, not both")),
        (None, None) => Err(format!("{at}: give key = \"<hex>\" or repo = \"<id>\"")),
    }
}
