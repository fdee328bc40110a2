//! A markdown page's `console` blocks, parsed and checked against the conventions.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};

use super::{DocError, Lines, Location, display_name, markdown_options, read_page};

/// Fence languages of commands that would run untested: they must be `console` blocks.
const SHELL_LANGUAGES: [&str; 5] = ["sh", "bash", "shell", "zsh", "shell-session"];

/// A documentation page: its `console` blocks in order, checked against the conventions
/// of [`super`] when loaded (before anything runs).
#[derive(Clone, Debug)]
pub struct Page {
    path: PathBuf,
    name: String,
    blocks: Vec<Block>,
}

/// A `console` block.
#[derive(Clone, Debug)]
pub struct Block {
    /// The line of the opening fence.
    pub line: usize,
    pub shell: String,
    /// Why the block is not run.
    pub skip: Option<String>,
    /// The last command keeps running; the page goes on once it printed its output.
    pub running: bool,
    pub timeout: Option<Duration>,
    pub commands: Vec<Command>,
}

/// A `$ ` command and what it must print.
#[derive(Clone, Debug)]
pub struct Command {
    /// The line of the `$ ` prompt.
    pub line: usize,
    /// As written, continuation lines included, without the prompt.
    pub text: String,
    /// Lines without trailing whitespace, without trailing empty lines and the status line.
    pub expected: String,
    pub status: ExpectedStatus,
}

/// The exit status a command must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedStatus {
    Success,
    /// `? N`
    Code(i32),
    /// `? failed`: any non-zero status.
    Failure,
}

impl ExpectedStatus {
    pub fn accepts(self, status: i32) -> bool {
        match self {
            Self::Success => status == 0,
            Self::Code(code) => status == code,
            Self::Failure => status != 0,
        }
    }
}

impl fmt::Display for ExpectedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Success => write!(f, "0"),
            Self::Code(code) => write!(f, "{code}"),
            Self::Failure => write!(f, "non-zero"),
        }
    }
}

impl Page {
    /// Reads and parses a page; its name in messages is its path relative to the repository.
    pub fn load(path: impl AsRef<Path>) -> Result<Page, DocError> {
        let path = path.as_ref();
        let text = read_page(path)?;
        let mut page = Self::parse(display_name(path), &text)?;
        page.path = path.to_path_buf();
        Ok(page)
    }

    /// Parses markdown `text`, calling the page `name` in messages.
    pub fn parse(name: impl Into<String>, text: &str) -> Result<Page, DocError> {
        let name = name.into();
        let lines = Lines::new(text);
        let mut blocks = Vec::new();
        let mut open: Option<(String, usize, String)> = None;
        for (event, range) in Parser::new_ext(text, markdown_options()).into_offset_iter() {
            match event {
                Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                    open = Some((info.to_string(), lines.of(range.start), String::new()));
                }
                Event::Text(content) => {
                    if let Some((_, _, body)) = &mut open {
                        body.push_str(&content);
                    }
                }
                Event::End(TagEnd::CodeBlock) => {
                    if let Some((info, line, body)) = open.take() {
                        let at = Location {
                            page: name.clone(),
                            line,
                        };
                        blocks.extend(parse_block(&info, &body, at)?);
                    }
                }
                _ => {}
            }
        }
        check_busy_shells(&name, &blocks)?;
        Ok(Page {
            path: PathBuf::from(&name),
            name,
            blocks,
        })
    }

    /// The page as messages show it (`README.md`, `docs/quickstart.md`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }
}

fn convention(at: &Location, line: usize, message: impl Into<String>) -> DocError {
    DocError::Convention {
        at: Location {
            page: at.page.clone(),
            line,
        },
        message: message.into(),
    }
}

/// A `console` block of a fenced block with info string `info`; `None` for other languages.
fn parse_block(info: &str, body: &str, at: Location) -> Result<Option<Block>, DocError> {
    let info = info.trim();
    let (language, attributes) = info.split_once(char::is_whitespace).unwrap_or((info, ""));
    if SHELL_LANGUAGES
        .iter()
        .any(|l| language.eq_ignore_ascii_case(l))
    {
        return Err(convention(
            &at,
            at.line,
            format!(
                "a `{language}` block: write commands as a `console` block with `$ ` prompts, \
                 or mark it `text`"
            ),
        ));
    }
    if !language.eq_ignore_ascii_case("console") {
        return Ok(None);
    }
    let mut block = Block {
        line: at.line,
        shell: "main".into(),
        skip: None,
        running: false,
        timeout: None,
        commands: Vec::new(),
    };
    let words = shlex::split(attributes)
        .ok_or_else(|| convention(&at, at.line, format!("unbalanced quotes in `{info}`")))?;
    let mut seen = Vec::new();
    for word in words {
        let (key, value) = match word.split_once('=') {
            Some((key, value)) => (key.to_string(), Some(value.trim().to_string())),
            None => (word.clone(), None),
        };
        if seen.contains(&key) {
            return Err(convention(&at, at.line, format!("`{key}` given twice")));
        }
        seen.push(key.clone());
        let bad = |message: String| convention(&at, at.line, message);
        match (key.as_str(), value) {
            ("shell", Some(name)) if !name.is_empty() => block.shell = name,
            ("skip", Some(reason)) if !reason.is_empty() => block.skip = Some(reason),
            ("skip", _) => return Err(bad("`skip` needs a reason: skip=\"why\"".into())),
            ("running", None) => block.running = true,
            ("timeout", Some(value)) => {
                let timeout = humantime::parse_duration(&value)
                    .map_err(|e| bad(format!("timeout=`{value}`: {e}")))?;
                block.timeout = Some(timeout);
            }
            _ => {
                return Err(bad(format!(
                    "bad attribute `{word}` (known: shell=NAME, skip=\"reason\", running, \
                     timeout=DURATION)"
                )));
            }
        }
    }
    block.commands = parse_commands(body, &at)?;
    if block.running
        && let Some(last) = block.commands.last()
        && last.status != ExpectedStatus::Success
    {
        let message = "the exit status of a `running` command is not checked: drop its `? ` line";
        return Err(convention(&at, last.line, message));
    }
    Ok(Some(block))
}

/// The commands of a `console` block whose fence is at `at`.
fn parse_commands(body: &str, at: &Location) -> Result<Vec<Command>, DocError> {
    // (line, command text, expected lines)
    let mut commands: Vec<(usize, String, Vec<&str>)> = Vec::new();
    let mut lines = body.lines().enumerate().map(|(i, l)| (at.line + 1 + i, l));
    while let Some((line, text)) = lines.next() {
        if let Some(first) = text.strip_prefix("$ ") {
            let mut command = first.to_string();
            let mut last = first;
            while continues(last) {
                let Some((_, next)) = lines.next() else {
                    break;
                };
                command.push('\n');
                command.push_str(next);
                last = next;
            }
            commands.push((line, command, Vec::new()));
        } else if let Some((_, _, expected)) = commands.last_mut() {
            expected.push(text);
        } else if !text.trim().is_empty() {
            let message = "text before the first `$ ` command of a `console` block";
            return Err(convention(at, line, message));
        }
    }
    if commands.is_empty() {
        return Err(convention(
            at,
            at.line,
            "a `console` block without a `$ ` command",
        ));
    }
    commands
        .into_iter()
        .map(|(line, text, expected)| {
            let mut expected: Vec<&str> = expected.into_iter().map(str::trim_end).collect();
            drop_trailing_empty(&mut expected);
            let mut status = ExpectedStatus::Success;
            if let Some(marker) = expected.last().and_then(|l| l.strip_prefix("? ")) {
                status = match marker.trim() {
                    "failed" => ExpectedStatus::Failure,
                    code => ExpectedStatus::Code(code.parse().map_err(|_| {
                        let message = format!("`? {code}`: write `? N` or `? failed`");
                        convention(at, line, message)
                    })?),
                };
                expected.pop();
                drop_trailing_empty(&mut expected);
            }
            if status == ExpectedStatus::Code(0) {
                status = ExpectedStatus::Success;
            }
            Ok(Command {
                line,
                text,
                expected: expected.join("\n"),
                status,
            })
        })
        .collect()
}

/// Whether a command line goes on on the next line: it ends with an unescaped backslash.
fn continues(line: &str) -> bool {
    line.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

fn drop_trailing_empty(lines: &mut Vec<&str>) {
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
}

/// A shell running a `running` command takes no more commands on the page.
fn check_busy_shells(page: &str, blocks: &[Block]) -> Result<(), DocError> {
    let mut busy: HashMap<&str, (&Command, usize)> = HashMap::new();
    for block in blocks.iter().filter(|b| b.skip.is_none()) {
        if let Some((command, line)) = busy.get(block.shell.as_str()) {
            let first = command.text.lines().next().unwrap_or_default();
            return Err(DocError::Convention {
                at: Location {
                    page: page.to_string(),
                    line: block.line,
                },
                message: format!(
                    "shell `{}` is busy with `{first}` started at {page}:{line}",
                    block.shell
                ),
            });
        }
        if block.running
            && let Some(last) = block.commands.last()
        {
            busy.insert(&block.shell, (last, last.line));
        }
    }
    Ok(())
}
