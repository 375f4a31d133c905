//! `minotaur`: a node of the Minotaur game-server cluster, and its console.
//!
//! This file only parses the command line and the environment, installs logging and hands over
//! to `node::run` (a node) or `console::client` (`remote`, `rpc`). See the README for the
//! commands and the environment variables.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use minotaur::config::Config;
use minotaur::{console, node, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "minotaur",
    version,
    about = "Minotaur game server: a node of the cluster and its console"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one node in the foreground (what the container runs).
    Start,
    /// Interactive console attached to a running node.
    Remote {
        /// Node to attach to (default: RELEASE_NODE, or this host's default name).
        #[arg(long)]
        node: Option<String>,
    },
    /// Run one console command on a running node and print its answer.
    Rpc {
        /// Node to ask (default: RELEASE_NODE, or this host's default name).
        #[arg(long)]
        node: Option<String>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
        /// The command and its arguments, e.g. `nodes` or `ping minotaur@10.0.1.7`.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Exit 0 when this host's node is ready (its /healthz answers 200): the container
    /// HEALTHCHECK.
    Health,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            eprint!("error: {e}");
            return ExitCode::from(2);
        }
    };
    raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Start => {
                telemetry::init(config.log_format);
                node::run(config).await
            }
            Command::Remote { node } => console::client::remote(&config, node.as_deref()).await,
            Command::Rpc {
                node,
                json,
                command,
            } => console::client::rpc(&config, node.as_deref(), json, command).await,
            Command::Health => node::health(&config).await,
        }
    })
}

/// Many links and consoles each hold a socket: use the hard limit, not the 1024 default.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
