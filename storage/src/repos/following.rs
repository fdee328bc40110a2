//! The repositories this node follows, kept in a file in the data dir: one id per line,
//! appended to (so a follow costs one short write however long the list), and read once.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::MutexGuard;

use guts_protocol::RepositoryId;

use super::{FollowList, Repositories};
use crate::StorageError;

impl Repositories {
    /// The follow list, loaded from its file on first use.
    fn follow_list(&self) -> Result<MutexGuard<'_, Option<FollowList>>, StorageError> {
        let mut guard = self.follows.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.read_follow_file()?);
        }
        Ok(guard)
    }

    fn read_follow_file(&self) -> Result<FollowList, StorageError> {
        let text = match fs::read_to_string(&self.following) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FollowList::default()),
            Err(source) => {
                return Err(StorageError::Read {
                    path: self.following.clone(),
                    source,
                });
            }
        };
        let mut list = FollowList::default();
        let complete = text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            match line.parse::<RepositoryId>() {
                Ok(id) => {
                    if list.set.insert(id) {
                        list.order.push(id);
                    }
                }
                // A crash in the middle of an append leaves a cut last line: that follow
                // did not happen.
                Err(_) if n + 1 == lines.len() && !complete => {
                    tracing::warn!(
                        "ignoring an unfinished last line of {}",
                        self.following.display()
                    );
                }
                Err(e) => {
                    return Err(StorageError::Corrupt {
                        path: self.following.clone(),
                        reason: format!("line {}: {e}", n + 1),
                    });
                }
            }
        }
        Ok(list)
    }

    /// Adds `id` to the repositories this node follows (fetches and keeps up to date).
    /// Returns false if it was followed already.
    pub fn follow(&self, id: &RepositoryId) -> Result<bool, StorageError> {
        let mut guard = self.follow_list()?;
        let list = guard.get_or_insert_with(FollowList::default);
        if list.set.contains(id) {
            return Ok(false);
        }
        let write = |path: &std::path::Path| -> io::Result<()> {
            let mut file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(path)?;
            // A line cut by an earlier crash (ignored when the list was read) goes first.
            let len = file.metadata()?.len();
            if len > 0 {
                let mut last = [0u8];
                file.seek(SeekFrom::Start(len - 1))?;
                file.read_exact(&mut last)?;
                if last[0] != b'\n' {
                    let text = fs::read(path)?;
                    let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                    file.set_len(whole as u64)?;
                }
            }
            file.write_all(format!("{id}\n").as_bytes())?;
            fail::fail_point!("follow-written");
            file.sync_data()
        };
        write(&self.following).map_err(|source| StorageError::Write {
            path: self.following.clone(),
            source,
        })?;
        list.set.insert(*id);
        list.order.push(*id);
        Ok(true)
    }

    /// Stops following `id`: the file is written again without it (a new file renamed
    /// over the old, so a crash leaves one or the other). Returns false if it was not
    /// followed.
    pub fn unfollow(&self, id: &RepositoryId) -> Result<bool, StorageError> {
        let mut guard = self.follow_list()?;
        let list = guard.get_or_insert_with(FollowList::default);
        if !list.set.contains(id) {
            return Ok(false);
        }
        let kept: Vec<RepositoryId> = list.order.iter().filter(|i| *i != id).copied().collect();
        let text: String = kept.iter().map(|i| format!("{i}\n")).collect();
        let tmp = self.following.with_extension("new");
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_data()?;
            fs::rename(&tmp, &self.following)
        };
        write().map_err(|source| StorageError::Write {
            path: self.following.clone(),
            source,
        })?;
        list.set.remove(id);
        list.order = kept;
        Ok(true)
    }

    /// The repositories this node follows, in the order they were followed.
    pub fn followed(&self) -> Result<Vec<RepositoryId>, StorageError> {
        Ok(self
            .follow_list()?
            .as_ref()
            .map(|l| l.order.clone())
            .unwrap_or_default())
    }

    /// Whether this node follows `id`.
    pub fn is_followed(&self, id: &RepositoryId) -> Result<bool, StorageError> {
        Ok(self
            .follow_list()?
            .as_ref()
            .is_some_and(|l| l.set.contains(id)))
    }

    /// How many repositories this node follows.
    pub fn follow_count(&self) -> Result<usize, StorageError> {
        Ok(self.follow_list()?.as_ref().map_or(0, |l| l.order.len()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use guts_protocol::RepositoryId;

    use crate::repos::Repositories;
    use crate::repos::test_support::store;

    #[test]
    fn follows_persist() {
        let (dir, repos) = store();
        let id = RepositoryId::from_bytes([4; 20]);
        assert!(repos.follow(&id).unwrap());
        assert!(!repos.follow(&id).unwrap());
        assert_eq!(repos.followed().unwrap(), vec![id]);
        // A new store over the same data dir reads them back.
        let reopened = Repositories::new(dir.path());
        assert_eq!(reopened.followed().unwrap(), vec![id]);
        assert!(reopened.is_followed(&id).unwrap());
        assert_eq!(reopened.follow_count().unwrap(), 1);
    }

    #[test]
    fn an_unfollow_is_kept_and_leaves_the_others() {
        let (dir, repos) = store();
        let [a, b, c] = [1u8, 2, 3].map(|n| RepositoryId::from_bytes([n; 20]));
        for id in [a, b, c] {
            repos.follow(&id).unwrap();
        }
        assert!(repos.unfollow(&b).unwrap());
        assert!(!repos.unfollow(&b).unwrap());
        assert_eq!(repos.followed().unwrap(), vec![a, c]);
        let reopened = Repositories::new(dir.path());
        assert_eq!(reopened.followed().unwrap(), vec![a, c]);
        // Following again after an unfollow appends as usual.
        assert!(reopened.follow(&b).unwrap());
        assert_eq!(
            Repositories::new(dir.path()).followed().unwrap(),
            vec![a, c, b]
        );
    }

    #[test]
    fn concurrent_follows_are_all_kept() {
        let (dir, repos) = store();
        let repos = Arc::new(repos);
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let repos = repos.clone();
                std::thread::spawn(move || {
                    for i in 0..25u8 {
                        let mut bytes = [0u8; 20];
                        bytes[0] = t;
                        bytes[1] = i;
                        repos.follow(&RepositoryId::from_bytes(bytes)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(Repositories::new(dir.path()).follow_count().unwrap(), 200);
    }

    #[test]
    fn a_cut_last_line_is_dropped_and_the_next_follow_starts_a_new_line() {
        let (dir, repos) = store();
        let a = RepositoryId::from_bytes([1; 20]);
        let b = RepositoryId::from_bytes([2; 20]);
        repos.follow(&a).unwrap();
        let path = dir.path().join("following");
        let cut = &b.to_string()[..10];
        std::fs::write(&path, format!("{a}\n{cut}")).unwrap();
        let reopened = Repositories::new(dir.path());
        assert_eq!(reopened.followed().unwrap(), vec![a]);
        reopened.follow(&b).unwrap();
        assert_eq!(
            Repositories::new(dir.path()).followed().unwrap(),
            vec![a, b]
        );
    }

    #[test]
    fn a_corrupt_line_inside_the_file_is_an_error_naming_it() {
        let (dir, repos) = store();
        std::fs::write(dir.path().join("following"), "not-an-id\n").unwrap();
        let err = repos.followed().unwrap_err().to_string();
        assert!(err.contains("following") && err.contains("line 1"), "{err}");
    }
}
