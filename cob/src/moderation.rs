//! The maintainers' moderation: keys whose patches, issues and comments a repository hides.
//!
//! Any maintainer may hide or unhide a key, or turn contributions off and on; the last word
//! in replay order over every moderation object of the repository stands (two maintainers
//! who open moderation objects concurrently do not split the record). Maintainers cannot
//! be hidden.
//!
//! Contributions are turned off by hiding [`everyone`], a key no one holds, and on again by
//! unhiding it: no new action, so releases that know nothing of it read the record as one
//! more hidden key rather than a change they cannot decode (which they would hold against
//! the peer that sent it).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::action::{Action, Kind};
use crate::graph::Graph;
use guts_protocol::IdentityDoc;

/// The key whose hiding turns contributions off: derived from a fixed text, so every
/// node knows it; it signs nothing, and its secret being derivable gives no one anything
/// (a change it signed would only be a contributor's, hidden while contributions are
/// off).
pub fn everyone() -> VerifyingKey {
    static EVERYONE: LazyLock<VerifyingKey> = LazyLock::new(|| {
        let seed: [u8; 32] = Sha256::digest(b"guts/moderation/everyone/v1").into();
        SigningKey::from_bytes(&seed).verifying_key()
    });
    *EVERYONE
}

/// Keys hidden in a repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moderation {
    /// The hidden keys, by bytes.
    pub hidden: BTreeSet<[u8; 32]>,
    /// Whether contributions are off: only maintainers' changes and forks count.
    pub closed: bool,
}

impl Moderation {
    /// Whether `key`'s patches, issues and forks are left out under `identity`: hidden,
    /// or not a maintainer while contributions are off.
    pub fn excludes(&self, key: &VerifyingKey, identity: &IdentityDoc) -> bool {
        self.hidden.contains(key.as_bytes()) || (self.closed && !identity.is_maintainer(key))
    }

    /// Replays every moderation change in `graph` as `identity`'s maintainers made them.
    pub fn replay(graph: &Graph, identity: &IdentityDoc) -> Moderation {
        let mut hidden = BTreeSet::new();
        let mut closed = false;
        for id in graph.order() {
            if graph.kind_of(&id) != Some(Kind::Moderation) {
                continue;
            }
            let Some(change) = graph.get(&id) else {
                continue;
            };
            if !identity.is_maintainer(&change.author) {
                continue;
            }
            match &change.action {
                Action::Hide { key } if *key == everyone() => closed = true,
                Action::Unhide { key } if *key == everyone() => closed = false,
                Action::Hide { key } if !identity.is_maintainer(key) => {
                    hidden.insert(*key.as_bytes());
                }
                Action::Unhide { key } => {
                    hidden.remove(key.as_bytes());
                }
                _ => {}
            }
        }
        Moderation { hidden, closed }
    }
}
