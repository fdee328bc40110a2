//! Transport stack and swarm: TCP (Noise, yamux) and QUIC, or TCP alone behind a private
//! network key (pnet); DNS, relay client.

use futures::future::Either;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::PnetConfig;
use libp2p::{PeerId, Swarm, SwarmBuilder, Transport, noise, quic, tcp, yamux};
use prometheus_client::registry::Registry;

use super::behaviour::Behaviour;
use crate::config::Config;
use crate::error::NodeError;

/// Builds the swarm. Bandwidth metrics are registered in `registry`.
pub(crate) fn build(
    keypair: Keypair,
    config: &Config,
    registry: &mut Registry,
    manager_metrics: crate::metrics::ManagerMetrics,
) -> Result<Swarm<Behaviour>, NodeError> {
    let timeout = config.net.connection_timeout;
    let setup = |what: &str, e: &dyn std::fmt::Display| NodeError::Setup(format!("{what}: {e}"));
    let psk = config.net.swarm_psk()?;
    if let Some(psk) = &psk {
        tracing::info!(
            "private network: swarm key fingerprint {}; TCP only",
            psk.fingerprint()
        );
    }
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        // Transports are built by hand rather than with `with_tcp`/`with_quic` so the
        // whole TCP handshake (pnet, Noise, yamux) is bounded by the connection timeout,
        // and so a private network leaves QUIC out: pnet wraps byte streams only.
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)?;
            let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
            let transport: Boxed<(PeerId, StreamMuxerBox)> = match psk {
                Some(psk) => tcp
                    .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default())
                    .timeout(timeout)
                    .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
                    .boxed(),
                None => {
                    let mut quic = quic::Config::new(key);
                    quic.handshake_timeout = timeout;
                    tcp.upgrade(Version::V1Lazy)
                        .authenticate(noise)
                        .multiplex(yamux::Config::default())
                        .timeout(timeout)
                        .or_transport(quic::tokio::Transport::new(quic))
                        .map(|either, _| match either {
                            Either::Left((peer, muxer)) => (peer, StreamMuxerBox::new(muxer)),
                            Either::Right((peer, conn)) => (peer, StreamMuxerBox::new(conn)),
                        })
                        .boxed()
                }
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(transport)
        })
        .map_err(|e| setup("transport", &e))?
        .with_dns()
        .map_err(|e| setup("DNS resolver", &e))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| setup("relay client", &e))?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key, relay_client| {
            Behaviour::new(key, relay_client, config, manager_metrics)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| setup("behaviour", &e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.net.idle_connection_timeout))
        // The builder wraps the whole transport in a timeout of its own (10 s unless told),
        // which would cap `connection_timeout` there.
        .with_connection_timeout(timeout)
        .build();
    Ok(swarm)
}
