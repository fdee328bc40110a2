use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::StorageError;

/// File name of the identity inside the data dir.
pub const IDENTITY_FILE: &str = "identity.key";

const HEADER: &str = "# Guts node identity: an ed25519 secret key.\n\
# Keep this file private and backed up: it is the node's peer id and it signs the\n\
# repositories this node owns. Losing it loses that ownership.\n";

/// The node's long-lived ed25519 key.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
    created: bool,
}

/// On-disk form. The public key is stored beside the secret so a damaged file is caught
/// (the two must agree) instead of silently becoming a different identity.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    public_key: String,
    secret_key: String,
}

impl Identity {
    /// Loads the identity at `path`, or creates it (mode 0600) when the file does not exist.
    /// An existing file that cannot be read or parsed is an error, never replaced.
    pub fn load_or_create(path: &Path) -> Result<Self, StorageError> {
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::create(path),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                Err(StorageError::IdentityCorrupt {
                    path: path.to_owned(),
                    reason: "it is not UTF-8 text".into(),
                })
            }
            Err(source) => Err(StorageError::IdentityRead {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The secret signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The 32 secret key bytes (for building a libp2p keypair).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Whether this call created the identity (first start in this data dir).
    pub fn was_created(&self) -> bool {
        self.created
    }

    fn parse(path: &Path, text: &str) -> Result<Self, StorageError> {
        let corrupt = |reason: String| StorageError::IdentityCorrupt {
            path: path.to_owned(),
            reason,
        };
        let file: IdentityFile =
            toml::from_str(text).map_err(|e| corrupt(e.message().to_owned()))?;
        let secret =
            decode_key(&file.secret_key).map_err(|r| corrupt(format!("secret_key {r}")))?;
        let public =
            decode_key(&file.public_key).map_err(|r| corrupt(format!("public_key {r}")))?;
        let key = SigningKey::from_bytes(&secret);
        if key.verifying_key().to_bytes() != public {
            return Err(corrupt(
                "its public_key does not match its secret_key".into(),
            ));
        }
        crate::ownership::check(path, crate::ownership::Kind::SecretFile)?;
        Ok(Identity {
            key,
            created: false,
        })
    }

    fn create(path: &Path) -> Result<Self, StorageError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| StorageError::Randomness(e.to_string()))?;
        let key = SigningKey::from_bytes(&secret);
        let file = IdentityFile {
            public_key: hex::encode(key.verifying_key().to_bytes()),
            secret_key: hex::encode(secret),
        };
        let body = toml::to_string(&file).map_err(|e| StorageError::IdentityWrite {
            path: path.to_owned(),
            source: io::Error::other(e),
        })?;
        match write_new_private_file(path, format!("{HEADER}{body}").as_bytes()) {
            Ok(()) => Ok(Identity { key, created: true }),
            // Another process created it between our read and our write: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let text =
                    fs::read_to_string(path).map_err(|source| StorageError::IdentityRead {
                        path: path.to_owned(),
                        source,
                    })?;
                Self::parse(path, &text)
            }
            Err(source) => Err(StorageError::IdentityWrite {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field(
                "public_key",
                &hex::encode(self.key.verifying_key().to_bytes()),
            )
            .finish_non_exhaustive()
    }
}

fn decode_key(hex_str: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(hex_str.trim()).map_err(|e| format!("is not hex: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("is {} bytes long, expected 32", bytes.len()))
}

/// Writes `contents` to a new file at `path` with mode 0600, all or nothing: the bytes go
/// to a temporary file that is then hard-linked into place, which fails with
/// `AlreadyExists` instead of clobbering a file that appeared meanwhile.
fn write_new_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut options = fs::File::options();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::hard_link(&tmp, path)?;
        if let Some(dir) = path.parent() {
            // Make the new directory entry durable too.
            crate::fs::sync_dir(dir)?;
        }
        Ok(())
    })();
    let _ = fs::remove_file(&tmp);
    result
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(IDENTITY_FILE);
        let a = Identity::load_or_create(&path).unwrap();
        assert!(a.was_created());
        let b = Identity::load_or_create(&path).unwrap();
        assert!(!b.was_created());
        assert_eq!(a.secret_bytes(), b.secret_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn corrupt_files_are_errors_and_left_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(IDENTITY_FILE);
        let cases: [&[u8]; 4] = [
            b"garbage",
            b"public_key = \"00\"\nsecret_key = \"00\"\n",
            &[0xff, 0xfe, 0x00],
            b"",
        ];
        for contents in cases {
            fs::write(&path, contents).unwrap();
            let err = Identity::load_or_create(&path).unwrap_err();
            assert!(matches!(err, StorageError::IdentityCorrupt { .. }), "{err}");
            assert!(err.to_string().contains(IDENTITY_FILE), "{err}");
            assert_eq!(
                fs::read(&path).unwrap(),
                contents,
                "file must not be replaced"
            );
        }
    }

    #[test]
    fn a_flipped_secret_byte_is_caught() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(IDENTITY_FILE);
        let id = Identity::load_or_create(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let secret_hex = hex::encode(id.secret_bytes());
        let mut flipped = secret_hex.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let damaged = text.replace(&secret_hex, std::str::from_utf8(&flipped).unwrap());
        fs::write(&path, damaged).unwrap();
        let err = Identity::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }
}
