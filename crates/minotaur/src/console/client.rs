//! The console's client side: `minotaur rpc` runs one command, `minotaur remote` a prompt.
//!
//! Both attach to the node named by `--node` or `RELEASE_NODE` at its host on `CLUSTER_PORT`,
//! with the cookie from the environment. Owns attaching, printing and the prompt; what the
//! commands do is the node's business.

use std::io::{BufRead, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use discovery::console_link::{self, ConsoleLink};
use discovery::{Envelope, Host, NodeName};
use ractor::ActorRef;
use ractor::rpc::CallResult;

use super::completion;
use super::protocol::{CONSOLE_SERVICE, ConsoleMsg, Request, Response};
use crate::config::{Config, Distribution};

/// Longest wait for the handshake.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one command (a drain may take the whole shutdown budget).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a console could not run.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad `--node` or environment.
    #[error("{0}")]
    Usage(String),
    /// Could not attach or lost the link.
    #[error("{0}")]
    Link(String),
}

impl ClientError {
    /// Exit code: 2 for usage, 1 for the rest.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ClientError::Usage(_) => ExitCode::from(2),
            ClientError::Link(_) => ExitCode::from(1),
        }
    }
}

/// An attached console.
#[derive(Debug)]
pub struct Session {
    link: ConsoleLink,
    console: ActorRef<ConsoleMsg>,
    node: String,
}

impl Session {
    /// Attaches to `node` (or the environment's node).
    pub async fn attach(config: &Config, node: Option<&str>) -> Result<Session, ClientError> {
        let name = match node {
            Some(n) => {
                NodeName::parse(n).map_err(|e| ClientError::Usage(format!("--node: {e}")))?
            }
            // The same rule as the node's own default name (DNS probe included), so that
            // `docker exec CONTAINER minotaur remote` finds the node with several networks.
            None => crate::node::resolve_node_name(config)
                .await
                .map_err(|e| ClientError::Usage(e.to_string()))?,
        };
        let cookie = cookie_for(config, &name)?;
        // A single node's cluster port listens on loopback only, for its consoles.
        let ip = match config.distribution {
            Distribution::None => Ipv4Addr::LOCALHOST.into(),
            _ => host_ip(&name, config.distribution).await?,
        };
        let addr = SocketAddr::new(ip, config.cluster_port);
        let link = console_link::attach(addr, &cookie, config.tls.as_ref(), ATTACH_TIMEOUT)
            .await
            .map_err(|e| ClientError::Link(e.to_string()))?;
        let attached = link.peer().id.name.clone();
        if attached != name.to_string() {
            link.close().await;
            return Err(ClientError::Link(format!(
                "the node at {addr} is `{attached}`, not `{name}`"
            )));
        }
        // The proxy of the console actor arrives with the handshake's initial sync; allow a
        // moment for a node that is still starting.
        let mut console = None;
        for _ in 0..50 {
            console = link.peer().remote_actor::<ConsoleMsg>(CONSOLE_SERVICE);
            if console.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let Some(console) = console else {
            link.close().await;
            return Err(ClientError::Link(format!(
                "node `{name}` has no console (is it starting?)"
            )));
        };
        Ok(Session {
            link,
            console,
            node: attached,
        })
    }

    /// The attached node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs one command line on the node.
    pub async fn exec(&self, args: Vec<String>) -> Result<Response, ClientError> {
        let request =
            Envelope::encode(&Request { args }).map_err(|e| ClientError::Link(e.to_string()))?;
        match self
            .console
            .call(|r| ConsoleMsg::Exec(request, r), Some(COMMAND_TIMEOUT))
            .await
        {
            Ok(CallResult::Success(env)) => env
                .decode::<Response>()
                .map_err(|e| ClientError::Link(format!("malformed answer from the node: {e}"))),
            Ok(CallResult::Timeout) => Err(ClientError::Link(format!(
                "node `{}` did not answer within {COMMAND_TIMEOUT:?}",
                self.node
            ))),
            _ => Err(ClientError::Link(format!(
                "lost the connection to node `{}`",
                self.node
            ))),
        }
    }

    /// Detaches.
    pub async fn close(self) {
        self.link.close().await;
    }
}

/// The cookie to present to `name`: the configured one, else (a `RELEASE_DISTRIBUTION=none`
/// node) the one the node generated and wrote for its user on this host.
fn cookie_for(config: &Config, name: &NodeName) -> Result<String, ClientError> {
    if let Some(c) = &config.cookie {
        return Ok(c.expose().to_string());
    }
    if config.distribution != Distribution::None {
        return Err(ClientError::Usage(
            "RELEASE_COOKIE: set it (or RELEASE_COOKIE_FILE) to the cluster's cookie".into(),
        ));
    }
    let dir = config.console_cookie_dir.as_ref().ok_or_else(|| {
        ClientError::Usage(
            "RELEASE_DISTRIBUTION=none without RELEASE_COOKIE: the node's console cookie is looked for in RELEASE_COOKIE_DIR, $XDG_RUNTIME_DIR/minotaur or $HOME/.minotaur, and none of them is set".into(),
        )
    })?;
    let path = crate::config::console_cookie_file(dir, &name.to_string());
    super::cookie::read(&path).map_err(|e| ClientError::Link(e.to_string()))
}

/// The IP to dial for `name`: its IP, or its host name resolved (short names of this host
/// fall back to loopback).
async fn host_ip(name: &NodeName, distribution: Distribution) -> Result<IpAddr, ClientError> {
    match name.host() {
        Some(Host::Ip(ip)) => Ok(*ip),
        Some(Host::Domain(d)) => {
            let found = match discovery::dns::resolver(None) {
                Ok(r) => discovery::dns::addresses(&r, d).await.unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            match (found.first(), distribution) {
                (Some(ip), _) => Ok(*ip),
                (None, Distribution::Sname) => Ok(Ipv4Addr::LOCALHOST.into()),
                (None, _) => Err(ClientError::Link(format!(
                    "cannot resolve the host of `{name}`"
                ))),
            }
        }
        None => Ok(Ipv4Addr::LOCALHOST.into()),
    }
}

/// `minotaur rpc`: one command, printed; exit 0 on success.
pub async fn rpc(config: &Config, node: Option<&str>, json: bool, args: Vec<String>) -> ExitCode {
    let session = match Session::attach(config, node).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
    };
    let result = session.exec(args).await;
    session.close().await;
    match result {
        Ok(r) => {
            let out = if json { &r.json } else { &r.text };
            if r.ok {
                if !out.is_empty() {
                    println!("{out}");
                }
                ExitCode::SUCCESS
            } else {
                eprintln!("error: {}", r.text);
                if json {
                    println!("{}", r.json);
                }
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// `minotaur remote`: a prompt with line editing and history in a terminal, or the commands
/// piped on stdin, one per line.
pub async fn remote(config: &Config, node: Option<&str>) -> ExitCode {
    let session = match Session::attach(config, node).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
    };
    let interactive = std::io::stdin().is_terminal();
    let handle = tokio::runtime::Handle::current();
    let node = session.node().to_string();
    // rustyline and stdin block: run the loop on a blocking thread, commands on the runtime.
    let joined = tokio::task::spawn_blocking(move || {
        let code = if interactive {
            prompt_loop(&handle, &session, &node)
        } else {
            piped_loop(&handle, &session)
        };
        (session, code)
    })
    .await;
    match joined {
        Ok((session, code)) => {
            session.close().await;
            code
        }
        Err(e) => {
            eprintln!("error: console loop failed: {e}");
            ExitCode::from(1)
        }
    }
}

enum Step {
    Continue,
    Quit,
    Lost(ClientError),
}

fn run_line(handle: &tokio::runtime::Handle, session: &Session, line: &str) -> Step {
    let args: Vec<String> = line.split_whitespace().map(String::from).collect();
    match args.first().map(String::as_str) {
        None => return Step::Continue,
        Some("quit" | "exit" | "q") => return Step::Quit,
        _ => {}
    }
    match handle.block_on(session.exec(args)) {
        Ok(r) if r.ok => {
            if !r.text.is_empty() {
                println!("{}", r.text);
            }
            Step::Continue
        }
        Ok(r) => {
            println!("error: {}", r.text);
            Step::Continue
        }
        Err(e) => Step::Lost(e),
    }
}

fn prompt_loop(handle: &tokio::runtime::Handle, session: &Session, node: &str) -> ExitCode {
    // Tab lists the candidates under the prompt, as a shell and `iex` do.
    let editor_config = rustyline::Config::builder()
        .completion_type(rustyline::CompletionType::List)
        .build();
    let mut editor = match rustyline::Editor::<Completion<'_>, _>::with_config(editor_config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot start line editing: {e}");
            return piped_loop(handle, session);
        }
    };
    let history =
        std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".minotaur_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    // Commands come from the node's own `help`: a console of one version completes the
    // commands of a node of another.
    let usages = fetch_json(handle, session, &["help"])
        .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
        .unwrap_or_default();
    editor.set_helper(Some(Completion {
        handle,
        session,
        usages,
    }));
    println!("attached to {node}; `help` lists commands, `quit` leaves");
    let prompt = format!("{node}> ");
    let code = loop {
        match editor.readline(&prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                match run_line(handle, session, &line) {
                    Step::Continue => {}
                    Step::Quit => break ExitCode::SUCCESS,
                    Step::Lost(e) => {
                        eprintln!("error: {e}");
                        break e.exit_code();
                    }
                }
            }
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(rustyline::error::ReadlineError::Eof) => break ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                break ExitCode::from(1);
            }
        }
    };
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    code
}

/// Runs `args` on the node and returns the JSON answer, `None` on any failure (completion
/// must never break the prompt).
fn fetch_json(
    handle: &tokio::runtime::Handle,
    session: &Session,
    args: &[&str],
) -> Option<serde_json::Value> {
    let args = args.iter().map(|a| a.to_string()).collect();
    match handle.block_on(session.exec(args)) {
        Ok(r) if r.ok => serde_json::from_str(&r.json).ok(),
        _ => None,
    }
}

/// Tab completion of the prompt: asks the node for what [`completion::complete`] draws from
/// (game ids and node names are fetched at each Tab that needs them, so they are current).
struct Completion<'a> {
    handle: &'a tokio::runtime::Handle,
    session: &'a Session,
    /// Usage lines of the node's commands (`help`).
    usages: Vec<String>,
}

impl rustyline::completion::Completer for Completion<'_> {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let mut known = completion::Known {
            usages: self.usages.clone(),
            ..Default::default()
        };
        match completion::needs(line, pos, &self.usages) {
            Some(completion::ArgKind::Game) => {
                known.games = fetch_json(self.handle, self.session, &["games", "--all"])
                    .and_then(|v| v.as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|row| row["game"].as_str().map(String::from))
                    .collect();
            }
            Some(completion::ArgKind::Node) => {
                known.nodes = fetch_json(self.handle, self.session, &["nodes"])
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default();
            }
            _ => {}
        }
        Ok(completion::complete(line, pos, &known))
    }
}

impl rustyline::hint::Hinter for Completion<'_> {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for Completion<'_> {}
impl rustyline::validate::Validator for Completion<'_> {}
impl rustyline::Helper for Completion<'_> {}

fn piped_loop(handle: &tokio::runtime::Handle, session: &Session) -> ExitCode {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        match run_line(handle, session, &line) {
            Step::Continue => {}
            Step::Quit => break,
            Step::Lost(e) => {
                eprintln!("error: {e}");
                return e.exit_code();
            }
        }
        let _ = std::io::stdout().flush();
    }
    ExitCode::SUCCESS
}
