//! Accepting control API connections within bounds. Whoever can reach the port (another
//! user of the machine; any container of a compose network, where the API binds 0.0.0.0)
//! gets 401 without the token, but must not be able to hold the node's descriptors or
//! its attention: connections are capped, a request's head must arrive in time (on a
//! kept-alive connection too), and so must its body ([`super::body`]). axum's own
//! `serve` has no cap and no header deadline, hence this loop over hyper's.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Connections served at once; a connection beyond them is closed as it is accepted.
/// Each client command uses one; `guts logs --follow` and a sync keep theirs open.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Time for a request's head to arrive, counted from when the connection is ready for
/// one: an idle kept-alive connection closes after it too.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// After an accept error (out of descriptors, say), the loop waits this long before
/// accepting again, rather than spinning on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How many connections a server takes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Names the server in logs.
    pub(crate) what: &'static str,
    /// Connections served at once.
    pub(crate) max_connections: usize,
    /// Connections served at once from one IP address (none: no such limit), so one host
    /// holding connections open cannot take every slot.
    pub(crate) per_ip: Option<usize>,
}

/// The connections open from each IP, for [`Bounds::per_ip`].
type PerIp = Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>;

/// One connection counted against its IP; uncounted when dropped.
struct IpSlot {
    counts: PerIp,
    ip: IpAddr,
}

impl IpSlot {
    fn take(counts: &PerIp, ip: IpAddr, limit: usize) -> Option<IpSlot> {
        let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `stopped` turns true, then lets the connections
/// under way finish their current request, within `bounds`.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    stopped: watch::Receiver<bool>,
    bounds: Bounds,
) {
    let Bounds {
        what,
        max_connections,
        per_ip,
    } = bounds;
    let slots = Arc::new(Semaphore::new(max_connections));
    let counts = PerIp::default();
    let mut connections = JoinSet::new();
    let mut stop = stopped.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        while connections.try_join_next().is_some() {}
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("{what}: cannot accept a connection: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let ip_slot = match per_ip {
            Some(limit) => match IpSlot::take(&counts, remote.ip(), limit) {
                Some(s) => Some(s),
                None => {
                    tracing::debug!(%remote, "{what}: {limit} connections open from its IP; closing a new one");
                    continue;
                }
            },
            None => None,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%remote, "{what}: {max_connections} connections open; closing a new one");
            continue;
        };
        connections.spawn(connection(
            stream,
            remote,
            app.clone(),
            stopped.clone(),
            (slot, ip_slot),
            what,
        ));
    }
    while connections.join_next().await.is_some() {}
}

async fn connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    app: Router,
    mut stopped: watch::Receiver<bool>,
    _slots: (tokio::sync::OwnedSemaphorePermit, Option<IpSlot>),
    what: &'static str,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        tower::ServiceExt::oneshot(app.clone(), request)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let stopping = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, "{what} connection ended: {e}");
    }
}
