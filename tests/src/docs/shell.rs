//! The terminals of a page: persistent `bash` processes reading commands from a pipe, each
//! in its own session so everything it starts can be found (in `/proc`) and stopped.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant};

/// How often the harness looks at status files and processes.
pub const POLL: Duration = Duration::from_millis(50);

/// A `bash --noprofile --norc` with job control, its working files in `dir`.
pub struct Shell {
    pub name: String,
    child: Child,
    stdin: ChildStdin,
    dir: PathBuf,
    commands: usize,
    killed: bool,
}

/// Where a command sent to a shell leaves its output and its status (or pid when it runs in
/// the background).
pub struct Sent {
    pub output: PathBuf,
    pub status: PathBuf,
}

impl Shell {
    /// Starts a shell with exactly `env`, in `cwd`, keeping its files in `dir`.
    pub fn start(
        name: &str,
        env: &[(String, String)],
        cwd: &Path,
        dir: PathBuf,
    ) -> io::Result<Shell> {
        std::fs::create_dir_all(&dir)?;
        let log = File::create(dir.join("shell.log"))?;
        let mut command = std::process::Command::new("bash");
        command
            .args(["--noprofile", "--norc"])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: setsid is async-signal-safe. A session of its own leaves the shell no
        // controlling terminal to fight over with `set -m`, and names all it starts.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no stdin pipe"))?;
        let mut shell = Shell {
            name: name.to_string(),
            child,
            stdin,
            dir,
            commands: 0,
            killed: false,
        };
        shell.write("set -m\n")?;
        Ok(shell)
    }

    /// Runs `command` (sourced from a file, so a syntax error stays inside it) with stdin from
    /// /dev/null and stdout and stderr merged; in the background for a `running` command.
    pub fn send(&mut self, command: &str, background: bool) -> io::Result<Sent> {
        self.commands += 1;
        let n = self.commands;
        let script = self.dir.join(format!("command-{n}.sh"));
        let sent = Sent {
            output: self.dir.join(format!("output-{n}")),
            status: self
                .dir
                .join(format!("{}-{n}", if background { "pid" } else { "status" })),
        };
        std::fs::write(&script, format!("{command}\n"))?;
        let (script, output, status) =
            (quote(&script)?, quote(&sent.output)?, quote(&sent.status)?);
        // `echo` is a builtin: one write of "N\n", complete once it ends with a newline.
        let line = if background {
            format!("{{ . {script}\n}} </dev/null >{output} 2>&1 & echo $! >{status}\n")
        } else {
            format!("{{ . {script}\n}} </dev/null >{output} 2>&1; echo $? >{status}\n")
        };
        self.write(&line)?;
        Ok(sent)
    }

    /// Asks the shell for the exit status of its background job `pid`, once it has ended.
    pub fn wait_job(&mut self, pid: i32) -> Option<i32> {
        let file = self.dir.join(format!("job-{pid}"));
        let line = format!("wait {pid}; echo $? >{}\n", quote(&file).ok()?);
        self.write(&line).ok()?;
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(status) = read_number(&file) {
                return Some(status);
            }
            if Instant::now() >= deadline || !self.alive() {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    fn write(&mut self, text: &str) -> io::Result<()> {
        self.stdin.write_all(text.as_bytes())?;
        self.stdin.flush()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What bash itself said (job notices, its own errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("shell.log")).unwrap_or_default()
    }

    /// Kills the shell and every process of its session, and reaps the shell.
    pub fn kill(&mut self) {
        if std::mem::replace(&mut self.killed, true) {
            return;
        }
        let session = self.child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let members: Vec<Proc> = processes().filter(|p| p.session == session).collect();
            if members.iter().all(|p| p.zombie) || Instant::now() >= deadline {
                break;
            }
            for p in members {
                signal(-p.pgrp, libc::SIGKILL);
                signal(p.pid, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A number written by `echo` into `path`, once complete.
pub fn read_number(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.strip_suffix('\n')?.trim().parse().ok()
}

fn quote(path: &Path) -> io::Result<String> {
    let path = path
        .to_str()
        .ok_or_else(|| io::Error::other(format!("not UTF-8: {}", path.display())))?;
    shlex::try_quote(path)
        .map(|q| q.into_owned())
        .map_err(|e| io::Error::other(format!("{path}: {e}")))
}

/// Sends `signal` to a process (`target` > 0) or a process group (`target` < 0).
pub fn signal(target: i32, signal: i32) {
    // SAFETY: kill(2) has no memory effects; a target that is gone gives ESRCH.
    unsafe {
        libc::kill(target, signal);
    }
}

/// A process as `/proc/<pid>/stat` shows it.
pub struct Proc {
    pub pid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub zombie: bool,
}

/// The processes of this machine (those visible in `/proc`).
pub fn processes() -> impl Iterator<Item = Proc> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(process)
}

pub fn process(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Proc {
        pid,
        zombie: *fields.first()? == "Z",
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
    })
}

/// Whether process `pid` still runs (a zombie has ended).
pub fn running(pid: i32) -> bool {
    process(pid).is_some_and(|p| !p.zombie)
}

/// Whether any process of group `pgid` still runs.
pub fn group_running(pgid: i32) -> bool {
    processes().any(|p| p.pgrp == pgid && !p.zombie)
}
