//! Mirrors: repositories this node's key signs that follow an upstream git repository
//! (a URL, or a local path): its branches and tags are fetched every `every` (or on
//! demand), signed as they land and announced, with contributions off (an authoritative
//! mirror: the upstream is where changes are made).
//!
//! The list is `mirrors.toml` in the data dir (format version 1); each mirror's fetched
//! copy of its upstream lives under `mirrors/`, so later fetches bring only what is new.

pub(crate) mod fetch;
pub(crate) mod list;
