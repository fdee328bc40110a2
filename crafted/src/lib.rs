//! Git data written by hand, as a hostile owner or peer would write it: objects no git
//! command would make (trees nested without limit, names git refuses), and pack bytes
//! field by field. Nothing on the way in vets them. One crate for every test and fuzz
//! target that needs them, so each encoding is written once.

mod pack;
mod repo;

pub use pack::{delta_bomb, delta_varint, entry_header, ofs_delta_offset, sha1, zlib, zlib_stored};
pub use repo::{Crafted, MODE_BLOB, MODE_TREE, object_id};
