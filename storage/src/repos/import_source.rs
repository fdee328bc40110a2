//! Imports from elsewhere than a local repository: a git URL, or a bundle file. git
//! clones it (`--mirror`, its own transports, nothing prompting) into a directory beside
//! the store, which is imported like any local repository and then removed; so a node in
//! a container or on a server takes a repository without files copied in.

use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use guts_protocol::RepoName;

use super::{Imported, Repositories};
use crate::StorageError;

/// Where clones for imports are made, under the data dir; emptied at every start.
pub(super) const IMPORTS_DIR: &str = "imports";
/// Where mirrors keep their upstream's branches and tags between fetches.
const MIRRORS_DIR: &str = "mirrors";

/// What an import names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportSource {
    /// A local git repository (a working tree or a bare one).
    Local(PathBuf),
    /// A bundle file (`git bundle create`).
    Bundle(PathBuf),
    /// A URL git fetches from (`https://`, `http://`, `git://`, `ssh://`, `user@host:path`).
    Url(String),
}

impl ImportSource {
    /// Reads what a user typed: a URL, else a path (a file is a bundle).
    pub fn parse(text: &str) -> ImportSource {
        let url = ["https://", "http://", "git://", "ssh://"]
            .iter()
            .any(|s| text.starts_with(s));
        // scp-like `user@host:path` (not a Windows drive, not a local path with ':').
        let scp = text
            .split_once(':')
            .is_some_and(|(host, _)| host.contains('@') && !host.contains('/'));
        if url || scp {
            return ImportSource::Url(text.to_owned());
        }
        let path = PathBuf::from(text);
        if path.is_file() {
            ImportSource::Bundle(path)
        } else {
            ImportSource::Local(path)
        }
    }

    /// The name a repository gets when none is given: the last part of the URL or
    /// path, without `.git` or `.bundle`.
    pub fn default_name(&self) -> Option<RepoName> {
        let text = match self {
            ImportSource::Local(p) | ImportSource::Bundle(p) => p.to_string_lossy().into_owned(),
            ImportSource::Url(u) => u.clone(),
        };
        let last = text
            .trim_end_matches('/')
            .rsplit(['/', ':'])
            .next()
            .unwrap_or_default()
            .trim_end_matches(".git")
            .trim_end_matches(".bundle")
            .to_owned();
        last.parse().ok()
    }
}

impl Repositories {
    /// [`Repositories::import`] from `source`: a local repository as it is, a URL or a
    /// bundle through a clone of it (removed afterwards).
    pub fn import_from(
        &self,
        source: &ImportSource,
        name: Option<RepoName>,
        key: &SigningKey,
    ) -> Result<Imported, StorageError> {
        let (from, what) = match source {
            ImportSource::Local(path) => return self.import(path, name, key),
            ImportSource::Bundle(path) => (path.display().to_string(), "bundle"),
            ImportSource::Url(url) => (url.clone(), "URL"),
        };
        let name = match name.or_else(|| source.default_name()) {
            Some(n) => n,
            None => {
                return Err(StorageError::BadName {
                    path: PathBuf::from(&from),
                    reason: "no name can be made from it: give one (--name)".into(),
                });
            }
        };
        let clone = self.import_dir()?;
        let result = clone_mirror(&from, &clone)
            .map_err(|reason| StorageError::NotAGitRepository {
                path: PathBuf::from(format!("{what} {from}")),
                reason,
            })
            .and_then(|()| self.import(&clone, Some(name), key));
        let _ = fs::remove_dir_all(&clone);
        result
    }

    /// [`Repositories::import`] of a mirror: the branches and tags of `upstream` (a URL,
    /// or a local repository) fetched into the mirror's own copy beside the store (only
    /// what is new crosses the network after the first time), then imported as `name`.
    pub fn import_mirror(
        &self,
        upstream: &str,
        name: RepoName,
        key: &SigningKey,
    ) -> Result<Imported, StorageError> {
        let copy = self.mirror_copy(&name);
        fetch_upstream(upstream, &copy).map_err(|reason| StorageError::NotAGitRepository {
            path: PathBuf::from(format!("upstream {upstream}")),
            reason,
        })?;
        self.import(&copy, Some(name), key)
    }

    /// Removes the copy a mirror keeps of its upstream (the repository stays).
    pub fn forget_mirror(&self, name: &RepoName) -> Result<(), StorageError> {
        let copy = self.mirror_copy(name);
        match fs::remove_dir_all(&copy) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::Write {
                path: copy,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    fn mirror_copy(&self, name: &RepoName) -> PathBuf {
        self.root
            .parent()
            .unwrap_or(&self.root)
            .join(MIRRORS_DIR)
            .join(format!("{name}.git"))
    }

    /// A fresh directory for one import's clone.
    fn import_dir(&self) -> Result<PathBuf, StorageError> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| StorageError::Randomness(e.to_string()))?;
        let dir = self.imports_root().join(hex::encode(random));
        fs::create_dir_all(self.imports_root()).map_err(|source| StorageError::Write {
            path: self.imports_root(),
            source,
        })?;
        Ok(dir)
    }

    /// Where import clones go.
    pub(super) fn imports_root(&self) -> PathBuf {
        self.root.parent().unwrap_or(&self.root).join(IMPORTS_DIR)
    }
}

/// The branches and tags of `upstream` into the bare repository `copy` (made the first
/// time), pruned of those upstream deleted; git's own reason on failure.
fn fetch_upstream(upstream: &str, copy: &Path) -> Result<(), String> {
    if !copy.join("HEAD").exists() {
        fs::create_dir_all(copy).map_err(|e| format!("cannot create {}: {e}", copy.display()))?;
        run_git(
            guts_git::command()
                .args(["init", "--bare", "--quiet"])
                .arg(copy),
        )?;
    }
    let mut fetch = guts_git::in_dir(copy);
    guts_git::allow_import_transports(&mut fetch);
    run_git(fetch.args([
        "fetch",
        "--prune",
        "--no-tags",
        "--quiet",
        "--",
        upstream,
        "+refs/heads/*:refs/heads/*",
        "+refs/tags/*:refs/tags/*",
    ]))
}

/// Runs `command`; git's own reason on failure, one line.
fn run_git(command: &mut std::process::Command) -> Result<(), String> {
    let out = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(if lines.is_empty() {
        format!("git: {}", out.status)
    } else {
        lines.join("; ")
    })
}

/// `git clone --mirror from into`, git's own reason on failure.
fn clone_mirror(from: &str, into: &Path) -> Result<(), String> {
    let mut command = guts_git::command();
    guts_git::allow_import_transports(&mut command);
    run_git(
        command
            .args(["clone", "--mirror", "--quiet", "--no-hardlinks", "--", from])
            .arg(into),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_paths_and_names() {
        for (text, url) in [
            ("https://example.com/a/tokio.git", true),
            ("git://host/x", true),
            ("git@github.com:rust-lang/cargo.git", true),
            ("/srv/repos/x.git", false),
            ("./a:b", false),
        ] {
            assert_eq!(
                matches!(ImportSource::parse(text), ImportSource::Url(_)),
                url,
                "{text}"
            );
        }
        let name = |t: &str| ImportSource::parse(t).default_name().map(|n| n.to_string());
        assert_eq!(
            name("https://example.com/a/tokio.git/").as_deref(),
            Some("tokio")
        );
        assert_eq!(
            name("git@github.com:rust-lang/cargo.git").as_deref(),
            Some("cargo")
        );
        assert_eq!(name("/tmp/project.bundle").as_deref(), Some("project"));
    }
}
