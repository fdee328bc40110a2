//! Encrypted repositories: the keys and formats of their sealed form.
//!
//! An encrypted repository travels and rests as ordinary git objects whose contents are
//! ciphertext: packs of the real objects and a manifest of the real refs, each sealed
//! (XChaCha20-Poly1305) under the key of an epoch. An epoch's key is wrapped to each
//! reader's node key (its ed25519 key taken to X25519, an ephemeral X25519 key beside
//! it), and a new epoch's key also seals the one before, so a reader added later reads
//! the history too, and one removed cannot read what is sealed after its removal. Nodes
//! that seed without reading keep and serve the ciphertext like any other repository.
//!
//! Written by hand on `curve25519-dalek` and `chacha20poly1305`: the sealed-box
//! constructions on crates.io each bring their own key types, and a node's key is the
//! ed25519 key its peer id and signatures already use.

use std::collections::BTreeMap;

use crate::ids::RefName;
use crate::refs::Refs;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use curve25519_dalek::MontgomeryPoint;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format byte every sealed blob and key ring starts with; one that is greater was
/// written by a newer release and is refused, naming it.
pub const SEALED_FORMAT: u8 = 1;

/// Largest plaintext one sealed blob holds: a pack is sealed in parts of this size, so no
/// blob comes near the largest object a store takes, and a part is opened at a time.
pub const PART_SIZE: usize = 32 << 20;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Format byte and epoch number, in clear before the nonce.
const HEADER_LEN: usize = 5;

/// Why sealed data could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The system's randomness failed.
    #[error("no randomness for a key: {0}")]
    Randomness(String),
    /// Written by a newer release.
    #[error("sealed with format {found}; this release reads format {SEALED_FORMAT}")]
    NewerFormat {
        /// The format byte found.
        found: u8,
    },
    /// Too short, or its key ring does not decode.
    #[error("malformed sealed data: {0}")]
    Malformed(String),
    /// The key does not open it: another epoch's, or the ciphertext was altered.
    #[error("{0} does not open with the key of its epoch (altered, or sealed by another key)")]
    WrongKey(String),
    /// No epoch holds a key for this node's key.
    #[error("no epoch of the key ring names this node's key as a reader")]
    NotAReader,
    /// An epoch named in a blob is not in the key ring.
    #[error("{what} is sealed under epoch {epoch}, which the key ring does not hold")]
    UnknownEpoch {
        /// What was being opened.
        what: String,
        /// Its epoch.
        epoch: u32,
    },
}

/// One epoch's symmetric key.
#[derive(Clone, PartialEq, Eq)]
pub struct RepoKey([u8; 32]);

impl std::fmt::Debug for RepoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RepoKey(..)")
    }
}

impl Drop for RepoKey {
    fn drop(&mut self) {
        // Not zeroize's guarantees, but no copy left behind by this type.
        self.0 = [0; 32];
    }
}

fn random<const N: usize>() -> Result<[u8; N], SealError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| SealError::Randomness(e.to_string()))?;
    Ok(bytes)
}

impl RepoKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, SealError> {
        Ok(RepoKey(random()?))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// Seals `plaintext` as a blob of `epoch`; `place` (where the blob sits) is
    /// authenticated with it, so a blob moved to another place does not open.
    pub fn seal(&self, epoch: u32, place: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(SEALED_FORMAT);
        out.extend_from_slice(&epoch.to_le_bytes());
        let aad = [&out[..], place.as_bytes()].concat();
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Malformed("plaintext too long to seal".into()))?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a blob [`Self::seal`] made for `place`.
    pub fn open(&self, place: &str, blob: &[u8]) -> Result<Vec<u8>, SealError> {
        let (_, body) = split_header(place, blob)?;
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let aad = [&blob[..HEADER_LEN], place.as_bytes()].concat();
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::WrongKey(place.to_owned()))
    }
}

/// The epoch a sealed blob names, read without opening it.
pub fn epoch_of(place: &str, blob: &[u8]) -> Result<u32, SealError> {
    split_header(place, blob).map(|(epoch, _)| epoch)
}

fn split_header<'a>(place: &str, blob: &'a [u8]) -> Result<(u32, &'a [u8]), SealError> {
    match blob.first() {
        Some(&SEALED_FORMAT) => {}
        Some(&found) if found > SEALED_FORMAT => return Err(SealError::NewerFormat { found }),
        _ => return Err(SealError::Malformed(format!("{place}: no sealed header"))),
    }
    if blob.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
        return Err(SealError::Malformed(format!(
            "{place}: {} bytes, shorter than any sealed blob",
            blob.len()
        )));
    }
    let epoch = u32::from_le_bytes([blob[1], blob[2], blob[3], blob[4]]);
    Ok((epoch, &blob[HEADER_LEN..]))
}

/// An epoch's key sealed to one reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wrap {
    /// The reader's node key.
    pub reader: VerifyingKey,
    /// The sender's ephemeral X25519 key.
    pub ephemeral: [u8; 32],
    /// The epoch's key, sealed under the shared secret.
    pub sealed: Vec<u8>,
}

/// The key that seals a wrap between `ephemeral` and `reader`, from their shared secret.
/// A hash of the whole exchange, as libsodium's sealed boxes do.
fn wrap_key(shared: &MontgomeryPoint, ephemeral: &[u8; 32], reader: &VerifyingKey) -> RepoKey {
    let digest = Sha256::new()
        .chain_update(b"guts/sealed/wrap/v1")
        .chain_update(shared.as_bytes())
        .chain_update(ephemeral)
        .chain_update(reader.to_montgomery().as_bytes())
        .finalize();
    RepoKey(digest.into())
}

impl Wrap {
    fn new(key: &RepoKey, epoch: u32, reader: &VerifyingKey) -> Result<Wrap, SealError> {
        let secret: [u8; 32] = random()?;
        let ephemeral = MontgomeryPoint::mul_base_clamped(secret).to_bytes();
        let shared = reader.to_montgomery().mul_clamped(secret);
        let sealed = wrap_key(&shared, &ephemeral, reader).seal(epoch, "key", &key.0)?;
        Ok(Wrap {
            reader: *reader,
            ephemeral,
            sealed,
        })
    }

    fn open(&self, me: &SigningKey) -> Result<RepoKey, SealError> {
        let shared = MontgomeryPoint(self.ephemeral).mul_clamped(me.to_scalar_bytes());
        let bytes = wrap_key(&shared, &self.ephemeral, &self.reader).open("key", &self.sealed)?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SealError::Malformed("a wrapped key is not 32 bytes".into()))?;
        Ok(RepoKey(bytes))
    }
}

/// One epoch: its key for each reader, and the key before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    /// 1 for the first, one more than the one before otherwise.
    pub number: u32,
    /// The key for each reader, sorted by key bytes.
    pub wraps: Vec<Wrap>,
    /// The previous epoch's key, sealed under this one's (none for the first).
    pub previous: Option<Vec<u8>>,
}

impl Epoch {
    /// The readers it wraps its key to, sorted by key bytes.
    pub fn readers(&self) -> Vec<VerifyingKey> {
        self.wraps.iter().map(|w| w.reader).collect()
    }
}

/// Every epoch of an encrypted repository, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRing {
    /// The epochs.
    pub epochs: Vec<Epoch>,
}

impl KeyRing {
    /// Decodes a key ring blob.
    pub fn decode(bytes: &[u8]) -> Result<KeyRing, SealError> {
        match bytes.first() {
            Some(&SEALED_FORMAT) => postcard::from_bytes(&bytes[1..])
                .map_err(|e| SealError::Malformed(format!("key ring: {e}"))),
            Some(&found) if found > SEALED_FORMAT => Err(SealError::NewerFormat { found }),
            _ => Err(SealError::Malformed("key ring: no format byte".into())),
        }
    }

    /// The key ring blob.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_extend(self, vec![SEALED_FORMAT]).expect("key rings always encode")
    }

    /// The newest epoch, if any.
    pub fn current(&self) -> Option<&Epoch> {
        self.epochs.last()
    }

    /// Begins a new epoch with a fresh key wrapped to `readers` (sealing the current key
    /// under it), and returns that key.
    pub fn rotate(
        &mut self,
        readers: &[VerifyingKey],
        current: Option<&RepoKey>,
    ) -> Result<(u32, RepoKey), SealError> {
        let number = self.current().map_or(1, |e| e.number + 1);
        let key = RepoKey::generate()?;
        let mut readers = readers.to_vec();
        readers.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        readers.dedup();
        let wraps = readers
            .iter()
            .map(|r| Wrap::new(&key, number, r))
            .collect::<Result<_, _>>()?;
        let previous = current
            .map(|old| key.seal(number, "previous", &old.0))
            .transpose()?;
        self.epochs.push(Epoch {
            number,
            wraps,
            previous,
        });
        Ok((number, key))
    }

    /// Every epoch's key `me` can reach, by number: through the newest epoch that wraps
    /// one to it, then back along the chain.
    pub fn keys_for(&self, me: &SigningKey) -> Result<BTreeMap<u32, RepoKey>, SealError> {
        let mine = me.verifying_key();
        let newest = self
            .epochs
            .iter()
            .rposition(|e| e.wraps.iter().any(|w| w.reader == mine))
            .ok_or(SealError::NotAReader)?;
        let mut keys = BTreeMap::new();
        let wrap = self.epochs[newest]
            .wraps
            .iter()
            .find(|w| w.reader == mine)
            .ok_or(SealError::NotAReader)?;
        let mut key = wrap.open(me)?;
        for epoch in self.epochs[..=newest].iter().rev() {
            let previous = epoch
                .previous
                .as_ref()
                .map(|sealed| key.open("previous", sealed))
                .transpose()?;
            keys.insert(epoch.number, key);
            match previous {
                Some(bytes) => {
                    key = RepoKey(bytes.try_into().map_err(|_| {
                        SealError::Malformed("a previous key is not 32 bytes".into())
                    })?)
                }
                None => break,
            }
        }
        Ok(keys)
    }
}

/// What a sealed commit says of the real repository, sealed in its `manifest` blob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The real refs.
    pub refs: Refs,
    /// The ref HEAD points at.
    pub head: Option<RefName>,
    /// How many packs hold the objects (`packs/0` to `packs/<packs - 1>`).
    pub packs: u32,
}

impl Manifest {
    /// The manifest's plaintext.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("manifests always encode")
    }

    /// Reads a manifest's plaintext.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, SealError> {
        postcard::from_bytes(bytes).map_err(|e| SealError::Malformed(format!("manifest: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn a_blob_opens_with_its_key_and_place_only() {
        let k = RepoKey::generate().unwrap();
        let blob = k.seal(3, "packs/0/0", b"objects").unwrap();
        assert_eq!(epoch_of("packs/0/0", &blob).unwrap(), 3);
        assert_eq!(k.open("packs/0/0", &blob).unwrap(), b"objects");
        assert!(matches!(
            k.open("packs/1/0", &blob),
            Err(SealError::WrongKey(_))
        ));
        let other = RepoKey::generate().unwrap();
        assert!(other.open("packs/0/0", &blob).is_err());
        let mut altered = blob.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(k.open("packs/0/0", &altered).is_err());
        let mut newer = blob;
        newer[0] = SEALED_FORMAT + 1;
        assert!(matches!(
            k.open("packs/0/0", &newer),
            Err(SealError::NewerFormat { .. })
        ));
    }

    #[test]
    fn readers_reach_their_epochs_and_the_ones_before() {
        let (a, b, c) = (key(1), key(2), key(3));
        let mut ring = KeyRing::default();
        let (one, k1) = ring
            .rotate(&[a.verifying_key(), b.verifying_key()], None)
            .unwrap();
        // B is removed, C added.
        let (two, k2) = ring
            .rotate(&[a.verifying_key(), c.verifying_key()], Some(&k1))
            .unwrap();
        let ring = KeyRing::decode(&ring.encode()).unwrap();
        let for_a = ring.keys_for(&a).unwrap();
        assert_eq!(
            (for_a[&one].clone(), for_a[&two].clone()),
            (k1.clone(), k2.clone())
        );
        let for_c = ring.keys_for(&c).unwrap();
        assert_eq!(for_c[&one], k1, "a reader added later reads the history");
        let for_b = ring.keys_for(&b).unwrap();
        assert_eq!(for_b.len(), 1);
        assert!(
            !for_b.contains_key(&two),
            "a removed reader gets no new key"
        );
        assert!(matches!(ring.keys_for(&key(4)), Err(SealError::NotAReader)));
    }

    #[test]
    fn a_wrap_taken_by_another_key_does_not_open() {
        let mut ring = KeyRing::default();
        ring.rotate(&[key(1).verifying_key()], None).unwrap();
        // D copies A's wrap under its own name.
        ring.epochs[0].wraps[0].reader = key(4).verifying_key();
        assert!(ring.keys_for(&key(4)).is_err());
    }
}
