//! `guts node`: settings from flags, then `GUTS_*` environment variables, then a TOML
//! file, then built-in defaults; then run until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgMatches, Args, FromArgMatches};
use guts_node::{Config, Node, NodeError};

use crate::{EXIT_USAGE, logging};

/// How long a clean shutdown may take before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Flags of `guts node`. Each setting also reads the `GUTS_*` variable shown in `--help`;
/// a flag that is not given leaves the config file's value (or the default) in place.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// TOML config file (any key left out keeps its default) [default:
    /// ~/.config/guts/config.toml, if it exists].
    #[arg(long, env = "GUTS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective config as TOML and exit.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    settings: SettingFlags,
}

/// The settings given as flags or variables, kept as parsed so they can be laid over the
/// config file once it is read: [`Config`] declares them (and their help) itself.
#[derive(Debug, Clone)]
struct SettingFlags(ArgMatches);

impl FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(SettingFlags(matches.clone()))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0 = matches.clone();
        Ok(())
    }
}

impl Args for SettingFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        Config::add_flags(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl NodeArgs {
    /// The effective config (flags and variables over the file over the defaults), and
    /// the file read, if any.
    fn config(&self) -> Result<(Config, Option<PathBuf>), guts_node::ConfigError> {
        let file = self
            .config
            .clone()
            .or_else(guts_api::settings::default_config_file);
        let mut c = match &file {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        c.update_from_arg_matches(&self.settings.0)
            .map_err(|e| guts_node::ConfigError::Inconsistent(e.to_string()))?;
        c.apply_private_defaults();
        c.validate()?;
        Ok((c, file))
    }
}

pub fn run(args: NodeArgs) -> ExitCode {
    let (config, file) = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if args.print_config {
        if let Some(file) = &file {
            println!("# read from {}", file.display());
        }
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    logging::init(config.log_format);
    if let Some(file) = &file {
        tracing::info!("settings from {}", file.display());
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_until_signal(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(NodeError::Config(e)) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_until_signal(config: Config) -> Result<(), NodeError> {
    let node = Node::start(config).await?;
    reload_policy_on_sighup(node.handle());
    let signal = wait_for_signal().await;
    tracing::info!("{signal}: shutting down");
    tokio::select! {
        _ = node.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("shutdown took longer than {}s; exiting anyway", SHUTDOWN_GRACE.as_secs());
        }
        second = wait_for_signal() => tracing::warn!("{second} again: exiting now"),
    }
    Ok(())
}

/// SIGHUP reads the seeding policy file again (a wrong file leaves the policy in effect,
/// and says why).
fn reload_policy_on_sighup(handle: guts_node::NodeHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!(
                "cannot watch for SIGHUP: the seeding policy reloads only through the API"
            );
            return;
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match handle.reload_policy().await {
                    Ok(report) => tracing::info!(
                        file = report.file,
                        seed = report.seed.len(),
                        block = report.block.len(),
                        removed = report.removed.len(),
                        followed = report.followed.len(),
                        "SIGHUP: seeding policy reloaded"
                    ),
                    Err(e) => tracing::error!("SIGHUP: the seeding policy in effect stays: {e}"),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = handle;
}

async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
