//! Which repositories are private here, known without reading every record: every
//! answer to a peer, every announcement and every listing asks. A set beside the store,
//! filled by one pass over the records on first use, and kept in step as records are
//! written: marked private before a private record is written, unmarked only after a
//! public one is, so no reader ever finds a private record unmarked.

use std::collections::HashSet;

use ed25519_dalek::VerifyingKey;
use guts_protocol::{IdentityDoc, RepositoryId};

use super::Repositories;
use super::held::Held;
use crate::StorageError;

/// The private repositories' ids, once read.
pub(super) type PrivateIds = std::sync::Mutex<Option<HashSet<RepositoryId>>>;

impl Repositories {
    /// Whether `id` is held here and private under its identity version in effect.
    pub fn is_private(&self, id: &RepositoryId) -> Result<bool, StorageError> {
        let mut private = self.private.lock().unwrap_or_else(|e| e.into_inner());
        if private.is_none() {
            let mut found = HashSet::new();
            for held in self.list()? {
                if let Some(Held::Shared(state)) = self.held(&held)?
                    && state.identity.current().is_private()
                {
                    found.insert(held);
                }
            }
            *private = Some(found);
        }
        Ok(private.as_ref().is_some_and(|p| p.contains(id)))
    }

    /// Whether a peer holding `key` (none: a peer whose key cannot be known) may learn
    /// that this node holds `id`: always for a public repository or one not held; for a
    /// private one, its maintainers and allowed keys.
    pub fn visible_to(
        &self,
        id: &RepositoryId,
        key: Option<&VerifyingKey>,
    ) -> Result<bool, StorageError> {
        self.private_rule(id, key, IdentityDoc::may_see)
    }

    /// Whether a peer holding `key` may read `id`'s contents beyond its sealed form (its
    /// collaborative objects and forks, which are not sealed): anyone who may see a
    /// repository that is not encrypted; an encrypted one's maintainers and readers.
    pub fn readable_by(
        &self,
        id: &RepositoryId,
        key: Option<&VerifyingKey>,
    ) -> Result<bool, StorageError> {
        self.private_rule(id, key, IdentityDoc::may_read)
    }

    /// `rule` of the version in effect for a private `id`; true for a public one or one
    /// not held, false for a peer whose key cannot be known.
    fn private_rule(
        &self,
        id: &RepositoryId,
        key: Option<&VerifyingKey>,
        rule: fn(&IdentityDoc, &VerifyingKey) -> bool,
    ) -> Result<bool, StorageError> {
        if !self.is_private(id)? {
            return Ok(true);
        }
        let Some(key) = key else {
            return Ok(false);
        };
        Ok(match self.held(id)? {
            Some(Held::Shared(state)) => rule(state.identity.current(), key),
            _ => true,
        })
    }

    /// Marks `record`'s repository private before it is written (see the module docs).
    pub(super) fn before_writing(&self, record: &Held) {
        if let Held::Shared(state) = record
            && state.identity.current().is_private()
        {
            let mut private = self.private.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = private.as_mut() {
                p.insert(state.identity.repository());
            }
        }
    }

    /// Unmarks `record`'s repository once a public record of it is written, or it is
    /// removed (`None`).
    pub(super) fn after_writing(&self, id: &RepositoryId, record: Option<&Held>) {
        let public = match record {
            Some(Held::Shared(state)) => !state.identity.current().is_private(),
            _ => true,
        };
        if public {
            let mut private = self.private.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = private.as_mut() {
                p.remove(id);
            }
        }
    }
}
