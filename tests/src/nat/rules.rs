//! What a NAT router of a [`super::NatNet`] does, and the iptables rules that make it so.

use std::fmt;

/// How a NAT router maps its hosts' flows and what it does with unsolicited packets from
/// the internet. Set with [`super::NatNet::set_behaviour`]; see the module docs of
/// [`super`] for what each was checked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RouterBehaviour {
    /// Most home routers: port preserving, endpoint-independent mapping;
    /// address-and-port-dependent filtering (a port restricted cone); anything unsolicited,
    /// to the router's public address or forwarded towards its LAN, is dropped silently.
    #[default]
    SilentDrop,
    /// The mapping and filtering of [`SilentDrop`](Self::SilentDrop), but the router
    /// answers what it does not let in, as a Linux box with REJECT rules does (OpenWrt's
    /// default for its wan zone): a TCP reset for TCP, an ICMP port unreachable for UDP,
    /// for packets to its public address and for packets forwarded from the internet to
    /// its LAN. Other protocols (ping) are still dropped silently.
    Reject,
    /// Endpoint-dependent mapping: a random public port for every new flow
    /// (`MASQUERADE --random-fully`), so each peer sees another port; filtering as
    /// [`SilentDrop`](Self::SilentDrop). A symmetric NAT, which hole punching cannot cross.
    Symmetric,
}

impl RouterBehaviour {
    /// Every behaviour, for a matrix of tests.
    pub const ALL: [RouterBehaviour; 3] = [
        RouterBehaviour::SilentDrop,
        RouterBehaviour::Reject,
        RouterBehaviour::Symmetric,
    ];

    /// A short name for test output and test names: `silent-drop`, `reject`, `symmetric`.
    pub fn name(self) -> &'static str {
        match self {
            RouterBehaviour::SilentDrop => "silent-drop",
            RouterBehaviour::Reject => "reject",
            RouterBehaviour::Symmetric => "symmetric",
        }
    }

    /// The router's whole rule set, as `iptables-restore` input: restoring it replaces the
    /// rules of both tables at once, so there is no moment with half of them.
    pub(super) fn rules(self) -> String {
        let masquerade = match self {
            RouterBehaviour::Symmetric => "MASQUERADE --random-fully",
            RouterBehaviour::SilentDrop | RouterBehaviour::Reject => "MASQUERADE",
        };
        // After the ESTABLISHED,RELATED accepts: only what nothing inside asked for.
        let (refuse_input, refuse_forward) = match self {
            RouterBehaviour::Reject => (
                "-A INPUT -i wan0 -p tcp -j REJECT --reject-with tcp-reset\n\
                 -A INPUT -i wan0 -p udp -j REJECT --reject-with icmp-port-unreachable\n",
                "-A FORWARD -i wan0 -o lan0 -p tcp -j REJECT --reject-with tcp-reset\n\
                 -A FORWARD -i wan0 -o lan0 -p udp -j REJECT --reject-with icmp-port-unreachable\n",
            ),
            RouterBehaviour::SilentDrop | RouterBehaviour::Symmetric => ("", ""),
        };
        format!(
            "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o wan0 -j {masquerade}
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i wan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
{refuse_input}-A INPUT -i wan0 -j DROP
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -i lan0 -o lan0 -j ACCEPT
-A FORWARD -i lan0 -o wan0 -j ACCEPT
-A FORWARD -i wan0 -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
{refuse_forward}COMMIT
"
        )
    }
}

impl fmt::Display for RouterBehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::RouterBehaviour;

    /// The default is today's rule set, unchanged; the others differ from it only where
    /// they should.
    #[test]
    fn rule_sets_differ_only_where_they_should() {
        let silent = RouterBehaviour::SilentDrop.rules();
        assert_eq!(RouterBehaviour::default(), RouterBehaviour::SilentDrop);
        assert!(!silent.contains("REJECT") && !silent.contains("--random-fully"));
        let reject = RouterBehaviour::Reject.rules();
        assert_eq!(reject.matches("REJECT --reject-with").count(), 4);
        let kept: Vec<&str> = reject.lines().filter(|l| !l.contains("REJECT")).collect();
        assert_eq!(kept, silent.lines().collect::<Vec<_>>());
        let symmetric = RouterBehaviour::Symmetric.rules();
        assert_eq!(
            symmetric.replace(" --random-fully", ""),
            silent,
            "only the mapping changes"
        );
    }
}
