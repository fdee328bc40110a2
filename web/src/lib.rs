//! The web view of a Guts node: pages of the node and of the public repositories it
//! holds, for reading in a browser (the node serves them beside git over HTTP). This
//! crate renders; the node decides what may be shown and gathers it.

pub mod browse;
pub mod collab;
pub mod highlight;
pub mod pages;

pub use browse::{BrowseError, Browser};
