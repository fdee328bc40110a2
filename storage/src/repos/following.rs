//! The repositories this node follows, kept in a file in the data dir.

use std::fs;
use std::io;

use guts_protocol::RepositoryId;

use super::Repositories;
use crate::StorageError;
use crate::fs::write_atomically;

impl Repositories {
    /// Adds `id` to the repositories this node follows (fetches and keeps up to date).
    pub fn follow(&self, id: &RepositoryId) -> Result<bool, StorageError> {
        let mut ids = self.followed()?;
        if ids.contains(id) {
            return Ok(false);
        }
        ids.push(*id);
        let text: String = ids.iter().map(|i| format!("{i}\n")).collect();
        write_atomically(&self.following, text.as_bytes()).map_err(|source| {
            StorageError::Write {
                path: self.following.clone(),
                source,
            }
        })?;
        Ok(true)
    }

    /// The repositories this node follows.
    pub fn followed(&self) -> Result<Vec<RepositoryId>, StorageError> {
        let text = match fs::read_to_string(&self.following) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StorageError::Read {
                    path: self.following.clone(),
                    source,
                });
            }
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.parse()
                    .map_err(
                        |e: guts_protocol::ids::RepositoryIdError| StorageError::Corrupt {
                            path: self.following.clone(),
                            reason: e.to_string(),
                        },
                    )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use guts_protocol::RepositoryId;

    use crate::repos::test_support::store;

    #[test]
    fn follows_persist() {
        let (_d, repos) = store();
        let id = RepositoryId::from_bytes([4; 20]);
        assert!(repos.follow(&id).unwrap());
        assert!(!repos.follow(&id).unwrap());
        assert_eq!(repos.followed().unwrap(), vec![id]);
    }
}
