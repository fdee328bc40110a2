//! Accepting control API connections within bounds. Whoever can reach the port (another
//! user of the machine; any container of a compose network, where the API binds 0.0.0.0)
//! gets 401 without the token, but must not be able to hold the node's descriptors or
//! its attention: connections are capped, a request's head must arrive in time (on a
//! kept-alive connection too), and so must its body ([`super::body`]). axum's own
//! `serve` has no cap and no header deadline, hence this loop over hyper's.

use std::net::SocketAddr;
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

/// Serves `app` on `listener` until `stopped` turns true, then lets the connections
/// under way finish their current request. `what` names the server in logs; at most
/// `max_connections` are served at once.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    stopped: watch::Receiver<bool>,
    what: &'static str,
    max_connections: usize,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%remote, "{what}: {max_connections} connections open; closing a new one");
            continue;
        };
        connections.spawn(connection(
            stream,
            remote,
            app.clone(),
            stopped.clone(),
            slot,
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
    _slot: tokio::sync::OwnedSemaphorePermit,
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
