//! `guts mirror`: repositories this node signs that follow an upstream git repository,
//! through the node's control API.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use guts_api::client::Client;
use guts_api::mirrors::{MirrorReport, MirrorRequest};
use guts_api::terminal::safe;
use guts_protocol::RepositoryId;

use crate::api_args::{ApiArgs, print_json};
use crate::repo_cmd::parse_id;

/// What `guts mirror` does.
#[derive(Subcommand, Debug)]
pub enum MirrorCommand {
    /// Mirror an upstream (a URL git fetches from, or a local repository): fetched and
    /// signed now, then again every --every, with contributions off.
    Add {
        /// The upstream.
        upstream: String,
        /// The repository's name [default: the upstream's last path part].
        #[arg(long)]
        name: Option<String>,
        /// How often to fetch it, e.g. 30s, 10m, 1h.
        #[arg(long, value_name = "DURATION", default_value = "10m")]
        every: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The mirrors and how each one's last fetch went.
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Fetch a mirror's upstream now.
    Sync {
        /// The repository id.
        #[arg(value_parser = parse_id)]
        id: RepositoryId,
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stop mirroring (the repository stays, with contributions off).
    Remove {
        /// The repository id.
        #[arg(value_parser = parse_id)]
        id: RepositoryId,
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `command`.
pub fn run(command: MirrorCommand) -> anyhow::Result<()> {
    // A first fetch of a large upstream takes as long as git takes.
    let client = |api: &ApiArgs| Client::with_timeout(&api.target(), None);
    match command {
        MirrorCommand::Add {
            upstream,
            name,
            every,
            api,
            json,
        } => {
            let report: MirrorReport = client(&api)?.post(
                "/api/v1/mirrors",
                &MirrorRequest {
                    upstream,
                    name,
                    every: Some(every),
                },
            )?;
            if json {
                return print_json(&report);
            }
            println!(
                "mirroring {} as guts://{} (\"{}\"), fetched every {}; contributions are off",
                safe(&report.upstream),
                report.repository,
                safe(&report.name),
                humantime::format_duration(Duration::from_secs(report.every_secs))
            );
            Ok(())
        }
        MirrorCommand::List { api, json } => {
            let list: Vec<MirrorReport> = client(&api)?.get("/api/v1/mirrors")?;
            if json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("no mirrors (guts mirror add URL starts one)");
            }
            for m in &list {
                println!("{}", line(m));
            }
            Ok(())
        }
        MirrorCommand::Sync { id, api, json } => {
            let report: MirrorReport = client(&api)?.post(
                &format!("/api/v1/mirrors/{id}/sync"),
                &serde_json::json!({}),
            )?;
            if json {
                return print_json(&report);
            }
            println!("{}", line(&report));
            Ok(())
        }
        MirrorCommand::Remove { id, api, json } => {
            let answer: serde_json::Value =
                client(&api)?.delete(&format!("/api/v1/mirrors/{id}"))?;
            if json {
                return print_json(&answer);
            }
            if answer["was_mirror"] == true {
                println!("no longer mirroring {id} (the repository stays)");
            } else {
                println!("{id} was not a mirror here");
            }
            Ok(())
        }
    }
}

fn line(m: &MirrorReport) -> String {
    let ago = |at: u64| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        humantime::format_duration(Duration::from_secs(now.saturating_sub(at))).to_string()
    };
    let last = match (m.last_fetched, &m.last_error, m.last_changed) {
        (None, _, _) => "not fetched since the node started".to_owned(),
        (Some(at), Some(e), _) => format!("failed {} ago: {}", ago(at), safe(e)),
        (Some(at), None, Some(true)) => format!("updated {} ago", ago(at)),
        (Some(at), None, _) => format!("up to date {} ago", ago(at)),
    };
    format!(
        "{} {} <- {} every {}: {last}",
        m.repository,
        safe(&m.name),
        safe(&m.upstream),
        humantime::format_duration(Duration::from_secs(m.every_secs))
    )
}
