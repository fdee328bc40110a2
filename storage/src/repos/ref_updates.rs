//! How a push moves refs: each update judged on its own (fast-forward unless forced,
//! tags never moved silently), and where HEAD goes after.

use git2::Repository;
use guts_protocol::refs::Refs;
use guts_protocol::{ObjectId, RefName};

use super::{RefUpdate, oid};

/// Judges one pushed ref update against `refs` (updating them if accepted).
pub(super) fn apply_update(
    src: &Repository,
    refs: &mut Refs,
    update: &RefUpdate,
) -> Result<(), String> {
    let name: RefName = update
        .name
        .parse()
        .map_err(|e: guts_protocol::ids::NameError| e.to_string())?;
    let Some(new) = update.new else {
        return match refs.remove(&name) {
            Some(_) => Ok(()),
            None => Err("no such ref".into()),
        };
    };
    if src.find_object(oid(&new), None).is_err() {
        return Err(format!("object {new} was not received"));
    }
    if let Some(old) = refs.get(&name).copied()
        && old != new
        && !update.force
    {
        if name.as_str().starts_with("refs/tags/") {
            return Err("tag already exists (push with --force to move it)".into());
        }
        let peel = |o: &ObjectId| {
            src.find_object(oid(o), None)
                .and_then(|o| o.peel_to_commit())
                .map(|c| c.id())
        };
        let fast_forward = match (peel(&old), peel(&new)) {
            (Ok(old), Ok(new)) => src.graph_descendant_of(new, old).unwrap_or(false),
            _ => false,
        };
        if !fast_forward {
            return Err("non-fast-forward (push with --force to overwrite)".into());
        }
    }
    refs.insert(name, new);
    Ok(())
}

/// HEAD after a push: the one before if it is still a ref, else `main`, `master` or the
/// first branch.
pub(super) fn choose_head(before: Option<RefName>, refs: &Refs) -> Option<RefName> {
    before.filter(|h| refs.contains_key(h)).or_else(|| {
        ["refs/heads/main", "refs/heads/master"]
            .iter()
            .filter_map(|n| n.parse::<RefName>().ok())
            .find(|n| refs.contains_key(n))
            .or_else(|| {
                refs.keys()
                    .find(|n| n.as_str().starts_with("refs/heads/"))
                    .cloned()
            })
    })
}
