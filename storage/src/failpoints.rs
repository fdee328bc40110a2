//! Named crash points in the store's writes, for tests that kill a node at each step and
//! check what it finds on restart (the `fail` crate, as TiKV uses it). They exist only
//! with the `failpoints` feature; the workspace's test crate turns it on, so the `guts`
//! binary the tests run has them, while `cargo install --path bin` builds none.

/// Every point, in the order an operation reaches them.
pub const POINTS: &[&str] = &[
    // Accepting a snapshot (a fetch, and every signing: import, init, push).
    "accept-indexed",
    "accept-promoted",
    "accept-refs-applied",
    "accept-done",
    // The owner's side.
    "import-signed",
    "push-applied",
    // The follow list.
    "follow-written",
    // Repacking into one pack.
    "repack-promoted",
];

/// Makes each point named in `spec` (comma-separated) abort the process when reached,
/// ending it there as a SIGKILL or a power cut would: no destructor, no flush. Returns
/// the points armed; an unknown name, or a build without the feature, is an error.
pub fn abort_at(spec: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = spec
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = names.iter().find(|n| !POINTS.contains(&n.as_str())) {
        return Err(format!(
            "unknown failpoint {bad:?}: expected one of {}",
            POINTS.join(", ")
        ));
    }
    arm(&names)?;
    Ok(names)
}

#[cfg(feature = "failpoints")]
fn arm(names: &[String]) -> Result<(), String> {
    for name in names {
        fail::cfg_callback(name.clone(), || std::process::abort())?;
    }
    Ok(())
}

#[cfg(not(feature = "failpoints"))]
fn arm(_: &[String]) -> Result<(), String> {
    Err("this build has no failpoints (build with the guts-storage/failpoints feature)".into())
}
