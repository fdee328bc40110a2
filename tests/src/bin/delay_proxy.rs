//! A TCP proxy that holds every byte for a fixed time each way: latency for the bad-link
//! tests, since this kernel has no netem qdisc (loss and bandwidth come from iptables and
//! tc tbf on the link itself).
//!
//!     delay-proxy LISTEN TARGET DELAY_MS
//!
//! Each chunk read on one side is written to the other `DELAY_MS` after it arrived, in
//! order; so a round trip through the proxy takes twice `DELAY_MS` more. A bounded queue
//! per direction applies backpressure instead of buffering without limit.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks in flight per direction: at 64 KiB each, 64 MiB, more than a 10 Mbit/s link
/// carries in any delay used here.
const QUEUE: usize = 1024;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, target, delay] = args.as_slice() else {
        eprintln!("usage: delay-proxy LISTEN TARGET DELAY_MS");
        std::process::exit(2);
    };
    let delay = match delay.parse::<u64>() {
        Ok(ms) => Duration::from_millis(ms),
        Err(e) => {
            eprintln!("delay-proxy: bad DELAY_MS {delay:?}: {e}");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("delay-proxy: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    // Ready: the test waits for this line.
    println!("listening on {listen}");
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        let target = target.clone();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            tokio::join!(
                pipe(in_read, out_write, delay),
                pipe(out_read, in_write, delay)
            );
        });
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
