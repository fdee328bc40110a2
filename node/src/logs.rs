//! The node's recent log lines, for `guts logs`: whoever sets up logging copies each line
//! here (the `guts` binary does), and the control API hands them out and follows them.
//! Bounded: the last [`RECENT`] lines, each cut at [`MAX_LINE`] bytes, and a reader that
//! falls behind by more than the channel holds is told how many it missed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::broadcast;

/// Lines kept for a reader that asks for the past.
pub const RECENT: usize = 1000;
/// Longest line kept, in bytes; longer ones are cut.
pub const MAX_LINE: usize = 4096;
/// Lines a following reader may fall behind before it skips.
const LIVE: usize = 1024;

/// Where log lines go for `guts logs`.
#[derive(Clone)]
pub struct LogTap {
    inner: Arc<Inner>,
}

struct Inner {
    recent: Mutex<VecDeque<Arc<str>>>,
    live: broadcast::Sender<Arc<str>>,
}

/// The process's log tap (one per process, as the tracing subscriber is).
pub fn tap() -> &'static LogTap {
    static TAP: OnceLock<LogTap> = OnceLock::new();
    TAP.get_or_init(LogTap::new)
}

impl LogTap {
    fn new() -> Self {
        LogTap {
            inner: Arc::new(Inner {
                recent: Mutex::new(VecDeque::with_capacity(RECENT)),
                live: broadcast::channel(LIVE).0,
            }),
        }
    }

    /// Keeps one line (a trailing newline is dropped) and hands it to followers.
    pub fn push(&self, line: &str) {
        let line = line.trim_end_matches(['\n', '\r']);
        let mut end = line.len().min(MAX_LINE);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        let line: Arc<str> = Arc::from(&line[..end]);
        let mut recent = self.inner.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(line.clone());
        // Sent under the lock, so a reader that subscribes in `follow` sees each line
        // either in its past or live, never both or neither.
        let _ = self.inner.live.send(line);
    }

    /// The last `n` lines kept, and a receiver of every line after them.
    pub fn follow(&self, n: usize) -> (Vec<Arc<str>>, broadcast::Receiver<Arc<str>>) {
        let recent = self.inner.recent.lock().unwrap_or_else(|e| e.into_inner());
        let past = recent
            .iter()
            .skip(recent.len().saturating_sub(n))
            .cloned()
            .collect();
        (past, self.inner.live.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_cut_to_size_and_hands_on_new_ones() {
        let tap = LogTap::new();
        for i in 0..RECENT + 5 {
            tap.push(&format!("line {i}\n"));
        }
        let (past, mut live) = tap.follow(3);
        let past: Vec<&str> = past.iter().map(|l| &**l).collect();
        assert_eq!(past, ["line 1002", "line 1003", "line 1004"]);
        assert_eq!(tap.follow(usize::MAX).0.len(), RECENT);
        tap.push(&"é".repeat(MAX_LINE));
        let long = live.try_recv().unwrap();
        assert!(
            long.len() <= MAX_LINE && long.len() >= MAX_LINE - 1,
            "{}",
            long.len()
        );
        assert!(live.try_recv().is_err());
    }
}
