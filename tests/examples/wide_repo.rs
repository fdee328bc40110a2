//! Writes a large generated repository (a million objects by default) as a bare
//! repository, for the replication benchmark at scale (`GUTS_BENCH_REPO=DIR`) or to try
//! Guts on one:
//!
//!     cargo run --release -p guts-tests --example wide_repo -- DIR [COMMITS]
//!
//! Each commit brings five objects, so the default 200,000 commits make 1,000,000.

use guts_tests::git::Wide;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: wide_repo DIR [COMMITS]");
        std::process::exit(2);
    };
    let commits = match args.next().map(|c| c.parse::<usize>()) {
        None => 200_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("error: COMMITS must be a positive number");
            std::process::exit(2);
        }
    };
    let target = std::path::Path::new(&dir);
    if target.exists() {
        eprintln!("error: {} exists already", target.display());
        std::process::exit(2);
    }
    let objects = Wide { commits, seed: 1 }.build(target);
    println!("{}: {objects} objects", target.display());
}
