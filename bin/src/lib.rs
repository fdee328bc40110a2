//! What the `guts` command and the `git-remote-guts` helper share: a client of the node's
//! control API.

pub mod client;
