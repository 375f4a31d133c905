//! Configuration from the environment: the one place environment variables are read.
//!
//! [`Config::from_env`] takes a lookup function (the process environment in `main`, a
//! `HashMap` in tests), validates every variable that is set, whether this configuration uses
//! it or not, and reports all bad ones at once: the operator fixes the deployment in one go.
//! It owns parsing and the cross-variable rules (long names for discovery, a cookie for
//! distribution); it must not start anything.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use discovery::config::{
    DEFAULT_CLUSTER_PORT, DEFAULT_FAILURE_TIMEOUT, DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_POLL_INTERVAL,
};
use discovery::{ClusterTls, Cookie, DnsQuery, Host, NodeName, TlsError, TlsPem};

/// Default basename of node names.
pub const DEFAULT_BASENAME: &str = "minotaur";
/// HTTP port (`PORT`).
pub const DEFAULT_HTTP_PORT: u16 = 4000;
/// Drain budget (`SHUTDOWN_TIMEOUT_MS`): below Swarm's default 10 s grace period.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(8000);

/// Every variable this program reads, for the "unknown variable" hint and the README table.
pub const VARIABLES: &[&str] = &[
    "RELEASE_NODE",
    "RELEASE_DISTRIBUTION",
    "RELEASE_COOKIE",
    "RELEASE_COOKIE_FILE",
    "CLUSTER_PORT",
    "DNS_CLUSTER_QUERY",
    "DNS_CLUSTER_INTERVAL_MS",
    "DNS_CLUSTER_RESOLVER",
    "CLUSTER_HOSTS",
    "PORT",
    "CLUSTER_BIND",
    "HTTP_BIND",
    "SHUTDOWN_TIMEOUT_MS",
    "CLUSTER_HEARTBEAT_MS",
    "CLUSTER_FAILURE_TIMEOUT_MS",
    "LOG_FORMAT",
    "MINOTAUR_APP_VERSION",
    "RELEASE_COOKIE_DIR",
    "MAX_CONNECTIONS",
    "GAME_RETENTION_MS",
    "GAME_IDLE_TIMEOUT_MS",
    "MAX_GAMES_PER_NODE",
    "CLUSTER_TLS_CERT_FILE",
    "CLUSTER_TLS_KEY_FILE",
    "CLUSTER_TLS_CA_FILE",
    "CLUSTER_MAX_FRAME_BYTES",
];

/// Smallest `CLUSTER_MAX_FRAME_BYTES`: horde keeps its messages within half the frame limit,
/// and a game's state (at most [`game::MAX_STATE_BYTES`]) must fit in one message.
pub const MIN_CLUSTER_FRAME_BYTES: u64 = 256 * 1024;
/// Largest `CLUSTER_MAX_FRAME_BYTES` (ractor_cluster allocates a frame whole as it reads it).
pub const MAX_CLUSTER_FRAME_BYTES: u64 = 1024 * 1024 * 1024;
/// Default of `MAX_GAMES_PER_NODE`.
pub const DEFAULT_MAX_GAMES_PER_NODE: usize = 100_000;
/// Longest `GAME_RETENTION_MS` and `GAME_IDLE_TIMEOUT_MS`: 30 days.
const MAX_GAME_TIMER_MS: u64 = 30 * 24 * 3_600_000;

/// The three variables of mutual TLS: all set or none.
pub const TLS_VARIABLES: [&str; 3] = [
    "CLUSTER_TLS_CERT_FILE",
    "CLUSTER_TLS_KEY_FILE",
    "CLUSTER_TLS_CA_FILE",
];

/// Where the app version came from (`MINOTAUR_APP_VERSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSource {
    /// Set in the environment at run time (as an Elixir release's `RELEASE_VSN`).
    Environment,
    /// Built in: `MINOTAUR_APP_VERSION` when the binary was built, else the crate version.
    Build,
}

/// One variable of the effective configuration, as the `config` console command shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Setting {
    /// The variable.
    pub variable: &'static str,
    /// Its effective value; `***` for a secret.
    pub value: String,
    /// Where the value came from: `environment`, `default`, `build`, `RELEASE_COOKIE_FILE`,
    /// `generated`.
    pub source: &'static str,
}

/// True for a variable whose value is a secret (the cookie, a key), which the `config`
/// command masks as `***`. A path to a secret (`*_FILE`, `*_DIR`) is not one: an operator
/// needs to see which file is read.
pub fn is_secret(variable: &str) -> bool {
    (variable.ends_with("_KEY") || variable.contains("COOKIE"))
        && !variable.ends_with("_FILE")
        && !variable.ends_with("_DIR")
}

/// The app version `members` and `--version` show: `MINOTAUR_APP_VERSION` from the
/// environment `env` reads, else the one built in. Not validated (see [`Config::app_version`]).
pub fn app_version_text(env: &dyn Fn(&str) -> Option<String>) -> (String, VersionSource) {
    match env("MINOTAUR_APP_VERSION") {
        Some(v) if !v.trim().is_empty() => (v.trim().to_string(), VersionSource::Environment),
        _ => (game::APP_VERSION.to_string(), VersionSource::Build),
    }
}

/// What `minotaur --version` prints after the program's name: the app version, the horde
/// protocol versions this build speaks and the game state schemas it reads, e.g.
/// `0.2.0 (protocol 2-3, state schemas 1)`: the two numbers that decide which releases can
/// run in one cluster.
pub fn version_line(app: &str) -> String {
    let reads = <game::Session as horde::Handoff>::reads();
    let schemas = match (reads.iter().min(), reads.iter().max()) {
        (Some(a), Some(b)) if a != b => format!("{a}-{b}"),
        (Some(a), _) => a.to_string(),
        _ => "none".to_string(),
    };
    format!(
        "{app} (protocol {}, state schemas {schemas})",
        horde::protocol::Protocols::THIS
    )
}

/// Shortest cookie accepted when peer discovery is on (a node reachable by peers).
pub const MIN_COOKIE_BYTES: usize = 16;

/// Why a cookie file was not used.
#[derive(Debug)]
enum CookieFileError {
    /// Readable by group or others: the mode it has.
    Shared(u32),
    /// Missing or unreadable.
    Read(std::io::Error),
}

/// The cookie in `path` (trailing newline dropped), refused when group or others may read the
/// file, as OpenSSH refuses a private key they can read.
fn read_cookie_file(path: &Path) -> Result<String, CookieFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(CookieFileError::Read)?
        .permissions()
        .mode();
    if mode & 0o044 != 0 {
        return Err(CookieFileError::Shared(mode & 0o7777));
    }
    let c = std::fs::read_to_string(path).map_err(CookieFileError::Read)?;
    Ok(c.trim_end_matches(['\n', '\r']).to_string())
}

/// Name of the file, in the console cookie directory, holding the generated cookie of the
/// `RELEASE_DISTRIBUTION=none` node `node`: one per node name, so two nodes on one host
/// never share one.
pub fn console_cookie_file(dir: &Path, node: &str) -> PathBuf {
    dir.join(format!("{node}.cookie"))
}

/// How the node takes part in a cluster (`RELEASE_DISTRIBUTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// Long names: `name@ip` or `name@fqdn`, needed for discovery across hosts.
    Name,
    /// Short names, this host only.
    Sname,
    /// A single node without a cluster port.
    None,
}

/// Log line format (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The node's name as configured: given, or to be derived from the host's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeNameSpec {
    /// `RELEASE_NODE` with a host part.
    Given(NodeName),
    /// No host part (unset, or a bare `name`): `basename@<own address>` for long names,
    /// `basename@<short host name>` for short names.
    Derive {
        /// The part before `@`.
        basename: String,
    },
}

/// Everything the binary needs from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `RELEASE_NODE`.
    pub node: NodeNameSpec,
    /// `RELEASE_DISTRIBUTION`.
    pub distribution: Distribution,
    /// `RELEASE_COOKIE`, or the contents of `RELEASE_COOKIE_FILE` (`Debug` shows neither).
    pub cookie: Option<Cookie>,
    /// `CLUSTER_PORT`.
    pub cluster_port: u16,
    /// `DNS_CLUSTER_QUERY`.
    pub dns_queries: Vec<DnsQuery>,
    /// `DNS_CLUSTER_INTERVAL_MS`.
    pub dns_interval: Duration,
    /// `DNS_CLUSTER_RESOLVER`.
    pub dns_resolver: Option<SocketAddr>,
    /// `CLUSTER_HOSTS`.
    pub cluster_hosts: Vec<NodeName>,
    /// `PORT`.
    pub http_port: u16,
    /// `CLUSTER_BIND`; `None` = the node's host when it is an IP, else 0.0.0.0.
    pub cluster_bind: Option<IpAddr>,
    /// `HTTP_BIND`.
    pub http_bind: IpAddr,
    /// `SHUTDOWN_TIMEOUT_MS`.
    pub shutdown_timeout: Duration,
    /// `CLUSTER_HEARTBEAT_MS`.
    pub heartbeat_interval: Duration,
    /// `CLUSTER_FAILURE_TIMEOUT_MS`.
    pub failure_timeout: Duration,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `MINOTAUR_APP_VERSION` at run time, else the one built in: a SemVer version.
    pub app_version: semver::Version,
    /// Where [`Config::app_version`] came from.
    pub app_version_source: VersionSource,
    /// Where a `RELEASE_DISTRIBUTION=none` node without a cookie writes the random one its
    /// console accepts (and `remote`/`rpc` look for it): `RELEASE_COOKIE_DIR`, else
    /// `$XDG_RUNTIME_DIR/minotaur`, else `$HOME/.minotaur`; `None` when none of them is set.
    pub console_cookie_dir: Option<PathBuf>,
    /// `MAX_CONNECTIONS`: open HTTP + WebSocket connections served at once.
    pub max_connections: usize,
    /// `CLUSTER_MAX_FRAME_BYTES`: the largest frame a node link accepts (a larger one closes
    /// the link); horde cuts its messages to half of it.
    pub max_frame_bytes: u64,
    /// `GAME_RETENTION_MS`: an over game is removed this long after it ended.
    pub game_retention: Duration,
    /// `GAME_IDLE_TIMEOUT_MS`: a game with no applied input this long is over.
    pub game_idle_timeout: Duration,
    /// `MAX_GAMES_PER_NODE`: games a node starts at most (moves and failover may exceed it).
    pub max_games_per_node: usize,
    /// Mutual TLS on node and console links, from `CLUSTER_TLS_CERT_FILE`,
    /// `CLUSTER_TLS_KEY_FILE` and `CLUSTER_TLS_CA_FILE`; `None`: plain TCP.
    pub tls: Option<ClusterTls>,
    /// The variables of [`VARIABLES`] that are set, with their raw values (for `config`);
    /// secrets ([`is_secret`]) as `***`, so neither `config` nor `Debug` shows them.
    pub set: BTreeMap<&'static str, String>,
}

/// One bad variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable.
    pub variable: &'static str,
    /// What is wrong and what to set.
    pub message: String,
}

/// All bad variables found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for e in &self.0 {
            writeln!(f, "  {}: {}", e.variable, e.message)?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// True when `variable` is among the errors.
    pub fn names(&self, variable: &str) -> bool {
        self.0.iter().any(|e| e.variable == variable)
    }
}

/// Collects errors while parsing.
struct Reader<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
}

impl Reader<'_> {
    fn get(&self, var: &str) -> Option<String> {
        (self.env)(var)
    }

    fn fail(&mut self, variable: &'static str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            variable,
            message: message.into(),
        });
    }

    /// Parses `var` with `parse`, or returns `default` when unset; a bad value is recorded
    /// with `expected` and the default is used so parsing can go on.
    fn parse<T>(
        &mut self,
        var: &'static str,
        default: T,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> T {
        match self.get(var) {
            None => default,
            Some(raw) => match parse(raw.trim()) {
                Some(v) => v,
                None => {
                    self.fail(var, format!("`{raw}` is not valid: expected {expected}"));
                    default
                }
            },
        }
    }

    fn millis(&mut self, var: &'static str, default: Duration, min: u64, max: u64) -> Duration {
        self.parse(
            var,
            default,
            &format!("a whole number of milliseconds from {min} to {max}"),
            |s| {
                s.parse::<u64>()
                    .ok()
                    .filter(|v| (min..=max).contains(v))
                    .map(Duration::from_millis)
            },
        )
    }

    /// A whole number of `unit` from `min` to `max`.
    fn count(
        &mut self,
        var: &'static str,
        default: usize,
        unit: &str,
        min: usize,
        max: usize,
    ) -> usize {
        self.parse(
            var,
            default,
            &format!("a whole number of {unit} from {min} to {max}"),
            |s| s.parse::<usize>().ok().filter(|n| (min..=max).contains(n)),
        )
    }

    fn port(&mut self, var: &'static str, default: u16) -> u16 {
        self.parse(var, default, "a TCP port from 1 to 65535", |s| {
            s.parse::<u16>().ok().filter(|p| *p > 0)
        })
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_process_env() -> Result<Config, ConfigErrors> {
        Self::from_env(&|k| std::env::var(k).ok())
    }

    /// Reads a map (tests).
    pub fn from_map(map: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
        Self::from_env(&|k| map.get(k).cloned())
    }

    /// Parses and validates the variables `env` returns: each row of [`FIELDS`] reads its
    /// variable into a configuration that starts from the defaults, then each rule of
    /// [`RULES`] checks variables against each other. Every bad variable is recorded (a bad
    /// value leaves the default, so reading goes on) and all are reported together.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let mut r = Reader {
            env,
            errors: Vec::new(),
        };
        let mut config = Config::defaults();
        for (variable, read) in FIELDS {
            read(&mut r, variable, &mut config);
        }
        for rule in RULES {
            rule(&mut r, &config);
        }
        config.set = VARIABLES
            .iter()
            .filter_map(|v| {
                r.get(v)
                    .map(|raw| (*v, if is_secret(v) { "***".into() } else { raw }))
            })
            .collect();
        if r.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(r.errors))
        }
    }

    /// Every value as it is when its variable is unset (or bad: a bad value is reported and
    /// the default kept, so the variables read after it are still checked).
    fn defaults() -> Config {
        Config {
            node: NodeNameSpec::Derive {
                basename: DEFAULT_BASENAME.into(),
            },
            distribution: Distribution::Name,
            cookie: None,
            cluster_port: DEFAULT_CLUSTER_PORT,
            dns_queries: Vec::new(),
            dns_interval: DEFAULT_POLL_INTERVAL,
            dns_resolver: None,
            cluster_hosts: Vec::new(),
            http_port: DEFAULT_HTTP_PORT,
            cluster_bind: None,
            http_bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            failure_timeout: DEFAULT_FAILURE_TIMEOUT,
            log_format: LogFormat::Text,
            app_version: semver::Version::new(0, 0, 0),
            app_version_source: VersionSource::Build,
            console_cookie_dir: None,
            max_connections: crate::http::DEFAULT_MAX_CONNECTIONS,
            max_frame_bytes: discovery::config::DEFAULT_MAX_FRAME_SIZE,
            game_retention: Duration::from_millis(game::DEFAULT_RETENTION_MS),
            game_idle_timeout: Duration::from_millis(game::DEFAULT_IDLE_TIMEOUT_MS),
            max_games_per_node: DEFAULT_MAX_GAMES_PER_NODE,
            tls: None,
            set: BTreeMap::new(),
        }
    }

    /// The effective configuration: every variable of [`VARIABLES`] with its value and where
    /// it came from, secrets masked. `node` is the name the node runs under (derived at start
    /// when `RELEASE_NODE` has no host); `generated_cookie`, the file of a
    /// `RELEASE_DISTRIBUTION=none` node's generated cookie.
    pub fn settings(&self, node: &str, generated_cookie: Option<&Path>) -> Vec<Setting> {
        let ms = |d: Duration| d.as_millis().to_string();
        let unset = || "unset".to_string();
        let raw = |v: &str| self.set.get(v).map(|s| s.trim().to_string());
        let effective = |v: &str| -> Option<String> {
            Some(match v {
                "RELEASE_NODE" => node.to_string(),
                "RELEASE_DISTRIBUTION" => match self.distribution {
                    Distribution::Name => "name",
                    Distribution::Sname => "sname",
                    Distribution::None => "none",
                }
                .to_string(),
                "RELEASE_COOKIE" => match (&self.cookie, generated_cookie) {
                    (Some(_), _) => "***".into(),
                    (None, Some(f)) => format!("*** (in {})", f.display()),
                    (None, None) => unset(),
                },
                "RELEASE_COOKIE_DIR" => self
                    .console_cookie_dir
                    .as_ref()
                    .map_or_else(unset, |d| d.display().to_string()),
                "CLUSTER_PORT" => self.cluster_port.to_string(),
                "DNS_CLUSTER_INTERVAL_MS" => ms(self.dns_interval),
                "DNS_CLUSTER_RESOLVER" => self.dns_resolver.map_or_else(unset, |a| a.to_string()),
                "PORT" => self.http_port.to_string(),
                "CLUSTER_BIND" if self.distribution == Distribution::None => {
                    "127.0.0.1 (RELEASE_DISTRIBUTION=none: the console's loopback)".into()
                }
                "CLUSTER_BIND" => self.cluster_bind.map_or_else(
                    || format!("{} (the node's host)", self.cluster_bind_for_name(node)),
                    |b| b.to_string(),
                ),
                "HTTP_BIND" => self.http_bind.to_string(),
                "SHUTDOWN_TIMEOUT_MS" => ms(self.shutdown_timeout),
                "CLUSTER_HEARTBEAT_MS" => ms(self.heartbeat_interval),
                "CLUSTER_FAILURE_TIMEOUT_MS" => ms(self.failure_timeout),
                "LOG_FORMAT" => match self.log_format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                }
                .to_string(),
                "MINOTAUR_APP_VERSION" => self.app_version.to_string(),
                "MAX_CONNECTIONS" => self.max_connections.to_string(),
                "CLUSTER_MAX_FRAME_BYTES" => self.max_frame_bytes.to_string(),
                "GAME_RETENTION_MS" => ms(self.game_retention),
                "GAME_IDLE_TIMEOUT_MS" => ms(self.game_idle_timeout),
                "MAX_GAMES_PER_NODE" => self.max_games_per_node.to_string(),
                _ => return None,
            })
        };
        VARIABLES
            .iter()
            .map(|&variable| {
                let source = match variable {
                    "RELEASE_COOKIE" if self.cookie.is_none() && generated_cookie.is_some() => {
                        "generated"
                    }
                    "RELEASE_COOKIE"
                        if !self.set.contains_key("RELEASE_COOKIE") && self.cookie.is_some() =>
                    {
                        "RELEASE_COOKIE_FILE"
                    }
                    "MINOTAUR_APP_VERSION" if self.app_version_source == VersionSource::Build => {
                        "build"
                    }
                    "RELEASE_NODE" if !matches!(self.node, NodeNameSpec::Given(_)) => "derived",
                    v if self.set.contains_key(v) => "environment",
                    _ => "default",
                };
                let value = effective(variable)
                    .or_else(|| raw(variable))
                    .unwrap_or_else(|| match source {
                        "default" => "unset".into(),
                        _ => String::new(),
                    });
                let value = if is_secret(variable) && value != "unset" {
                    if value.starts_with("***") {
                        value
                    } else {
                        "***".into()
                    }
                } else {
                    value
                };
                Setting {
                    variable,
                    value,
                    source,
                }
            })
            .collect()
    }

    fn cluster_bind_for_name(&self, node: &str) -> IpAddr {
        match NodeName::parse(node) {
            Ok(n) => self.cluster_bind_for(&n),
            Err(_) => self
                .cluster_bind
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        }
    }

    /// True when peers are to be discovered.
    pub fn discovers(&self) -> bool {
        !self.dns_queries.is_empty() || !self.cluster_hosts.is_empty()
    }

    /// The node's name: the given one, or derived from `own_ip` (long names) or the short host
    /// name (short names).
    pub fn node_name(&self, own_ip: impl FnOnce() -> Option<IpAddr>) -> Result<NodeName, String> {
        match &self.node {
            NodeNameSpec::Given(n) => Ok(n.clone()),
            NodeNameSpec::Derive { basename } => {
                let host = match self.distribution {
                    Distribution::Sname => short_hostname()
                        .map(Host::Domain)
                        .unwrap_or(Host::Ip(Ipv4Addr::LOCALHOST.into())),
                    Distribution::Name | Distribution::None => Host::Ip(own_ip().ok_or_else(|| {
                        "RELEASE_NODE: cannot find a non-loopback address of this host; set RELEASE_NODE=name@<ip>".to_string()
                    })?),
                };
                NodeName::new(basename, host).map_err(|e| format!("RELEASE_NODE: {e}"))
            }
        }
    }

    /// The address the cluster listener binds: `CLUSTER_BIND`, else the node's IP, else any.
    pub fn cluster_bind_for(&self, node: &NodeName) -> IpAddr {
        self.cluster_bind
            .or_else(|| node.host().and_then(Host::ip))
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

/// Reads one variable into the configuration being built, whose field holds its default; a
/// bad value is recorded in the reader and leaves the default.
type Read = fn(&mut Reader<'_>, &'static str, &mut Config);

/// Every variable [`Config::from_env`] reads, in the order their errors are reported, with how
/// each is read. A row may read related variables with its own (named in its comment).
const FIELDS: &[(&str, Read)] = &[
    ("RELEASE_DISTRIBUTION", |r, v, c| {
        c.distribution = r.parse(
            v,
            c.distribution,
            "`name`, `sname` or `none`",
            |s| match s {
                "name" => Some(Distribution::Name),
                "sname" => Some(Distribution::Sname),
                "none" => Some(Distribution::None),
                _ => None,
            },
        )
    }),
    ("RELEASE_NODE", read_node),
    // And RELEASE_COOKIE_FILE.
    ("RELEASE_COOKIE", read_cookie),
    ("CLUSTER_PORT", |r, v, c| {
        c.cluster_port = r.port(v, c.cluster_port)
    }),
    // 0 lets the OS pick (tests, several nodes on one address); the log says which.
    ("PORT", |r, v, c| {
        c.http_port = r.parse(v, c.http_port, "a TCP port from 0 to 65535", |s| {
            s.parse::<u16>().ok()
        })
    }),
    ("DNS_CLUSTER_QUERY", read_dns_queries),
    ("DNS_CLUSTER_INTERVAL_MS", |r, v, c| {
        c.dns_interval = r.millis(v, c.dns_interval, 100, 3_600_000)
    }),
    ("DNS_CLUSTER_RESOLVER", |r, v, c| {
        c.dns_resolver = r.parse(
            v,
            c.dns_resolver,
            "`ip:port` of a nameserver, e.g. `127.0.0.11:53`",
            |s| {
                s.parse::<SocketAddr>()
                    .ok()
                    .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
                    .map(Some)
            },
        )
    }),
    ("CLUSTER_HOSTS", |r, v, c| {
        c.cluster_hosts = r.parse(
            v,
            std::mem::take(&mut c.cluster_hosts),
            "long node names separated by commas, e.g. `minotaur@10.0.1.6,minotaur@10.0.1.7`",
            |s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(|h| NodeName::parse(h).ok().filter(NodeName::is_long))
                    .collect::<Option<Vec<_>>>()
            },
        )
    }),
    ("CLUSTER_BIND", |r, v, c| {
        c.cluster_bind = r.parse(v, c.cluster_bind, "an IP address, e.g. `0.0.0.0`", |s| {
            ip(s).map(Some)
        })
    }),
    ("HTTP_BIND", |r, v, c| {
        c.http_bind = r.parse(v, c.http_bind, "an IP address, e.g. `0.0.0.0`", ip)
    }),
    ("SHUTDOWN_TIMEOUT_MS", |r, v, c| {
        c.shutdown_timeout = r.millis(v, c.shutdown_timeout, 0, 3_600_000)
    }),
    ("CLUSTER_HEARTBEAT_MS", |r, v, c| {
        c.heartbeat_interval = r.millis(v, c.heartbeat_interval, 10, 60_000)
    }),
    ("CLUSTER_FAILURE_TIMEOUT_MS", |r, v, c| {
        c.failure_timeout = r.millis(v, c.failure_timeout, 50, 600_000)
    }),
    ("MAX_CONNECTIONS", |r, v, c| {
        c.max_connections = r.count(v, c.max_connections, "connections", 1, 1_000_000)
    }),
    ("CLUSTER_MAX_FRAME_BYTES", |r, v, c| {
        c.max_frame_bytes = r.parse(
            v,
            c.max_frame_bytes,
            "a whole number of bytes from 262144 (256 KiB: a game's state must fit in half a frame) to 1073741824 (1 GiB), the same on every node",
            |s| {
                s.parse::<u64>()
                    .ok()
                    .filter(|n| (MIN_CLUSTER_FRAME_BYTES..=MAX_CLUSTER_FRAME_BYTES).contains(n))
            },
        )
    }),
    // Up to 30 days: a timer of the game, and beyond that a game is not "idle" any more.
    ("GAME_RETENTION_MS", |r, v, c| {
        c.game_retention = r.millis(v, c.game_retention, 0, MAX_GAME_TIMER_MS)
    }),
    ("GAME_IDLE_TIMEOUT_MS", |r, v, c| {
        c.game_idle_timeout = r.millis(v, c.game_idle_timeout, 1, MAX_GAME_TIMER_MS)
    }),
    ("MAX_GAMES_PER_NODE", |r, v, c| {
        c.max_games_per_node = r.count(v, c.max_games_per_node, "games", 1, 100_000_000)
    }),
    ("LOG_FORMAT", |r, v, c| {
        c.log_format = r.parse(v, c.log_format, "`text` or `json`", |s| match s {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        })
    }),
    ("MINOTAUR_APP_VERSION", read_app_version),
    // Else XDG_RUNTIME_DIR or HOME.
    ("RELEASE_COOKIE_DIR", read_console_cookie_dir),
    // And CLUSTER_TLS_KEY_FILE and CLUSTER_TLS_CA_FILE.
    ("CLUSTER_TLS_CERT_FILE", |r, _, c| c.tls = read_tls(r)),
];

/// An IP address.
fn ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok()
}

/// `RELEASE_NODE`: a name with a host is used as given; a bare name (or none) is the basename
/// of a name derived at start.
fn read_node(r: &mut Reader<'_>, var: &'static str, c: &mut Config) {
    c.node = match r.get(var) {
        None => NodeNameSpec::Derive {
            basename: DEFAULT_BASENAME.into(),
        },
        Some(raw) => match NodeName::parse(raw.trim()) {
            Ok(n) if n.host().is_some() => NodeNameSpec::Given(n),
            Ok(n) => NodeNameSpec::Derive {
                basename: n.basename().to_string(),
            },
            Err(e) => {
                r.fail(var, format!("{e}"));
                NodeNameSpec::Derive {
                    basename: DEFAULT_BASENAME.into(),
                }
            }
        },
    };
}

/// `RELEASE_COOKIE`, else the contents of `RELEASE_COOKIE_FILE` (a file others can read is
/// refused; a file named beside `RELEASE_COOKIE` must exist); an empty cookie is refused.
fn read_cookie(r: &mut Reader<'_>, var: &'static str, c: &mut Config) {
    let cookie = match (r.get(var), r.get("RELEASE_COOKIE_FILE")) {
        (Some(c), file) => {
            if let Some(path) = file
                && std::fs::metadata(&path).is_err()
            {
                r.fail(
                    "RELEASE_COOKIE_FILE",
                    format!("cannot read `{path}` (RELEASE_COOKIE is set too and wins, but the file must exist)"),
                );
            }
            Some(c)
        }
        (None, Some(path)) => match read_cookie_file(Path::new(&path)) {
            Ok(c) => Some(c),
            Err(CookieFileError::Shared(mode)) => {
                r.fail(
                    "RELEASE_COOKIE_FILE",
                    format!("`{path}` is readable by group or others (mode {mode:04o}), as a secret must not be: run `chmod 600 {path}` (as its owner), or mount the secret with mode 0400"),
                );
                None
            }
            Err(CookieFileError::Read(e)) => {
                r.fail(
                    "RELEASE_COOKIE_FILE",
                    format!("cannot read `{path}`: {e}; expected a file holding the cookie (a Docker secret)"),
                );
                None
            }
        },
        (None, None) => None,
    };
    c.cookie = cookie.map(Cookie::from);
    if c.cookie.as_ref().is_some_and(|c| c.expose().is_empty()) {
        r.fail(var, "the cookie is empty: set a non-empty shared secret");
    }
}

/// `DNS_CLUSTER_QUERY`: DNS names separated by commas; `ignore` or empty for none.
fn read_dns_queries(r: &mut Reader<'_>, var: &'static str, c: &mut Config) {
    c.dns_queries = match r.get(var) {
        None => Vec::new(),
        Some(raw) if raw.trim() == "ignore" || raw.trim().is_empty() => Vec::new(),
        Some(raw) => {
            let names: Vec<&str> = raw.split(',').map(str::trim).collect();
            if names.iter().all(|n| valid_dns_name(n)) {
                names.into_iter().map(DnsQuery::parse).collect()
            } else {
                r.fail(
                    var,
                    format!("`{raw}` is not valid: expected DNS names separated by commas, e.g. `tasks.minotaur-stack_minotaur`, or `ignore`"),
                );
                Vec::new()
            }
        }
    };
}

/// `MINOTAUR_APP_VERSION` at run time, else the one built in: a SemVer version either way.
fn read_app_version(r: &mut Reader<'_>, var: &'static str, c: &mut Config) {
    let (version_text, app_version_source) = app_version_text(r.env);
    c.app_version_source = app_version_source;
    c.app_version = match semver::Version::parse(&version_text) {
        Ok(v) => v,
        Err(e) => {
            let origin = match app_version_source {
                VersionSource::Environment => "",
                VersionSource::Build => " (built in: this binary was built with it)",
            };
            r.fail(
                var,
                format!("`{version_text}`{origin} is not a SemVer version ({e}): expected MAJOR.MINOR.PATCH[-PRE][+BUILD], e.g. `1.4.0` or `2.0.0-rc.1`"),
            );
            semver::Version::new(0, 0, 0)
        }
    };
}

/// `RELEASE_COOKIE_DIR` (an absolute path), else `$XDG_RUNTIME_DIR/minotaur`, else
/// `$HOME/.minotaur`.
fn read_console_cookie_dir(r: &mut Reader<'_>, var: &'static str, c: &mut Config) {
    c.console_cookie_dir = match r.get(var) {
        Some(raw) if Path::new(raw.trim()).is_absolute() => Some(PathBuf::from(raw.trim())),
        Some(raw) => {
            r.fail(
                var,
                format!("`{raw}` is not valid: expected an absolute directory path, e.g. `/run/user/1000/minotaur`"),
            );
            None
        }
        None => r
            .get("XDG_RUNTIME_DIR")
            .filter(|d| Path::new(d).is_absolute())
            .map(|d| Path::new(&d).join("minotaur"))
            .or_else(|| {
                r.get("HOME")
                    .filter(|h| Path::new(h).is_absolute())
                    .map(|h| Path::new(&h).join(".minotaur"))
            }),
    };
}

/// A rule across variables, checked once every variable is read.
type Rule = fn(&mut Reader<'_>, &Config);

/// The cross-variable rules, in the order their errors are reported.
const RULES: &[Rule] = &[
    cookie_required,
    cookie_long_with_discovery,
    discovery_needs_long_names,
];

/// Distribution needs a cookie (unless its file was already reported).
fn cookie_required(r: &mut Reader<'_>, c: &Config) {
    if c.distribution != Distribution::None
        && c.cookie.is_none()
        && !r.errors.iter().any(|e| e.variable == "RELEASE_COOKIE_FILE")
    {
        r.fail(
            "RELEASE_COOKIE",
            "required when RELEASE_DISTRIBUTION is `name` or `sname`: set RELEASE_COOKIE or RELEASE_COOKIE_FILE to the cluster's shared secret",
        );
    }
}

/// With peer discovery on, a cookie of at least [`MIN_COOKIE_BYTES`].
fn cookie_long_with_discovery(r: &mut Reader<'_>, c: &Config) {
    if c.discovers()
        && c.distribution != Distribution::None
        && let Some(cookie) = &c.cookie
        && !cookie.expose().is_empty()
        && cookie.expose().len() < MIN_COOKIE_BYTES
    {
        r.fail(
            "RELEASE_COOKIE",
            format!("the cookie is {} bytes; with peer discovery on, anyone who guesses it joins the cluster: set RELEASE_COOKIE (or the file of RELEASE_COOKIE_FILE) to at least {MIN_COOKIE_BYTES} random bytes, e.g. `head -c 32 /dev/urandom | base64`", cookie.expose().len()),
        );
    }
}

/// Peer discovery needs long names and distribution.
fn discovery_needs_long_names(r: &mut Reader<'_>, c: &Config) {
    if !c.discovers() {
        return;
    }
    let what = if c.dns_queries.is_empty() {
        "CLUSTER_HOSTS"
    } else {
        "DNS_CLUSTER_QUERY"
    };
    match (&c.distribution, &c.node) {
        (Distribution::Sname, _) => r.fail(
            "RELEASE_NODE",
            format!("peer discovery ({what}) needs long names, but RELEASE_DISTRIBUTION=sname: set RELEASE_DISTRIBUTION=name and RELEASE_NODE=name@<ip or fully qualified host> (or leave RELEASE_NODE unset for minotaur@<this host's IP>)"),
        ),
        (Distribution::None, _) => r.fail(
            "RELEASE_DISTRIBUTION",
            format!("peer discovery ({what}) needs distribution, but RELEASE_DISTRIBUTION=none: set RELEASE_DISTRIBUTION=name"),
        ),
        (Distribution::Name, NodeNameSpec::Given(n)) if !n.is_long() => r.fail(
            "RELEASE_NODE",
            format!("`{n}` is not a long name, and peer discovery ({what}) needs one: set RELEASE_NODE={}@<this host's IP or fully qualified name>, or leave it unset for {}@<this host's IP>", n.basename(), n.basename()),
        ),
        (Distribution::Name, NodeNameSpec::Derive { basename }) if r.get("RELEASE_NODE").is_some() => r.fail(
            "RELEASE_NODE",
            format!("`{basename}` has no host, and peer discovery ({what}) needs a long name: set RELEASE_NODE={basename}@<this host's IP or fully qualified name>, or leave it unset for {basename}@<this host's IP>"),
        ),
        _ => {}
    }
}

/// `CLUSTER_TLS_*`: none set is plain TCP; all three set is mutual TLS, each file read and
/// checked now (a bad one names its variable and why); one or two set names the missing ones.
fn read_tls(r: &mut Reader<'_>) -> Option<ClusterTls> {
    let paths = TLS_VARIABLES.map(|v| r.get(v).map(|p| p.trim().to_string()));
    if paths.iter().all(Option::is_none) {
        return None;
    }
    let set: Vec<&str> = TLS_VARIABLES
        .iter()
        .zip(&paths)
        .filter_map(|(v, p)| p.as_ref().map(|_| *v))
        .collect();
    for (var, path) in TLS_VARIABLES.iter().zip(&paths) {
        if path.is_none() {
            r.fail(
                var,
                format!("not set, but {} {}: mutual TLS needs all three of CLUSTER_TLS_CERT_FILE, CLUSTER_TLS_KEY_FILE and CLUSTER_TLS_CA_FILE (or none, for plain TCP)", set.join(" and "), if set.len() == 1 { "is" } else { "are" }),
            );
        }
    }
    let mut contents = Vec::new();
    for (var, path) in TLS_VARIABLES.iter().zip(&paths) {
        let Some(path) = path else { continue };
        match std::fs::read(path) {
            Ok(bytes) => contents.push((*var, path.clone(), bytes)),
            Err(e) => r.fail(
                var,
                format!("cannot read `{path}`: {e}; expected a PEM file"),
            ),
        }
    }
    let [(_, cert_path, cert), (_, key_path, key), (_, ca_path, ca)] = contents.as_slice() else {
        return None;
    };
    match ClusterTls::from_pem(TlsPem { cert, key, ca }) {
        Ok(tls) => Some(tls),
        Err(e) => {
            let (var, path) = match &e {
                TlsError::Cert(_) => ("CLUSTER_TLS_CERT_FILE", cert_path),
                TlsError::Key(_) => ("CLUSTER_TLS_KEY_FILE", key_path),
                TlsError::Ca(_) => ("CLUSTER_TLS_CA_FILE", ca_path),
            };
            r.fail(var, format!("`{path}`: {e}"));
            None
        }
    }
}

fn short_hostname() -> Option<String> {
    let h = std::fs::read_to_string("/etc/hostname").ok()?;
    let short = h.trim().split('.').next()?.to_ascii_lowercase();
    (!short.is_empty()).then_some(short)
}

fn valid_dns_name(n: &str) -> bool {
    let n = n.strip_suffix('.').unwrap_or(n);
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cookie long enough for discovery.
    const COOKIE: &str = "a-test-cookie-0123456789";

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_map(&map)
    }

    #[test]
    fn defaults() {
        let c = parse(&[("RELEASE_COOKIE", COOKIE)]).unwrap();
        assert_eq!(c.distribution, Distribution::Name);
        assert_eq!(c.cluster_port, 9000);
        assert_eq!(c.http_port, 4000);
        assert_eq!(c.shutdown_timeout, Duration::from_millis(8000));
        assert_eq!(c.dns_interval, Duration::from_millis(5000));
        assert!(!c.discovers());
        let name = c.node_name(|| Some("10.0.1.6".parse().unwrap())).unwrap();
        assert_eq!(name.to_string(), "minotaur@10.0.1.6");
        assert_eq!(
            c.cluster_bind_for(&name),
            "10.0.1.6".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn max_connections_is_a_positive_count() {
        let c = parse(&[("RELEASE_COOKIE", COOKIE)]).unwrap();
        assert_eq!(c.max_connections, 10_000);
        let c = parse(&[("RELEASE_COOKIE", COOKIE), ("MAX_CONNECTIONS", "20")]).unwrap();
        assert_eq!(c.max_connections, 20);
        for bad in ["0", "abc", "-1", "1000001"] {
            let err = parse(&[("RELEASE_COOKIE", COOKIE), ("MAX_CONNECTIONS", bad)]).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid configuration:\n  MAX_CONNECTIONS: `{bad}` is not valid: expected a whole number of connections from 1 to 1000000\n"
                )
            );
        }
    }

    #[test]
    fn the_frame_limit_leaves_room_for_a_game_state_in_half_a_frame() {
        let c = parse(&[("RELEASE_COOKIE", "s")]).unwrap();
        assert_eq!(c.max_frame_bytes, 32 * 1024 * 1024);
        let c = parse(&[
            ("RELEASE_COOKIE", "s"),
            ("CLUSTER_MAX_FRAME_BYTES", "262144"),
        ])
        .unwrap();
        assert_eq!(c.max_frame_bytes, 262_144);
        assert!(c.max_frame_bytes / 2 > game::MAX_STATE_BYTES as u64 + 1024);
        for bad in ["262143", "0", "1GiB", "1073741825"] {
            let err = parse(&[("RELEASE_COOKIE", "s"), ("CLUSTER_MAX_FRAME_BYTES", bad)])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("CLUSTER_MAX_FRAME_BYTES: `{bad}` is not valid: expected a whole number of bytes from 262144")),
                "{err}"
            );
        }
    }

    #[test]
    fn game_lifecycle_and_limit_variables() {
        let c = parse(&[("RELEASE_COOKIE", "s")]).unwrap();
        assert_eq!(c.game_retention, Duration::from_millis(300_000));
        assert_eq!(c.game_idle_timeout, Duration::from_millis(1_800_000));
        assert_eq!(c.max_games_per_node, 100_000);
        let c = parse(&[
            ("RELEASE_COOKIE", "s"),
            ("GAME_RETENTION_MS", "0"),
            ("GAME_IDLE_TIMEOUT_MS", "250"),
            ("MAX_GAMES_PER_NODE", "3"),
        ])
        .unwrap();
        assert_eq!(c.game_retention, Duration::ZERO);
        assert_eq!(c.game_idle_timeout, Duration::from_millis(250));
        assert_eq!(c.max_games_per_node, 3);
        let ms = "a whole number of milliseconds from";
        for (var, bad, expected) in [
            ("GAME_RETENTION_MS", "-1", format!("{ms} 0 to 2592000000")),
            (
                "GAME_RETENTION_MS",
                "2592000001",
                format!("{ms} 0 to 2592000000"),
            ),
            ("GAME_IDLE_TIMEOUT_MS", "0", format!("{ms} 1 to 2592000000")),
            (
                "GAME_IDLE_TIMEOUT_MS",
                "soon",
                format!("{ms} 1 to 2592000000"),
            ),
            (
                "MAX_GAMES_PER_NODE",
                "0",
                "a whole number of games from 1 to 100000000".to_string(),
            ),
            (
                "MAX_GAMES_PER_NODE",
                "many",
                "a whole number of games from 1 to 100000000".to_string(),
            ),
        ] {
            let err = parse(&[("RELEASE_COOKIE", "s"), (var, bad)]).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid configuration:\n  {var}: `{bad}` is not valid: expected {expected}\n"
                )
            );
        }
    }

    #[test]
    fn every_bad_variable_is_reported_at_once() {
        let err = parse(&[
            ("RELEASE_COOKIE", COOKIE),
            ("CLUSTER_PORT", "ninety"),
            ("PORT", "70000"),
            ("DNS_CLUSTER_INTERVAL_MS", "-5"),
            ("DNS_CLUSTER_RESOLVER", "nameserver"),
            ("CLUSTER_BIND", "everywhere"),
            ("LOG_FORMAT", "xml"),
            ("RELEASE_DISTRIBUTION", "longnames"),
        ])
        .unwrap_err();
        for v in [
            "CLUSTER_PORT",
            "PORT",
            "DNS_CLUSTER_INTERVAL_MS",
            "DNS_CLUSTER_RESOLVER",
            "CLUSTER_BIND",
            "LOG_FORMAT",
            "RELEASE_DISTRIBUTION",
        ] {
            assert!(err.names(v), "{v} not reported in {err}");
        }
        let text = err.to_string();
        assert!(
            text.contains("CLUSTER_PORT: `ninety` is not valid: expected a TCP port"),
            "{text}"
        );
    }

    #[test]
    fn discovery_with_a_short_name_names_release_node() {
        for node in ["minotaur", "minotaur@myhost"] {
            let err = parse(&[
                ("RELEASE_COOKIE", COOKIE),
                ("RELEASE_NODE", node),
                ("DNS_CLUSTER_QUERY", "tasks.minotaur-stack_minotaur"),
            ])
            .unwrap_err();
            assert!(err.names("RELEASE_NODE"), "{err}");
            assert!(err.to_string().contains("long name"), "{err}");
        }
        let err = parse(&[
            ("RELEASE_COOKIE", COOKIE),
            ("RELEASE_DISTRIBUTION", "sname"),
            ("CLUSTER_HOSTS", "minotaur@10.0.0.2"),
        ])
        .unwrap_err();
        assert!(err.names("RELEASE_NODE"), "{err}");
    }

    #[test]
    fn discovery_with_a_long_or_derived_name_is_fine() {
        let c = parse(&[
            ("RELEASE_COOKIE", COOKIE),
            (
                "DNS_CLUSTER_QUERY",
                "tasks.minotaur-stack_minotaur, _cluster._tcp.minotaur.svc",
            ),
        ])
        .unwrap();
        assert_eq!(
            c.dns_queries,
            vec![
                DnsQuery::Addresses("tasks.minotaur-stack_minotaur".into()),
                DnsQuery::Srv("_cluster._tcp.minotaur.svc".into())
            ]
        );
        assert!(
            parse(&[
                ("RELEASE_COOKIE", COOKIE),
                ("RELEASE_NODE", "a@10.0.0.1"),
                ("CLUSTER_HOSTS", "a@10.0.0.2,a@b.example.com")
            ])
            .is_ok()
        );
    }

    fn private(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn a_short_cookie_is_refused_with_discovery_only() {
        let short = "fifteen-bytes!!";
        for discovery in [
            ("DNS_CLUSTER_QUERY", "tasks.minotaur-stack_minotaur"),
            ("CLUSTER_HOSTS", "minotaur@10.0.0.2"),
        ] {
            let err = parse(&[("RELEASE_COOKIE", short), discovery]).unwrap_err();
            assert!(err.names("RELEASE_COOKIE"), "{err}");
            assert!(err.to_string().contains("at least 16"), "{err}");
            assert!(!err.to_string().contains(short), "the cookie shown: {err}");
            assert!(parse(&[("RELEASE_COOKIE", "sixteen-bytes-ok"), discovery]).is_ok());
        }
        // No discovery: a single node, or one whose peers dial it.
        assert!(parse(&[("RELEASE_COOKIE", short)]).is_ok());
        assert!(parse(&[("RELEASE_COOKIE", short), ("RELEASE_DISTRIBUTION", "none")]).is_ok());
        // Never empty, even with RELEASE_DISTRIBUTION=none.
        let err = parse(&[("RELEASE_COOKIE", ""), ("RELEASE_DISTRIBUTION", "none")]).unwrap_err();
        assert!(err.names("RELEASE_COOKIE"), "{err}");
    }

    #[test]
    fn a_cookie_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("minotaur-shared-{}", std::process::id()));
        std::fs::write(&path, "a-long-enough-cookie-value\n").unwrap();
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = parse(&[("RELEASE_COOKIE_FILE", path.to_str().unwrap())]).unwrap_err();
            assert!(err.names("RELEASE_COOKIE_FILE"), "{mode:o}: {err}");
            let text = err.to_string();
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
            assert!(!text.contains("a-long-enough"), "{text}");
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(parse(&[("RELEASE_COOKIE_FILE", path.to_str().unwrap())]).is_ok());
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn debug_output_never_shows_the_cookie() {
        let c = parse(&[("RELEASE_COOKIE", "hush-hush-cookie-secret")]).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hush-hush"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn cookie_is_required_and_can_come_from_a_file() {
        let err = parse(&[]).unwrap_err();
        assert!(err.names("RELEASE_COOKIE"), "{err}");
        assert!(parse(&[("RELEASE_DISTRIBUTION", "none")]).is_ok());

        let dir = std::env::temp_dir().join(format!("minotaur-cookie-{}", std::process::id()));
        std::fs::write(&dir, "from-file\n").unwrap();
        private(&dir);
        let c = parse(&[("RELEASE_COOKIE_FILE", dir.to_str().unwrap())]).unwrap();
        assert_eq!(c.cookie.as_ref().map(Cookie::expose), Some("from-file"));
        std::fs::remove_file(&dir).unwrap();
        let err = parse(&[("RELEASE_COOKIE_FILE", "/nonexistent/cookie")]).unwrap_err();
        assert!(err.names("RELEASE_COOKIE_FILE"), "{err}");
        assert!(!err.names("RELEASE_COOKIE"), "{err}");
    }

    #[test]
    fn the_app_version_must_be_semver_and_may_be_set_at_run_time() {
        let c = parse(&[("RELEASE_COOKIE", COOKIE)]).unwrap();
        assert_eq!(c.app_version.to_string(), game::APP_VERSION);
        assert_eq!(c.app_version_source, VersionSource::Build);
        let c = parse(&[
            ("RELEASE_COOKIE", COOKIE),
            ("MINOTAUR_APP_VERSION", " 1.10.0-rc.1 "),
        ])
        .unwrap();
        assert_eq!(
            c.app_version,
            semver::Version::parse("1.10.0-rc.1").unwrap()
        );
        assert_eq!(c.app_version_source, VersionSource::Environment);
        for bad in ["banana", "1.0", "v1.2.3", "1.2.3.4"] {
            let err = parse(&[
                ("RELEASE_COOKIE", COOKIE),
                ("MINOTAUR_APP_VERSION", bad),
                ("PORT", "x"),
            ])
            .unwrap_err();
            assert!(
                err.names("MINOTAUR_APP_VERSION") && err.names("PORT"),
                "{err}"
            );
            assert!(
                err.to_string().contains(&format!(
                    "MINOTAUR_APP_VERSION: `{bad}` is not a SemVer version"
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn the_console_cookie_directory() {
        let dir = |vars: &[(&str, &str)]| {
            let mut v = vec![("RELEASE_DISTRIBUTION", "none")];
            v.extend_from_slice(vars);
            parse(&v).map(|c| c.console_cookie_dir)
        };
        assert_eq!(dir(&[]).unwrap(), None);
        assert_eq!(
            dir(&[("HOME", "/home/ann")]).unwrap(),
            Some(PathBuf::from("/home/ann/.minotaur"))
        );
        assert_eq!(
            dir(&[("HOME", "/home/ann"), ("XDG_RUNTIME_DIR", "/run/user/1000")]).unwrap(),
            Some(PathBuf::from("/run/user/1000/minotaur"))
        );
        assert_eq!(
            dir(&[
                ("XDG_RUNTIME_DIR", "/run/user/1000"),
                ("RELEASE_COOKIE_DIR", "/srv/c")
            ])
            .unwrap(),
            Some(PathBuf::from("/srv/c"))
        );
        assert!(
            dir(&[("RELEASE_COOKIE_DIR", "relative")])
                .unwrap_err()
                .names("RELEASE_COOKIE_DIR")
        );
        assert_eq!(
            console_cookie_file(Path::new("/srv/c"), "minotaur@10.0.1.6"),
            PathBuf::from("/srv/c/minotaur@10.0.1.6.cookie")
        );
    }

    #[test]
    fn settings_show_every_variable_with_its_source_and_mask_secrets() {
        let c = parse(&[
            ("RELEASE_COOKIE", "hunter2-hunter2"),
            ("PORT", "4100"),
            ("RELEASE_NODE", "minotaur"),
        ])
        .unwrap();
        let rows = c.settings("minotaur@10.0.1.6", None);
        assert_eq!(rows.len(), VARIABLES.len());
        let row = |v: &str| {
            let r = rows.iter().find(|r| r.variable == v).unwrap();
            (r.value.as_str(), r.source)
        };
        assert_eq!(row("RELEASE_COOKIE"), ("***", "environment"));
        assert_eq!(row("PORT"), ("4100", "environment"));
        assert_eq!(row("CLUSTER_PORT"), ("9000", "default"));
        assert_eq!(row("RELEASE_NODE"), ("minotaur@10.0.1.6", "derived"));
        assert_eq!(
            row("CLUSTER_BIND"),
            ("10.0.1.6 (the node's host)", "default")
        );
        assert_eq!(row("RELEASE_COOKIE_FILE"), ("unset", "default"));
        assert_eq!(row("MINOTAUR_APP_VERSION"), (game::APP_VERSION, "build"));
        assert!(!format!("{rows:?}").contains("hunter2"));

        let c = parse(&[("RELEASE_DISTRIBUTION", "none"), ("HOME", "/home/ann")]).unwrap();
        let f = Path::new("/home/ann/.minotaur/m@h.cookie");
        let rows = c.settings("m@127.0.0.1", Some(f));
        let r = rows
            .iter()
            .find(|r| r.variable == "RELEASE_COOKIE")
            .unwrap();
        assert_eq!(
            (r.value.as_str(), r.source),
            ("*** (in /home/ann/.minotaur/m@h.cookie)", "generated")
        );
    }

    #[test]
    fn secrets_are_the_cookie_and_keys_not_paths_to_them() {
        for v in ["RELEASE_COOKIE", "CLUSTER_TLS_KEY", "SOME_COOKIE_VALUE"] {
            assert!(is_secret(v), "{v}");
        }
        for v in [
            "RELEASE_COOKIE_FILE",
            "RELEASE_COOKIE_DIR",
            "CLUSTER_TLS_KEY_FILE",
            "PORT",
        ] {
            assert!(!is_secret(v), "{v}");
        }
    }

    #[test]
    fn unused_variables_are_still_validated() {
        // No discovery configured, but a bad DNS_CLUSTER_QUERY is still an error.
        let err = parse(&[
            ("RELEASE_COOKIE", COOKIE),
            ("RELEASE_DISTRIBUTION", "none"),
            ("DNS_CLUSTER_QUERY", "bad name!"),
        ])
        .unwrap_err();
        assert!(err.names("DNS_CLUSTER_QUERY"), "{err}");
    }
}
