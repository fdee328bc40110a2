//! The control API's address as people write it: `127.0.0.1:9080`, `localhost:9080`, or the
//! URL the node prints, `http://127.0.0.1:9080`. One parser for `guts node --api`, every
//! client's `--api`, `GUTS_API` (which both read) and the config file.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

/// A control API address: a host (an IP literal or a name such as `localhost`) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiAddress {
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Why an API address was refused; the message names the value and the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid API address {value:?}: {reason}; expected HOST:PORT, e.g. 127.0.0.1:9080, localhost:9080 or http://127.0.0.1:9080"
)]
pub struct ApiAddressError {
    value: String,
    reason: &'static str,
}

impl ApiAddress {
    /// The address to bind or connect to without a name lookup: the IP literal, or
    /// 127.0.0.1 for `localhost` (the node listens there by default, and a resolver
    /// could also answer `::1`, where it does not). `None` for other names.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match &self.host {
            Host::Ip(ip) => Some(SocketAddr::new(*ip, self.port)),
            Host::Name(n) if n.eq_ignore_ascii_case("localhost") => {
                Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port))
            }
            Host::Name(_) => None,
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL, `http://HOST:PORT`.
    pub fn url(&self) -> String {
        format!("http://{self}")
    }
}

impl From<SocketAddr> for ApiAddress {
    fn from(addr: SocketAddr) -> Self {
        ApiAddress {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        }
    }
}

impl FromStr for ApiAddress {
    type Err = ApiAddressError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let bad = |reason| ApiAddressError {
            value: value.to_owned(),
            reason,
        };
        let s = value.trim();
        let s = match s.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some(_) => return Err(bad("the control API speaks plain http")),
            None => s,
        };
        // The URL the node prints may be pasted with a trailing slash, nothing more.
        let s = s.strip_suffix('/').unwrap_or(s);
        if s.contains('/') || s.contains('@') || s.contains('?') {
            return Err(bad("only a host and a port, no path"));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (ip, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = after.strip_prefix(':').ok_or_else(|| bad("no port"))?;
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| bad("not an IPv6 address in [...]"))?;
            (Host::Ip(ip), port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
            if host.contains(':') {
                return Err(bad("an IPv6 address needs brackets, as in [::1]:9080"));
            }
            let host = match host.parse::<IpAddr>() {
                Ok(ip) => Host::Ip(ip),
                Err(_) if is_dns_name(host) => Host::Name(host.to_ascii_lowercase()),
                Err(_) => return Err(bad("the host is neither an IP address nor a name")),
            };
            (host, port)
        };
        // Port 0 is for `guts node`: any free port.
        let port = port
            .parse::<u16>()
            .map_err(|_| bad("the port must be a number from 0 to 65535"))?;
        Ok(ApiAddress { host, port })
    }
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl fmt::Display for ApiAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(ip) => write!(f, "{ip}:{}", self.port),
            Host::Name(n) => write!(f, "{n}:{}", self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_the_node_prints_and_what_people_type() {
        for (input, shown) in [
            ("127.0.0.1:9080", "127.0.0.1:9080"),
            ("http://127.0.0.1:9080", "127.0.0.1:9080"),
            ("http://127.0.0.1:9080/", "127.0.0.1:9080"),
            ("HTTP://localhost:9081", "localhost:9081"),
            ("localhost:9080", "localhost:9080"),
            ("[::1]:9080", "[::1]:9080"),
            ("http://[::1]:9080/", "[::1]:9080"),
            ("guts-0.guts-peers:9080", "guts-0.guts-peers:9080"),
        ] {
            let a: ApiAddress = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(a.to_string(), shown, "{input}");
        }
        let local: ApiAddress = "localhost:9080".parse().unwrap();
        assert_eq!(local.socket_addr(), Some("127.0.0.1:9080".parse().unwrap()));
        let named: ApiAddress = "node.example:9080".parse().unwrap();
        assert_eq!(named.socket_addr(), None);
        assert_eq!(named.url(), "http://node.example:9080");
    }

    #[test]
    fn refuses_naming_the_value_and_why() {
        for (input, why) in [
            ("127.0.0.1", "no port"),
            ("https://127.0.0.1:9080", "plain http"),
            ("http://127.0.0.1:9080/api", "no path"),
            ("::1:9080", "brackets"),
            ("127.0.0.1:port", "0 to 65535"),
            ("127.0.0.1:70000", "0 to 65535"),
            ("bad host:9080", "neither"),
            ("[::1:9080", "unclosed"),
        ] {
            let e = input.parse::<ApiAddress>().expect_err(input).to_string();
            assert!(e.contains(&format!("{input:?}")), "{e}");
            assert!(e.contains(why), "{input}: {e}");
        }
    }
}
