//! Log setup: `RUST_LOG` filters, text or JSON lines on stderr, and the same lines into
//! the node's log tap for `guts logs`.

use guts_node::LogFormat;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, fmt};

/// What is logged when `RUST_LOG` is not set: our own info lines, others' warnings.
/// kad warns "No known peers" at every periodic bootstrap of a node that is the first of
/// its network, which is normal, so its warnings are hidden by default.
const DEFAULT_FILTER: &str = "warn,libp2p_kad=error,guts=info,guts_node=info,guts_storage=info";

pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr).with_ansi(ansi))
            .with(fmt::layer().with_writer(Tap).with_ansi(false))
            .init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .json()
                    .flatten_event(true),
            )
            .with(fmt::layer().with_writer(Tap).json().flatten_event(true))
            .init(),
    }
}

/// Writes each formatted event into [`guts_node::logs::tap`].
struct Tap;

impl<'a> MakeWriter<'a> for Tap {
    type Writer = TapLine;

    fn make_writer(&'a self) -> TapLine {
        TapLine(Vec::new())
    }
}

/// One event's text, handed to the tap when the formatter is done with it.
struct TapLine(Vec<u8>);

impl std::io::Write for TapLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for TapLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        for line in text.lines().filter(|l| !l.is_empty()) {
            guts_node::logs::tap().push(line);
        }
    }
}
