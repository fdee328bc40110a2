//! `guts verify`: checks a clone against the signed record that came with it, offline.

use std::path::Path;

use guts_api::terminal::safe;
use guts_storage::clone_check::{CloneCheck, RefCheck, Verdict, check_clone};

/// Checks the clone at `dir` and prints each ref's verdict; an error if any ref differs
/// from what the maintainers signed.
pub fn run(dir: &Path, remote: Option<&str>, json: bool) -> anyhow::Result<()> {
    let check = check_clone(dir, remote)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&as_json(&check))?);
    } else {
        print_text(&check);
    }
    if check.passed() {
        return Ok(());
    }
    if let Some(url_id) = check.url_id.filter(|id| *id != check.repository) {
        anyhow::bail!(
            "the record is of repository {}, but the remote's URL names {url_id}",
            check.repository
        );
    }
    if !check.refused.is_empty() {
        anyhow::bail!(
            "the record carries {} signed item(s) that do not verify: it was altered",
            check.refused.len()
        );
    }
    let bad = check
        .refs
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Differs | Verdict::NotSigned))
        .count();
    anyhow::bail!("{bad} ref(s) of this clone are not what the maintainers signed")
}

fn print_text(check: &CloneCheck) {
    let from = match (&check.remote, &check.url) {
        (Some(remote), Some(url)) => format!("remote {remote} ({})", safe(url)),
        (Some(remote), None) => format!("remote {remote}"),
        _ => "this repository's own refs".to_owned(),
    };
    println!(
        "repository {} \"{}\", identity version {}: {} maintainer(s), {} must agree",
        check.repository,
        safe(check.name.as_str()),
        check.version,
        check.maintainers,
        check.threshold
    );
    match check.url_id {
        Some(id) if id == check.repository => println!("the remote's URL names this id"),
        Some(id) => println!("THE REMOTE'S URL NAMES ANOTHER ID: {id}"),
        None => println!("compare this id with the one you were given"),
    }
    println!("checking {from}");
    for why in &check.refused {
        println!("  REFUSED   {}", safe(why));
    }
    for r in &check.refs {
        println!("  {}", line(r));
    }
    if let Some(head) = &check.head {
        println!("HEAD is {} by the maintainers' views", safe(head.as_str()));
    }
    if check.passed() {
        let taken = check
            .refs
            .iter()
            .filter(|r| r.verdict == Verdict::Matches)
            .count();
        println!("ok: all {taken} ref(s) this clone took are what the maintainers signed");
    }
}

fn line(r: &RefCheck) -> String {
    let name = safe(&r.name);
    let short = |id: &guts_protocol::ObjectId| id.to_string()[..12].to_owned();
    match (r.verdict, r.signed, r.found) {
        (Verdict::Matches, Some(signed), _) => format!("ok        {name} {}", short(&signed)),
        (Verdict::Differs, Some(signed), Some(found)) => format!(
            "DIFFERS   {name}: this clone has {}, the maintainers signed {}",
            short(&found),
            short(&signed)
        ),
        (Verdict::NotSigned, _, Some(found)) => format!(
            "UNSIGNED  {name} {}: no maintainer signed it{}",
            short(&found),
            if r.name.starts_with("refs/tags/") {
                " (a tag of your own? delete it or check another clone)"
            } else {
                ""
            }
        ),
        (_, signed, _) => format!(
            "not here  {name}{} (this clone did not take it)",
            signed
                .map(|s| format!(" {}", short(&s)))
                .unwrap_or_default()
        ),
    }
}

fn as_json(check: &CloneCheck) -> serde_json::Value {
    let verdict = |v: Verdict| match v {
        Verdict::Matches => "matches",
        Verdict::Differs => "differs",
        Verdict::NotSigned => "not_signed",
        Verdict::NotFetched => "not_fetched",
    };
    serde_json::json!({
        "passed": check.passed(),
        "repository": check.repository.to_string(),
        "name": check.name.as_str(),
        "version": check.version,
        "maintainers": check.maintainers,
        "threshold": check.threshold,
        "remote": check.remote,
        "url": check.url,
        "url_id": check.url_id.map(|id| id.to_string()),
        "refused": check.refused,
        "head": check.head.as_ref().map(|h| h.as_str()),
        "refs": check.refs.iter().map(|r| serde_json::json!({
            "name": r.name,
            "local": r.local,
            "signed": r.signed.map(|s| s.to_string()),
            "found": r.found.map(|f| f.to_string()),
            "verdict": verdict(r.verdict),
        })).collect::<Vec<_>>(),
    })
}
