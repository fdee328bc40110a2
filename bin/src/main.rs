//! `guts`: run a Guts node, or talk to a running one through its control API.

mod logging;
mod node_cmd;
mod repo_cmd;

use guts_cli::client;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
        api: client::ApiArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 if a running node answers its health check (for container healthchecks).
    Health {
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// List a running node's connected peers.
    Peers {
        #[command(flatten)]
        api: client::ApiArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running node to connect to a peer (and keep that connection).
    Connect {
        #[command(flatten)]
        api: client::ApiArgs,
        /// The peer's multiaddr, with or without /p2p/<peer-id>.
        #[arg(value_name = "MULTIADDR", value_parser = guts_node::config::parse_multiaddr)]
        address: guts_node::Multiaddr,
    },
    /// Repositories: import, list, show, follow, sync.
    #[command(subcommand)]
    Repo(repo_cmd::RepoCommand),
    /// Clone a repository into a working directory (the node fetches it first if needed).
    Clone {
        /// The repository id (or guts://<id>).
        #[arg(value_parser = repo_cmd::parse_id)]
        id: guts_protocol::RepositoryId,
        /// Where to put the working copy.
        dir: PathBuf,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Print the control API token of the running node (found in its data dir, checked
    /// against the node), for `GUTS_API_TOKEN` where the data dir is out of reach.
    ApiToken {
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Print a new private network key (swarm.key format) for --swarm-key: every node
    /// of the network gets a copy, and no one else.
    SwarmKey,
    /// Print the peer id of the node whose data dir this is (creating its identity if
    /// there is none yet). Works offline.
    Id {
        /// The node's data dir.
        #[arg(long, env = "GUTS_DATA_DIR", value_name = "DIR")]
        data_dir: Option<PathBuf>,
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
        Command::Status { api, json } => client::status(&api, json),
        Command::Health { api } => client::health(&api),
        Command::Peers { api, json } => client::peers(&api, json),
        Command::Connect { api, address } => client::connect(&api, &address.to_string()),
        Command::Id { data_dir } => print_id(data_dir),
        Command::ApiToken { api } => client::api_token(&api),
        Command::SwarmKey => guts_node::config::new_swarm_key()
            .map(|key| print!("{key}"))
            .map_err(Into::into),
        Command::Repo(command) => repo_cmd::run(command),
        Command::Clone { id, dir, api } => repo_cmd::clone(&api, &id, &dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: {}",
                guts_cli::terminal::safe_lines(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

fn print_id(data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = data_dir.unwrap_or_else(guts_node::config::default_data_dir);
    let identity = guts_storage::DataDir::open_unlocked(&dir)?.identity()?;
    let peer_id = guts_node::peer_id_of(&identity)?;
    if identity.was_created() {
        eprintln!("created a new identity in {}", dir.display());
    }
    println!("{peer_id}");
    Ok(())
}
