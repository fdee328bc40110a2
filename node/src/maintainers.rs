//! Repositories with maintainers as the API shows them: who maintains one, their views,
//! the proposals waiting for signatures, and where each maintainer has each ref.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use guts_api::{MaintainerReport, MaintainersReport, ProposalReport};
use guts_protocol::{IdentityHistory, RepositoryState, SignedVersion};

/// Hex of a key.
pub(crate) fn hex_key(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// Parses a maintainer's key from hex, naming the bad value.
pub(crate) fn parse_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| format!("invalid key {text:?}: expected 64 hex digits"))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| format!("invalid key {text:?}: not an ed25519 public key"))
}

/// The identity of `state` as `me` sees it.
pub(crate) fn report(state: &RepositoryState, me: &VerifyingKey) -> MaintainersReport {
    let current = state.identity.current();
    MaintainersReport {
        version: current.version,
        version_id: current.id().to_string(),
        threshold: current.threshold,
        maintainers: current
            .maintainers
            .iter()
            .map(|k| MaintainerReport {
                key: hex_key(k),
                view_sequence: state.views.of(k).map(|v| v.sequence()),
                you: k == me,
            })
            .collect(),
        pending: state
            .identity
            .pending()
            .into_iter()
            .map(|v| proposal(&state.identity, v))
            .collect(),
        private: current.is_private(),
        allowed: match &current.visibility {
            guts_protocol::Visibility::Private { allow } => allow.iter().map(hex_key).collect(),
            guts_protocol::Visibility::Sealed { readers, .. } => {
                readers.iter().map(hex_key).collect()
            }
            guts_protocol::Visibility::Public => Vec::new(),
        },
        encrypted: current.is_sealed(),
        seeders: match &current.visibility {
            guts_protocol::Visibility::Sealed { seeders, .. } => {
                seeders.iter().map(hex_key).collect()
            }
            _ => Vec::new(),
        },
    }
}

/// A version as `pending` and `propose` show it.
pub(crate) fn proposal(identity: &IdentityHistory, version: &SignedVersion) -> ProposalReport {
    let previous = version.doc.previous.and_then(|p| identity.doc(&p));
    let id = version.doc.id();
    ProposalReport {
        id: id.to_string(),
        version: version.doc.version,
        maintainers: version.doc.maintainers.iter().map(hex_key).collect(),
        threshold: version.doc.threshold,
        signed_by: previous
            .map(|p| version.signers_among(p).iter().map(hex_key).collect())
            .unwrap_or_default(),
        needs: previous.map_or(0, |p| p.threshold),
        in_effect: identity.chain().any(|d| d.id() == id),
    }
}

/// For each ref in any maintainer's view, where each maintainer has it.
pub(crate) fn positions(
    state: &RepositoryState,
) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    let current = state.identity.current();
    let mut out: BTreeMap<String, BTreeMap<String, Option<String>>> = BTreeMap::new();
    let views: Vec<_> = state.views.of_maintainers(&state.identity).collect();
    for view in &views {
        for name in view.refs.keys() {
            out.entry(name.to_string()).or_default();
        }
    }
    for (name, at) in out.iter_mut() {
        for key in &current.maintainers {
            let target = views
                .iter()
                .find(|v| v.signed.signer == *key)
                .and_then(|v| v.refs.iter().find(|(n, _)| n.as_str() == name))
                .map(|(_, t)| t.to_string());
            at.insert(hex_key(key), target);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use guts_protocol::{IdentityDoc, ObjectId, SignedRefs};

    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn keys_parse_from_hex_and_bad_ones_are_named() {
        let k = key(3).verifying_key();
        assert_eq!(parse_key(&hex_key(&k)), Ok(k));
        let err = parse_key("abc").unwrap_err();
        assert!(
            err.contains("\"abc\"") && err.contains("64 hex digits"),
            "{err}"
        );
    }

    #[test]
    fn the_report_names_maintainers_views_proposals_and_positions() {
        let genesis = IdentityDoc::genesis(&key(1).verifying_key(), "r".parse().unwrap());
        let mut state = RepositoryState::new(genesis.clone()).unwrap();
        let v2 = genesis
            .next([1, 2].map(|s| key(s).verifying_key()), 2)
            .unwrap();
        state
            .identity
            .add(SignedVersion::propose(v2.clone(), &key(1)))
            .unwrap();
        let v3 = v2.next([key(2).verifying_key()], 1).unwrap();
        state
            .identity
            .add(SignedVersion::propose(v3.clone(), &key(2)))
            .unwrap();
        let refs = [("refs/heads/main".parse().unwrap(), ObjectId([7; 20]))].into();
        let view = SignedRefs::sign_view(
            &key(2),
            genesis.repository,
            "r".parse().unwrap(),
            4,
            None,
            refs,
        )
        .unwrap();
        state.views.add(view, &state.identity).unwrap();

        let report = report(&state, &key(1).verifying_key());
        assert_eq!((report.version, report.threshold), (2, 2));
        assert!(report.maintainers[0].you || report.maintainers[1].you);
        let two = hex_key(&key(2).verifying_key());
        let view_of_two = report.maintainers.iter().find(|m| m.key == two).unwrap();
        assert_eq!(view_of_two.view_sequence, Some(4));
        assert_eq!(report.pending.len(), 1);
        let p = &report.pending[0];
        assert_eq!(
            (p.id.clone(), p.needs, p.in_effect),
            (v3.id().to_string(), 2, false)
        );
        assert_eq!(p.signed_by, vec![two.clone()]);

        let at = &positions(&state)["refs/heads/main"];
        assert_eq!(at[&two], Some(ObjectId([7; 20]).to_string()));
        assert_eq!(at[&hex_key(&key(1).verifying_key())], None);
    }
}
