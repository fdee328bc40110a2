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
    fn default_name(&self) -> Option<RepoName> {
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

/// `git clone --mirror from into`, git's own reason on failure.
fn clone_mirror(from: &str, into: &Path) -> Result<(), String> {
    let mut command = guts_git::command();
    guts_git::allow_import_transports(&mut command);
    let out = command
        .args(["clone", "--mirror", "--quiet", "--no-hardlinks", "--", from])
        .arg(into)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said.trim();
    Err(if said.is_empty() {
        format!("git clone: {}", out.status)
    } else {
        said.lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    })
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
