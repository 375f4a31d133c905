//! `minotaur`: a node of the Minotaur game-server cluster, and its console.
//!
//! This file only parses the command line and the environment, installs logging and hands over
//! to `node::run` (a node) or `console::client` (`remote`, `rpc`). See the README for the
//! commands and the environment variables.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use minotaur::config::{self, Config};
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
    /// A rolling deploy on this machine, measured: N nodes as processes on loopback addresses
    /// with an embedded DNS server, G games with clients playing, every node replaced.
    Demo {
        /// Nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Games.
        #[arg(long, default_value_t = 1000)]
        games: usize,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// SIGKILL, in the middle of the update, the node that just received the most games.
        #[arg(long)]
        kill: bool,
        /// Also write a self-contained HTML page (charts and table, no network needed to view
        /// it) to this file.
        #[arg(long, value_name = "FILE.html")]
        report: Option<std::path::PathBuf>,
    },
    /// Exit 0 when this host's node is ready (its /healthz answers 200): the container
    /// HEALTHCHECK.
    Health,
    /// Print the name `start` would run under with this environment (what rel/env.sh
    /// exports as RELEASE_NODE); exit 2 when there is none.
    NodeName,
}

fn main() -> ExitCode {
    // `--version` prints the app version `members` shows (`MINOTAUR_APP_VERSION`), not the
    // crate's, with the protocol versions and state schemas that decide which releases can
    // share a cluster.
    let (version, _) = config::app_version_text(&|k| std::env::var(k).ok());
    let version: &'static str = Box::leak(config::version_line(&version).into_boxed_str());
    let cli = match Cli::from_arg_matches(&Cli::command().version(version).get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The demo configures the nodes it starts itself; every other command reads the
    // environment, and a bad variable stops it here.
    let config = match (&cli.command, Config::from_process_env()) {
        (Command::Demo { .. }, _) => None,
        (_, Ok(c)) => Some(c),
        (_, Err(e)) => {
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
        match (cli.command, config) {
            (
                Command::Demo {
                    nodes,
                    games,
                    json,
                    kill,
                    report,
                },
                _,
            ) => run_demo(nodes, games, json, kill, report).await,
            (_, None) => ExitCode::from(2),
            (Command::Start, Some(config)) => {
                telemetry::init(config.log_format);
                node::run(config).await
            }
            (Command::Remote { node }, Some(config)) => {
                console::client::remote(&config, node.as_deref()).await
            }
            (
                Command::Rpc {
                    node,
                    json,
                    command,
                },
                Some(config),
            ) => console::client::rpc(&config, node.as_deref(), json, command).await,
            (Command::Health, Some(config)) => node::health(&config).await,
            (Command::NodeName, Some(config)) => match node::resolve_node_name(&config).await {
                Ok(name) => {
                    println!("{name}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            },
        }
    })
}

async fn run_demo(
    nodes: usize,
    games: usize,
    json: bool,
    kill: bool,
    report_file: Option<std::path::PathBuf>,
) -> ExitCode {
    if nodes < 2 || games == 0 {
        eprintln!("error: --nodes must be at least 2 and --games at least 1");
        return ExitCode::from(2);
    }
    let binary = match std::env::current_exe() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot find this program's path: {e}");
            return ExitCode::from(1);
        }
    };
    let log_dir = std::env::temp_dir().join(format!("minotaur-demo-{}", std::process::id()));
    let opts = minotaur::demo::DemoOptions {
        nodes,
        games,
        binary,
        new_binary: None,
        progress: true,
        net: 240,
        log_dir: log_dir.clone(),
        rate: None,
        kill,
    };
    match minotaur::demo::run(opts).await {
        Ok(report) => {
            let written = report_file.map(|path| {
                std::fs::write(&path, minotaur::demo::report::html(&report))
                    .map(|()| path.clone())
                    .map_err(|e| format!("cannot write the report to {}: {e}", path.display()))
            });
            if json {
                println!("{}", minotaur::demo::json(&report));
            } else {
                println!("{}", minotaur::demo::table(&report));
                println!("node logs: {}", log_dir.display());
            }
            match written {
                // With --json, stdout holds the JSON alone.
                Some(Ok(path)) if json => eprintln!("report: {}", path.display()),
                Some(Ok(path)) => println!("report: {}", path.display()),
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
                None => {}
            }
            let failures = report.failures();
            for f in &failures {
                eprintln!("error: {f}");
            }
            if failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!(
                "error: demo failed: {e} (node logs in {})",
                log_dir.display()
            );
            ExitCode::from(1)
        }
    }
}

/// Many links and consoles each hold a socket: use the hard limit, not the 1024 default.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
