//! Running a page's blocks in their shells and checking each command.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::output::{Bindings, Mismatch, check, normalize, substitute, valid_name};
use super::shell::{POLL, Shell, group_running, read_number, running, signal};
use super::{Block, Command, Location, Page};

/// How long running commands get to exit after Ctrl-C at the end of a page.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs pages with a given environment: each page gets fresh shells, started with exactly
/// that environment in `cwd`, and everything a page started is stopped when it ends.
#[derive(Debug)]
pub struct Runner {
    env: Vec<(String, String)>,
    cwd: PathBuf,
    preset: Bindings,
    timeout: Duration,
    home: Option<TempDir>,
}

/// The environment of a reader's terminal, for pages run with `PATH`: a fresh `home` and
/// the toolchain of the test's own user (CARGO_HOME, RUSTUP_HOME); plain output, no GUTS_*.
pub fn default_env(path: &str, home: &Path) -> Vec<(String, String)> {
    let real_home = std::env::var("HOME").ok();
    let tool_home = |var: &str, dir: &str| {
        std::env::var(var)
            .ok()
            .or_else(|| real_home.as_ref().map(|h| format!("{h}/{dir}")))
    };
    let mut env: Vec<(String, String)> = [
        ("HOME", home.to_string_lossy().into_owned()),
        ("PATH", path.to_string()),
        ("TERM", "dumb".into()),
        ("LANG", "C.UTF-8".into()),
        ("LC_ALL", "C.UTF-8".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let copied = [
        ("CARGO_HOME", tool_home("CARGO_HOME", ".cargo")),
        ("RUSTUP_HOME", tool_home("RUSTUP_HOME", ".rustup")),
        ("USER", std::env::var("USER").ok()),
        ("LOGNAME", std::env::var("LOGNAME").ok()),
    ];
    for (name, value) in copied {
        if let Some(value) = value {
            env.push((name.to_string(), value));
        }
    }
    env
}

impl Runner {
    /// Shells get exactly `env` (nothing is inherited) and start in `cwd`.
    pub fn new(env: Vec<(String, String)>, cwd: impl Into<PathBuf>) -> Self {
        Self {
            env,
            cwd: cwd.into(),
            preset: Bindings::new(),
            timeout: Duration::from_secs(5 * 60),
            home: None,
        }
    }

    /// A runner with [`default_env`] and a temporary HOME that lives as long as the runner.
    pub fn with_default_env(path: &str, cwd: impl Into<PathBuf>) -> io::Result<Self> {
        let home = tempfile::Builder::new().prefix("docs-home-").tempdir()?;
        let mut runner = Self::new(default_env(path, home.path()), cwd);
        runner.home = Some(home);
        Ok(runner)
    }

    /// Binds placeholder `<name>` on every page, for values that come from the test.
    ///
    /// Panics if `name` is not a placeholder name (`[a-z][a-z0-9-]*`).
    pub fn bind(mut self, name: &str, value: impl Into<String>) -> Self {
        assert!(
            valid_name(name),
            "`{name}` cannot be written as a placeholder"
        );
        self.preset.insert(name.to_string(), value.into());
        self
    }

    /// The deadline of each command of blocks without `timeout=` (default 5 minutes).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The temporary HOME of [`Runner::with_default_env`].
    pub fn home(&self) -> Option<&Path> {
        self.home.as_ref().map(TempDir::path)
    }

    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Runs the page's blocks in order; stops at the first failure. Running commands are
    /// stopped (Ctrl-C, then SIGKILL after 10 s) and the shells killed before it returns.
    pub fn run(&self, page: &Page) -> Result<Report, DocFailure> {
        let dir = tempfile::Builder::new()
            .prefix("docs-run-")
            .tempdir()
            .map_err(|e| DocFailure {
                at: Location {
                    page: page.name().to_string(),
                    line: 1,
                },
                kind: FailureKind::Io,
                command: None,
                message: format!("cannot create a temporary directory: {e}"),
                details: String::new(),
            })?;
        let mut run = PageRun {
            runner: self,
            page,
            shells: Vec::new(),
            jobs: Vec::new(),
            bindings: self.preset.clone(),
            report: Report {
                page: page.name().to_string(),
                ran: Vec::new(),
                skipped: Vec::new(),
            },
            dir,
        };
        for block in page.blocks() {
            run.block(block)?;
        }
        run.stop();
        let report = std::mem::take(&mut run.report);
        println!("{report}");
        Ok(report)
    }
}

/// What a page run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub page: String,
    pub ran: Vec<Ran>,
    pub skipped: Vec<Skipped>,
}

/// A command that ran and passed.
#[derive(Clone, Debug)]
pub struct Ran {
    pub at: Location,
    /// With placeholders replaced.
    pub command: String,
    /// For a `running` command, until its output appeared.
    pub elapsed: Duration,
}

/// A `skip` block.
#[derive(Clone, Debug)]
pub struct Skipped {
    pub at: Location,
    pub reason: String,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: commands passed: {}", self.page, self.ran.len())?;
        if !self.skipped.is_empty() {
            write!(f, "; blocks skipped: {}", self.skipped.len())?;
        }
        for skipped in &self.skipped {
            write!(f, "\n  {}: {}", skipped.at, skipped.reason)?;
        }
        Ok(())
    }
}

/// Why a page failed; its Display is the whole story (where, the command, diff or output).
#[derive(Debug)]
pub struct DocFailure {
    pub at: Location,
    pub kind: FailureKind,
    /// The command as run (placeholders replaced).
    pub command: Option<String>,
    /// One line: what went wrong.
    pub message: String,
    /// The diff, or the output so far.
    pub details: String,
}

/// What kind of failure a [`DocFailure`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The output differs from the page.
    Output,
    /// Wrong exit status.
    Status,
    /// Past its deadline.
    Timeout,
    /// A `running` command ended before printing its expected output.
    Exited,
    /// A placeholder in a command that no earlier output bound.
    Unbound,
    /// The shell itself ended (`exit` in a command).
    ShellEnded,
    /// The harness could not start a shell or use its files.
    Io,
}

impl fmt::Display for DocFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)?;
        if let Some(command) = &self.command {
            write!(f, "\n\n$ {command}")?;
        }
        if !self.details.is_empty() {
            write!(f, "\n{}", self.details.trim_end())?;
        }
        Ok(())
    }
}

impl std::error::Error for DocFailure {}

/// Shows output in a message, saying so when there is none.
fn output_details(title: &str, output: &str) -> String {
    if output.is_empty() {
        format!("\n{title}: nothing")
    } else {
        format!("\n{title}:\n{output}")
    }
}

fn mismatch_details(mismatch: &Mismatch) -> String {
    let mut details = mismatch.diff.clone();
    if let Some(line) = &mismatch.unmatched {
        details.push_str(&format!(
            "\nno line of the output matches `{line}` (a new placeholder matches one word)"
        ));
    }
    details
}

/// One run of one page: its shells, running commands and placeholders.
struct PageRun<'a> {
    runner: &'a Runner,
    page: &'a Page,
    /// Before `dir`: fields drop in order, and shells are killed on drop.
    shells: Vec<Shell>,
    /// Process groups of `running` commands.
    jobs: Vec<i32>,
    bindings: Bindings,
    report: Report,
    dir: TempDir,
}

impl PageRun<'_> {
    fn at(&self, line: usize) -> Location {
        Location {
            page: self.page.name().to_string(),
            line,
        }
    }

    fn fail(
        &self,
        line: usize,
        kind: FailureKind,
        command: Option<&str>,
        message: impl Into<String>,
        details: String,
    ) -> DocFailure {
        DocFailure {
            at: self.at(line),
            kind,
            command: command.map(str::to_string),
            message: message.into(),
            details,
        }
    }

    fn block(&mut self, block: &Block) -> Result<(), DocFailure> {
        if let Some(reason) = &block.skip {
            let skipped = Skipped {
                at: self.at(block.line),
                reason: reason.clone(),
            };
            println!("{}: skipped: {}", skipped.at, skipped.reason);
            self.report.skipped.push(skipped);
            return Ok(());
        }
        let shell = self.shell(&block.shell, block.line)?;
        let timeout = block.timeout.unwrap_or(self.runner.timeout);
        for (i, command) in block.commands.iter().enumerate() {
            let text = substitute(&command.text, &self.bindings).map_err(|name| {
                let message = format!("no earlier output on this page printed <{name}>");
                self.fail(
                    command.line,
                    FailureKind::Unbound,
                    Some(&command.text),
                    message,
                    String::new(),
                )
            })?;
            println!("{}: $ {text}", self.at(command.line));
            let started = Instant::now();
            if block.running && i + 1 == block.commands.len() {
                self.start_running(shell, command, &text, timeout)?;
            } else {
                self.run_command(shell, command, &text, timeout)?;
            }
            self.report.ran.push(Ran {
                at: self.at(command.line),
                command: text,
                elapsed: started.elapsed(),
            });
        }
        Ok(())
    }

    /// The index of shell `name`, started on first use.
    fn shell(&mut self, name: &str, line: usize) -> Result<usize, DocFailure> {
        if let Some(i) = self.shells.iter().position(|s| s.name == name) {
            return Ok(i);
        }
        let dir = self.dir.path().join(format!("shell-{}", self.shells.len()));
        let shell = Shell::start(name, &self.runner.env, &self.runner.cwd, dir).map_err(|e| {
            let message = format!(
                "cannot start shell `{name}` in {}: {e}",
                self.runner.cwd.display()
            );
            self.fail(line, FailureKind::Io, None, message, String::new())
        })?;
        self.shells.push(shell);
        Ok(self.shells.len() - 1)
    }

    fn io(&self, line: usize, text: &str, shell: usize, e: io::Error) -> DocFailure {
        let name = &self.shells[shell].name;
        let message = format!("cannot talk to shell `{name}`: {e}");
        self.fail(
            line,
            FailureKind::Io,
            Some(text),
            message,
            self.shells[shell].log(),
        )
    }

    /// Waits for the number `echo` writes to `file` (status or pid) until `deadline`.
    fn wait_number(
        &mut self,
        shell: usize,
        file: &Path,
        output: &Path,
        (line, text): (usize, &str),
        (deadline, timeout): (Instant, Duration),
    ) -> Result<i32, DocFailure> {
        loop {
            if let Some(number) = read_number(file) {
                return Ok(number);
            }
            let so_far = || normalize(&std::fs::read(output).unwrap_or_default());
            if !self.shells[shell].alive() {
                let name = &self.shells[shell].name;
                let message = format!("shell `{name}` ended during the command (`exit`?)");
                let mut details = output_details("output", &so_far());
                details.push_str(&output_details(
                    "the shell said",
                    self.shells[shell].log().trim_end(),
                ));
                return Err(self.fail(line, FailureKind::ShellEnded, Some(text), message, details));
            }
            if Instant::now() >= deadline {
                self.shells[shell].kill();
                let message = format!(
                    "did not finish within {}",
                    humantime::format_duration(timeout)
                );
                let details = output_details("output so far", &so_far());
                return Err(self.fail(line, FailureKind::Timeout, Some(text), message, details));
            }
            std::thread::sleep(POLL);
        }
    }

    fn run_command(
        &mut self,
        shell: usize,
        command: &Command,
        text: &str,
        timeout: Duration,
    ) -> Result<(), DocFailure> {
        let line = command.line;
        let sent = self.shells[shell]
            .send(text, false)
            .map_err(|e| self.io(line, text, shell, e))?;
        let deadline = (Instant::now() + timeout, timeout);
        let status = self.wait_number(shell, &sent.status, &sent.output, (line, text), deadline)?;
        let output = normalize(&std::fs::read(&sent.output).unwrap_or_default());
        if !command.status.accepts(status) {
            let message = format!("exited with status {status}, expected {}", command.status);
            let details = output_details("output", &output);
            return Err(self.fail(line, FailureKind::Status, Some(text), message, details));
        }
        match check(&command.expected, &output, &self.bindings, false) {
            Ok(bound) => {
                self.bindings.extend(bound);
                Ok(())
            }
            Err(mismatch) => {
                let message = "the output differs from the page";
                let details = mismatch_details(&mismatch);
                Err(self.fail(line, FailureKind::Output, Some(text), message, details))
            }
        }
    }

    /// Starts a `running` command in the background and waits until it printed what the page
    /// shows (and maybe more).
    fn start_running(
        &mut self,
        shell: usize,
        command: &Command,
        text: &str,
        timeout: Duration,
    ) -> Result<(), DocFailure> {
        let line = command.line;
        let sent = self.shells[shell]
            .send(text, true)
            .map_err(|e| self.io(line, text, shell, e))?;
        let deadline = Instant::now() + timeout;
        let pid = self.wait_number(
            shell,
            &sent.status,
            &sent.output,
            (line, text),
            (deadline, timeout),
        )?;
        self.jobs.push(pid);
        loop {
            let ended = !running(pid);
            let output = normalize(&std::fs::read(&sent.output).unwrap_or_default());
            let mismatch = match check(&command.expected, &output, &self.bindings, true) {
                Ok(bound) => {
                    self.bindings.extend(bound);
                    return Ok(());
                }
                Err(mismatch) => mismatch,
            };
            if ended {
                self.jobs.retain(|&job| job != pid);
                let status = match self.shells[shell].wait_job(pid) {
                    Some(status) => format!(" with status {status}"),
                    None => String::new(),
                };
                let message = format!("ended{status} before printing what the page expects");
                let details = mismatch_details(&mismatch);
                return Err(self.fail(line, FailureKind::Exited, Some(text), message, details));
            }
            if Instant::now() >= deadline {
                self.jobs.retain(|&job| job != pid);
                signal(-pid, libc::SIGKILL);
                let message = format!(
                    "did not print what the page expects within {}",
                    humantime::format_duration(timeout)
                );
                let details = mismatch_details(&mismatch);
                return Err(self.fail(line, FailureKind::Timeout, Some(text), message, details));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Ctrl-C to every running command, SIGKILL to those still there after the grace period,
    /// then the shells and all they started are killed.
    fn stop(&mut self) {
        let jobs = std::mem::take(&mut self.jobs);
        for &pgid in &jobs {
            signal(-pgid, libc::SIGINT);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while jobs.iter().any(|&pgid| group_running(pgid)) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        for &pgid in jobs.iter().filter(|&&pgid| group_running(pgid)) {
            signal(-pgid, libc::SIGKILL);
        }
        for shell in &mut self.shells {
            shell.kill();
        }
    }
}

impl Drop for PageRun<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}
