//! Web view benchmark: prints a table; asserts nothing about speed.
//!
//! A `guts node` (release build) holding a synthetic repository of `GUTS_BENCH_COMMITS`
//! commits (default 10,000) serves each kind of page `GUTS_BENCH_RUNS` times (default
//! 20) over HTTP on loopback, one connection each, timed from the request to the last
//! byte, started at most every 60 ms (the endpoint's per-IP rate). Beside each, the git command that reads the same thing from the node's store in
//! the same run (`git ls-tree`, `git show`, `git log`), as the reference: a page is that
//! read plus the HTML.
//!
//! Run: `scripts/bench web`. `GUTS_BENCH_QUICK` (with small `GUTS_BENCH_COMMITS`) makes
//! it small.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use guts_tests::bench::{env_or, median, run};
use guts_tests::git::Synthetic;
use guts_tests::process::{NodeSpec, http_get};

fn git_out(dir: &Path, args: &[&str]) -> String {
    let out = run(Command::new("git").args(args).current_dir(dir));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Requests start at most this often: the endpoint allows 20 a second per IP.
const PACE: Duration = Duration::from_millis(60);

/// The median and the slowest of `runs` timings of `f`, started at most every [`PACE`].
fn time(runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            let took = started.elapsed();
            std::thread::sleep(PACE.saturating_sub(took));
            took
        })
        .collect();
    let worst = times.iter().max().copied().unwrap_or_default();
    (median(times), worst)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let commits = env_or("GUTS_BENCH_COMMITS", 10_000);
    let runs = env_or("GUTS_BENCH_RUNS", 20);
    eprintln!("generating a synthetic repository of {commits} commits...");
    let work = Synthetic {
        commits,
        text_files: 300,
        binary_every: 200,
        binary_size: 64 * 1024,
        seed: 7,
    }
    .build("web");
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeSpec::loopback(&tmp.path().join("node"))
        .log_filter("warn,guts_node::api=info,guts_node::http=info")
        .args(["--http", "127.0.0.1:0"])
        .spawn();
    let addr = node.http_addr();
    let repo = node.import(work.path());
    let id = repo.id.clone();
    let store = std::path::PathBuf::from(&repo.path);
    let head = git_out(&store, &["rev-parse", "main"]);
    let dir = git_out(&store, &["ls-tree", "-d", "--name-only", "main"])
        .lines()
        .next()
        .unwrap_or("src")
        .to_owned();
    let file = git_out(&store, &["ls-tree", "-r", "--name-only", "main"])
        .lines()
        .find(|f| f.ends_with(".rs") || f.ends_with(".txt") || f.ends_with(".md"))
        .unwrap_or("README")
        .to_owned();
    let deep = (commits / 2).to_string();

    let pages: Vec<(&str, String, Vec<String>)> = vec![
        ("node", "/".into(), vec![]),
        ("repository", format!("/{id}"), vec!["for-each-ref".into()]),
        (
            "tree (root)",
            format!("/{id}/tree/main"),
            vec!["ls-tree".into(), "main".into()],
        ),
        (
            "tree (a directory)",
            format!("/{id}/tree/main/{dir}"),
            vec!["ls-tree".into(), format!("main:{dir}")],
        ),
        (
            "file",
            format!("/{id}/blob/main/{file}"),
            vec!["show".into(), format!("main:{file}")],
        ),
        (
            "history, first page",
            format!("/{id}/log/main"),
            vec![
                "log".into(),
                "-50".into(),
                "--format=%H %an %at %s".into(),
                "main".into(),
            ],
        ),
        (
            "history, halfway back",
            format!("/{id}/log/main?skip={deep}"),
            vec![
                "log".into(),
                format!("--skip={deep}"),
                "-50".into(),
                "--format=%H %an %at %s".into(),
                "main".into(),
            ],
        ),
        (
            "commit with its diff",
            format!("/{id}/commit/{head}"),
            vec!["show".into(), head.clone()],
        ),
    ];

    println!();
    println!(
        "web view benchmark on loopback: {commits} commits, {runs} requests per page (one connection each)"
    );
    println!(
        "{:<26} {:>10} {:>10} {:>12} {:>9} {:>8}",
        "page", "median", "slowest", "git (median)", "ratio", "KiB"
    );
    for (name, path, git_args) in pages {
        let mut bytes = 0;
        let (page_median, page_worst) = time(runs, || {
            let (code, body) = http_get(addr, &path).unwrap();
            assert_eq!(code, 200, "{name}: {path}");
            bytes = body.len();
        });
        let reference = if git_args.is_empty() {
            None
        } else {
            let args: Vec<&str> = git_args.iter().map(String::as_str).collect();
            Some(time(runs, || {
                run(Command::new("git").args(&args).current_dir(&store));
            }))
        };
        match reference {
            Some((git_median, _)) => println!(
                "{:<26} {:>10} {:>10} {:>12} {:>8.2}x {:>8.1}",
                name,
                ms(page_median),
                ms(page_worst),
                ms(git_median),
                page_median.as_secs_f64() / git_median.as_secs_f64(),
                bytes as f64 / 1024.0
            ),
            None => println!(
                "{:<26} {:>10} {:>10} {:>12} {:>9} {:>8.1}",
                name,
                ms(page_median),
                ms(page_worst),
                "-",
                "-",
                bytes as f64 / 1024.0
            ),
        }
    }
}
