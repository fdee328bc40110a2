//! Transport stack and swarm: TCP (Noise, yamux) and QUIC, DNS, relay client.

use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::{Swarm, SwarmBuilder, Transport, noise, tcp, yamux};
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
    let timeout = config.connection_timeout;
    let setup = |what: &str, e: &dyn std::fmt::Display| NodeError::Setup(format!("{what}: {e}"));
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_quic_config(|mut quic| {
            quic.handshake_timeout = timeout;
            quic
        })
        // TCP is built by hand rather than with `with_tcp` so the whole handshake
        // (TCP, Noise, yamux) is bounded by the connection timeout.
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default())
                    .timeout(timeout),
            )
        })
        .map_err(|e| setup("TCP transport", &e))?
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
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
        .build();
    Ok(swarm)
}
