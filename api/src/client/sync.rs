//! A sync run on the node, its progress printed the way git prints a fetch's.

use std::io::IsTerminal;

use super::{Client, ClientError};
use crate::terminal::safe_lines;
use crate::{SyncOutcome, SyncProgress, SyncRequestBody};

/// Whether a sync prints its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Progress and the outcome on stderr.
    Shown,
    /// Nothing but failures (`git clone --quiet`).
    Quiet,
}

/// Runs a sync on the node, printing progress and the outcome on stderr the way git
/// does (stdout may be git's protocol channel); returns the outcome.
pub fn sync(
    client: &Client,
    id: &impl std::fmt::Display,
    from: Option<String>,
    progress: Progress,
) -> Result<SyncOutcome, ClientError> {
    let lines = client.post_lines(
        &format!("/api/v1/repos/{id}/sync"),
        &SyncRequestBody { prefer: from },
    )?;
    let tty = std::io::stderr().is_terminal();
    let mut shown = std::io::stderr();
    let mut sink = std::io::sink();
    let err: &mut dyn std::io::Write = match progress {
        Progress::Shown => &mut shown,
        Progress::Quiet => &mut sink,
    };
    for line in lines {
        let line =
            line.map_err(|e| ClientError::Stream(format!("the node stopped answering: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: SyncProgress = serde_json::from_str(&line).map_err(|e| {
            ClientError::Stream(format!(
                "unexpected line from the node: {}: {e}",
                crate::terminal::safe(&line)
            ))
        })?;
        match event {
            SyncProgress::Holders { asked } => {
                let _ = writeln!(err, "Asking {asked} holder(s) for refs");
            }
            SyncProgress::Refs { sequence } => {
                let _ = writeln!(err, "Fetching snapshot {sequence}");
            }
            SyncProgress::Receiving {
                objects,
                total,
                bytes,
            } => {
                let pct = (objects * 100).checked_div(total).unwrap_or(100);
                let text = format!(
                    "Receiving objects: {pct:3}% ({objects}/{total}), {}",
                    bytesize::ByteSize::b(bytes).display().iec()
                );
                if tty {
                    let _ = write!(err, "\r{text}");
                } else if objects == total {
                    let _ = writeln!(err, "{text}");
                }
            }
            SyncProgress::Done(outcome) => {
                if tty {
                    let _ = writeln!(err);
                }
                match &outcome {
                    SyncOutcome::UpToDate { sequence } => {
                        let _ = writeln!(err, "guts://{id} is up to date (sequence {sequence})");
                    }
                    SyncOutcome::Updated {
                        sequence,
                        from,
                        objects,
                        bytes,
                        millis,
                        via,
                    } => {
                        let path = match via {
                            Some(relay) => format!("through relay {relay}"),
                            None => "directly".to_owned(),
                        };
                        let _ = writeln!(
                            err,
                            "guts://{id} updated to sequence {sequence} from {from} ({path}): {objects} objects, {} in {:.1}s",
                            bytesize::ByteSize::b(*bytes).display().iec(),
                            *millis as f64 / 1000.0
                        );
                    }
                }
                return Ok(outcome);
            }
            SyncProgress::Failed { error } => {
                if tty {
                    let _ = writeln!(err);
                }
                return Err(ClientError::Node(safe_lines(&error).into_owned()));
            }
        }
    }
    Err(ClientError::Stream(
        "the node ended the sync without an outcome".into(),
    ))
}
