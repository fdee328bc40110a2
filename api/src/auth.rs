//! The control API's credential, as the node and its clients both handle it.
//!
//! Cookie authentication in the manner of Bitcoin Core: at each start the node writes a
//! fresh random token to `api-token` in its data dir (mode 0600), and every `/api/v1`
//! request must carry it (`Authorization: Bearer <token>`). Whoever can read the node's
//! data dir (its user, root) can use the API; nobody else can, however they reach the
//! port.
//!
//! The node also proves it holds the token, so a client never sends the token, nor
//! trusts an answer, to another program that took the port while the node was down: a
//! request carrying `Guts-Nonce: <random>` gets `Guts-Proof: HMAC-SHA256(token, nonce,
//! Host)` back, which only the real node can compute. Clients check that first.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

/// The token file's name in the node's data dir.
pub const TOKEN_FILE: &str = "api-token";
/// Environment variable holding a token, for clients of a node whose data dir they
/// cannot read (an API in a container or on another machine).
pub const TOKEN_ENV: &str = "GUTS_API_TOKEN";
/// Request header with the client's random challenge.
pub const NONCE_HEADER: &str = "guts-nonce";
/// Response header with the node's answer to the challenge.
pub const PROOF_HEADER: &str = "guts-proof";

/// Bytes of randomness in a token.
const TOKEN_BYTES: usize = 32;
/// Longest nonce the node answers (hex digits).
pub const MAX_NONCE_LEN: usize = 64;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What can go wrong with a token or its file. Each names the file or value.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Not 64 hex digits.
    #[error("{what} is not an API token (expected {} hex digits)", TOKEN_BYTES * 2)]
    Malformed {
        /// Where the bad value came from (a file path, an environment variable).
        what: String,
    },
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Other users may read the file: anyone who did controls the node.
    #[error(
        "{path} is readable by other users (mode {mode:o}), so the token may be known to them; \
         restart the node to write a fresh one with mode 600"
    )]
    LoosePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// No randomness from the OS.
    #[error("cannot generate an API token: {0}")]
    Randomness(String),
}

/// A node's API token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token([u8; TOKEN_BYTES]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// A fresh random token.
    pub fn generate() -> Result<Token, AuthError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| AuthError::Randomness(e.to_string()))?;
        Ok(Token(bytes))
    }

    /// Parses the hex form; `what` names the value's origin in the error.
    pub fn parse(text: &str, what: &str) -> Result<Token, AuthError> {
        let malformed = || AuthError::Malformed {
            what: what.to_owned(),
        };
        let text = text.trim();
        if text.len() != TOKEN_BYTES * 2 {
            return Err(malformed());
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| malformed())?;
        Ok(Token(bytes))
    }

    /// The hex form, as written to the file and sent in `Authorization`.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `presented` (the hex a client sent) is this token, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let mut bytes = [0u8; TOKEN_BYTES];
        if presented.len() != TOKEN_BYTES * 2
            || hex::decode_to_slice(presented, &mut bytes).is_err()
        {
            return false;
        }
        bool::from(self.0.ct_eq(&bytes))
    }

    /// The node's answer to `nonce` on a request addressed to `host` (the `Host`
    /// header). Binding the host means an answer relayed from a node elsewhere does not
    /// pass for one from the address the client dialled.
    pub fn proof(&self, nonce: &str, host: &str) -> String {
        hex::encode(self.mac(nonce, host).finalize().into_bytes())
    }

    /// Whether `proof` answers `nonce` for `host` under this token (constant time).
    pub fn verify_proof(&self, nonce: &str, host: &str, proof: &str) -> bool {
        let Ok(bytes) = hex::decode(proof.trim()) else {
            return false;
        };
        self.mac(nonce, host).verify_slice(&bytes).is_ok()
    }

    fn mac(&self, nonce: &str, host: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes keys of any length");
        mac.update(b"guts-api-proof\0");
        mac.update(nonce.as_bytes());
        mac.update(b"\0");
        mac.update(host.as_bytes());
        mac
    }
}

/// A fresh random nonce for [`NONCE_HEADER`].
pub fn nonce() -> Result<String, AuthError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Randomness(e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// Whether `nonce` is one the node answers: 1 to [`MAX_NONCE_LEN`] hex digits.
pub fn is_valid_nonce(nonce: &str) -> bool {
    (1..=MAX_NONCE_LEN).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The token file of the node whose data dir is `data_dir`.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// Writes a fresh token to `data_dir`'s token file, mode 0600, replacing any earlier
/// one atomically. Returns it, and the mode of the file it replaced if other users
/// could read that one (the caller warns: the old token may have leaked).
pub fn write_token_file(data_dir: &Path) -> Result<(Token, Option<u32>), AuthError> {
    let path = token_path(data_dir);
    let io = |source| AuthError::Io {
        path: path.clone(),
        source,
    };
    let loose = match std::fs::symlink_metadata(&path) {
        Ok(meta) => loose_mode(&meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let token = Token::generate()?;
    let tmp = data_dir.join(format!(".{TOKEN_FILE}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut f| {
        writeln!(f, "{}", token.to_hex())?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok((token, loose))
}

/// Reads a token file, refusing one other users can read.
pub fn read_token_file(path: &Path) -> Result<Token, AuthError> {
    let io = |source| AuthError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if let Some(mode) = loose_mode(&meta) {
        return Err(AuthError::LoosePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    Token::parse(&text, &path.display().to_string())
}

/// The permission bits, if group or others have any access.
fn loose_mode(meta: &std::fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_compare() {
        let t = Token::generate().unwrap();
        assert_eq!(Token::parse(&t.to_hex(), "x").unwrap(), t);
        assert!(t.matches(&t.to_hex()));
        let other = Token::generate().unwrap();
        assert!(!t.matches(&other.to_hex()));
        assert!(!t.matches(""));
        assert!(!t.matches(&t.to_hex()[1..]));
        assert!(!t.matches(&format!("{}zz", &t.to_hex()[2..])));
        let err = Token::parse("abc", "GUTS_API_TOKEN").unwrap_err();
        assert!(err.to_string().contains("GUTS_API_TOKEN"), "{err}");
    }

    #[test]
    fn a_proof_binds_token_nonce_and_host() {
        let t = Token::generate().unwrap();
        let p = t.proof("00ff", "127.0.0.1:9080");
        assert!(t.verify_proof("00ff", "127.0.0.1:9080", &p));
        assert!(!t.verify_proof("00fe", "127.0.0.1:9080", &p));
        assert!(!t.verify_proof("00ff", "127.0.0.1:9081", &p));
        assert!(
            !Token::generate()
                .unwrap()
                .verify_proof("00ff", "127.0.0.1:9080", &p)
        );
        assert!(!t.verify_proof("00ff", "127.0.0.1:9080", "not hex"));
    }

    #[test]
    fn nonces_are_bounded_hex() {
        assert!(is_valid_nonce(&nonce().unwrap()));
        assert!(!is_valid_nonce(""));
        assert!(!is_valid_nonce("xyz"));
        assert!(!is_valid_nonce(&"a".repeat(MAX_NONCE_LEN + 1)));
    }

    #[test]
    fn a_first_token_is_written_where_there_was_none_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let (token, loose) = write_token_file(dir.path()).unwrap();
        assert_eq!(loose, None);
        assert_eq!(read_token_file(&token_path(dir.path())).unwrap(), token);
        let shown = format!("{token:?}");
        assert!(!shown.contains(&token.to_hex()[..8]), "{shown}");
        assert!(shown.starts_with("Token"), "{shown}");
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private_and_loose_ones_are_refused_then_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = token_path(dir.path());
        std::fs::write(&path, "stale\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_token_file(&path).unwrap_err();
        assert!(
            matches!(err, AuthError::LoosePermissions { mode: 0o644, .. }),
            "{err}"
        );
        let (token, loose) = write_token_file(dir.path()).unwrap();
        assert_eq!(loose, Some(0o644));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_token_file(&path).unwrap(), token);
        let (again, loose) = write_token_file(dir.path()).unwrap();
        assert_eq!(loose, None);
        assert_ne!(again, token, "each start writes a fresh token");
    }
}
