//! `guts seed`, `guts unseed`, `guts block`, `guts unblock` and `guts policy`: the
//! node's seeding policy, changed through its control API (which rewrites the policy
//! file and applies it at once).

use std::time::Duration;

use guts_api::client::Client;
use guts_api::seeding::{PolicyReport, PolicyRequest};
use guts_api::terminal::safe;

use crate::api_args::{ApiArgs, print_json};

/// A change to the policy, as the commands name it.
#[derive(clap::Args, Debug)]
pub struct TargetArgs {
    /// A key (64 hex digits: every repository it created or maintains) or a repository id.
    #[arg(value_name = "KEY|ID")]
    pub target: String,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Sends `request` (or, with none, reads the policy) and prints what is in effect.
pub fn run(api: &ApiArgs, request: Option<PolicyRequest>, json: bool) -> anyhow::Result<()> {
    // Applying a block removes repositories, which may take a while on a large node.
    let client = Client::new(&api.target(), Duration::from_secs(300))?;
    let report: PolicyReport = match &request {
        Some(request) => client.post("/api/v1/policy", request)?,
        None => client.get("/api/v1/policy")?,
    };
    if json {
        return print_json(&report);
    }
    for id in &report.removed {
        println!("removed {id} (blocked)");
    }
    for id in &report.followed {
        println!("following {id} (seeded)");
    }
    println!("seeding policy ({}):", safe(&report.file));
    println!("  repositories no rule names: {}", report.default);
    if report.seed.is_empty() && report.block.is_empty() {
        println!("  no rules");
    }
    for rule in &report.seed {
        println!(
            "  seed   {} {} (contributions: {})",
            rule.target.kind, rule.target.target, rule.contributions
        );
    }
    for target in &report.block {
        println!("  block  {} {}", target.kind, target.target);
    }
    Ok(())
}
