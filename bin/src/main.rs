//! `guts`: run a Guts node, or talk to a running one through its control API.

mod api_args;
mod api_cmd;
mod collab_cmd;
mod logging;
mod maintainers_cmd;
mod mirror_cmd;
mod node_cmd;
mod policy_cmd;
mod repo_cmd;
mod verify_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Guts: git repositories hosted peer to peer, with no central server.
#[derive(Parser)]
#[command(name = "guts", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node until SIGINT or SIGTERM.
    Node(Box<node_cmd::NodeArgs>),
    /// Show a running node's status.
    Status {
        #[command(flatten)]
        api: api_args::ApiArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 if a running node answers its health check (for container healthchecks).
    Health {
        #[command(flatten)]
        api: api_args::ApiArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List a running node's connected peers.
    Peers {
        #[command(flatten)]
        api: api_args::ApiArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running node to connect to a peer (and keep that connection).
    Connect {
        #[command(flatten)]
        api: api_args::ApiArgs,
        /// The peer's multiaddr, with or without /p2p/<peer-id>.
        #[arg(value_name = "MULTIADDR", value_parser = guts_node::config::parse_multiaddr)]
        address: guts_node::Multiaddr,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show what the node logged lately; with --follow, each new line as it comes.
    Logs {
        #[command(flatten)]
        api: api_args::ApiArgs,
        /// Keep printing new lines until the node stops (or Ctrl-C).
        #[arg(long, short = 'f')]
        follow: bool,
        /// How many past lines to print (the node keeps the last 1000).
        #[arg(long, short = 'n', default_value_t = 100, value_name = "N")]
        lines: usize,
        /// Print each line as the node's JSON (`{"line": ...}`).
        #[arg(long)]
        json: bool,
    },
    /// Repositories: import, list, show, follow, sync.
    #[command(subcommand)]
    Repo(repo_cmd::RepoCommand),
    /// Issues: open, list, show, comment, label, assign, close, reopen.
    #[command(subcommand)]
    Issue(collab_cmd::IssueCommand),
    /// Patches: list, show, review, merge, comment, close (open and revise one with
    /// `git push guts://<id> HEAD:refs/patches`).
    #[command(subcommand)]
    Patch(collab_cmd::PatchCommand),
    /// What happened to patches and issues (oldest first, the latest 1000): opened,
    /// commented, revised, reviewed, closed.
    Events {
        /// Only this repository's.
        #[arg(long, value_parser = repo_cmd::parse_id)]
        repo: Option<guts_protocol::RepositoryId>,
        /// Since when: seconds since the epoch, a time (2026-12-01T09:00:00Z), or a
        /// duration ago (2h, 3days).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        #[command(flatten)]
        api: api_args::ApiArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Clone a repository into a working directory (the node fetches it first if needed).
    Clone {
        /// The repository id (or guts://<id>).
        #[arg(value_parser = repo_cmd::parse_id)]
        id: guts_protocol::RepositoryId,
        /// Where to put the working copy [default: the repository's name].
        dir: Option<PathBuf>,
        #[command(flatten)]
        api: api_args::ApiArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Mirrors: repositories this node signs that follow an upstream git repository.
    #[command(subcommand)]
    Mirror(mirror_cmd::MirrorCommand),
    /// Seed a key's repositories (every one it created or maintains) or one repository:
    /// followed and fetched as soon as the node hears of them, no adoption limits.
    Seed {
        #[command(flatten)]
        args: policy_cmd::TargetArgs,
        /// What of their patches, issues and forks to keep: all, maintainers or none.
        #[arg(long, value_name = "SCOPE", default_value = "all")]
        contributions: String,
    },
    /// Drop the seed rule of a key or repository (what is held stays followed).
    Unseed(policy_cmd::TargetArgs),
    /// Block a key's repositories or one repository: what is held of it is removed, and
    /// nothing of it is fetched, stored, served or relayed.
    Block(policy_cmd::TargetArgs),
    /// Drop the block of a key or repository.
    Unblock(policy_cmd::TargetArgs),
    /// Show the seeding policy in effect; with --reload, read its file again first (as
    /// SIGHUP does).
    Policy {
        #[command(flatten)]
        api: api_args::ApiArgs,
        /// Read the policy file again first.
        #[arg(long)]
        reload: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check, offline, that a clone's refs are what the repository's maintainers signed
    /// (clone with `git clone -c remote.origin.fetch='+refs/guts/*:refs/guts/*' URL`,
    /// so the signed record comes with it). Exits 1 if any ref differs.
    Verify {
        /// The clone [default: the current directory].
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The remote whose refs are checked [default: the only remote, or origin].
        #[arg(long, value_name = "NAME")]
        remote: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the control API token of the running node (found in its data dir, checked
    /// against the node), for `GUTS_API_TOKEN` where the data dir is out of reach.
    ApiToken {
        #[command(flatten)]
        api: api_args::ApiArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a new private network key (swarm.key format) for --swarm-key: every node
    /// of the network gets a copy, and no one else.
    SwarmKey,
    /// Print a shell's completion script for guts, e.g.
    /// `guts completions bash > ~/.local/share/bash-completion/completions/guts`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page of guts (roff), e.g. `guts man | man -l -`; with --dir, write
    /// one page per command there (guts.1, guts-node.1, guts-repo-init.1, ...).
    Man {
        /// A directory to write every command's page into, e.g. ~/.local/share/man/man1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print the peer id of the node whose data dir this is. Works offline.
    Id {
        /// The node's data dir [default: ~/.local/share/guts].
        #[arg(long, env = "GUTS_DATA_DIR", value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Create the identity if the data dir has none yet (as `guts node` does at its
        /// first start), instead of refusing.
        #[arg(long)]
        create: bool,
    },
}

/// Exit status for bad input (flags, config values): the same as clap's usage errors.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // SAFETY: nothing else runs yet; this is the first thing the process does.
    if let Err(e) = unsafe { guts_storage::tune_libgit2() } {
        eprintln!("error: cannot configure libgit2: {e}");
        return ExitCode::FAILURE;
    }
    // Tests only (a build with the guts-storage/failpoints feature): crash points.
    if let Some(spec) = std::env::var_os("GUTS_FAILPOINTS") {
        match guts_storage::failpoints::abort_at(&spec.to_string_lossy()) {
            Ok(points) => eprintln!("GUTS_FAILPOINTS: aborting at {}", points.join(", ")),
            Err(e) => {
                eprintln!("error: GUTS_FAILPOINTS: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    // A child the node starts to check a long history (see guts_storage::check_workers).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == guts_storage::CHECK_WORKER_ARG)
    {
        let status = guts_storage::check_worker_main(&args[2..]);
        return ExitCode::from(u8::try_from(status).unwrap_or(1));
    }
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Node(_)) {
        restore_sigpipe();
    }
    let result = match cli.command {
        Command::Node(args) => {
            // On Linux the running image itself, even if an upgrade replaced the file.
            let program = Some(std::path::PathBuf::from("/proc/self/exe"))
                .filter(|p| p.exists())
                .or_else(|| std::env::current_exe().ok());
            if let Some(program) = program {
                guts_storage::use_check_workers(program);
            }
            return node_cmd::run(*args);
        }
        Command::Status { api, json } => api_cmd::status(&api, json),
        Command::Health { api, json } => api_cmd::health(&api, json),
        Command::Peers { api, json } => api_cmd::peers(&api, json),
        Command::Connect { api, address, json } => {
            api_cmd::connect(&api, &address.to_string(), json)
        }
        Command::Id { data_dir, create } => print_id(data_dir, create),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "guts", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => man(dir),
        Command::ApiToken { api, json } => api_cmd::api_token(&api, json),
        Command::Logs {
            api,
            follow,
            lines,
            json,
        } => api_cmd::logs(&api, lines, follow, json),
        Command::SwarmKey => guts_node::config::new_swarm_key()
            .map(|key| print!("{key}"))
            .map_err(Into::into),
        Command::Repo(command) => repo_cmd::run(command),
        Command::Issue(command) => collab_cmd::run_issue(command),
        Command::Events {
            repo,
            since,
            api,
            json,
        } => collab_cmd::events(&api, repo, since.as_deref(), json),
        Command::Patch(command) => collab_cmd::run_patch(command),
        Command::Clone { id, dir, api, json } => repo_cmd::clone(&api, &id, dir, json),
        Command::Mirror(command) => mirror_cmd::run(command),
        Command::Seed {
            args,
            contributions,
        } => policy_cmd::run(
            &args.api,
            Some(guts_api::seeding::PolicyRequest::Seed {
                target: args.target,
                contributions: Some(contributions),
            }),
            args.json,
        ),
        Command::Unseed(args) => policy_cmd::run(
            &args.api,
            Some(guts_api::seeding::PolicyRequest::Unseed {
                target: args.target,
            }),
            args.json,
        ),
        Command::Block(args) => policy_cmd::run(
            &args.api,
            Some(guts_api::seeding::PolicyRequest::Block {
                target: args.target,
            }),
            args.json,
        ),
        Command::Unblock(args) => policy_cmd::run(
            &args.api,
            Some(guts_api::seeding::PolicyRequest::Unblock {
                target: args.target,
            }),
            args.json,
        ),
        Command::Policy { api, reload, json } => policy_cmd::run(
            &api,
            reload.then_some(guts_api::seeding::PolicyRequest::Reload),
            json,
        ),
        Command::Verify { dir, remote, json } => verify_cmd::run(&dir, remote.as_deref(), json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: {}",
                guts_api::terminal::safe_lines(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

fn print_id(data_dir: Option<PathBuf>, create: bool) -> anyhow::Result<()> {
    let dir = data_dir.unwrap_or_else(guts_node::config::default_data_dir);
    let key = dir.join(guts_storage::IDENTITY_FILE);
    // A mistyped path must not mint a new identity that looks like the node's.
    if !create && !key.exists() {
        anyhow::bail!(
            "no node identity in {} ({} does not exist): is that the node's data dir? \
             `guts node --data-dir {0}` creates one at its first start, or `guts id --create` now",
            dir.display(),
            key.display()
        );
    }
    let identity = guts_storage::DataDir::open_unlocked(&dir)?.identity()?;
    let peer_id = guts_node::peer_id_of(&identity)?;
    if identity.was_created() {
        eprintln!("created a new identity in {}", dir.display());
    }
    println!("{peer_id}");
    Ok(())
}

fn man(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let command = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .map_err(|e| anyhow::anyhow!("cannot write man pages to {}: {e}", dir.display()))?;
            eprintln!("wrote the man pages of guts into {}", dir.display());
        }
        None => clap_mangen::Man::new(command).render(&mut std::io::stdout())?,
    }
    Ok(())
}

/// Client commands die quietly of SIGPIPE, as other command-line tools do, so that
/// `guts status | head -1` prints a line and no panic ("failed printing to stdout").
/// Rust ignores SIGPIPE by default; the node keeps it ignored (its sockets and pipes
/// report EPIPE as errors instead), and socket writes never raise it (std sends with
/// MSG_NOSIGNAL).
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: resets one signal's disposition before any thread or handler exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
