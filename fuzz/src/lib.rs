//! The bodies of the fuzz targets in `fuzz_targets/`, one function each.
//!
//! tests/tests/fuzz_corpus.rs includes this file to replay the committed seeds on
//! stable Rust in the ordinary test suite: keep it to dependencies guts-tests has.

use std::fmt::Debug;

use ed25519_dalek::SigningKey;
use futures::executor::block_on;
use futures::io::Cursor;
use git2::{ObjectType, Oid};
use guts_crafted::{entry_header, sha1, zlib_stored};
use guts_node::wire::{Codec, penalty_for};
use guts_protocol::wire::{
    self, Announcement, MAX_ANNOUNCEMENT_SIZE, MAX_PACK_HEADER_SIZE, MAX_PACK_REQUEST_SIZE,
    MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, PackRequest, PackResponse, SyncRequest, SyncResponse,
};
use guts_protocol::{ObjectId, RefName, RepoName, RepositoryId, SignedRefs};
use guts_storage::{PackStats, Repositories, StorageError};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    data: &[u8],
    max: usize,
) -> Option<T> {
    let msg: T = wire::decode(data, max).ok()?;
    let bytes = wire::encode(&msg);
    // Only the canonical encoding decodes: one message, one byte string (so one
    // gossipsub message id, one signature input).
    assert_eq!(
        bytes, data,
        "a message decoded from bytes that are not its encoding"
    );
    let back: T = wire::decode(&bytes, max).expect("a re-encoded message decodes");
    assert_eq!(back, msg);
    Some(msg)
}

/// Every message a peer can send us, decoded from the same bytes under its own limit.
/// Whatever decodes must re-encode to something that decodes to an equal message, and
/// verifying what it carries must not panic.
pub fn wire_messages(data: &[u8]) {
    round_trip::<SyncRequest>(data, MAX_REQUEST_SIZE);
    if let Some(SyncResponse::Refs(snapshot)) = round_trip(data, MAX_RESPONSE_SIZE) {
        let _ = snapshot.verify();
    }
    round_trip::<PackRequest>(data, MAX_PACK_REQUEST_SIZE);
    round_trip::<PackResponse>(data, MAX_PACK_HEADER_SIZE);
    if let Some(a) = round_trip::<Announcement>(data, MAX_ANNOUNCEMENT_SIZE) {
        let _ = a.header().verify();
    }
}

/// A snapshot as a GetRefs answer (or the stored snapshot file) carries it, and the
/// identifiers a peer or a user can hand us as text.
pub fn signed_refs(data: &[u8]) {
    if let Ok(s) = wire::decode::<SignedRefs>(data, MAX_RESPONSE_SIZE) {
        let _ = s.verify();
        let _ = s.signed.verify();
        let back: SignedRefs = wire::decode(&wire::encode(&s), MAX_RESPONSE_SIZE)
            .expect("a re-encoded snapshot decodes");
        assert_eq!(back, s);
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(id) = text.parse::<RepositoryId>() {
        assert_eq!(id.to_string().parse::<RepositoryId>().unwrap(), id);
    }
    if let Ok(name) = text.parse::<RefName>() {
        assert_eq!(name.as_str(), text);
        assert_eq!(name.to_string().parse::<RefName>().unwrap(), name);
    }
    if let Ok(name) = text.parse::<RepoName>() {
        assert_eq!(name.as_str(), text);
        assert_eq!(name.to_string().parse::<RepoName>().unwrap(), name);
    }
    if let Ok(oid) = text.parse::<ObjectId>() {
        assert_eq!(oid.to_string().parse::<ObjectId>().unwrap(), oid);
    }
}

/// Tree entry names and `.gitmodules` blobs through the store's hand copy of git's
/// fsck rules: no panic on any bytes, and no name accepted that a checkout would write
/// as `.`, `..`, through a separator, or as `.git` in plain letters of any case.
pub fn entry_rules(data: &[u8]) {
    let _ = guts_storage::check_gitmodules(data);
    if guts_storage::check_entry_name(data).is_ok() {
        assert!(!data.is_empty() && data != b"." && data != b"..");
        assert!(!data.contains(&b'/') && !data.contains(&0));
        let trimmed = data
            .iter()
            .rposition(|b| *b != b'.' && *b != b' ')
            .map_or(&data[..0], |end| &data[..=end]);
        assert!(!trimmed.eq_ignore_ascii_case(b".git"), "{data:?}");
    }
}

/// The sync protocol's framing (4-byte big-endian length, then a wire message) through
/// the node's own request-response codec, as a request and as a response.
pub fn frames(data: &[u8]) {
    let proto = StreamProtocol::new("/guts/fuzz/sync/1.0.0");
    block_on(async {
        match Codec.read_request(&proto, &mut Cursor::new(data)).await {
            Ok(req) => {
                let mut out = Cursor::new(Vec::new());
                Codec
                    .write_request(&proto, &mut out, req.clone())
                    .await
                    .unwrap();
                let mut back = Cursor::new(out.into_inner());
                assert_eq!(Codec.read_request(&proto, &mut back).await.unwrap(), req);
            }
            Err(e) => {
                let _ = penalty_for(&e);
            }
        }
        match Codec.read_response(&proto, &mut Cursor::new(data)).await {
            Ok(res) => {
                if let SyncResponse::Refs(s) = &res {
                    let _ = s.verify();
                }
                let mut out = Cursor::new(Vec::new());
                Codec
                    .write_response(&proto, &mut out, res.clone())
                    .await
                    .unwrap();
                let mut back = Cursor::new(out.into_inner());
                assert_eq!(Codec.read_response(&proto, &mut back).await.unwrap(), res);
            }
            Err(e) => {
                let _ = penalty_for(&e);
            }
        }
    });
}

/// A replica receiving a pack: `Repositories::accept` with a valid signed snapshot and
/// the input as the pack. Errors are expected; a panic, an abort or a hang is a bug.
///
/// Input: byte 0 says how the pack arrives (0: one chunk; 1..=127: two chunks split at
/// that offset; 128..=255: chunks of `byte - 127` bytes), bytes 1..21 are the object the
/// snapshot's `refs/heads/main` points at, the rest is the pack (none if empty).
pub fn pack_ingest(repos: &Repositories, data: &[u8]) -> Option<Result<PackStats, StorageError>> {
    let (&how, rest) = data.split_first()?;
    let (target, pack) = rest.split_first_chunk::<20>()?;
    let main: RefName = "refs/heads/main".parse().unwrap();
    let refs = [(main.clone(), ObjectId(*target))].into_iter().collect();
    let key = SigningKey::from_bytes(&[7; 32]);
    let snapshot = SignedRefs::sign(&key, "fuzz".parse().unwrap(), 1, Some(main), refs).unwrap();
    let chunks: Vec<Vec<u8>> = match how {
        0 => vec![pack.to_vec()],
        1..=127 => {
            let (a, b) = pack.split_at((how as usize).min(pack.len()));
            vec![a.to_vec(), b.to_vec()]
        }
        _ => pack
            .chunks(how as usize - 127)
            .map(<[u8]>::to_vec)
            .collect(),
    };
    let mut it = chunks.into_iter().map(Ok);
    let pack = if pack.is_empty() {
        None
    } else {
        Some(&mut it as &mut dyn Iterator<Item = std::io::Result<Vec<u8>>>)
    };
    let result = repos.accept(&snapshot, pack, &mut |_| {});
    // Every run starts from nothing: an accepted snapshot leaves its repository behind.
    let _ = std::fs::remove_dir_all(repos.path(&snapshot.repository()));
    Some(result)
}

/// The pack (and the target of `refs/heads/main`) that `data` describes for
/// [`pack_objects`]; `None` if it describes no object. Written by hand, uncompressed:
/// libgit2's pack builder would vet nothing more, and its deflate per object is most of
/// a run's time under ASan.
pub fn build_pack(data: &[u8]) -> Option<(Oid, Vec<u8>)> {
    const KINDS: [ObjectType; 4] = [
        ObjectType::Commit,
        ObjectType::Tree,
        ObjectType::Blob,
        ObjectType::Tag,
    ];
    let (&pick, mut rest) = data.split_first()?;
    let mut ids: Vec<Oid> = Vec::new();
    let mut pack = b"PACK".to_vec();
    pack.extend(2u32.to_be_bytes());
    pack.extend(0u32.to_be_bytes());
    while let [kind, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        let mut object = Vec::with_capacity(body.len());
        let mut bytes = body.iter();
        while let Some(&b) = bytes.next() {
            if b != 0xfd && b != 0xfe {
                object.push(b);
                continue;
            }
            let back = usize::from(bytes.next().copied().unwrap_or(0));
            if let Some(&id) = ids.len().checked_sub(back + 1).map(|i| &ids[i]) {
                if b == 0xfe {
                    object.extend(id.as_bytes());
                } else {
                    object.extend(id.to_string().as_bytes());
                }
            }
        }
        let kind = kind % 4;
        ids.push(Oid::hash_object(KINDS[usize::from(kind)], &object).ok()?);
        // Pack entry types: 1 commit, 2 tree, 3 blob, 4 tag.
        pack.extend(entry_header(kind + 1, object.len() as u64));
        pack.extend(zlib_stored(&object));
    }
    let count = u32::try_from(ids.len()).ok()?;
    pack[8..12].copy_from_slice(&count.to_be_bytes());
    let trailer = sha1(&pack);
    pack.extend(trailer);
    let target = ids.len().saturating_sub(1 + usize::from(pick));
    Some((*ids.get(target)?, pack))
}

/// [`pack_ingest`] of a pack built from objects, so that mutations reach what is checked
/// after indexing (trees, names, `.gitmodules`, depth, connectivity) instead of dying on
/// zlib and SHA-1 checksums. Input: byte 0 picks the object `refs/heads/main` points at
/// (0 the last, 1 the one before...); then objects, each a kind byte (commit, tree, blob,
/// tag, modulo 4), a 2-byte big-endian length and that many bytes of content, in which
/// `FE k` stands for the raw id and `FD k` for the hex id of the object `k + 1` places
/// before (so references survive mutation).
pub fn pack_objects(repos: &Repositories, data: &[u8]) -> Option<Result<PackStats, StorageError>> {
    let (target, pack) = build_pack(data)?;
    let mut input = vec![0];
    input.extend(target.as_bytes());
    input.extend(pack);
    pack_ingest(repos, &input)
}

/// The store the pack targets receive into, made once per process: libFuzzer runs a
/// target on one thread, and every run removes what it created.
pub fn scratch_repos() -> &'static Repositories {
    static REPOS: std::sync::OnceLock<Repositories> = std::sync::OnceLock::new();
    REPOS.get_or_init(|| {
        // As the node does first thing: bound what libgit2 maps.
        // SAFETY: called from the fuzz target's one thread before it uses libgit2.
        unsafe { guts_storage::tune_libgit2() }.expect("libgit2 options");
        // scripts/fuzz names a scratch directory (on tmpfs when there is one: every run
        // creates and removes a repository) and removes it afterwards.
        let base = std::env::var_os("GUTS_FUZZ_TMP")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("guts-fuzz-pack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Repositories::new(&dir)
    })
}
