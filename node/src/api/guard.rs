//! Who may use the control API: the token check, the `Host` and `Origin` checks, and the
//! node's proof that it holds the token (see [`guts_api::auth`]).
//!
//! Order matters: requests from web pages (any `Origin`) and requests addressed to
//! another name (`Host`, so DNS rebinding) are refused before anything else, then the
//! token is checked for everything but `/health` (and `/metrics` from loopback).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use guts_api::auth::{self, Token};

use super::error::ApiError;

/// The API's credential and address.
pub(crate) struct Guard {
    token: Token,
    bound: SocketAddr,
}

impl Guard {
    pub fn new(token: Token, bound: SocketAddr) -> Arc<Guard> {
        Arc::new(Guard { token, bound })
    }

    /// Whether `host` (a `Host` header) names this API: its own IP, or `localhost` when
    /// it listens on loopback, on its port. An API bound to every interface (in a
    /// container, behind published ports) takes any IP literal on any port; names other
    /// than `localhost` never pass, which is what stops DNS rebinding.
    fn host_allowed(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        let wildcard = self.bound.ip().is_unspecified();
        if !wildcard && port != self.bound.port() {
            return false;
        }
        if name.eq_ignore_ascii_case("localhost") {
            return wildcard || self.bound.ip().is_loopback();
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => wildcard || ip == self.bound.ip(),
            Err(_) => false,
        }
    }

    /// Whether the request carries this node's token.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.token.matches(t.trim()))
    }
}

/// Splits a `Host` header into name and port (80 when absent); `None` if malformed.
fn split_host(host: &str) -> Option<(&str, u16)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        match after {
            "" => (ip, None),
            p => (ip, Some(p.strip_prefix(':')?)),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 80,
    };
    (!name.is_empty()).then_some((name, port))
}

/// The middleware every request goes through.
pub(crate) async fn guard(
    State(guard): State<Arc<Guard>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        return ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "requests from web pages are refused (Origin: {:?})",
                String::from_utf8_lossy(origin.as_bytes())
            ),
        )
        .into_response();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let Some(host) = host.filter(|h| guard.host_allowed(h)).map(str::to_owned) else {
        let shown = headers
            .get(header::HOST)
            .map(|h| format!("{:?}", String::from_utf8_lossy(h.as_bytes())))
            .unwrap_or_else(|| "(none)".into());
        return ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "Host {shown} is not this API's address ({}): address it by IP",
                guard.bound
            ),
        )
        .into_response();
    };
    let nonce = headers
        .get(auth::NONCE_HEADER)
        .and_then(|n| n.to_str().ok())
        .filter(|n| auth::is_valid_nonce(n))
        .map(str::to_owned);
    let path = request.uri().path();
    let open = path == "/health" || (path == "/metrics" && remote.ip().is_loopback());
    let mut response = if open || guard.authorized(headers) {
        next.run(request).await
    } else {
        let why = if headers.contains_key(header::AUTHORIZATION) {
            "wrong API token (the node writes a fresh one at every start)"
        } else {
            "this request needs the node's API token"
        };
        let mut response = ApiError(
            StatusCode::UNAUTHORIZED,
            format!(
                "{why}: send `Authorization: Bearer <token>` with the token from `{}` in the \
                 node's data dir (`guts` finds it itself when run as the node's user; \
                 elsewhere set {})",
                auth::TOKEN_FILE,
                auth::TOKEN_ENV
            ),
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"guts\""),
        );
        response
    };
    if let Some(nonce) = nonce
        && let Ok(proof) = HeaderValue::from_str(&guard.token.proof(&nonce, &host))
    {
        response.headers_mut().insert(auth::PROOF_HEADER, proof);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(bound: &str) -> Arc<Guard> {
        Guard::new(Token::generate().unwrap(), bound.parse().unwrap())
    }

    #[test]
    fn a_loopback_api_answers_only_its_own_address() {
        let g = guard("127.0.0.1:9080");
        for ok in ["127.0.0.1:9080", "localhost:9080", "LOCALHOST:9080"] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:9080",
            "127.0.0.1:9081",
            "127.0.0.2:9080",
            "127.0.0.1",
            "localhost",
            "[::1]:9080",
            "",
            ":9080",
            "127.0.0.1:port",
            "localhost.:9080",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
        let v6 = guard("[::1]:9080");
        assert!(v6.host_allowed("[::1]:9080"));
        assert!(v6.host_allowed("localhost:9080"));
        assert!(!v6.host_allowed("[::1"));
        assert!(!v6.host_allowed("[::1]9080"));
    }

    #[test]
    fn a_wildcard_api_takes_ip_literals_on_any_port_but_no_names() {
        let g = guard("0.0.0.0:9080");
        for ok in [
            "172.18.0.2:9080",
            "127.0.0.1:19080",
            "localhost:1",
            "[::1]:5",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "node-1:9080",
            "rebind.evil.example:9080",
            "10.0.0.1.nip.io:9080",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn only_the_bearer_token_authorizes() {
        let token = Token::generate().unwrap();
        let g = Guard::new(token.clone(), "127.0.0.1:9080".parse().unwrap());
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            h
        };
        assert!(g.authorized(&with(&format!("Bearer {}", token.to_hex()))));
        assert!(!g.authorized(&HeaderMap::new()));
        assert!(!g.authorized(&with(&token.to_hex())));
        assert!(!g.authorized(&with(&format!("Basic {}", token.to_hex()))));
        let other = Token::generate().unwrap();
        assert!(!g.authorized(&with(&format!("Bearer {}", other.to_hex()))));
    }
}
