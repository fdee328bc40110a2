//! Reading a repository for the pages: refs, trees, files, history and a commit's diff,
//! each bounded (a page never holds more than a screenful of history or a file past
//! [`MAX_SHOWN`]), straight from the store with libgit2.

use std::path::Path;

use git2::{DiffFormat, DiffOptions, ObjectType, Oid, Repository, Sort};

/// Largest file shown; a larger one is described, not shown.
pub const MAX_SHOWN: usize = 512 * 1024;
/// Largest diff text shown for one commit.
pub const MAX_DIFF: usize = 1024 * 1024;
/// Commits on one page of history.
pub const PAGE: usize = 50;

/// Why a page cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    /// No such ref, commit, path or object: the page is "not found".
    #[error("{0}")]
    NotFound(String),
    /// The store could not be read.
    #[error("reading the repository: {0}")]
    Git(#[from] git2::Error),
}

/// A commit a page names: the ref it was reached by (if any) and its id.
#[derive(Debug, Clone)]
pub struct At {
    /// The branch or tag's short name, or the commit id as given.
    pub name: String,
    /// The commit.
    pub commit: Oid,
}

/// One entry of a tree.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// Whether it is a directory (a tree).
    pub dir: bool,
    /// Whether it is a submodule (a commit in the tree).
    pub submodule: bool,
}

/// A file's content as a page shows it.
#[derive(Debug, Clone)]
pub enum FileView {
    /// Text, whole.
    Text(String),
    /// Not shown: binary.
    Binary(usize),
    /// Not shown: larger than [`MAX_SHOWN`].
    TooLarge(usize),
}

/// One commit in a list.
#[derive(Debug, Clone)]
pub struct CommitLine {
    /// Its id.
    pub id: Oid,
    /// Its first line.
    pub summary: String,
    /// Its author's name.
    pub author: String,
    /// Its author time, seconds since the epoch.
    pub time: i64,
}

/// A commit with its diff against its first parent.
#[derive(Debug, Clone)]
pub struct CommitView {
    /// Its line in a list.
    pub line: CommitLine,
    /// Its whole message.
    pub message: String,
    /// Its parents.
    pub parents: Vec<Oid>,
    /// The unified diff (cut at [`MAX_DIFF`]).
    pub diff: String,
    /// Whether the diff was cut.
    pub cut: bool,
}

/// Branches or tags: short names with their commits, sorted by name.
pub type Named = Vec<(String, Oid)>;

/// A repository opened for reading.
pub struct Browser {
    repo: Repository,
}

impl Browser {
    /// Opens the bare repository at `path`.
    pub fn open(path: &Path) -> Result<Browser, BrowseError> {
        Ok(Browser {
            repo: Repository::open_bare(path)?,
        })
    }

    /// The branches and the tags.
    pub fn refs(&self) -> Result<(Named, Named), BrowseError> {
        let mut branches = Vec::new();
        let mut tags = Vec::new();
        for r in self.repo.references()?.flatten() {
            let (Ok(name), Ok(commit)) = (r.name(), r.peel_to_commit()) else {
                continue;
            };
            if let Some(short) = name.strip_prefix("refs/heads/") {
                branches.push((short.to_owned(), commit.id()));
            } else if let Some(short) = name.strip_prefix("refs/tags/") {
                tags.push((short.to_owned(), commit.id()));
            }
        }
        branches.sort();
        tags.sort();
        Ok((branches, tags))
    }

    /// The branch HEAD names, if it is one.
    pub fn head(&self) -> Option<String> {
        let head = self.repo.find_reference("HEAD").ok()?;
        let target = head.symbolic_target().ok().flatten()?;
        target.strip_prefix("refs/heads/").map(str::to_owned)
    }

    /// Splits `segments` (a URL path after the page's name) into the commit they start
    /// with (the longest branch or tag name, else a full commit id) and the path after.
    pub fn resolve(&self, segments: &[&str]) -> Result<(At, Vec<String>), BrowseError> {
        for n in (1..=segments.len()).rev() {
            let name = segments[..n].join("/");
            for prefix in ["refs/heads/", "refs/tags/"] {
                if let Ok(r) = self.repo.find_reference(&format!("{prefix}{name}"))
                    && let Ok(commit) = r.peel_to_commit()
                {
                    let path = clean_path(&segments[n..])?;
                    return Ok((
                        At {
                            name,
                            commit: commit.id(),
                        },
                        path,
                    ));
                }
            }
        }
        let first = segments.first().copied().unwrap_or_default();
        let id = (first.len() == 40)
            .then(|| Oid::from_str(first).ok())
            .flatten()
            .ok_or_else(|| BrowseError::NotFound(format!("no branch, tag or commit {first}")))?;
        let commit = self
            .repo
            .find_commit(id)
            .map_err(|_| BrowseError::NotFound(format!("no commit {first}")))?;
        Ok((
            At {
                name: first.to_owned(),
                commit: commit.id(),
            },
            clean_path(&segments[1..])?,
        ))
    }

    /// The entries of the directory `path` at `at`, directories first.
    pub fn tree(&self, at: &At, path: &[String]) -> Result<Vec<Entry>, BrowseError> {
        let root = self.repo.find_commit(at.commit)?.tree()?;
        let tree = if path.is_empty() {
            root
        } else {
            let entry = root
                .get_path(Path::new(&path.join("/")))
                .map_err(|_| not_found(path))?;
            if entry.kind() != Some(ObjectType::Tree) {
                return Err(not_found(path));
            }
            self.repo.find_tree(entry.id())?
        };
        let mut entries: Vec<Entry> = tree
            .iter()
            .map(|e| Entry {
                name: String::from_utf8_lossy(e.name_bytes()).into_owned(),
                dir: e.kind() == Some(ObjectType::Tree),
                submodule: e.kind() == Some(ObjectType::Commit),
            })
            .collect();
        entries.sort_by(|a, b| b.dir.cmp(&a.dir).then_with(|| a.name.cmp(&b.name)));
        Ok(entries)
    }

    /// Whether `path` at `at` is a directory.
    pub fn is_dir(&self, at: &At, path: &[String]) -> Result<bool, BrowseError> {
        if path.is_empty() {
            return Ok(true);
        }
        let root = self.repo.find_commit(at.commit)?.tree()?;
        let entry = root
            .get_path(Path::new(&path.join("/")))
            .map_err(|_| not_found(path))?;
        Ok(entry.kind() == Some(ObjectType::Tree))
    }

    /// The file `path` at `at`.
    pub fn file(&self, at: &At, path: &[String]) -> Result<FileView, BrowseError> {
        let root = self.repo.find_commit(at.commit)?.tree()?;
        let entry = root
            .get_path(Path::new(&path.join("/")))
            .map_err(|_| not_found(path))?;
        if entry.kind() != Some(ObjectType::Blob) {
            return Err(not_found(path));
        }
        // The size from the header: a huge blob is never read whole for a page.
        let odb = self.repo.odb()?;
        let (size, _) = odb.read_header(entry.id())?;
        if size > MAX_SHOWN {
            return Ok(FileView::TooLarge(size));
        }
        let blob = self.repo.find_blob(entry.id())?;
        let bytes = blob.content();
        if blob.is_binary() {
            return Ok(FileView::Binary(bytes.len()));
        }
        Ok(FileView::Text(String::from_utf8_lossy(bytes).into_owned()))
    }

    /// Up to [`PAGE`] commits of history from `at`, newest first, after skipping `skip`;
    /// and whether there are more.
    pub fn log(&self, at: &At, skip: usize) -> Result<(Vec<CommitLine>, bool), BrowseError> {
        let mut walk = self.repo.revwalk()?;
        // libgit2's default order, git log's (newest first as commits are met): it
        // streams, where a time or topological sort walks the whole history first.
        walk.set_sorting(Sort::NONE)?;
        walk.push(at.commit)?;
        let mut lines = Vec::with_capacity(PAGE);
        let mut more = false;
        for id in walk.skip(skip) {
            if lines.len() == PAGE {
                more = true;
                break;
            }
            let commit = self.repo.find_commit(id?)?;
            lines.push(line(&commit));
        }
        Ok((lines, more))
    }

    /// Commit `id` with its diff against its first parent (against nothing for a root).
    pub fn commit(&self, id: &str) -> Result<CommitView, BrowseError> {
        let oid = (id.len() == 40)
            .then(|| Oid::from_str(id).ok())
            .flatten()
            .ok_or_else(|| BrowseError::NotFound(format!("no commit {id}")))?;
        let commit = self
            .repo
            .find_commit(oid)
            .map_err(|_| BrowseError::NotFound(format!("no commit {id}")))?;
        let tree = commit.tree()?;
        let parent = commit.parents().next().map(|p| p.tree()).transpose()?;
        let mut options = DiffOptions::new();
        options.context_lines(3);
        let diff = self
            .repo
            .diff_tree_to_tree(parent.as_ref(), Some(&tree), Some(&mut options))?;
        let mut text = String::new();
        let mut cut = false;
        diff.print(DiffFormat::Patch, |_, _, l| {
            if text.len() >= MAX_DIFF {
                cut = true;
                return false;
            }
            if matches!(l.origin(), '+' | '-' | ' ') {
                text.push(l.origin());
            }
            text.push_str(&String::from_utf8_lossy(l.content()));
            true
        })
        .or_else(|e| if cut { Ok(()) } else { Err(e) })?;
        Ok(CommitView {
            line: line(&commit),
            message: String::from_utf8_lossy(commit.message_bytes()).into_owned(),
            parents: commit.parent_ids().collect(),
            diff: text,
            cut,
        })
    }
}

fn line(commit: &git2::Commit<'_>) -> CommitLine {
    CommitLine {
        id: commit.id(),
        summary: String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default()).into_owned(),
        author: String::from_utf8_lossy(commit.author().name_bytes()).into_owned(),
        time: commit.author().when().seconds(),
    }
}

fn not_found(path: &[String]) -> BrowseError {
    BrowseError::NotFound(format!("no {} there", path.join("/")))
}

/// A path from URL segments: no empty, `.` or `..` component (nothing climbs out).
fn clean_path(segments: &[&str]) -> Result<Vec<String>, BrowseError> {
    segments
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| match *s {
            "." | ".." => Err(BrowseError::NotFound(format!("no path component {s}"))),
            s => Ok(s.to_owned()),
        })
        .collect()
}
