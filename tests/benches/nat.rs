//! NAT matrix benchmark: prints a table; asserts nothing about speed.
//!
//! Every pair of router behaviours (silent drop, reject, symmetric) and the public side,
//! as `tests/tests/nat_matrix.rs` runs them once each (`guts_tests::nat_matrix`): per
//! cell, runs that replicated, the path the objects took, and the median time from the
//! fetcher's dial to the repository replicated (0.5 MiB: the transfer takes milliseconds,
//! so this is the time to a path and the first byte, to within those). The
//! reference, measured in the same run, is the pair with both nodes public: a plain dial,
//! no NAT; each cell's time is also given as a ratio to it.
//!
//! Run: `scripts/bench nat` (root: it makes namespaces). `GUTS_BENCH_RUNS` (10) repeats.

use std::process::Command;
use std::time::Duration;

use guts_tests::nat_matrix::{PathTaken, Side, expected_path, run_cell};

const WITHIN: Duration = Duration::from_secs(90);

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

fn main() {
    if !is_root() {
        println!("nat benchmark skipped: it builds network namespaces and needs root");
        return;
    }
    let runs: usize = std::env::var("GUTS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut cells = Vec::new();
    for (i, holder) in Side::ALL.iter().enumerate() {
        for fetcher in &Side::ALL[i..] {
            cells.push((*holder, *fetcher));
        }
    }
    // The reference first.
    cells.sort_by_key(|(h, f)| !(*h == Side::Public && *f == Side::Public));
    println!(
        "NAT matrix: {runs} runs per cell; holder behind the first, fetcher behind the second"
    );
    println!(
        "| holder | fetcher | replicated | path (expected) | to replicated | vs public/public |"
    );
    println!("|---|---|---|---|---|---|");
    let mut reference: Option<Duration> = None;
    for (holder, fetcher) in cells {
        let expected = expected_path(holder, fetcher);
        let (mut ok, mut as_expected) = (0, 0);
        let mut whole = Vec::new();
        let mut paths = Vec::new();
        for _ in 0..runs {
            match run_cell(holder, fetcher, WITHIN) {
                Ok(run) => {
                    ok += 1;
                    as_expected += usize::from(run.path == expected);
                    if !paths.contains(&run.path) {
                        paths.push(run.path.clone());
                    }
                    whole.push(run.to_replicated);
                }
                Err(e) => {
                    let head: String = e
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .chars()
                        .take(200)
                        .collect();
                    eprintln!("{holder}/{fetcher}: {head}");
                }
            }
        }
        let seen = paths
            .iter()
            .map(PathTaken::to_string)
            .collect::<Vec<_>>()
            .join("+");
        let whole_median = median(whole);
        if reference.is_none() {
            reference = whole_median;
        }
        let fmt =
            |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
        let ratio = match (whole_median, reference) {
            (Some(w), Some(r)) if !r.is_zero() => {
                format!("{:.1}x", w.as_secs_f64() / r.as_secs_f64())
            }
            _ => "-".to_owned(),
        };
        println!(
            "| {holder} | {fetcher} | {ok}/{runs} | {seen} ({expected}, {as_expected}/{runs}) | {} | {ratio} |",
            fmt(whole_median),
        );
    }
}
