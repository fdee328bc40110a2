//! Identifiers: repositories, repository names, git object ids, ref names.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_DNSSEC;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes in a [`RepositoryId`].
pub const REPOSITORY_ID_LEN: usize = 20;

/// A repository's id: a hash of its owner's public key and its name, so only that key
/// can sign refs a node will accept for it. Prints as 32 lowercase base32 characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RepositoryId([u8; REPOSITORY_ID_LEN]);

/// Why a string is not a [`RepositoryId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid repository id {input:?}: {reason}")]
pub struct RepositoryIdError {
    /// The string given.
    pub input: String,
    /// What is wrong.
    pub reason: String,
}

impl RepositoryId {
    /// The id of the repository `name` owned by the ed25519 key `owner`.
    pub fn derive(owner: &[u8; 32], name: &RepoName) -> Self {
        let digest = Sha256::new()
            .chain_update(b"guts/repository-id/v1\0")
            .chain_update(owner)
            .chain_update(name.as_str().as_bytes())
            .finalize();
        let mut id = [0u8; REPOSITORY_ID_LEN];
        id.copy_from_slice(&digest[..REPOSITORY_ID_LEN]);
        RepositoryId(id)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; REPOSITORY_ID_LEN] {
        &self.0
    }

    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; REPOSITORY_ID_LEN]) -> Self {
        RepositoryId(bytes)
    }

    /// The key under which holders announce themselves as Kademlia providers.
    pub fn provider_key(&self) -> Vec<u8> {
        let mut key = b"/guts/repo/".to_vec();
        key.extend_from_slice(&self.0);
        key
    }
}

impl fmt::Display for RepositoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE32_DNSSEC.encode(&self.0))
    }
}

impl fmt::Debug for RepositoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepositoryId({self})")
    }
}

impl FromStr for RepositoryId {
    type Err = RepositoryIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| RepositoryIdError {
            input: s.to_owned(),
            reason,
        };
        let text = s.trim();
        let expected = BASE32_DNSSEC.encode_len(REPOSITORY_ID_LEN);
        if text.len() != expected {
            return Err(err(format!(
                "it is {} characters long; a repository id has {expected}",
                text.len()
            )));
        }
        if let Some(c) = text.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='v')) {
            return Err(err(format!(
                "it has {c:?}; a repository id uses only 0-9 and a-v"
            )));
        }
        let bytes = BASE32_DNSSEC
            .decode(text.as_bytes())
            .map_err(|e| err(e.to_string()))?;
        let bytes = <[u8; REPOSITORY_ID_LEN]>::try_from(bytes.as_slice())
            .map_err(|_| err("wrong length".into()))?;
        Ok(RepositoryId(bytes))
    }
}

/// Longest repository name.
pub const MAX_REPO_NAME_LEN: usize = 100;

/// A repository's name, part of its id: `[A-Za-z0-9._-]`, 1 to 100 characters, not
/// starting with `.` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoName(String);

/// Why a string is not a valid name (of a repository or a ref).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct NameError {
    /// "repository name" or "ref name".
    pub what: &'static str,
    /// The string given.
    pub input: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl RepoName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| NameError {
            what: "repository name",
            input: s.to_owned(),
            reason,
        };
        if s.is_empty() || s.len() > MAX_REPO_NAME_LEN {
            return Err(err("use 1 to 100 characters"));
        }
        if s.starts_with('.') || s.starts_with('-') {
            return Err(err("it must not start with '.' or '-'"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(err("use only letters, digits, '.', '_' and '-'"));
        }
        Ok(RepoName(s.to_owned()))
    }
}

impl TryFrom<String> for RepoName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<RepoName> for String {
    fn from(n: RepoName) -> String {
        n.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A git object id (SHA-1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectId(pub [u8; 20]);

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self})")
    }
}

impl FromStr for ObjectId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s).map_err(|e| format!("invalid object id {s:?}: {e}"))?;
        <[u8; 20]>::try_from(bytes.as_slice())
            .map(ObjectId)
            .map_err(|_| format!("invalid object id {s:?}: expected 40 hex digits"))
    }
}

/// Longest ref name accepted.
pub const MAX_REF_NAME_LEN: usize = 255;

/// A branch or tag: `refs/heads/<name>` or `refs/tags/<name>`, valid by git's rules
/// (`git check-ref-format`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RefName(String);

impl RefName {
    /// The full name, e.g. `refs/heads/main`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RefName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| NameError {
            what: "ref name",
            input: s.to_owned(),
            reason,
        };
        let rest = s
            .strip_prefix("refs/heads/")
            .or_else(|| s.strip_prefix("refs/tags/"))
            .ok_or_else(|| err("only refs/heads/* and refs/tags/* are replicated"))?;
        if rest.is_empty() || s.len() > MAX_REF_NAME_LEN {
            return Err(err(
                "the name after refs/heads/ or refs/tags/ must be 1 to 240 characters",
            ));
        }
        if s.contains("..")
            || s.contains("@{")
            || s.contains("//")
            || s.ends_with('/')
            || s.ends_with('.')
        {
            return Err(err("it contains '..', '@{', '//', or ends with '/' or '.'"));
        }
        // Beyond git's rules: C1 controls (U+0080-U+009F) and bidirectional overrides,
        // which git passes to terminals as they are, are refused like C0 controls.
        if s.chars()
            .any(|c| c.is_control() || is_bidi_control(c) || " ~^:?*[\\".contains(c))
        {
            return Err(err(
                "it contains a space, a control character or one of ~^:?*[\\",
            ));
        }
        if rest
            .split('/')
            .any(|part| part.starts_with('.') || part.ends_with(".lock") || part.is_empty())
        {
            return Err(err("a component starts with '.' or ends with '.lock'"));
        }
        if rest == "@" {
            return Err(err("'@' is not a valid name"));
        }
        Ok(RefName(s.to_owned()))
    }
}

/// Characters that reorder how text around them is shown (so a name can read as another).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl TryFrom<String> for RefName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<RefName> for String {
    fn from(n: RefName) -> String {
        n.0
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_ids_print_short_and_parse_back() {
        let id = RepositoryId::derive(&[7; 32], &"hello".parse().unwrap());
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<RepositoryId>().unwrap(), id);
        assert_ne!(
            id,
            RepositoryId::derive(&[8; 32], &"hello".parse().unwrap()),
            "bound to the key"
        );
        assert_ne!(
            id,
            RepositoryId::derive(&[7; 32], &"hello2".parse().unwrap()),
            "bound to the name"
        );
    }

    #[test]
    fn bad_repository_ids_are_named() {
        for bad in ["", "abc", &"z".repeat(32), &"A".repeat(32)] {
            let err = bad.parse::<RepositoryId>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn ref_names_follow_git_rules() {
        for ok in [
            "refs/heads/main",
            "refs/tags/v1.0",
            "refs/heads/feature/x-y_z",
            "refs/heads/caf\u{e9}",
            "refs/tags/\u{65e5}\u{672c}",
        ] {
            ok.parse::<RefName>().unwrap();
        }
        for bad in [
            "HEAD",
            "refs/remotes/origin/main",
            "refs/heads/",
            "refs/heads/a..b",
            "refs/heads/a b",
            "refs/heads/.hidden",
            "refs/heads/x.lock",
            "refs/heads/a//b",
            "refs/heads/a@{1}",
            "refs/heads/a~1",
            "refs/heads/@",
            "refs/heads/end.",
            "refs/heads/tab\there",
            "refs/heads/del\u{7f}",
            "refs/heads/c1\u{9b}31m",
            "refs/heads/c1\u{85}",
            "refs/tags/v1\u{202e}4pm",
            "refs/heads/iso\u{2066}x",
        ] {
            assert!(bad.parse::<RefName>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn repo_names() {
        "guts-core_1.0".parse::<RepoName>().unwrap();
        for bad in ["", ".git", "-x", "a/b", "a b", &"x".repeat(101)] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad}");
        }
    }
}
