//! Part 2: one node holding many repositories, and the real `guts node` on its data dir
//! (see main.rs).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use guts_node::Node;
use guts_node::api::types::{RepoSummary, StatusReport};
use guts_tests::cluster::test_config;
use guts_tests::eventually;
use guts_tests::git::{WorkRepo, disk_size};
use guts_tests::process::{guts_bin, http};
use guts_tests::procfs;

use super::{cpu_time, line, median, mib, ms, percentile, proc_bytes};

// ---- Part 2: one node holding many repositories --------------------------------------

/// What part 2 measured.
pub(super) struct ReposReport {
    create: Duration,
    disk: u64,
    inproc_start: Duration,
    inproc_list: Duration,
    starts: Vec<Duration>,
    crash_start: Duration,
    crash_walk: Duration,
    rss_at_start: u64,
    rss_settled: u64,
    peak: u64,
    first_round: Duration,
    first_round_cpu: Duration,
    repo_list: Vec<Duration>,
    status_cli: Vec<Duration>,
    interval: Duration,
    rounds: Vec<RoundCost>,
}

/// The CPU one anti-entropy round costs, in one setting.
struct RoundCost {
    setting: &'static str,
    node: Duration,
    idle_per_window: Duration,
    peer: Option<Duration>,
}

impl ReposReport {
    pub(super) fn print(&self, repos: usize) {
        println!();
        println!(
            "scale benchmark, part 2: one node holding {repos} repositories (one commit each), \
             the guts binary on loopback"
        );
        line("measure", "value", "goal / context");
        line(
            &format!("create {repos} repositories (NodeHandle::import, in-process)"),
            &ms(self.create),
            &format!(
                "{} per repository, {} on disk",
                ms(self.create / repos as u32),
                mib(self.disk)
            ),
        );
        line(
            "start in-process: Node::start until status answers",
            &ms(self.inproc_start),
            &format!("list in-process: {}", ms(self.inproc_list)),
        );
        let mut s = self.starts.clone();
        s.sort();
        line(
            &format!(
                "start the process until /api/v1/status answers ({} starts)",
                s.len()
            ),
            &format!("{} median, {} max", ms(median(&s)), ms(percentile(&s, 1.0))),
            "goal: 10,000 repositories start in under 2 s",
        );
        line(
            "  the same after a kill -9",
            &ms(self.crash_start),
            "goal: under 1 s; the others follow a clean shutdown (SIGTERM)",
        );
        line(
            "  and until every repository is checked (background)",
            &ms(self.crash_walk),
            "status counts those left; a write checks its own first",
        );
        line(
            "  VmRSS when status first answers (largest)",
            &mib(self.rss_at_start),
            "goal: within 200 MB",
        );
        line(
            "  VmRSS once the first round settled / peak VmHWM",
            &format!("{} / {}", mib(self.rss_settled), mib(self.peak)),
            "",
        );
        line(
            "  start + first round (providing all), until CPU is idle",
            &format!(
                "{} wall, {} CPU",
                ms(self.first_round),
                ms(self.first_round_cpu)
            ),
            "the node alone",
        );
        line(
            "guts repo list --json (median)",
            &ms(median(&self.repo_list)),
            &format!(
                "guts status --json: {} (the CLI's fixed cost)",
                ms(median(&self.status_cli))
            ),
        );
        for r in &self.rounds {
            let peer = r
                .peer
                .map(|p| format!(", the peer {}", ms(p)))
                .unwrap_or_default();
            line(
                &format!("one anti-entropy round, CPU: {}", r.setting),
                &ms(r.node),
                &format!(
                    "{:.1}% of a core at the default 60 s{peer}; idle {} per {:?}",
                    r.node.as_secs_f64() / 60.0 * 100.0,
                    ms(r.idle_per_window),
                    self.interval * ROUNDS
                ),
            );
        }
    }
}

/// Anti-entropy intervals in one measuring window.
const ROUNDS: u32 = 2;

pub(super) async fn many_repositories(count: usize, quick: bool) -> ReposReport {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir);
    let data_dir = dir.path().to_owned();

    // Creation: one tiny source repository imported under `count` names; each import
    // builds, verifies and stores its own pack and signs its own snapshot.
    eprintln!("creating {count} repositories...");
    let source = WorkRepo::new("tiny");
    source.commit(
        "refs/heads/main",
        &[("README.md", b"# tiny\n".as_slice())],
        "first",
    );
    source.repo.set_head("refs/heads/main").unwrap();
    let node = Node::start(config.clone()).await.expect("node starts");
    let handle = node.handle();
    let t = Instant::now();
    let mut done = 0;
    let mut imports = futures::stream::iter(0..count)
        .map(|i| {
            let (handle, path) = (handle.clone(), source.path().to_owned());
            async move {
                let name = format!("repo-{i:05}").parse().unwrap();
                handle.import(path, Some(name)).await
            }
        })
        .buffer_unordered(4);
    while let Some(imported) = imports.next().await {
        let (summary, changed) = imported.expect("import");
        assert!(changed && summary.sequence == 1, "{summary:?}");
        done += 1;
        if done % 1000 == 0 {
            eprintln!("  {done} after {:.0} s", t.elapsed().as_secs_f64());
        }
    }
    drop(imports);
    let create = t.elapsed();
    node.shutdown().await;
    let disk = disk_size(&data_dir);

    // The same start in-process, for comparison with the process.
    let t = Instant::now();
    let node = Node::start(config).await.expect("node restarts");
    node.handle().status().await.expect("status");
    let inproc_start = t.elapsed();
    let t = Instant::now();
    let listed = node.handle().repositories().await.expect("list");
    let inproc_list = t.elapsed();
    assert_eq!(listed.len(), count);
    node.shutdown().await;

    // The real binary. Blocking from here on: nothing else runs in this runtime.
    let interval = if quick {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(15)
    };
    let window = interval * ROUNDS;
    let quiet = if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    };
    let mut report = ReposReport {
        create,
        disk,
        inproc_start,
        inproc_list,
        starts: vec![],
        crash_start: Duration::ZERO,
        crash_walk: Duration::ZERO,
        rss_at_start: 0,
        rss_settled: 0,
        peak: 0,
        first_round: Duration::ZERO,
        first_round_cpu: Duration::ZERO,
        repo_list: vec![],
        status_cli: vec![],
        interval,
        rounds: vec![],
    };
    let peer_dir = tempfile::tempdir().unwrap();
    for with_peer in [false, true] {
        // The node with no round in the window: its idle CPU.
        let mut idle = start_big(&data_dir, "1h", &mut report);
        let peer = with_peer.then(|| connect_peer(&idle, peer_dir.path()));
        let pids: Vec<u32> = std::iter::once(idle.pid())
            .chain(peer.iter().map(Guts::pid))
            .collect();
        let (settled, cpu) = wait_quiet(&pids, quiet);
        if !with_peer {
            report.first_round = settled;
            report.first_round_cpu = cpu;
            report.rss_settled = proc_bytes(&idle.pid().to_string(), "VmRSS:");
            cli_timings(&idle, count, if quick { 1 } else { 5 }, &mut report);
        }
        let idle_cpu = cpu_over(&pids, window);
        report.peak = report
            .peak
            .max(proc_bytes(&idle.pid().to_string(), "VmHWM:"));
        idle.stop();
        drop(peer);

        // The same with a round every `interval`.
        let every = format!("{}ms", interval.as_millis());
        let mut busy = start_big(&data_dir, &every, &mut report);
        let peer = with_peer.then(|| connect_peer(&busy, peer_dir.path()));
        let pids: Vec<u32> = std::iter::once(busy.pid())
            .chain(peer.iter().map(Guts::pid))
            .collect();
        wait_quiet(&pids, quiet);
        let busy_cpu = cpu_over(&pids, window);
        report.peak = report
            .peak
            .max(proc_bytes(&busy.pid().to_string(), "VmHWM:"));
        // Still whole after its rounds.
        let listed: Vec<RepoSummary> = busy.client_json(&["repo", "list"]);
        assert_eq!(listed.len(), count);
        busy.stop();
        drop(peer);
        let per_round = |i: usize| busy_cpu[i].saturating_sub(idle_cpu[i]) / ROUNDS;
        report.rounds.push(RoundCost {
            setting: if with_peer {
                "with one peer"
            } else {
                "the node alone"
            },
            node: per_round(0),
            idle_per_window: idle_cpu[0],
            peer: with_peer.then(|| per_round(1)),
        });
    }
    // A crash: the next start finds no clean-shutdown record and checks every repository.
    let (mut crashed, _) = Guts::start(&data_dir, &[]);
    crashed.kill();
    let began = Instant::now();
    let (mut node, took) = Guts::start(&data_dir, &[]);
    report.crash_start = took;
    eventually(
        Duration::from_secs(600),
        "the walk after the kill",
        || match node.status() {
            Some(s) if s.recovering == 0 => Ok(()),
            Some(s) => Err(format!("{} left", s.recovering)),
            None => Err("no status".into()),
        },
    );
    report.crash_walk = began.elapsed();
    node.stop();
    report
}

/// A `guts node` process this benchmark started; killed on drop.
struct Guts {
    child: Child,
    api: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Guts {
    /// Starts `guts node` on `data_dir` with a known API port; returns once
    /// `/api/v1/status` answers, with the time that took.
    fn start(data_dir: &Path, args: &[&str]) -> (Guts, Duration) {
        std::fs::create_dir_all(data_dir).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let api: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = data_dir.with_extension("log");
        let bin = guts_bin(); // may build the binary: not part of the start
        let t = Instant::now();
        let child = Command::new(bin)
            .arg("node")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--api", &api.to_string()])
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--mdns", "off"])
            .args(args)
            .env_remove("GUTS_API")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn guts node");
        let mut node = Guts {
            child,
            api,
            data_dir: data_dir.to_owned(),
            log,
        };
        loop {
            if node.status().is_some() {
                return (node, t.elapsed());
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("guts node exited with {status}:\n{}", node.log_text());
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "no status after 2 minutes:\n{}",
                node.log_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/status` with the token the node wrote at this start (an older
    /// token is refused, so this only succeeds once this start is through).
    fn status(&self) -> Option<StatusReport> {
        let token = std::fs::read_to_string(self.data_dir.join("api-token")).ok()?;
        let response = http(
            self.api,
            "GET",
            "/api/v1/status",
            &[
                ("Host", &self.api.to_string()),
                ("Authorization", &format!("Bearer {}", token.trim())),
            ],
            "",
        )
        .ok()?;
        (response.code == 200)
            .then(|| serde_json::from_str(&response.body).ok())
            .flatten()
    }

    fn client(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(guts_bin());
        cmd.args(args)
            .args(["--json", "--api", &self.api.to_string()])
            .env("GUTS_DATA_DIR", &self.data_dir)
            .env_remove("GUTS_API_TOKEN");
        cmd
    }

    fn client_json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let out = self.client(args).output().expect("run guts");
        assert!(
            out.status.success(),
            "guts {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// SIGKILL, as a crash or the OOM killer would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then a clean exit.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "guts node: {status}\n{}", self.log_text());
    }
}

impl Drop for Guts {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the big node with anti-entropy every `interval`, recording start time and RSS.
fn start_big(data_dir: &Path, interval: &str, report: &mut ReposReport) -> Guts {
    let (node, took) = Guts::start(data_dir, &["--anti-entropy-interval", interval]);
    report.starts.push(took);
    let rss = proc_bytes(&node.pid().to_string(), "VmRSS:");
    report.rss_at_start = report.rss_at_start.max(rss);
    node
}

/// An empty node connected to `to` (both start a round when they connect).
fn connect_peer(to: &Guts, dir: &Path) -> Guts {
    let status = to.status().expect("status");
    let tcp = status
        .listen_addresses
        .iter()
        .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
        .expect("a loopback TCP address");
    let addr = format!("{tcp}/p2p/{}", status.peer_id);
    let (peer, _) = Guts::start(dir, &["--bootstrap", &addr]);
    let t = Instant::now();
    while to.status().is_none_or(|s| s.connected_peers == 0) {
        assert!(t.elapsed() < Duration::from_secs(30), "the peer connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    peer
}

/// Waits until `pids` together use under 3% of a core for `quiet`. Returns how long
/// after its exec the first process went quiet, and the CPU it had used by then (its
/// start and first round, when called right after it started).
fn wait_quiet(pids: &[u32], quiet: Duration) -> (Duration, Duration) {
    let t = Instant::now();
    let total = || pids.iter().map(|&p| cpu_time(p)).sum::<Duration>();
    let mut history = vec![(Instant::now(), total(), cpu_time(pids[0]))];
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = (Instant::now(), total(), cpu_time(pids[0]));
        history.push(now);
        // The state `quiet` ago: if little CPU was used since, the work ended then.
        if let Some(&(at, cpu, first)) = history.iter().rev().find(|h| now.0 - h.0 >= quiet) {
            let rate = (now.1 - cpu).as_secs_f64() / (now.0 - at).as_secs_f64();
            if rate < 0.03 {
                return (
                    procfs::age(pids[0])
                        .unwrap_or_default()
                        .saturating_sub(now.0 - at),
                    first,
                );
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "the nodes never went quiet"
        );
    }
}

/// CPU time each of `pids` uses over `window`.
fn cpu_over(pids: &[u32], window: Duration) -> Vec<Duration> {
    let before: Vec<Duration> = pids.iter().map(|&p| cpu_time(p)).collect();
    std::thread::sleep(window);
    pids.iter()
        .zip(before)
        .map(|(&p, b)| cpu_time(p).saturating_sub(b))
        .collect()
}

/// Times `guts repo list` (checked to list every repository) and `guts status`.
fn cli_timings(node: &Guts, count: usize, times: usize, report: &mut ReposReport) {
    for _ in 0..times {
        let t = Instant::now();
        let listed: Vec<RepoSummary> = node.client_json(&["repo", "list"]);
        report.repo_list.push(t.elapsed());
        assert_eq!(listed.len(), count, "guts repo list");
        assert!(listed.iter().all(|r| r.owned && r.sequence == 1));
        let t = Instant::now();
        let _: StatusReport = node.client_json(&["status"]);
        report.status_cli.push(t.elapsed());
    }
}
