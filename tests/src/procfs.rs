//! What the benchmarks read of a process from `/proc`: memory, CPU time, age.

use std::fmt::Display;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// A `/proc/<pid>/status` field (`VmRSS:`, `VmHWM:`, ...) in KiB; `pid` may be `"self"`.
/// `None` once the process is gone.
pub fn status_kib(pid: impl Display, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times.
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces and
/// parentheses): index 0 is the state (field 3).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// CPU time (user + system) process `pid` has used so far; `None` once it is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let fields = stat_fields(pid)?;
    let ticks = fields.get(11)? + fields.get(12)?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks()))
}

/// How long ago process `pid` started; `None` once it is gone.
pub fn age(pid: u32) -> Option<Duration> {
    let start = *stat_fields(pid)?.get(19)? as f64 / clock_ticks();
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Duration::from_secs_f64((uptime - start).max(0.0)))
}
