//! `guts repo …` and `guts clone`: repositories, through the node's control API.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use guts_api::{ImportRequest, ImportResponse, RepoDetail, RepoSummary};
use guts_protocol::RepositoryId;

use guts_api::client::{Client, Progress, SLOW, sync};
use guts_api::terminal::safe;

use crate::api_args::{ApiArgs, print_json};
use crate::maintainers_cmd;

/// Repository commands.
#[derive(Subcommand)]
pub enum RepoCommand {
    /// Make an existing local git repository a Guts repository owned by this node (or
    /// sign and announce its new commits, if it was imported before).
    Import {
        /// The git repository (working tree or bare), a bundle file, a URL git fetches
        /// from (https://, git://, ssh://, user@host:path; the node fetches it), or `-` for
        /// a bundle on stdin (with --name).
        path: PathBuf,
        /// Its name in Guts [default: the directory, file or URL's last part].
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
        /// Private from the start: only this node's key and those allowed may see it.
        #[arg(long)]
        private: bool,
        /// A key a private repository allows (implies --private); repeatable. Of an
        /// encrypted one, a key that reads it.
        #[arg(long, value_name = "KEY")]
        allow: Vec<String>,
        /// Encrypted (implies --private): its objects are stored and served sealed, and
        /// only this node's key and those allowed hold the key to them. Chosen now, kept.
        #[arg(long)]
        encrypted: bool,
        /// A key that keeps and serves an encrypted repository without reading it
        /// (implies --encrypted); repeatable.
        #[arg(long, value_name = "KEY")]
        seeder: Vec<String>,
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
    /// Show one repository: refs, sequence, holders; with maintainers, who is at which
    /// commit.
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
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop following a repository: the node stops fetching it, and keeps (and serves)
    /// the copy it has.
    Unfollow {
        /// The repository id.
        #[arg(value_parser = parse_id)]
        id: RepositoryId,
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete this node's copy of a repository and stop following it.
    Remove {
        /// The repository id.
        #[arg(value_parser = parse_id)]
        id: RepositoryId,
        /// Remove it even if this node owns it (other nodes may keep their copies; this
        /// node's key can still sign for it).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Turn contributions to a repository on or off, on every node (its maintainers may):
    /// while off it is an authoritative mirror, and only its maintainers' patches, issues
    /// and forks are kept and shown.
    Contributions {
        /// The repository id.
        #[arg(value_parser = parse_id)]
        id: RepositoryId,
        /// `on` or `off`.
        state: OnOff,
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Hide a key's patches, issues and comments in a repository, on every node (its
    /// maintainers may); --undo shows them again.
    Hide {
        /// The repository id.
        #[arg(value_parser = parse_id)]
        id: RepositoryId,
        /// The key (64 hex digits).
        key: String,
        /// Show them again.
        #[arg(long)]
        undo: bool,
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a repository's maintainers, their views, and proposals waiting for
    /// signatures.
    Maintainers {
        /// The repository id.
        #[arg(value_parser = parse_id)]
        id: RepositoryId,
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Propose a change of maintainers or threshold, signed by this node's key (a
    /// maintainer); it takes effect once the current threshold of maintainers signed it.
    Propose {
        /// The repository id.
        #[arg(value_parser = parse_id)]
        id: RepositoryId,
        /// A key to add (hex, as `guts status` shows it); repeatable.
        #[arg(long, value_name = "KEY")]
        add: Vec<String>,
        /// A key to remove; repeatable.
        #[arg(long, value_name = "KEY")]
        remove: Vec<String>,
        /// How many maintainers must agree from then on [default: as now, at most the
        /// number of maintainers].
        #[arg(long)]
        threshold: Option<u16>,
        /// Make the repository private: only its maintainers and the keys allowed may see
        /// it (it is never announced, listed or provided, and served to no one else).
        #[arg(long, conflicts_with = "public")]
        private: bool,
        /// Make the repository public again.
        #[arg(long)]
        public: bool,
        /// A key a private repository allows besides its maintainers (implies --private);
        /// repeatable.
        #[arg(long, value_name = "KEY", conflicts_with = "public")]
        allow: Vec<String>,
        /// A key to allow no more; repeatable.
        #[arg(long, value_name = "KEY", conflicts_with = "public")]
        disallow: Vec<String>,
        /// A key to seed an encrypted repository (keep and serve it without reading it);
        /// repeatable.
        #[arg(long, value_name = "KEY", conflicts_with = "public")]
        seeder: Vec<String>,
        /// A key to seed it no more; repeatable.
        #[arg(long, value_name = "KEY", conflicts_with = "public")]
        unseed: Vec<String>,
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign (accept) a pending proposal with this node's key.
    Accept {
        /// The repository id.
        #[arg(value_parser = parse_id)]
        id: RepositoryId,
        /// The proposal's id, as `guts repo maintainers` lists it.
        proposal: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
        /// Print the outcome as JSON (progress still goes to stderr).
        #[arg(long)]
        json: bool,
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
        RepoCommand::Init {
            name,
            private,
            allow,
            encrypted,
            seeder,
            api,
            json,
        } => {
            let encrypted = encrypted || !seeder.is_empty();
            let private = (private || encrypted || !allow.is_empty()).then_some(allow);
            let seeders = encrypted.then_some(seeder);
            let r: RepoSummary = Client::new(&api.target(), Duration::from_secs(30))?.post(
                "/api/v1/repos/init",
                &guts_api::InitRequest {
                    name,
                    private,
                    seeders,
                },
            )?;
            if json {
                print_json(&r)?;
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
        RepoCommand::Maintainers { id, api, json } => maintainers_cmd::list(&api, &id, json),
        RepoCommand::Hide {
            id,
            key,
            undo,
            api,
            json,
        } => crate::collab_cmd::hide(&api, id, key, undo, json),
        RepoCommand::Contributions {
            id,
            state,
            api,
            json,
        } => crate::collab_cmd::set_contributions(&api, id, state == OnOff::On, json),
        RepoCommand::Propose {
            id,
            add,
            remove,
            threshold,
            private,
            public,
            allow,
            disallow,
            seeder,
            unseed,
            api,
            json,
        } => {
            let visibility = maintainers_cmd::VisibilityChange {
                private,
                public,
                allow,
                disallow,
                seed: seeder,
                unseed,
            };
            maintainers_cmd::propose(&api, &id, &add, &remove, threshold, &visibility, json)
        }
        RepoCommand::Accept {
            id,
            proposal,
            api,
            json,
        } => maintainers_cmd::accept(&api, &id, &proposal, json),
        RepoCommand::Follow { id, api, json } => {
            let client = Client::new(&api.target(), Duration::from_secs(30))?;
            let reply: serde_json::Value = client.post(
                &format!("/api/v1/repos/{id}/follow"),
                &serde_json::json!({}),
            )?;
            if json {
                return print_json(&reply);
            }
            println!(
                "following guts://{id}; the node fetches it in the background (`guts repo sync {id}` to wait)"
            );
            Ok(())
        }
        RepoCommand::Unfollow { id, api, json } => {
            let client = Client::new(&api.target(), Duration::from_secs(30))?;
            let reply: serde_json::Value = client.post(
                &format!("/api/v1/repos/{id}/unfollow"),
                &serde_json::json!({}),
            )?;
            if json {
                return print_json(&reply);
            }
            if reply["was_followed"] == true {
                println!(
                    "no longer following guts://{id}; the copy this node holds stays (`guts repo remove {id}` deletes it)"
                );
            } else {
                println!("guts://{id} was not followed");
            }
            Ok(())
        }
        RepoCommand::Remove {
            id,
            force,
            api,
            json,
        } => {
            let client = Client::new(&api.target(), Duration::from_secs(60))?;
            let reply: serde_json::Value =
                client.delete(&format!("/api/v1/repos/{id}?force={force}"))?;
            if json {
                return print_json(&reply);
            }
            println!("removed guts://{id} from this node");
            let status: guts_api::StatusReport = client.get("/api/v1/status")?;
            if status.replicate == "all" {
                println!(
                    "note: this node keeps every repository it hears of (replicate = all), so it fetches guts://{id} again at its next announcement"
                );
            }
            Ok(())
        }
        RepoCommand::Sync {
            id,
            from,
            api,
            json,
        } => {
            let outcome = sync(
                &Client::new(&api.target(), SLOW)?,
                &id,
                from,
                Progress::Shown,
            )?;
            if json {
                print_json(&outcome)?;
            }
            Ok(())
        }
    }
}

fn import(api: &ApiArgs, path: &Path, name: Option<String>, json: bool) -> anyhow::Result<()> {
    let text = path.to_string_lossy();
    // A bundle on stdin goes to a file the node (on this machine) reads, removed after.
    let mut from_stdin = None;
    let source = if text == "-" {
        if name.is_none() {
            anyhow::bail!("a bundle on stdin needs a name: guts repo import - --name NAME");
        }
        let mut file = tempfile_in_tmp()?;
        std::io::copy(&mut std::io::stdin().lock(), &mut file.1)
            .context("reading the bundle from stdin")?;
        let path = file.0.clone();
        from_stdin = Some(file.0);
        path.display().to_string()
    } else if matches!(
        guts_storage::ImportSource::parse(&text),
        guts_storage::ImportSource::Url(_)
    ) {
        text.into_owned()
    } else {
        path.canonicalize()
            .with_context(|| format!("cannot import {}", path.display()))?
            .display()
            .to_string()
    };
    let client = Client::new(&api.target(), SLOW)?;
    let reply: Result<ImportResponse, _> = client.post(
        "/api/v1/repos/import",
        &ImportRequest { path: source, name },
    );
    if let Some(file) = from_stdin {
        let _ = std::fs::remove_file(file);
    }
    let reply = reply?;
    if json {
        return print_json(&reply);
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
    let repos: Vec<RepoSummary> =
        Client::new(&api.target(), Duration::from_secs(30))?.get("/api/v1/repos")?;
    if json {
        return print_json(&repos);
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

/// A switch's two positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

fn show(api: &ApiArgs, id: &RepositoryId, json: bool) -> anyhow::Result<()> {
    let r: RepoDetail =
        Client::new(&api.target(), Duration::from_secs(30))?.get(&format!("/api/v1/repos/{id}"))?;
    if json {
        return print_json(&r);
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
    if r.contributions_off {
        println!("contributions: off (only the maintainers' patches, issues and forks count)");
    }
    println!("refs:");
    for (name, target) in &r.refs {
        println!("  {target}  {}", safe(name));
    }
    if r.maintainers.is_some() {
        maintainers_cmd::print_maintainers(&r);
        maintainers_cmd::print_positions(&r);
    }
    if !r.forks.is_empty() {
        println!("forks (git fetch origin 'refs/forks/<key>/*'):");
        for f in &r.forks {
            let you = if f.you { " (this node)" } else { "" };
            println!("  {}{you}, fork {}:", f.key, f.sequence);
            for (name, target) in &f.refs {
                println!("    {target}  {}", safe(name));
            }
        }
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

/// `guts clone ID [DIR]`: the node fetches the repository if needed (and follows it),
/// then `git clone guts://ID` makes the working copy, so `origin` is the `guts://` URL
/// and a later `git push` goes through the node, which signs and announces it.
pub fn clone(
    api: &ApiArgs,
    id: &RepositoryId,
    dir: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    if let Some(dir) = &dir {
        refuse_non_empty(dir)?;
    }
    let client = Client::new(&api.target(), SLOW)?;
    let detail: Result<RepoDetail, _> = client.get(&format!("/api/v1/repos/{id}"));
    if !matches!(&detail, Ok(d) if d.summary.sequence > 0) {
        // git clone's helper would fetch it too; here the progress is shown once.
        sync(&client, id, None, Progress::Shown)?;
        client.post::<_, serde_json::Value>(
            &format!("/api/v1/repos/{id}/follow"),
            &serde_json::json!({}),
        )?;
    }
    let detail: RepoDetail = client.get(&format!("/api/v1/repos/{id}"))?;
    let dir = match dir {
        Some(d) => d,
        None => {
            let name = detail.summary.name.as_deref().unwrap_or("repository");
            let dir = PathBuf::from(safe(name).into_owned());
            refuse_non_empty(&dir)?;
            dir
        }
    };
    let url = format!("guts://{id}");
    let mut git = Command::new("git");
    git.args(["clone", "--quiet", &url])
        .arg(&dir)
        .env("GUTS_API", client.addr().to_string())
        .env("GUTS_DATA_DIR", client.data_dir()?);
    // git finds git-remote-guts on PATH; the one installed beside this program first.
    if let Some(path) = path_with_own_dir() {
        git.env("PATH", path);
    }
    let status = git.status().context("cannot run git (is it installed?)")?;
    if !status.success() {
        bail!("git clone {url} {} failed ({status})", dir.display());
    }
    if json {
        return print_json(&serde_json::json!({
            "id": id.to_string(),
            "url": url,
            "dir": dir.display().to_string(),
        }));
    }
    eprintln!("cloned {url} into {} (origin: {url})", dir.display());
    Ok(())
}

fn refuse_non_empty(dir: &Path) -> anyhow::Result<()> {
    let non_empty = dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true);
    if non_empty {
        bail!("{} already exists and is not empty", dir.display());
    }
    Ok(())
}

/// `PATH` with this program's directory in front, if it holds `git-remote-guts`.
fn path_with_own_dir() -> Option<std::ffi::OsString> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    if !dir.join("git-remote-guts").exists() {
        return None;
    }
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).ok()
}

/// A new file in the temporary directory, readable by the node, for a bundle on stdin.
fn tempfile_in_tmp() -> anyhow::Result<(std::path::PathBuf, std::fs::File)> {
    let dir = std::env::temp_dir();
    for attempt in 0..100u32 {
        let path = dir.join(format!(
            "guts-import-{}-{attempt}.bundle",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(
                    anyhow::Error::from(e).context(format!("cannot write {}", path.display()))
                );
            }
        }
    }
    anyhow::bail!("cannot make a file for the bundle in {}", dir.display())
}
