//! What this node's relay server carries for others: the counts `guts status` shows an
//! operator (libp2p's metrics count the same events on `/metrics`).

use guts_api::RelayUseReport;
use libp2p::relay;

/// Counts of the relay server's reservations and circuits.
#[derive(Debug, Default)]
pub(crate) struct RelayUse {
    reservations: u64,
    reservations_accepted: u64,
    reservations_denied: u64,
    circuits: u64,
    circuits_accepted: u64,
    circuits_denied: u64,
    /// Circuits that ended at a limit (bytes or duration) rather than by their ends.
    circuits_cut: u64,
}

impl RelayUse {
    pub(crate) fn on_event(&mut self, event: &relay::Event) {
        use relay::Event as E;
        match event {
            E::ReservationReqAccepted { renewed, .. } => {
                if !renewed {
                    self.reservations += 1;
                }
                self.reservations_accepted += 1;
            }
            E::ReservationReqDenied { .. } => self.reservations_denied += 1,
            E::ReservationClosed { .. } | E::ReservationTimedOut { .. } => {
                self.reservations = self.reservations.saturating_sub(1);
            }
            E::CircuitReqAccepted { .. } => {
                self.circuits += 1;
                self.circuits_accepted += 1;
            }
            E::CircuitReqDenied { .. } => self.circuits_denied += 1,
            E::CircuitClosed { error, .. } => {
                self.circuits = self.circuits.saturating_sub(1);
                if error.is_some() {
                    self.circuits_cut += 1;
                }
            }
            _ => {}
        }
    }

    /// The report, with the limits each circuit runs under.
    pub(crate) fn report(&self, circuit_bytes: u64, circuit_secs: u64) -> RelayUseReport {
        RelayUseReport {
            circuit_bytes,
            circuit_secs,
            reservations: self.reservations,
            reservations_accepted: self.reservations_accepted,
            reservations_denied: self.reservations_denied,
            circuits: self.circuits,
            circuits_accepted: self.circuits_accepted,
            circuits_denied: self.circuits_denied,
            circuits_cut: self.circuits_cut,
        }
    }
}
