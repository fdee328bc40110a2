//! Runs the terminal transcripts of the documentation (`console` blocks of README.md and
//! docs/*.md) as written and checks what they print, as trycmd does for its `.md` cases.
//!
//! # Conventions
//!
//! - A fenced block whose language is `console` is a terminal transcript and runs. `sh`,
//!   `bash`, `shell`, `zsh` and `shell-session` blocks are refused, so no command escapes
//!   testing: write a `console` block, or mark the block `text`. Other blocks are ignored.
//! - Attributes after `console`, space separated: `shell=NAME` (default `main`; each shell
//!   is one `bash` for the whole page, so `cd`, `export`, variables and functions carry over
//!   between its blocks, not to other shells), `skip="reason"` (not run; reported),
//!   `running` (the last command keeps running, like a node in the foreground of its
//!   terminal: the page goes on once it has printed the expected lines, and it gets Ctrl-C
//!   at the end of the page; its shell takes no more commands), `timeout=30m` (per command,
//!   default 5 minutes).
//! - `$ ` starts a command; a line ending in `\` continues it. The lines up to the next
//!   `$ ` are what it prints, stdout and stderr merged, compared as snapbox does: `[..]`
//!   matches within a line, a `...` line any number of lines. No lines: it prints nothing.
//!   ANSI colours, progress lines overwritten with `\r` and trailing whitespace do not count.
//! - A command must exit 0, unless its output ends with `? N` (status N) or `? failed` (any
//!   non-zero status).
//! - `<name>` (`[a-z][a-z0-9-]*`) in expected output captures one word the first time and
//!   must print the same value afterwards; in a command it is replaced by its value (from an
//!   earlier output of the page, or given by the test with [`Runner::bind`]).
//! - Shells start in the runner's directory with exactly the runner's environment; commands
//!   read stdin from /dev/null. A command runs sourced from a file, so bash's own errors
//!   name that file (`/tmp/…/command-3.sh: line 1: x: command not found`): match with `[..]`.
//!
//! [`Page`] parses and checks a page, [`Runner`] runs it, [`linked_pages`] finds the pages
//! README leads to.

mod output;
mod page;
mod runner;
mod shell;

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{Event, Parser, Tag};

pub use page::{Block, Command, ExpectedStatus, Page};
pub use runner::{DocFailure, FailureKind, Ran, Report, Runner, Skipped, default_env};

/// A line of a page, shown as `README.md:42`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The page's path as shown in messages (relative to the repository when inside it).
    pub page: String,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.page, self.line)
    }
}

/// A page that cannot be read or breaks the conventions: found before anything runs.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{at}: {message}")]
    Convention { at: Location, message: String },
    #[error("{at}: link to `{target}`, which does not exist ({})", resolved.display())]
    MissingLink {
        at: Location,
        target: String,
        resolved: PathBuf,
    },
}

/// Markdown as GitHub renders it (tables and friends change what is a code block).
fn markdown_options() -> pulldown_cmark::Options {
    use pulldown_cmark::Options;
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
}

/// 1-based line numbers of byte offsets of a text.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        Self(text.match_indices('\n').map(|(i, _)| i).collect())
    }

    fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|&newline| newline < offset) + 1
    }
}

/// `path` as messages show it: relative to the repository root when inside it.
fn display_name(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent();
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match root.and_then(|root| absolute.strip_prefix(root).ok()) {
        Some(relative) => relative.display().to_string(),
        None => path.display().to_string(),
    }
}

fn read_page(path: &Path) -> Result<String, DocError> {
    std::fs::read_to_string(path).map_err(|source| DocError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The pages `readme` leads to: relative links to `.md` files inside its directory (the
/// repository), followed transitively, breadth first, each once, without `readme` itself.
/// Links to other sites, to anchors and out of the repository are not followed; a link to a
/// page that does not exist is an error, so the walk cannot silently miss a page.
pub fn linked_pages(readme: &Path) -> Result<Vec<PathBuf>, DocError> {
    let readme = lexical(
        &std::path::absolute(readme).map_err(|source| DocError::Read {
            path: readme.to_path_buf(),
            source,
        })?,
    );
    let root = readme.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut seen = HashSet::from([readme.clone()]);
    let mut queue = VecDeque::from([readme]);
    let mut pages = Vec::new();
    while let Some(page) = queue.pop_front() {
        let text = read_page(&page)?;
        let lines = Lines::new(&text);
        let dir = page.parent().unwrap_or(&root);
        for (event, range) in Parser::new_ext(&text, markdown_options()).into_offset_iter() {
            let Event::Start(Tag::Link { dest_url, .. }) = event else {
                continue;
            };
            let Some(target) = local_page(&dest_url) else {
                continue;
            };
            let resolved = lexical(&dir.join(target));
            if !resolved.starts_with(&root) || !seen.insert(resolved.clone()) {
                continue;
            }
            if !resolved.is_file() {
                return Err(DocError::MissingLink {
                    at: Location {
                        page: display_name(&page),
                        line: lines.of(range.start),
                    },
                    target: dest_url.to_string(),
                    resolved,
                });
            }
            pages.push(resolved.clone());
            queue.push_back(resolved);
        }
    }
    Ok(pages)
}

/// The file part of a relative link to a markdown page (`docs/x.md#part` gives `docs/x.md`).
fn local_page(url: &str) -> Option<&str> {
    let path = url.split(['#', '?']).next()?;
    let scheme = path
        .find(':')
        .is_some_and(|colon| !path[..colon].contains('/'));
    let markdown = path.len() > 3 && path[path.len() - 3..].eq_ignore_ascii_case(".md");
    (markdown && !scheme && !path.starts_with('/')).then_some(path)
}

/// `path` without `.` and `..` components (links are resolved as GitHub does, not through
/// symlinks).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
