//! What the `guts` command and the `git-remote-guts` helper share: a client of the node's
//! control API, and making text from the network safe to print.

pub mod client;
pub mod sync_progress;
pub mod terminal;
