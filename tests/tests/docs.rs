//! README and every page it links, run as written: each `console` block in its terminal,
//! its output compared with the page (conventions in `guts_tests::docs`). A page's
//! commands run the way a reader on a fresh machine would: a fresh home directory, the
//! programs README installs with `cargo install` on `PATH`, nothing from this process's
//! `GUTS_*` variables.
//!
//! `GUTS_DOCS_PAGE=docs/cli.md` runs one page (not README), with this build's `guts` on
//! `PATH` instead of README's install.

use std::path::{Path, PathBuf};
use std::process::Command;

use guts_tests::docs::{Page, Runner, default_env, linked_pages};
use guts_tests::process::guts_bin;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The environment of a reader's terminal on this machine, with where README's
/// `cargo install` and `cargo run --release` put their output. Those build into a target
/// dir of their own with an unoptimized release profile: what is tested is that the
/// commands work as written, and an optimized build would add minutes to every run.
fn env(home: &Path, bin_dirs: &[PathBuf]) -> Vec<(String, String)> {
    let docs_target = root().join("target/docs");
    let mut path: Vec<String> = bin_dirs.iter().map(|d| d.display().to_string()).collect();
    path.push(std::env::var("PATH").unwrap_or_default());
    let mut env = default_env(&path.join(":"), home);
    env.extend(
        [
            ("CARGO_TARGET_DIR", docs_target.display().to_string()),
            ("CARGO_INSTALL_ROOT", install_root().display().to_string()),
            ("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0".into()),
            ("CARGO_PROFILE_RELEASE_DEBUG", "false".into()),
            ("CARGO_PROFILE_RELEASE_INCREMENTAL", "true".into()),
            // A reader's git knows who they are.
            ("GIT_AUTHOR_NAME", "A Reader".into()),
            ("GIT_AUTHOR_EMAIL", "reader@example.org".into()),
            ("GIT_COMMITTER_NAME", "A Reader".into()),
            ("GIT_COMMITTER_EMAIL", "reader@example.org".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    env
}

fn install_root() -> PathBuf {
    root().join("target/docs/install")
}

/// What a page leaves running outside its own processes: the compose cluster and the
/// swarm stack of docs/deployment.md (removed whether the page passed or failed), and a
/// swarm this test made.
struct Leftovers {
    swarm_before: bool,
}

impl Leftovers {
    fn note() -> Self {
        Leftovers {
            swarm_before: swarm_active(),
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let root = root();
        let quiet = |cmd: &mut Command| {
            let _ = cmd.current_dir(&root).output();
        };
        if which("docker") {
            quiet(Command::new("scripts/cluster").arg("down"));
            quiet(Command::new("docker").args(["stack", "rm", "guts"]));
            if !self.swarm_before && swarm_active() {
                quiet(Command::new("docker").args(["swarm", "leave", "--force"]));
            }
        }
    }
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn swarm_active() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "active")
}

fn run(page: &Path, bin_dirs: &[PathBuf]) {
    let page = Page::load(page).unwrap_or_else(|e| panic!("{e}"));
    let home = tempfile::Builder::new()
        .prefix("docs-home-")
        .tempdir()
        .unwrap();
    let _leftovers = Leftovers::note();
    let before = checkout_changes();
    let runner = Runner::new(env(home.path(), bin_dirs), root());
    if let Err(failure) = runner.run(&page) {
        panic!("{failure}");
    }
    // Shells start in the checkout (README's `cargo run` is run there): a page that
    // writes anything else there would leave a reader's checkout dirty.
    let after = checkout_changes();
    let new: Vec<&String> = after.iter().filter(|c| !before.contains(c)).collect();
    assert!(
        new.is_empty(),
        "{} wrote into the checkout: {new:?}",
        page.name()
    );
}

/// Files in the checkout that git does not track or ignore. (Changed tracked files are
/// left out: a developer may be editing while the test runs.)
fn checkout_changes() -> Vec<String> {
    let out = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=all"])
        .current_dir(root())
        .output()
        .expect("git status");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("??"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn readme_and_every_page_it_links_run_as_written() {
    let root = root();
    if let Ok(one) = std::env::var("GUTS_DOCS_PAGE") {
        // This build's guts and git-remote-guts, as the other tests use them.
        let bin = guts_bin().parent().expect("bin dir").to_owned();
        run(&root.join(one), &[bin]);
        return;
    }
    let readme = root.join("README.md");
    let pages = linked_pages(&readme).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        pages.len() >= 5,
        "README links to the documentation pages: {pages:?}"
    );
    // A fresh install each run, so README's `cargo install` is what puts guts there.
    let _ = std::fs::remove_dir_all(install_root());
    let bin = install_root().join("bin");
    run(&readme, std::slice::from_ref(&bin));
    for page in pages {
        run(&page, std::slice::from_ref(&bin));
    }
}
