//! A repository's signed record as it travels beside a clone: one git blob under
//! [`RECORD_REF`], so that someone with only git and `guts verify` can check, offline,
//! that a clone's refs are what the maintainers signed.
//!
//! The blob is a header line naming the format, then [`SharedStateV2`] in postcard: the
//! identity history with each version's visibility and the views of those who may
//! publish. A single-owner repository is its implied first version with the owner's
//! snapshot as its one view. Format 1 is the only one; a later format is refused by name
//! ("record format 2; this guts reads format 1").

use crate::repository::{SharedState, SharedStateV2};
use crate::wire::MAX_RESPONSE_SIZE;

/// Where the record is served and fetched: `git fetch origin 'refs/guts/*:refs/guts/*'`.
pub const RECORD_REF: &str = "refs/guts/record";

/// The header's start; the format number and a newline follow.
const MAGIC: &[u8] = b"guts-record ";
/// The format written.
const FORMAT: u32 = 1;
/// Largest record read: views of up to [`crate::refs::MAX_REFS`] refs each, a few of them.
pub const MAX_RECORD_SIZE: usize = 4 * MAX_RESPONSE_SIZE;

/// Why bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not a record at all.
    #[error("not a guts record (it does not start with \"guts-record \")")]
    NotARecord,
    /// A format this build does not read.
    #[error("record format {0}; this guts reads format {FORMAT} (a newer guts wrote it)")]
    Format(String),
    /// Larger than any record.
    #[error("{0} bytes; a record is at most {MAX_RECORD_SIZE}")]
    Oversized(usize),
    /// The body does not decode.
    #[error("undecodable record: {0}")]
    Undecodable(String),
}

/// The blob's bytes for `state`.
pub fn encode(state: &SharedState) -> Vec<u8> {
    let header = format!("guts-record {FORMAT}\n").into_bytes();
    postcard::to_extend(&SharedStateV2::from(state), header).expect("states always encode")
}

/// Reads a blob written by [`encode`]. Nothing in it is checked but its form: signatures
/// and links are judged by [`crate::RepositoryState::from_peer`].
pub fn decode(bytes: &[u8]) -> Result<SharedState, RecordError> {
    if bytes.len() > MAX_RECORD_SIZE {
        return Err(RecordError::Oversized(bytes.len()));
    }
    let rest = bytes.strip_prefix(MAGIC).ok_or(RecordError::NotARecord)?;
    let end = rest
        .iter()
        .take(16)
        .position(|&b| b == b'\n')
        .ok_or(RecordError::NotARecord)?;
    let format = String::from_utf8_lossy(&rest[..end]).into_owned();
    if format != FORMAT.to_string() {
        return Err(RecordError::Format(format));
    }
    let (state, trailing): (SharedStateV2, _) = postcard::take_from_bytes(&rest[end + 1..])
        .map_err(|e| RecordError::Undecodable(e.to_string()))?;
    if !trailing.is_empty() {
        return Err(RecordError::Undecodable(format!(
            "{} trailing bytes",
            trailing.len()
        )));
    }
    Ok(state.into())
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::refs::{Refs, SignedRefs};
    use crate::{IdentityDoc, ObjectId, Published, RepositoryState};

    fn state() -> SharedState {
        let key = SigningKey::from_bytes(&[3; 32]);
        let genesis = IdentityDoc::genesis(&key.verifying_key(), "recorded".parse().unwrap());
        let mut state = RepositoryState::new(genesis).unwrap();
        let refs: Refs = [("refs/heads/main".parse().unwrap(), ObjectId([9; 20]))]
            .into_iter()
            .collect();
        let view = SignedRefs::sign(&key, "recorded".parse().unwrap(), 1, None, refs).unwrap();
        state.add(Published::View(Box::new(view))).unwrap();
        state.shared()
    }

    #[test]
    fn a_record_reads_back_and_says_what_it_is() {
        let state = state();
        let bytes = encode(&state);
        assert!(bytes.starts_with(b"guts-record 1\n"));
        assert_eq!(decode(&bytes).unwrap(), state);
    }

    #[test]
    fn other_bytes_and_formats_are_refused_by_name() {
        let bytes = encode(&state());
        assert_eq!(decode(b"tree 1234"), Err(RecordError::NotARecord));
        let mut newer = b"guts-record 2\n".to_vec();
        newer.extend_from_slice(&bytes[14..]);
        assert_eq!(decode(&newer), Err(RecordError::Format("2".into())));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(RecordError::Undecodable(_))));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 3]),
            Err(RecordError::Undecodable(_))
        ));
    }
}
