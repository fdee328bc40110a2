//! Kademlia with a per-peer budget.
//!
//! libp2p's Kademlia answers every request a peer sends, as fast as it sends them, and its
//! events do not say who asked (only `PutRecord` names a source). So the budget is kept
//! where the peer is still known: each message a peer's connection hands the behaviour
//! (a request, or an answer to one of our queries) costs one token; a peer out of tokens
//! has the message dropped unanswered and is reported, and the event loop charges it a
//! rate-limit penalty, which bans a peer that keeps at it. A dropped request leaves its
//! stream waiting for an answer that never comes; libp2p caps those at 32 per
//! connection, after which the connection takes no new Kademlia streams at all.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::ops::{Deref, DerefMut};
use std::task::{Context, Poll};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{PeerId, kad};

/// Checks between two sweeps of the limiter's idle peers.
const SWEEP_EVERY: u32 = 10_000;

/// What [`Limited`] reports.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // passed on at once, never stored
pub(crate) enum Event {
    /// What Kademlia itself reported.
    Kad(kad::Event),
    /// The peer went over its budget; some of its messages were dropped.
    OverBudget(PeerId),
}

/// A Kademlia behaviour with a per-peer message budget (see the module docs).
pub(crate) struct Limited<B> {
    inner: B,
    limiter: DefaultKeyedRateLimiter<PeerId>,
    over: HashSet<PeerId>,
    since_sweep: u32,
}

impl<B> Limited<B> {
    /// `per_second` messages per peer, in bursts of up to `burst`.
    pub(crate) fn new(inner: B, per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(rate).max(rate);
        Limited {
            inner,
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            over: HashSet::new(),
            since_sweep: 0,
        }
    }
}

impl<B> Deref for Limited<B> {
    type Target = B;
    fn deref(&self) -> &B {
        &self.inner
    }
}

impl<B> DerefMut for Limited<B> {
    fn deref_mut(&mut self) -> &mut B {
        &mut self.inner
    }
}

impl<B> NetworkBehaviour for Limited<B>
where
    B: NetworkBehaviour<ToSwarm = kad::Event>,
{
    type ConnectionHandler = B::ConnectionHandler;
    type ToSwarm = Event;

    pass_to_inner!(pending_inbound);

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    pass_to_inner!(established_outbound);

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event)
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            // Forget peers whose bucket is full again, so the map holds only the active.
            self.since_sweep = 0;
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        if self.limiter.check_key(&peer).is_err() {
            self.over.insert(peer);
            return;
        }
        self.inner
            .on_connection_handler_event(peer, connection, event)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some(peer) = self.over.iter().next().copied() {
            self.over.remove(&peer);
            return Poll::Ready(ToSwarm::GenerateEvent(Event::OverBudget(peer)));
        }
        self.inner.poll(cx).map(|event| event.map_out(Event::Kad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_budget_still_lets_one_message_a_second_through() {
        let limited = Limited::new((), 0, 0);
        let peer = PeerId::random();
        assert!(limited.limiter.check_key(&peer).is_ok());
        assert!(limited.limiter.check_key(&peer).is_err());
    }

    #[test]
    fn the_budget_is_per_peer() {
        let limited = Limited::new((), 10, 20);
        let (a, b) = (PeerId::random(), PeerId::random());
        let allowed = (0..100)
            .filter(|_| limited.limiter.check_key(&a).is_ok())
            .count();
        assert_eq!(allowed, 20, "a burst, then nothing");
        assert!(
            limited.limiter.check_key(&b).is_ok(),
            "another peer is not charged"
        );
    }
}
