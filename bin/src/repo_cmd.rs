//! `guts repo …` and `guts clone`: repositories, through the node's control API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use guts_api::{ImportRequest, ImportResponse, RepoDetail, RepoSummary};
use guts_protocol::RepositoryId;

use guts_cli::client::{ApiArgs, Client, SLOW, sync};
use guts_cli::terminal::safe;

/// Repository commands.
#[derive(Subcommand)]
pub enum RepoCommand {
    /// Make an existing local git repository a Guts repository owned by this node (or
    /// sign and announce its new commits, if it was imported before).
    Import {
        /// The git repository (working tree or bare).
        path: PathBuf,
        /// Its name in Guts [default: the directory name].
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create an empty repository owned by this node and print its guts:// URL (push to
    /// it with plain git).
    Init {
        /// Its name.
        name: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the repositories this node holds or follows.
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one repository: refs, sequence, holders.
    Show {
        /// The repository id.
        #[arg(value_parser = parse_id)]
        id: RepositoryId,
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Follow a repository: fetch it and keep it up to date.
    Follow {
        /// The repository id.
        #[arg(value_parser = parse_id)]
        id: RepositoryId,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Fetch the latest verified snapshot of a repository now, showing progress.
    Sync {
        /// The repository id.
        #[arg(value_parser = parse_id)]
        id: RepositoryId,
        /// A peer id to fetch from first.
        #[arg(long, value_name = "PEER")]
        from: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub fn parse_id(s: &str) -> Result<RepositoryId, String> {
    let s = s.strip_prefix("guts://").unwrap_or(s);
    s.parse()
        .map_err(|e: guts_protocol::ids::RepositoryIdError| e.to_string())
}

pub fn run(command: RepoCommand) -> anyhow::Result<()> {
    match command {
        RepoCommand::Import {
            path,
            name,
            api,
            json,
        } => import(&api, &path, name, json),
        RepoCommand::Init { name, api, json } => {
            let r: RepoSummary = Client::new(&api, Duration::from_secs(30))
                .post("/api/v1/repos/init", &guts_api::InitRequest { name })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("created {} as {}", r.name.as_deref().unwrap_or("?"), r.url);
                println!(
                    "push to it: git remote add origin {} && git push origin main",
                    r.url
                );
            }
            Ok(())
        }
        RepoCommand::List { api, json } => list(&api, json),
        RepoCommand::Show { id, api, json } => show(&api, &id, json),
        RepoCommand::Follow { id, api } => {
            let client = Client::new(&api, Duration::from_secs(30));
            client.post::<_, serde_json::Value>(
                &format!("/api/v1/repos/{id}/follow"),
                &serde_json::json!({}),
            )?;
            println!(
                "following guts://{id}; the node fetches it in the background (`guts repo sync {id}` to wait)"
            );
            Ok(())
        }
        RepoCommand::Sync { id, from, api } => {
            sync(&Client::new(&api, SLOW), &id, from).map(|_| ())
        }
    }
}

fn import(api: &ApiArgs, path: &Path, name: Option<String>, json: bool) -> anyhow::Result<()> {
    let abs = path
        .canonicalize()
        .with_context(|| format!("cannot import {}", path.display()))?;
    let client = Client::new(api, SLOW);
    let reply: ImportResponse = client.post(
        "/api/v1/repos/import",
        &ImportRequest {
            path: abs.display().to_string(),
            name,
        },
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(());
    }
    let r = &reply.repository;
    let name = r.name.as_deref().unwrap_or("?");
    if reply.changed {
        println!(
            "imported {name} as {} (sequence {}, {} refs)",
            r.url, r.sequence, r.ref_count
        );
    } else {
        println!(
            "{name} is unchanged since sequence {}: {}",
            r.sequence, r.url
        );
    }
    Ok(())
}

fn list(api: &ApiArgs, json: bool) -> anyhow::Result<()> {
    let repos: Vec<RepoSummary> = Client::new(api, Duration::from_secs(30)).get("/api/v1/repos")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&repos)?);
        return Ok(());
    }
    if repos.is_empty() {
        println!("no repositories (guts repo import PATH, or guts repo follow ID)");
        return Ok(());
    }
    println!(
        "{:<32}  {:<24} {:>5} {:>5}  ROLE",
        "ID", "NAME", "SEQ", "REFS"
    );
    for r in &repos {
        let role = match (r.owned, r.followed) {
            (true, _) => "owner",
            (false, true) => "follower",
            (false, false) => "replica",
        };
        println!(
            "{:<32}  {:<24} {:>5} {:>5}  {role}",
            r.id,
            r.name.as_deref().unwrap_or("(not fetched yet)"),
            r.sequence,
            r.ref_count
        );
    }
    Ok(())
}

fn show(api: &ApiArgs, id: &RepositoryId, json: bool) -> anyhow::Result<()> {
    let r: RepoDetail =
        Client::new(api, Duration::from_secs(30)).get(&format!("/api/v1/repos/{id}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let s = &r.summary;
    println!("id:        {}", s.id);
    println!("url:       {}", s.url);
    println!(
        "name:      {}",
        s.name.as_deref().unwrap_or("(not fetched yet)")
    );
    println!(
        "owner:     {}{}",
        s.owner.as_deref().unwrap_or("?"),
        if s.owned { " (this node)" } else { "" }
    );
    println!("sequence:  {}", s.sequence);
    println!("head:      {}", safe(s.head.as_deref().unwrap_or("(none)")));
    println!("path:      {}", s.path);
    println!("refs:");
    for (name, target) in &r.refs {
        println!("  {target}  {}", safe(name));
    }
    println!("holders:");
    if r.holders.is_empty() {
        println!("  (none known yet)");
    }
    for h in &r.holders {
        println!("  {h}");
    }
    Ok(())
}

/// `guts clone ID DIR`: the node fetches the repository if needed, then a working copy
/// is cloned from the node's store.
pub fn clone(api: &ApiArgs, id: &RepositoryId, dir: &Path) -> anyhow::Result<()> {
    if dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!("{} already exists and is not empty", dir.display());
    }
    let client = Client::new(api, SLOW);
    let detail: Result<RepoDetail, _> = client.get(&format!("/api/v1/repos/{id}"));
    let held = matches!(&detail, Ok(d) if d.summary.sequence > 0);
    if !held {
        sync(&client, id, None)?;
        client.post::<_, serde_json::Value>(
            &format!("/api/v1/repos/{id}/follow"),
            &serde_json::json!({}),
        )?;
    }
    let detail: RepoDetail = client.get(&format!("/api/v1/repos/{id}"))?;
    let source = client.local_path(&detail.summary.path)?;
    git2::Repository::clone(&source.to_string_lossy(), dir).with_context(|| {
        format!(
            "cloning from the node's store {} into {}",
            source.display(),
            dir.display()
        )
    })?;
    eprintln!("cloned guts://{id} into {}", dir.display());
    Ok(())
}
