//! The documentation harness itself (guts_tests::docs), on pages in tests/fixtures/docs/:
//! it passes pages that print what they say, and fails, saying where and why, pages that
//! do not.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use guts_tests::docs::{DocError, DocFailure, FailureKind, Page, Report, Runner, linked_pages};
use tempfile::TempDir;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/docs")
        .join(name)
}

/// The line of a fixture that starts with `start`, as messages number it.
fn line_of(name: &str, start: &str) -> usize {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    1 + text
        .lines()
        .position(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in {name}"))
}

/// A runner in a fresh directory (kept alive by the returned TempDir).
fn runner() -> (Runner, TempDir) {
    let cwd = tempfile::tempdir().unwrap();
    let path = std::env::var("PATH").unwrap();
    let runner = Runner::with_default_env(&path, cwd.path())
        .unwrap()
        .timeout(Duration::from_secs(20));
    (runner, cwd)
}

fn run(name: &str) -> Result<Report, DocFailure> {
    let (runner, _cwd) = runner();
    runner.run(&Page::load(fixture(name)).unwrap())
}

fn fails(name: &str) -> DocFailure {
    let failure = run(name).expect_err("the page should fail");
    println!("{failure}");
    failure
}

fn refused(name: &str) -> String {
    let error = Page::load(fixture(name)).expect_err("the page should be refused");
    println!("{error}");
    error.to_string()
}

/// Whether process `pid` is gone (or a zombie) within a second.
fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| rest.starts_with('Z'))
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn matching_output_passes() {
    let report = run("pass.md").unwrap();
    let commands: Vec<&str> = report.ran.iter().map(|r| r.command.as_str()).collect();
    assert_eq!(commands.len(), 11, "{commands:?}");
    assert_eq!(commands[4], "echo one \\\n    two");
    assert_eq!(
        report.ran[0].at.to_string(),
        format!(
            "tests/fixtures/docs/pass.md:{}",
            line_of("pass.md", "$ echo hello")
        )
    );
    assert!(report.skipped.is_empty());
}

#[test]
fn differing_output_fails_with_location_and_diff() {
    let failure = fails("mismatch.md");
    assert_eq!(failure.kind, FailureKind::Output);
    let message = failure.to_string();
    let at = format!(
        "mismatch.md:{}:",
        line_of("mismatch.md", "$ echo hello world")
    );
    assert!(message.contains(&at), "{message}");
    assert!(message.contains("$ echo hello world"), "{message}");
    assert!(message.contains("- hello there"), "{message}");
    assert!(message.contains("+ hello world"), "{message}");
}

#[test]
fn the_page_stops_at_its_first_failure() {
    let (runner, cwd) = runner();
    runner
        .run(&Page::load(fixture("mismatch.md")).unwrap())
        .unwrap_err();
    assert!(!cwd.path().join("never-run").exists());
}

#[test]
fn non_zero_status_needs_its_marker() {
    let failure = fails("status.md");
    assert_eq!(failure.kind, FailureKind::Status);
    let message = failure.to_string();
    assert!(
        message.contains(&format!(
            "status.md:{}: exited with status 2, expected 0",
            line_of("status.md", "$ ")
        )),
        "{message}"
    );
    assert!(message.contains("oops"), "{message}");

    let failure = fails("wrong_status.md");
    assert_eq!(failure.kind, FailureKind::Status);
    assert!(
        failure.message.contains("exited with status 2, expected 1"),
        "{failure}"
    );
}

#[test]
fn a_command_that_ends_its_shell_fails() {
    let failure = fails("exit.md");
    assert_eq!(failure.kind, FailureKind::ShellEnded);
    assert!(failure.message.contains("shell `main` ended"), "{failure}");
    assert!(failure.details.contains("bye"), "{failure}");
}

#[test]
fn shells_keep_their_own_state() {
    let (runner, cwd) = runner();
    let home = runner.home().unwrap().display().to_string();
    let runner = runner
        .bind("start", cwd.path().display().to_string())
        .bind("home", home);
    let report = runner
        .run(&Page::load(fixture("state.md")).unwrap())
        .unwrap();
    assert_eq!(report.ran.len(), 10);
}

#[test]
fn placeholders_carry_values_to_later_commands() {
    let (runner, _cwd) = runner();
    let runner = runner.bind("greeting", "hello");
    let report = runner
        .run(&Page::load(fixture("placeholders.md")).unwrap())
        .unwrap();
    assert_eq!(report.ran[1].command, "echo \"abc123\"");
    assert_eq!(
        report.ran[2].command,
        "echo \"abc123 hello\" > out.txt && cat < out.txt"
    );
    assert_eq!(report.ran[4].command, "echo \"/ip4/127.0.0.1/tcp/4001\"");
}

#[test]
fn a_bound_placeholder_must_match_its_value() {
    let failure = fails("placeholder_mismatch.md");
    assert_eq!(failure.kind, FailureKind::Output);
    assert!(failure.details.contains("+ id: abc124"), "{failure}");
}

#[test]
fn an_unbound_placeholder_in_a_command_is_an_error() {
    let failure = fails("unbound.md");
    assert_eq!(failure.kind, FailureKind::Unbound);
    let expected = format!(
        "unbound.md:{}: no earlier output on this page printed <repo-id>",
        line_of("unbound.md", "$ ")
    );
    assert!(failure.to_string().contains(&expected), "{failure}");
}

#[test]
fn running_command_lets_the_page_go_on_and_is_stopped_at_its_end() {
    let (runner, _cwd) = runner();
    let files = tempfile::tempdir().unwrap();
    let pid_file = files.path().join("pid");
    let runner = runner.bind("pid-file", pid_file.display().to_string());
    let started = Instant::now();
    let report = runner
        .run(&Page::load(fixture("running.md")).unwrap())
        .unwrap();
    // Ctrl-C stopped it: no 10 s wait for SIGKILL.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.ran.len(), 3);
    assert_eq!(report.ran[2].command, "echo \"4242\"");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(gone(pid), "process {pid} still runs after the page");
}

#[test]
fn running_command_that_ends_before_its_output_fails() {
    let failure = fails("running_exits.md");
    assert_eq!(failure.kind, FailureKind::Exited);
    assert!(failure.message.contains("status 3"), "{failure}");
    assert!(failure.details.contains("+ starting"), "{failure}");
}

#[test]
fn running_command_that_never_gets_ready_fails() {
    let started = Instant::now();
    let failure = fails("running_timeout.md");
    assert_eq!(failure.kind, FailureKind::Timeout);
    assert!(failure.message.contains("within 500ms"), "{failure}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn command_past_its_deadline_fails_and_is_killed() {
    let (runner, _cwd) = runner();
    let files = tempfile::tempdir().unwrap();
    let pid_file = files.path().join("pid");
    let runner = runner.bind("pid-file", pid_file.display().to_string());
    let started = Instant::now();
    let failure = runner
        .run(&Page::load(fixture("timeout.md")).unwrap())
        .unwrap_err();
    println!("{failure}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(failure.kind, FailureKind::Timeout);
    let message = failure.to_string();
    let at = format!(
        "timeout.md:{}: did not finish within 1s",
        line_of("timeout.md", "$ ")
    );
    assert!(message.contains(&at), "{message}");
    assert!(message.contains("$ sh -c 'echo $$ >"), "{message}");
    assert!(message.contains("before"), "{message}");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(gone(pid), "process {pid} still runs after its timeout");
}

#[test]
fn sh_blocks_are_refused() {
    let message = refused("sh_block.md");
    let expected = format!(
        "sh_block.md:{}: a `sh` block: write commands as a `console` block with `$ ` prompts, or mark it `text`",
        line_of("sh_block.md", "```sh")
    );
    assert!(message.ends_with(&expected), "{message}");
}

#[test]
fn skip_needs_a_reason_and_is_reported() {
    let message = refused("skip_no_reason.md");
    assert!(message.contains("`skip` needs a reason"), "{message}");

    let report = run("skip.md").unwrap();
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].reason, "needs two machines");
    assert_eq!(
        report.skipped[0].at.line,
        line_of("skip.md", "```console skip")
    );
    assert_eq!(report.ran.len(), 1);
}

#[test]
fn convention_errors_name_their_line() {
    let cases = [
        (
            "```console\nhello\n$ true\n```\n",
            2,
            "text before the first `$ `",
        ),
        ("```console\n\n```\n", 1, "without a `$ ` command"),
        (
            "```console color=red\n$ true\n```\n",
            1,
            "bad attribute `color=red`",
        ),
        (
            "```console timeout=soon\n$ true\n```\n",
            1,
            "timeout=`soon`",
        ),
        (
            "```console\n$ true\n? maybe\n```\n",
            2,
            "write `? N` or `? failed`",
        ),
        (
            "```console running\n$ node\n? 1\n```\n",
            2,
            "`running` command",
        ),
        ("```bash\nls\n```\n", 1, "a `bash` block"),
        (
            "```console shell=a running\n$ guts node --port 1\n```\n\n```console shell=a\n$ true\n```\n",
            5,
            "shell `a` is busy with `guts node --port 1` started at page.md:2",
        ),
    ];
    for (text, line, message) in cases {
        match Page::parse("page.md", text) {
            Err(DocError::Convention { at, message: got }) => {
                assert_eq!(at.line, line, "{text}: {got}");
                assert!(got.contains(message), "{text}: {got}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    // A busy shell only matters for blocks that run.
    let text = "```console running\n$ node\n```\n\n```console skip=\"later\"\n$ true\n```\n";
    Page::parse("page.md", text).unwrap();
}

#[test]
fn linked_pages_are_followed_once_in_order() {
    let root = fixture("links");
    let pages = linked_pages(&root.join("README.md")).unwrap();
    let names: Vec<_> = pages
        .iter()
        .map(|p| p.strip_prefix(&root).unwrap().to_owned())
        .collect();
    let expected = ["docs/start.md", "docs/api.md", "docs/more.md"].map(PathBuf::from);
    assert_eq!(names, expected);

    match linked_pages(&fixture("broken/README.md")) {
        Err(error @ DocError::MissingLink { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("broken/README.md:3: link to `docs/gone.md`"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}
