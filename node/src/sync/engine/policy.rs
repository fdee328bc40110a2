//! The engine's decisions, apart from its I/O: when a background sync goes again, what a
//! sync concludes from the holders' answers, and whether an unknown repository is adopted.
//! Plain functions of what happened, so each rule is unit-tested here.

use std::time::Duration;

use guts_api::SyncOutcome;
use guts_protocol::{RepositoryId, SharedState, SignedRefs};
use libp2p::PeerId;

use crate::sync::error::{FetchError, SyncError};

/// A failed background sync is retried this many times, after this delay, doubling.
pub(super) const RETRIES: u32 = 5;
pub(super) const RETRY_DELAY: Duration = Duration::from_millis(250);
/// A sync that failed only because the holders of the announced snapshot were busy, or
/// because none offered it yet, is retried after `RETRY_DELAY` without doubling, this
/// many times: after an announcement the owner turns most fetchers away as `Busy`, and
/// the nodes it served become holders within a fraction of a second, so the next try
/// finds more holders; each wave of fetchers serves the next (doubling the delay put the
/// last of 100 nodes 10 s behind).
pub(super) const BUSY_RETRIES: u32 = 40;

/// What one sync's refs requests brought.
#[derive(Default)]
pub(super) struct RefsRound {
    /// Verified snapshots newer than what this node holds, and who offered each.
    pub(super) offers: Vec<(PeerId, SignedRefs)>,
    /// Identity versions and views of a repository with maintainers, as each holder
    /// offered them (not checked yet).
    pub(super) states: Vec<(PeerId, SharedState)>,
    /// Whether any holder answered with verified refs, newer or not.
    pub(super) heard: bool,
    /// Each peer whose answer was not refs this node could use, and why.
    pub(super) misses: Vec<(PeerId, String)>,
    /// Whether a peer was busy or unreachable (asked later, it may answer).
    pub(super) busy: bool,
}

/// When a failed background sync goes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Busy holders, or the announced snapshot not on offer yet: it will be shortly.
    Soon,
    /// Anything else: holders unreachable, bad data, disk trouble.
    BackOff,
}

/// Whether a background sync aiming at sequence `target` (0: none announced) goes again.
/// No holder at all is not retried: anti-entropy and the next announcement bring one.
pub(super) fn retry_after(result: &Result<SyncOutcome, SyncError>, target: u64) -> Option<Retry> {
    match result {
        Ok(SyncOutcome::Updated { sequence, .. }) => (*sequence < target).then_some(Retry::Soon),
        Ok(SyncOutcome::UpToDate { sequence }) => (*sequence < target).then_some(Retry::Soon),
        Err(SyncError::NoHolders(_) | SyncError::Blocked(_)) => None,
        Err(e) if e.only_busy() => Some(Retry::Soon),
        Err(_) => Some(Retry::BackOff),
    }
}

/// The retries one background sync has left.
#[derive(Debug, Default)]
pub(super) struct RetryBudget {
    soon: u32,
    backoffs: u32,
}

impl RetryBudget {
    /// How long to wait before going again (before jitter), or `None` when this kind of
    /// retry is spent.
    pub(super) fn next_delay(&mut self, retry: Option<Retry>) -> Option<Duration> {
        match retry? {
            Retry::Soon if self.soon < BUSY_RETRIES => {
                self.soon += 1;
                Some(RETRY_DELAY)
            }
            Retry::BackOff if self.backoffs < RETRIES => {
                let delay = RETRY_DELAY * 2u32.pow(self.backoffs);
                self.backoffs += 1;
                Some(delay)
            }
            _ => None,
        }
    }
}

/// What a sync that fetched nothing concludes from its refs `round`: no one to ask; every
/// fetch failed; up to date on a holder's word; or no refs from anyone (holders that were
/// all unreachable, or did not have it, say nothing about what is newest).
pub(super) fn conclusion(
    id: RepositoryId,
    asked_anyone: bool,
    failures: Vec<(PeerId, FetchError)>,
    round: RefsRound,
    held_sequence: u64,
) -> Result<SyncOutcome, SyncError> {
    if !asked_anyone {
        return Err(SyncError::NoHolders(id));
    }
    if !failures.is_empty() {
        return Err(SyncError::AllFailed {
            repository: id,
            failures,
        });
    }
    if round.heard {
        return Ok(SyncOutcome::UpToDate {
            sequence: held_sequence,
        });
    }
    Err(SyncError::NoRefs {
        repository: id,
        tried: round.misses,
    })
}

/// Whether the DHT is searched for more holders now: once per sync, when the known
/// holders offered nothing newer or a fetch from them failed.
pub(super) fn search_dht(searched: bool, offers: usize, failures: usize) -> bool {
    !searched && (offers == 0 || failures > 0)
}

/// Whether a repository heard of (announced, or on a peer's list) is adopted under
/// `replicate = all`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Adoption {
    /// Held or followed already: kept, nothing to record.
    Kept,
    /// Follow it from now on.
    Follow,
    /// Not adopted, and why.
    Refused(&'static str),
}

/// Adoption is bounded: none once `max_followed` repositories are followed, and at most
/// what `within_rate` allows (it takes a token from the hourly budget, so it is asked
/// last, only for a repository that would otherwise be adopted). Keys are free: a
/// stranger can sign new repositories without end.
pub(super) fn adoption(
    held: bool,
    followed: bool,
    follow_count: usize,
    max_followed: usize,
    within_rate: impl FnOnce() -> bool,
) -> Adoption {
    if held || followed {
        Adoption::Kept
    } else if follow_count >= max_followed {
        Adoption::Refused("max_followed reached")
    } else if !within_rate() {
        Adoption::Refused("max_adoptions_per_hour reached")
    } else {
        Adoption::Follow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guts_protocol::wire::PackResponse;

    fn id() -> RepositoryId {
        RepositoryId::from_bytes([7; 20])
    }

    fn updated(sequence: u64) -> Result<SyncOutcome, SyncError> {
        Ok(SyncOutcome::Updated {
            sequence,
            from: "peer".into(),
            objects: 1,
            bytes: 1,
            millis: 1,
            via: None,
        })
    }

    fn all_failed(errors: Vec<FetchError>) -> Result<SyncOutcome, SyncError> {
        Err(SyncError::AllFailed {
            repository: id(),
            failures: errors.into_iter().map(|e| (PeerId::random(), e)).collect(),
        })
    }

    #[test]
    fn an_announced_sequence_not_reached_yet_is_retried_soon() {
        assert_eq!(retry_after(&updated(4), 5), Some(Retry::Soon));
        assert_eq!(retry_after(&updated(5), 5), None);
        assert_eq!(retry_after(&updated(3), 0), None, "nothing announced: done");
        let up_to_date = |sequence| Ok(SyncOutcome::UpToDate { sequence });
        assert_eq!(retry_after(&up_to_date(4), 5), Some(Retry::Soon));
        assert_eq!(retry_after(&up_to_date(5), 5), None);
    }

    #[test]
    fn busy_holders_soon_other_failures_back_off_no_holders_never() {
        let busy = || FetchError::Declined(PackResponse::Busy);
        assert_eq!(
            retry_after(&all_failed(vec![busy(), busy()]), 0),
            Some(Retry::Soon)
        );
        let mixed = all_failed(vec![busy(), FetchError::Declined(PackResponse::NotFound)]);
        assert_eq!(retry_after(&mixed, 0), Some(Retry::BackOff));
        let no_refs = Err(SyncError::NoRefs {
            repository: id(),
            tried: vec![],
        });
        assert_eq!(retry_after(&no_refs, 0), Some(Retry::BackOff));
        assert_eq!(retry_after(&Err(SyncError::NoHolders(id())), 9), None);
    }

    #[test]
    fn soon_retries_do_not_double_and_back_offs_do_each_within_its_own_budget() {
        let mut budget = RetryBudget::default();
        assert_eq!(budget.next_delay(None), None);
        for _ in 0..BUSY_RETRIES {
            assert_eq!(budget.next_delay(Some(Retry::Soon)), Some(RETRY_DELAY));
        }
        assert_eq!(
            budget.next_delay(Some(Retry::Soon)),
            None,
            "soon retries spent"
        );
        // Back-offs keep their own count: spent soon retries do not use them up.
        let delays: Vec<_> = (0..=RETRIES)
            .map(|_| budget.next_delay(Some(Retry::BackOff)))
            .collect();
        let expected: Vec<_> = (0..RETRIES)
            .map(|n| Some(RETRY_DELAY * 2u32.pow(n)))
            .chain([None])
            .collect();
        assert_eq!(delays, expected);
    }

    /// A round in which a holder answered with refs, none newer.
    fn heard() -> RefsRound {
        RefsRound {
            heard: true,
            ..RefsRound::default()
        }
    }

    #[test]
    fn a_sync_concludes_from_what_holders_said() {
        let peer = PeerId::random();
        assert!(matches!(
            conclusion(id(), false, vec![], heard(), 3),
            Err(SyncError::NoHolders(_))
        ));
        let failed = vec![(peer, FetchError::Declined(PackResponse::Busy))];
        assert!(matches!(
            conclusion(id(), true, failed, heard(), 3),
            Err(SyncError::AllFailed { .. })
        ));
        assert!(matches!(
            conclusion(id(), true, vec![], heard(), 3),
            Ok(SyncOutcome::UpToDate { sequence: 3 })
        ));
        // Nobody answered with refs: not "up to date", but why each gave none.
        let silent = RefsRound {
            misses: vec![(peer, "offline".into())],
            ..RefsRound::default()
        };
        match conclusion(id(), true, vec![], silent, 3) {
            Err(SyncError::NoRefs { tried, .. }) => {
                assert_eq!(tried, vec![(peer, "offline".into())])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_dht_is_searched_once_when_known_holders_fall_short() {
        assert!(search_dht(false, 0, 0), "no offers");
        assert!(search_dht(false, 2, 1), "a fetch failed");
        assert!(!search_dht(false, 2, 0), "an offer to fetch");
        assert!(!search_dht(true, 0, 1), "searched already");
    }

    #[test]
    fn adoption_is_bounded_by_the_follow_cap_then_the_hourly_budget() {
        let never = || -> bool { panic!("the budget is not spent on a kept repository") };
        assert_eq!(adoption(true, false, 10, 10, never), Adoption::Kept);
        assert_eq!(adoption(false, true, 10, 10, never), Adoption::Kept);
        let cap = adoption(false, false, 10, 10, || panic!("nor on one over the cap"));
        assert_eq!(cap, Adoption::Refused("max_followed reached"));
        assert_eq!(
            adoption(false, false, 9, 10, || false),
            Adoption::Refused("max_adoptions_per_hour reached")
        );
        assert_eq!(adoption(false, false, 9, 10, || true), Adoption::Follow);
    }
}
