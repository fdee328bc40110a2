//! `guts repo maintainers | propose | accept`: who maintains a repository, and changing
//! that (a proposal signed by this node's key, accepted by the others).

use std::time::Duration;

use anyhow::bail;
use guts_api::client::Client;
use guts_api::terminal::safe;
use guts_api::{
    AcceptRequest, MaintainersReport, ProposalReport, ProposeRequest, RepoDetail, VisibilityBody,
};
use guts_protocol::RepositoryId;

use crate::api_args::{ApiArgs, print_json};

/// `guts repo maintainers ID`.
pub fn list(api: &ApiArgs, id: &RepositoryId, json: bool) -> anyhow::Result<()> {
    let detail = detail(api, id)?;
    if json {
        return print_json(&detail.maintainers);
    }
    print_maintainers(&detail);
    Ok(())
}

/// Prints the identity part of `detail` (shared by `show`).
pub fn print_maintainers(detail: &RepoDetail) {
    let Some(m) = &detail.maintainers else {
        println!(
            "maintainers: the creator alone (identity version 1, threshold 1): {}{}",
            detail.summary.owner.as_deref().unwrap_or("?"),
            if detail.summary.owned {
                " (this node)"
            } else {
                ""
            }
        );
        return;
    };
    println!(
        "maintainers: {} at identity version {} ({}), threshold {}",
        m.maintainers.len(),
        m.version,
        &m.version_id[..12],
        m.threshold
    );
    for k in &m.maintainers {
        let view = k
            .view_sequence
            .map_or("no view yet".to_owned(), |s| format!("view {s}"));
        println!(
            "  {}  {view}{}",
            k.key,
            if k.you { " (this node)" } else { "" }
        );
    }
    if m.encrypted {
        println!(
            "encrypted: read by the maintainers and {} key(s), seeded by {} more",
            m.allowed.len(),
            m.seeders.len()
        );
        for k in &m.allowed {
            println!("  reads  {k}");
        }
        for k in &m.seeders {
            println!("  seeds  {k}");
        }
    } else if m.private {
        println!(
            "private: seen by the maintainers and {} allowed key(s)",
            m.allowed.len()
        );
        for k in &m.allowed {
            println!("  {k}");
        }
    }
    if m.pending.is_empty() {
        println!("pending: none");
    }
    for p in &m.pending {
        print_proposal("pending", p);
    }
}

fn print_proposal(what: &str, p: &ProposalReport) {
    println!(
        "{what}: version {} ({}) signed by {} of {} needed: {} maintainer(s), threshold {}",
        p.version,
        p.id,
        p.signed_by.len(),
        p.needs,
        p.maintainers.len(),
        p.threshold
    );
    for k in &p.maintainers {
        println!("  {k}");
    }
}

/// Prints, for each ref where maintainers' views differ, who is where.
pub fn print_positions(detail: &RepoDetail) {
    if detail.positions.is_empty() {
        return;
    }
    println!("views (where each maintainer is):");
    for (name, at) in &detail.positions {
        let canonical = detail.refs.get(name).map_or("(not agreed)", String::as_str);
        println!("  {}  canonical {canonical}", safe(name));
        for (key, target) in at {
            println!(
                "    {}  {}",
                &key[..16],
                target.as_deref().unwrap_or("(not in its view)")
            );
        }
    }
}

/// `guts repo propose ID --add K --remove K --threshold N`.
/// What `guts repo propose` asks of the repository's visibility.
#[derive(Debug, Default)]
pub struct VisibilityChange {
    /// `--private`.
    pub private: bool,
    /// `--public`.
    pub public: bool,
    /// `--allow KEY`.
    pub allow: Vec<String>,
    /// `--disallow KEY`.
    pub disallow: Vec<String>,
    /// `--seeder KEY`.
    pub seed: Vec<String>,
    /// `--unseed KEY`.
    pub unseed: Vec<String>,
}

/// `list` with the keys in `remove` taken out (each must be there) and those in `add`
/// put in; `what` names the list in errors.
fn amend(
    mut list: Vec<String>,
    remove: &[String],
    add: &[String],
    what: &str,
) -> anyhow::Result<Vec<String>> {
    for k in remove {
        let k = k.trim().to_lowercase();
        if !list.contains(&k) {
            bail!("{k} is not {what}: nothing to take out");
        }
        list.retain(|a| *a != k);
    }
    for k in add {
        let k = k.trim().to_lowercase();
        if !list.contains(&k) {
            list.push(k);
        }
    }
    Ok(list)
}

impl VisibilityChange {
    /// The visibility to propose given the current one (`None`: unchanged).
    fn body(&self, current: Option<&MaintainersReport>) -> anyhow::Result<Option<VisibilityBody>> {
        if self.public {
            return Ok(Some(VisibilityBody::Public));
        }
        let seeding = !self.seed.is_empty() || !self.unseed.is_empty();
        if !self.private && self.allow.is_empty() && self.disallow.is_empty() && !seeding {
            return Ok(None);
        }
        let allowed: Vec<String> = current
            .filter(|m| m.private)
            .map(|m| m.allowed.clone())
            .unwrap_or_default();
        let allowed = amend(allowed, &self.disallow, &self.allow, "allowed")?;
        match current.filter(|m| m.encrypted) {
            Some(m) => Ok(Some(VisibilityBody::Encrypted {
                readers: allowed,
                seeders: amend(m.seeders.clone(), &self.unseed, &self.seed, "a seeder")?,
            })),
            None if seeding => bail!(
                "seeders are for encrypted repositories, chosen when one is made (guts repo init NAME --encrypted)"
            ),
            None => Ok(Some(VisibilityBody::Private { allow: allowed })),
        }
    }
}

pub fn propose(
    api: &ApiArgs,
    id: &RepositoryId,
    add: &[String],
    remove: &[String],
    threshold: Option<u16>,
    visibility: &VisibilityChange,
    json: bool,
) -> anyhow::Result<()> {
    let detail = detail(api, id)?;
    let (mut maintainers, current_threshold) = match &detail.maintainers {
        Some(m) => (
            m.maintainers
                .iter()
                .map(|k| k.key.clone())
                .collect::<Vec<_>>(),
            m.threshold,
        ),
        None => (detail.summary.owner.clone().into_iter().collect(), 1),
    };
    for k in remove {
        let k = k.trim().to_lowercase();
        if !maintainers.contains(&k) {
            bail!("{k} is not a maintainer of guts://{id}: nothing to remove");
        }
        maintainers.retain(|m| *m != k);
    }
    for k in add {
        let k = k.trim().to_lowercase();
        if !maintainers.contains(&k) {
            maintainers.push(k);
        }
    }
    if maintainers.is_empty() {
        bail!("a repository keeps at least one maintainer");
    }
    let threshold = threshold.unwrap_or(current_threshold.min(maintainers.len() as u16));
    let visibility = visibility.body(detail.maintainers.as_ref())?;
    if add.is_empty() && remove.is_empty() && threshold == current_threshold && visibility.is_none()
    {
        bail!(
            "nothing to change: give --add, --remove, --threshold, --private, --allow, --disallow, --seeder, --unseed or --public"
        );
    }
    let proposal: ProposalReport = client(api)?.post(
        &format!("/api/v1/repos/{id}/maintainers"),
        &ProposeRequest {
            maintainers,
            threshold,
            visibility,
        },
    )?;
    if json {
        return print_json(&proposal);
    }
    report(id, &proposal);
    Ok(())
}

/// `guts repo accept ID VERSION`.
pub fn accept(api: &ApiArgs, id: &RepositoryId, version: &str, json: bool) -> anyhow::Result<()> {
    let proposal: ProposalReport = client(api)?.post(
        &format!("/api/v1/repos/{id}/maintainers/accept"),
        &AcceptRequest {
            version: version.to_owned(),
        },
    )?;
    if json {
        return print_json(&proposal);
    }
    report(id, &proposal);
    Ok(())
}

fn report(id: &RepositoryId, p: &ProposalReport) {
    if p.in_effect {
        print_proposal("in effect", p);
        println!(
            "from now on a branch moves where {} maintainers' views agree (a new maintainer's node starts its view where the branches are now)",
            p.threshold
        );
    } else {
        print_proposal("proposed", p);
        println!(
            "other maintainers accept it with: guts repo accept {id} {}",
            p.id
        );
    }
}

fn client(api: &ApiArgs) -> anyhow::Result<Client> {
    Ok(Client::new(&api.target(), Duration::from_secs(30))?)
}

fn detail(api: &ApiArgs, id: &RepositoryId) -> anyhow::Result<RepoDetail> {
    Ok(client(api)?.get(&format!("/api/v1/repos/{id}"))?)
}
