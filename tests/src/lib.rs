//! Test harness: real Guts nodes in this process, as `guts` processes, in network
//! namespaces, in a docker-compose cluster and on a Docker Swarm; and waiting for conditions
//! with a deadline instead of sleeping.

pub mod bench;
pub mod cluster;
pub mod compose;
pub mod docker;
pub mod docs;
pub mod git;
pub mod kad_flood;
pub mod link;
pub mod nat;
pub mod nat_matrix;
pub mod netns;
pub mod peer;
pub mod process;
pub mod procfs;
pub mod raw_frames;
pub mod swarm;
pub mod wait;

pub use wait::{eventually, eventually_async};

/// Sends node logs to the test's output (shown when a test fails), filtered by
/// `RUST_LOG` (default: guts at debug).
pub fn init_logs() {
    let filter = std::env::var("RUST_LOG")
        .unwrap_or_else(|_| "warn,guts_node=debug,guts_storage=debug".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
}
