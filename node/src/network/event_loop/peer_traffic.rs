//! What peers ask and announce: sync requests answered or handed to the sync side
//! (within each peer's rate, and `RateLimited` when the sync side is full), our own
//! requests' answers, and announcements published and judged.

use guts_protocol::wire::{
    self, Announcement, ChangesAnnouncement, SharedAnnouncement, SyncRequest, SyncResponse,
};
use libp2p::request_response::{self, InboundFailure};
use libp2p::{PeerId, gossipsub};
use tokio::sync::mpsc;

use super::EventLoop;
use crate::network::client::{Event, RequestError, Topic};
use crate::wire::{ANNOUNCE_RATE_LIMIT_KEY, SYNC_RATE_LIMIT_KEY, penalty_for};

impl EventLoop {
    pub(super) fn on_sync_event(
        &mut self,
        event: request_response::Event<SyncRequest, SyncResponse>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                // The connection manager's token bucket, checked here so a flood is turned
                // away before it costs a task or a disk read.
                if !self.manager().allow_request(peer, SYNC_RATE_LIMIT_KEY) {
                    self.respond(channel, SyncResponse::RateLimited);
                    return;
                }
                if let Some(Event::InboundRequest { channel, .. }) =
                    self.emit(Event::InboundRequest {
                        peer,
                        request,
                        channel,
                    })
                {
                    self.respond(channel, SyncResponse::RateLimited);
                }
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if matches!(response, SyncResponse::RateLimited) {
                    self.busy.limited(peer, std::time::Instant::now());
                } else {
                    self.busy.answered(&peer);
                }
                if let Some(reply) = self.requests.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.requests.remove(&request_id) {
                    let failure = match &error {
                        request_response::OutboundFailure::Io(e) => match penalty_for(e) {
                            Some(penalty) => RequestError::Misbehaved {
                                penalty,
                                reason: e.to_string(),
                            },
                            None => RequestError::Failed(e.to_string()),
                        },
                        other => RequestError::Failed(other.to_string()),
                    };
                    // A requester that stopped waiting (its round ended on other answers)
                    // cannot apply the penalty: the peer still pays for what it sent.
                    if let Err(Err(RequestError::Misbehaved { penalty, .. })) =
                        reply.send(Err(failure))
                    {
                        self.manager().penalize(peer, penalty);
                    }
                }
            }
            request_response::Event::InboundFailure {
                peer,
                error: InboundFailure::Io(e),
                ..
            } => {
                tracing::debug!(%peer, "bad sync request: {e}");
                if let Some(penalty) = penalty_for(&e) {
                    self.manager().penalize(peer, penalty);
                }
            }
            other => tracing::debug!(?other, "sync"),
        }
    }

    pub(super) fn respond(
        &mut self,
        channel: request_response::ResponseChannel<SyncResponse>,
        response: SyncResponse,
    ) {
        let _ = self
            .swarm
            .behaviour_mut()
            .sync
            .send_response(channel, response);
    }

    /// Hands `event` out without waiting; gives it back (turned away) when the queue is
    /// full.
    pub(super) fn emit(&mut self, event: Event) -> Option<Event> {
        match self.events.try_send(event) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(event)) => {
                tracing::debug!("sync side busy: {event:?} turned away");
                Some(event)
            }
            // The sync side has stopped: the node is shutting down.
            Err(mpsc::error::TrySendError::Closed(_)) => None,
        }
    }

    /// Publishes an announcement. Without peers in the mesh it goes nowhere, which is
    /// fine: anti-entropy brings followers up to date.
    pub(super) fn announce(&mut self, announcement: &Announcement) {
        let topic = gossipsub::IdentTopic::new(self.config.network.announce_topic());
        let data = wire::encode(announcement);
        match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
            Ok(_) => tracing::info!(
                repository = %announcement.header().repository(),
                sequence = announcement.header().sequence(),
                "announced"
            ),
            Err(e) => tracing::debug!("announcement not published: {e}"),
        }
    }

    /// Publishes news of a repository with maintainers on its topic.
    pub(super) fn announce_shared(&mut self, announcement: &SharedAnnouncement) {
        let topic = gossipsub::IdentTopic::new(self.config.network.shared_announce_topic());
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, wire::encode(announcement))
        {
            Ok(_) => tracing::info!(repository = %announcement.repository(), "announced"),
            Err(e) => tracing::debug!("announcement not published: {e}"),
        }
    }

    /// Publishes new tips of a repository's patches and issues on their topic.
    pub(super) fn announce_changes(&mut self, announcement: &ChangesAnnouncement) {
        let topic = gossipsub::IdentTopic::new(self.config.network.changes_topic());
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, wire::encode(announcement))
        {
            Ok(_) => tracing::info!(
                repository = %announcement.repository,
                tips = announcement.tips.len(),
                "announced changes"
            ),
            Err(e) => tracing::debug!("changes announcement not published: {e}"),
        }
    }

    /// A gossiped message goes out to be judged; gossipsub holds it until the verdict.
    /// Beyond its relayer's rate it is ignored here (not relayed, no penalty: an honest
    /// relayer may pass on a burst).
    pub(super) fn on_gossip(
        &mut self,
        propagation_source: PeerId,
        message_id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        if !self
            .manager()
            .within_rate(propagation_source, ANNOUNCE_RATE_LIMIT_KEY)
        {
            tracing::debug!(%propagation_source, "announcement over the relayer's rate: ignored");
            return self.ignore_announcement(&message_id, &propagation_source, "relayer_rate");
        }
        let network = &self.config.network;
        let topic = if message.topic
            == gossipsub::IdentTopic::new(network.shared_announce_topic()).hash()
        {
            Topic::Shared
        } else if message.topic == gossipsub::IdentTopic::new(network.changes_topic()).hash() {
            Topic::Changes
        } else {
            Topic::Refs
        };
        let event = Event::Announcement {
            propagation_source,
            message_id,
            publisher: message.source,
            topic,
            data: message.data,
        };
        if let Some(Event::Announcement {
            propagation_source,
            message_id,
            ..
        }) = self.emit(event)
        {
            self.ignore_announcement(&message_id, &propagation_source, "busy");
        }
    }

    /// Tells gossipsub not to relay an announcement the loop turned away, and counts it.
    pub(super) fn ignore_announcement(
        &mut self,
        message_id: &gossipsub::MessageId,
        propagation_source: &PeerId,
        verdict: &'static str,
    ) {
        self.metrics
            .announcements
            .get_or_create(&crate::metrics::Verdict { verdict })
            .inc();
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(
                message_id,
                propagation_source,
                gossipsub::MessageAcceptance::Ignore,
            );
    }
}
