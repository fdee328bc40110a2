//! The web view in a real browser: headless Chromium (Debian's package) loads each kind of
//! page of a real repository (this project's own history, imported into a node), the
//! rendered DOM is checked, a phone-sized screenshot of each is kept under
//! `target/test-artifacts/web/`, and each page's HTML passes HTML Tidy without warnings.

use std::path::{Path, PathBuf};
use std::process::Command;

use guts_tests::docker::repo_root;
use guts_tests::process::{NodeSpec, http_get};

/// Headless Chromium with `args` then `url`; its stdout.
fn chromium(args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs (scripts/setup-test-deps installs it)");
    assert!(
        out.status.success(),
        "chromium {args:?} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn artifacts() -> PathBuf {
    let dir = repo_root().join("target/test-artifacts/web");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// HTML Tidy's verdict on `html`: `Ok` when it finds nothing to say.
fn tidy(html: &str, name: &str) -> Result<(), String> {
    let file = artifacts().join(format!("{name}.html"));
    std::fs::write(&file, html).unwrap();
    let out = Command::new("tidy")
        .args(["-q", "-e", "--show-warnings", "yes"])
        .arg(&file)
        .output()
        .expect("tidy runs (scripts/setup-test-deps installs it)");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn head_of(repo: &Path) -> String {
    let out = Command::new("git")
        .args(["rev-parse", "refs/heads/main"])
        .current_dir(repo)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A branch name git and Guts allow that is also markup.
const MARKUP_BRANCH: &str = "x\"><svg/onload=alert(1)>";

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn chromium_renders_every_kind_of_page_of_a_real_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeSpec::loopback(&tmp.path().join("node"))
        .args(["--http", "127.0.0.1:0"])
        .spawn();
    let addr = node.http_addr();
    let source = repo_root();
    let head = head_of(&source);
    let repo = node.import(&source);
    let id = &repo.id;
    let base = format!("http://{addr}");

    // A patch, an issue with markup in its title, and a branch whose name is markup.
    let work = tmp.path().join("work");
    git(
        tmp.path(),
        &["clone", "-q", "--shared", source.to_str().unwrap(), "work"],
    );
    git(&work, &["checkout", "-q", "-B", "proposal", &head]);
    std::fs::write(work.join("PROPOSAL.md"), "A proposal.\n").unwrap();
    git(&work, &["add", "PROPOSAL.md"]);
    git(&work, &["commit", "-q", "-m", "Propose <b>this</b>"]);
    for spec in [
        "HEAD:refs/patches",
        &format!("HEAD:refs/heads/{MARKUP_BRANCH}"),
    ] {
        let out = node.git(&work, &["push", "-q", &repo.url, spec]);
        assert!(out.status.success(), "git push {spec}: {out:?}");
    }
    let opened: guts_node::api::types::collab::ChangeResponse = node
        .client_json(&format!(
            "issue open {id} --title <i>Renders</i>-badly -m On-a-phone"
        ))
        .unwrap();
    let issue = opened.object;
    let (_, patches) = http_get(addr, &format!("/{id}/patches")).unwrap();
    let patch = patches
        .split(&format!("/{id}/patches/"))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no patch link in {patches}"))
        .to_owned();

    let pages = [
        ("node", "/".to_owned(), node.status().peer_id),
        (
            "repository",
            format!("/{id}"),
            format!("git clone {base}/{id}"),
        ),
        // The branch whose name is markup, listed as text.
        (
            "branches",
            format!("/{id}"),
            "x\"&gt;&lt;svg/onload=alert(1)&gt;".to_owned(),
        ),
        ("tree", format!("/{id}/tree/main"), "Cargo.toml".to_owned()),
        (
            "file",
            format!("/{id}/blob/main/node/src/http/git.rs"),
            // Highlighted: a keyword in its own class.
            "<span class=\"s-storage s-type s-function s-rust\">fn</span>".to_owned(),
        ),
        ("history", format!("/{id}/log/main"), head[..10].to_owned()),
        (
            "commit",
            format!("/{id}/commit/{head}"),
            head[..12].to_owned(),
        ),
        ("patches", format!("/{id}/patches"), "Propose".to_owned()),
        (
            "patch",
            format!("/{id}/patches/{patch}"),
            "Revision 1 by".to_owned(),
        ),
        (
            "issues",
            format!("/{id}/issues"),
            "&lt;i&gt;Renders&lt;/i&gt;-badly".to_owned(),
        ),
        (
            "issue",
            format!("/{id}/issues/{issue}"),
            "On-a-phone".to_owned(),
        ),
    ];
    let shots = artifacts();
    for (name, path, expected) in pages {
        let url = format!("{base}{path}");
        // The DOM as the browser built it.
        let dom = chromium(&["--dump-dom"], &url);
        assert!(
            dom.contains("· guts</title>"),
            "{name}: not our page: {dom}"
        );
        assert!(
            dom.contains(&expected),
            "{name}: {expected:?} missing from {dom}"
        );
        // Markup from names and titles stays text: the browser built no element of it.
        assert!(
            !dom.contains("<svg") && !dom.contains("<i>Renders") && !dom.contains("<b>this"),
            "{name}: markup became elements: {dom}"
        );
        // A phone-sized screenshot, kept.
        let shot = shots.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&shot);
        chromium(
            &[
                "--window-size=390,844",
                &format!("--screenshot={}", shot.display()),
            ],
            &url,
        );
        let png = std::fs::read(&shot).unwrap_or_default();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 2_000,
            "{name}: no screenshot ({} bytes)",
            png.len()
        );
        // And the HTML itself is valid.
        let (code, html) = http_get(addr, &path).unwrap();
        assert_eq!(code, 200, "{name}");
        tidy(&html, name).unwrap_or_else(|e| panic!("{name}: tidy says:\n{e}"));
    }
}
