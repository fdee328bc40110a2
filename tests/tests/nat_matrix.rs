//! The NAT matrix: every pair of router behaviours (silent drop, reject with a TCP reset
//! or ICMP error, symmetric mapping) and the public side. Default-configured nodes
//! replicate a repository in each cell, directly where the pair can punch through (or
//! one side is public), through a relay that carries data where it cannot; the path is
//! asserted. Needs root. `scripts/bench nat` runs every cell ten times and prints the
//! matrix with times.

use std::time::Duration;

use guts_tests::nat::RouterBehaviour::{Reject, SilentDrop, Symmetric};
use guts_tests::nat_matrix::{Side, expected_path, run_cell};

const WITHIN: Duration = Duration::from_secs(90);

fn cell(holder: Side, fetcher: Side) {
    let run = run_cell(holder, fetcher, WITHIN).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        run.path == expected_path(holder, fetcher),
        "{holder} holder, {fetcher} fetcher: {:?} after {:?}\n{}",
        run.path,
        run.to_replicated,
        run.logs
    );
    eprintln!(
        "{holder} holder, {fetcher} fetcher: {}, replicated after {:?}",
        run.path, run.to_replicated
    );
}

#[test]
fn silent_drop_and_silent_drop() {
    cell(Side::Behind(SilentDrop), Side::Behind(SilentDrop));
}

#[test]
fn silent_drop_and_reject() {
    cell(Side::Behind(SilentDrop), Side::Behind(Reject));
}

#[test]
fn reject_and_reject() {
    cell(Side::Behind(Reject), Side::Behind(Reject));
}

#[test]
fn silent_drop_and_symmetric() {
    cell(Side::Behind(SilentDrop), Side::Behind(Symmetric));
}

#[test]
fn reject_and_symmetric() {
    cell(Side::Behind(Reject), Side::Behind(Symmetric));
}

#[test]
fn symmetric_and_symmetric() {
    cell(Side::Behind(Symmetric), Side::Behind(Symmetric));
}

#[test]
fn public_and_silent_drop() {
    cell(Side::Public, Side::Behind(SilentDrop));
}

#[test]
fn reject_and_public() {
    cell(Side::Behind(Reject), Side::Public);
}

#[test]
fn symmetric_and_public() {
    cell(Side::Behind(Symmetric), Side::Public);
}

#[test]
fn public_and_public() {
    cell(Side::Public, Side::Public);
}

#[test]
fn silent_drop_and_public() {
    cell(Side::Behind(SilentDrop), Side::Public);
}
