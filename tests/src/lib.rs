//! Test harness: real Guts nodes in this process, as `guts` processes, and in network
//! namespaces; and waiting for conditions with a deadline instead of sleeping.

pub mod cluster;
pub mod netns;
pub mod peer;
pub mod process;
pub mod wait;

pub use wait::{eventually, eventually_async};
