//! Log setup: `RUST_LOG` filters, text or JSON lines on stderr.

use guts_node::LogFormat;
use tracing_subscriber::EnvFilter;

/// What is logged when `RUST_LOG` is not set: our own info lines, others' warnings.
/// kad warns "No known peers" at every periodic bootstrap of a node that is the first of
/// its network, which is normal, so its warnings are hidden by default.
const DEFAULT_FILTER: &str = "warn,libp2p_kad=error,guts=info,guts_node=info,guts_storage=info";

pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
