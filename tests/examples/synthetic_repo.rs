//! Writes the benchmark's synthetic repository to a directory, to reproduce figures or
//! to try Guts on a sizeable history:
//!
//!     cargo run --release -p guts-tests --example synthetic_repo -- DIR [COMMITS]

use guts_tests::git::Synthetic;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: synthetic_repo DIR [COMMITS]");
        std::process::exit(2);
    };
    let commits = match args.next().map(|c| c.parse::<usize>()) {
        None => 3000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("error: COMMITS must be a positive number");
            std::process::exit(2);
        }
    };
    let built = Synthetic {
        commits,
        text_files: 300,
        binary_every: 60,
        binary_size: 256 * 1024,
        seed: 7,
    }
    .build("synthetic");
    let target = std::path::Path::new(&dir);
    let status = std::process::Command::new("git")
        .args(["clone", "--quiet", "--no-local"])
        .arg(built.path())
        .arg(target)
        .status()
        .expect("run git clone");
    if !status.success() {
        eprintln!("error: git clone into {} failed", target.display());
        std::process::exit(1);
    }
    println!("{}", target.display());
}
